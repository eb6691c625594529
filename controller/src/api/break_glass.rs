//! Break-glass requests and approvals (DESIGN.md point 10), served by the controller they are sent
//! to: the one left when a city and the witnesses are lost, which has no quorum to replicate them
//! through. It keeps the order on its own disk; the approval restarts it into a single-voter
//! cluster (`raft::break_glass`), and once it leads it records the order in the log
//! (`brain::break_glass`), where the failover it orders is carried out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::{Request, Status};
use triad_proto::v1 as pb;

use super::control::ControlApi;
use crate::config::check_name;
use crate::context::{now_ms, Ctx};
use crate::raft::break_glass::{load_order, save_order};
use crate::state::{BreakGlassOrder, BreakGlassRefusal, BreakGlassState, APPROVER_ROLES, EPOCH_JUMP};

/// How long a break-glass request waits for its second approver.
const TTL: Duration = Duration::from_secs(900);
/// An attestation longer than this is not read by anyone (characters).
const MAX_ATTESTATION: usize = 2000;
/// An attestation shorter than this cannot say who confirmed what.
const MIN_ATTESTATION: usize = 20;

/// Whether this controller knows a leader that has a quorum: a follower's word for it, or, on
/// the leader itself, a heartbeat round a quorum acknowledged (openraft's leader does not step
/// down on its own when the others are lost, so being "leader" proves nothing).
async fn has_working_leader(ctx: &Ctx) -> bool {
    let leader = ctx.raft.metrics().borrow().current_leader;
    match leader {
        None => false,
        Some(id) if id == ctx.id => {
            let round = Duration::from_millis(ctx.cfg.raft.election_timeout_max_ms);
            matches!(tokio::time::timeout(round, ctx.raft.ensure_linearizable()).await, Ok(Ok(_)))
        }
        Some(_) => true,
    }
}

/// Keeps [`Ctx::leaderless_since`] up to date, until the process stops.
pub async fn track_leaderless(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let working = has_working_leader(&ctx).await;
        let mut since = ctx.leaderless_since.lock().expect("leaderless lock poisoned");
        if working {
            *since = None;
        } else {
            since.get_or_insert_with(Instant::now);
        }
    }
}

fn storage(e: crate::Error) -> Status {
    Status::internal(format!("this controller's store: {e}"))
}

impl<B: crate::brain::Requests> ControlApi<B> {
    /// The order on this controller's disk, in a line for status (empty: none).
    pub(super) fn break_glass_summary(&self) -> String {
        match load_order(&self.ctx.db) {
            Ok(None) => String::new(),
            Ok(Some(o)) => format!(
                "request {} ({} to {}) {}: requested by {}{}",
                o.id,
                o.cluster,
                o.to,
                o.state,
                o.requested_by,
                o.approved_by.map(|a| format!(", approved by {a}")).unwrap_or_default()
            ),
            Err(e) => format!("unreadable: {e}"),
        }
    }

    /// Refuses unless this controller is a voter that has known no leader for long enough that no
    /// election under way explains it: with a quorum, `triadctl failover` is the way.
    async fn stranded(&self) -> Result<(), Status> {
        let m = self.ctx.raft.metrics().borrow().clone();
        if has_working_leader(&self.ctx).await {
            return Err(Status::failed_precondition(format!(
                "controller {} leads: there is a quorum, so break-glass is refused; use `triadctl failover`",
                m.current_leader.unwrap_or_default()
            )));
        }
        if !m.membership_config.voter_ids().any(|v| v == self.ctx.id) {
            return Err(Status::failed_precondition(format!("controller {} is not a voter", self.ctx.id)));
        }
        let at_least =
            Duration::from_millis(self.ctx.cfg.raft.election_timeout_max_ms * 5).max(Duration::from_secs(10));
        let since = *self.ctx.leaderless_since.lock().expect("leaderless lock poisoned");
        let alone = since.map(|s| s.elapsed()).unwrap_or_default();
        if alone < at_least {
            return Err(Status::failed_precondition(format!(
                "controller {} has known no leader for {} ms only; an election may be under way (ask again after {} s)",
                self.ctx.id,
                alone.as_millis(),
                at_least.as_secs()
            )));
        }
        Ok(())
    }

