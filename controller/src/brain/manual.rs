//! Manual failover: carried out by the leader once a second person approved the request
//! (`triadctl failover`, then `triadctl approve`). The same workflow as the automatic failover —
//! the old primary's leases waited out, the epoch first, the promote under a lease — with what an
//! operator's decision adds:
//! - it is refused while the primary runs and is reachable (that is a switchover's job);
//! - the target may be outside the synchronous set (`dr`) only if the request accepts the data
//!   loss, and the workflow records the data-loss window it accepts, as measured;
//! - a target outside the vouch set promotes only after every voucher's agent accepted the new
//!   epoch, plus P(1+rho)+m (DESIGN.md point 3). A voucher whose agent cannot be reached must be
//!   attested dead or fenced by the request (e.g. a whole city lost), or the request is refused:
//!   the old primary might still be writing on its vouch.

use std::sync::Arc;
use std::time::Duration;

use super::failover::{run_with, Manual};
use super::workflow::{cluster, propose};
use super::{WorkflowError, WorkflowResult};
use crate::context::Ctx;
use crate::state::{Actor, Approval, ApprovalAction, ApprovalState, Command, Role};

/// Everything the leader checks before it acts on an approved request (and already when it is
/// requested, so that an operator learns at once); the manual steps to add.
/// `approved` is left for the caller to fill.
pub fn precheck(
    ctx: &Ctx,
    name: &str,
    to: &str,
    accept_data_loss: bool,
    attested_dead: &[String],
) -> WorkflowResult<(String, Manual)> {
    let c = cluster(ctx, name).ok_or_else(|| WorkflowError::Refused(format!("no cluster `{name}`")))?;
    let from = c.primary.clone().ok_or_else(|| WorkflowError::gone("no primary is recorded"))?;
    if from == to {
        // Only as the resolution of a rollback waiting for a target lost for good (`rollback.rs`
        // carries it out).
        let g = ctx.state.read().expect("state lock poisoned");
        return match g
            .state
            .resolves_rollback(name, to, accept_data_loss, attested_dead)
            .map_err(WorkflowError::Rejected)?
        {
            Some(wf) => Ok((format!("resolves the rollback of switchover {wf}"), Manual::default())),
            None => Err(WorkflowError::Refused(format!("`{to}` is the primary already"))),
        };
    }
    let obs = ctx.obs.snapshot();
    let fresh = Duration::from_millis(ctx.cfg.failover.primary_lost_after_ms).max(Duration::from_millis(500));
    let agent_of = |m: &str| c.members.get(m).map(|x| x.agent.clone()).unwrap_or_default();
    let report = |m: &str| obs.get(&agent_of(m)).filter(|o| o.last_seen.elapsed() < fresh).and_then(|o| o.db.clone());
    // The primary must be lost (its agent silent, or its server confirmed stopped).
    let why = match report(&from) {
        Some(d) if d.up => {
            return Err(WorkflowError::Refused(format!(
                "the primary `{from}` is running and its agent answers: use `triadctl switchover`"
            )))
        }
        Some(d) if d.stopped => format!("`{from}`'s agent reports its server stopped"),
        Some(_) => format!("`{from}` does not answer its agent"),
        None => format!("`{from}`'s agent is silent"),
    };
    let target = report(to).ok_or_else(|| WorkflowError::Refused(format!("`{to}`'s agent is silent")))?;
    if !(target.up && target.role == "standby") {
        return Err(WorkflowError::Refused(format!("`{to}` is not a running standby")));
    }
    if target.epoch_unknown || target.agent_epoch != c.epoch {
        return Err(WorkflowError::Refused(format!("`{to}`'s agent is not at epoch {}", c.epoch)));
    }
    let data_loss = if c.synchronous.contains(to) {
        None
    } else if !accept_data_loss {
        return Err(WorkflowError::Refused(format!(
            "`{to}` is not synchronous and the request does not accept data loss"
        )));
    } else {
        Some(loss_window(&from, to, obs.get(&agent_of(&from)).and_then(|o| o.db.as_ref()), &target))
    };
    let await_vouchers = if c.vouch.contains(to) {
        None
    } else {
        let mut list = Vec::new();
        for v in c.vouch.iter().filter(|v| !attested_dead.contains(v)) {
            let reachable = report(v).is_some_and(|d| !d.epoch_unknown && d.agent_epoch == c.epoch);
            if !reachable {
                return Err(WorkflowError::Refused(format!(
                    "`{v}` vouches for `{from}` and its agent cannot be reached: `{from}` may still be writing on its \
                     vouch. Bring `{v}`'s agent back, or request again attesting `{v}` dead or fenced"
                )));
            }
            list.push(v.clone());
        }
        Some(list)
    };
    Ok((why, Manual { approved: String::new(), await_vouchers, data_loss }))
}

