//! Planned switchover: hand the primary role to a caught-up standby with no acknowledged write
//! lost. Every step is recorded in the replicated workflow before and after it runs.
//!
//! The order is the safety argument (DESIGN.md, "Safety of role changes"):
//! 1. the old primary is stopped cleanly first, so nothing can commit on it any more and its
//!    standbys receive everything up to its shutdown checkpoint;
//! 2. the target must hold that checkpoint (received and replayed) before anything changes;
//! 3. the new epoch is committed before the promote command goes out, and every command carries
//!    it, so an agent acting on an older epoch is refused;
//! 4. the synchronous set is emptied when the epoch changes (removing: record first) and recorded
//!    again only after the new primary confirms its synchronous standby (adding: reconfigure,
//!    confirm, record).
//!
//! Before the epoch changes, any failure rolls back by restarting the old primary as it was.

use std::sync::Arc;
use std::time::{Duration, Instant};

use triad_proto::replica;
use triad_proto::v1::{agent_command, DbStatus, PositionUnit, ReplicaState, ReplicaStatus};

use super::promote::{first_commit_waits_for, promote, PromoteBudget};
use super::recovery_plan::RoleChange;
use super::workflow::{
    cluster, command, failpoint, fresh_db, propose, recorded_cluster, recorded_workflow, restart_if_stopped,
    start_workflow, step_timeout,
};
use super::{WorkflowError, WorkflowResult};
use crate::context::Ctx;
use crate::state::WorkflowKind;
use crate::state::{Actor, Command, DbCluster};

/// How far behind (bytes, flushed and replayed) a target may be and still be switched to, when
/// its driver counts positions in bytes.
pub const MAX_TARGET_LAG: i64 = 16 << 20;

/// How far behind (seconds, in receipt and in what it has still to apply) a target may be and
/// still be switched to, when its driver does not count bytes (Oracle: SCNs; B3 of
/// docs/oracle-data-guard.md). 16 MiB at the 8 MiB/s assumed of a replay is 2 s; a lag in time
/// is coarser (whole seconds on Oracle), hence the wider bound.
pub const MAX_TARGET_LAG_SECONDS: f64 = 10.0;

/// How often a switchover sends the promote before it gives up, and the pause between two.
const PROMOTE_ATTEMPTS: u32 = 3;
const PROMOTE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What a finished switchover reports.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub workflow: u64,
    pub epoch: u64,
    pub summary: String,
}