    pub(super) async fn break_glass_inner(
        &self,
        req: Request<pb::BreakGlassRequest>,
    ) -> Result<pb::MutationReply, Status> {
        let caller = self.authorise(&req, &APPROVER_ROLES, "breaking the glass")?;
        let r = req.into_inner();
        check_name("--cluster", &r.cluster).map_err(|e| Status::invalid_argument(e.to_string()))?;
        check_name("--to", &r.to).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let attestation = super::bounded_text("--attest", &r.attestation, MAX_ATTESTATION)?;
        let attestation = attestation.as_str();
        if attestation.chars().count() < MIN_ATTESTATION {
            return Err(Status::invalid_argument(format!(
                "--attest must say why the other sites are dead or fenced: who confirmed what, and how (at least \
                 {MIN_ATTESTATION} characters)"
            )));
        }
        {
            let g = self.ctx.state.read().expect("state lock poisoned");
            let c = g
                .state
                .clusters
                .get(&r.cluster)
                .ok_or_else(|| Status::not_found(format!("no cluster named `{}`", r.cluster)))?;
            if !c.members.contains_key(&r.to) {
                return Err(Status::invalid_argument(format!("`{}` is not a member of `{}`", r.to, r.cluster)));
            }
        }
        self.stranded().await?;
        let now = now_ms();
        if let Some(o) = load_order(&self.ctx.db).map_err(storage)? {
            if o.is_open(now) {
                return Err(Status::already_exists(format!(
                    "break-glass request {} is {} on this controller",
                    o.id, o.state
                )));
            }
        }
        let m = self.ctx.raft.metrics().borrow().clone();
        let cut_off: Vec<u64> =
            m.membership_config.nodes().map(|(id, _)| *id).filter(|id| *id != self.ctx.id).collect();
        let order = BreakGlassOrder {
            id: now,
            controller: self.ctx.id,
            cluster: r.cluster.clone(),
            to: r.to.clone(),
            attestation: attestation.to_string(),
            cut_off: cut_off.clone(),
            requested_by: caller.name.clone(),
            requested_ms: now,
            expires_ms: now + TTL.as_millis() as u64,
            approved_by: None,
            approved_ms: 0,
            state: BreakGlassState::Pending,
        };
        save_order(&self.ctx.db, &order).map_err(storage)?;
        tracing::error!(id = order.id, by = %caller.name, cluster = %r.cluster, to = %r.to, "break-glass requested: {attestation}");
        Ok(pb::MutationReply {
            log_index: 0,
            message: format!(
                "break-glass request {} recorded on controller {} (on its disk only: there is no quorum). Approving it \
                 makes controller {} the only voter, cuts off controllers {cut_off:?}, raises the epoch of `{}` by \
                 {EPOCH_JUMP} and fails over to `{}` accepting data loss. A second admin or noc approves within {} \
                 minutes: triadctl break-glass approve {} --controller {}",
                order.id,
                self.ctx.id,
                self.ctx.id,
                r.cluster,
                r.to,
                TTL.as_secs() / 60,
                order.id,
                self.ctx.cfg.grpc_addr
            ),
        })
    }

    pub(super) async fn approve_break_glass_inner(
        &self,
        req: Request<pb::ApprovalRequest>,
    ) -> Result<pb::MutationReply, Status> {
        let caller = self.authorise(&req, &APPROVER_ROLES, "approving a break-glass request")?;
        let id = req.into_inner().id;
        let mut order = load_order(&self.ctx.db).map_err(storage)?.filter(|o| o.id == id).ok_or_else(|| {
            Status::not_found(format!("controller {} holds no break-glass request {id}", self.ctx.id))
        })?;
        let mut approved = order.clone();
        match approved.approve(&caller.name, now_ms()) {
            Ok(()) => {}
            Err(refusal @ BreakGlassRefusal::Expired { .. }) => {
                save_order(&self.ctx.db, &approved).map_err(storage)?;
                return Err(Status::failed_precondition(refusal.to_string()));
            }
            Err(refusal @ BreakGlassRefusal::SamePerson { .. }) => {
                return Err(Status::permission_denied(refusal.to_string()))
            }
            Err(refusal @ BreakGlassRefusal::NotPending { .. }) => {
                return Err(Status::failed_precondition(refusal.to_string()))
            }
        }
        // Still stranded: a quorum that came back in the meantime makes the order wrong.
        self.stranded().await?;
        order = approved;
        save_order(&self.ctx.db, &order).map_err(storage)?;
        tracing::error!(id, requested_by = %order.requested_by, approved_by = %caller.name, "break-glass approved: restarting as the only voter");
        self.ctx.restart.send_replace(true);
        Ok(pb::MutationReply {
            log_index: 0,
            message: format!(
                "break-glass request {id} approved: controller {} restarts as the only voter, then fails `{}` over to \
                 `{}`, raising its epoch by {EPOCH_JUMP}. Follow it with `triadctl status` and `triadctl history --cluster {}`",
                self.ctx.id, order.cluster, order.to, order.cluster
            ),
        })
    }
}
