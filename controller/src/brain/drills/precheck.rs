//! A drill's pre-checks: is it safe to start now? Pure: it reads `State`, the agents' latest
//! reports and the controllers' replication as the leader sees it, and returns every check with
//! its verdict, so that a refusal lists everything that failed at once and changes nothing.
//! `triadctl drill check PLAN` shows the same list without starting anything.

use triad_proto::replica;
use triad_proto::v1::DbStatus;

use crate::state::alerts::Severity;
use crate::state::drills::{Check, CheckName, DrillKind, DrillPlan};
use crate::state::State;

/// The controllers as the leader sees them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Controllers {
    /// This controller leads and a quorum acknowledged it within an election timeout.
    pub leader_has_quorum: bool,
    /// The voters, and those that lag the leader's log by more than [`MAX_VOTER_LAG`] entries
    /// (or have acknowledged nothing).
    pub voters: Vec<u64>,
    pub lagging: Vec<u64>,
}

/// How many log entries a voter may trail the leader and still count as keeping up.
pub const MAX_VOTER_LAG: u64 = 1_000;

/// An override of the critical-alert check: who asked, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub by: String,
    pub reason: String,
}

/// Every pre-check of `plan`, in a fixed order. `report` gives an agent's latest fresh report.
pub fn precheck(
    state: &State,
    plan: &DrillPlan,
    report: &dyn Fn(&str) -> Option<DbStatus>,
    controllers: &Controllers,
    alerts_override: Option<&Override>,
) -> Vec<Check> {
    let check = |name, ok, detail: String| Check { name, ok, detail, overridden: None };
    let Some(c) = state.clusters.get(&plan.cluster) else {
        let missing = format!("no cluster `{}`", plan.cluster);
        return vec![check(CheckName::MembersUp, false, missing)];
    };
    let mut out = vec![quorum(controllers)];
    // Every member up, at the cluster's epoch, its agent not fenced.
    let mut down = Vec::new();
    for m in c.members.values() {
        match report(&m.agent) {
            None => down.push(format!("`{}`'s agent is silent", m.name)),
            Some(d) if !d.up => {
                down.push(format!("`{}` is {}", m.name, if d.role.is_empty() { "down" } else { &d.role }))
            }
            Some(d) if d.epoch_unknown || d.agent_epoch != c.epoch => {
                down.push(format!("`{}`'s agent is not at epoch {}", m.name, c.epoch))
            }
            Some(_) => {}
        }
    }
    out.push(match down.is_empty() {
        true => check(CheckName::MembersUp, true, format!("{} members up at epoch {}", c.members.len(), c.epoch)),
        false => check(CheckName::MembersUp, false, down.join("; ")),
    });
    out.push(target_lag(c, plan, report));
    // Links between the primary's site and the target's.
    let primary_site = c.primary.as_ref().and_then(|p| c.members.get(p)).map(|m| m.site.clone()).unwrap_or_default();
    let target_site = c.members.get(&plan.target).map(|m| m.site.clone()).unwrap_or_default();
    out.push(match crate::state::links::blocking_link(&state.links, &c.name, &primary_site, &target_site) {
        Some(l) => check(CheckName::Links, false, crate::state::links::refusal(l, &c.name).to_string()),
        None => check(CheckName::Links, true, format!("no link between `{primary_site}` and `{target_site}` is down")),
    });
    out.push(match c.workflow {
        Some(w) => check(CheckName::NoWorkflow, false, format!("workflow {w} is under way on `{}`", c.name)),
        None => check(CheckName::NoWorkflow, true, "none under way".into()),
    });
    out.push(match c.paused {
        true => check(CheckName::NotPaused, false, format!("`{}` is paused (maintenance)", c.name)),
        false => check(CheckName::NotPaused, true, "not paused".into()),
    });
    out.push(critical_alerts(state, &[primary_site, target_site], alerts_override));
    out
}

fn quorum(controllers: &Controllers) -> Check {
    let (ok, detail) = if !controllers.leader_has_quorum {
        (false, "this controller does not lead with a quorum's fresh acknowledgement".to_string())
    } else if !controllers.lagging.is_empty() {
        let ids: Vec<String> = controllers.lagging.iter().map(|id| format!("controller-{id}")).collect();
        (false, format!("{} of {} voters lag the log: {}", ids.len(), controllers.voters.len(), ids.join(", ")))
    } else {
        (true, format!("{} voters keep up with the leader", controllers.voters.len()))
    };
    Check { name: CheckName::Quorum, ok, detail, overridden: None }
}

