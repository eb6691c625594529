//! `State::apply` for drill runs: started on passing pre-checks, stepped, measured, aborted and
//! finished. The state, not the proposer, judges a finished run (`DrillRun::judge`), so a run
//! with a failed step, a missed target or a figure not measured is never recorded as passed.

use crate::state::drills::run::{MAX_ANOMALIES, MAX_CHECKS, MAX_RUNS, MAX_STEPS};
use crate::state::drills::{DrillAbort, DrillEnd, DrillRun, DrillStep, DrillStepKind};
use crate::state::{Command, Proposal, Rejection, Role, State};

impl State {
    pub(super) fn apply_drill_runs(&mut self, p: &Proposal) -> (String, Result<String, Rejection>) {
        match &p.command {
            Command::StartDrill { plan, prechecks } => {
                (format!("start drill {plan}"), self.start_drill(p, plan, prechecks))
            }
            Command::BeginDrillStep { drill, kind, note } => (
                format!("drill {drill}: begin {kind} {note}"),
                self.running_drill(*drill).and_then(|r| {
                    if let Some(open) = r.open_step() {
                        return Err(Rejection::Conflict(format!("step {} is still under way", open.kind)));
                    }
                    if r.steps.len() >= MAX_STEPS {
                        return Err(Rejection::Conflict(format!("{MAX_STEPS} steps recorded already")));
                    }
                    let step =
                        DrillStep { kind: *kind, started_ms: p.at_ms, ended_ms: None, ok: None, note: note.clone() };
                    r.steps.push(step);
                    Ok("begun".into())
                }),
            ),
            Command::EndDrillStep { drill, ok, note } => (
                format!("drill {drill}: end step {}: {note}", if *ok { "ok" } else { "failed" }),
                self.running_drill(*drill).and_then(|r| {
                    let step = r.steps.last_mut().filter(|s| s.ended_ms.is_none());
                    let step = step.ok_or_else(|| Rejection::Conflict("no step is under way".into()))?;
                    (step.ended_ms, step.ok, step.note) = (Some(p.at_ms), Some(*ok), note.clone());
                    Ok("ended".into())
                }),
            ),
            Command::RecordDrillLeg { drill, leg } => (
                format!("drill {drill}: leg {} {}→{} (workflow {})", leg.step, leg.from, leg.to, leg.workflow),
                self.running_drill(*drill).and_then(|r| {
                    if !leg.step.records_leg() || r.legs.iter().any(|l| l.workflow == leg.workflow) {
                        return Err(Rejection::Conflict(format!("workflow {} is not a new move", leg.workflow)));
                    }
                    r.legs.push(leg.clone());
                    Ok("recorded".into())
                }),
            ),
            Command::RecordDrillChecks { drill, checks } => (
                format!("drill {drill}: {} service checks", checks.len()),
                self.running_drill(*drill).and_then(|r| {
                    if r.checks.len() + checks.len() > MAX_CHECKS {
                        return Err(Rejection::Conflict(format!("{MAX_CHECKS} checks recorded already")));
                    }
                    r.checks.extend(checks.iter().cloned());
                    Ok("recorded".into())
                }),
            ),
            Command::RecordDrillCopy { drill, copy } => (
                format!("drill {drill}: copy {} of {} usable after {} ms", copy.name, copy.member, copy.ready_ms),
                self.running_drill(*drill).and_then(|r| {
                    if r.plan.kind != crate::state::drills::DrillKind::DrTest {
                        return Err(Rejection::Invalid(format!("drill {drill} is not a dr-test")));
                    }
                    r.copy = Some(copy.clone());
                    Ok("recorded".into())
                }),
            ),
            Command::AbortDrill { drill, reason } => {
                (format!("abort drill {drill}: {reason}"), self.abort_drill(p, *drill, reason))
            }
            Command::FinishDrill { drill, failure, anomalies, primary } => {
                let what = format!("finish drill {drill}");
                let r = self.running_drill(*drill).map(|r| {
                    let (result, why) = r.judge(failure.as_deref());
                    let anomalies = anomalies.iter().take(MAX_ANOMALIES).cloned().collect();
                    r.end = Some(DrillEnd {
                        at_ms: p.at_ms,
                        result,
                        why: why.clone(),
                        anomalies,
                        primary: primary.clone(),
                    });
                    if why.is_empty() {
                        result.to_string()
                    } else {
                        format!("{result}: {why}")
                    }
                });
                (what, r)
            }
            other => (format!("{other:?}"), Err(Rejection::Invalid("not a drills command".into()))),
        }
    }

    /// Drill run `id`, if it has not ended.
    fn running_drill(&mut self, id: u64) -> Result<&mut DrillRun, Rejection> {
        match self.drill_runs.get_mut(&id) {
            Some(r) if r.end.is_none() => Ok(r),
            Some(_) => Err(Rejection::Conflict(format!("drill {id} has ended"))),
            None => Err(Rejection::NotFound(format!("no drill {id}"))),
        }
    }

