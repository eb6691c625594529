//! Raft RPCs between controllers over gRPC with mutual TLS. openraft's messages travel as opaque
//! bincode payloads inside the `Peer` service; errors the remote Raft returned come back as values
//! and are handed to openraft as remote errors, transport failures as `Unreachable`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use triad_proto::v1::peer_client::PeerClient;
use triad_proto::v1::RaftPayload;

use super::{decode, encode, NodeId, TypeConfig};
use crate::error::{Error, Result};

/// Most bytes of log entries in one AppendEntries (one entry at least, whatever its size).
/// openraft 0.9 gives an append one heartbeat interval to complete, the follower's synced write
/// included, and sends up to `max_payload_entries` at once: a follower catching up on a storm's
/// large entries would otherwise time out on the same oversized request over and over.
const APPEND_BYTES: u64 = 256 << 10;

/// How many of `entries`, from the first, fit in `budget` bytes (at least one).
fn entries_within(entries: &[openraft::Entry<TypeConfig>], budget: u64) -> usize {
    let mut size = 0u64;
    for (i, e) in entries.iter().enumerate() {
        size += bincode::serialized_size(e).unwrap_or(u64::MAX / 2);
        if size > budget && i > 0 {
            return i;
        }
    }
    entries.len()
}

/// The TLS settings a controller uses when it dials another controller.
pub type PeerTls = ClientTlsConfig;

/// Dials other controllers; one lazily connected channel per address, shared by Raft replication
/// and write forwarding.
#[derive(Clone)]
pub struct PeerNetwork {
    tls: PeerTls,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// This controller leads and a quorum acknowledged it lately (set by the brain's continuity
    /// check): said in every AppendEntries, so that a follower counts only a leader with a working
    /// quorum as contact with one (`brain/continuity.rs`).
    leader_has_quorum: Arc<AtomicBool>,
}

impl PeerNetwork {
    /// A network that authenticates with `tls`.
    pub fn new(tls: PeerTls) -> Self {
        PeerNetwork { tls, channels: Arc::default(), leader_has_quorum: Arc::default() }
    }

    /// Says from now on (see the field) whether this controller leads with a working quorum.
    pub fn set_leader_has_quorum(&self, yes: bool) {
        self.leader_has_quorum.store(yes, Ordering::Relaxed);
    }

    /// The channel to the controller at `addr` (`IP:PORT`), created on first use.
    pub fn channel(&self, addr: &str) -> Result<Channel> {
        let mut map = self.channels.lock().expect("channel map lock poisoned");
        if let Some(ch) = map.get(addr) {
            return Ok(ch.clone());
        }
        let ch = Endpoint::from_shared(format!("https://{addr}"))
            .map_err(|e| Error::InvalidArgument(format!("bad peer address {addr}: {e}")))?
            .tls_config(self.tls.clone())?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .connect_lazy();
        map.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    /// A `Peer` service client for `addr`.
    pub fn client(&self, addr: &str) -> Result<PeerClient<Channel>> {
        Ok(PeerClient::new(self.channel(addr)?).max_decoding_message_size(256 << 20))
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConn;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerConn {
        PeerConn {
            target,
            client: self.client(&node.addr).map_err(|e| e.to_string()),
            leader_has_quorum: self.leader_has_quorum.clone(),
        }
    }
}

/// Raft's connection to one other controller.
pub struct PeerConn {
    target: NodeId,
    client: std::result::Result<PeerClient<Channel>, String>,
    leader_has_quorum: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

impl PeerConn {
    async fn call<Req, Resp, E>(
        &mut self,
        req: &Req,
        option: &RPCOption,
        which: Rpc,
    ) -> std::result::Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(&Msg(e.clone())))),
        };
        let leader_has_quorum = matches!(which, Rpc::Append) && self.leader_has_quorum.load(Ordering::Relaxed);
        let payload = tonic::Request::new(RaftPayload { data: encode(req), leader_has_quorum });
        let fut = async {
            match which {
                Rpc::Append => client.append_entries(payload).await,
                Rpc::Vote => client.vote(payload).await,
                Rpc::Snapshot => client.install_snapshot(payload).await,
            }
        };
        let reply = match tokio::time::timeout(option.hard_ttl(), fut).await {
            // A peer that is slow, not gone: openraft retries at once. As `Unreachable` it would
            // also stop heartbeats to that follower for a backoff interval, long enough for it
            // to call an election although the leader is fine (seen under an alert storm).
            Err(_) => {
                let why = format!("rpc timed out after {} ms", option.hard_ttl().as_millis());
                return Err(RPCError::Network(NetworkError::new(&Msg(why))));
            }
            Ok(Err(status)) => {
                let e = Msg(format!("{:?}: {}", status.code(), status.message()));
                return Err(match status.code() {
                    tonic::Code::Unavailable | tonic::Code::Unknown => RPCError::Unreachable(Unreachable::new(&e)),
                    _ => RPCError::Network(NetworkError::new(&e)),
                });
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        let result: std::result::Result<Resp, RaftError<NodeId, E>> =
            decode(&reply.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for PeerConn {
    /// After `Unreachable` (a refused connection, a broken transport), openraft sends nothing to
    /// that peer for these intervals in turn: from 50 ms doubling to 500 ms (openraft's default
    /// is 500 ms from the start), so a controller that restarts is caught up within moments.
    fn backoff(&self) -> openraft::network::Backoff {
        let steps = (0..4u32).map(|i| Duration::from_millis(50 << i));
        openraft::network::Backoff::new(steps.chain(std::iter::repeat(Duration::from_millis(500))))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> std::result::Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let mut rpc = rpc;
        let keep = entries_within(&rpc.entries, APPEND_BYTES);
        if keep == rpc.entries.len() {
            return self.call(&rpc, &option, Rpc::Append).await;
        }
        // Sent in parts: the follower takes the first `keep` entries, and openraft, told of a
        // partial success, sends the rest next. Safe because a follower commits only up to the
        // last entry a request carried (openraft's `accepted`), never past it.
        rpc.entries.truncate(keep);
        let sent_last = rpc.entries.last().map(|e| e.log_id);
        match self.call(&rpc, &option, Rpc::Append).await? {
            AppendEntriesResponse::Success => Ok(AppendEntriesResponse::PartialSuccess(sent_last)),
            other => Ok(other),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> std::result::Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(&rpc, &option, Rpc::Snapshot).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> std::result::Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(&rpc, &option, Rpc::Vote).await
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

    use super::*;
    use crate::state::{Actor, Command, Proposal};

    fn entry(index: u64, text_bytes: usize) -> Entry<TypeConfig> {
        let proposal = Proposal {
            at_ms: 0,
            actor: Actor::system(1),
            command: Command::ConfirmQuorum { term: 1, reason: "x".repeat(text_bytes) },
        };
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Normal(proposal) }
    }

    #[test]
    fn appends_are_cut_by_bytes_but_always_carry_one_entry() {
        let small: Vec<_> = (1..=16).map(|i| entry(i, 100)).collect();
        assert_eq!(entries_within(&small, APPEND_BYTES), 16, "small entries go together");
        let big: Vec<_> = (1..=16).map(|i| entry(i, 100 << 10)).collect();
        assert_eq!(entries_within(&big, APPEND_BYTES), 2, "100 KiB entries: two fit in 256 KiB");
        let huge = vec![entry(1, 1 << 20), entry(2, 10)];
        assert_eq!(entries_within(&huge, APPEND_BYTES), 1, "an entry over the budget still goes, alone");
        assert_eq!(entries_within(&[], APPEND_BYTES), 0);
    }
}