/// The pre-checks, each with the reason it fails; returns (from, from agent, to agent, target endpoint).
pub fn precheck(ctx: &Ctx, name: &str, to: &str) -> WorkflowResult<(String, String, String, String)> {
    if !ctx.is_leader() {
        return Err(WorkflowError::NotLeader);
    }
    if let Some(why) = ctx.continuity.held(ctx.raft.metrics().borrow().current_term) {
        return Err(WorkflowError::Refused(why));
    }
    let c = cluster(ctx, name).ok_or_else(|| WorkflowError::Refused(format!("no cluster named `{name}`")))?;
    if c.epoch == 0 {
        return Err(WorkflowError::Refused(format!("`{name}` is not adopted yet (no primary recorded)")));
    }
    if c.paused {
        return Err(WorkflowError::Refused(format!(
            "`{name}` is paused (maintenance); `triadctl resume --cluster {name}` first"
        )));
    }
    if let Some(w) = c.workflow {
        return Err(WorkflowError::Refused(format!("workflow {w} is still under way on `{name}`")));
    }
    let from = c.primary.clone().ok_or_else(|| WorkflowError::gone("no primary recorded"))?;
    if from == to {
        return Err(WorkflowError::Refused(format!("`{to}` is already the primary")));
    }
    let to_member =
        c.members.get(to).ok_or_else(|| WorkflowError::Refused(format!("`{to}` is not a member of `{name}`")))?;
    let from_member =
        c.members.get(&from).ok_or_else(|| WorkflowError::gone("the recorded primary is not a member"))?;
    // A link that carries the cluster between the two sites and is not up: the NOC hears that
    // first, as the reason (the state refuses the workflow for it too).
    {
        let g = ctx.state.read().expect("state lock poisoned");
        let links = &g.state.links;
        if let Some(l) = crate::state::links::blocking_link(links, name, &from_member.site, &to_member.site) {
            return Err(WorkflowError::Refused(crate::state::links::refusal(l, name).to_string()));
        }
    }
    let from_db = fresh_db(ctx, &from_member.agent)
        .ok_or_else(|| WorkflowError::Refused(format!("no fresh report from `{from}`'s agent")))?;
    let to_db = fresh_db(ctx, &to_member.agent)
        .ok_or_else(|| WorkflowError::Refused(format!("no fresh report from `{to}`'s agent")))?;
    if !(from_db.up && from_db.role == "primary") {
        return Err(WorkflowError::Refused(format!("`{from}` is not running as primary ({})", from_db.role)));
    }
    if !(to_db.up && to_db.role == "standby") {
        return Err(WorkflowError::Refused(format!("`{to}` is not a running standby ({})", to_db.role)));
    }
    let replica = from_db
        .replicas
        .iter()
        .find(|r| r.name == to)
        .ok_or_else(|| WorkflowError::Refused(format!("`{to}` is not streaming from `{from}`")))?;
    let state = replica::state(replica);
    if state != ReplicaState::Streaming {
        return Err(WorkflowError::Refused(format!(
            "`{to}` is not streaming ({}; the database says `{}`)",
            replica::state_word(state),
            replica.state
        )));
    }
    target_lag(to, replica, &to_db, replica::positions_are_bytes(&from_db))?;
    if to_db.endpoint.is_empty() || from_db.endpoint.is_empty() {
        return Err(WorkflowError::Refused(
            "the agents do not report replication endpoints (database.endpoint)".into(),
        ));
    }
    Ok((from, from_member.agent.clone(), to_member.agent.clone(), to_db.endpoint))
}

/// Whether the target is close enough behind to be switched to (DESIGN.md point 7: a switchover
/// to a member far behind in replay is refused, with the reason). In bytes when the driver counts
/// bytes, else in seconds, the apply lag read from the target's own report; a lag not measured
/// is a refusal (fail closed), but a driver without byte lags is judged by its seconds.
fn target_lag(to: &str, replica: &ReplicaStatus, to_db: &DbStatus, bytes: bool) -> WorkflowResult<()> {
    let refuse = |what: String| Err(WorkflowError::Refused(format!("`{to}` is {what}")));
    if bytes {
        for (lag, what) in [(replica.flush_lag_bytes, "flush"), (replica.replay_lag_bytes, "replay")] {
            if !(0..=MAX_TARGET_LAG).contains(&lag) {
                return refuse(format!("{lag} bytes behind in {what} (limit {MAX_TARGET_LAG})"));
            }
        }
        return Ok(());
    }
    let transport = replica.flush_lag_seconds;
    if !replica::caught_up(replica) && !(0.0..=MAX_TARGET_LAG_SECONDS).contains(&transport) {
        return refuse(format!("{transport} s behind in receipt (limit {MAX_TARGET_LAG_SECONDS} s; -1: not measured)"));
    }
    match replica::replay_remaining_seconds(to_db) {
        Some(apply) if apply <= MAX_TARGET_LAG_SECONDS => Ok(()),
        Some(apply) => refuse(format!("{apply} s behind in apply (limit {MAX_TARGET_LAG_SECONDS} s)")),
        None => refuse("not reporting how far behind it is in apply".into()),
    }
}

