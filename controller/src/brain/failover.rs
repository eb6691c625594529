//! Automatic failover: when the detector (`detector.rs`) finds the primary lost, promote its
//! synchronous standby — only after every lease the primary could hold has ended — and point the
//! other standbys at it. Manual failover (`manual.rs`) runs the same steps.
//!
//! The safety argument, point by point (DESIGN.md, "Safety of role changes"):
//! - *When is a primary lost* (point 6) and *anti-flapping* (point 9): `detector.rs`.
//! - *No lost commits* (point 5): a member of the committed synchronous set is a candidate;
//!   with synchronous replication every acknowledged commit is on it. When none of them can take
//!   over, another standby may if its position reaches the stopped primary's final position
//!   (`final_position.rs`); the vouchers acknowledge the new epoch first (point 3). With no
//!   synchronous member recorded (relaxed mode after the standby was lost) automatic failover is
//!   off: no failover, and the reason is recorded for status.
//! - *Wait out the lease* (point 4): the new epoch is committed only after
//!   [`super::Leases::all_ended_at`], unless the old primary's agent, asked with
//!   [`super::lease::Release`], answers that its server is stopped and its lease released.
//! - *Epoch first* (point 1): the new epoch is committed before the promote command goes out,
//!   and the candidate promotes only once it holds a lease at that epoch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use triad_proto::v1::agent_command;

use super::detector::judge;
use super::final_position;
use super::recovery_plan::RoleChange;
use super::workflow::{cluster, command, propose, recorded_cluster, recorded_primary, recorded_workflow};
use super::{WorkflowError, WorkflowResult};
use crate::context::{now_ms, Ctx};
use crate::state::WorkflowKind;
use crate::state::{Actor, Command, DbCluster, PRIMARY_LOST};

/// What a manual failover adds to the automatic one's steps.
#[derive(Debug, Clone, Default)]
pub struct Manual {
    /// Recorded first: who requested, who approved, why.
    pub approved: String,
    /// Set when the target is outside the vouch set (DESIGN.md point 3): the vouchers whose agents
    /// must accept the new epoch before the promote (those attested dead excluded); after them,
    /// P(1+rho)+m more, for the last vouch any of them gave to end.
    pub await_vouchers: Option<Vec<String>>,
    /// The data-loss window it accepts, when the target is not synchronous.
    pub data_loss: Option<String>,
}

/// The step of a manual failover that accepted losing commits, with the window it accepts.
const DATA_LOSS_WINDOW: &str = "data-loss-window";

/// The step that lists the vouchers a promote outside the vouch set waits for.
const AWAIT_VOUCHERS: &str = "await-vouchers";

/// Runs the failover of `name` from its primary to `to`, as `actor`; returns a summary.
pub async fn run(ctx: Arc<Ctx>, actor: Actor, name: String, to: String, why: String) -> WorkflowResult<String> {
    run_with(ctx, actor, name, to, why, None).await
}

