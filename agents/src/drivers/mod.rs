//! Database drivers: one trait for what Triad needs of a replicated database member, implemented
//! for PostgreSQL streaming replication (`postgres.rs`) and by an in-process simulation
//! (`simulated.rs`). An Oracle Data Guard driver fits beside them without touching the controller,
//! which sees only [`DbStatus`].

mod postgres;
mod simulated;

pub use postgres::PostgresDriver;
pub use simulated::SimulatedDriver;
pub use triad_proto::v1::{DbStatus, ReplicaStatus};

/// A database member on this host.
#[async_trait::async_trait]
pub trait DatabaseDriver: Send + Sync {
    /// `postgres`, `simulated`, ...
    fn kind(&self) -> &'static str;

    /// Observes the member: role, timeline, WAL positions, and (on a primary) its standbys. An
    /// unreachable server is an observation too (`up = false`, `role = "down"`), not an error.
    async fn observe(&self) -> DbStatus;
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
