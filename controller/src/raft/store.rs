//! One RocksDB database per controller, shared by the log store and the state-machine store,
//! with a column family for each kind of data.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Options, DB};

use crate::error::Result;

/// Raft log entries, keyed by big-endian index.
pub const CF_LOGS: &str = "logs";
/// Vote, committed log id, last purged log id.
pub const CF_META: &str = "meta";
/// The state machine's snapshot (its state at the snapshot's log id).
pub const CF_SM: &str = "sm";
/// The audit history, keyed by big-endian seq.
pub const CF_AUDIT: &str = "audit";
/// Closed alerts moved out of memory (`Command::ArchiveAlerts`), keyed by big-endian alert id.
pub const CF_ALERTS: &str = "alerts";

/// Opens (creating when missing) the controller's database under `dir`.
pub fn open_db(dir: &Path) -> Result<Arc<DB>> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // The log is written by one task at a time; a small memtable keeps restarts quick.
    opts.set_write_buffer_size(16 << 20);
    let cfs = [CF_LOGS, CF_META, CF_SM, CF_AUDIT, CF_ALERTS]
        .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
    Ok(Arc::new(db))
}

/// A u64 key that sorts numerically.
pub fn be_key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// Reads a key written by [`be_key`].
pub fn from_be_key(k: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(k.try_into().ok()?))
}
