//! What every workflow uses: its record in the replicated state (start, steps, the lookups it
//! needs), commands to agents stamped with the epoch, and the test failpoints between steps.

use std::time::Duration;

use triad_proto::v1::{agent_command, AgentCommand, DbStatus};

use super::{WorkflowError, WorkflowResult};
use crate::context::Ctx;
use crate::state::{Actor, Command, DbCluster, Response, WorkflowKind};

/// How long a workflow waits for an agent's answer to one step.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one step of a workflow on `cluster` waits for an agent (`[clusters.timeouts]`
/// `step_ms`, default [`STEP_TIMEOUT`]).
pub(crate) fn step_timeout(ctx: &Ctx, cluster: &str) -> Duration {
    ctx.cfg.timeouts(cluster).step()
}

/// The agent's database report, if it is fresh (heard within `agents.down_after_ms`).
pub(crate) fn fresh_db(ctx: &Ctx, agent: &str) -> Option<DbStatus> {
    ctx.obs.fresh_db(agent, Duration::from_millis(ctx.cfg.agents.down_after_ms))
}

/// Before a promote that a workflow repeats: a target found stopped (promoted, then fenced when
/// its lease lapsed while leaders changed; or simply down) cannot be reached by the promote, so
/// it is started again as it was first. Safe because it is the primary the committed state names
/// at this epoch and a workflow is open on its cluster, so no failover can promote another member
/// meanwhile; started, it serves only under a lease, like any primary.
pub(crate) async fn restart_if_stopped(ctx: &Ctx, c: &DbCluster, member: &str, agent: &str) -> WorkflowResult<()> {
    let stopped = fresh_db(ctx, agent).is_some_and(|d| !d.up && d.stopped && d.agent_epoch == c.epoch);
    if !stopped || c.primary.as_deref() != Some(member) {
        return Ok(());
    }
    tracing::warn!(cluster = %c.name, member, "the new primary is stopped: starting it again before the promote");
    let restart = command(&c.name, c.epoch, c.epoch_index, agent_command::Kind::Restart(Default::default()));
    ctx.bus
        .call(agent, restart, step_timeout(ctx, &c.name))
        .await
        .map(|_| ())
        .map_err(WorkflowError::agent(format!("restarting {member}")))
}

/// Records a workflow of `kind` on cluster `name` from `from` to `to` (the state refuses it
/// while another runs); returns its id and the cluster as applied with it.
pub(crate) async fn start_workflow(
    ctx: &Ctx,
    actor: &Actor,
    name: &str,
    kind: WorkflowKind,
    from: &str,
    to: &str,
) -> WorkflowResult<(u64, DbCluster)> {
    let cmd = Command::StartWorkflow { cluster: name.into(), kind, from: from.into(), to: to.into() };
    propose(ctx, actor, cmd).await?;
    let c = recorded_cluster(ctx, name)?;
    let wf = c.workflow.ok_or_else(|| WorkflowError::gone("the workflow was not recorded"))?;
    Ok((wf, c))
}

/// A copy of cluster `name` as applied on this controller.
pub(crate) fn cluster(ctx: &Ctx, name: &str) -> Option<DbCluster> {
    ctx.state.read().expect("state lock poisoned").state.clusters.get(name).cloned()
}

/// Cluster `name` as applied on this controller, which a running workflow needs.
pub(crate) fn recorded_cluster(ctx: &Ctx, name: &str) -> WorkflowResult<DbCluster> {
    cluster(ctx, name).ok_or_else(|| WorkflowError::gone(format!("cluster `{name}` is no longer recorded")))
}

/// The primary `c` records, and its agent.
pub(crate) fn recorded_primary(c: &DbCluster) -> WorkflowResult<(String, String)> {
    let primary = c.primary.clone().ok_or_else(|| WorkflowError::gone(format!("`{}` records no primary", c.name)))?;
    let agent = c.members.get(&primary).map(|m| m.agent.clone());
    let agent = agent.ok_or_else(|| WorkflowError::gone(format!("the primary `{primary}` is not a member")))?;
    Ok((primary, agent))
}

/// Workflow `wf` as applied on this controller.
pub(crate) fn recorded_workflow(ctx: &Ctx, wf: u64) -> WorkflowResult<crate::state::Workflow> {
    let g = ctx.state.read().expect("state lock poisoned");
    g.state.workflows.get(&wf).cloned().ok_or_else(|| WorkflowError::gone(format!("workflow {wf} is not recorded")))
}

pub(crate) async fn propose(ctx: &Ctx, actor: &Actor, command: Command) -> WorkflowResult<String> {
    match ctx.proposer.propose(ctx.proposal(actor.clone(), command)).await {
        Ok(c) => match c.response {
            Response::Ok(m) => Ok(m),
            Response::Rejected(why) => Err(WorkflowError::Rejected(why)),
            other => {
                Err(WorkflowError::Rejected(crate::state::Rejection::Invalid(format!("unexpected response {other:?}"))))
            }
        },
        Err(e) => Err(WorkflowError::Uncommitted(e)),
    }
}

/// A test hook between two steps: with `FAILPOINTS=<name>=return` the workflow stops right there,
/// as if its leader had died, leaving the recorded workflow for the next leader to finish
/// (`switchover-promote` instead fails one promote attempt: `1*return` fails the first;
/// `switchover-promote-answer-lost` loses the answer of one that ran).
pub(crate) fn failpoint(name: &str) -> WorkflowResult<()> {
    fail::fail_point!(name, |_| Err(WorkflowError::Failpoint(name.to_string())));
    Ok(())
}

/// A test hook that holds a workflow where it stands for the milliseconds its failpoint returns
/// (`FAILPOINTS=<name>=return(8000)`), so that a test can kill the leader at that very step.
pub(crate) async fn pause_point(name: &str) {
    let pause = || -> Option<u64> {
        fail::fail_point!(name, |ms: Option<String>| ms.and_then(|ms| ms.parse().ok()));
        None
    };
    if let Some(ms) = pause() {
        tracing::warn!("failpoint {name}: pausing {ms} ms");
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

pub(crate) fn command(cluster: &str, epoch: u64, index: u64, kind: agent_command::Kind) -> AgentCommand {
    AgentCommand { id: 0, cluster: cluster.into(), epoch, log_index: index, kind: Some(kind) }
}
