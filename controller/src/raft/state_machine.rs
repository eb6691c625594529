//! The state machine: [`State`] in memory, its snapshots and the audit history in RocksDB.
//!
//! Restart is quick and memory bounded: the state's tables are small (sites, controllers, agents,
//! clusters, users), the unbounded audit history is written to its own column family as entries
//! are applied, and a snapshot every `raft.snapshot_every_entries` entries caps what a restarted
//! node re-applies from the log (openraft re-applies up to the saved committed id at start-up).
//! A snapshot is written with a synced write, which also flushes every audit write before it, so
//! the log below a snapshot is purged only once everything it produced is durable.

use std::io::Cursor;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};

use super::store::{be_key, CF_AUDIT, CF_SM};
use super::{decode, encode, NodeId, TypeConfig};
use crate::state::{AuditEntry, Response, State};

const KEY_SNAPSHOT_META: &[u8] = b"snapshot_meta";
const KEY_SNAPSHOT_STATE: &[u8] = b"snapshot_state";

type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// What has been applied: the state, and where in the log it stands.
#[derive(Debug, Default)]
pub struct Applied {
    pub state: State,
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, BasicNode>,
}

/// The applied state, shared with the readers (API, brain). Locks are held only for copying out
/// or applying, never across an `.await`.
pub type SharedState = Arc<RwLock<Applied>>;

/// What a snapshot carries to another controller.
#[derive(Serialize, Deserialize)]
struct SnapshotPayload {
    state: State,
    audit: Vec<AuditEntry>,
}

/// The state-machine store.
#[derive(Clone)]
pub struct StateMachineStore {
    db: Arc<DB>,
    shared: SharedState,
    apply_seconds: prometheus::Histogram,
}

fn sm_read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_state_machine(&e).into()
}

fn sm_write_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&e).into()
}

fn snap_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_snapshot(None, &e).into()
}

/// The newest `limit` audit entries, newest first.
pub fn read_audit(db: &DB, limit: usize) -> crate::Result<Vec<AuditEntry>> {
    let cf = db.cf_handle(CF_AUDIT).expect("audit column family exists");
    let mut out = Vec::new();
    for item in db.iterator_cf(cf, IteratorMode::End).take(limit) {
        let (_, v) = item?;
        out.push(
            decode(&v).map_err(|e| crate::Error::Storage(format!("corrupt audit entry: {e}")))?,
        );
    }
    Ok(out)
}

impl StateMachineStore {
    /// Opens the state machine on `db`, restoring the last snapshot if there is one.
    pub fn open(db: Arc<DB>, apply_seconds: prometheus::Histogram) -> crate::Result<Self> {
        let mut applied = Applied::default();
        let cf = db.cf_handle(CF_SM).expect("sm column family exists");
        if let (Some(meta), Some(state)) = (
            db.get_cf(cf, KEY_SNAPSHOT_META)?,
            db.get_cf(cf, KEY_SNAPSHOT_STATE)?,
        ) {
            let meta: SnapshotMeta<NodeId, BasicNode> = decode(&meta)
                .map_err(|e| crate::Error::Storage(format!("corrupt snapshot meta: {e}")))?;
            applied.state = decode(&state)
                .map_err(|e| crate::Error::Storage(format!("corrupt snapshot: {e}")))?;
            applied.last_applied = meta.last_log_id;
            applied.membership = meta.last_membership;
        }
        Ok(StateMachineStore {
            db,
            shared: Arc::new(RwLock::new(applied)),
            apply_seconds,
        })
    }

    /// The shared applied state, for readers.
    pub fn shared(&self) -> SharedState {
        self.shared.clone()
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        // Invariant: `open_db` creates every column family this module names.
        self.db.cf_handle(name).expect("column family exists")
    }

