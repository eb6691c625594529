//! A failover rehearsal's own steps (issue 21): a real, announced failover for sites that must
//! rehearse the automatic path itself. The drill stops the primary's server at once, as a lost
//! site's would stop; everything after is the automatic path, untouched: the detector finds the
//! primary lost, the failover workflow promotes the synchronous standby (waiting out the lease,
//! DESIGN.md points 4-6), and the rejoin workflow brings the old primary back as a standby. The
//! drill only watches, measures, and then switches back.
//!
//! Fail closed: the primary is stopped only when the detector would fail over (the policy allows
//! an automatic failover now, nothing blocks it, the target is the synchronous standby); and if
//! no failover starts within [`FAILOVER_WAIT`], the old primary is started again at its epoch.

use std::time::{Duration, Instant};

use triad_proto::replica;
use triad_proto::v1::{agent_command, ReplicaState};

use super::next::workflow_since;
use crate::brain::workflow::{command, fresh_db, recorded_cluster};
use crate::brain::{WorkflowError, WorkflowResult};
use crate::context::Ctx;
use crate::state::drills::DrillRun;
use crate::state::WorkflowKind;

/// How long the automatic failover may take to start, and the old primary to rejoin.
const FAILOVER_WAIT: Duration = Duration::from_secs(60);
const REJOIN_WAIT: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(200);
/// How long the agents may take to answer one command.
const ANSWER: Duration = Duration::from_secs(30);

/// Why an automatic failover of the run's cluster to its target would not follow a lost primary
/// now (empty: it would).
fn failover_blocked(ctx: &Ctx, run: &DrillRun) -> WorkflowResult<Vec<String>> {
    let c = recorded_cluster(ctx, &run.plan.cluster)?;
    let g = ctx.state.read().expect("state lock poisoned");
    let mut why = crate::brain::detector::policy_blocks(&g.state, &c, &ctx.cfg.failover, crate::context::now_ms());
    if !c.failover_blocked.is_empty() {
        why.push(c.failover_blocked.clone());
    }
    if !c.synchronous.contains(&run.plan.target) {
        why.push(format!("`{}` is not the synchronous standby", run.plan.target));
    }
    if c.primary.as_deref() != Some(run.origin.as_str()) {
        why.push(format!("`{}` is no longer the primary", run.origin));
    }
    Ok(why)
}

/// Stops the primary at once, if an automatic failover would follow; the step's verdict and note.
pub async fn fail_primary(ctx: &Ctx, run: &DrillRun) -> WorkflowResult<(bool, String)> {
    let blocked = failover_blocked(ctx, run)?;
    if !blocked.is_empty() {
        return Ok((false, format!("not stopped: no automatic failover would follow ({})", blocked.join("; "))));
    }
    let c = recorded_cluster(ctx, &run.plan.cluster)?;
    let agent = c.members.get(&run.origin).map(|m| m.agent.clone()).unwrap_or_default();
    let order = agent_command::Kind::FailPrimary(Default::default());
    match ctx.bus.call(&agent, command(&c.name, c.epoch, c.epoch_index, order), ANSWER).await {
        Ok(r) => Ok((true, format!("`{}` at epoch {}: {}", run.origin, c.epoch, r.detail))),
        Err(e) => Ok((false, format!("stopping `{}`: {e}", run.origin))),
    }
}

/// Waits for the automatic failover to start (then `None`: the run adopts it once it ends). If
/// none starts within [`FAILOVER_WAIT`], starts the old primary again at its unchanged epoch and
/// fails the step.
pub async fn await_failover(ctx: &Ctx, run: &DrillRun, since_ms: u64) -> WorkflowResult<Option<(bool, String)>> {
    let deadline = Instant::now() + FAILOVER_WAIT;
    loop {
        let c = recorded_cluster(ctx, &run.plan.cluster)?;
        let started = {
            let g = ctx.state.read().expect("state lock poisoned");
            workflow_since(&c, &g.state.workflows, WorkflowKind::Failover, since_ms).is_some()
        };
        if started || c.workflow.is_some() {
            return Ok(None);
        }
        if !ctx.is_leader() {
            return Err(WorkflowError::NotLeader);
        }
        if Instant::now() >= deadline {
            let agent = c.members.get(&run.origin).map(|m| m.agent.clone()).unwrap_or_default();
            let restart = agent_command::Kind::Restart(Default::default());
            let restarted = match ctx.bus.call(&agent, command(&c.name, c.epoch, c.epoch_index, restart), ANSWER).await
            {
                Ok(_) => format!("`{}` started again", run.origin),
                Err(e) => format!("starting `{}` again failed too: {e}", run.origin),
            };
            let said = if c.failover_blocked.is_empty() { "nothing".to_string() } else { c.failover_blocked.clone() };
            let note = format!(
                "no automatic failover within {} s (the detector says: {said}); {restarted}",
                FAILOVER_WAIT.as_secs()
            );
            return Ok(Some((false, note)));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the old primary reports itself a running standby at the new epoch and the new
/// primary reports it streaming; the step's verdict and note.
pub async fn await_rejoin(ctx: &Ctx, run: &DrillRun) -> WorkflowResult<(bool, String)> {
    let t = Instant::now();
    loop {
        let c = recorded_cluster(ctx, &run.plan.cluster)?;
        let agent_of = |m: &str| c.members.get(m).map(|m| m.agent.clone()).unwrap_or_default();
        let primary = c.primary.clone().unwrap_or_default();
        let old = fresh_db(ctx, &agent_of(&run.origin));
        let standby = old.is_some_and(|d| d.up && d.role == "standby" && d.agent_epoch == c.epoch);
        let streams = fresh_db(ctx, &agent_of(&primary)).is_some_and(|d| {
            d.replicas.iter().any(|r| r.name == run.origin && replica::state(r) == ReplicaState::Streaming)
        });
        if standby && streams && primary != run.origin {
            let ms = t.elapsed().as_millis();
            return Ok((
                true,
                format!("`{}` streams from `{primary}` as a standby ({ms} ms in this step)", run.origin),
            ));
        }
        if !ctx.is_leader() {
            return Err(WorkflowError::NotLeader);
        }
        if t.elapsed() >= REJOIN_WAIT {
            return Ok((
                false,
                format!("`{}` did not rejoin as a standby within {} s", run.origin, REJOIN_WAIT.as_secs()),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}