/// How far behind the primary the target is, by the primary's report of it: in seconds where the
/// database measures time, else nothing is known and the check fails (fail closed). A `dr-test`
/// copies the target as it is, but a copy far behind would prove little.
fn target_lag(c: &crate::state::DbCluster, plan: &DrillPlan, report: &dyn Fn(&str) -> Option<DbStatus>) -> Check {
    let fail = |detail: String| Check { name: CheckName::TargetLag, ok: false, detail, overridden: None };
    let Some(primary) = c.primary.as_ref().filter(|p| **p != plan.target || plan.kind == DrillKind::DrTest) else {
        return fail(format!("`{}` is the primary already: nothing to move to", plan.target));
    };
    let Some(p) = c.members.get(primary).and_then(|m| report(&m.agent)).filter(|d| d.up && d.role == "primary") else {
        return fail(format!("no report of `{primary}` running as the primary"));
    };
    let Some(r) = p.replicas.iter().find(|r| r.name == plan.target) else {
        return fail(format!("`{}` does not stream from `{primary}`", plan.target));
    };
    let lag_s = [r.flush_lag_seconds, r.replay_lag_seconds]
        .into_iter()
        .filter(|s| *s >= 0.0)
        .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.max(s))));
    let lag_ms = match lag_s {
        Some(s) => (s * 1000.0) as u64,
        None if replica::caught_up(r) => 0,
        None => return fail(format!("`{}`'s lag is not measured", plan.target)),
    };
    let ok = lag_ms <= plan.max_lag_ms;
    let detail = format!("`{}` is {lag_ms} ms behind `{primary}` (bound {} ms)", plan.target, plan.max_lag_ms);
    Check { name: CheckName::TargetLag, ok, detail, overridden: None }
}

