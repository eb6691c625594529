//! The state machine: [`State`] in memory, the audit history in RocksDB, snapshots in files.
//!
//! Restart is quick and memory bounded: the state's tables are small (sites, controllers, agents,
//! clusters, users), the unbounded audit history is written to its own column family as entries
//! are applied, and a snapshot every `raft.snapshot_every_entries` entries caps what a restarted
//! node re-applies from the log (openraft re-applies up to the saved committed id at start-up).
//! A snapshot is written with a synced write, which also flushes every audit write before it, so
//! the log below a snapshot is purged only once everything it produced is durable.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::snapshot_file;
use super::snapshot_file::History;
use super::store::{be_key, CF_ALERTS, CF_AUDIT, CF_SM};
use super::{decode, encode, NodeId, TypeConfig};
use crate::state::{AuditEntry, Response, State};

const KEY_SNAPSHOT_META: &[u8] = b"snapshot_meta";
const KEY_SNAPSHOT_FILE: &[u8] = b"snapshot_file";

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

/// The state-machine store.
#[derive(Clone)]
pub struct StateMachineStore {
    db: Arc<DB>,
    shared: SharedState,
    apply_seconds: prometheus::Histogram,
    /// Where snapshot files live.
    snap_dir: Arc<PathBuf>,
    receiving: Arc<AtomicU64>,
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

fn join_err(e: tokio::task::JoinError) -> StorageError<NodeId> {
    snap_err(std::io::Error::other(e.to_string()))
}

fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    // Invariant: `open_db` creates every column family this module names.
    db.cf_handle(name).expect("column family exists")
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

/// The newest `limit` audit entries, newest first.
pub fn read_audit(db: &DB, limit: usize) -> crate::Result<Vec<AuditEntry>> {
    let mut out = Vec::new();
    for item in db.iterator_cf(cf(db, CF_AUDIT), IteratorMode::End).take(limit) {
        let (_, v) = item?;
        out.push(decode(&v).map_err(|e| crate::Error::Storage(format!("corrupt audit entry: {e}")))?);
    }
    Ok(out)
}

/// Up to `limit` audit entries with a seq above `after`, oldest first.
pub fn read_audit_after(db: &DB, after: u64, limit: usize) -> crate::Result<Vec<AuditEntry>> {
    let from = be_key(after.saturating_add(1));
    let mode = IteratorMode::From(&from, rocksdb::Direction::Forward);
    let mut out = Vec::new();
    for item in db.iterator_cf(cf(db, CF_AUDIT), mode).take(limit) {
        let (_, v) = item?;
        out.push(decode(&v).map_err(|e| crate::Error::Storage(format!("corrupt audit entry: {e}")))?);
    }
    Ok(out)
}

/// Audit entries carried by log entries up to `last`, oldest first, then every archived alert,
/// straight from disk. (Alerts are archived by entries the snapshot's state has applied: the
/// state machine writes them before publishing the entry as applied, and the state is copied
/// before this runs, so an alert archived later may be here too; installing it is harmless, as
/// the log after the snapshot archives it again under the same key.)
fn history_upto(db: &DB, last: u64) -> impl Iterator<Item = std::io::Result<History>> + '_ {
    let audit = db
        .iterator_cf(cf(db, CF_AUDIT), IteratorMode::Start)
        .map(|item| {
            let (_, v) = item.map_err(std::io::Error::other)?;
            decode::<AuditEntry>(&v).map_err(std::io::Error::other)
        })
        .take_while(move |e| e.as_ref().map(|e| e.log_index <= last).unwrap_or(true))
        .map(|e| e.map(History::Audit));
    let alerts = db.iterator_cf(cf(db, CF_ALERTS), IteratorMode::Start).map(|item| {
        let (_, v) = item.map_err(std::io::Error::other)?;
        decode(&v).map(|a| History::Alert(Box::new(a))).map_err(std::io::Error::other)
    });
    audit.chain(alerts)
}

/// An archived alert, from disk.
pub fn read_archived_alert(db: &DB, id: u64) -> crate::Result<Option<crate::state::alerts::Alert>> {
    match db.get_cf(cf(db, CF_ALERTS), be_key(id))? {
        None => Ok(None),
        Some(v) => Ok(Some(decode(&v).map_err(|e| crate::Error::Storage(format!("corrupt archived alert: {e}")))?)),
    }
}

