//! The agent crate's one error type.

/// Everything that can go wrong in the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config {path}: {msg}")]
    ConfigFile { path: String, msg: String },
    #[error("config key `{key}`: {msg}")]
    ConfigKey { key: String, msg: String },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("{}", status_text(.0))]
    Rpc(#[from] tonic::Status),
    #[error("protocol: {0}")]
    Protocol(String),
    /// No lease at the epoch a primary is to be opened at (`opening.rs`).
    #[error("no lease at epoch {epoch}; not {doing}")]
    NoLease { epoch: u64, doing: &'static str },
    /// The lease ended while the primary started in recovery: it is stopped again, not opened.
    #[error("the lease at epoch {epoch} ended during the start ({ms} ms): the server is not opened")]
    LeaseEndedDuringStart { epoch: u64, ms: u64 },
    /// A newer epoch overtook a start or promote.
    #[error("{0}")]
    NotCurrent(String),
    /// Mode `required` and no watchdog can be armed: no primary is opened.
    #[error("the watchdog cannot be armed: {0}")]
    Watchdog(crate::safety::watchdog::WatchdogProblem),
    /// The database driver failed.
    #[error("{0}")]
    Driver(#[from] crate::drivers::DriverError),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn status_text(s: &tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}
