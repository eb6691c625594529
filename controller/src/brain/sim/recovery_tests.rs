//! The recovery plan of a role change (`brain/recovery_plan.rs`) against the simulated cluster:
//! services' hooks and checks group by group, balancers told before and after the promotion, a
//! failing pre-hook aborting before anything changed, a failing post-hook reported and alerted.
//! The same on real processes, with a real HAProxy: `tests/tests/role_change_services.rs`.

use std::time::Duration;

use super::{SimCluster, CLUSTER};
use crate::brain::{Brain, RequestError, Requests};
use crate::config::balancers::BalancerConfig;
use crate::config::ControllerConfig;
use crate::state::services::{ServiceInstance, ServiceKind, ServiceSpec};
use crate::state::{Actor, Role};

fn noc() -> Actor {
    Actor { name: "noc-1".into(), role: Role::Noc, origin: "test".into() }
}

/// `asycuda` in group 1 (hooks, in dc and ndc) and `payments` in group 2 (hooks, in ndc and
/// dr), and a balancer whose agent is dr's.
fn recovery_plan(cfg: &mut ControllerConfig) {
    let service = |name: &str, group: u32, sites: &[&str]| ServiceSpec {
        name: name.into(),
        cluster: CLUSTER.into(),
        kind: ServiceKind::Tcp,
        group,
        instances: sites
            .iter()
            .map(|s| ServiceInstance {
                site: s.to_string(),
                agent: format!("agent-{s}"),
                target: format!("{s}-app:80"),
            })
            .collect(),
        query: String::new(),
        expect: String::new(),
        interval_ms: 1000,
        timeout_ms: 500,
        pre_hook: format!("/etc/triad/hooks/{name}-pre"),
        post_hook: format!("/etc/triad/hooks/{name}-post"),
        hook_timeout_ms: 5000,
    };
    cfg.services = vec![service("payments", 2, &["ndc", "dr"]), service("asycuda", 1, &["dc", "ndc"])];
    cfg.balancers = vec![BalancerConfig {
        name: "haproxy-dr".into(),
        cluster: CLUSTER.into(),
        agent: "agent-dr".into(),
        site: "dr".into(),
        socket: "/run/haproxy/admin.sock".into(),
        write_backend: String::new(),
        read_backend: String::new(),
    }];
}

/// What the balancer is told once ndc holds its lease: ndc in the writers first, then the
/// others out of the writers and into the readers.
const IN: &str = "balancer ready+up customs-rw/ndc, balancer maint customs-ro/ndc, balancer maint customs-rw/dc, \
                  balancer ready customs-ro/dc, balancer maint customs-rw/dr, balancer ready customs-ro/dr";

/// The whole plan of a move from dc to ndc, in order.
const PLAN: [&str; 8] = [
    "pre-hook asycuda",
    "pre-hook payments",
    "balancer maint customs-rw/dc",
    IN,
    "post-hook asycuda",
    "check asycuda",
    "post-hook payments",
    "check payments",
];

async fn switchover(sim: &SimCluster, to: &str) -> Result<crate::brain::switchover::Outcome, RequestError> {
    Brain::new(sim.ctx.clone()).switchover(noc(), CLUSTER.into(), to.into()).await
}

/// The actions run, without the member and epoch suffix, in order, deduplicated (a service's
/// instances run the same action), without the leader's syncs of the balancers once per epoch
/// outside role changes (the primary `ready` with no health forced: [`synced`]).
fn actions(sim: &SimCluster) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in role_change_actions(sim) {
        let what = a.split('@').next().unwrap_or_default().to_string();
        if out.last() != Some(&what) {
            out.push(what);
        }
    }
    out
}

/// Whether `action` is one of the leader's balancer syncs.
fn synced(action: &str) -> bool {
    action.starts_with("balancer ready customs-rw/")
}

/// Every action but the syncs, with its member and epoch.
fn role_change_actions(sim: &SimCluster) -> Vec<String> {
    sim.world.lock().expect("world lock").actions.iter().filter(|a| !synced(a)).cloned().collect()
}

