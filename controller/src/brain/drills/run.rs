//! Carrying a drill run out, step by step, each step recorded before and after it runs
//! (DESIGN.md: "a new leader resumes or rolls back a half-done one"). The decision of what comes
//! next is `next.rs`'s, from the replicated state alone; this module does it and asks again.
//!
//! A move is an ordinary switchover (`switchover::run`): its safety is the switchover's, and a
//! leader that dies in the middle of one leaves it to the next leader's workflow recovery, which
//! finishes or rolls it back; the drill then reads the workflow's record (outcome, canary,
//! services' checks) as its leg. An abort never interrupts a move: the one under way finishes or
//! rolls back, then the run stops, leaving the cluster with the primary that move left and its
//! standbys following it (runbooks/drills.md#abort).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::next::{ends, next, Next};
use super::Override;
use super::{copy, rehearsal};
use crate::brain::workflow::{pause_point, propose, recorded_cluster};
use crate::brain::{WorkflowError, WorkflowResult};
use crate::context::Ctx;
use crate::state::drills::run::MAX_ANOMALIES;
use crate::state::drills::{Anomaly, Check, DrillLeg, DrillRun, DrillStepKind, ServiceCheck};
use crate::state::services::{RecoveryPhase, ServiceSpec};
use crate::state::{Actor, Command, Role, Workflow};

/// How long checks before a move may take (the services should be up already), and after one
/// (they may be reconnecting).
const CHECKS_BEFORE: Duration = Duration::from_secs(10);
const CHECKS_AFTER: Duration = Duration::from_secs(30);
/// How often a run waiting on a workflow looks again, and for how long in all before it gives
/// up and ends failed (the workflow goes on under its own recovery, visible in status).
const WAIT_POLL: Duration = Duration::from_millis(200);
const WAIT_LIMIT: Duration = Duration::from_secs(600);

/// A run started, or the pre-checks that refused it (nothing changed then).
#[derive(Debug)]
pub enum Started {
    Running(u64),
    Refused(Vec<Check>),
}

/// The actor a run's own commands carry: the system, named after the run.
fn actor(ctx: &Ctx, id: u64) -> Actor {
    Actor { name: format!("drill-{id}"), role: Role::System, origin: format!("controller-{}", ctx.id) }
}

/// Checks `plan` and starts a run of it as `by` (its pre-checks recorded with it), then carries
/// it out on a task of its own. Returns at once with the run's id.
pub async fn start(
    ctx: &Arc<Ctx>,
    by: Actor,
    plan: &str,
    alerts_override: Option<Override>,
) -> WorkflowResult<Started> {
    if !ctx.is_leader() {
        return Err(WorkflowError::NotLeader);
    }
    let checks = {
        let controllers = super::controllers(ctx);
        let fresh = Duration::from_millis(ctx.cfg.agents.down_after_ms);
        let report = |agent: &str| ctx.obs.fresh_db(agent, fresh);
        let g = ctx.state.read().expect("state lock poisoned");
        let p =
            g.state.drill_plans.get(plan).ok_or_else(|| WorkflowError::Refused(format!("no drill plan `{plan}`")))?;
        super::precheck(&g.state, p, &report, &controllers, alerts_override.as_ref())
    };
    if checks.iter().any(|c| !c.passes()) {
        return Ok(Started::Refused(checks));
    }
    let answer = propose(ctx, &by, Command::StartDrill { plan: plan.to_string(), prechecks: checks }).await?;
    let id = answer
        .strip_prefix("drill ")
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| WorkflowError::gone(format!("the drill was not recorded ({answer})")))?;
    spawn(ctx, id);
    Ok(Started::Running(id))
}

/// Carries run `id` out on a task of its own, unless one does already on this controller.
fn spawn(ctx: &Arc<Ctx>, id: u64) {
    let ctx2 = ctx.clone();
    crate::brain::spawn_exclusive(ctx, format!("drill:{id}"), async move {
        match drive(ctx2, id).await {
            Ok(()) => {}
            Err(WorkflowError::NotLeader | WorkflowError::Uncommitted(_)) => {
                tracing::info!(drill = id, "the drill goes on with the next leader")
            }
            Err(e) => tracing::warn!(drill = id, "drill stopped: {e}; it is resumed at the next tick"),
        }
    });
}

/// Resumes every unfinished run no task on this controller carries (after a leader change).
pub fn resume(ctx: &Arc<Ctx>) {
    let unfinished: Vec<u64> = {
        let g = ctx.state.read().expect("state lock poisoned");
        g.state.drill_runs.values().filter(|r| r.end.is_none()).map(|r| r.id).collect()
    };
    for id in unfinished {
        spawn(ctx, id);
    }
}

