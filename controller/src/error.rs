//! The controller crate's one error type; gRPC edges turn it into a `tonic::Status`.

/// Everything that can go wrong inside the controller and `triadctl`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration file could not be read or parsed.
    #[error("config {path}: {msg}")]
    ConfigFile { path: String, msg: String },
    /// A configuration value is invalid; `key` is its dotted TOML path.
    #[error("config key `{key}`: {msg}")]
    ConfigKey { key: String, msg: String },
    #[error("storage: {0}")]
    Storage(String),
    #[error("tls: {0}")]
    Tls(String),
    #[error("raft: {0}")]
    Raft(String),
    /// This controller is not the leader; the leader's id and address when known.
    #[error("not the leader{}", leader_hint(.leader_id, .leader_addr))]
    NotLeader { leader_id: Option<u64>, leader_addr: Option<String> },
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The replicated state machine refused a command (it changed nothing).
    #[error("rejected: {0}")]
    Rejected(crate::state::Rejection),
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A check the operator asked for found what would refuse the operation (a drill's
    /// pre-checks); the findings were printed.
    #[error("{0}")]
    CheckFailed(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// A gRPC call failed (boxed: a Status is large and errors travel by value).
    #[error("{}", rpc_message(.0))]
    Rpc(Box<tonic::Status>),
}

fn leader_hint(id: &Option<u64>, addr: &Option<String>) -> String {
    match (id, addr) {
        (Some(id), Some(addr)) => format!("; the leader is controller {id} at {addr}"),
        (Some(id), None) => format!("; the leader is controller {id}"),
        _ => "; no leader is known yet".to_string(),
    }
}

fn rpc_message(s: &tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

impl Error {
    /// An I/O error with what was being done when it happened.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        Error::Rpc(Box::new(s))
    }
}

impl From<rocksdb::Error> for Error {
    fn from(e: rocksdb::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