/// The open alerts' fingerprints.
fn open_alerts(sim: &SimCluster) -> Vec<String> {
    let g = sim.ctx.state.read().expect("state lock");
    g.state
        .alerts
        .alerts
        .values()
        .filter(|a| a.status == crate::state::alerts::AlertStatus::Open)
        .map(|a| a.fingerprint.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_runs_the_recovery_plan_group_by_group_around_the_promotion() {
    let sim = SimCluster::start(recovery_plan).await;
    let outcome = switchover(&sim, "ndc").await.expect("the switchover");
    assert!(outcome.summary.lines().last().unwrap_or_default().starts_with("completed in "), "{}", outcome.summary);
    assert_eq!(
        actions(&sim),
        PLAN,
        "group 1 before group 2, the old primary out before the promotion, the new one in first after it"
    );
    // The pre-hooks and the old primary's removal at the old epoch, the rest at the new one.
    let all = role_change_actions(&sim);
    for a in &all {
        let before = a.starts_with("pre-hook") || a.starts_with("balancer maint customs-rw/dc");
        assert!(a.ends_with(if before { " e1" } else { " e2" }), "{a} in {all:#?}");
    }
    assert_eq!(all.iter().filter(|a| a.starts_with("pre-hook asycuda")).count(), 2, "both instances: {all:#?}");
    sim.assert_never_two_writable();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pre_hook_aborts_the_switchover_before_anything_changes() {
    let sim = SimCluster::start(recovery_plan).await;
    sim.world.lock().expect("world lock").failing_actions.insert("pre-hook payments".into());
    let err = switchover(&sim, "ndc").await.expect_err("aborted");
    let why = err.to_string();
    assert!(why.contains("aborted before the promotion: pre-hook of group 2 failed: payments@"), "{why}");
    let c = sim.cluster();
    assert_eq!((c.epoch, c.primary.as_deref(), c.workflow), (1, Some("dc"), None));
    assert_eq!(sim.writable(), ["dc"], "dc was never stopped");
    assert!(!sim.member("dc").received.contains(&"stop_primary"), "{:?}", sim.member("dc").received);
    assert!(!sim.member("ndc").received.contains(&"promote"));
    assert_eq!(actions(&sim), ["pre-hook asycuda", "pre-hook payments"], "no balancer was touched");
    assert!(
        open_alerts(&sim).contains(&"role-change:customs:payments:pre-hook".to_string()),
        "{:?}",
        open_alerts(&sim)
    );
    assert!(sim.outcomes().iter().any(|o| o.starts_with("switchover: aborted before the promotion")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_post_hook_completes_with_errors_and_raises_an_alert() {
    let sim = SimCluster::start(recovery_plan).await;
    sim.world.lock().expect("world lock").failing_actions.insert("post-hook payments".into());
    let outcome = switchover(&sim, "ndc").await.expect("the switchover itself succeeds");
    let last = outcome.summary.lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("completed with errors (post-hook payments@"), "{}", outcome.summary);
    assert_eq!(sim.cluster().primary.as_deref(), Some("ndc"));
    assert!(actions(&sim).ends_with(&["post-hook payments".to_string(), "check payments".to_string()]));
    assert!(open_alerts(&sim).contains(&"role-change:customs:payments:post-hook".to_string()));
    let recorded = sim.outcomes();
    assert!(recorded.iter().any(|o| o.starts_with("switchover: completed with errors")), "{recorded:#?}");
}

/// The primary's site lost: its instances are skipped (their agent is gone with it), the rest of
/// the plan runs, and the failover completes without errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_skips_the_lost_site_and_runs_the_rest_of_the_plan() {
    let sim = SimCluster::start(recovery_plan).await;
    sim.set("dc", |m| (m.linked, m.running) = (false, false));
    sim.wait_until("ndc is primary at epoch 2 and the failover ended", Duration::from_secs(40), |c, w| {
        c.epoch == 2 && c.primary.as_deref() == Some("ndc") && w.members["ndc"].writable() && c.workflow.is_none()
    })
    .await;
    let outcomes = sim.outcomes();
    assert!(outcomes.iter().any(|o| o.starts_with("failover: completed: ndc is primary")), "{outcomes:#?}");
    assert_eq!(actions(&sim), PLAN);
    let all = role_change_actions(&sim);
    assert!(!all.iter().any(|a| a.contains("@dc ")), "nothing ran at the lost site: {all:#?}");
    let g = sim.ctx.state.read().expect("state lock");
    let w = g.state.workflows.values().find(|w| w.kind == crate::state::WorkflowKind::Failover).expect("the failover");
    assert!(
        w.steps.iter().any(|s| s.name == "pre-hook" && s.note.contains("asycuda@dc: skipped: agent-dc has no stream")),
        "{:#?}",
        w.steps
    );
}

/// A router that records what it is told (the Kubernetes edge has its own tests against a
/// mocked API server, `kubernetes/tests.rs`).
#[derive(Default)]
struct Recorded(std::sync::Mutex<Vec<crate::brain::router::Route>>);

#[async_trait::async_trait]
impl crate::brain::router::Router for Recorded {
    fn name(&self) -> &str {
        "recorded"
    }

    async fn apply(&self, route: &crate::brain::router::Route) -> Result<String, crate::brain::router::RouteError> {
        self.0.lock().expect("routes").push(route.clone());
        Ok("recorded".into())
    }
}

/// The router hears the take-out at the old epoch before the promotion and the put-in at the
/// new one after it; a switchover rolled back before its epoch puts the old primary back with a
/// step that outranks the take-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_hears_out_then_in_and_back_after_a_rollback() {
    use crate::brain::router::RouteStep;
    let routes = std::sync::Arc::new(Recorded::default());
    let sim = SimCluster::start_routed(|_| {}, Some(routes.clone())).await;
    switchover(&sim, "ndc").await.expect("the switchover");
    let seen: Vec<(u64, RouteStep, Option<String>)> =
        routes.0.lock().expect("routes").iter().map(|r| (r.version.epoch, r.version.step, r.primary.clone())).collect();
    // The leader also syncs the routes once per epoch while no role change runs (dc in at 1 after
    // the adoption, ndc in at 2 after the switchover): those aside, out at 1 then in at 2.
    let ndc = Some("ndc".to_string());
    let (first, second) =
        (seen.iter().position(|s| s.1 == RouteStep::Out).expect("an out"), (2, RouteStep::In, ndc.clone()));
    assert_eq!(seen[first], (1, RouteStep::Out, None), "{seen:?}");
    assert_eq!(seen.get(first + 1), Some(&second), "{seen:?}");
    assert!(seen[..first].iter().all(|s| *s == (1, RouteStep::In, Some("dc".to_string()))), "{seen:?}");
    assert!(seen[first + 1..].iter().all(|s| *s == second), "{seen:?}");
    let put_in = routes.0.lock().expect("routes")[first + 1].clone();
    assert_eq!(
        (put_in.primary_site.as_str(), put_in.standbys.clone()),
        ("ndc", vec!["dc".to_string(), "dr".to_string()])
    );

    // dc's catch-up fails (ndc refuses to wait): rolled back before a new epoch.
    routes.0.lock().expect("routes").clear();
    sim.set("dc", |m| {
        m.refuses.insert("wait_replayed");
    });
    let err = switchover(&sim, "dc").await.expect_err("rolled back");
    assert!(err.to_string().contains("rolled back"), "{err}");
    let seen: Vec<(u64, RouteStep, Option<String>)> =
        routes.0.lock().expect("routes").iter().map(|r| (r.version.epoch, r.version.step, r.primary.clone())).collect();
    let moves: Vec<_> = seen.into_iter().filter(|s| s.1 != RouteStep::In).collect();
    assert_eq!(moves, [(2, RouteStep::Out, None), (2, RouteStep::Back, Some("ndc".to_string()))]);
}
