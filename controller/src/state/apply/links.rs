//! `State::apply` for the links: defined, removed, and their state changes as the leader judged
//! them, each change raising or resolving the link's own alert in the queue (correlated with
//! the sites at both ends through the infrastructure event it also is, `alerts/incidents.rs`).

use std::collections::BTreeMap;

use crate::state::alerts::{IncomingAlert, Severity};
use crate::state::links::{alert_fingerprint, Link, LinkSpec, LinkState, MAX_LINKS};
use crate::state::{Command, Proposal, Rejection, Role, State};

impl State {
    pub(super) fn apply_links(&mut self, p: &Proposal) -> (String, Result<String, Rejection>) {
        match &p.command {
            Command::PutLink(spec) => (
                format!("put link {} ({} {}–{})", spec.name, spec.kind, spec.a, spec.b),
                self.put_link(p.actor.role, spec, p.at_ms),
            ),
            Command::DeleteLink { name } => (format!("delete link {name}"), self.delete_link(p.actor.role, name)),
            Command::SetLinkState { link, state, reason } => {
                (format!("link {link} {state}: {reason}"), self.set_link_state(p, link, *state, reason))
            }
            other => (format!("{other:?}"), Err(Rejection::Invalid("not a links command".into()))),
        }
    }

    /// Records a link, or changes a recorded one's definition (its state stays).
    pub(super) fn put_link(&mut self, role: Role, spec: &LinkSpec, at_ms: u64) -> Result<String, Rejection> {
        if !matches!(role, Role::Admin | Role::Noc | Role::System) {
            return Err(Rejection::NotAllowed(format!("role {role} may not define links")));
        }
        spec.validate("link").map_err(|e| Rejection::Invalid(e.to_string()))?;
        for end in [&spec.a, &spec.b] {
            if !self.sites.contains_key(end) {
                let known: Vec<&str> = self.sites.keys().map(String::as_str).collect();
                return Err(Rejection::NotFound(format!("no site `{end}` (known: {})", known.join(", "))));
            }
        }
        if let Some(c) = spec.carries.iter().find(|c| !self.clusters.contains_key(*c)) {
            return Err(Rejection::NotFound(format!("link `{}` carries `{c}`, which is no cluster", spec.name)));
        }
        if let Some(l) = self.links.get_mut(&spec.name) {
            l.spec = spec.clone();
            return Ok("changed".into());
        }
        match self.links.len() {
            n if n >= MAX_LINKS => {
                Err(Rejection::Conflict(format!("{MAX_LINKS} links are recorded already: delete one first")))
            }
            _ => {
                let link =
                    Link { spec: spec.clone(), state: LinkState::Unknown, since_ms: at_ms, reason: String::new() };
                self.links.insert(spec.name.clone(), link);
                Ok("recorded".into())
            }
        }
    }

    fn delete_link(&mut self, role: Role, name: &str) -> Result<String, Rejection> {
        if !matches!(role, Role::Admin | Role::Noc) {
            return Err(Rejection::NotAllowed(format!("role {role} may not delete links")));
        }
        self.links
            .remove(name)
            .map(|_| "deleted".into())
            .ok_or_else(|| Rejection::NotFound(format!("no link `{name}`")))
    }

    /// A state change the leader judged. Down or degraded raises the link's alert (critical when
    /// a database's replication runs over a link that is down); up resolves it.
    fn set_link_state(
        &mut self,
        p: &Proposal,
        name: &str,
        state: LinkState,
        reason: &str,
    ) -> Result<String, Rejection> {
        if p.actor.role != Role::System {
            return Err(Rejection::NotAllowed(format!("role {} may not set a link's state", p.actor.role)));
        }
        let link = self.links.get_mut(name).ok_or_else(|| Rejection::NotFound(format!("no link `{name}`")))?;
        if link.state == state {
            return Ok(format!("already {state}"));
        }
        let was = link.state;
        link.state = state;
        link.since_ms = p.at_ms;
        link.reason = reason.chars().take(500).collect();
        let spec = link.spec.clone();
        let severity = match state {
            LinkState::Down if !spec.carries.is_empty() => Severity::Critical,
            LinkState::Down => Severity::High,
            _ => Severity::Medium,
        };
        match state {
            LinkState::Down | LinkState::Degraded => {
                let note = format!("link {state}: {reason}");
                self.raise_own_alert(link_alert(&spec, severity, p.at_ms, false), &note);
            }
            LinkState::Up if matches!(was, LinkState::Down | LinkState::Degraded) => {
                self.raise_own_alert(link_alert(&spec, severity, p.at_ms, true), &format!("link up: {reason}"));
            }
            _ => {}
        }
        Ok(format!("{was} → {state}"))
    }
}

