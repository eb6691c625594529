//! The kinds and states the tables name, as enums. Each is encoded as its name, a string, in the
//! log and in snapshots (`serde(into, try_from)`): exactly what was stored when they were
//! strings, so a store written before is read as it was, and a name this build does not know is
//! an error naming it rather than a guess.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A name read from the store that no variant has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{name}`")]
pub struct UnknownName {
    pub what: &'static str,
    pub name: String,
}

/// What a workflow does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum WorkflowKind {
    /// A planned change of primary, asked for by an operator (or a drill).
    Switchover,
    /// The primary replaced: by the detector, an approved request or a break-glass order.
    Failover,
    /// A stopped member started again as a standby of the primary.
    Rejoin,
    /// A primary stopped by its own agent's fence, started again.
    Restart,
    /// A running standby pointed at the primary.
    Follow,
}

impl WorkflowKind {
    /// Every kind.
    pub const ALL: [WorkflowKind; 5] = [
        WorkflowKind::Switchover,
        WorkflowKind::Failover,
        WorkflowKind::Rejoin,
        WorkflowKind::Restart,
        WorkflowKind::Follow,
    ];

    /// Its name, as stored, shown and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowKind::Switchover => "switchover",
            WorkflowKind::Failover => "failover",
            WorkflowKind::Rejoin => "rejoin",
            WorkflowKind::Restart => "restart",
            WorkflowKind::Follow => "follow",
        }
    }
}

impl fmt::Display for WorkflowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<WorkflowKind> for String {
    fn from(k: WorkflowKind) -> String {
        k.as_str().to_string()
    }
}

impl TryFrom<String> for WorkflowKind {
    type Error = UnknownName;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        WorkflowKind::ALL.into_iter().find(|k| k.as_str() == name).ok_or(UnknownName { what: "workflow kind", name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_is_stored_exactly_as_its_name_was() {
        for kind in WorkflowKind::ALL {
            let as_enum = bincode::serialize(&kind).unwrap();
            assert_eq!(as_enum, bincode::serialize(&kind.as_str().to_string()).unwrap(), "{kind}");
            assert_eq!(bincode::deserialize::<WorkflowKind>(&as_enum).unwrap(), kind);
        }
        for state in [ApprovalState::Pending, ApprovalState::Started, ApprovalState::Ended("completed: x".into())] {
            let as_enum = bincode::serialize(&state).unwrap();
            assert_eq!(as_enum, bincode::serialize(&state.as_str().to_string()).unwrap(), "{state}");
            assert_eq!(bincode::deserialize::<ApprovalState>(&as_enum).unwrap(), state);
        }
        for state in [BreakGlassState::Reseeded, BreakGlassState::Refused("no such cluster".into())] {
            let as_enum = bincode::serialize(&state).unwrap();
            assert_eq!(as_enum, bincode::serialize(&state.to_string()).unwrap(), "{state}");
            assert_eq!(bincode::deserialize::<BreakGlassState>(&as_enum).unwrap(), state);
        }
        let unknown = bincode::serialize(&"drill".to_string()).unwrap();
        let err = bincode::deserialize::<WorkflowKind>(&unknown).unwrap_err().to_string();
        assert!(err.contains("unknown workflow kind `drill`"), "{err}");
    }
}

/// What a request for a second person's approval would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum ApprovalAction {
    /// A manual failover, carried out by the leader once approved.
    Failover,
    /// Maintenance mode (automatic failover off), taking effect with the approval.
    Pause,
}

impl ApprovalAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalAction::Failover => "failover",
            ApprovalAction::Pause => "pause",
        }
    }
}

impl fmt::Display for ApprovalAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<ApprovalAction> for String {
    fn from(a: ApprovalAction) -> String {
        a.as_str().to_string()
    }
}

impl TryFrom<String> for ApprovalAction {
    type Error = UnknownName;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        match name.as_str() {
            "failover" => Ok(ApprovalAction::Failover),
            "pause" => Ok(ApprovalAction::Pause),
            _ => Err(UnknownName { what: "approval action", name }),
        }
    }
}

/// Where a request for approval stands.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum ApprovalState {
    /// Waiting for its second person, until it expires.
    Pending,
    /// Approved; the leader has not claimed it yet.
    Approved,
    /// Claimed by a leader, which runs it (a new leader does not run it again).
    Started,
    /// Not approved in time.
    Expired,
    /// Ended, with how, as recorded: `completed: ...`, `refused: ...`, `failed: ...`,
    /// `cancelled` or `cancelled: why`.
    Ended(String),
}

impl ApprovalState {
    /// Cancelled by an approver.
    pub fn cancelled() -> ApprovalState {
        ApprovalState::Ended("cancelled".into())
    }

    /// Pending or under way (not lapsed at `now_ms`, not ended).
    pub fn is_open(&self, expires_ms: u64, now_ms: u64) -> bool {
        match self {
            ApprovalState::Pending => now_ms < expires_ms,
            ApprovalState::Approved | ApprovalState::Started => true,
            ApprovalState::Expired | ApprovalState::Ended(_) => false,
        }
    }

    /// Approved or started: the leader has it to do, or does it.
    pub fn under_way(&self) -> bool {
        matches!(self, ApprovalState::Approved | ApprovalState::Started)
    }

    /// Its name, or the outcome as recorded.
    pub fn as_str(&self) -> &str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Started => "started",
            ApprovalState::Expired => "expired",
            ApprovalState::Ended(how) => how,
        }
    }
}

impl fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<ApprovalState> for String {
    fn from(s: ApprovalState) -> String {
        s.as_str().to_string()
    }
}

/// Any other text is an outcome, as the leader recorded it.
impl From<String> for ApprovalState {
    fn from(name: String) -> ApprovalState {
        match name.as_str() {
            "pending" => ApprovalState::Pending,
            "approved" => ApprovalState::Approved,
            "started" => ApprovalState::Started,
            "expired" => ApprovalState::Expired,
            _ => ApprovalState::Ended(name),
        }
    }
}

/// Where a break-glass order stands (`state/break_glass.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum BreakGlassState {
    /// Requested on the stranded controller, waiting for a second person until it expires.
    Pending,
    /// Approved: the controller rewrites its store into a single-voter cluster at its restart.
    Approved,
    /// The store was rewritten; the order waits to be recorded in the log.
    Reseeded,
    /// Recorded in the log, where its failover is carried out.
    Recorded,
    /// Not approved in time.
    Expired,
    /// The replicated state refused to record it, and why.
    Refused(String),
}

impl fmt::Display for BreakGlassState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakGlassState::Pending => f.write_str("pending"),
            BreakGlassState::Approved => f.write_str("approved"),
            BreakGlassState::Reseeded => f.write_str("reseeded"),
            BreakGlassState::Recorded => f.write_str("recorded"),
            BreakGlassState::Expired => f.write_str("expired"),
            BreakGlassState::Refused(why) => write!(f, "refused: {why}"),
        }
    }
}

impl From<BreakGlassState> for String {
    fn from(s: BreakGlassState) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for BreakGlassState {
    type Error = UnknownName;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Ok(match name.as_str() {
            "pending" => BreakGlassState::Pending,
            "approved" => BreakGlassState::Approved,
            "reseeded" => BreakGlassState::Reseeded,
            "recorded" => BreakGlassState::Recorded,
            "expired" => BreakGlassState::Expired,
            _ => match name.strip_prefix("refused: ") {
                Some(why) => BreakGlassState::Refused(why.to_string()),
                None => return Err(UnknownName { what: "break-glass state", name }),
            },
        })
    }
}
