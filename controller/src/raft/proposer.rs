//! The proposer: the one way into the Raft log. It groups concurrent proposals into one log entry
//! (`Command::Batch`), so that a single synced append and a single replication round carry many
//! writes; on a follower it forwards the batch to the leader over the `Peer` service.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};
use triad_proto::v1::ForwardRequest;

use super::{decode, encode, NodeId, PeerNetwork, Raft};
use crate::error::{Error, Result};
use crate::state::{Actor, Command, Proposal, Response};

/// Most proposals in one log entry.
const MAX_BATCH: usize = 1024;
/// Batches in flight at once: enough to keep the disk and the network busy at the same time.
const IN_FLIGHT: usize = 4;
/// How long a write waits for a leader during an election before giving up.
const LEADER_WAIT: Duration = Duration::from_secs(5);
/// How long one attempt may take to commit. A leader that has just removed itself from the
/// membership can accept an entry it will never commit; without a bound the write would hang.
const COMMIT_WAIT: Duration = Duration::from_secs(10);

/// A committed proposal: where it landed and what applying it said.
#[derive(Debug, Clone)]
pub struct Committed {
    pub log_index: u64,
    pub response: Response,
}

struct Pending {
    proposal: Proposal,
    reply: oneshot::Sender<Result<Committed>>,
}

/// Handle to the batching task. Cheap to clone.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Pending>,
}

impl Proposer {
    /// Starts the batching task for controller `id`.
    /// `commit_seconds` observes each entry's time from submission to commit.
    pub fn start(id: NodeId, raft: Raft, net: PeerNetwork, commit_seconds: prometheus::Histogram) -> Self {
        let (tx, rx) = mpsc::channel(8 * MAX_BATCH);
        tokio::spawn(batcher(id, raft, net, rx, commit_seconds));
        Proposer { tx }
    }

    /// Commits `proposal` (on the leader, wherever this controller is) and returns its outcome.
    pub async fn propose(&self, proposal: Proposal) -> Result<Committed> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { proposal, reply })
            .await
            .map_err(|_| Error::Unavailable("the controller is shutting down".into()))?;
        rx.await.map_err(|_| Error::Unavailable("the controller is shutting down".into()))?
    }
}

async fn batcher(
    id: NodeId,
    raft: Raft,
    net: PeerNetwork,
    mut rx: mpsc::Receiver<Pending>,
    commit_seconds: prometheus::Histogram,
) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        // While we waited for a slot, more proposals queued: they ride in the same entry.
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let (raft, net, commit_seconds) = (raft.clone(), net.clone(), commit_seconds.clone());
        tokio::spawn(async move {
            let _permit = permit;
            submit(id, &raft, &net, batch, &commit_seconds).await;
        });
    }
}

async fn submit(
    id: NodeId,
    raft: &Raft,
    net: &PeerNetwork,
    mut batch: Vec<Pending>,
    commit_seconds: &prometheus::Histogram,
) {
    let entry = if batch.len() == 1 {
        batch[0].proposal.clone()
    } else {
        Proposal {
            at_ms: batch.iter().map(|p| p.proposal.at_ms).max().unwrap_or(0),
            actor: Actor::system(id),
            command: Command::Batch(batch.iter().map(|p| p.proposal.clone()).collect()),
        }
    };
    let started = Instant::now();
    let result = write(raft, net, &entry).await;
    if result.is_ok() {
        commit_seconds.observe(started.elapsed().as_secs_f64());
    }
    match result {
        Err(e) => {
            let msg = e.to_string();
            for p in batch {
                let _ = p.reply.send(Err(Error::Unavailable(msg.clone())));
            }
        }
        Ok(c) if batch.len() == 1 => {
            let _ = batch.remove(0).reply.send(Ok(c));
        }
        Ok(Committed { log_index, response: Response::Batch(responses) }) if responses.len() == batch.len() => {
            for (p, response) in batch.into_iter().zip(responses) {
                let _ = p.reply.send(Ok(Committed { log_index, response }));
            }
        }
        Ok(other) => {
            for p in batch {
                let _ = p.reply.send(Err(Error::Raft(format!("batch answered with {:?}", other.response))));
            }
        }
    }
}

/// Writes one entry through the local Raft, or forwards it to the leader; waits out elections.
///
/// An entry is retried only when it cannot have been appended (no leader, or the leader said to
/// forward). An attempt that timed out may still commit later, so it is reported as such rather
/// than proposed twice; callers whose command is idempotent may check and retry.
async fn write(raft: &Raft, net: &PeerNetwork, entry: &Proposal) -> Result<Committed> {
    let deadline = Instant::now() + LEADER_WAIT;
    loop {
        let attempt = tokio::time::timeout(COMMIT_WAIT, raft.client_write(entry.clone())).await.map_err(|_| {
            Error::Unavailable(format!(
                "the write was not committed within {} s (this controller may have lost leadership); it may still \
                 commit",
                COMMIT_WAIT.as_secs()
            ))
        })?;
        let err = match attempt {
            Ok(resp) => return Ok(Committed { log_index: resp.log_id.index, response: resp.data }),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => match f.leader_node {
                Some(node) => match forward(net, &node.addr, entry).await {
                    Ok(c) => return Ok(c),
                    Err(e) => e,
                },
                None => Error::NotLeader { leader_id: None, leader_addr: None },
            },
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                return Err(Error::Raft(e.to_string()))
            }
            Err(RaftError::Fatal(e)) => return Err(Error::Raft(e.to_string())),
        };
        if Instant::now() >= deadline {
            return Err(err);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn forward(net: &PeerNetwork, addr: &str, entry: &Proposal) -> Result<Committed> {
    let mut client = net.client(addr)?;
    let call = client.forward(ForwardRequest { proposal: encode(entry) });
    let reply = tokio::time::timeout(COMMIT_WAIT, call)
        .await
        .map_err(|_| {
            Error::Unavailable(format!(
                "the leader at {addr} did not answer a forwarded write within {} s; it may still commit",
                COMMIT_WAIT.as_secs()
            ))
        })??
        .into_inner();
    let result: std::result::Result<(u64, Response), String> =
        decode(&reply.response).map_err(|e| Error::Raft(format!("undecodable forward reply: {e}")))?;
    match result {
        Ok((log_index, response)) => Ok(Committed { log_index, response }),
        Err(msg) => Err(Error::Unavailable(msg)),
    }
}
