//! Links (issue 18): which agents probe which link (the plan each agent is sent, `plan`), what
//! the probes say of each link now (`assess`, usable on any controller: agents report to all),
//! and, on the leader, the state changes to record (`Judge`): a worse state once it has held
//! `worse_after_ms`, a better one once it has held `better_after_ms`, so a flapping link raises
//! one alert, not one per flap. The probes never make the leader fail over by themselves: a
//! link's state only refuses switchovers across it and explains a lost synchronous standby.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use triad_proto::v1::{LinkProbeReport, ProbePlan, ProbeTarget, SnmpReport};

use super::AgentObservation;
use crate::context::Ctx;
use crate::state::links::{blocking_link, Link, LinkState, LinkThresholds};
use crate::state::{Command, DbCluster, State};

/// The agent that probes from `site` for a link: the one configured (`a_agent`/`b_agent`), else
/// the first registered agent at the site, by name, that serves probes.
fn prober_at(state: &State, addrs: &HashMap<String, String>, site: &str, configured: &str) -> Option<String> {
    if !configured.is_empty() {
        return Some(configured.to_string());
    }
    state.agents.values().filter(|a| a.site == site && addrs.contains_key(&a.name)).map(|a| a.name.clone()).next()
}

/// The two probing agents of `link` (end `a`, end `b`), where known.
fn probers(state: &State, addrs: &HashMap<String, String>, link: &Link) -> [Option<String>; 2] {
    [
        prober_at(state, addrs, &link.spec.a, &link.spec.a_agent),
        prober_at(state, addrs, &link.spec.b, &link.spec.b_agent),
    ]
}

/// The links `agent` probes, with the agent at the other end and where it answers.
pub fn plan(state: &State, addrs: &HashMap<String, String>, agent: &str) -> ProbePlan {
    let mut targets = Vec::new();
    for link in state.links.values() {
        let [a, b] = probers(state, addrs, link);
        let peer = match (a, b) {
            (Some(a), Some(b)) if a == agent => b,
            (Some(a), Some(b)) if b == agent => a,
            _ => continue,
        };
        let Some(peer_addr) = addrs.get(&peer) else { continue };
        targets.push(ProbeTarget {
            link: link.spec.name.clone(),
            peer_agent: peer,
            peer_addr: peer_addr.clone(),
            interval_ms: link.spec.probe_interval_ms,
        });
    }
    ProbePlan { targets }
}

/// [`plan`] on this controller's state and observations.
pub fn plan_for(ctx: &Ctx, agent: &str) -> ProbePlan {
    let addrs = ctx.obs.probe_addrs();
    let g = ctx.state.read().expect("state lock poisoned");
    plan(&g.state, &addrs, agent)
}

/// One end's part in an assessment.
#[derive(Debug, Clone, PartialEq)]
pub struct EndView {
    pub site: String,
    /// The probing agent, if one is known.
    pub agent: Option<String>,
    /// Its latest report of this link, if it was heard recently.
    pub report: Option<LinkProbeReport>,
}

/// What the probes and the devices say of a link now.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub state: LinkState,
    pub reason: String,
    pub ends: [EndView; 2],
    /// The agents' latest SNMP reports of the link's devices (from agents heard recently).
    pub snmp: Vec<SnmpReport>,
}

impl Assessment {
    /// The worse end's figure of `f` (none when neither end reports).
    pub fn worst(&self, f: impl Fn(&LinkProbeReport) -> f64) -> Option<f64> {
        self.ends.iter().filter_map(|e| e.report.as_ref()).map(f).reduce(f64::max)
    }
}

/// Lost probes as a percentage of those that count.
pub fn loss_percent(r: &LinkProbeReport) -> f64 {
    if r.sent == 0 {
        0.0
    } else {
        100.0 * f64::from(r.sent.saturating_sub(r.answered)) / f64::from(r.sent)
    }
}