/// The target's own readiness check, beyond what its reports show (B5 of
/// docs/oracle-data-guard.md: Oracle's `DGMGRL VALIDATE DATABASE`; PostgreSQL's driver has
/// nothing to add). Before the workflow is recorded: a target that is not ready, or whose agent
/// cannot answer, refuses the switchover with nothing changed.
async fn validate_target(ctx: &Ctx, name: &str, to: &str, to_agent: &str) -> WorkflowResult<()> {
    let c = recorded_cluster(ctx, name)?;
    let validate = agent_command::Kind::ValidateTarget(Default::default());
    let cmd = command(name, c.epoch, c.epoch_index, validate);
    match ctx.bus.call(to_agent, cmd, step_timeout(ctx, name)).await {
        Ok(_) => Ok(()),
        Err(e) => Err(WorkflowError::Refused(format!("`{to}` is not ready to become the primary: {e}"))),
    }
}

/// Runs a switchover of `name` to `to`, as `actor`. Returns a summary with each step's timing.
pub async fn run(ctx: Arc<Ctx>, actor: Actor, name: String, to: String) -> WorkflowResult<Outcome> {
    if !ctx.running.lock().expect("running lock poisoned").insert(name.clone()) {
        return Err(WorkflowError::Refused(format!("a workflow on `{name}` is already running on this controller")));
    }
    let result = run_steps(ctx.clone(), actor, name.clone(), to).await;
    // A workflow stopped by a failpoint stays marked as running here, like a task that died with
    // its leader: only the next leader finishes it.
    if !matches!(&result, Err(WorkflowError::Failpoint(_))) {
        ctx.running.lock().expect("running lock poisoned").remove(&name);
    }
    result
}

