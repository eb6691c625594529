//! What an agent does for the controllers beyond its database: service hooks and checks run on
//! demand, and balancer updates through HAProxy's runtime API (issue 20: services follow the
//! database, balancers are told). None of it passes the database's epoch gate; the link applies
//! hooks and balancer updates in (epoch, log index) order per cluster (`link/side.rs`).

pub mod balancer;
pub mod hook;

/// Why an action failed; its text is what the leader records in the workflow.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// Refused before anything ran: a bad path, name or state, a hook outside the hooks directory.
    #[error("refused: {0}")]
    Refused(String),
    /// The hook ran and failed, or could not be started.
    #[error("{0}")]
    Hook(String),
    /// The balancer's runtime API could not be reached or answered with an error.
    #[error("balancer {socket}: {msg}")]
    Balancer { socket: String, msg: String },
}
