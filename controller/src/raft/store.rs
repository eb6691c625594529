//! One RocksDB database per controller, shared by the log store and the state-machine store,
//! with a column family for each kind of data.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, Options, DB};

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
    let cache = Cache::new_lru_cache(BLOCK_CACHE);
    let cfs = [CF_LOGS, CF_META, CF_SM, CF_AUDIT, CF_ALERTS]
        .map(|name| ColumnFamilyDescriptor::new(name, cf_options(&cache)));
    let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
    Ok(Arc::new(db))
}

/// Each column family's memtable (two at most) and the block cache they share, index and filter
/// blocks included: RocksDB's memory stays within about 5 x 2 x 16 + 32 MiB however much history
/// is on disk. With RocksDB's defaults (64 MiB memtables, index blocks outside any cache) a
/// controller grew past 500 MiB with a million archived alerts.
const MEMTABLE: usize = 16 << 20;
const BLOCK_CACHE: usize = 32 << 20;

fn cf_options(cache: &Cache) -> Options {
    let mut o = Options::default();
    o.set_write_buffer_size(MEMTABLE);
    o.set_max_write_buffer_number(2);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_cache_index_and_filter_blocks(true);
    o.set_block_based_table_factory(&table);
    o
}

/// A u64 key that sorts numerically.
pub fn be_key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// Reads a key written by [`be_key`].
pub fn from_be_key(k: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(k.try_into().ok()?))
}
