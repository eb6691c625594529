//! Shared vocabulary: how positions, instants and protocol metadata are written, the same for the
//! controller's brain, its edges and `triadctl` (none of them owns it, so it lives below them).

/// The gRPC metadata key under which a follower names the leader's address when it refuses a
/// write (`triadctl` retries there).
pub const LEADER_ADDR_KEY: &str = "triad-leader-addr";

/// What a link probe report says of a TCP echo not tried yet (a link just added to the plan):
/// not a failure.
pub const PROBE_TCP_NOT_TRIED: &str = "not tried yet";

/// A WAL position as PostgreSQL writes it (`16/B374D848`).
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// A wall-clock instant in milliseconds since the Unix epoch, as `2026-12-06 08:48:44 UTC`
/// (the milliseconds themselves when out of range).
pub fn format_utc(ms: u64) -> String {
    format_utc_bare(ms).map(|t| format!("{t} UTC")).unwrap_or_else(|| ms.to_string())
}

/// [`format_utc`] without the zone, for a column headed "(UTC)"; `None` when out of range.
pub fn format_utc_bare(ms: u64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).ok()?;
    Some(format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_instants_read_as_operators_expect() {
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(format_lsn(0), "0/0");
        assert_eq!(format_utc(1_796_546_924_000), "2026-12-06 08:48:44 UTC");
        assert_eq!(format_utc(u64::MAX), u64::MAX.to_string());
    }
}