/// Archived alerts, newest first, that pass `keep`, at most `limit` of them, scanning at most
/// `scan` (a filter over a million alerts must not hold a request for long).
pub fn read_archived_alerts(
    db: &DB,
    keep: impl Fn(&crate::state::alerts::Alert) -> bool,
    limit: usize,
    scan: usize,
) -> crate::Result<Vec<crate::state::alerts::Alert>> {
    let mut out = Vec::new();
    for item in db.iterator_cf(cf(db, CF_ALERTS), IteratorMode::End).take(scan) {
        let (_, v) = item?;
        let a: crate::state::alerts::Alert =
            decode(&v).map_err(|e| crate::Error::Storage(format!("corrupt archived alert: {e}")))?;
        if keep(&a) {
            out.push(a);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}

/// Snapshot ids come from the leader; only a tame subset of characters reaches a file name.
fn file_name(snapshot_id: &str) -> String {
    let safe: String = snapshot_id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(64).collect();
    format!("snapshot-{safe}.bin")
}

/// Removes snapshot files other than `keep`, and any partial transfer.
fn prune(dir: &Path, keep: Option<&str>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let stale = name.ends_with(".tmp") || (name.starts_with("snapshot-") && Some(name.as_str()) != keep);
        if stale {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

impl StateMachineStore {
    /// Opens the state machine on `db`, with snapshot files in `snap_dir`, restoring the last
    /// snapshot if there is one.
    pub fn open(db: Arc<DB>, snap_dir: &Path, apply_seconds: prometheus::Histogram) -> crate::Result<Self> {
        std::fs::create_dir_all(snap_dir)
            .map_err(|e| crate::Error::io(format!("creating {}", snap_dir.display()), e))?;
        let mut applied = Applied::default();
        let current = db.get_cf(cf(&db, CF_SM), KEY_SNAPSHOT_FILE)?.map(|n| String::from_utf8_lossy(&n).into_owned());
        if let Some(name) = &current {
            let path = snap_dir.join(name);
            let r = snapshot_file::Reader::open(&path)
                .map_err(|e| crate::Error::Storage(format!("snapshot {}: {e}", path.display())))?;
            applied.last_applied = r.meta.last_log_id;
            applied.membership = r.meta.last_membership.clone();
            applied.state = r.state;
        }
        prune(snap_dir, current.as_deref());
        Ok(StateMachineStore {
            db,
            shared: Arc::new(RwLock::new(applied)),
            apply_seconds,
            snap_dir: Arc::new(snap_dir.to_path_buf()),
            receiving: Arc::default(),
        })
    }

    /// The shared applied state, for readers.
    pub fn shared(&self) -> SharedState {
        self.shared.clone()
    }

    /// Records `name` as the current snapshot (synced, which also makes every earlier unsynced
    /// audit write durable) and removes older files.
    fn make_current(&self, meta: &SnapshotMeta<NodeId, BasicNode>, name: &str) -> StorageResult<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(cf(&self.db, CF_SM), KEY_SNAPSHOT_META, encode(meta));
        batch.put_cf(cf(&self.db, CF_SM), KEY_SNAPSHOT_FILE, name.as_bytes());
        self.db.write_opt(batch, &synced()).map_err(snap_err)?;
        prune(&self.snap_dir, Some(name));
        Ok(())
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
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership: membership, snapshot_id };
        let name = file_name(&meta.snapshot_id);
        let path = self.snap_dir.join(&name);
        let (db, m) = (self.db.clone(), meta.clone());
        let p = path.clone();
        // Apply writes an entry's audit lines before it publishes the entry as applied, so every
        // line up to `last_applied` is on disk to be streamed into the file.
        tokio::task::spawn_blocking(move || {
            let last = m.last_log_id.map(|l| l.index).unwrap_or(0);
            snapshot_file::write(&p, &m, &state, history_upto(&db, last))
        })
        .await
        .map_err(join_err)?
        .map_err(snap_err)?;
        self.make_current(&meta, &name)?;
        let file = tokio::fs::File::open(&path).await.map_err(snap_err)?;
        Ok(Snapshot { meta, snapshot: Box::new(file) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
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
        let mut g = self.shared.write().expect("state lock poisoned");
        let mut last_applied = g.last_applied;
        let mut membership = None;
        for entry in entries {
            last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => responses.push(Response::None),
                EntryPayload::Normal(p) => {
                    responses.push(g.state.apply(entry.log_id.index, &p, &mut audit));
                }
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m));
                    responses.push(Response::None);
                }
            }
        }
        let archived = std::mem::take(&mut g.state.alerts.outbox);
        if !audit.is_empty() || !archived.is_empty() {
            // Not synced: the log holds the entries, and re-applying them after a crash rewrites
            // the same audit lines and archived alerts under the same keys. Written before the
            // entries are published as applied, so a snapshot of this state finds all of them.
            let mut batch = WriteBatch::default();
            for a in &audit {
                batch.put_cf(cf(&self.db, CF_AUDIT), be_key(a.seq), encode(a));
            }
            for a in &archived {
                batch.put_cf(cf(&self.db, CF_ALERTS), be_key(a.id), encode(a));
            }
            self.db.write(batch).map_err(sm_write_err)?;
        }
        // A failed audit write above is a storage error that stops this Raft node, so the state
        // applied in memory is never served without its audit lines.
        g.last_applied = last_applied;
        if let Some(m) = membership {
            g.membership = m;
        }
        drop(g);
        self.apply_seconds.observe(started.elapsed().as_secs_f64());
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<tokio::fs::File>> {
        let n = self.receiving.fetch_add(1, Ordering::Relaxed);
        let path = self.snap_dir.join(format!("receiving-{n}.tmp"));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(snap_err)?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        mut snapshot: Box<tokio::fs::File>,
    ) -> StorageResult<()> {
        // Copy the received bytes into their final place, durably, then stream them into the
        // audit column family: nothing of the history is held in memory at once.
        let name = file_name(&meta.snapshot_id);
        let path = self.snap_dir.join(&name);
        let tmp = path.with_extension("tmp");
        snapshot.flush().await.map_err(snap_err)?;
        snapshot.seek(std::io::SeekFrom::Start(0)).await.map_err(snap_err)?;
        {
            let mut out = tokio::fs::File::create(&tmp).await.map_err(snap_err)?;
            tokio::io::copy(&mut snapshot, &mut out).await.map_err(snap_err)?;
            out.sync_all().await.map_err(snap_err)?;
        }
        tokio::fs::rename(&tmp, &path).await.map_err(snap_err)?;
        let (db, p, want) = (self.db.clone(), path.clone(), meta.last_log_id);
        let state = tokio::task::spawn_blocking(move || -> std::io::Result<State> {
            let mut r = snapshot_file::Reader::open(&p)?;
            if r.meta.last_log_id != want {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "snapshot file does not match its meta",
                ));
            }
            snapshot_file::sync_dir(&p)?;
            let (audit, alerts) = (cf(&db, CF_AUDIT), cf(&db, CF_ALERTS));
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(audit, be_key(0), be_key(u64::MAX));
            batch.delete_range_cf(alerts, be_key(0), be_key(u64::MAX));
            while let Some(item) = r.next_item()? {
                match item {
                    History::Audit(a) => batch.put_cf(audit, be_key(a.seq), encode(&a)),
                    History::Alert(a) => batch.put_cf(alerts, be_key(a.id), encode(&*a)),
                }
                if batch.len() >= 1000 {
                    db.write(std::mem::take(&mut batch)).map_err(std::io::Error::other)?;
                }
            }
            db.write(batch).map_err(std::io::Error::other)?;
            Ok(r.state)
        })
        .await
        .map_err(join_err)?
        .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        self.make_current(meta, &name)?;
        let mut g = self.shared.write().expect("state lock poisoned");
        g.state = state;
        g.last_applied = meta.last_log_id;
        g.membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let sm = cf(&self.db, CF_SM);
        let (Some(meta), Some(name)) = (
            self.db.get_cf(sm, KEY_SNAPSHOT_META).map_err(sm_read_err)?,
            self.db.get_cf(sm, KEY_SNAPSHOT_FILE).map_err(sm_read_err)?,
        ) else {
            return Ok(None);
        };
        let meta: SnapshotMeta<NodeId, BasicNode> = decode(&meta).map_err(sm_read_err)?;
        let path = self.snap_dir.join(String::from_utf8_lossy(&name).as_ref());
        let file = tokio::fs::File::open(&path).await.map_err(sm_read_err)?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(file) }))
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
            let sm = StateMachineStore::open(db.clone(), &dir.path().join("snapshots"), hist)
                .map_err(|e| StorageIOError::write(&e))?;
            Ok((dir, LogStore::new(db), sm))
        }
    }

    /// openraft's own conformance suite for log and state-machine stores.
    #[test]
    fn openraft_storage_suite() -> Result<(), StorageError<NodeId>> {
        Suite::test_all(Builder)
    }
}
