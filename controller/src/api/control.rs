//! The `Control` service: what `triadctl` calls. Reads answer from the local applied state (marked
//! stale on followers); writes go through the proposer; membership changes run on the leader.

use std::collections::BTreeSet;
use std::sync::Arc;

use openraft::ServerState;
use tonic::{Request, Response, Status};
use triad_proto::v1 as pb;
use triad_proto::v1::control_server::Control;

use super::auth::{self, Caller, READERS};
use super::{not_leader, records, to_status};
use crate::brain::{Brain, RequestError, Requests};
use crate::config::check_name;
use crate::context::Ctx;
use crate::raft::read_audit;
use crate::state::{ApprovalState, Command, Role, APPROVER_ROLES};

/// How long a failover or pause request waits for its second approver.
const APPROVAL_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// Serves operators. What only the brain may do (a workflow, a precheck) it asks of `brain`.
pub struct ControlApi<B = Brain> {
    pub(super) ctx: Arc<Ctx>,
    brain: B,
}

impl<B: Requests> ControlApi<B> {
    pub fn new(ctx: Arc<Ctx>, brain: B) -> Self {
        ControlApi { ctx, brain }
    }

    /// Authenticates the caller of a call that would change something and checks its role; a
    /// refusal is recorded in the audit log too (DESIGN.md, "Security").
    pub(super) fn authorise<T>(&self, req: &Request<T>, allowed: &[Role], what: &str) -> Result<Caller, Status> {
        let caller = auth::caller(req, &self.ctx.state)?;
        auth::require_recorded(&self.ctx, &caller, allowed, what)?;
        Ok(caller)
    }

    /// Like [`Self::authorise`] for a read: a refused read changes nothing and is not recorded.
    pub(super) fn authorise_read<T>(&self, req: &Request<T>, allowed: &[Role], what: &str) -> Result<Caller, Status> {
        let caller = auth::caller(req, &self.ctx.state)?;
        auth::require(&caller, allowed, what)?;
        Ok(caller)
    }

    pub(super) async fn propose(&self, caller: &Caller, command: Command) -> Result<(u64, String), Status> {
        super::propose_as(&self.ctx, caller, command).await
    }
}