fn recorded_run(ctx: &Ctx, id: u64) -> WorkflowResult<DrillRun> {
    let g = ctx.state.read().expect("state lock poisoned");
    g.state.drill_runs.get(&id).cloned().ok_or_else(|| WorkflowError::gone(format!("drill {id} is not recorded")))
}

/// Runs drill `id` to its end from wherever its record says it is.
async fn drive(ctx: Arc<Ctx>, id: u64) -> WorkflowResult<()> {
    let actor = actor(&ctx, id);
    let mut waited_since: Option<Instant> = None;
    let mut move_failed: Option<String> = None;
    loop {
        if !ctx.is_leader() {
            return Err(WorkflowError::NotLeader);
        }
        let run = recorded_run(&ctx, id)?;
        let c = recorded_cluster(&ctx, &run.plan.cluster)?;
        let decision = {
            let g = ctx.state.read().expect("state lock poisoned");
            next(&run, &c, &g.state.workflows)
        };
        if !matches!(decision, Next::Wait(_)) {
            waited_since = None;
        }
        let end = |(ok, note): (bool, String)| Command::EndDrillStep { drill: id, ok, note };
        match decision {
            Next::Done => return Ok(()),
            Next::Begin(kind) => {
                let note = begin_note(&run, kind);
                propose(&ctx, &actor, Command::BeginDrillStep { drill: id, kind, note }).await?;
            }
            Next::MakeCopy => {
                propose(&ctx, &actor, end(copy::make(&ctx, &actor, &run).await?)).await?;
                pause_point("drill-pause-after-copy-make").await;
            }
            Next::DestroyCopy => {
                propose(&ctx, &actor, end(copy::destroy(&ctx, &run).await)).await?;
            }
            Next::FailPrimary => {
                propose(&ctx, &actor, end(rehearsal::fail_primary(&ctx, &run).await?)).await?;
            }
            Next::AwaitFailover => {
                let since = run.open_step().map_or(run.started_ms, |s| s.started_ms);
                if let Some(ended) = rehearsal::await_failover(&ctx, &run, since).await? {
                    propose(&ctx, &actor, end(ended)).await?;
                }
            }
            Next::AwaitRejoin => {
                propose(&ctx, &actor, end(rehearsal::await_rejoin(&ctx, &run).await?)).await?;
            }
            Next::Checks(step) => checks_step(&ctx, &actor, &run, step).await?,
            Next::Move { step, from, to } => {
                move_step(&ctx, &actor, &run, (step, &from, &to), &mut move_failed).await?
            }
            Next::Adopt { step, workflow } => {
                move_failed = None;
                adopt(&ctx, &actor, &run, step, workflow).await?;
                pause_point(&format!("drill-pause-after-{step}")).await;
            }
            Next::EndStep { ok, note } => propose(&ctx, &actor, end((ok, note))).await.map(|_| ())?,
            Next::Wait(why) => {
                let since = *waited_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= WAIT_LIMIT {
                    let failure = Some(format!("gave up after {} s waiting: {why}", WAIT_LIMIT.as_secs()));
                    return finish(&ctx, &actor, &run, failure).await;
                }
                tokio::time::sleep(WAIT_POLL).await;
            }
            Next::Finish { failure } => return finish(&ctx, &actor, &run, failure).await,
        }
    }
}

/// A step of application checks: runs them (a dr-test's against its copy), records them and ends
/// the step.
async fn checks_step(ctx: &Ctx, actor: &Actor, run: &DrillRun, step: DrillStepKind) -> WorkflowResult<()> {
    let within = if step == DrillStepKind::ChecksBefore { CHECKS_BEFORE } else { CHECKS_AFTER };
    let checks = match step {
        DrillStepKind::ChecksCopy => copy::checks(ctx, run).await?,
        _ => run_checks(ctx, run, step, within).await?,
    };
    let failed: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.service.as_str()).collect();
    let note = match (checks.len(), failed.is_empty()) {
        (0, _) if step == DrillStepKind::ChecksCopy => {
            "no service to check; the copy took the agent's probe write".into()
        }
        (0, _) => "no service to check".to_string(),
        (n, true) => format!("{n} service(s) answer"),
        (n, false) => format!("{} of {n} service(s) fail: {}", failed.len(), failed.join(", ")),
    };
    let ok = failed.is_empty();
    if !checks.is_empty() {
        propose(ctx, actor, Command::RecordDrillChecks { drill: run.id, checks }).await?;
    }
    propose(ctx, actor, Command::EndDrillStep { drill: run.id, ok, note }).await?;
    pause_point(&format!("drill-pause-after-{step}")).await;
    Ok(())
}

