//! Rolling a switchover back after its new epoch: the target never confirmed its promotion, while
//! the old primary is stopped cleanly and the target holds everything it wrote. Without this the
//! cluster would be left with no writable member.
//!
//! The argument (DESIGN.md, "Safety of role changes", points 1, 2 and 4), in the order it runs:
//! - `rolling-back` is recorded first, then a new epoch naming the old primary again (e+2). From
//!   then on no lease at e+1 is granted (a grant checks the epoch under the lock that
//!   [`super::Leases::all_ended_at`] reads), and the target's agent, once it has the new epoch,
//!   refuses e+1's promote and its guard fences any primary it finds.
//! - Every lease granted at e+1 then ends: the wait is read after the new epoch is applied, and a
//!   new leader counts it from its own election.
//! - The target is stopped at once, and its agent answers ok only when it is then stopped as a
//!   standby: it never finished a promotion, so it acknowledged no write the old primary lacks.
//!   A target that was promoted (it outlived the switchover's patience) may have acknowledged
//!   writes the old primary lacks: the rollback goes forward to it instead (a new epoch naming
//!   it, started under a lease there). A target whose agent does not answer is waited for, the
//!   workflow left open and the wait shown in status: starting the old primary without its word
//!   could discard what it acknowledged.
//! - Only then is the old primary started again, under a lease at e+2 (the agent's `Restart`).
//!
//! - A target lost for good (its host destroyed) never answers. Two people may then decide to
//!   start the old primary without its word, losing whatever the target acknowledged after the
//!   old primary stopped: `triadctl failover --to OLD-PRIMARY --attest-dead TARGET
//!   --accept-data-loss`, approved by a second person ([`resolution`]). Every lease at the
//!   target's epoch has ended by then, so its guard has fenced it if it still runs: the loss is
//!   of data, never a second writer.
//!
//! Every step is idempotent, so a new leader that finds `rolling-back` recorded runs it again
//! from the top.

use std::sync::Arc;
use std::time::{Duration, Instant};

use triad_proto::v1::{agent_command, AgentCommand};

use super::commands::CallError;
use super::workflow::{command, failpoint, propose, recorded_cluster, recorded_workflow, step_timeout};
use super::{WorkflowError, WorkflowResult};
use crate::context::Ctx;
use crate::state::{Actor, Approval, ApprovalAction, ApprovalState, Command, State, Workflow};

/// Which waiting rollback a failover request `a` resolves ([`State::resolves_rollback`]).
pub fn resolves(state: &State, a: &Approval) -> Result<Option<u64>, crate::state::Rejection> {
    state.resolves_rollback(&a.cluster, &a.to, a.accept_data_loss, &a.attested_dead)
}

/// The approved request resolving workflow `wf`'s wait, if there is one (see [`resolves`]).
fn resolution(ctx: &Ctx, wf: u64) -> Option<Approval> {
    let g = ctx.state.read().expect("state lock poisoned");
    g.state
        .approvals
        .values()
        .filter(|a| a.action == ApprovalAction::Failover && a.state.under_way())
        .find(|a| resolves(&g.state, a) == Ok(Some(wf)))
        .cloned()
}

/// The step that marks a switchover as rolling back after its new epoch.
pub const STEP: &str = "rolling-back";

/// Recorded when the target's agent cannot say whether it finished its promotion.
const WAITING_STEP: &str = crate::state::ROLLBACK_WAITING_STEP;

/// Recorded when two people attested the target dead (see the module's docs).
const ATTESTED_STEP: &str = "target-attested-dead";

/// Recorded when the target turned out to have finished its promotion: the rollback goes
/// forward to it instead.
const FORWARD_STEP: &str = "target-promoted";