/// What promoting `to` may lose, from the last reports of both: canary rows (written every
/// 100 ms, so a count of them is a time), and bytes of log when the driver's positions are bytes
/// (a difference of SCNs says nothing of volume: B3 of docs/oracle-data-guard.md).
fn loss_window(
    from: &str,
    to: &str,
    last: Option<&triad_proto::v1::DbStatus>,
    target: &triad_proto::v1::DbStatus,
) -> String {
    use triad_proto::replica::{format_position_of, positions_are_bytes};
    let at = format_position_of(target, target.position);
    let Some(p) = last else {
        return format!("unknown: this leader never heard from `{from}`; `{to}` has position {at}");
    };
    let rows = p.canary_seq.saturating_sub(target.canary_seq);
    let bytes = if positions_are_bytes(p) && positions_are_bytes(target) {
        format!(" and up to {} bytes of WAL", p.position.saturating_sub(target.position))
    } else {
        String::new()
    };
    format!(
        "up to {rows} canary rows (about {} ms of writes){bytes}: `{from}` last reported position {} and canary {} \
         (at {} ms since the epoch); `{to}` has position {at} and canary {}",
        rows * 100,
        format_position_of(p, p.position),
        p.canary_seq,
        p.observed_ms,
        target.canary_seq
    )
}

/// The brain's step: carries out each approved request once.
pub fn tick(ctx: &Arc<Ctx>) {
    let approved: Vec<Approval> = {
        let g = ctx.state.read().expect("state lock poisoned");
        // Only failovers wait for the leader: a pause took effect with its approval.
        g.state
            .approvals
            .values()
            .filter(|a| a.state == ApprovalState::Approved && a.action == ApprovalAction::Failover)
            // One that resolves a waiting rollback is the rollback's to carry out.
            .filter(|a| !matches!(super::rollback::resolves(&g.state, a), Ok(Some(_))))
            .cloned()
            .collect()
    };
    for a in approved {
        // The cluster's key, as every workflow task holds it: recovery leaves running ones alone.
        let c = ctx.clone();
        super::spawn_exclusive(ctx, a.cluster.clone(), async move {
            let ctx = c;
            let system = Actor::system(ctx.id);
            // Claimed first: a new leader never runs it again.
            let claimed =
                propose(&ctx, &system, Command::SetApprovalState { id: a.id, state: ApprovalState::Started }).await;
            if claimed.is_ok() {
                let outcome = match precheck(&ctx, &a.cluster, &a.to, a.accept_data_loss, &a.attested_dead) {
                    Err(why) => format!("refused: {why}"),
                    Ok((why, mut manual)) => {
                        manual.approved = format!(
                            "requested by {} ({}), approved by {}{}",
                            a.requested_by,
                            a.reason,
                            a.approved_by.clone().unwrap_or_default(),
                            if a.attested_dead.is_empty() {
                                String::new()
                            } else {
                                format!("; attested dead: {}", a.attested_dead.join(", "))
                            }
                        );
                        let by = a.approved_by.clone().unwrap_or_default();
                        let actor = Actor {
                            name: format!("{} + {by}", a.requested_by),
                            role: Role::System,
                            origin: format!("request {}", a.id),
                        };
                        tracing::warn!(cluster = %a.cluster, to = %a.to, "manual failover approved by {by}");
                        match run_with(ctx.clone(), actor, a.cluster.clone(), a.to.clone(), why, Some(manual)).await {
                            Ok(o) => o,
                            Err(e) => format!("failed: {e}"),
                        }
                    }
                };
                let cmd = Command::SetApprovalState { id: a.id, state: ApprovalState::Ended(outcome) };
                if let Err(e) = propose(&ctx, &system, cmd).await {
                    tracing::warn!(id = a.id, "recording the outcome of request {}: {e}", a.id);
                }
            }
        });
    }
}