async fn run_steps(ctx: Arc<Ctx>, actor: Actor, name: String, to: String) -> WorkflowResult<Outcome> {
    let (from, from_agent, to_agent, to_endpoint) = precheck(&ctx, &name, &to)?;
    validate_target(&ctx, &name, &to, &to_agent).await?;
    let started = Instant::now();
    let (wf, c) = start_workflow(&ctx, &actor, &name, WorkflowKind::Switchover, &from, &to).await?;
    let m = Moving { ctx: &ctx, actor: &actor, wf, name: &name, from: &from, from_agent: &from_agent, to: &to };
    let mut log = Vec::new();
    let kind = WorkflowKind::Switchover;
    let plan = RoleChange { ctx: &ctx, actor: &actor, wf, kind, cluster: &name, from: &from, to: &to };

    // 0. The services' pre-hooks, group by group: one that fails aborts while nothing changed.
    if let Err(why) = plan.pre_hooks(&c).await? {
        let outcome = format!("aborted before the promotion: {why}");
        propose(&ctx, &actor, Command::FinishWorkflow { workflow: wf, outcome: outcome.clone() }).await?;
        return Err(WorkflowError::Ended(outcome));
    }
    // The balancers take the old primary out of their writers before it stops.
    plan.balancers_out(&c).await?;

    // 1-2. Stop writes on the old primary; the target catches up with all of it.
    let (final_position, held_canary) = match m.stop_and_catch_up(&c, &to_agent, &mut log).await? {
        Ok(caught_up) => caught_up,
        Err(why) => {
            // The old primary serves again: the balancers and the router put it back.
            let back = RoleChange { from: &to, to: &from, ..plan };
            return rollback(&ctx, &actor, wf, &name, &from_agent, &c, why, Some(&back)).await;
        }
    };
    m.step("caught-up", format!("{to} at or past {final_position}")).await?;
    failpoint("switchover-after-caught-up")?;
    // The old primary's last canary: where the write outage began. The row the target held once
    // it replayed everything is exactly that; an older agent does not send it, and then the
    // newest either member last reported is used (a heartbeat older at most).
    let last_canary = held_canary.filter(|k| k.epoch == c.epoch).or_else(|| {
        [&from_agent, &to_agent]
            .into_iter()
            .filter_map(|a| super::canary::newest(&ctx, a).filter(|k| k.epoch == c.epoch))
            .max_by_key(|k| k.written_ms)
    });

    // 3. The new epoch, committed before any promote goes out.
    propose(&ctx, &actor, Command::SwitchPrimary { cluster: name.clone(), workflow: wf, primary: to.clone() }).await?;
    let c2 = recorded_cluster(&ctx, &name)?;
    log.push(format!("epoch {} committed", c2.epoch));
    failpoint("switchover-after-new-epoch")?;

    // 4. Promote.
    let t = Instant::now();
    let detail = m.promote(&c2, &to_agent).await?;
    log.push(format!("promote {to}: {} ms ({detail})", t.elapsed().as_millis()));
    // It holds its lease: the balancers put it in at once, before anything is recorded.
    let t = Instant::now();
    plan.balancers_in(&c2).await?;
    log.push(format!("balancers told: {} ms", t.elapsed().as_millis()));
    m.step("promoted", to.clone()).await?;
    failpoint("switchover-after-promote")?;

    // The write outage as the canary sees it: until the new primary's first canary at the new epoch.
    let waits_for = first_commit_waits_for(&c2, false);
    let measure = super::canary::measure(&ctx, &to_agent, &to, c2.epoch, last_canary.as_ref(), &waits_for).await;
    log.push(measure.note.clone());
    m.step("canary", measure.note.clone()).await?;
    super::canary::record(&ctx, &actor, wf, &measure).await;
    // The services, group by group: post-hooks (re-pointing them), then their checks.
    let t = Instant::now();
    plan.post_hooks_and_checks(&c2).await?;
    log.push(format!("services' post-hooks and checks: {} ms", t.elapsed().as_millis()));

    // 5-6. The old primary rejoins as a standby of the new one, and becomes synchronous.
    let mut errors = m.rejoin_old_primary(&c2, &to_agent, to_endpoint, &mut log).await?;
    // 7. The other standbys follow the new primary directly.
    let t = Instant::now();
    let others = follow_others(&ctx, &c2, &[from.as_str(), to.as_str()], &name).await;
    if !others.followed.is_empty() {
        log.push(format!("{} follow {to}: {} ms", others.followed.join(", "), t.elapsed().as_millis()));
        m.step("followed", others.followed.join(", ")).await?;
    }
    errors.extend(others.problems);
    let outcome = if errors.is_empty() {
        "completed".to_string()
    } else {
        format!("completed with problems: {}", errors.join("; "))
    };
    propose(&ctx, &actor, Command::FinishWorkflow { workflow: wf, outcome: outcome.clone() }).await?;
    // As recorded: the state adds the services' and balancers' errors when there were any.
    let outcome = recorded_workflow(&ctx, wf)?.finished.map(|(_, o)| o).unwrap_or(outcome);
    log.push(format!("{outcome} in {} ms", started.elapsed().as_millis()));
    Ok(Outcome { workflow: wf, epoch: c2.epoch, summary: log.join("\n") })
}

/// A recorded switchover of cluster `name` from `from` to `to`, for its steps.
struct Moving<'a> {
    ctx: &'a Arc<Ctx>,
    actor: &'a Actor,
    wf: u64,
    name: &'a str,
    from: &'a str,
    from_agent: &'a str,
    to: &'a str,
}