/// Rolls workflow `wf` back as above, `why` being the reason; returns the outcome, `Err` when the
/// old primary could not be started again. `resumed`: a new leader finishing it, which no test
/// failpoint stops (like the switchover's own, they stand for the first leader's death).
pub async fn run(ctx: &Arc<Ctx>, actor: &Actor, wf: u64, why: String, resumed: bool) -> WorkflowResult<String> {
    let w = recorded_workflow(ctx, wf)?;
    let (name, from, to) = (w.cluster.clone(), w.from.clone(), w.to.clone());
    let step = |n: &str, note: String| Command::RecordStep { workflow: wf, name: n.into(), note };
    let finish = |outcome: String| Command::FinishWorkflow { workflow: wf, outcome };
    let c = recorded_cluster(ctx, &name)?;
    let agent_of = |m: &str| {
        c.members.get(m).map(|x| x.agent.clone()).ok_or_else(|| WorkflowError::gone(format!("`{m}` is not a member")))
    };
    let (from_agent, to_agent) = (agent_of(&from)?, agent_of(&to)?);
    if w.steps.iter().any(|s| s.name == FORWARD_STEP) {
        return roll_forward(ctx, actor, wf, why).await;
    }
    if !w.steps.iter().any(|s| s.name == STEP) {
        tracing::error!(cluster = %name, workflow = wf, "switchover rolling back after its new epoch: {why}");
        propose(ctx, actor, step(STEP, why.clone())).await?;
    }
    if c.primary.as_deref() == Some(to.as_str()) {
        propose(ctx, actor, Command::SwitchPrimary { cluster: name.clone(), workflow: wf, primary: from.clone() })
            .await?;
    }
    if !resumed {
        failpoint("switchover-after-rollback-epoch")?;
    }
    let c = recorded_cluster(ctx, &name)?;
    if c.primary.as_deref() != Some(from.as_str()) {
        let outcome = format!("abandoned: the primary is now {:?}", c.primary);
        propose(ctx, actor, finish(outcome.clone())).await?;
        return Err(WorkflowError::Ended(outcome));
    }

    // Every lease at the target's epoch ends (read after the new epoch applied).
    let ended = ctx.leases.all_ended_at(ctx, &name).ok_or(WorkflowError::NotLeader)?;
    tokio::time::sleep(ended.saturating_duration_since(Instant::now())).await;

    // Two people attested the target dead: the old primary starts without its word.
    let resolved = resolution(ctx, wf);
    if let Some(a) = &resolved {
        if !w.steps.iter().any(|s| s.name == ATTESTED_STEP) {
            record_attestation(ctx, actor, &w, a).await?;
        }
        return restart_old_primary(ctx, actor, wf, &why, &from_agent, resolved).await;
    }
    if w.steps.iter().any(|s| s.name == ATTESTED_STEP) {
        return restart_old_primary(ctx, actor, wf, &why, &from_agent, None).await;
    }

    // The target stopped, as a standby that never finished a promotion.
    let stop = command(&name, c.epoch, c.epoch_index, agent_command::Kind::StopStandby(Default::default()));
    let stopped = match stop_target(ctx, &to_agent, stop).await {
        Ok(note) => note,
        // It finished its promotion after all (it outlived the switchover's patience): it may
        // have acknowledged writes that `from` lacks, so the only safe way on is forward to it.
        Err(e) if e.agent_said().is_some_and(|d| d.contains(triad_proto::FINISHED_PROMOTION)) => {
            propose(ctx, actor, step(FORWARD_STEP, format!("{to}: {e}"))).await?;
            return roll_forward(ctx, actor, wf, why).await;
        }
        // Without its agent's word, nobody knows whether it finished its promotion: starting
        // `from` could discard what it acknowledged. The workflow stays open and the brain's
        // recovery asks again until its agent answers; status shows this step meanwhile.
        Err(e) => {
            if !w.steps.iter().any(|s| s.name == WAITING_STEP) {
                let note = format!(
                    "{to} not confirmed stopped ({e}); no member is writable until {to}'s agent answers: bring it \
                     back (its host, `triad-agent`), then this rollback completes on its own. If {to} is lost for \
                     good: triadctl failover --cluster {name} --to {from} --attest-dead {to} --accept-data-loss \
                     --reason TEXT, approved by a second person (what {to} acknowledged after {from} stopped is lost)"
                );
                propose(ctx, actor, step(WAITING_STEP, note)).await?;
            }
            let doing = format!("rolling back: waiting for {to}'s agent to confirm {to} stopped");
            return Err(WorkflowError::Agent { doing, source: e });
        }
    };
    propose(ctx, actor, step("target-stopped", format!("{to}: {stopped}"))).await?;
    restart_old_primary(ctx, actor, wf, &why, &from_agent, None).await
}

/// The old primary again, under a lease at the rollback's epoch; the workflow finished, and the
/// request that resolved its wait, if any, with it.
async fn restart_old_primary(
    ctx: &Arc<Ctx>,
    actor: &Actor,
    wf: u64,
    why: &str,
    from_agent: &str,
    resolved: Option<Approval>,
) -> WorkflowResult<String> {
    let w = recorded_workflow(ctx, wf)?;
    let (name, from, to) = (w.cluster.clone(), w.from.clone(), w.to.clone());
    let c = recorded_cluster(ctx, &name)?;
    let restart = command(&name, c.epoch, c.epoch_index, agent_command::Kind::Restart(Default::default()));
    let target = if w.steps.iter().any(|s| s.name == ATTESTED_STEP) {
        format!("{to} was attested dead (its acknowledged writes after {from} stopped are lost)")
    } else {
        format!("{to} is stopped and rejoins as its standby")
    };
    let step = step_timeout(ctx, &name);
    let mut outcome = match ctx.bus.call(from_agent, restart, step).await {
        Ok(_) => {
            format!("rolled back after the new epoch: {why}; {from} is primary again at epoch {}; {target}", c.epoch)
        }
        Err(e) => format!("failed: {why}; rolled back to epoch {}, but restarting {from} failed: {e}", c.epoch),
    };
    // `from` starts with the synchronous standbys it had before the switchover, the target among
    // them; a target that will not return would keep every commit waiting. Relaxed, it waits for
    // the recorded set (emptied by the switchover's epoch: recorded first, then reconfigured);
    // strict, it keeps waiting, as a strict cluster does for any lost synchronous standby.
    let attested = w.steps.iter().any(|s| s.name == ATTESTED_STEP);
    if attested && !c.strict && outcome.starts_with("rolled back") {
        let names: Vec<String> = c.synchronous.iter().cloned().collect();
        let set = agent_command::Kind::SetSynchronous(triad_proto::v1::SetSynchronous { names });
        if let Err(e) = ctx.bus.call(from_agent, command(&name, c.epoch, c.epoch_index, set), step).await {
            outcome.push_str(&format!("; {from} still waits for {to} to acknowledge commits ({e})"));
        }
    }
    propose(ctx, actor, Command::FinishWorkflow { workflow: wf, outcome: outcome.clone() }).await?;
    if let Some(a) = resolved {
        let done = if outcome.starts_with("rolled back") { format!("completed: {outcome}") } else { outcome.clone() };
        let cmd = Command::SetApprovalState { id: a.id, state: ApprovalState::Ended(done) };
        if let Err(e) = propose(ctx, actor, cmd).await {
            tracing::warn!(request = a.id, "recording how request {} ended: {e}", a.id);
        }
    }
    if outcome.starts_with("rolled back") {
        Ok(outcome)
    } else {
        Err(WorkflowError::Ended(outcome))
    }
}

