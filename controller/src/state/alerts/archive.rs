//! Retention: closed alerts leave memory for the on-disk history, so memory holds the open ones
//! and the recently closed, however many have come and gone. `Command::ArchiveAlerts` (proposed
//! by the leader every minute) moves out every alert closed before its cutoff, and the oldest
//! closed beyond `keep_at_most`; the state machine writes them to RocksDB in the same step as it
//! applies the entry (`raft/state_machine.rs`), from where `triadctl alerts show` and
//! `alerts list --archived` still read them. A later occurrence of an archived alert's
//! fingerprint opens a new alert.

use crate::state::{Rejection, State};

/// Most alerts one command moves, so that one entry's apply stays short.
pub const MAX_PER_COMMAND: usize = 20_000;

impl State {
    pub(super) fn archive_alerts(&mut self, closed_before_ms: u64, keep_at_most: u64) -> Result<String, Rejection> {
        let book = &mut self.alerts;
        let mut closed: Vec<(u64, u64)> = book
            .alerts
            .values()
            .filter_map(|a| a.closed_ms.filter(|_| a.status.is_closed()).map(|t| (t, a.id)))
            .collect();
        closed.sort_unstable();
        let over = closed.len().saturating_sub(keep_at_most as usize);
        let due: Vec<u64> = closed
            .iter()
            .enumerate()
            .filter(|(i, (t, _))| *i < over || *t < closed_before_ms)
            .map(|(_, (_, id))| *id)
            .take(MAX_PER_COMMAND)
            .collect();
        for id in &due {
            if let Some(a) = book.alerts.remove(id) {
                let key = super::fingerprint_key(&a.source, &a.fingerprint);
                if book.by_fingerprint.get(&key) == Some(id) {
                    book.by_fingerprint.remove(&key);
                }
                book.outbox.push(a);
            }
        }
        book.archived += due.len() as u64;
        Ok(format!("{} closed alerts moved to the on-disk history", due.len()))
    }
}
