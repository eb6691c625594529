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
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn status_text(s: &tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}
