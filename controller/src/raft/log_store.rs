//! The Raft log and vote in RocksDB.
//!
//! Durability rule (DESIGN.md, Storage): openraft is told an append is durable only after the
//! write-ahead log holding it has been fsynced. Every write here uses a synced `WriteOptions`, so
//! an acknowledged entry or vote survives `kill -9` and power loss alike.

use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions, DB};

use super::store::{be_key, from_be_key, CF_LOGS, CF_META};
use super::{decode, encode, NodeId, TypeConfig};

pub(super) const KEY_VOTE: &[u8] = b"vote";
pub(super) const KEY_COMMITTED: &[u8] = b"committed";
pub(super) const KEY_LAST_PURGED: &[u8] = b"last_purged";

type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// The log store: a handle on the shared database. Cheap to clone; openraft serialises writes.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_logs(&e).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_logs(&e).into()
}

impl LogStore {
    /// A log store on `db` (see [`super::open_db`]).
    pub fn new(db: Arc<DB>) -> Self {
        LogStore { db }
    }

    fn cf_logs(&self) -> &rocksdb::ColumnFamily {
        // Invariant: `open_db` creates every column family this module names.
        self.db.cf_handle(CF_LOGS).expect("logs column family exists")
    }

    fn cf_meta(&self) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(CF_META).expect("meta column family exists")
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> StorageResult<Option<T>> {
        match self.db.get_cf(self.cf_meta(), key).map_err(read_err)? {
            None => Ok(None),
            Some(bytes) => decode(&bytes).map(Some).map_err(read_err),
        }
    }

    fn last_log_id(&self) -> StorageResult<Option<LogId<NodeId>>> {
        let mut it = self.db.iterator_cf(self.cf_logs(), IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(item) => {
                let (_, value) = item.map_err(read_err)?;
                let entry: Entry<TypeConfig> = decode(&value).map_err(read_err)?;
                Ok(Some(entry.log_id))
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            std::ops::Bound::Included(&n) => n,
            std::ops::Bound::Excluded(&n) => n + 1,
            std::ops::Bound::Unbounded => 0,
        };
        let start_key = be_key(start);
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf_logs(), IteratorMode::From(&start_key, Direction::Forward)) {
            let (key, value) = item.map_err(read_err)?;
            let Some(index) = from_be_key(&key) else {
                continue;
            };
            if !range.contains(&index) {
                break;
            }
            out.push(decode(&value).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id = self.get_meta::<LogId<NodeId>>(KEY_LAST_PURGED)?;
        let last_log_id = self.last_log_id()?.or(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        self.db
            .put_cf_opt(self.cf_meta(), KEY_VOTE, encode(vote), &synced())
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        self.get_meta(KEY_VOTE)
    }

    // The committed id lets a restarted node re-apply the log past its last snapshot at once,
    // before any leader tells it the commit index. Losing the latest value only delays that.
    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        self.db.put_cf(self.cf_meta(), KEY_COMMITTED, encode(&committed)).map_err(write_err)
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(self.get_meta::<Option<LogId<NodeId>>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        for entry in entries {
            batch.put_cf(self.cf_logs(), be_key(entry.log_id.index), encode(&entry));
        }
        // The synced write returns after the WAL is on disk: only then is the flush reported.
        let res = self.db.write_opt(batch, &synced());
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf_logs(), be_key(log_id.index), be_key(u64::MAX));
        // delete_range excludes its end; u64::MAX itself is never a real index.
        self.db.write_opt(batch, &synced()).map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        // Record the purge point first: a crash between the two writes leaves extra entries
        // (harmless), never a hole that `get_log_state` could not explain.
        self.db.put_cf_opt(self.cf_meta(), KEY_LAST_PURGED, encode(&log_id), &synced()).map_err(write_err)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf_logs(), be_key(0), be_key(log_id.index + 1));
        self.db.write_opt(batch, &synced()).map_err(write_err)
    }
}
