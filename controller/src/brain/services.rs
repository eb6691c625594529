//! The services' health, on the leader: the checks each agent runs (its `CheckPlan`), and each
//! service's health judged from their latest results. An instance counts as answering after two
//! passing checks in a row and as failing after three failing ones (HAProxy's rise and fall);
//! one whose agent has not reported lately counts as failing: a guard without an observation
//! takes the safe side.

use std::collections::{BTreeMap, HashMap};

use triad_proto::v1::{CheckPlan, ServiceCheck, ServiceCheckReport};

use super::observations::AgentObservation;
use crate::context::Ctx;
use crate::state::services::{Service, ServiceHealth};
use crate::state::{Command, State};

/// Passing checks in a row before an instance counts as answering, and failing ones before it
/// counts as failing.
pub const RISE: u32 = 2;
pub const FALL: u32 = 3;

/// The checks `agent` runs: every instance it is named for.
pub fn plan(state: &State, agent: &str) -> CheckPlan {
    let checks = state
        .services
        .values()
        .flat_map(|s| s.spec.instances.iter().filter(|i| i.agent == agent).map(move |i| (s, i)))
        .map(|(s, i)| ServiceCheck {
            service: s.spec.name.clone(),
            kind: s.spec.kind.to_string(),
            target: i.target.clone(),
            query: s.spec.query.clone(),
            expect: s.spec.expect.clone(),
            interval_ms: s.spec.interval_ms,
            timeout_ms: s.spec.timeout_ms,
        })
        .collect();
    CheckPlan { checks }
}

/// [`plan`] on this controller's state.
pub fn plan_for(ctx: &Ctx, agent: &str) -> CheckPlan {
    plan(&ctx.state.read().expect("state lock poisoned").state, agent)
}

/// One instance as the leader sees it now.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceView {
    pub site: String,
    pub target: String,
    /// Answering (true), failing (false), or settling between the two (None).
    pub answering: Option<bool>,
    /// The latest check's error, or why there is no result.
    pub detail: String,
    pub latency_ms: Option<f64>,
}

/// A service's health as its instances show it now, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub health: ServiceHealth,
    pub reason: String,
    pub instances: Vec<InstanceView>,
}

/// The latest report of `target` from `agent`, if the agent was heard within `fresh_ms` and the
/// check ran within three of its intervals.
fn fresh_report<'a>(
    obs: &'a HashMap<String, AgentObservation>,
    agent: &str,
    service: &Service,
    target: &str,
    now_ms: u64,
    fresh_ms: u64,
) -> Option<&'a ServiceCheckReport> {
    let o = obs.get(agent).filter(|o| now_ms.saturating_sub(o.last_seen_ms) <= fresh_ms)?;
    let stale_after = 3 * u64::from(service.spec.interval_ms);
    o.services.iter().find(|r| r.service == service.spec.name && r.target == target && r.age_ms <= stale_after)
}

/// Judges `service` from the agents' latest reports.
pub fn assess(service: &Service, obs: &HashMap<String, AgentObservation>, now_ms: u64, fresh_ms: u64) -> Assessment {
    let was_up = service.health == ServiceHealth::Up;
    let instances: Vec<InstanceView> = service
        .spec
        .instances
        .iter()
        .map(|i| match fresh_report(obs, &i.agent, service, &i.target, now_ms, fresh_ms) {
            None => InstanceView {
                site: i.site.clone(),
                target: i.target.clone(),
                answering: Some(false),
                detail: format!("no recent check result from {}", i.agent),
                latency_ms: None,
            },
            Some(r) => {
                let answering = match (r.ok, r.streak) {
                    (true, n) if n >= RISE => Some(true),
                    (false, n) if n >= FALL => Some(false),
                    // Settling between the two: it keeps the service's recorded judgement.
                    _ if was_up => Some(true),
                    _ => None,
                };
                InstanceView {
                    site: i.site.clone(),
                    target: i.target.clone(),
                    answering,
                    detail: r.error.clone(),
                    latency_ms: Some(r.latency_ms),
                }
            }
        })
        .collect();
    let heard = service
        .spec
        .instances
        .iter()
        .any(|i| fresh_report(obs, &i.agent, service, &i.target, now_ms, fresh_ms).is_some());
    let up = instances.iter().filter(|i| i.answering == Some(true)).count();
    let failing: Vec<String> = instances
        .iter()
        .filter(|i| i.answering != Some(true))
        .map(|i| format!("{} ({}): {}", i.site, i.target, if i.detail.is_empty() { "settling" } else { &i.detail }))
        .collect();
    let health = match () {
        _ if !heard => ServiceHealth::Unknown,
        _ if up == instances.len() => ServiceHealth::Up,
        _ if up == 0 => ServiceHealth::Down,
        _ => ServiceHealth::Degraded,
    };
    let reason = match health {
        ServiceHealth::Unknown => "no check result from any of its agents".to_string(),
        ServiceHealth::Up => format!("{up} of {} answering", instances.len()),
        _ => failing.join("; "),
    };
    Assessment { health, reason, instances }
}