    fn audit_upto(&self, last: Option<LogId<NodeId>>) -> StorageResult<Vec<AuditEntry>> {
        let Some(last) = last else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_AUDIT), IteratorMode::Start) {
            let (_, v) = item.map_err(sm_read_err)?;
            let entry: AuditEntry = decode(&v).map_err(sm_read_err)?;
            if entry.log_index > last.index {
                break;
            }
            out.push(entry);
        }
        Ok(out)
    }

    fn synced() -> WriteOptions {
        let mut w = WriteOptions::default();
        w.set_sync(true);
        w
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let (state, last_applied, membership) = {
            let g = self.shared.read().expect("state lock poisoned");
            (g.state.clone(), g.last_applied, g.membership.clone())
        };
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, state.audit_seq),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_SM), KEY_SNAPSHOT_META, encode(&meta));
        batch.put_cf(self.cf(CF_SM), KEY_SNAPSHOT_STATE, encode(&state));
        self.db
            .write_opt(batch, &Self::synced())
            .map_err(snap_err)?;
        let payload = SnapshotPayload {
            audit: self.audit_upto(last_applied)?,
            state,
        };
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(encode(&payload))),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let g = self.shared.read().expect("state lock poisoned");
        Ok((g.last_applied, g.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let started = Instant::now();
        let mut responses = Vec::new();
        let mut audit = Vec::new();
        {
            let mut g = self.shared.write().expect("state lock poisoned");
            for entry in entries {
                g.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => responses.push(Response::None),
                    EntryPayload::Normal(p) => {
                        let r = g.state.apply(entry.log_id.index, &p, &mut audit);
                        responses.push(r);
                    }
                    EntryPayload::Membership(m) => {
                        g.membership = StoredMembership::new(Some(entry.log_id), m);
                        responses.push(Response::None);
                    }
                }
            }
        }
        if !audit.is_empty() {
            // Not synced: the log holds the entries, and re-applying them after a crash rewrites
            // the same audit entries under the same keys.
            let mut batch = WriteBatch::default();
            for a in &audit {
                batch.put_cf(self.cf(CF_AUDIT), be_key(a.seq), encode(a));
            }
            self.db.write(batch).map_err(sm_write_err)?;
        }
        self.apply_seconds.observe(started.elapsed().as_secs_f64());
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let payload: SnapshotPayload = decode(snapshot.get_ref())
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf(CF_AUDIT), be_key(0), be_key(u64::MAX));
        for a in &payload.audit {
            batch.put_cf(self.cf(CF_AUDIT), be_key(a.seq), encode(a));
        }
        batch.put_cf(self.cf(CF_SM), KEY_SNAPSHOT_META, encode(meta));
        batch.put_cf(self.cf(CF_SM), KEY_SNAPSHOT_STATE, encode(&payload.state));
        self.db
            .write_opt(batch, &Self::synced())
            .map_err(snap_err)?;
        let mut g = self.shared.write().expect("state lock poisoned");
        g.state = payload.state;
        g.last_applied = meta.last_log_id;
        g.membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let cf = self.cf(CF_SM);
        let (Some(meta), Some(state)) = (
            self.db.get_cf(cf, KEY_SNAPSHOT_META).map_err(sm_read_err)?,
            self.db
                .get_cf(cf, KEY_SNAPSHOT_STATE)
                .map_err(sm_read_err)?,
        ) else {
            return Ok(None);
        };
        let meta: SnapshotMeta<NodeId, BasicNode> = decode(&meta).map_err(sm_read_err)?;
        let state: State = decode(&state).map_err(sm_read_err)?;
        let payload = SnapshotPayload {
            audit: self.audit_upto(meta.last_log_id)?,
            state,
        };
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(encode(&payload))),
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};

    use super::*;
    use crate::raft::{open_db, LogStore};

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
        async fn build(&self) -> StorageResult<(tempfile::TempDir, LogStore, StateMachineStore)> {
            let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
            let db = open_db(dir.path()).map_err(|e| StorageIOError::write(&e))?;
            let hist = prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("t", "t"))
                .map_err(|e| StorageIOError::write(&e))?;
            let sm =
                StateMachineStore::open(db.clone(), hist).map_err(|e| StorageIOError::write(&e))?;
            Ok((dir, LogStore::new(db), sm))
        }
    }

    /// openraft's own conformance suite for log and state-machine stores.
    #[test]
    fn openraft_storage_suite() -> Result<(), StorageError<NodeId>> {
        Suite::test_all(Builder)
    }
}
