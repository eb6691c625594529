//! The running controller's shared parts, handed to every edge and to the brain.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::ServerState;
use rocksdb::DB;

use crate::brain::{CommandBus, Leases, Observations};
use crate::config::ControllerConfig;
use crate::metrics::Metrics;
use crate::raft::{PeerNetwork, Proposer, Raft, SharedState};
use crate::state::{Actor, Command, Proposal};

/// Everything a request handler or the brain needs.
pub struct Ctx {
    pub id: u64,
    pub cfg: ControllerConfig,
    pub raft: Raft,
    /// The applied state (read side).
    pub state: SharedState,
    /// The database, for reads of on-disk history (audit).
    pub db: Arc<DB>,
    /// The write side: every change goes through here into the log.
    pub proposer: Proposer,
    pub net: PeerNetwork,
    /// Soft state: what agents reported to this controller.
    pub obs: Observations,
    /// Commands to agents and their results (used on the leader).
    pub bus: CommandBus,
    /// Clusters whose workflow a task on this controller is running, so recovery leaves them alone.
    pub running: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The leases this controller granted while leading (soft state).
    pub leases: Leases,
    pub metrics: Arc<Metrics>,
    /// Set to ask the process to stop and run again (an approved break-glass order).
    pub restart: tokio::sync::watch::Sender<bool>,
    /// Since when this controller has known no leader (`None` while it knows one).
    pub leaderless_since: std::sync::Mutex<Option<std::time::Instant>>,
    /// The budget of refused calls recorded in the audit log (`api/auth.rs`).
    pub refusals: crate::api::auth::RefusalAudit,
    /// Whether this leader's quorum is trusted to grant leases and change roles
    /// (`brain/continuity.rs`).
    pub continuity: crate::brain::continuity::Continuity,
}

/// Wall-clock milliseconds since the Unix epoch, for timestamps carried in proposals.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Ctx {
    /// Wraps `command` with its author and the current time.
    pub fn proposal(&self, actor: Actor, command: Command) -> Proposal {
        Proposal { at_ms: now_ms(), actor, command }
    }

    /// True while this controller is the Raft leader.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// The leader this controller knows of: its id and gRPC address.
    pub fn leader(&self) -> (Option<u64>, Option<String>) {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader;
        let addr =
            id.and_then(|id| m.membership_config.nodes().find(|(n, _)| **n == id).map(|(_, node)| node.addr.clone()));
        (id, addr)
    }
}
