//! Drill runs (`brain/drills/`) against the simulated cluster: the real brain, Raft and RocksDB,
//! simulated agents. A roundtrip moves the primary there and back with the plan's services
//! checked before, there and back, and the state judges it; a service failing before anything
//! moves ends the run with nothing moved. On real processes: `tests/tests/drill_runs.rs`.

use std::time::{Duration, Instant};

use super::{SimCluster, CLUSTER};
use crate::brain::drills::Started;
use crate::brain::{Brain, Requests};
use crate::config::ControllerConfig;
use crate::state::drills::{plan_for_test, DrillKind, DrillResult, DrillRun, DrillTargets};
use crate::state::services::{ServiceInstance, ServiceKind, ServiceSpec};
use crate::state::{Actor, Role};

fn noc() -> Actor {
    Actor { name: "noc-1".into(), role: Role::Noc, origin: "test".into() }
}

/// A service `payments` (group 2, in ndc and dr) and a roundtrip plan to ndc that checks it.
fn with_plan(cfg: &mut ControllerConfig) {
    cfg.services = vec![ServiceSpec {
        name: "payments".into(),
        cluster: CLUSTER.into(),
        kind: ServiceKind::Tcp,
        group: 2,
        instances: ["ndc", "dr"]
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
        pre_hook: String::new(),
        post_hook: String::new(),
        hook_timeout_ms: 5000,
    }];
    let plan = plan_for_test("roundtrip", DrillKind::SwitchoverRoundtrip, "ndc");
    let targets = DrillTargets { rto_ms: 60_000, rpo_ms: 0, max_write_outage_ms: 60_000 };
    cfg.drills = vec![crate::state::drills::DrillPlan { targets, services: vec!["payments".into()], ..plan }];
}

/// Starts the plan once the leader has seeded it and heard every agent, and dc has written a
/// canary at the adopted epoch (the first move's outage is measured from it).
async fn start(sim: &SimCluster) -> u64 {
    let brain = Brain::new(sim.ctx.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while sim.member("dc").canary.1 != 1 {
        assert!(Instant::now() < deadline, "dc wrote no canary at epoch 1");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loop {
        match brain.start_drill(noc(), "roundtrip".into(), None).await {
            Ok(Started::Running(id)) => return id,
            Ok(Started::Refused(checks)) if Instant::now() > deadline => panic!("refused: {checks:#?}"),
            Err(e) if Instant::now() > deadline => panic!("not started: {e}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn ended(sim: &SimCluster, id: u64) -> DrillRun {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = sim.ctx.state.read().expect("state lock").state.drill_runs.get(&id).cloned();
        if let Some(run) = run.as_ref().filter(|r| r.end.is_some()) {
            return run.clone();
        }
        assert!(Instant::now() < deadline, "drill {id} did not end: {run:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roundtrip_moves_there_and_back_checking_its_services_and_is_judged_by_the_state() {
    let sim = SimCluster::start(with_plan).await;
    let id = start(&sim).await;
    let run = ended(&sim, id).await;
    let end = run.end.clone().expect("ended");
    assert_eq!(end.result, DrillResult::Passed, "{run:#?}");
    assert_eq!((run.origin.as_str(), end.primary.as_str()), ("dc", "dc"));
    let moves: Vec<(&str, &str, bool)> = run.legs.iter().map(|l| (l.from.as_str(), l.to.as_str(), l.moved)).collect();
    assert_eq!(moves, [("dc", "ndc", true), ("ndc", "dc", true)]);
    assert!(run.legs.iter().all(|l| l.write_outage_ms.is_some() && l.data_loss_ms == Some(0)), "{run:#?}");
    let checked: Vec<String> = run.checks.iter().map(|c| format!("{} {} {}", c.step, c.service, c.ok)).collect();
    assert_eq!(checked, ["checks-before payments true", "checks-there payments true", "checks-back payments true"]);
    // The role changes' own checks of the service, group and time after the promote included.
    assert!(run.legs.iter().all(|l| l.services_back.iter().any(|c| c.service == "payments" && c.group == 2)));
    assert_eq!(sim.cluster().epoch, 3);
    assert_eq!(sim.writable(), ["dc"]);
    sim.assert_never_two_writable();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_failing_before_the_move_ends_the_run_with_nothing_moved() {
    let sim = SimCluster::start(with_plan).await;
    sim.world.lock().expect("world lock").failing_actions.insert("check payments".into());
    let id = start(&sim).await;
    let run = ended(&sim, id).await;
    let end = run.end.clone().expect("ended");
    assert_eq!(end.result, DrillResult::Failed, "{run:#?}");
    assert!(end.why.starts_with("step checks-before failed: 1 of 1 service(s) fail: payments"), "{}", end.why);
    assert!(run.legs.is_empty() && run.steps.len() == 1, "{run:#?}");
    let c = sim.cluster();
    assert_eq!((c.epoch, c.primary.as_deref(), c.workflow), (1, Some("dc"), None));
    assert!(!sim.member("dc").received.contains(&"stop_primary"), "{:?}", sim.member("dc").received);
}
