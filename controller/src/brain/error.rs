//! Why a workflow, or one of its steps, did not do what it set out to do. The text of each is what
//! the history and the operator read, so each says what was being done.

use super::CallError;

/// A workflow's failure.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// A precondition did not hold: nothing was changed (a switchover's or failover's checks).
    #[error("{0}")]
    Refused(String),
    /// Something the workflow works on is no longer recorded (a cluster, a member, a workflow).
    #[error("{0}")]
    Gone(String),
    /// This controller stopped leading: the next leader takes the workflow over.
    #[error("no longer the leader")]
    NotLeader,
    /// The state machine refused a proposal, with its reason (it changed nothing).
    #[error(transparent)]
    Rejected(crate::state::Rejection),
    /// A proposal was not committed (no leader, the controller stopping).
    #[error(transparent)]
    Uncommitted(#[from] crate::Error),
    /// A command to an agent brought no successful result: what it was for, and why.
    #[error("{doing}: {source}")]
    Agent { doing: String, source: CallError },
    /// A test's failpoint stopped it between two steps, as if its leader had died.
    #[error("stopped at failpoint {0}")]
    Failpoint(String),
    /// What it waited for did not come in time, or no longer holds (a standby that did not
    /// become synchronous; a WAL that grew past the target).
    #[error("{0}")]
    NotSo(String),
    /// It ended without doing what it set out to do (rolled back, abandoned), with the outcome
    /// recorded in the history.
    #[error("{0}")]
    Ended(String),
}

impl WorkflowError {
    /// `what` is no longer recorded.
    pub fn gone(what: impl Into<String>) -> Self {
        WorkflowError::Gone(what.into())
    }

    /// A command to an agent, sent while `doing`, failed.
    pub fn agent(doing: impl Into<String>) -> impl FnOnce(CallError) -> Self {
        let doing = doing.into();
        move |source| WorkflowError::Agent { doing, source }
    }
}

/// The brain's results.
pub type WorkflowResult<T> = std::result::Result<T, WorkflowError>;