/// One end's verdict from its report; `None` while it has nothing to judge on yet.
fn judge_end(t: &LinkThresholds, r: &LinkProbeReport) -> Option<(LinkState, String)> {
    use LinkState::*;
    let loss = loss_percent(r);
    if r.silent_ms >= t.down_silence_ms {
        return Some((Down, format!("no probe answered for {:.1} s", r.silent_ms as f64 / 1e3)));
    }
    if r.sent == 0 {
        return None;
    }
    if loss >= t.down_loss_percent {
        return Some((Down, format!("loss {loss:.0}% over {} probes", r.sent)));
    }
    let mut why = Vec::new();
    if r.answered > 0 && r.rtt_ms > t.degraded_rtt_ms {
        why.push(format!("rtt {:.1} ms > {} ms", r.rtt_ms, t.degraded_rtt_ms));
    }
    if loss >= t.degraded_loss_percent {
        why.push(format!("loss {loss:.1}% ≥ {}%", t.degraded_loss_percent));
    }
    if r.jitter_ms > t.degraded_jitter_ms {
        why.push(format!("jitter {:.1} ms > {} ms", r.jitter_ms, t.degraded_jitter_ms));
    }
    if !r.tcp_ok && r.tcp_error != triad_proto::words::PROBE_TCP_NOT_TRIED {
        why.push(format!("TCP echo failing ({})", r.tcp_error));
    }
    if why.is_empty() {
        Some((Up, format!("rtt {:.1} ms, loss {loss:.1}%, jitter {:.1} ms", r.rtt_ms, r.jitter_ms)))
    } else {
        Some((Degraded, why.join(", ")))
    }
}

/// The busier direction against the interface's speed, or the link's capacity when the device
/// does not say; `None` before two polls have answered or with neither speed known.
pub fn utilisation(r: &SnmpReport, capacity_mbps: u64) -> Option<f64> {
    let speed = if r.speed_bps > 0.0 { r.speed_bps } else { capacity_mbps as f64 * 1e6 };
    (r.rates && speed > 0.0).then(|| r.in_bps.max(r.out_bps) / speed)
}

/// A device's verdict on a link from an agent's SNMP report; `None` when the poll failed (a
/// monitoring fault, not the link's: said in the report, not held against the link).
fn judge_snmp(link: &Link, r: &SnmpReport) -> Option<(LinkState, String)> {
    let t = &link.spec.thresholds;
    if !r.error.is_empty() {
        return None;
    }
    let at = format!("{} ifIndex {}", r.target, r.if_index);
    if !r.oper_up {
        return Some((LinkState::Down, format!("{at} reports the interface down (ifOperStatus)")));
    }
    let mut why = Vec::new();
    if let Some(u) = utilisation(r, link.spec.capacity_mbps).filter(|u| 100.0 * u > t.degraded_utilisation_percent) {
        why.push(format!("{at} {:.0}% used > {}%", 100.0 * u, t.degraded_utilisation_percent));
    }
    if r.rates && r.in_errors_per_s > t.degraded_errors_per_second {
        why.push(format!("{at} {:.1} input errors/s > {}", r.in_errors_per_s, t.degraded_errors_per_second));
    }
    if why.is_empty() {
        Some((LinkState::Up, format!("{at} up")))
    } else {
        Some((LinkState::Degraded, why.join(", ")))
    }
}

/// What the probes say of `link`: the worse end's verdict (a one-way fault shows from one end
/// only); unknown when neither end has anything to judge on.
pub fn assess(
    state: &State,
    obs: &HashMap<String, AgentObservation>,
    addrs: &HashMap<String, String>,
    link: &Link,
    now: Instant,
    fresh: Duration,
) -> Assessment {
    let [a, b] = probers(state, addrs, link);
    let end = |site: &str, agent: Option<String>| {
        let report = agent
            .as_ref()
            .and_then(|n| obs.get(n))
            .filter(|o| now.saturating_duration_since(o.last_seen) < fresh)
            .and_then(|o| o.links.iter().find(|r| r.link == link.spec.name).cloned());
        EndView { site: site.to_string(), agent, report }
    };
    let ends = [end(&link.spec.a, a), end(&link.spec.b, b)];
    let snmp: Vec<SnmpReport> = obs
        .values()
        .filter(|o| now.saturating_duration_since(o.last_seen) < fresh)
        .flat_map(|o| o.snmp.iter().filter(|r| r.link == link.spec.name).cloned())
        .collect();
    let probed = ends.iter().filter_map(|e| {
        let r = e.report.as_ref()?;
        judge_end(&link.spec.thresholds, r).map(|(s, why)| (s, format!("from {}: {why}", e.site)))
    });
    let polled = snmp.iter().filter_map(|r| judge_snmp(link, r));
    match probed.chain(polled).max_by_key(|(s, _)| s.badness()) {
        Some((state, reason)) => Assessment { state, reason, ends, snmp },
        None => {
            let who: Vec<String> = ends
                .iter()
                .map(|e| match &e.agent {
                    Some(a) => format!("{a} at {}", e.site),
                    None => format!("no agent answering probes at {}", e.site),
                })
                .collect();
            let reason = format!("no probe report ({})", who.join(", "));
            Assessment { state: LinkState::Unknown, reason, ends, snmp }
        }
    }
}

