//! The end of a PostgreSQL promotion: signalled, then watched until the member is out of
//! recovery, ending the sessions that hold replay back (DESIGN.md point 7). Shared by a standby's
//! promotion and the opening of a primary started in recovery (`opening.rs`).

use tokio_postgres::Client;

use super::DriverError;

/// Signals the promotion of the member `client` is connected to and waits until it is out of
/// recovery, giving up at `deadline` (the promotion may still finish after that).
pub(super) async fn promote_and_wait(client: &Client, deadline: std::time::Instant) -> Result<(), DriverError> {
    // pg_promote's own wait looks every 100 ms; looking every 5 ms takes up to 95 ms off the
    // write outage of every role change.
    let row = client
        .query_one("SELECT pg_promote(false)", &[])
        .await
        .map_err(|e| DriverError::Database(format!("pg_promote: {e}")))?;
    if !row.get::<_, bool>(0) {
        return Err(DriverError::Database("pg_promote could not signal the postmaster".into()));
    }
    let mut replay = ReplayWatch::default();
    loop {
        let row = client
            .query_one(
                "SELECT pg_is_in_recovery(), coalesce((pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint, 0), \
                        coalesce((pg_last_wal_receive_lsn() - '0/0'::pg_lsn)::bigint, 0)",
                &[],
            )
            .await
            .map_err(|e| DriverError::Database(e.to_string()))?;
        if !row.get::<_, bool>(0) {
            return Ok(());
        }
        let (replayed, received) = (row.get::<_, i64>(1), row.get::<_, i64>(2));
        if replay.stuck(replayed, received) {
            end_sessions_holding_replay(client).await?;
        }
        if std::time::Instant::now() >= deadline {
            return Err(DriverError::Timeout(format!(
                "the promotion began but had not finished by its deadline (replayed {replayed} of {received} \
                 bytes received): it may still finish"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Notices replay standing still while there is received WAL left to replay: during a
/// promotion, that is a query on this standby in conflict with recovery.
#[derive(Default)]
struct ReplayWatch {
    /// The replayed position last seen, and since when it has not moved.
    last: Option<(i64, std::time::Instant)>,
}

/// How long replay may stand still during a promotion before the sessions holding it back are
/// ended (PostgreSQL itself would wait `max_standby_streaming_delay`, possibly forever).
const REPLAY_STUCK_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

impl ReplayWatch {
    fn stuck(&mut self, replayed: i64, received: i64) -> bool {
        let now = std::time::Instant::now();
        match self.last {
            Some((at, since)) if at == replayed => {
                if replayed < received && now.duration_since(since) >= REPLAY_STUCK_AFTER {
                    self.last = Some((replayed, now));
                    return true;
                }
                false
            }
            _ => {
                self.last = Some((replayed, now));
                false
            }
        }
    }
}

/// DESIGN.md point 7: a promotion must not wait on a read-only query that conflicts with
/// recovery. Ends the client sessions that can hold replay back (a snapshot, a transaction or a
/// running query); they would be cancelled by the server anyway after its standby delay.
async fn end_sessions_holding_replay(client: &Client) -> Result<(), DriverError> {
    let row = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() \
               AND (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL OR state <> 'idle')",
            &[],
        )
        .await
        .map_err(|e| DriverError::Database(format!("ending the sessions that hold replay back: {e}")))?;
    let ended: i64 = row.get(0);
    tracing::warn!(sessions = ended, "replay stood still during the promotion: ended the sessions in conflict with it");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_standing_still_behind_what_was_received_is_noticed_after_a_while() {
        let mut w = ReplayWatch::default();
        assert!(!w.stuck(100, 200), "the first look only starts the count");
        assert!(!w.stuck(100, 200), "not yet");
        w.last = Some((100, std::time::Instant::now() - REPLAY_STUCK_AFTER));
        assert!(w.stuck(100, 200), "standing still for the whole while");
        assert!(!w.stuck(100, 200), "the count starts again after it was noticed");
        // Moving, or with nothing left to replay, is not stuck.
        w.last = Some((100, std::time::Instant::now() - REPLAY_STUCK_AFTER));
        assert!(!w.stuck(150, 200));
        w.last = Some((200, std::time::Instant::now() - REPLAY_STUCK_AFTER));
        assert!(!w.stuck(200, 200));
    }
}
