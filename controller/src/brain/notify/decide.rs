//! What the notifier decides, from the state alone (so a new leader decides the same): which
//! alerts to escalate, and which notifications to commit. Pure, and unit-tested here.

use std::collections::HashSet;

use crate::config::{NotifyConfig, RouteConfig};
use crate::state::alerts::{Alert, AlertStatus, Severity, Subject, TriageAction};
use crate::state::{Command, State};

/// Alerts and incidents older than this when a route first sees them are not notified: adding a
/// route must not page anyone about last week.
pub const FRESH_MS: u64 = 10 * 60 * 1000;

/// The lowest severity `r` takes. Validated when the config is loaded; were it not, the
/// fallback (high) keeps a route from flooding its channel.
fn route_min(r: &RouteConfig) -> Severity {
    r.min_severity.parse().unwrap_or(Severity::High)
}

/// Whether alert `a` goes out on route `r`, whose lowest severity is `min` (read once per
/// route and pass, not once per alert).
fn route_matches(r: &RouteConfig, min: Severity, a: &Alert) -> bool {
    a.severity >= min
        && (r.sites.is_empty() || r.sites.contains(&a.place.site))
        && (r.sources.is_empty() || r.sources.contains(&a.source))
}

/// Alerts to raise one level: open (nobody acknowledged them), not muted, severe enough, and
/// open for another `after_ms` since their last level.
pub fn escalations(state: &State, cfg: &NotifyConfig, now_ms: u64) -> Vec<Command> {
    let e = &cfg.escalation;
    let min: Severity = e.min_severity.parse().unwrap_or(Severity::Critical);
    let minutes = e.after_ms as f64 / 60_000.0;
    state
        .alerts
        .alerts
        .values()
        .filter(|a| a.status == AlertStatus::Open && a.silenced_by.is_none() && a.severity >= min)
        .filter(|a| a.escalation < e.max_level)
        .filter(|a| now_ms >= a.opened_ms.saturating_add(e.after_ms.saturating_mul(a.escalation as u64 + 1)))
        .map(|a| Command::TriageAlerts {
            ids: vec![a.id],
            action: TriageAction::Escalate {
                to_level: a.escalation + 1,
                reason: format!("not acknowledged within {minutes:.1} min"),
            },
        })
        .collect()
}