fn role_name(s: ServerState) -> &'static str {
    match s {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

#[tonic::async_trait]
impl<B: Requests> Control for ControlApi<B> {
    async fn node_status(&self, req: Request<pb::NodeStatusRequest>) -> Result<Response<pb::NodeStatusReply>, Status> {
        let result = self.authorise_read(&req, READERS, "reading status").map(|_| {
            let m = self.ctx.raft.metrics().borrow().clone();
            let voters: BTreeSet<u64> = m.membership_config.voter_ids().collect();
            let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
            Response::new(pb::NodeStatusReply {
                id: self.ctx.id,
                site: self.ctx.cfg.site.clone(),
                grpc_addr: self.ctx.cfg.grpc_addr.clone(),
                raft_role: role_name(m.state).into(),
                term: m.current_term,
                last_log_index: m.last_log_index.unwrap_or(0),
                last_applied: applied,
                commit_index: crate::metrics::commit_index(&m).unwrap_or(applied),
                leader_id: m.current_leader.unwrap_or(0),
                learners: m.membership_config.nodes().map(|(id, _)| *id).filter(|id| !voters.contains(id)).collect(),
                voters: voters.into_iter().collect(),
                connected_agents: self.ctx.obs.connected_count() as u32,
                break_glass: self.break_glass_summary(),
                quorum_hold: match m.state {
                    openraft::ServerState::Leader => self.ctx.continuity.hold().unwrap_or_default(),
                    _ => String::new(),
                },
            })
        });
        self.ctx.metrics.rpc("Control/NodeStatus", &result);
        result
    }

    async fn state(&self, req: Request<pb::StateRequest>) -> Result<Response<pb::StateReply>, Status> {
        let result = self.authorise_read(&req, READERS, "reading state").map(|_| {
            let obs = self.ctx.obs.snapshot();
            let fresh = std::time::Duration::from_millis(self.ctx.cfg.agents.down_after_ms);
            let g = self.ctx.state.read().expect("state lock poisoned");
            let s = &g.state;
            let last_seen = |agent: &str| obs.get(agent).map(|o| o.last_seen_ms).unwrap_or(0);
            Response::new(pb::StateReply {
                answered_by: self.ctx.id,
                stale: !self.ctx.is_leader(),
                approvals: s.approvals.values().map(records::approval).collect(),
                last_applied: g.last_applied.map(|l| l.index).unwrap_or(0),
                sites: s.sites.values().map(records::site).collect(),
                controllers: s.controllers.values().map(records::controller).collect(),
                agents: s.agents.values().map(|a| records::agent(a, last_seen(&a.name))).collect(),
                clusters: s.clusters.values().map(records::cluster).collect(),
                users: s.users.iter().map(|(n, r)| pb::UserRecord { name: n.clone(), role: r.to_string() }).collect(),
                // Only observations from agents heard recently: a silent agent's last report
                // would otherwise show a dead member as healthy.
                db: obs.values().filter(|o| o.last_seen.elapsed() < fresh).filter_map(|o| o.db.clone()).collect(),
                lease: Some(pb::LeaseSettings {
                    period_ms: self.ctx.cfg.lease.period_ms,
                    clock_drift: self.ctx.cfg.lease.clock_drift,
                    margin_ms: self.ctx.cfg.lease.margin_ms,
                }),
            })
        });
        self.ctx.metrics.rpc("Control/State", &result);
        result
    }

    async fn add_controller(
        &self,
        req: Request<pb::AddControllerRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let result = self.add_controller_inner(req).await.map(Response::new);
        self.ctx.metrics.rpc("Control/AddController", &result);
        result
    }

    async fn remove_controller(
        &self,
        req: Request<pb::RemoveControllerRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let result = self.remove_controller_inner(req).await.map(Response::new);
        self.ctx.metrics.rpc("Control/RemoveController", &result);
        result
    }

    async fn put_user(&self, req: Request<pb::PutUserRequest>) -> Result<Response<pb::MutationReply>, Status> {
        let result = async {
            let caller = self.authorise(&req, &[Role::Admin], "changing users")?;
            let r = req.into_inner();
            check_name("name", &r.name).map_err(|e| Status::invalid_argument(e.to_string()))?;
            let role = Role::parse(&r.role).filter(|r| r.is_user_role()).ok_or_else(|| {
                Status::invalid_argument(format!("role `{}` must be one of admin, noc, soc, auditor, disabled", r.role))
            })?;
            let (log_index, message) = self.propose(&caller, Command::PutUser { name: r.name, role }).await?;
            Ok(Response::new(pb::MutationReply { log_index, message }))
        }
        .await;
        self.ctx.metrics.rpc("Control/PutUser", &result);
        result
    }

    async fn delete_user(&self, req: Request<pb::DeleteUserRequest>) -> Result<Response<pb::MutationReply>, Status> {
        let result = async {
            let caller = self.authorise(&req, &[Role::Admin], "changing users")?;
            let name = req.into_inner().name;
            check_name("name", &name).map_err(|e| Status::invalid_argument(e.to_string()))?;
            let (log_index, message) = self.propose(&caller, Command::DeleteUser { name }).await?;
            Ok(Response::new(pb::MutationReply { log_index, message }))
        }
        .await;
        self.ctx.metrics.rpc("Control/DeleteUser", &result);
        result
    }

    async fn set_paused(&self, req: Request<pb::SetPausedRequest>) -> Result<Response<pb::MutationReply>, Status> {
        let result = async {
            let caller = self.authorise(&req, &[Role::Admin, Role::Noc], "pausing or resuming a cluster")?;
            let r = req.into_inner();
            check_name("--cluster", &r.cluster).map_err(|e| Status::invalid_argument(e.to_string()))?;
            let reason = match super::bounded_text("--reason", &r.reason, 200)? {
                given if given.is_empty() => "no reason given".to_string(),
                given => given,
            };
            if !self.ctx.state.read().expect("state lock poisoned").state.clusters.contains_key(&r.cluster) {
                return Err(Status::not_found(format!("no cluster named `{}`", r.cluster)));
            }
            // Pausing turns automatic failover off (DESIGN.md, "Security"): a request that a
            // second person approves. Resuming turns it back on and is taken at once.
            let command = if r.paused {
                let ttl_ms = APPROVAL_TTL.as_millis() as u64;
                Command::RequestPause { cluster: r.cluster, reason, ttl_ms }
            } else {
                Command::SetPaused { cluster: r.cluster, paused: false, reason }
            };
            let (log_index, message) = self.propose(&caller, command).await?;
            Ok(Response::new(pb::MutationReply { log_index, message }))
        }
        .await;
        self.ctx.metrics.rpc("Control/SetPaused", &result);
        result
    }

    async fn switchover(&self, req: Request<pb::SwitchoverRequest>) -> Result<Response<pb::MutationReply>, Status> {
        let result = async {
            let caller = self.authorise(&req, &[Role::Admin, Role::Noc], "a switchover")?;
            let r = req.into_inner();
            check_name("--cluster", &r.cluster).map_err(|e| Status::invalid_argument(e.to_string()))?;
            check_name("--to", &r.to).map_err(|e| Status::invalid_argument(e.to_string()))?;
            if !self.ctx.is_leader() {
                return Err(not_leader(&self.ctx));
            }
            match self.brain.switchover(caller.actor(), r.cluster, r.to).await {
                Ok(o) => Ok(Response::new(pb::MutationReply {
                    log_index: o.epoch,
                    message: format!("workflow {}: epoch {}\n{}", o.workflow, o.epoch, o.summary),
                })),
                Err(RequestError::Refused(why)) => {
                    Err(Status::failed_precondition(format!("switchover refused: {why}")))
                }
                Err(RequestError::Failed(why)) => Err(Status::aborted(format!("switchover: {why}"))),
                Err(RequestError::Internal(why)) => Err(Status::internal(format!("switchover: {why}"))),
            }
        }
        .await;
        self.ctx.metrics.rpc("Control/Switchover", &result);
        result
    }

    async fn request_failover(&self, req: Request<pb::FailoverRequest>) -> Result<Response<pb::MutationReply>, Status> {
        let result = async {
            let caller = self.authorise(&req, &APPROVER_ROLES, "requesting a failover")?;
            let r = req.into_inner();
            check_name("--cluster", &r.cluster).map_err(|e| Status::invalid_argument(e.to_string()))?;
            check_name("--to", &r.to).map_err(|e| Status::invalid_argument(e.to_string()))?;
            for m in &r.attested_dead {
                check_name("--attest-dead", m).map_err(|e| Status::invalid_argument(e.to_string()))?;
            }
            let reason = super::bounded_text("--reason", &r.reason, 300)?;
            if reason.is_empty() {
                return Err(Status::invalid_argument("--reason is required: the approver reads it"));
            }
            if !self.ctx.is_leader() {
                return Err(not_leader(&self.ctx));
            }
            // Checked now so that the requester learns at once; checked again when approved.
            self.brain
                .check_failover(&r.cluster, &r.to, r.accept_data_loss, &r.attested_dead)
                .map_err(|why| Status::failed_precondition(format!("failover refused: {why}")))?;
            let command = Command::RequestFailover {
                cluster: r.cluster,
                to: r.to,
                reason,
                accept_data_loss: r.accept_data_loss,
                attested_dead: r.attested_dead,
                ttl_ms: APPROVAL_TTL.as_millis() as u64,
            };
            let (log_index, message) = self.propose(&caller, command).await?;
            Ok(Response::new(pb::MutationReply { log_index, message }))
        }
        .await;
        self.ctx.metrics.rpc("Control/RequestFailover", &result);
        result
    }

    async fn approve(&self, req: Request<pb::ApprovalRequest>) -> Result<Response<pb::MutationReply>, Status> {
        let result = async {
            let caller = self.authorise(&req, &APPROVER_ROLES, "approving a failover")?;
            let id = req.into_inner().id;
            let (log_index, message) = self.propose(&caller, Command::Approve { id }).await?;
            Ok(Response::new(pb::MutationReply { log_index, message }))
        }
        .await;
        self.ctx.metrics.rpc("Control/Approve", &result);
        result
    }

    async fn cancel_approval(&self, req: Request<pb::ApprovalRequest>) -> Result<Response<pb::MutationReply>, Status> {
        let result = async {
            let caller = self.authorise(&req, &APPROVER_ROLES, "cancelling a failover request")?;
            let id = req.into_inner().id;
            let command = Command::SetApprovalState { id, state: ApprovalState::cancelled() };
            let (log_index, message) = self.propose(&caller, command).await?;
            Ok(Response::new(pb::MutationReply { log_index, message }))
        }
        .await;
        self.ctx.metrics.rpc("Control/CancelApproval", &result);
        result
    }

    async fn break_glass(&self, req: Request<pb::BreakGlassRequest>) -> Result<Response<pb::MutationReply>, Status> {
        let result = self.break_glass_inner(req).await.map(Response::new);
        self.ctx.metrics.rpc("Control/BreakGlass", &result);
        result
    }

    async fn approve_break_glass(
        &self,
        req: Request<pb::ApprovalRequest>,
    ) -> Result<Response<pb::MutationReply>, Status> {
        let result = self.approve_break_glass_inner(req).await.map(Response::new);
        self.ctx.metrics.rpc("Control/ApproveBreakGlass", &result);
        result
    }

    async fn confirm_quorum(
        &self,
        req: Request<pb::ConfirmQuorumRequest>,
    ) -> Result<Response<pb::MutationReply>, Status> {
        let result = async {
            let caller = self.authorise(&req, &[Role::Admin], "confirming a held quorum")?;
            let reason = super::bounded_text("--reason", &req.into_inner().reason, 500)?;
            if reason.chars().count() < 20 {
                return Err(Status::invalid_argument(
                    "--reason must say who checked that the silent voters did not break the glass, and how (at least 20 \
                     characters)",
                ));
            }
            if !self.ctx.is_leader() {
                return Err(not_leader(&self.ctx));
            }
            let term = self.ctx.raft.metrics().borrow().current_term;
            if self.ctx.continuity.held(term).is_none() {
                return Err(Status::failed_precondition(format!(
                    "controller {} leads at term {term} and holds nothing: there is nothing to confirm",
                    self.ctx.id
                )));
            }
            let (log_index, message) = self.propose(&caller, Command::ConfirmQuorum { term, reason }).await?;
            Ok(Response::new(pb::MutationReply { log_index, message }))
        }
        .await;
        self.ctx.metrics.rpc("Control/ConfirmQuorum", &result);
        result
    }

    async fn history(&self, req: Request<pb::HistoryRequest>) -> Result<Response<pb::HistoryReply>, Status> {
        let result = self.authorise_read(&req, READERS, "reading history").map(|_| {
            let cluster = req.get_ref().cluster.clone();
            let g = self.ctx.state.read().expect("state lock poisoned");
            let workflows = g
                .state
                .workflows
                .values()
                .rev()
                .filter(|w| cluster.is_empty() || w.cluster == cluster)
                .map(|w| pb::WorkflowRecord {
                    id: w.id,
                    kind: w.kind.to_string(),
                    cluster: w.cluster.clone(),
                    from: w.from.clone(),
                    to: w.to.clone(),
                    requested_by: w.requested_by.clone(),
                    started_ms: w.started_ms,
                    steps: w
                        .steps
                        .iter()
                        .map(|s| pb::WorkflowStepRecord { name: s.name.clone(), at_ms: s.at_ms, note: s.note.clone() })
                        .collect(),
                    finished_ms: w.finished.as_ref().map(|f| f.0).unwrap_or(0),
                    outcome: w.finished.as_ref().map(|f| f.1.clone()).unwrap_or_else(|| "under way".into()),
                })
                .collect();
            Response::new(pb::HistoryReply { workflows })
        });
        self.ctx.metrics.rpc("Control/History", &result);
        result
    }

    async fn audit(&self, req: Request<pb::AuditRequest>) -> Result<Response<pb::AuditReply>, Status> {
        let result = (|| {
            self.authorise_read(&req, &[Role::Admin, Role::Auditor], "reading the audit log")?;
            let limit = match req.get_ref().limit {
                0 => 100,
                n => n.min(10_000) as usize,
            };
            let entries = read_audit(&self.ctx.db, limit).map_err(to_status)?;
            Ok(Response::new(pb::AuditReply {
                entries: entries
                    .into_iter()
                    .map(|a| pb::AuditEntry {
                        seq: a.seq,
                        at_ms: a.at_ms,
                        actor: a.actor,
                        role: a.role.to_string(),
                        origin: a.origin,
                        action: a.action,
                        log_index: a.log_index,
                    })
                    .collect(),
            }))
        })();
        self.ctx.metrics.rpc("Control/Audit", &result);
        result
    }
}
