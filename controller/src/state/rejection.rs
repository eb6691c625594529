//! Why `apply` refused a command (it changed nothing): a class the edges map to a status code,
//! and the reason in words for whoever proposed it and for the audit log.

use serde::{Deserialize, Serialize};

/// A refused command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    /// What the command names is not recorded: a cluster, member, site, agent, user, controller,
    /// workflow or request.
    #[error("{0}")]
    NotFound(String),
    /// The actor may not do this: its role, or the two-person rule.
    #[error("{0}")]
    NotAllowed(String),
    /// The command is malformed whatever the state (a missing reason, a member made its own
    /// standby, a command sent to the wrong table).
    #[error("{0}")]
    Invalid(String),
    /// The command does not fit the state it meets (already done, another workflow under way,
    /// an epoch moved on, a request no longer pending): proposers racing one another.
    #[error("{0}")]
    Conflict(String),
}