/// Unresolved critical alerts placed at the sites involved.
fn critical_alerts(state: &State, sites: &[String], alerts_override: Option<&Override>) -> Check {
    let open: Vec<String> = state
        .alerts
        .alerts
        .values()
        .filter(|a| a.severity == Severity::Critical && !a.status.is_closed())
        .filter(|a| sites.iter().any(|s| !s.is_empty() && *s == a.place.site))
        .map(|a| format!("#{} {} ({})", a.id, a.title, a.place.site))
        .collect();
    if open.is_empty() {
        return Check { name: CheckName::NoCriticalAlert, ok: true, detail: "none open".into(), overridden: None };
    }
    let detail = format!("{} unresolved critical alert(s): {}", open.len(), open.join("; "));
    let overridden = alerts_override.map(|o| format!("overridden by {}: {}", o.by, o.reason));
    Check { name: CheckName::NoCriticalAlert, ok: false, detail, overridden }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use triad_proto::v1::{ReplicaState, ReplicaStatus};

    use super::*;
    use crate::state::alerts::IncomingAlert;
    use crate::state::drills::plan_for_test;
    use crate::state::{Actor, Command, DbCluster, Proposal, Role, Site};

    fn state() -> State {
        let mut s = State::default();
        for site in ["dc", "ndc", "dr"] {
            s.sites.insert(site.into(), Site { name: site.into(), description: String::new(), city: site.into() });
        }
        let mut c = DbCluster::for_test(&["dc", "ndc", "dr"], "agent-");
        (c.epoch, c.primary) = (1, Some("dc".into()));
        s.clusters.insert("customs".into(), c);
        s
    }

    fn reports(ndc_lag_s: f64) -> HashMap<String, DbStatus> {
        let up = |role: &str| DbStatus { up: true, role: role.into(), agent_epoch: 1, ..Default::default() };
        let replica = |name: &str, lag: f64| ReplicaStatus {
            name: name.into(),
            replica_state: ReplicaState::Streaming as i32,
            flush_lag_seconds: lag,
            replay_lag_seconds: lag,
            ..Default::default()
        };
        let dc = DbStatus { replicas: vec![replica("ndc", ndc_lag_s), replica("dr", 0.5)], ..up("primary") };
        HashMap::from([
            ("agent-dc".to_string(), dc),
            ("agent-ndc".to_string(), up("standby")),
            ("agent-dr".to_string(), up("standby")),
        ])
    }

    fn healthy() -> Controllers {
        Controllers { leader_has_quorum: true, voters: vec![1, 2, 3], lagging: Vec::new() }
    }

    fn failed(checks: &[Check]) -> Vec<CheckName> {
        checks.iter().filter(|c| !c.passes()).map(|c| c.name).collect()
    }

    #[test]
    fn a_healthy_cluster_passes_every_check() {
        let (s, r) = (state(), reports(0.2));
        let plan = plan_for_test("roundtrip", DrillKind::SwitchoverRoundtrip, "ndc");
        let checks = precheck(&s, &plan, &|a| r.get(a).cloned(), &healthy(), None);
        assert_eq!(checks.len(), 7, "{checks:#?}");
        assert!(failed(&checks).is_empty(), "{checks:#?}");
    }

    #[test]
    fn each_failure_is_listed_with_what_was_found() {
        let mut s = state();
        let mut r = reports(9.0);
        r.remove("agent-dr");
        s.clusters.get_mut("customs").unwrap().paused = true;
        let controllers = Controllers { lagging: vec![3], ..healthy() };
        let plan = plan_for_test("roundtrip", DrillKind::SwitchoverRoundtrip, "ndc");
        let checks = precheck(&s, &plan, &|a| r.get(a).cloned(), &controllers, None);
        assert_eq!(
            failed(&checks),
            [CheckName::Quorum, CheckName::MembersUp, CheckName::TargetLag, CheckName::NotPaused],
            "{checks:#?}"
        );
        let detail = |n| checks.iter().find(|c| c.name == n).map(|c| c.detail.clone()).unwrap_or_default();
        assert!(detail(CheckName::MembersUp).contains("`dr`'s agent is silent"));
        assert!(detail(CheckName::TargetLag).contains("9000 ms behind `dc` (bound 5000 ms)"));
        assert!(detail(CheckName::Quorum).contains("controller-3"));
        // Nothing known of the target's lag: not a pass.
        let mut unknown = reports(-1.0);
        unknown.get_mut("agent-dc").unwrap().replicas[0].replay_lag_seconds = -1.0;
        let checks = precheck(&state(), &plan, &|a| unknown.get(a).cloned(), &healthy(), None);
        assert_eq!(failed(&checks), [CheckName::TargetLag]);
    }

    #[test]
    fn a_critical_alert_at_a_site_involved_refuses_unless_overridden() {
        let mut s = state();
        let alert =
            IncomingAlert { site: "dc".into(), ..IncomingAlert::for_test("ups-on-battery", 1_000, Severity::Critical) };
        let actor = Actor { name: "siem".into(), role: Role::System, origin: "test".into() };
        let ingest = Command::IngestAlerts { source: "siem".into(), events: vec![alert] };
        s.apply(1, &Proposal { at_ms: 1_000, actor, command: ingest }, &mut Vec::new());
        let r = reports(0.0);
        let plan = plan_for_test("roundtrip", DrillKind::SwitchoverRoundtrip, "ndc");
        let checks = precheck(&s, &plan, &|a| r.get(a).cloned(), &healthy(), None);
        assert_eq!(failed(&checks), [CheckName::NoCriticalAlert], "{checks:#?}");
        let by = Override { by: "noc-1".into(), reason: "the UPS test is scheduled".into() };
        let checks = precheck(&s, &plan, &|a| r.get(a).cloned(), &healthy(), Some(&by));
        assert!(failed(&checks).is_empty());
        let alert = checks.iter().find(|c| c.name == CheckName::NoCriticalAlert).unwrap();
        assert!(!alert.ok && alert.overridden.as_deref() == Some("overridden by noc-1: the UPS test is scheduled"));
        // An alert elsewhere (dr is not involved in dc→ndc) does not count.
        let dr_plan = plan_for_test("roundtrip", DrillKind::SwitchoverRoundtrip, "ndc");
        let mut elsewhere = state();
        let alert = IncomingAlert { site: "dr".into(), ..IncomingAlert::for_test("flood", 1_000, Severity::Critical) };
        let actor = Actor { name: "siem".into(), role: Role::System, origin: "test".into() };
        let ingest = Command::IngestAlerts { source: "siem".into(), events: vec![alert] };
        elsewhere.apply(1, &Proposal { at_ms: 1_000, actor, command: ingest }, &mut Vec::new());
        assert!(failed(&precheck(&elsewhere, &dr_plan, &|a| r.get(a).cloned(), &healthy(), None)).is_empty());
    }
}