/// The link's own alert, placed at end `a` (the incident it joins covers both ends).
fn link_alert(spec: &LinkSpec, severity: Severity, at_ms: u64, resolved: bool) -> IncomingAlert {
    let mut labels = BTreeMap::new();
    labels.insert("link".to_string(), spec.name.clone());
    labels.insert("kind".to_string(), spec.kind.to_string());
    labels.insert("site_a".to_string(), spec.a.clone());
    labels.insert("site_b".to_string(), spec.b.clone());
    if !spec.circuit.is_empty() {
        labels.insert("circuit".to_string(), spec.circuit.clone());
    }
    if !spec.provider.is_empty() {
        labels.insert("provider".to_string(), spec.provider.clone());
    }
    let carries: Vec<&str> = spec.carries.iter().map(String::as_str).collect();
    let description = if carries.is_empty() {
        format!("{} link {}–{} is not up", spec.kind, spec.a, spec.b)
    } else {
        format!(
            "{} link {}–{} is not up; it carries the replication of {}",
            spec.kind,
            spec.a,
            spec.b,
            carries.join(", ")
        )
    };
    let title = format!("link {} ({}–{}) not up", spec.name, spec.a, spec.b);
    IncomingAlert {
        labels,
        site: spec.a.clone(),
        resolved,
        ..IncomingAlert::own(alert_fingerprint(&spec.name), severity, title, description, at_ms)
    }
}

#[cfg(test)]
mod tests {
    use crate::state::alerts::{AlertStatus, InfraKind, Severity};
    use crate::state::links::{alert_fingerprint, LinkKind, LinkSpec, LinkState, TRIAD_SOURCE};
    use crate::state::{Actor, Command, DbCluster, Proposal, Response, Role, Site, State, WorkflowKind};

    fn apply(s: &mut State, at_ms: u64, role: Role, command: Command) -> Response {
        let p = Proposal { at_ms, actor: Actor { name: "nora".into(), role, origin: "test".into() }, command };
        s.apply(at_ms, &p, &mut Vec::new())
    }

    fn spec(name: &str, a: &str, b: &str) -> LinkSpec {
        LinkSpec {
            name: name.into(),
            a: a.into(),
            b: b.into(),
            kind: LinkKind::Dwdm,
            capacity_mbps: 10_000,
            provider: "p".into(),
            circuit: "c-1".into(),
            carries: ["customs".to_string()].into(),
            a_agent: String::new(),
            b_agent: String::new(),
            devices: Vec::new(),
            probe_interval_ms: 200,
            thresholds: Default::default(),
        }
    }

    /// Sites dc, ndc, dr; the cluster adopted with dc primary; the DWDM link recorded.
    fn state() -> State {
        let mut s = State::default();
        for name in ["dc", "ndc", "dr"] {
            s.sites.insert(name.into(), Site { name: name.into(), description: String::new(), city: name.into() });
        }
        let mut c = DbCluster::for_test(&["dc", "ndc", "dr"], "agent-");
        (c.epoch, c.primary) = (1, Some("dc".into()));
        s.clusters.insert("customs".into(), c);
        let r = apply(&mut s, 1, Role::Noc, Command::PutLink(spec("dwdm", "dc", "ndc")));
        assert!(matches!(r, Response::Ok(_)), "{r:?}");
        s
    }

    fn set(s: &mut State, at_ms: u64, state: LinkState) -> Response {
        apply(s, at_ms, Role::System, Command::SetLinkState { link: "dwdm".into(), state, reason: "r".into() })
    }