/// Records that two people attested the target of workflow `w` dead (request `a`): the request
/// is started, and the step says what is lost.
async fn record_attestation(ctx: &Ctx, actor: &Actor, w: &Workflow, a: &Approval) -> WorkflowResult<()> {
    let (from, to) = (&w.from, &w.to);
    propose(ctx, actor, Command::SetApprovalState { id: a.id, state: ApprovalState::Started }).await?;
    let approver = a.approved_by.clone().unwrap_or_default();
    let note = format!(
        "request {}: {to} attested by {} and {approver}: {}; whatever {to} acknowledged after {from} stopped is lost",
        a.id, a.requested_by, a.reason
    );
    tracing::error!(cluster = %w.cluster, workflow = w.id, "rollback: {note}");
    let step = Command::RecordStep { workflow: w.id, name: ATTESTED_STEP.into(), note };
    propose(ctx, actor, step).await.map(|_| ())
}

/// Stops the target at once (`stop`: a StopStandby), asking again while its agent reconnects to
/// a new leader, for up to a step's timeout. Its agent's account, or why it did not answer ok.
async fn stop_target(ctx: &Ctx, to_agent: &str, stop: AgentCommand) -> Result<String, CallError> {
    let step = step_timeout(ctx, &stop.cluster);
    let deadline = Instant::now() + step;
    loop {
        match ctx.bus.call(to_agent, stop.clone(), step).await {
            Ok(r) => return Ok(r.detail),
            Err(CallError::NoStream { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => return Err(e),
        }
    }
}

/// The target had finished its promotion when the rollback stopped it: it becomes the primary
/// again, at a new epoch (e+3), started under a lease at it. Safe because `from` has not been
/// started since it was stopped cleanly before the first epoch change, so the target holds all of
/// it and more; `from` then rejoins as the target's standby (`rejoin.rs`). Idempotent like the
/// rollback: a new leader that finds the step recorded runs this again.
async fn roll_forward(ctx: &Arc<Ctx>, actor: &Actor, wf: u64, why: String) -> WorkflowResult<String> {
    let w = recorded_workflow(ctx, wf)?;
    let (name, from, to) = (w.cluster.clone(), w.from.clone(), w.to.clone());
    let c = recorded_cluster(ctx, &name)?;
    if c.primary.as_deref() != Some(to.as_str()) {
        tracing::error!(cluster = %name, workflow = wf, "rollback: {to} had finished its promotion; going forward to it");
        propose(ctx, actor, Command::SwitchPrimary { cluster: name.clone(), workflow: wf, primary: to.clone() })
            .await?;
    }
    let c = recorded_cluster(ctx, &name)?;
    let to_agent = c
        .members
        .get(&to)
        .map(|m| m.agent.clone())
        .ok_or_else(|| WorkflowError::gone(format!("`{to}` is not a member")))?;
    // Every lease at the rollback's epoch ends first (none was used: `from` was never started).
    let ended = ctx.leases.all_ended_at(ctx, &name).ok_or(WorkflowError::NotLeader)?;
    tokio::time::sleep(ended.saturating_duration_since(Instant::now())).await;
    let restart = command(&name, c.epoch, c.epoch_index, agent_command::Kind::Restart(Default::default()));
    // Left open on failure: the brain's recovery runs this again.
    ctx.bus
        .call(&to_agent, restart, step_timeout(ctx, &name))
        .await
        .map_err(WorkflowError::agent(format!("restarting {to}")))?;
    let outcome = format!(
        "completed (rolled forward): {why}; {to} had finished its promotion, so it is primary at epoch {}; {from} \
         rejoins as its standby",
        c.epoch
    );
    propose(ctx, actor, Command::FinishWorkflow { workflow: wf, outcome: outcome.clone() }).await?;
    Ok(outcome)
}