    fn start_drill(
        &mut self,
        p: &Proposal,
        plan: &str,
        prechecks: &[crate::state::drills::Check],
    ) -> Result<String, Rejection> {
        if !matches!(p.actor.role, Role::Admin | Role::Noc | Role::System) {
            return Err(Rejection::NotAllowed(format!("role {} may not run drills", p.actor.role)));
        }
        let plan = self
            .drill_plans
            .get(plan)
            .cloned()
            .ok_or_else(|| Rejection::NotFound(format!("no drill plan `{plan}`")))?;
        if DrillStepKind::sequence(plan.kind).is_empty() {
            return Err(Rejection::Invalid(format!("drills of kind {} cannot run yet", plan.kind)));
        }
        let failed: Vec<String> =
            prechecks.iter().filter(|c| !c.passes()).map(|c| format!("{}: {}", c.name, c.detail)).collect();
        if prechecks.is_empty() || !failed.is_empty() {
            return Err(Rejection::Conflict(format!("pre-checks failed: {}", failed.join("; "))));
        }
        if let Some(r) = self.drill_runs.values().find(|r| r.end.is_none() && r.plan.cluster == plan.cluster) {
            return Err(Rejection::Conflict(format!("drill {} is still under way on `{}`", r.id, plan.cluster)));
        }
        let c = self
            .clusters
            .get(&plan.cluster)
            .ok_or_else(|| Rejection::NotFound(format!("no cluster `{}`", plan.cluster)))?;
        if let Some(w) = c.workflow {
            return Err(Rejection::Conflict(format!("workflow {w} is still under way on `{}`", plan.cluster)));
        }
        let origin =
            c.primary.clone().ok_or_else(|| Rejection::Conflict(format!("`{}` records no primary", plan.cluster)))?;
        // The oldest finished runs make room.
        while self.drill_runs.len() >= MAX_RUNS {
            let Some(oldest) = self.drill_runs.values().find(|r| r.end.is_some()).map(|r| r.id) else {
                return Err(Rejection::Conflict(format!("{MAX_RUNS} drills are under way")));
            };
            self.drill_runs.remove(&oldest);
        }
        self.last_drill_id += 1;
        let id = self.last_drill_id;
        let run = DrillRun {
            id,
            plan,
            started_by: p.actor.name.clone(),
            started_ms: p.at_ms,
            origin,
            prechecks: prechecks.to_vec(),
            steps: Vec::new(),
            legs: Vec::new(),
            checks: Vec::new(),
            copy: None,
            abort: None,
            end: None,
        };
        self.drill_runs.insert(id, run);
        Ok(format!("drill {id}"))
    }

    fn abort_drill(&mut self, p: &Proposal, id: u64, reason: &str) -> Result<String, Rejection> {
        if !matches!(p.actor.role, Role::Admin | Role::Noc | Role::System) {
            return Err(Rejection::NotAllowed(format!("role {} may not abort drills", p.actor.role)));
        }
        if reason.trim().is_empty() || reason.len() > 1_000 {
            return Err(Rejection::Invalid("an abort needs a reason (1 to 1000 characters)".into()));
        }
        let r = self.running_drill(id)?;
        if let Some(a) = &r.abort {
            return Err(Rejection::Conflict(format!("drill {id} is being aborted already (by {})", a.by)));
        }
        r.abort = Some(DrillAbort { by: p.actor.name.clone(), reason: reason.to_string(), at_ms: p.at_ms });
        Ok("abort requested".into())
    }
}

#[cfg(test)]
mod tests {
    use crate::state::drills::{plan_for_test, Check, CheckName, DrillKind, DrillLeg, DrillResult, DrillStepKind};
    use crate::state::{Actor, Command, DbCluster, Proposal, Response, Role, State};

    fn apply(s: &mut State, role: Role, command: Command) -> Response {
        let actor = Actor { name: "noc-1".into(), role, origin: "test".into() };
        s.apply(1, &Proposal { at_ms: 1_000, actor, command }, &mut Vec::new())
    }

    fn state() -> State {
        let mut s = State::default();
        let mut c = DbCluster::for_test(&["dc", "ndc", "dr"], "agent-");
        (c.epoch, c.primary) = (1, Some("dc".into()));
        s.clusters.insert("customs".into(), c);
        let plan = plan_for_test("roundtrip", DrillKind::SwitchoverRoundtrip, "ndc");
        s.drill_plans.insert(plan.name.clone(), plan);
        s
    }

    fn checks(ok: bool) -> Vec<Check> {
        let check = |name, ok| Check { name, ok, detail: "found".into(), overridden: None };
        vec![check(CheckName::Quorum, true), check(CheckName::MembersUp, ok)]
    }

    fn start(s: &mut State, ok: bool) -> Response {
        apply(s, Role::Noc, Command::StartDrill { plan: "roundtrip".into(), prechecks: checks(ok) })
    }

