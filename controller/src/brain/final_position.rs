//! Failover outside the synchronous set by proven position (DESIGN.md, "Safety of role
//! changes", point 5): a standby may replace a stopped primary without losing a commit if its
//! position reaches the primary's *final position*, the end of the WAL on the primary's disk,
//! which the primary's agent reads once the server is confirmed stopped. Checked by the detector
//! ([`candidates`]), after the workflow is recorded ([`check_before_epoch`]), and after the new
//! epoch ([`confirm_after_epoch`]), from a report the old primary's agent made with that epoch
//! persisted: an agent starts its server as a primary only under a lease at the epoch that names
//! it, so from then on nothing can extend that WAL.

use std::time::{Duration, Instant};

use triad_proto::v1::DbStatus;

use super::{WorkflowError, WorkflowResult};
use crate::context::Ctx;
use crate::state::DbCluster;
use triad_proto::replica::{format_position, format_position_of, unit};
use triad_proto::v1::PositionUnit;

/// The step of an automatic failover outside the synchronous set: the old primary's final
/// position, and the target's, which reaches it.
pub(super) const STEP: &str = "final-position";

/// A stopped primary's final position, from its agent's report at the cluster's epoch.
pub(super) fn of(c: &DbCluster, d: &DbStatus) -> Option<u64> {
    (!d.up && d.stopped && d.final_position > 0 && d.agent_epoch >= c.epoch && !d.epoch_unknown)
        .then_some(d.final_position)
}

/// The standbys outside the synchronous set whose position reaches the stopped primary's
/// `final_position`, best first, or why there is none. Each voucher's agent must be heard at the
/// cluster's epoch, since the promote waits for it to acknowledge the next one.
pub(super) fn candidates(
    c: &DbCluster,
    report: &dyn Fn(&str) -> Option<DbStatus>,
    final_position: u64,
) -> Result<Vec<(String, u64)>, String> {
    let primary = c.primary.as_deref().unwrap_or_default();
    for v in &c.vouch {
        let agent = c.members.get(v).map(|m| m.agent.as_str()).unwrap_or_default();
        if !report(agent).is_some_and(|d| d.agent_epoch == c.epoch && !d.epoch_unknown) {
            return Err(format!("the voucher `{v}` cannot acknowledge a new epoch (its agent is silent or fenced)"));
        }
    }
    let mut ok = Vec::new();
    let mut behind = Vec::new();
    let mut position_unit = PositionUnit::Bytes;
    for m in c.members.values().filter(|m| m.name != primary && !c.synchronous.contains(&m.name)) {
        match report(&m.agent) {
            Some(d) if d.up && d.role == "standby" && d.agent_epoch == c.epoch && !d.epoch_unknown => {
                position_unit = unit(&d);
                if d.position >= final_position {
                    ok.push((m.name.clone(), d.position));
                } else {
                    behind.push(format!("`{}` at {}", m.name, format_position_of(&d, d.position)));
                }
            }
            _ => {}
        }
    }
    if ok.is_empty() {
        let best = if behind.is_empty() { "no other running standby".to_string() } else { behind.join(", ") };
        let end = format_position(position_unit, final_position);
        return Err(format!("no standby reaches `{primary}`'s final position {end} ({best})"));
    }
    ok.sort_by_key(|c| std::cmp::Reverse(c.1));
    Ok(ok)
}

/// How long a failover by proven position waits for an agent's word (the old primary's release
/// and final position, the target's position) before it is abandoned: several heartbeats at the
/// agents' default interval. Reports arrive once per heartbeat, so a check made the moment a step
/// ends would otherwise depend on where the heartbeats happen to fall.
pub(super) const REPORT_WAIT: Duration = Duration::from_secs(1);

/// After the workflow is recorded, before the new epoch: the final position from a report of
/// `from`'s agent heard since it released its lease (`released`), and the position of `to` from
/// one of its own heard since `recorded`, waited for up to [`REPORT_WAIT`]. `Ok` with the step's
/// note when `to` reaches it; `Err` with the abandoned outcome otherwise.
pub(super) async fn check_before_epoch(
    ctx: &Ctx,
    c: &DbCluster,
    (from, released): (&str, Instant),
    (to, recorded): (&str, Instant),
) -> WorkflowResult<String> {
    let deadline = Instant::now() + REPORT_WAIT;
    loop {
        let reports = ctx.obs.snapshot();
        let heard = |m: &str, since: Instant| {
            let agent = c.members.get(m).map(|x| x.agent.as_str()).unwrap_or_default();
            reports.get(agent).filter(|o| o.last_seen > since).and_then(|o| o.db.clone())
        };
        let old = heard(from, released);
        let end = old.as_ref().and_then(|d| of(c, d)).unwrap_or(u64::MAX);
        let at = heard(to, recorded).filter(|d| d.up && d.role == "standby").map(|d| d.position).unwrap_or(0);
        let position_unit = old.as_ref().map(unit).unwrap_or(PositionUnit::Bytes);
        let (end_s, at_s) = (format_position(position_unit, end), format_position(position_unit, at));
        if at >= end {
            return Ok(format!("{from} ends at {end_s}; {to} holds {at_s}"));
        }
        if Instant::now() >= deadline || !ctx.is_leader() {
            let outcome = format!("abandoned: {to} at {at_s} does not reach {from}'s final position {end_s}");
            return Err(WorkflowError::Ended(outcome));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// After the new epoch, before a promote by proven position: the old primary's agent reports
/// its server stopped in an observation made with the new epoch persisted, so its WAL can grow
/// no more, and the target still reaches where it ends. Waits as long as it takes for that
/// report (the agent was heard moments ago); `Err` when the WAL grew past the target meanwhile.
pub(super) async fn confirm_after_epoch(ctx: &Ctx, c: &DbCluster, from: &str, to: &str) -> WorkflowResult<()> {
    let agent = |m: &str| c.members.get(m).map(|x| x.agent.clone()).unwrap_or_default();
    let (from_agent, to_agent) = (agent(from), agent(to));
    let fresh = Duration::from_millis(ctx.cfg.agents.down_after_ms);
    let mut logged = Instant::now() - Duration::from_secs(60);
    loop {
        if !ctx.is_leader() {
            return Err(WorkflowError::NotLeader);
        }
        let old = ctx.obs.fresh_db(&from_agent, fresh).filter(|d| d.agent_epoch >= c.epoch && !d.epoch_unknown);
        if let Some(d) = old {
            if d.up {
                return Err(WorkflowError::NotSo(format!("{from}'s server is running again at epoch {}", c.epoch)));
            }
            if let (Some(end), Some(t)) = (of(c, &d), ctx.obs.fresh_db(&to_agent, fresh)) {
                return if t.position >= end {
                    Ok(())
                } else {
                    let (end, at) = (format_position_of(&d, end), format_position_of(&d, t.position));
                    Err(WorkflowError::NotSo(format!("{from}'s WAL now ends at {end}, past {to}'s {at}")))
                };
            }
        }
        if logged.elapsed() > Duration::from_secs(10) {
            tracing::error!(cluster = %c.name, "the promote of {to} waits for {from}'s agent to confirm its final position at epoch {}", c.epoch);
            logged = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
