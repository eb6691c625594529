//! Break-glass on disk (DESIGN.md point 10): the stranded controller keeps the order it was given
//! in its own store (there is no quorum to replicate it to), and at its next start, before openraft
//! opens the store, rewrites its Raft state into a cluster of which it is the only voter.
//!
//! The rewrite appends one membership entry naming only this controller, under a vote for itself
//! in a term above any it has seen: openraft then finds itself the only voter of its effective
//! membership, elects itself and commits that entry with everything before it. Entries this store
//! holds that the lost quorum never committed are committed with it; that, and trusting the
//! attestation that the others are dead, is the price of breaking the glass (`state::break_glass`).

use std::collections::{BTreeMap, BTreeSet};

use openraft::{BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, Vote};
use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};

use super::log_store::{KEY_LAST_PURGED, KEY_VOTE};
use super::store::{be_key, CF_LOGS, CF_META};
use super::{decode, encode, NodeId, TypeConfig};
use crate::error::{Error, Result};
use crate::state::{BreakGlassOrder, BreakGlassState};

const KEY_ORDER: &[u8] = b"break_glass";

fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    // Invariant: `open_db` creates every column family this module names.
    db.cf_handle(name).expect("column family exists")
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

fn corrupt(what: &str, e: bincode::Error) -> Error {
    Error::Storage(format!("corrupt {what} in the store: {e}"))
}

/// The order this controller was given, if any.
pub fn load_order(db: &DB) -> Result<Option<BreakGlassOrder>> {
    match db.get_cf(cf(db, CF_META), KEY_ORDER)? {
        None => Ok(None),
        Some(bytes) => decode(&bytes).map(Some).map_err(|e| corrupt("break-glass order", e)),
    }
}

/// Saves `order`, synced: an approval that was acknowledged survives a crash.
pub fn save_order(db: &DB, order: &BreakGlassOrder) -> Result<()> {
    db.put_cf_opt(cf(db, CF_META), KEY_ORDER, encode(order), &synced())?;
    Ok(())
}

/// Carries out an approved order: makes `id` (reachable at `addr`) the only voter. Returns the
/// order when it did. Called before openraft opens the store; the rewrite and the order's new
/// state are one synced write, so a crash leaves either the old store or the rewritten one.
pub fn reseed(db: &DB, id: NodeId, addr: &str) -> Result<Option<BreakGlassOrder>> {
    let Some(mut order) = load_order(db)? else { return Ok(None) };
    if order.state != BreakGlassState::Approved {
        return Ok(None);
    }
    if order.controller != id {
        return Err(Error::Storage(format!(
            "the break-glass order in this store names controller {}, not {id}",
            order.controller
        )));
    }
    let vote: Vote<NodeId> = match db.get_cf(cf(db, CF_META), KEY_VOTE)? {
        Some(b) => decode(&b).map_err(|e| corrupt("vote", e))?,
        None => Vote::default(),
    };
    let last: Option<LogId<NodeId>> = match db.iterator_cf(cf(db, CF_LOGS), IteratorMode::End).next() {
        Some(item) => {
            let (_, v) = item?;
            let e: Entry<TypeConfig> = decode(&v).map_err(|e| corrupt("log entry", e))?;
            Some(e.log_id)
        }
        None => match db.get_cf(cf(db, CF_META), KEY_LAST_PURGED)? {
            Some(b) => Some(decode(&b).map_err(|e| corrupt("purge point", e))?),
            None => None,
        },
    };
    let last_term = last.as_ref().map(|l| l.leader_id.term).unwrap_or(0);
    let term = vote.leader_id().term.max(last_term) + 1;
    let index = last.map(|l| l.index + 1).unwrap_or(0);
    let voters = BTreeSet::from([id]);
    let nodes = BTreeMap::from([(id, BasicNode::new(addr))]);
    let entry: Entry<TypeConfig> = Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, id), index),
        payload: EntryPayload::Membership(Membership::new(vec![voters], nodes)),
    };
    order.state = BreakGlassState::Reseeded;
    let mut batch = WriteBatch::default();
    batch.put_cf(cf(db, CF_LOGS), be_key(index), encode(&entry));
    batch.put_cf(cf(db, CF_META), KEY_VOTE, encode(&Vote::new(term, id)));
    batch.put_cf(cf(db, CF_META), KEY_ORDER, encode(&order));
    db.write_opt(batch, &synced())?;
    tracing::warn!(
        order = order.id,
        term,
        index,
        "break-glass: this controller is now the only voter of its cluster (cut off: {:?})",
        order.cut_off
    );
    Ok(Some(order))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::open_db;

    fn order(controller: u64, state: BreakGlassState) -> BreakGlassOrder {
        BreakGlassOrder {
            id: 7,
            controller,
            cluster: "customs".into(),
            to: "dr".into(),
            attestation: "both sites of the city are gone".into(),
            cut_off: vec![1, 2],
            requested_by: "alice".into(),
            requested_ms: 1,
            expires_ms: 2,
            approved_by: Some("bob".into()),
            approved_ms: 1,
            state,
        }
    }

    #[test]
    fn an_approved_order_appends_a_single_voter_membership_under_a_higher_vote_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        let put = |k: &[u8], v: Vec<u8>| db.put_cf(cf(&db, CF_META), k, v).unwrap();
        put(KEY_VOTE, encode(&Vote::<NodeId>::new_committed(5, 1)));
        for index in 1..=3 {
            let e: Entry<TypeConfig> =
                Entry { log_id: LogId::new(CommittedLeaderId::new(4, 1), index), payload: EntryPayload::Blank };
            db.put_cf(cf(&db, CF_LOGS), be_key(index), encode(&e)).unwrap();
        }
        // Nothing to do without an approved order; refused when it names another controller.
        assert!(reseed(&db, 3, "10.0.0.3:7000").unwrap().is_none());
        save_order(&db, &order(3, BreakGlassState::Pending)).unwrap();
        assert!(reseed(&db, 3, "10.0.0.3:7000").unwrap().is_none());
        save_order(&db, &order(2, BreakGlassState::Approved)).unwrap();
        assert!(reseed(&db, 3, "10.0.0.3:7000").is_err());

        save_order(&db, &order(3, BreakGlassState::Approved)).unwrap();
        let done = reseed(&db, 3, "10.0.0.3:7000").unwrap().expect("carried out");
        assert_eq!(done.state, BreakGlassState::Reseeded);
        let vote: Vote<NodeId> = decode(&db.get_cf(cf(&db, CF_META), KEY_VOTE).unwrap().unwrap()).unwrap();
        assert_eq!(vote, Vote::new(6, 3));
        let e: Entry<TypeConfig> = decode(&db.get_cf(cf(&db, CF_LOGS), be_key(4)).unwrap().unwrap()).unwrap();
        assert_eq!(e.log_id, LogId::new(CommittedLeaderId::new(6, 3), 4));
        match e.payload {
            EntryPayload::Membership(m) => assert_eq!(m.voter_ids().collect::<Vec<_>>(), [3]),
            other => panic!("not a membership entry: {other:?}"),
        }
        // Once only.
        assert!(reseed(&db, 3, "10.0.0.3:7000").unwrap().is_none());
        assert_eq!(load_order(&db).unwrap().unwrap().state, BreakGlassState::Reseeded);
    }
}