impl Moving<'_> {
    /// Records step `name` of the workflow with `note`.
    async fn step(&self, name: &'static str, note: String) -> WorkflowResult<String> {
        propose(self.ctx, self.actor, Command::RecordStep { workflow: self.wf, name: name.into(), note }).await
    }

    /// Steps 1 and 2: stops writes on the old primary (at epoch `c`), then waits until the target (on
    /// `to_agent`) has received and replayed everything it wrote: its agent answers as soon as
    /// it has (its reports come only every heartbeat), with the canary row it then holds: the
    /// old primary's last. `Ok(Err(why))`: roll back.
    async fn stop_and_catch_up(
        &self,
        c: &DbCluster,
        to_agent: &str,
        log: &mut Vec<String>,
    ) -> WorkflowResult<std::result::Result<(u64, Option<super::canary::Canary>), String>> {
        let (from, to) = (self.from, self.to);
        self.step("stop-writes", "started".into()).await?;
        let t = Instant::now();
        let stop = command(self.name, c.epoch, c.epoch_index, agent_command::Kind::StopPrimary(Default::default()));
        let step = step_timeout(self.ctx, self.name);
        let final_position = match self.ctx.bus.call(self.from_agent, stop, step).await {
            Ok(r) => r.position,
            Err(e) => return Ok(Err(format!("stopping {from}: {e}"))),
        };
        let unit = fresh_db(self.ctx, self.from_agent).map(|d| replica::unit(&d)).unwrap_or(PositionUnit::Bytes);
        let at = replica::format_position(unit, final_position);
        log.push(format!("stop writes on {from}: {} ms (final position {at})", t.elapsed().as_millis()));
        self.step("stop-writes", format!("done, final position {final_position}")).await?;
        failpoint("switchover-after-stop-writes")?;

        let t = Instant::now();
        let wait = triad_proto::v1::WaitReplayed { position: final_position, timeout_ms: step.as_millis() as u32 };
        let wait = command(self.name, c.epoch, c.epoch_index, agent_command::Kind::WaitReplayed(wait));
        let held = match self.ctx.bus.call(to_agent, wait, step + Duration::from_secs(2)).await {
            Ok(r) => {
                r.canary.map(|k| super::canary::Canary { epoch: k.epoch, origin: k.origin, written_ms: k.written_ms })
            }
            Err(e) => return Ok(Err(format!("{to} did not reach the final position: {e}"))),
        };
        log.push(format!("{to} holds the final position: {} ms", t.elapsed().as_millis()));
        Ok(Ok((final_position, held)))
    }

    /// Step 4: promotes the target at the new epoch `c2`. The command is idempotent and
    /// epoch-checked, so a failure (the target's agent reconnecting, its server slow to answer)
    /// is retried before the switchover gives up and rolls back: the old primary is stopped
    /// cleanly and the target holds all of it. Returns the agent's account of the promote.
    async fn promote(&self, c2: &DbCluster, to_agent: &str) -> WorkflowResult<String> {
        let mut attempt = 1;
        loop {
            let sent = match failpoint("switchover-promote") {
                Ok(()) => {
                    let order = promote(c2, false, PromoteBudget::of(self.ctx, self.name, to_agent));
                    let cmd = command(self.name, c2.epoch, c2.epoch_index, order.kind);
                    let answer = self.ctx.bus.call(to_agent, cmd, order.wait).await;
                    let detail = answer.map(|r| r.detail).map_err(WorkflowError::agent("the promote"));
                    // A test hook: the promote ran, but its answer never came back.
                    detail.and_then(|detail| failpoint("switchover-promote-answer-lost").map(|_| detail))
                }
                Err(e) => Err(e),
            };
            match sent {
                Ok(detail) => return Ok(detail),
                Err(e) if attempt < PROMOTE_ATTEMPTS => {
                    self.step("promote-retry", format!("attempt {attempt} failed: {e}")).await?;
                    tokio::time::sleep(PROMOTE_RETRY_AFTER).await;
                    attempt += 1;
                }
                Err(e) => {
                    let why = format!("promoting {} failed {attempt} times: {e}", self.to);
                    return Err(match super::rollback::run(self.ctx, self.actor, self.wf, why, false).await {
                        Ok(outcome) => WorkflowError::Ended(outcome),
                        Err(e) => e,
                    });
                }
            }
        }
    }

    /// Steps 5 and 6: the old primary rejoins as a standby of the new one (at `to_endpoint`), and is made
    /// synchronous again: reconfigure, confirm, then record. Returns the problems (the
    /// switchover itself is done by then).
    async fn rejoin_old_primary(
        &self,
        c2: &DbCluster,
        to_agent: &str,
        to_endpoint: String,
        log: &mut Vec<String>,
    ) -> WorkflowResult<Vec<String>> {
        let (ctx, from) = (self.ctx, self.from);
        let cmd = |kind| command(self.name, c2.epoch, c2.epoch_index, kind);
        let t = Instant::now();
        let rejoin = agent_command::Kind::Rejoin(triad_proto::v1::Rejoin { primary_endpoint: to_endpoint });
        let step = step_timeout(ctx, self.name);
        if let Err(e) = ctx.bus.call(self.from_agent, cmd(rejoin), step).await {
            return Ok(vec![format!("rejoining {from}: {e}")]);
        }
        log.push(format!("{from} rejoined as a standby: {} ms", t.elapsed().as_millis()));
        self.step("rejoined", from.to_string()).await?;
        failpoint("switchover-after-rejoin")?;
        let t = Instant::now();
        let set = agent_command::Kind::SetSynchronous(triad_proto::v1::SetSynchronous { names: vec![from.into()] });
        if let Err(e) = ctx.bus.call(to_agent, cmd(set), step).await {
            return Ok(vec![format!("setting {from} synchronous: {e}")]);
        }
        if !confirm_sync(ctx, to_agent, from).await {
            return Ok(vec![format!("{from} did not become synchronous")]);
        }
        let record = Command::SetSynchronous { cluster: self.name.to_string(), members: vec![from.to_string()] };
        propose(ctx, self.actor, record).await?;
        log.push(format!("{from} is synchronous again: {} ms", t.elapsed().as_millis()));
        Ok(Vec::new())
    }
}

