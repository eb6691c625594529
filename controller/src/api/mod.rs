//! The edges: the gRPC services (peers, operators, agents) and the HTTP endpoints. Requests are
//! authenticated and validated here, turned into commands for the proposer, and errors become
//! `tonic::Status` here and nowhere earlier.

mod agent_link;
pub mod alerts;
pub mod auth;
mod break_glass;
mod control;
pub mod drills;
mod http;
pub mod intake;
pub mod inventory;
mod membership;
mod peer;
mod records;
mod syslog;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Server, ServerTlsConfig};
use tonic::Status;
use triad_proto::v1::agent_link_server::AgentLinkServer;
use triad_proto::v1::alerts_server::AlertsServer;
use triad_proto::v1::control_server::ControlServer;
use triad_proto::v1::drills_server::DrillsServer;
use triad_proto::v1::inventory_server::InventoryServer;
use triad_proto::v1::peer_server::PeerServer;

pub use break_glass::track_leaderless;
pub use http::{serve as serve_http, tls_config as http_tls_config, token_digest};
pub use syslog::{IpNet, SyslogListeners};

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::state::Rejection;

/// Free text from a caller (a reason, an attestation), trimmed and bounded: longer text is
/// refused, naming the argument, rather than stored or cut short without a word.
pub(crate) fn bounded_text(arg: &str, text: &str, max_chars: usize) -> std::result::Result<String, Status> {
    let text = text.trim();
    let n = text.chars().count();
    if n > max_chars {
        return Err(Status::invalid_argument(format!("{arg} is {n} characters long: at most {max_chars}")));
    }
    Ok(text.to_string())
}

pub use triad_proto::words::LEADER_ADDR_KEY;

/// Proposes `command` as `caller` and waits for it to be applied: the entry's log index and the
/// state's answer, or its refusal as a status. Every service's writes go through here.
pub(crate) async fn propose_as(
    ctx: &Ctx,
    caller: &auth::Caller,
    command: crate::state::Command,
) -> std::result::Result<(u64, String), Status> {
    use crate::state::Response as Applied;
    let committed = ctx.proposer.propose(ctx.proposal(caller.actor(), command)).await.map_err(to_status)?;
    match committed.response {
        Applied::Ok(message) => Ok((committed.log_index, message)),
        Applied::Rejected(why) => Err(to_status(Error::Rejected(why))),
        other => Err(Status::internal(format!("unexpected state machine response {other:?}"))),
    }
}

/// [`propose_as`], answered as a `MutationReply`.
pub(crate) async fn mutation(
    ctx: &Ctx,
    caller: &auth::Caller,
    command: crate::state::Command,
) -> std::result::Result<tonic::Response<triad_proto::v1::MutationReply>, Status> {
    let (log_index, message) = propose_as(ctx, caller, command).await?;
    Ok(tonic::Response::new(triad_proto::v1::MutationReply { log_index, message }))
}

/// Serves the gRPC services on `listener` until `shutdown` resolves.
pub async fn serve_grpc(
    ctx: Arc<Ctx>,
    listener: TcpListener,
    tls: ServerTlsConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<()> {
    let max = 256 << 20;
    Server::builder()
        .tls_config(tls)?
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(5)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .add_service(PeerServer::new(peer::PeerApi::new(ctx.clone())).max_decoding_message_size(max))
        .add_service(ControlServer::new(control::ControlApi::new(ctx.clone(), crate::brain::Brain::new(ctx.clone()))))
        .add_service(AlertsServer::new(alerts::AlertsApi::new(ctx.clone())))
        .add_service(InventoryServer::new(inventory::InventoryApi::new(ctx.clone())))
        .add_service(DrillsServer::new(drills::DrillsApi::new(ctx.clone(), crate::brain::Brain::new(ctx.clone()))))
        .add_service(AgentLinkServer::new(agent_link::AgentLinkApi::new(ctx)))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

/// The gRPC status for an error, at the edge.
pub fn to_status(e: Error) -> Status {
    match e {
        Error::NotLeader { leader_id, leader_addr } => {
            let mut s = Status::failed_precondition(
                Error::NotLeader { leader_id, leader_addr: leader_addr.clone() }.to_string(),
            );
            if let Some(addr) = leader_addr.and_then(|a| a.parse().ok()) {
                s.metadata_mut().insert(LEADER_ADDR_KEY, addr);
            }
            s
        }
        Error::PermissionDenied(m) => Status::permission_denied(m),
        Error::Unauthenticated(m) => Status::unauthenticated(m),
        Error::InvalidArgument(m) => Status::invalid_argument(m),
        // The state machine's class of refusal picks the code; its reason is the message.
        Error::Rejected(r) => match r {
            Rejection::NotFound(m) => Status::not_found(m),
            Rejection::NotAllowed(m) => Status::permission_denied(m),
            Rejection::Invalid(m) => Status::invalid_argument(m),
            Rejection::Conflict(m) => Status::failed_precondition(m),
        },
        Error::Unavailable(m) => Status::unavailable(m),
        Error::Rpc(s) => *s,
        other => Status::internal(other.to_string()),
    }
}

/// A refusal naming the leader, for calls that must run on it.
pub fn not_leader(ctx: &Ctx) -> Status {
    let (leader_id, leader_addr) = ctx.leader();
    to_status(Error::NotLeader { leader_id, leader_addr })
}