/// A move: once the switchover's checks pass, the switchover itself (its workflow then becomes
/// the step's leg, adopted at the next decision). `move_failed`: why the last attempt did not
/// start a workflow; a second decision to move with no workflow to show for the first ends the
/// step with that reason.
async fn move_step(
    ctx: &Arc<Ctx>,
    actor: &Actor,
    run: &DrillRun,
    (step, from, to): (DrillStepKind, &str, &str),
    move_failed: &mut Option<String>,
) -> WorkflowResult<()> {
    let refused = |why: String| Command::EndDrillStep {
        drill: run.id,
        ok: false,
        note: format!("{from} → {to} did not start: {why}"),
    };
    if let Some(why) = move_failed.take() {
        return propose(ctx, actor, refused(why)).await.map(|_| ());
    }
    // The previous move's old primary may still be settling as a standby (its agent's next
    // report shows it rejoined): wait for the switchover's own checks.
    if let Err(why) = move_ready(ctx, &run.plan.cluster, to).await {
        return propose(ctx, actor, refused(why)).await.map(|_| ());
    }
    let by = Actor { name: format!("drill-{}", run.id), ..actor.clone() };
    match crate::brain::switchover::run(ctx.clone(), by, run.plan.cluster.clone(), to.to_string()).await {
        Ok(_) => Ok(()),
        Err(e @ (WorkflowError::NotLeader | WorkflowError::Uncommitted(_) | WorkflowError::Failpoint(_))) => Err(e),
        Err(e) => {
            tracing::warn!(drill = run.id, "{step} {from} → {to}: {e}");
            *move_failed = Some(e.to_string());
            Ok(())
        }
    }
}

/// How long a move waits for the cluster to pass the switchover's checks.
const MOVE_READY_WAIT: Duration = Duration::from_secs(30);

/// Waits (at most [`MOVE_READY_WAIT`]) until a switchover of `cluster` to `to` would pass its
/// checks; the last refusal if it never does.
async fn move_ready(ctx: &Ctx, cluster: &str, to: &str) -> Result<(), String> {
    let deadline = Instant::now() + MOVE_READY_WAIT;
    loop {
        match crate::brain::switchover::precheck(ctx, cluster, to) {
            Ok(_) => return Ok(()),
            Err(WorkflowError::NotLeader) => return Err("no longer the leader".into()),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("{e} (still, after {} s)", MOVE_READY_WAIT.as_secs()))
            }
            Err(_) => tokio::time::sleep(WAIT_POLL).await,
        }
    }
}

fn begin_note(run: &DrillRun, kind: DrillStepKind) -> String {
    if kind.moves() {
        let (from, to) = ends(run, kind);
        return format!("{from} → {to}");
    }
    match kind {
        DrillStepKind::CopyMake => return format!("an isolated copy of `{}`", run.plan.target),
        DrillStepKind::CopyDestroy => return format!("the copy of `{}`", run.plan.target),
        _ => {}
    }
    match run.plan.services.is_empty() {
        true => format!("every service of `{}`", run.plan.cluster),
        false => run.plan.services.join(", "),
    }
}

/// The services a run checks: the plan's, or every service of its cluster; by recovery group.
pub(super) fn plan_services(ctx: &Ctx, run: &DrillRun) -> Vec<ServiceSpec> {
    let g = ctx.state.read().expect("state lock poisoned");
    let mut specs: Vec<ServiceSpec> = g
        .state
        .services
        .values()
        .map(|s| s.spec.clone())
        .filter(|s| s.cluster == run.plan.cluster)
        .filter(|s| run.plan.services.is_empty() || run.plan.services.contains(&s.name))
        .collect();
    specs.sort_by(|a, b| (a.group, &a.name).cmp(&(b.group, &b.name)));
    specs
}

/// Runs the plan's services' checks, group by group, against the cluster as it is now.
async fn run_checks(
    ctx: &Ctx,
    run: &DrillRun,
    step: DrillStepKind,
    within: Duration,
) -> WorkflowResult<Vec<ServiceCheck>> {
    let c = recorded_cluster(ctx, &run.plan.cluster)?;
    let mut out = Vec::new();
    for spec in plan_services(ctx, run) {
        let result = crate::brain::recovery_plan::check_service(ctx, &c, &spec, within).await;
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        out.push(ServiceCheck {
            step,
            service: spec.name.clone(),
            group: spec.group,
            ok,
            at_ms: crate::context::now_ms(),
            detail,
        });
    }
    Ok(out)
}