    fn leg(workflow: u64, outage: Option<u64>) -> DrillLeg {
        DrillLeg {
            step: DrillStepKind::SwitchOver,
            workflow,
            from: "dc".into(),
            to: "ndc".into(),
            started_ms: 1_000,
            outcome: "completed".into(),
            moved: true,
            write_outage_ms: outage,
            rto_ms: Some(900),
            data_loss_ms: Some(0),
            services_back: Vec::new(),
        }
    }

    fn finish(s: &mut State) -> Response {
        let finish = Command::FinishDrill { drill: 1, failure: None, anomalies: Vec::new(), primary: "dc".into() };
        apply(s, Role::System, finish)
    }

    /// Runs every step of the roundtrip, ok, with two legs of these outages.
    fn run_through(s: &mut State, outages: [Option<u64>; 2]) {
        for (i, kind) in DrillStepKind::sequence(DrillKind::SwitchoverRoundtrip).iter().enumerate() {
            let begin = Command::BeginDrillStep { drill: 1, kind: *kind, note: String::new() };
            assert!(matches!(apply(s, Role::System, begin), Response::Ok(_)));
            if kind.moves() {
                let leg = leg(i as u64, outages[usize::from(i > 1)]);
                assert!(matches!(apply(s, Role::System, Command::RecordDrillLeg { drill: 1, leg }), Response::Ok(_)));
            }
            let end = Command::EndDrillStep { drill: 1, ok: true, note: String::new() };
            assert!(matches!(apply(s, Role::System, end), Response::Ok(_)));
        }
    }

    #[test]
    fn a_run_starts_only_on_passing_prechecks_and_one_at_a_time_per_cluster() {
        let mut s = state();
        assert!(matches!(start(&mut s, false), Response::Rejected(_)), "a failed pre-check");
        let none = Command::StartDrill { plan: "roundtrip".into(), prechecks: Vec::new() };
        assert!(matches!(apply(&mut s, Role::Noc, none), Response::Rejected(_)), "no pre-check at all");
        let soc = Command::StartDrill { plan: "roundtrip".into(), prechecks: checks(true) };
        assert!(matches!(apply(&mut s, Role::Soc, soc), Response::Rejected(_)), "not an operator");
        assert!(s.drill_runs.is_empty(), "refusals record nothing");
        assert_eq!(start(&mut s, true), Response::Ok("drill 1".into()));
        assert!(matches!(start(&mut s, true), Response::Rejected(_)), "one under way on customs");
        let r = &s.drill_runs[&1];
        assert_eq!((r.origin.as_str(), r.started_by.as_str(), r.prechecks.len()), ("dc", "noc-1", 2));
    }

    #[test]
    fn the_state_judges_a_finished_run_from_what_was_recorded() {
        let mut s = state();
        start(&mut s, true);
        run_through(&mut s, [Some(300), Some(2_500)]);
        finish(&mut s);
        let end = s.drill_runs[&1].end.clone().expect("ended");
        // The plan allows 2000 ms of write outage: the second move's 2500 fails the run.
        assert_eq!(end.result, DrillResult::Failed);
        assert_eq!(end.why, "targets missed: max-write-outage 2500 ms > 2000 ms");
        assert!(matches!(finish(&mut s), Response::Rejected(_)), "ended once");

        let mut s = state();
        start(&mut s, true);
        run_through(&mut s, [Some(300), None]);
        finish(&mut s);
        assert_eq!(
            s.drill_runs[&1].end.as_ref().map(|e| e.why.as_str()),
            Some("targets missed: max-write-outage not measured")
        );

        let mut s = state();
        start(&mut s, true);
        run_through(&mut s, [Some(300), Some(400)]);
        finish(&mut s);
        assert_eq!(s.drill_runs[&1].end.as_ref().map(|e| e.result), Some(DrillResult::Passed));
        assert_eq!(s.drill_runs[&1].write_outage_ms(), Some(400));
    }

    #[test]
    fn an_abort_is_recorded_once_and_the_run_ends_aborted() {
        let mut s = state();
        start(&mut s, true);
        let abort = |reason: &str| Command::AbortDrill { drill: 1, reason: reason.into() };
        assert!(matches!(apply(&mut s, Role::Auditor, abort("no")), Response::Rejected(_)));
        assert!(matches!(apply(&mut s, Role::Noc, abort(" ")), Response::Rejected(_)), "a reason is needed");
        assert!(matches!(apply(&mut s, Role::Noc, abort("release at 14:00")), Response::Ok(_)));
        assert!(matches!(apply(&mut s, Role::Noc, abort("again")), Response::Rejected(_)));
        finish(&mut s);
        let end = s.drill_runs[&1].end.clone().expect("ended");
        assert_eq!((end.result, end.why.as_str()), (DrillResult::Aborted, "aborted by noc-1: release at 14:00"));
        let step = Command::BeginDrillStep { drill: 1, kind: DrillStepKind::ChecksBefore, note: String::new() };
        assert!(matches!(apply(&mut s, Role::System, step), Response::Rejected(_)), "nothing after the end");
    }
}
