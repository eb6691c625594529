//! What a drill run does next, decided from the replicated state alone (its recorded steps, the
//! cluster, the workflows), so that a leader that takes over mid-drill picks it up where its
//! predecessor left it: a move under way is left to the workflow's own recovery (it finishes or
//! rolls back, DESIGN.md's rule) and then read from its record; a step of checks is run again.
//! Pure: the driver (`run.rs`) carries the decision out and asks again.

use std::collections::BTreeMap;

use crate::state::drills::{DrillRun, DrillStepKind};
use crate::state::{DbCluster, Workflow, WorkflowKind};

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The run has ended.
    Done,
    /// Record the start of this step.
    Begin(DrillStepKind),
    /// Run the plan's application checks of the step under way.
    Checks(DrillStepKind),
    /// dr-test: make the copy of the step under way.
    MakeCopy,
    /// dr-test: destroy the copy (the step under way).
    DestroyCopy,
    /// failover-rehearsal: stop the primary (`origin`) at once.
    FailPrimary,
    /// failover-rehearsal: wait for the automatic failover to start (restoring the primary if it
    /// does not).
    AwaitFailover,
    /// failover-rehearsal: wait for the old primary to rejoin as a standby.
    AwaitRejoin,
    /// Start the move of the step under way: a switchover of the cluster from `from` to `to`.
    Move { step: DrillStepKind, from: String, to: String },
    /// The move's workflow ended: record its leg (if not yet) and end the step.
    Adopt { step: DrillStepKind, workflow: u64 },
    /// End the step under way without running it.
    EndStep { ok: bool, note: String },
    /// A workflow runs on the cluster: ask again shortly.
    Wait(String),
    /// End the run (the state judges it; `failure` when it stopped on something not a step).
    Finish { failure: Option<String> },
}

/// The members a move step takes the primary from and to.
pub fn ends(run: &DrillRun, step: DrillStepKind) -> (String, String) {
    match step {
        DrillStepKind::SwitchBack => (run.plan.target.clone(), run.origin.clone()),
        _ => (run.origin.clone(), run.plan.target.clone()),
    }
}

/// The newest switchover of `c` from `from` to `to` started at or after `since_ms`.
pub fn move_workflow<'a>(
    c: &DbCluster,
    workflows: &'a BTreeMap<u64, Workflow>,
    from: &str,
    to: &str,
    since_ms: u64,
) -> Option<&'a Workflow> {
    workflows.values().rev().find(|w| {
        w.cluster == c.name
            && w.kind == WorkflowKind::Switchover
            && w.from == from
            && w.to == to
            && w.started_ms >= since_ms
    })
}

/// Whether a failed step ends the run at once: a move that did not happen, checks that failed
/// before anything moved, a copy not made. Checks that fail on the target do not: the run still
/// moves the primary back (and fails); nor do checks of a copy, which is destroyed all the same.
fn stops_the_run(step: DrillStepKind) -> bool {
    use DrillStepKind::*;
    step.moves() || matches!(step, ChecksBefore | CopyMake | FailPrimary | AwaitFailover | AwaitRejoin)
}

/// The newest workflow of `kind` on `c` started at or after `since_ms`.
pub fn workflow_since<'a>(
    c: &DbCluster,
    workflows: &'a BTreeMap<u64, Workflow>,
    kind: WorkflowKind,
    since_ms: u64,
) -> Option<&'a Workflow> {
    workflows.values().rev().find(|w| w.cluster == c.name && w.kind == kind && w.started_ms >= since_ms)
}

/// A dr-test that began making its copy and has not begun destroying it: whatever happened
/// since (a failure, an abort), the copy is destroyed before the run ends.
fn copy_to_destroy(run: &DrillRun) -> bool {
    let begun = |k: DrillStepKind| run.steps.iter().any(|s| s.kind == k);
    begun(DrillStepKind::CopyMake) && !begun(DrillStepKind::CopyDestroy)
}