/// Finishes a switchover that its leader left half done (it died, or a failpoint stopped it),
/// from what the replicated state says happened. The epoch decides the direction: before the
/// new epoch was committed nothing was promoted, so the old primary is restarted (roll back);
/// after it, the target is (or may be) primary, so the remaining steps run (roll forward).
/// Every agent step is idempotent, so repeating one the old leader already ran is harmless.
pub async fn recover(ctx: Arc<Ctx>, wf: u64) -> WorkflowResult<String> {
    let actor = Actor::system(ctx.id);
    let w = recorded_workflow(&ctx, wf)?;
    let c = recorded_cluster(&ctx, &w.cluster)?;
    if w.kind == WorkflowKind::Failover {
        return recover_failover(ctx, actor, &w, &c).await;
    }
    if w.kind == WorkflowKind::Rejoin || w.kind == WorkflowKind::Restart {
        // Neither changes the epoch; the member is simply judged again.
        let outcome = format!("abandoned: the leader changed (controller {} took over)", ctx.id);
        propose(&ctx, &actor, Command::FinishWorkflow { workflow: wf, outcome: outcome.clone() }).await?;
        return Ok(outcome);
    }
    let agent_of = |m: &str| {
        c.members.get(m).map(|m| m.agent.clone()).ok_or_else(|| WorkflowError::gone(format!("`{m}` is not a member")))
    };
    let (from_agent, to_agent) = (agent_of(&w.from)?, agent_of(&w.to)?);
    tracing::warn!(workflow = wf, cluster = %w.cluster, "recovering a workflow left unfinished by a previous leader");
    // Agents need a moment to open their streams to a leader that was just elected.
    wait_for_stream(&ctx, &from_agent).await;
    wait_for_stream(&ctx, &to_agent).await;
    if w.steps.iter().any(|s| s.name == super::rollback::STEP) {
        let why = w.steps.iter().find(|s| s.name == super::rollback::STEP).map(|s| s.note.clone()).unwrap_or_default();
        return super::rollback::run(&ctx, &actor, wf, why, true).await;
    }
    if c.primary.as_deref() == Some(w.from.as_str()) {
        let why = format!("the leader changed before the new epoch was committed (controller {} took over)", ctx.id);
        // Its balancers may have taken the old primary out already: put it back.
        let back =
            RoleChange { ctx: &ctx, actor: &actor, wf, kind: w.kind, cluster: &w.cluster, from: &w.to, to: &w.from };
        return rollback(&ctx, &actor, wf, &w.cluster, &from_agent, &c, why, Some(&back)).await.map(|o| o.summary);
    }
    if c.primary.as_deref() != Some(w.to.as_str()) {
        let outcome = format!("abandoned: the primary is now {:?}", c.primary);
        propose(&ctx, &actor, Command::FinishWorkflow { workflow: wf, outcome: outcome.clone() }).await?;
        return Err(WorkflowError::Ended(outcome));
    }
    let step = |name: &'static str, note: String| Command::RecordStep { workflow: wf, name: name.into(), note };
    let cmd = |kind| command(&w.cluster, c.epoch, c.epoch_index, kind);
    restart_if_stopped(&ctx, &c, &w.to, &to_agent).await?;
    // The target's canary row, if it still holds the old primary's (it was not promoted before
    // the leader changed): the write outage can then be measured as on the first run.
    let held = super::canary::newest(&ctx, &to_agent).filter(|k| k.epoch < c.epoch);
    let order = promote(&c, false, PromoteBudget::of(&ctx, &w.cluster, &to_agent));
    ctx.bus
        .call(&to_agent, cmd(order.kind), order.wait)
        .await
        .map_err(WorkflowError::agent(format!("promoting {} on recovery", w.to)))?;
    let plan = RoleChange { ctx: &ctx, actor: &actor, wf, kind: w.kind, cluster: &w.cluster, from: &w.from, to: &w.to };
    plan.balancers_in(&c).await?;
    propose(&ctx, &actor, step("promoted", format!("{} (on recovery)", w.to))).await?;
    // Measured only from a row of the old primary's: a target already writing at the new epoch
    // would show its newest row, not its first.
    if held.is_some() {
        let waits_for = first_commit_waits_for(&c, false);
        let measure = super::canary::measure(&ctx, &to_agent, &w.to, c.epoch, held.as_ref(), &waits_for).await;
        propose(&ctx, &actor, step("canary", measure.note.clone())).await?;
        super::canary::record(&ctx, &actor, wf, &measure).await;
    }
    let to_endpoint = fresh_db(&ctx, &to_agent).map(|d| d.endpoint).unwrap_or_default();
    let rejoin = agent_command::Kind::Rejoin(triad_proto::v1::Rejoin { primary_endpoint: to_endpoint });
    let mut problems = Vec::new();
    let within = step_timeout(&ctx, &w.cluster);
    match ctx.bus.call(&from_agent, cmd(rejoin), within).await {
        Ok(_) => {
            propose(&ctx, &actor, step("rejoined", format!("{} (on recovery)", w.from))).await?;
            let set =
                agent_command::Kind::SetSynchronous(triad_proto::v1::SetSynchronous { names: vec![w.from.clone()] });
            if let Err(e) = ctx.bus.call(&to_agent, cmd(set), within).await {
                problems.push(format!("setting {} synchronous: {e}", w.from));
            } else if confirm_sync(&ctx, &to_agent, &w.from).await {
                propose(
                    &ctx,
                    &actor,
                    Command::SetSynchronous { cluster: w.cluster.clone(), members: vec![w.from.clone()] },
                )
                .await?;
            } else {
                problems.push(format!("{} did not become synchronous", w.from));
            }
        }
        Err(e) => problems.push(format!("rejoining {}: {e}", w.from)),
    }
    let others = follow_others(&ctx, &c, &[w.from.as_str(), w.to.as_str()], &w.cluster).await;
    problems.extend(others.problems);
    plan.post_hooks_and_checks(&c).await?;
    let outcome = if problems.is_empty() {
        format!("completed by controller {} after a leader change", ctx.id)
    } else {
        format!("completed by controller {} after a leader change, with problems: {}", ctx.id, problems.join("; "))
    };
    propose(&ctx, &actor, Command::FinishWorkflow { workflow: wf, outcome: outcome.clone() }).await?;
    Ok(outcome)
}