/// [`run`], for a manual failover when `manual` is given.
pub async fn run_with(
    ctx: Arc<Ctx>,
    actor: Actor,
    name: String,
    to: String,
    why: String,
    manual: Option<Manual>,
) -> WorkflowResult<String> {
    let c = recorded_cluster(&ctx, &name)?;
    let (from, from_agent) = recorded_primary(&c)?;
    let started = Instant::now();
    tracing::error!(cluster = %name, from = %from, to = %to, "primary lost ({why}): failing over");
    let (wf, _) = super::workflow::start_workflow(&ctx, &actor, &name, WorkflowKind::Failover, &from, &to).await?;
    let step = |n: &'static str, note: String| Command::RecordStep { workflow: wf, name: n.into(), note };
    if let Some(m) = &manual {
        propose(&ctx, &actor, step("approved", m.approved.clone())).await?;
        if let Some(loss) = &m.data_loss {
            propose(&ctx, &actor, step(DATA_LOSS_WINDOW, loss.clone())).await?;
        }
    }
    propose(&ctx, &actor, step("detected", why)).await?;
    let kind = WorkflowKind::Failover;
    let plan = RoleChange { ctx: &ctx, actor: &actor, wf, kind, cluster: &name, from: &from, to: &to };
    // The services' pre-hooks, group by group: one that ran and failed aborts before any change
    // (those at the lost site are skipped: their agents are gone with it).
    if let Err(why) = plan.pre_hooks(&c).await? {
        let outcome = format!("aborted before the promotion: {why}");
        propose(&ctx, &actor, Command::FinishWorkflow { workflow: wf, outcome: outcome.clone() }).await?;
        return Err(WorkflowError::Ended(outcome));
    }

    let by_position = manual.is_none() && !c.synchronous.contains(&to);
    let recorded = Instant::now();
    let lost = Lost { ctx: &ctx, actor: &actor, wf, c: &c, from: &from, from_agent: &from_agent };
    let released = match lost.await_old_lease(by_position, started).await? {
        Ok(released) => released,
        Err(outcome) => {
            propose(&ctx, &actor, Command::FinishWorkflow { workflow: wf, outcome: outcome.clone() }).await?;
            return Err(WorkflowError::Ended(outcome));
        }
    };

    if by_position {
        let released = released.unwrap_or(recorded);
        match final_position::check_before_epoch(&ctx, &c, (&from, released), (&to, recorded)).await {
            Ok(note) => propose(&ctx, &actor, step(final_position::STEP, note)).await?,
            Err(e) => {
                let outcome = e.to_string();
                propose(&ctx, &actor, Command::FinishWorkflow { workflow: wf, outcome: outcome.clone() }).await?;
                return Err(WorkflowError::Ended(outcome));
            }
        };
    }
    // Recorded before the epoch, so that a new leader finishing this workflow waits as well.
    let vouchers = match manual.as_ref() {
        Some(m) => m.await_vouchers.clone(),
        None if by_position && !c.vouch.is_empty() => Some(c.vouch.iter().cloned().collect()),
        None => None,
    };
    if let Some(list) = vouchers {
        propose(&ctx, &actor, step(AWAIT_VOUCHERS, list.join(","))).await?;
    }
    // The balancers take the lost primary out and close the sessions still hanging on it: here,
    // once nothing can abandon the failover any more (a failover abandoned earlier would leave
    // a primary that came back out of its balancers).
    plan.balancers_out(&c).await?;
    // Point 1: the new epoch, committed before any promote goes out.
    propose(&ctx, &actor, Command::SwitchPrimary { cluster: name.clone(), workflow: wf, primary: to.clone() }).await?;
    finish(ctx, actor, wf, started).await
}

/// A failover under way of cluster `c`'s lost primary `from`, for its steps before the epoch.
struct Lost<'a> {
    ctx: &'a Arc<Ctx>,
    actor: &'a Actor,
    wf: u64,
    c: &'a DbCluster,
    from: &'a str,
    from_agent: &'a str,
}

