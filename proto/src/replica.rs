//! How a database member's report is read, the same way by the controller's brain, its status
//! and metrics, and the agents: a standby's state in Triad's words, whether it is synchronous and
//! caught up, what a position counts and how it is written. Agents older than those fields sent
//! only PostgreSQL's own words (`pg_stat_replication`'s `state` and `sync_state`, byte lags);
//! reading them is kept here, in one place, so that nothing else parses a database's vocabulary
//! (docs/oracle-data-guard.md, B2-B4).

use crate::v1::{DbStatus, PositionUnit, ReplicaState, ReplicaStatus};

/// The slowest a standby is assumed to replay, in bytes per second, when an older agent reports
/// byte positions but no estimate of its own.
const LEGACY_REPLAY_BYTES_PER_SEC: f64 = (8u64 << 20) as f64;

/// An agent older than the `replica_state` field: its words are PostgreSQL's.
fn legacy(r: &ReplicaStatus) -> bool {
    r.replica_state == ReplicaState::Unknown as i32 && !r.state.is_empty()
}

/// How the standby receives from its primary.
pub fn state(r: &ReplicaStatus) -> ReplicaState {
    if !legacy(r) {
        return ReplicaState::try_from(r.replica_state).unwrap_or(ReplicaState::Unknown);
    }
    match r.state.as_str() {
        "streaming" => ReplicaState::Streaming,
        "catchup" | "startup" | "backup" => ReplicaState::CatchingUp,
        "stopping" => ReplicaState::Stopped,
        _ => ReplicaState::Unknown,
    }
}

/// Whether the primary's commits wait for this standby now.
pub fn synchronous(r: &ReplicaStatus) -> bool {
    r.synchronous || (legacy(r) && r.sync_state == "sync")
}

/// Whether the standby held everything the primary had written when it was observed.
pub fn caught_up(r: &ReplicaStatus) -> bool {
    r.caught_up || (legacy(r) && r.flush_lag_bytes == 0)
}

/// Triad's word for a standby's state, as status shows it.
pub fn state_word(s: ReplicaState) -> &'static str {
    match s {
        ReplicaState::Streaming => "streaming",
        ReplicaState::CatchingUp => "catching up",
        ReplicaState::Stopped => "stopped",
        ReplicaState::Unknown => "unknown",
    }
}

/// What the member's positions count; an agent older than the field counts bytes.
pub fn unit(d: &DbStatus) -> PositionUnit {
    match PositionUnit::try_from(d.position_unit).unwrap_or(PositionUnit::Unspecified) {
        PositionUnit::Unspecified => PositionUnit::Bytes,
        u => u,
    }
}

/// Whether the difference of two of the member's positions is a number of bytes.
pub fn positions_are_bytes(d: &DbStatus) -> bool {
    unit(d) == PositionUnit::Bytes
}

/// A standby's estimate of the seconds it needs to apply what it has received; `None` when
/// unknown. An older agent sent none: its byte positions give one.
pub fn replay_remaining_seconds(d: &DbStatus) -> Option<f64> {
    if d.position_unit == PositionUnit::Unspecified as i32 {
        return Some(d.received_position.saturating_sub(d.applied_position) as f64 / LEGACY_REPLAY_BYTES_PER_SEC);
    }
    (d.replay_remaining_seconds >= 0.0 && d.replay_remaining_seconds.is_finite()).then_some(d.replay_remaining_seconds)
}

/// A position as the database's own people write it: `16/B374D848` for bytes of WAL, `SCN n`
/// for a system change number.
pub fn format_position(unit: PositionUnit, pos: u64) -> String {
    match unit {
        PositionUnit::Scn => format!("SCN {pos}"),
        PositionUnit::Bytes | PositionUnit::Unspecified => crate::words::format_lsn(pos),
    }
}

/// [`format_position`] in the unit `d` reports.
pub fn format_position_of(d: &DbStatus, pos: u64) -> String {
    format_position(unit(d), pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_triads_words_and_an_older_agents_postgresql_words() {
        let new = ReplicaStatus {
            replica_state: ReplicaState::CatchingUp as i32,
            state: "streaming".into(),
            sync_state: "sync".into(),
            flush_lag_bytes: 0,
            ..Default::default()
        };
        assert_eq!(state(&new), ReplicaState::CatchingUp, "the new field wins over the display words");
        assert!(!synchronous(&new) && !caught_up(&new));
        let old = ReplicaStatus { state: "streaming".into(), sync_state: "sync".into(), ..Default::default() };
        assert_eq!(state(&old), ReplicaState::Streaming);
        assert!(synchronous(&old) && caught_up(&old));
        assert_eq!(state(&ReplicaStatus::default()), ReplicaState::Unknown);
        let oracle = ReplicaStatus {
            replica_state: ReplicaState::Streaming as i32,
            synchronous: true,
            caught_up: true,
            flush_lag_bytes: -1,
            replay_lag_bytes: -1,
            ..Default::default()
        };
        assert!(synchronous(&oracle) && caught_up(&oracle));
    }

    #[test]
    fn positions_by_unit() {
        let pg = DbStatus::default();
        assert!(positions_are_bytes(&pg), "an older agent counts bytes");
        assert_eq!(format_position_of(&pg, 0x16_B374_D848), "16/B374D848");
        let ora = DbStatus { position_unit: PositionUnit::Scn as i32, ..Default::default() };
        assert!(!positions_are_bytes(&ora));
        assert_eq!(format_position_of(&ora, 12_345_678_901), "SCN 12345678901");
        let legacy = DbStatus { received_position: 16 << 20, applied_position: 8 << 20, ..Default::default() };
        assert_eq!(replay_remaining_seconds(&legacy), Some(1.0));
        let unknown =
            DbStatus { position_unit: PositionUnit::Scn as i32, replay_remaining_seconds: -1.0, ..Default::default() };
        assert_eq!(replay_remaining_seconds(&unknown), None);
    }
}