/// Every link's assessment on this controller, from the agents' observations `obs`.
pub fn assess_all(ctx: &Ctx, obs: &HashMap<String, AgentObservation>) -> BTreeMap<String, Assessment> {
    let addrs = ctx.obs.probe_addrs();
    let fresh = Duration::from_millis(ctx.cfg.agents.down_after_ms);
    let g = ctx.state.read().expect("state lock poisoned");
    let now = Instant::now();
    g.state.links.iter().map(|(n, l)| (n.clone(), assess(&g.state, obs, &addrs, l, now, fresh))).collect()
}

/// Why `member` of `cluster` may have stopped streaming, when a link explains it: the link
/// carrying the cluster between the primary's site and the member's that is not up.
pub fn explaining(state: &State, cluster: &DbCluster, member: &str) -> Option<String> {
    let primary_site = &cluster.members.get(cluster.primary.as_deref()?)?.site;
    let member_site = &cluster.members.get(member)?.site;
    let link = blocking_link(&state.links, &cluster.name, primary_site, member_site)?;
    let why = if link.reason.is_empty() { String::new() } else { format!(" ({})", link.reason) };
    Some(format!("behind link {}, which is {}{why}", link.spec.name, link.state))
}

/// Exports every link's recorded state and the probes' figures (on every controller: agents
/// report to all of them). A link deleted keeps its last series until the process restarts;
/// links are few and rarely deleted.
pub fn export(ctx: &Ctx, state: &State, assessed: &BTreeMap<String, Assessment>) {
    let m = &ctx.metrics;
    for (name, link) in &state.links {
        for s in LinkState::ALL {
            m.link_state.with_label_values(&[name, s.as_str()]).set((link.state == *s) as i64);
        }
        let Some(a) = assessed.get(name) else { continue };
        let set = |g: &prometheus::GaugeVec, v: Option<f64>| g.with_label_values(&[name]).set(v.unwrap_or(f64::NAN));
        set(&m.link_rtt, a.worst(|r| r.rtt_ms / 1e3));
        set(&m.link_loss, a.worst(|r| loss_percent(r) / 100.0));
        set(&m.link_jitter, a.worst(|r| r.jitter_ms / 1e3));
        let polled: Vec<&SnmpReport> = a.snmp.iter().filter(|r| r.rates && r.error.is_empty()).collect();
        if !polled.is_empty() {
            let busiest = |f: fn(&SnmpReport) -> f64| polled.iter().map(|r| f(r)).reduce(f64::max);
            m.link_bytes.with_label_values(&[name, "in"]).set(busiest(|r| r.in_bps / 8.0).unwrap_or(f64::NAN));
            m.link_bytes.with_label_values(&[name, "out"]).set(busiest(|r| r.out_bps / 8.0).unwrap_or(f64::NAN));
            let used = polled.iter().filter_map(|r| utilisation(r, link.spec.capacity_mbps)).reduce(f64::max);
            set(&m.link_utilisation, used);
            set(&m.link_errors, busiest(|r| r.in_errors_per_s));
        }
    }
}

/// The leader's memory between ticks: for each link whose assessment differs from its recorded
/// state, the assessed state and since when it has held.
#[derive(Debug, Default)]
pub struct Judge {
    pending: HashMap<String, (LinkState, Instant)>,
}

