//! The `Peer` service: Raft RPCs from other controllers, and writes forwarded by followers.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use triad_proto::v1::peer_server::Peer;
use triad_proto::v1::{ForwardReply, ForwardRequest, RaftPayload};

use super::auth;
use crate::context::Ctx;
use crate::raft::{decode, encode};
use crate::state::{Proposal, Role};

/// Serves other controllers.
pub struct PeerApi {
    ctx: Arc<Ctx>,
}

impl PeerApi {
    pub fn new(ctx: Arc<Ctx>) -> Self {
        PeerApi { ctx }
    }

    fn check<T>(&self, req: &Request<T>) -> Result<auth::Caller, Status> {
        let caller = auth::caller(req, &self.ctx.state)?;
        auth::require_recorded(&self.ctx, &caller, &[Role::Peer], "the Raft peer protocol")?;
        Ok(caller)
    }

    /// A controller speaks Raft only as itself: the node id inside a Raft message must be the one
    /// its certificate names (`controller-<id>`), so one stolen peer key cannot pose as every node.
    /// And a controller a break-glass order cut off is not heard at all: it may hold the lost
    /// quorum's log and terms, and would only disturb the cluster that replaced it.
    fn check_sender(&self, caller: &auth::Caller, vote: &openraft::Vote<u64>) -> Result<(), Status> {
        let id = vote.leader_id().voted_for().unwrap_or(0);
        if caller.name != format!("controller-{id}") {
            return Err(Status::permission_denied(format!(
                "certificate `{}` may not send Raft messages as controller {id}",
                caller.name
            )));
        }
        if self.ctx.state.read().expect("state lock poisoned").state.cut_off.contains(&id) {
            return Err(Status::permission_denied(format!(
                "controller {id} was cut off by a break-glass order: wipe its data directory and add it again with \
                 `triadctl cluster add`"
            )));
        }
        Ok(())
    }

    fn payload<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Status> {
        decode(bytes).map_err(|e| Status::invalid_argument(format!("undecodable Raft message: {e}")))
    }
}

#[tonic::async_trait]
impl Peer for PeerApi {
    async fn append_entries(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let result = async {
            let caller = self.check(&req)?;
            let payload = req.into_inner();
            let rpc: openraft::raft::AppendEntriesRequest<crate::raft::TypeConfig> = Self::payload(&payload.data)?;
            self.check_sender(&caller, &rpc.vote)?;
            let res = self.ctx.raft.append_entries(rpc).await;
            // Accepted from a leader with a working quorum: this controller is part of it now.
            let accepted = matches!(&res, Ok(r) if !matches!(r, openraft::raft::AppendEntriesResponse::HigherVote(_)));
            if accepted && payload.leader_has_quorum {
                self.ctx.continuity.contact();
            }
            Ok(Response::new(RaftPayload { data: encode(&res), ..Default::default() }))
        }
        .await;
        self.ctx.metrics.rpc("Peer/AppendEntries", &result);
        result
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let result = async {
            let caller = self.check(&req)?;
            let rpc: openraft::raft::VoteRequest<u64> = Self::payload(&req.into_inner().data)?;
            self.check_sender(&caller, &rpc.vote)?;
            let res = self.ctx.raft.vote(rpc).await;
            Ok(Response::new(RaftPayload { data: encode(&res), ..Default::default() }))
        }
        .await;
        self.ctx.metrics.rpc("Peer/Vote", &result);
        result
    }

    async fn install_snapshot(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let result = async {
            let caller = self.check(&req)?;
            let rpc: openraft::raft::InstallSnapshotRequest<crate::raft::TypeConfig> =
                Self::payload(&req.into_inner().data)?;
            self.check_sender(&caller, &rpc.vote)?;
            let res = self.ctx.raft.install_snapshot(rpc).await;
            Ok(Response::new(RaftPayload { data: encode(&res), ..Default::default() }))
        }
        .await;
        self.ctx.metrics.rpc("Peer/InstallSnapshot", &result);
        result
    }

    async fn forward(&self, req: Request<ForwardRequest>) -> Result<Response<ForwardReply>, Status> {
        let result = async {
            self.check(&req)?;
            let proposal: Proposal = Self::payload(&req.into_inner().proposal)?;
            // Written directly, never forwarded again: a write that finds no leader here goes back
            // to the follower, which retries, so forwarding cannot loop.
            let res = match self.ctx.raft.client_write(proposal).await {
                Ok(r) => Ok((r.log_id.index, r.data)),
                Err(e) => Err(e.to_string()),
            };
            Ok(Response::new(ForwardReply { response: encode(&res) }))
        }
        .await;
        self.ctx.metrics.rpc("Peer/Forward", &result);
        result
    }
}