/// A failover its leader left: after the new epoch it can only go forward (promote, follow);
/// before it nothing changed, so it is closed and the detector judges the cluster afresh.
async fn recover_failover(
    ctx: Arc<Ctx>,
    actor: Actor,
    w: &crate::state::Workflow,
    c: &DbCluster,
) -> WorkflowResult<String> {
    if c.primary.as_deref() == Some(w.to.as_str()) {
        wait_for_stream(&ctx, &c.members.get(&w.to).map(|m| m.agent.clone()).unwrap_or_default()).await;
        return super::failover::finish(ctx, actor, w.id, Instant::now()).await;
    }
    let outcome = format!("abandoned: the leader changed before the new epoch (controller {} took over)", ctx.id);
    propose(&ctx, &actor, Command::FinishWorkflow { workflow: w.id, outcome: outcome.clone() }).await?;
    Ok(outcome)
}

/// Which other standbys were repointed, and what went wrong.
pub(crate) struct Followed {
    pub followed: Vec<String>,
    pub problems: Vec<String>,
}

/// Points every member other than `skip` (the old and the new primary) at the new primary.
pub(crate) async fn follow_others(ctx: &Ctx, c: &DbCluster, skip: &[&str; 2], name: &str) -> Followed {
    let mut out = Followed { followed: Vec::new(), problems: Vec::new() };
    let primary = c.primary.clone().unwrap_or_default();
    let endpoint = c.members.get(&primary).map(|m| m.endpoint.clone()).unwrap_or_default();
    for m in c.members.values().filter(|m| !skip.contains(&m.name.as_str())) {
        let follow = agent_command::Kind::Follow(triad_proto::v1::Follow { primary_endpoint: endpoint.clone() });
        match ctx.bus.call(&m.agent, command(name, c.epoch, c.epoch_index, follow), step_timeout(ctx, name)).await {
            Ok(_) => out.followed.push(m.name.clone()),
            Err(e) => out.problems.push(format!("{} did not follow {primary}: {e}", m.name)),
        }
    }
    out
}