/// What run `run` of cluster `c` does next.
pub fn next(run: &DrillRun, c: &DbCluster, workflows: &BTreeMap<u64, Workflow>) -> Next {
    if run.end.is_some() {
        return Next::Done;
    }
    let aborting = run.abort.is_some();
    if let Some(open) = run.open_step() {
        match open.kind {
            // Even when aborting: a copy must not outlive its run.
            DrillStepKind::CopyDestroy => return Next::DestroyCopy,
            _ if aborting && !open.kind.moves() && open.kind != DrillStepKind::AwaitFailover => {
                return Next::EndStep { ok: false, note: "not run: the drill is being aborted".into() }
            }
            DrillStepKind::CopyMake => return Next::MakeCopy,
            kind if kind.checks() => return Next::Checks(kind),
            // Stopped already (a leader changed after the command): the failover takes it on.
            DrillStepKind::FailPrimary if c.primary.as_deref() != Some(run.origin.as_str()) || c.workflow.is_some() => {
                return Next::EndStep { ok: true, note: format!("`{}` was already stopped", run.origin) }
            }
            DrillStepKind::FailPrimary => return Next::FailPrimary,
            // A failover is never interrupted, abort or not.
            DrillStepKind::AwaitFailover => {
                return match workflow_since(c, workflows, WorkflowKind::Failover, open.started_ms) {
                    Some(w) if w.finished.is_none() => Next::Wait(format!("failover {} under way", w.id)),
                    Some(w) => Next::Adopt { step: open.kind, workflow: w.id },
                    None => Next::AwaitFailover,
                }
            }
            DrillStepKind::AwaitRejoin => return Next::AwaitRejoin,
            _ => {}
        }
        let (from, to) = ends(run, open.kind);
        return match move_workflow(c, workflows, &from, &to, open.started_ms) {
            Some(w) if w.finished.is_none() => Next::Wait(format!("workflow {} moves `{from}` to `{to}`", w.id)),
            Some(w) => Next::Adopt { step: open.kind, workflow: w.id },
            None if c.workflow.is_some() => {
                Next::Wait(format!("workflow {} is under way on `{}`", c.workflow.unwrap_or_default(), c.name))
            }
            None if aborting => Next::EndStep { ok: false, note: "not started: the drill is being aborted".into() },
            None if c.primary.as_deref() == Some(from.as_str()) => Next::Move { step: open.kind, from, to },
            None => Next::EndStep {
                ok: false,
                note: format!(
                    "not started: the primary is {}, not `{from}` (the cluster changed under the drill)",
                    c.primary.as_deref().map(|p| format!("`{p}`")).unwrap_or_else(|| "not recorded".into())
                ),
            },
        };
    }
    let failed = run.steps.iter().any(|s| s.ok == Some(false) && stops_the_run(s.kind))
        || run.steps.iter().any(|s| s.ok == Some(false) && s.kind == DrillStepKind::ChecksCopy);
    if (aborting || failed) && copy_to_destroy(run) {
        return Next::Begin(DrillStepKind::CopyDestroy);
    }
    if aborting || run.steps.iter().any(|s| s.ok == Some(false) && stops_the_run(s.kind)) {
        return Next::Finish { failure: None };
    }
    // The step after the last one recorded, in the kind's order.
    let sequence = DrillStepKind::sequence(run.plan.kind);
    let after = run.steps.last().and_then(|s| sequence.iter().position(|k| *k == s.kind)).map_or(0, |i| i + 1);
    match sequence.get(after) {
        Some(kind) => Next::Begin(*kind),
        None => Next::Finish { failure: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::drills::{plan_for_test, DrillAbort, DrillKind, DrillStep};

    fn run() -> DrillRun {
        DrillRun {
            id: 1,
            plan: plan_for_test("roundtrip", DrillKind::SwitchoverRoundtrip, "ndc"),
            started_by: "noc-1".into(),
            started_ms: 1_000,
            origin: "dc".into(),
            prechecks: Vec::new(),
            steps: Vec::new(),
            legs: Vec::new(),
            checks: Vec::new(),
            copy: None,
            abort: None,
            end: None,
        }
    }

    fn cluster(primary: &str, workflow: Option<u64>) -> DbCluster {
        let mut c = DbCluster::for_test(&["dc", "ndc", "dr"], "agent-");
        (c.epoch, c.primary, c.workflow) = (2, Some(primary.into()), workflow);
        c
    }

    fn step(kind: DrillStepKind, at: u64, ok: Option<bool>) -> DrillStep {
        DrillStep { kind, started_ms: at, ended_ms: ok.map(|_| at + 10), ok, note: String::new() }
    }

    fn switchover(id: u64, from: &str, to: &str, at: u64, finished: bool) -> (u64, Workflow) {
        let w = Workflow {
            id,
            kind: WorkflowKind::Switchover,
            cluster: "customs".into(),
            from: from.into(),
            to: to.into(),
            requested_by: "controller-1".into(),
            started_ms: at,
            steps: Vec::new(),
            finished: finished.then(|| (at + 500, "completed".into())),
            write_outage_ms: None,
            writes_resumed_ms: None,
        };
        (id, w)
    }

    #[test]
    fn a_roundtrip_runs_its_steps_in_order_and_then_finishes() {
        let mut r = run();
        let none = BTreeMap::new();
        assert_eq!(next(&r, &cluster("dc", None), &none), Next::Begin(DrillStepKind::ChecksBefore));
        r.steps.push(step(DrillStepKind::ChecksBefore, 2_000, None));
        assert_eq!(next(&r, &cluster("dc", None), &none), Next::Checks(DrillStepKind::ChecksBefore));
        r.steps[0].ok = Some(true);
        r.steps[0].ended_ms = Some(2_100);
        assert_eq!(next(&r, &cluster("dc", None), &none), Next::Begin(DrillStepKind::SwitchOver));
        r.steps.push(step(DrillStepKind::SwitchOver, 3_000, None));
        let (from, to) = ("dc".to_string(), "ndc".to_string());
        assert_eq!(next(&r, &cluster("dc", None), &none), Next::Move { step: DrillStepKind::SwitchOver, from, to });
        // The move's workflow under way (here, or being recovered by a new leader): wait; ended: adopt.
        let wfs = BTreeMap::from([switchover(7, "dc", "ndc", 3_001, false)]);
        assert!(matches!(next(&r, &cluster("dc", Some(7)), &wfs), Next::Wait(_)));
        let wfs = BTreeMap::from([switchover(7, "dc", "ndc", 3_001, true)]);
        assert_eq!(next(&r, &cluster("ndc", None), &wfs), Next::Adopt { step: DrillStepKind::SwitchOver, workflow: 7 });
        for (kind, at) in [(DrillStepKind::SwitchOver, 3_000), (DrillStepKind::ChecksThere, 4_000)] {
            let last = r.steps.len() - 1;
            if r.steps[last].kind != kind {
                r.steps.push(step(kind, at, Some(true)));
            } else {
                r.steps[last] = step(kind, at, Some(true));
            }
        }
        assert_eq!(next(&r, &cluster("ndc", None), &wfs), Next::Begin(DrillStepKind::SwitchBack));
        r.steps.push(step(DrillStepKind::SwitchBack, 5_000, None));
        // An older switchover the other way is not this step's: the move back starts.
        let (from, to) = ("ndc".to_string(), "dc".to_string());
        assert_eq!(next(&r, &cluster("ndc", None), &wfs), Next::Move { step: DrillStepKind::SwitchBack, from, to });
        r.steps.pop();
        r.steps.push(step(DrillStepKind::SwitchBack, 5_000, Some(true)));
        r.steps.push(step(DrillStepKind::ChecksBack, 6_000, Some(true)));
        assert_eq!(next(&r, &cluster("dc", None), &wfs), Next::Finish { failure: None });
    }

    #[test]
    fn a_failed_move_ends_the_run_but_failed_checks_on_the_target_still_move_back() {
        let mut r = run();
        r.steps.push(step(DrillStepKind::ChecksBefore, 2_000, Some(true)));
        r.steps.push(step(DrillStepKind::SwitchOver, 3_000, Some(false)));
        assert_eq!(next(&r, &cluster("dc", None), &BTreeMap::new()), Next::Finish { failure: None });
        r.steps[1].ok = Some(true);
        r.steps.push(step(DrillStepKind::ChecksThere, 4_000, Some(false)));
        assert_eq!(next(&r, &cluster("ndc", None), &BTreeMap::new()), Next::Begin(DrillStepKind::SwitchBack));
        let mut before = run();
        before.steps.push(step(DrillStepKind::ChecksBefore, 2_000, Some(false)));
        assert_eq!(next(&before, &cluster("dc", None), &BTreeMap::new()), Next::Finish { failure: None });
    }

    #[test]
    fn a_dr_test_destroys_its_copy_whatever_happened() {
        let mut r = DrillRun { plan: plan_for_test("dr", DrillKind::DrTest, "dr"), ..run() };
        let c = cluster("dc", None);
        let none = BTreeMap::new();
        r.steps.push(step(DrillStepKind::ChecksBefore, 2_000, Some(true)));
        assert_eq!(next(&r, &c, &none), Next::Begin(DrillStepKind::CopyMake));
        r.steps.push(step(DrillStepKind::CopyMake, 3_000, None));
        assert_eq!(next(&r, &c, &none), Next::MakeCopy);
        // The copy failed (half made, perhaps): destroyed, then the run ends.
        r.steps[1] = step(DrillStepKind::CopyMake, 3_000, Some(false));
        assert_eq!(next(&r, &c, &none), Next::Begin(DrillStepKind::CopyDestroy));
        r.steps.push(step(DrillStepKind::CopyDestroy, 4_000, None));
        assert_eq!(next(&r, &c, &none), Next::DestroyCopy);
        r.steps[2] = step(DrillStepKind::CopyDestroy, 4_000, Some(true));
        assert_eq!(next(&r, &c, &none), Next::Finish { failure: None });
        // Checks of the copy failing, or an abort while they run: the copy goes all the same.
        let mut r = DrillRun { plan: plan_for_test("dr", DrillKind::DrTest, "dr"), ..run() };
        r.steps.push(step(DrillStepKind::ChecksBefore, 2_000, Some(true)));
        r.steps.push(step(DrillStepKind::CopyMake, 3_000, Some(true)));
        r.steps.push(step(DrillStepKind::ChecksCopy, 4_000, Some(false)));
        assert_eq!(next(&r, &c, &none), Next::Begin(DrillStepKind::CopyDestroy));
        r.steps[2] = step(DrillStepKind::ChecksCopy, 4_000, None);
        r.abort = Some(DrillAbort { by: "noc-1".into(), reason: "phones".into(), at_ms: 4_100 });
        assert!(matches!(next(&r, &c, &none), Next::EndStep { ok: false, .. }));
        r.steps[2] = step(DrillStepKind::ChecksCopy, 4_000, Some(false));
        assert_eq!(next(&r, &c, &none), Next::Begin(DrillStepKind::CopyDestroy));
        // Checks failing before anything was made: nothing to destroy.
        let mut r = DrillRun { plan: plan_for_test("dr", DrillKind::DrTest, "dr"), ..run() };
        r.steps.push(step(DrillStepKind::ChecksBefore, 2_000, Some(false)));
        assert_eq!(next(&r, &c, &none), Next::Finish { failure: None });
    }

    #[test]
    fn a_rehearsal_leaves_the_failover_to_the_automatic_path_and_never_interrupts_it() {
        let mut r = DrillRun { plan: plan_for_test("rehearsal", DrillKind::FailoverRehearsal, "ndc"), ..run() };
        let none = BTreeMap::new();
        r.steps.push(step(DrillStepKind::ChecksBefore, 2_000, Some(true)));
        assert_eq!(next(&r, &cluster("dc", None), &none), Next::Begin(DrillStepKind::FailPrimary));
        r.steps.push(step(DrillStepKind::FailPrimary, 3_000, None));
        assert_eq!(next(&r, &cluster("dc", None), &none), Next::FailPrimary);
        // Its leader died after the stop, and the failover already runs: the stop is not repeated.
        assert!(matches!(next(&r, &cluster("dc", Some(8)), &none), Next::EndStep { ok: true, .. }));
        r.steps[1] = step(DrillStepKind::FailPrimary, 3_000, Some(true));
        assert_eq!(next(&r, &cluster("dc", None), &none), Next::Begin(DrillStepKind::AwaitFailover));
        r.steps.push(step(DrillStepKind::AwaitFailover, 3_100, None));
        assert_eq!(next(&r, &cluster("dc", None), &none), Next::AwaitFailover);
        // An abort does not interrupt a failover: wait for it, then adopt it as the move.
        r.abort = Some(DrillAbort { by: "noc-1".into(), reason: "phones".into(), at_ms: 3_200 });
        let (id, mut w) = switchover(9, "dc", "ndc", 3_500, false);
        w.kind = WorkflowKind::Failover;
        let running = BTreeMap::from([(id, w.clone())]);
        assert!(matches!(next(&r, &cluster("dc", Some(9)), &running), Next::Wait(_)));
        w.finished = Some((5_000, "completed".into()));
        let done = BTreeMap::from([(id, w)]);
        assert_eq!(
            next(&r, &cluster("ndc", None), &done),
            Next::Adopt { step: DrillStepKind::AwaitFailover, workflow: 9 }
        );
        r.steps[2] = step(DrillStepKind::AwaitFailover, 3_100, Some(true));
        assert_eq!(next(&r, &cluster("ndc", None), &done), Next::Finish { failure: None }, "then it stops");
        r.abort = None;
        assert_eq!(next(&r, &cluster("ndc", None), &done), Next::Begin(DrillStepKind::AwaitRejoin));
    }

    #[test]
    fn a_cluster_changed_under_the_drill_or_an_abort_starts_no_move() {
        let mut r = run();
        r.steps.push(step(DrillStepKind::ChecksBefore, 2_000, Some(true)));
        r.steps.push(step(DrillStepKind::SwitchOver, 3_000, None));
        // Another member became the primary meanwhile (an automatic failover, an operator).
        let Next::EndStep { ok: false, note } = next(&r, &cluster("dr", None), &BTreeMap::new()) else {
            panic!("expected the step to fail");
        };
        assert!(note.contains("the primary is `dr`, not `dc`"), "{note}");
        // Someone else's workflow under way: wait for it rather than judge.
        assert!(matches!(next(&r, &cluster("dr", Some(9)), &BTreeMap::new()), Next::Wait(_)));
        r.abort = Some(DrillAbort { by: "noc-1".into(), reason: "phones".into(), at_ms: 3_100 });
        assert!(matches!(next(&r, &cluster("dc", None), &BTreeMap::new()), Next::EndStep { ok: false, .. }));
        // A move already under way is let finish (or roll back) first.
        let wfs = BTreeMap::from([switchover(7, "dc", "ndc", 3_001, false)]);
        assert!(matches!(next(&r, &cluster("dc", Some(7)), &wfs), Next::Wait(_)));
        r.steps[1] = step(DrillStepKind::SwitchOver, 3_000, Some(true));
        assert_eq!(next(&r, &cluster("ndc", None), &wfs), Next::Finish { failure: None });
    }
}