impl Judge {
    /// The state changes to record now.
    pub fn decide(&mut self, state: &State, assessed: &BTreeMap<String, Assessment>, now: Instant) -> Vec<Command> {
        self.pending.retain(|name, _| state.links.contains_key(name));
        let mut commands = Vec::new();
        for (name, link) in &state.links {
            let Some(a) = assessed.get(name) else { continue };
            if a.state == link.state {
                self.pending.remove(name);
                continue;
            }
            let pending = self.pending.entry(name.clone()).or_insert((a.state, now));
            if pending.0 != a.state {
                *pending = (a.state, now);
            }
            let t = &link.spec.thresholds;
            // Leaving `unknown` (no judgement yet) is as quick as getting worse.
            let quick = link.state == LinkState::Unknown || a.state.badness() > link.state.badness();
            let hold = Duration::from_millis(if quick { t.worse_after_ms } else { t.better_after_ms });
            if now.saturating_duration_since(pending.1) >= hold {
                commands.push(Command::SetLinkState { link: name.clone(), state: a.state, reason: a.reason.clone() });
            }
        }
        commands
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::links::{LinkKind, LinkSpec};
    use crate::state::{AgentRecord, HostFacts};

    fn state() -> State {
        let mut s = State::default();
        for (agent, site) in [("agent-dc", "dc"), ("agent-ndc", "ndc"), ("agent-dr", "dr")] {
            s.agents.insert(
                agent.into(),
                AgentRecord {
                    name: agent.into(),
                    site: site.into(),
                    host: format!("{site}-host"),
                    facts: HostFacts::default(),
                    up: true,
                    since_ms: 0,
                    registered_ms: 0,
                },
            );
        }
        let spec = LinkSpec {
            name: "dwdm".into(),
            a: "dc".into(),
            b: "ndc".into(),
            kind: LinkKind::Dwdm,
            capacity_mbps: 10_000,
            provider: String::new(),
            circuit: String::new(),
            carries: ["customs".to_string()].into(),
            a_agent: String::new(),
            b_agent: String::new(),
            devices: Vec::new(),
            probe_interval_ms: 200,
            thresholds: LinkThresholds::default(),
        };
        s.links.insert("dwdm".into(), Link { spec, state: LinkState::Unknown, since_ms: 0, reason: String::new() });
        s
    }

    fn addrs() -> HashMap<String, String> {
        [("agent-dc", "10.0.0.1:7000"), ("agent-ndc", "10.0.0.2:7000")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn report(sent: u32, answered: u32, rtt_ms: f64, silent_ms: u64) -> LinkProbeReport {
        LinkProbeReport {
            link: "dwdm".into(),
            sent,
            answered,
            rtt_ms,
            silent_ms,
            tcp_ok: true,
            window_ms: 10_000,
            ..Default::default()
        }
    }

    fn obs_with(now: Instant, reports: &[(&str, LinkProbeReport)]) -> HashMap<String, AgentObservation> {
        reports
            .iter()
            .map(|(agent, r)| {
                let mut o = AgentObservation::for_test("x", now, None);
                o.links = vec![r.clone()];
                (agent.to_string(), o)
            })
            .collect()
    }

    #[test]
    fn each_end_probes_the_other_and_agents_without_an_echo_are_left_out() {
        let s = state();
        let p = plan(&s, &addrs(), "agent-dc");
        assert_eq!(p.targets.len(), 1);
        assert_eq!((p.targets[0].peer_agent.as_str(), p.targets[0].peer_addr.as_str()), ("agent-ndc", "10.0.0.2:7000"));
        assert_eq!(plan(&s, &addrs(), "agent-ndc").targets[0].peer_agent, "agent-dc");
        assert!(plan(&s, &addrs(), "agent-dr").targets.is_empty());
        let mut only_dc = addrs();
        only_dc.remove("agent-ndc");
        assert!(plan(&s, &only_dc, "agent-dc").targets.is_empty(), "no peer answers at ndc");
    }

    #[test]
    fn the_worse_end_decides_and_no_report_is_unknown() {
        let s = state();
        let link = &s.links["dwdm"];
        let now = Instant::now();
        let fresh = Duration::from_secs(3);
        let a = assess(&s, &HashMap::new(), &addrs(), link, now, fresh);
        assert_eq!(a.state, LinkState::Unknown);
        let good = report(50, 50, 1.0, 100);
        let a = assess(&s, &obs_with(now, &[("agent-dc", good.clone())]), &addrs(), link, now, fresh);
        assert_eq!(a.state, LinkState::Up, "{}", a.reason);
        let slow = report(50, 50, 45.0, 100);
        let both = obs_with(now, &[("agent-dc", good.clone()), ("agent-ndc", slow)]);
        let a = assess(&s, &both, &addrs(), link, now, fresh);
        assert_eq!(a.state, LinkState::Degraded);
        assert!(a.reason.contains("from ndc") && a.reason.contains("rtt 45.0"), "{}", a.reason);
        let silent = report(50, 0, 0.0, 2_000);
        let a = assess(&s, &obs_with(now, &[("agent-dc", good), ("agent-ndc", silent)]), &addrs(), link, now, fresh);
        assert_eq!(a.state, LinkState::Down);
        let lossy = report(50, 40, 1.0, 100);
        let a = assess(&s, &obs_with(now, &[("agent-dc", lossy)]), &addrs(), link, now, fresh);
        assert_eq!(a.state, LinkState::Degraded, "20% loss: {}", a.reason);
        // A report from an agent not heard within `fresh` does not count.
        let stale = obs_with(now - Duration::from_secs(10), &[("agent-dc", report(50, 50, 1.0, 0))]);
        assert_eq!(assess(&s, &stale, &addrs(), link, now, fresh).state, LinkState::Unknown);
    }

    #[test]
    fn a_device_saying_down_or_busy_counts_and_a_failing_poll_does_not() {
        let s = state();
        let link = &s.links["dwdm"];
        let now = Instant::now();
        let fresh = Duration::from_secs(3);
        let snmp = |oper_up: bool, in_bps: f64, error: &str| SnmpReport {
            link: "dwdm".into(),
            target: "10.0.0.1:161".into(),
            if_index: 3,
            oper_up,
            in_bps,
            out_bps: 0.0,
            speed_bps: 1e9,
            in_errors_per_s: 0.0,
            age_ms: 0,
            error: error.into(),
            rates: true,
        };
        let with = |r: SnmpReport| {
            let mut o = obs_with(now, &[("agent-dc", report(50, 50, 1.0, 100))]);
            o.get_mut("agent-dc").expect("just made").snmp = vec![r];
            o
        };
        let down = assess(&s, &with(snmp(false, 0.0, "")), &addrs(), link, now, fresh);
        assert_eq!(down.state, LinkState::Down, "{}", down.reason);
        let busy = assess(&s, &with(snmp(true, 0.95e9, "")), &addrs(), link, now, fresh);
        assert_eq!(busy.state, LinkState::Degraded);
        assert!(busy.reason.contains("95% used"), "{}", busy.reason);
        let failing = assess(&s, &with(snmp(false, 0.0, "timeout")), &addrs(), link, now, fresh);
        assert_eq!(failing.state, LinkState::Up, "a failing poll is not the link's fault: {}", failing.reason);
    }

    #[test]
    fn worse_is_recorded_quickly_better_only_after_it_held() {
        let mut s = state();
        let t0 = Instant::now();
        let mut judge = Judge::default();
        let at = |state: LinkState| {
            let ends = [
                EndView { site: "dc".into(), agent: None, report: None },
                EndView { site: "ndc".into(), agent: None, report: None },
            ];
            BTreeMap::from([("dwdm".to_string(), Assessment { state, reason: "r".into(), ends, snmp: Vec::new() })])
        };
        let ms = Duration::from_millis;
        // Unknown → up: after worse_after_ms (1 s), not before.
        assert!(judge.decide(&s, &at(LinkState::Up), t0).is_empty());
        assert!(judge.decide(&s, &at(LinkState::Up), t0 + ms(900)).is_empty());
        assert_eq!(judge.decide(&s, &at(LinkState::Up), t0 + ms(1000)).len(), 1);
        s.links.get_mut("dwdm").unwrap().state = LinkState::Up;
        // Up → down: 1 s.
        assert!(judge.decide(&s, &at(LinkState::Down), t0 + ms(2000)).is_empty());
        let c = judge.decide(&s, &at(LinkState::Down), t0 + ms(3000));
        assert!(matches!(&c[..], [Command::SetLinkState { state: LinkState::Down, .. }]), "{c:?}");
        s.links.get_mut("dwdm").unwrap().state = LinkState::Down;
        // Down → up flapping: each flap restarts the 5 s wait.
        assert!(judge.decide(&s, &at(LinkState::Up), t0 + ms(4000)).is_empty());
        assert!(judge.decide(&s, &at(LinkState::Down), t0 + ms(6000)).is_empty());
        assert!(judge.decide(&s, &at(LinkState::Up), t0 + ms(7000)).is_empty());
        assert!(judge.decide(&s, &at(LinkState::Up), t0 + ms(11_900)).is_empty());
        let c = judge.decide(&s, &at(LinkState::Up), t0 + ms(12_000));
        assert!(matches!(&c[..], [Command::SetLinkState { state: LinkState::Up, .. }]), "{c:?}");
    }
}