/// Every service, judged on the agents' observations `obs`.
pub fn assess_all(ctx: &Ctx, obs: &HashMap<String, AgentObservation>) -> BTreeMap<String, Assessment> {
    let now_ms = crate::context::now_ms();
    let fresh_ms = ctx.cfg.agents.down_after_ms;
    let g = ctx.state.read().expect("state lock poisoned");
    g.state.services.iter().map(|(name, s)| (name.clone(), assess(s, obs, now_ms, fresh_ms))).collect()
}

/// The health changes to record: a service whose assessment differs from its recorded health.
/// The rise and fall counts are the hysteresis, so a change is recorded at once.
pub fn decide(state: &State, assessed: &BTreeMap<String, Assessment>) -> Vec<Command> {
    state
        .services
        .iter()
        .filter_map(|(name, s)| {
            let a = assessed.get(name)?;
            (a.health != s.health).then(|| Command::SetServiceHealth {
                service: name.clone(),
                health: a.health,
                reason: a.reason.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::state::services::{ServiceInstance, ServiceKind, ServiceSpec};

    fn service(health: ServiceHealth) -> Service {
        let instance = |site: &str| ServiceInstance {
            site: site.into(),
            agent: format!("agent-{site}"),
            target: format!("app-{site}:8080"),
        };
        Service {
            spec: ServiceSpec {
                name: "asycuda".into(),
                cluster: "customs".into(),
                kind: ServiceKind::Tcp,
                group: 1,
                instances: vec![instance("dc"), instance("ndc")],
                query: String::new(),
                expect: String::new(),
                interval_ms: 1000,
                timeout_ms: 500,
                pre_hook: String::new(),
                post_hook: String::new(),
                hook_timeout_ms: 30_000,
            },
            health,
            since_ms: 0,
            reason: String::new(),
        }
    }

    fn heard(site: &str, ok: bool, streak: u32, age_ms: u64) -> (String, AgentObservation) {
        let mut o = AgentObservation::for_test(site, Instant::now(), None);
        o.last_seen_ms = 10_000;
        o.services.push(ServiceCheckReport {
            service: "asycuda".into(),
            target: format!("app-{site}:8080"),
            ok,
            latency_ms: 1.0,
            error: if ok { String::new() } else { "connect: refused".into() },
            age_ms,
            streak,
        });
        (format!("agent-{site}"), o)
    }

    #[test]
    fn health_follows_the_instances_with_rise_and_fall() {
        let obs = HashMap::from([heard("dc", true, 2, 100), heard("ndc", true, 5, 100)]);
        assert_eq!(assess(&service(ServiceHealth::Unknown), &obs, 10_000, 1_000).health, ServiceHealth::Up);
        // One failing check is not a failing instance for a service that is up...
        let obs = HashMap::from([heard("dc", false, 1, 100), heard("ndc", true, 5, 100)]);
        assert_eq!(assess(&service(ServiceHealth::Up), &obs, 10_000, 1_000).health, ServiceHealth::Up);
        // ...three are.
        let obs = HashMap::from([heard("dc", false, 3, 100), heard("ndc", true, 5, 100)]);
        let a = assess(&service(ServiceHealth::Up), &obs, 10_000, 1_000);
        assert_eq!(a.health, ServiceHealth::Degraded);
        assert!(a.reason.contains("dc (app-dc:8080): connect: refused"), "{}", a.reason);
        let obs = HashMap::from([heard("dc", false, 3, 100), heard("ndc", false, 4, 100)]);
        assert_eq!(assess(&service(ServiceHealth::Degraded), &obs, 10_000, 1_000).health, ServiceHealth::Down);
    }

    #[test]
    fn an_agent_not_heard_lately_counts_against_the_service() {
        // ndc's agent silent (last heard 10 s ago, fresh means 1 s): not taken for answering.
        let (dc, o_dc) = heard("dc", true, 9, 100);
        let (ndc, mut o_ndc) = heard("ndc", true, 9, 100);
        o_ndc.last_seen_ms = 0;
        let obs = HashMap::from([(dc, o_dc), (ndc, o_ndc)]);
        let a = assess(&service(ServiceHealth::Up), &obs, 10_000, 1_000);
        assert_eq!(a.health, ServiceHealth::Degraded);
        assert!(a.reason.contains("no recent check result from agent-ndc"), "{}", a.reason);
        // A result older than three intervals is stale too; nobody heard at all is unknown.
        let obs = HashMap::from([heard("dc", true, 9, 5_000)]);
        assert_eq!(assess(&service(ServiceHealth::Up), &obs, 10_000, 1_000).health, ServiceHealth::Unknown);
    }

    #[test]
    fn each_agent_checks_only_its_instances() {
        let mut state = State::default();
        state.services.insert("asycuda".into(), service(ServiceHealth::Unknown));
        let p = plan(&state, "agent-ndc");
        assert_eq!(p.checks.len(), 1);
        assert_eq!((p.checks[0].kind.as_str(), p.checks[0].target.as_str()), ("tcp", "app-ndc:8080"));
        assert!(plan(&state, "agent-dr").checks.is_empty());
    }
}