/// Notifications to commit: for each route, the fresh alerts (or incidents) it matches at its
/// level that have not had one on its channel.
pub fn notifications(state: &State, cfg: &NotifyConfig, now_ms: u64) -> Vec<Command> {
    let done: HashSet<(Subject, &str, u32)> =
        state.alerts.notifications.values().map(|n| (n.subject, n.channel.as_str(), n.level)).collect();
    let mut out = Vec::new();
    let mut decided = HashSet::new();
    let fresh = |t: u64| now_ms.saturating_sub(t) <= FRESH_MS;
    for r in &cfg.routes {
        let min = route_min(r);
        if r.incidents {
            for i in state.incidents.incidents.values().filter(|i| fresh(i.opened_ms) && i.ticket.is_none()) {
                let subject = Subject::Incident { id: i.id };
                let matching =
                    i.alerts.iter().filter_map(|id| state.alerts.alerts.get(id)).any(|a| route_matches(r, min, a));
                if matching
                    && !done.contains(&(subject, r.channel.as_str(), 0))
                    && decided.insert((subject, r.channel.as_str(), 0))
                {
                    out.push(Command::Notify { subject, channel: r.channel.clone(), level: 0 });
                }
            }
            continue;
        }
        let due = state.alerts.alerts.values().filter(|a| {
            a.status == AlertStatus::Open
                && a.silenced_by.is_none()
                && a.escalation == r.level
                && fresh(a.opened_ms.max(if r.level > 0 { now_ms } else { 0 }))
                && route_matches(r, min, a)
        });
        for a in due {
            let subject = Subject::Alert { id: a.id, opened_ms: a.opened_ms };
            if !done.contains(&(subject, r.channel.as_str(), r.level))
                && decided.insert((subject, r.channel.as_str(), r.level))
            {
                out.push(Command::Notify { subject, channel: r.channel.clone(), level: r.level });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ChannelConfig, EscalationConfig};
    use crate::state::alerts::IncomingAlert;
    use crate::state::{Actor, Proposal, Response, Role};

    fn cfg() -> NotifyConfig {
        let channel = |name: &str| ChannelConfig {
            name: name.into(),
            kind: "webhook".into(),
            url: "http://127.0.0.1:1/".into(),
            token: String::new(),
            smtp_addr: String::new(),
            from: String::new(),
            to: vec![],
            timeout_ms: 1000,
        };
        let route = |channel: &str, level| RouteConfig {
            channel: channel.into(),
            min_severity: "high".into(),
            sites: vec![],
            sources: vec![],
            level,
            incidents: false,
        };
        NotifyConfig {
            channels: vec![channel("soc"), channel("duty")],
            routes: vec![route("soc", 0), route("duty", 1)],
            escalation: EscalationConfig { after_ms: 60_000, min_severity: "critical".into(), max_level: 2 },
        }
    }

    fn apply(s: &mut State, at_ms: u64, command: Command) -> Response {
        let p = Proposal { at_ms, actor: Actor::system(1), command };
        s.apply(at_ms, &p, &mut Vec::new())
    }

    fn ingest(s: &mut State, at_ms: u64, fp: &str, severity: Severity) {
        let ev = IncomingAlert::for_test(fp, at_ms, severity);
        apply(s, at_ms, Command::IngestAlerts { source: "siem".into(), events: vec![ev] });
    }

    /// Applies what is decided at `now`, as the leader would.
    fn run(s: &mut State, c: &NotifyConfig, now: u64) -> (usize, usize) {
        let esc = escalations(s, c, now);
        let n_esc = esc.len();
        for cmd in esc {
            apply(s, now, cmd);
        }
        let notes = notifications(s, c, now);
        let n_notes = notes.len();
        for cmd in notes {
            assert!(matches!(apply(s, now, cmd), Response::Ok(_)));
        }
        (n_esc, n_notes)
    }

    #[test]
    fn a_critical_alert_is_notified_once_then_escalated_on_time_until_acknowledged() {
        let (c, mut s) = (cfg(), State::default());
        ingest(&mut s, 1_000, "crit", Severity::Critical);
        ingest(&mut s, 1_000, "low", Severity::Low);
        assert_eq!(run(&mut s, &c, 1_000), (0, 1), "the critical one to soc; the low one to nobody");
        assert_eq!(run(&mut s, &c, 2_000), (0, 0), "decided once");
        assert_eq!(run(&mut s, &c, 60_999), (0, 0), "not yet due");
        assert_eq!(run(&mut s, &c, 61_000), (1, 1), "escalated to level 1: duty is told");
        assert_eq!(s.alerts.alerts[&1].escalation, 1);
        assert_eq!(run(&mut s, &c, 121_000), (1, 0), "level 2 has no route");
        assert_eq!(run(&mut s, &c, 500_000), (0, 0), "max level reached");
        // Acknowledged: no escalation; a new decision for the same opening is refused.
        ingest(&mut s, 600_000, "crit2", Severity::Critical);
        run(&mut s, &c, 600_000);
        let ack = Command::TriageAlerts { ids: vec![3], action: TriageAction::Acknowledge };
        apply(&mut s, 600_001, ack);
        assert_eq!(run(&mut s, &c, 700_000), (0, 0));
        let again =
            Command::Notify { subject: Subject::Alert { id: 3, opened_ms: 600_000 }, channel: "soc".into(), level: 0 };
        assert!(matches!(apply(&mut s, 700_001, again), Response::Rejected(_)));
    }

    #[test]
    fn silenced_and_stale_alerts_are_not_notified() {
        let (c, mut s) = (cfg(), State::default());
        let silence = Command::PutSilence {
            matchers: vec![crate::state::alerts::Matcher::parse("title=muted").unwrap()],
            starts_ms: 0,
            ends_ms: 10_000,
            reason: "maintenance".into(),
        };
        let p = Proposal {
            at_ms: 1,
            actor: Actor { name: "ana".into(), role: Role::Soc, origin: "t".into() },
            command: silence,
        };
        s.apply(1, &p, &mut Vec::new());
        ingest(&mut s, 1_000, "muted", Severity::Critical);
        ingest(&mut s, 1_000, "old", Severity::Critical);
        run(&mut s, &c, 1_000 + FRESH_MS + 1);
        let soc = s.alerts.notifications.values().filter(|n| n.channel == "soc").count();
        assert_eq!(soc, 0, "muted, or too old when first seen by a route");
        // The old one was escalated meanwhile (the muted one was not): its level is news.
        let escalated: Vec<u64> = s.alerts.alerts.values().filter(|a| a.escalation > 0).map(|a| a.id).collect();
        assert_eq!(escalated, vec![2]);
    }
}