async fn wait_for_stream(ctx: &Ctx, agent: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ctx.bus.has_stream(agent) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the primary on `primary_agent` reports `standby` synchronous and caught up.
pub(crate) async fn confirm_sync(ctx: &Ctx, primary_agent: &str, standby: &str) -> bool {
    let deadline = Instant::now() + super::workflow::STEP_TIMEOUT;
    while Instant::now() < deadline {
        let ok = fresh_db(ctx, primary_agent).is_some_and(|d| {
            d.replicas.iter().any(|r| r.name == standby && replica::synchronous(r) && replica::caught_up(r))
        });
        if ok {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Before the epoch changed: start the old primary again as it was, put it back in the balancers
/// and routes (`back`: the role change reversed), and end the workflow.
#[allow(clippy::too_many_arguments)]
async fn rollback(
    ctx: &Ctx,
    actor: &Actor,
    wf: u64,
    name: &str,
    from_agent: &str,
    c: &DbCluster,
    why: String,
    back: Option<&RoleChange<'_>>,
) -> WorkflowResult<Outcome> {
    let restarted = ctx
        .bus
        .call(
            from_agent,
            command(name, c.epoch, c.epoch_index, agent_command::Kind::Restart(Default::default())),
            step_timeout(ctx, name),
        )
        .await;
    let outcome = match restarted {
        Ok(_) => format!("rolled back: {why}; the old primary runs again"),
        Err(e) => format!("rolled back: {why}; restarting the old primary failed too: {e}"),
    };
    if let Some(back) = back {
        if let Err(e) = back.balancers_back(c).await {
            tracing::warn!(workflow = wf, "putting the old primary back in the balancers: {e}");
        }
    }
    let _ = propose(ctx, actor, Command::FinishWorkflow { workflow: wf, outcome: outcome.clone() }).await;
    Err(WorkflowError::Ended(outcome))
}
