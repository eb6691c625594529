//! openraft glue: the type configuration, the RocksDB log and state-machine stores, the gRPC
//! network between controllers, and the proposer that batches commands into log entries.

pub mod break_glass;
pub mod contact;
mod log_store;
mod network;
mod proposer;
mod snapshot_file;
mod state_machine;
mod store;

pub use log_store::LogStore;
pub use network::{PeerNetwork, PeerTls};
pub use proposer::Committed;
pub use proposer::Proposer;
pub use state_machine::{
    read_archived_alert, read_archived_alerts, read_audit, read_audit_after, Applied, SharedState, StateMachineStore,
};
pub use store::open_db;

use crate::state::{Proposal, Response};

openraft::declare_raft_types!(
    /// Triad's Raft types: log entries carry a [`Proposal`], applying one yields a [`Response`].
    pub TypeConfig:
        D = Proposal,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A controller's Raft node id.
pub type NodeId = u64;
/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;

/// Encodes a value for the log, the snapshot or the wire.
pub fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Serialising our own plain data types (no maps with non-string keys in JSON, no custom
    // serializers that fail) cannot fail with bincode.
    bincode::serialize(v).expect("bincode serialisation of an in-memory value")
}

/// Decodes a value written by [`encode`].
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::Error> {
    bincode::deserialize(bytes)
}