/// The leg a move's workflow `w` made, as its record says: whether the primary moved, the
/// canary's outage and time of the first write after it, whether the target held the old
/// primary's final position, and when each service's check passed after the promote.
pub fn leg_of(w: &Workflow, step: DrillStepKind, group_of: &dyn Fn(&str) -> u32) -> DrillLeg {
    let outcome = w.finished.as_ref().map(|(_, o)| o.clone()).unwrap_or_default();
    let moved = outcome.starts_with("completed");
    let promoted_ms = w.steps.iter().find(|s| s.name == "promoted").map(|s| s.at_ms);
    let check = RecoveryPhase::Check.to_string();
    let failed = format!("{check}{}", crate::state::services::FAILED_SUFFIX);
    let services_back = w
        .steps
        .iter()
        .filter(|s| s.name == check || s.name == failed)
        .map(|s| {
            let service = s.note.split('@').next().unwrap_or_default().to_string();
            ServiceCheck {
                step,
                group: group_of(&service),
                service,
                ok: s.name == check,
                at_ms: s.at_ms,
                detail: match promoted_ms {
                    Some(p) => format!("{} ms after the promote: {}", s.at_ms.saturating_sub(p), s.note),
                    None => s.note.clone(),
                },
            }
        })
        .collect();
    DrillLeg {
        step,
        workflow: w.id,
        from: w.from.clone(),
        to: w.to.clone(),
        started_ms: w.started_ms,
        outcome,
        moved,
        write_outage_ms: w.write_outage_ms.filter(|_| moved),
        rto_ms: w.writes_resumed_ms.filter(|_| moved).map(|r| r.saturating_sub(w.started_ms)),
        data_loss_ms: (moved && lost_nothing(w)).then_some(0),
        services_back,
    }
}

/// Whether a role change's record shows it lost no acknowledged commit: a switchover promotes
/// only once the target holds the old primary's final position (its `caught-up` step); an
/// automatic failover promotes only a synchronous standby or one holding the stopped primary's
/// final position (DESIGN.md point 5), and only a manual one that accepted a loss records a
/// `data-loss-window` step.
fn lost_nothing(w: &Workflow) -> bool {
    match w.kind {
        crate::state::WorkflowKind::Switchover => w.steps.iter().any(|s| s.name == "caught-up"),
        crate::state::WorkflowKind::Failover => !w.steps.iter().any(|s| s.name == "data-loss-window"),
        _ => false,
    }
}

/// Records the leg workflow `wf` made (unless recorded already) and ends the step with it.
async fn adopt(ctx: &Ctx, actor: &Actor, run: &DrillRun, step: DrillStepKind, wf: u64) -> WorkflowResult<()> {
    let (w, groups) = {
        let g = ctx.state.read().expect("state lock poisoned");
        let w = g.state.workflows.get(&wf).cloned().ok_or_else(|| WorkflowError::gone(format!("no workflow {wf}")))?;
        let groups: std::collections::HashMap<String, u32> =
            g.state.services.values().map(|s| (s.spec.name.clone(), s.spec.group)).collect();
        (w, groups)
    };
    let leg = leg_of(&w, step, &|s| groups.get(s).copied().unwrap_or(0));
    let clean = leg.moved && !leg.outcome.contains(" with ");
    let measured = match leg.write_outage_ms {
        Some(ms) => format!("; write outage {ms} ms"),
        None => "; write outage not measured".into(),
    };
    let note = format!("{} → {} (workflow {wf}): {}{measured}", leg.from, leg.to, leg.outcome);
    if !run.legs.iter().any(|l| l.workflow == wf) {
        propose(ctx, actor, Command::RecordDrillLeg { drill: run.id, leg }).await?;
    }
    propose(ctx, actor, Command::EndDrillStep { drill: run.id, ok: clean, note }).await?;
    Ok(())
}

/// Ends the run: the alerts raised meanwhile are its anomalies; the state judges it.
async fn finish(ctx: &Ctx, actor: &Actor, run: &DrillRun, failure: Option<String>) -> WorkflowResult<()> {
    let (anomalies, primary) = {
        let g = ctx.state.read().expect("state lock poisoned");
        let anomalies: Vec<Anomaly> = g
            .state
            .alerts
            .alerts
            .values()
            .filter(|a| a.first_seen_ms >= run.started_ms)
            .take(MAX_ANOMALIES)
            .map(|a| Anomaly {
                alert: a.id,
                severity: a.severity.to_string(),
                title: a.title.clone(),
                site: a.place.site.clone(),
                at_ms: a.first_seen_ms,
            })
            .collect();
        let primary = g.state.clusters.get(&run.plan.cluster).and_then(|c| c.primary.clone()).unwrap_or_default();
        (anomalies, primary)
    };
    let verdict = propose(ctx, actor, Command::FinishDrill { drill: run.id, failure, anomalies, primary }).await?;
    tracing::info!(drill = run.id, plan = %run.plan.name, "drill ended: {verdict}");
    Ok(())
}