    #[test]
    fn a_link_is_defined_only_between_known_sites_by_those_allowed() {
        let mut s = state();
        let before = s.links.clone();
        for (role, spec, why) in [
            (Role::Noc, spec("x", "dc", "mars"), "no site `mars`"),
            (Role::Noc, spec("x", "dc", "dc"), "two different sites"),
            (Role::Noc, spec("bad name!", "dc", "dr"), "letters, digits"),
            (Role::Soc, spec("x", "dc", "dr"), "may not define links"),
            (Role::Auditor, spec("x", "dc", "dr"), "may not define links"),
        ] {
            let r = apply(&mut s, 2, role, Command::PutLink(spec));
            assert!(matches!(&r, Response::Rejected(w) if w.to_string().contains(why)), "{why}: {r:?}");
        }
        let mut carries_nothing = spec("x", "dc", "dr");
        carries_nothing.carries = ["payroll".to_string()].into();
        assert!(matches!(apply(&mut s, 2, Role::Admin, Command::PutLink(carries_nothing)), Response::Rejected(_)));
        assert_eq!(s.links, before, "refusals change nothing");
        // Only the leader judges a link's state.
        let r = apply(
            &mut s,
            3,
            Role::Admin,
            Command::SetLinkState { link: "dwdm".into(), state: LinkState::Up, reason: "".into() },
        );
        assert!(matches!(r, Response::Rejected(_)));
    }

    #[test]
    fn down_raises_one_alert_and_an_event_and_up_resolves_them() {
        let mut s = state();
        set(&mut s, 10, LinkState::Up);
        assert!(s.alerts.alerts.is_empty(), "unknown → up raises nothing");
        set(&mut s, 20, LinkState::Degraded);
        set(&mut s, 30, LinkState::Down);
        assert_eq!(s.alerts.alerts.len(), 1, "degraded then down is one alert");
        let a = s.alerts.alerts.values().next().unwrap();
        assert_eq!((a.source.as_str(), a.fingerprint.as_str()), (TRIAD_SOURCE, alert_fingerprint("dwdm").as_str()));
        assert_eq!((a.severity, a.status), (Severity::Critical, AlertStatus::Open), "down and it carries customs");
        assert!(a.history.iter().any(|n| n.text.contains("link down")), "{:?}", a.history);
        let events: Vec<_> = s.incidents.events.values().collect();
        assert_eq!(events.len(), 1, "one outage, one event");
        assert_eq!(events[0].kind, InfraKind::LinkDown);
        assert_eq!(events[0].sites, ["dc".to_string(), "ndc".to_string()].into());
        assert_eq!(a.incident, events[0].incident, "the link's alert is in the link's incident");
        assert!(matches!(set(&mut s, 31, LinkState::Down), Response::Ok(m) if m.starts_with("already")));
        set(&mut s, 40, LinkState::Up);
        let a = s.alerts.alerts.values().next().unwrap();
        assert_eq!(a.status, AlertStatus::Resolved);
        assert_eq!(s.incidents.events.values().next().unwrap().ended_ms, Some(40));
        set(&mut s, 50, LinkState::Down);
        assert_eq!(s.alerts.alerts.len(), 1, "the same alert reopens");
        assert_eq!(s.alerts.alerts.values().next().unwrap().status, AlertStatus::Open);
    }

    #[test]
    fn a_switchover_across_a_link_not_up_is_refused_a_failover_is_not() {
        let mut s = state();
        let start = |s: &mut State, kind: WorkflowKind, to: &str| {
            let c = Command::StartWorkflow { cluster: "customs".into(), kind, from: "dc".into(), to: to.into() };
            apply(s, 60, Role::System, c)
        };
        // Unknown (no probe has reported) is not up: refused, fail closed.
        let r = start(&mut s, WorkflowKind::Switchover, "ndc");
        assert!(
            matches!(&r, Response::Rejected(w) if w.to_string().contains("`dwdm`") && w.to_string().contains("unknown")),
            "{r:?}"
        );
        set(&mut s, 61, LinkState::Down);
        let r = start(&mut s, WorkflowKind::Switchover, "ndc");
        assert!(matches!(&r, Response::Rejected(w) if w.to_string().contains("is down")), "{r:?}");
        // dr is not behind that link.
        assert!(matches!(start(&mut s, WorkflowKind::Switchover, "dr"), Response::Ok(_)));
        let w = s.clusters["customs"].workflow.unwrap();
        apply(&mut s, 62, Role::System, Command::FinishWorkflow { workflow: w, outcome: "completed".into() });
        // The primary's site lost takes its links with it: a failover is never refused for one.
        assert!(matches!(start(&mut s, WorkflowKind::Failover, "ndc"), Response::Ok(_)));
    }
}