impl Lost<'_> {
    /// Point 4: waits until every lease the old primary could hold has ended, unless its own
    /// agent released its lease with the server stopped (a report that the server is stopped is
    /// not enough: it may have been made just before a start under a lease granted earlier).
    /// Outside the synchronous set (`by_position`) the old primary's final position is needed,
    /// so only its agent's word will do: a report made after it released its lease, which no
    /// start can have overtaken; its agent gets a few heartbeats to give it even when every
    /// lease ended long ago (a primary whose server stopped a while back holds none). Returns
    /// when the release came, if it did; `Ok(Err(outcome))` when the failover is abandoned.
    async fn await_old_lease(
        &self,
        by_position: bool,
        started: Instant,
    ) -> WorkflowResult<std::result::Result<Option<Instant>, String>> {
        let (ctx, c, from) = (self.ctx, self.c, self.from);
        let t = Instant::now();
        let ended = ctx.leases.all_ended_at(ctx, &c.name).ok_or(WorkflowError::NotLeader)?;
        let confirm_by = if by_position { ended.max(t + final_position::REPORT_WAIT) } else { ended };
        let release = command(&c.name, c.epoch, c.epoch_index, agent_command::Kind::ReleaseLease(Default::default()));
        let release = super::lease::Release::ask(ctx.clone(), self.from_agent.to_string(), release, confirm_by);
        // Only what the old primary's agent reports from now on counts: its last report before
        // it fell silent still says "running primary".
        let heard_since =
            |t: Instant| ctx.obs.snapshot().get(self.from_agent).filter(|o| o.last_seen > t).and_then(|o| o.db.clone());
        loop {
            let released = release.released_at();
            let confirmed = if by_position {
                released.and_then(heard_since).is_some_and(|d| final_position::of(c, &d).is_some())
            } else {
                released.is_some()
            };
            if by_position && Instant::now() >= confirm_by && !confirmed {
                return Ok(Err(format!(
                    "abandoned: {from}'s agent did not confirm its server stopped with a final position"
                )));
            }
            if confirmed || (!by_position && Instant::now() >= ended) {
                let note = if confirmed {
                    let ms = t.elapsed().as_millis();
                    format!("{from}'s agent confirms it stopped and released its lease (after {ms} ms)")
                } else {
                    format!("waited {} ms for every lease to end", t.elapsed().as_millis())
                };
                let step = Command::RecordStep { workflow: self.wf, name: "lease-ended".into(), note };
                propose(ctx, self.actor, step).await?;
                return Ok(Ok(released));
            }
            // The primary came back (its agent renews the lease and a standby streams again):
            // nothing was changed yet, so the failover is simply abandoned.
            if heard_since(started).is_some_and(|d| d.up && d.role == "primary") {
                return Ok(Err(format!("abandoned: {from} is back as a running primary")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The steps after the new epoch: promote, point the other standbys at the new primary, end the
/// workflow. Also how a new leader completes a failover its predecessor left after the epoch.
pub async fn finish(ctx: Arc<Ctx>, actor: Actor, wf: u64, started: Instant) -> WorkflowResult<String> {
    let w = recorded_workflow(&ctx, wf)?;
    let c = recorded_cluster(&ctx, &w.cluster)?;
    let to_agent = c
        .members
        .get(&w.to)
        .map(|m| m.agent.clone())
        .ok_or_else(|| WorkflowError::gone("the target is not a member"))?;
    let step = |n: &'static str, note: String| Command::RecordStep { workflow: wf, name: n.into(), note };
    if let Some(list) = w.steps.iter().find(|s| s.name == AWAIT_VOUCHERS).map(|s| s.note.clone()) {
        let waited = await_vouchers(&ctx, &c, &list).await?;
        propose(&ctx, &actor, step("vouchers-acked", waited)).await?;
    }
    if w.steps.iter().any(|s| s.name == final_position::STEP) {
        if let Err(why) = final_position::confirm_after_epoch(&ctx, &c, &w.from, &w.to).await {
            let outcome = format!("failed: {why}; {} was not promoted and no member is writable", w.to);
            propose(&ctx, &actor, Command::FinishWorkflow { workflow: wf, outcome: outcome.clone() }).await?;
            tracing::error!(cluster = %w.cluster, "failover {outcome}");
            return Err(WorkflowError::Ended(outcome));
        }
        propose(&ctx, &actor, step("final-position-confirmed", format!("{} at epoch {} and stopped", w.from, c.epoch)))
            .await?;
    }
    // The old primary's last canary, as the candidate holds it: where the write outage begins.
    let last_canary = super::canary::newest(&ctx, &to_agent).filter(|k| k.epoch < c.epoch);
    let t = Instant::now();
    let accepted_loss = w.steps.iter().any(|s| s.name == DATA_LOSS_WINDOW);
    super::workflow::restart_if_stopped(&ctx, &c, &w.to, &to_agent).await?;
    let waits_for = super::promote::first_commit_waits_for(&c, accepted_loss);
    let budget = super::promote::PromoteBudget::of(&ctx, &c.name, &to_agent);
    let order = super::promote::promote(&c, accepted_loss, budget);
    let promote = command(&w.cluster, c.epoch, c.epoch_index, order.kind);
    // A promote that fails leaves the workflow open: the epoch is committed, so the only way on
    // is forward, and the brain's recovery retries it.
    let answer = ctx.bus.call(&to_agent, promote, order.wait).await;
    let detail = answer.map_err(WorkflowError::agent(format!("promoting {}", w.to)))?.detail;
    // It holds its lease: the balancers put it in at once, before anything is recorded.
    let kind = WorkflowKind::Failover;
    let (cluster, from, to) = (w.cluster.as_str(), w.from.as_str(), w.to.as_str());
    let plan = RoleChange { ctx: &ctx, actor: &actor, wf, kind, cluster, from, to };
    plan.balancers_in(&c).await?;
    // The agent's detail says where the promote's time went (vouch hold, lease, promotion).
    let note = format!("{} at epoch {} in {} ms ({detail})", w.to, c.epoch, t.elapsed().as_millis());
    propose(&ctx, &actor, step("promoted", note)).await?;
    let others = super::switchover::follow_others(&ctx, &c, &[w.from.as_str(), w.to.as_str()], &w.cluster).await;
    if !others.followed.is_empty() {
        propose(&ctx, &actor, step("followed", others.followed.join(", "))).await?;
    }
    let measure = super::canary::measure(&ctx, &to_agent, &w.to, c.epoch, last_canary.as_ref(), &waits_for).await;
    propose(&ctx, &actor, step("canary", measure.note.clone())).await?;
    super::canary::record(&ctx, &actor, wf, &measure).await;
    plan.post_hooks_and_checks(&c).await?;
    let mut outcome = format!(
        "completed: {} is primary at epoch {} ({} ms); {} rejoins as a standby when it returns",
        w.to,
        c.epoch,
        started.elapsed().as_millis(),
        w.from
    );
    if !others.problems.is_empty() {
        outcome = format!("{outcome}; problems: {}", others.problems.join("; "));
    }
    propose(&ctx, &actor, Command::FinishWorkflow { workflow: wf, outcome: outcome.clone() }).await?;
    // As recorded: the state adds the services' and balancers' errors when there were any.
    let outcome = recorded_workflow(&ctx, wf)?.finished.map(|(_, o)| o).unwrap_or(outcome);
    tracing::warn!(cluster = %w.cluster, "failover {outcome}");
    Ok(outcome)
}

/// Point 3, for a promote outside the vouch set: every listed voucher's agent reports the new
/// epoch (so it vouches no more), then P(1+rho)+m passes (so any vouch it gave has ended).
/// Waits as long as it takes: promoting without it could leave a vouched primary writing.
async fn await_vouchers(ctx: &Ctx, c: &DbCluster, list: &str) -> WorkflowResult<String> {
    let t = Instant::now();
    let members: Vec<&str> = list.split(',').filter(|m| !m.is_empty()).collect();
    let mut logged = Instant::now() - Duration::from_secs(60);
    loop {
        if !ctx.is_leader() {
            return Err(WorkflowError::NotLeader);
        }
        let behind: Vec<&str> = members
            .iter()
            .copied()
            .filter(|m| {
                let agent = c.members.get(*m).map(|x| x.agent.as_str()).unwrap_or_default();
                let fresh = Duration::from_millis(ctx.cfg.agents.down_after_ms);
                !ctx.obs.fresh_db(agent, fresh).is_some_and(|d| d.agent_epoch >= c.epoch && !d.epoch_unknown)
            })
            .collect();
        if behind.is_empty() {
            break;
        }
        if logged.elapsed() > Duration::from_secs(10) {
            tracing::error!(cluster = %c.name, waiting_for = ?behind, "the promote waits for the vouchers to accept epoch {}", c.epoch);
            logged = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let acked = t.elapsed();
    tokio::time::sleep(ctx.cfg.lease.expiry()).await;
    Ok(format!(
        "[{list}] at epoch {} after {} ms; then waited {} ms for their last vouch to end",
        c.epoch,
        acked.as_millis(),
        ctx.cfg.lease.expiry().as_millis()
    ))
}

/// The brain's step: judge, record a changed verdict, start a failover when one is due.
/// `holds`: clusters whose fenced primary the leader is restarting, and why (`restart.rs`).
pub fn tick(ctx: &Arc<Ctx>, down_since: &mut HashMap<String, Instant>, holds: &HashMap<String, String>) {
    let fresh = Duration::from_millis(ctx.cfg.failover.primary_lost_after_ms).max(Duration::from_millis(500));
    let mut judgements = {
        let g = ctx.state.read().expect("state lock poisoned");
        judge(&g.state, &ctx.obs.snapshot(), &ctx.cfg.failover, fresh, Instant::now(), now_ms(), down_since)
    };
    super::detector::hold(&mut judgements, holds);
    for (name, j) in judgements {
        let recorded = cluster(ctx, &name).map(|c| c.failover_blocked).unwrap_or_default();
        if recorded != j.blocked {
            let (c, reason, cluster) = (ctx.clone(), j.blocked.clone(), name.clone());
            super::spawn_exclusive(ctx, format!("judge:{name}"), async move {
                let ctx = c;
                if reason.starts_with(PRIMARY_LOST) {
                    tracing::error!(cluster = %cluster, "{reason}");
                } else if !reason.is_empty() {
                    tracing::error!(cluster = %cluster, "automatic failover is blocked: {reason}");
                }
                let cmd = Command::SetFailoverBlocked { cluster: cluster.clone(), reason };
                if let Err(e) = propose(&ctx, &Actor::system(ctx.id), cmd).await {
                    tracing::warn!("recording the failover verdict: {e}");
                }
            });
        }
        let Some((to, why)) = j.failover else { continue };
        let c = ctx.clone();
        super::spawn_exclusive(ctx, name.clone(), async move {
            let actor = Actor::system(c.id);
            if let Err(e) = run(c, actor, name.clone(), to, why).await {
                tracing::error!(cluster = %name, "failover: {e}");
            }
        });
    }
}
