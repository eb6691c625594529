//! Tasks that copy openraft's metrics and the alert tables' figures into the controller's metrics.

use std::time::Duration;

use openraft::ServerState;

use super::Metrics;
use crate::raft::Raft;

/// Copies openraft's metrics into ours whenever they change (and at least every second).
pub async fn follow_raft(raft: Raft, metrics: std::sync::Arc<Metrics>) {
    let mut rx = raft.metrics();
    let mut leader_seen: Option<Option<u64>> = None;
    loop {
        {
            let m = rx.borrow().clone();
            if leader_seen.is_some_and(|l| l != m.current_leader) {
                metrics.raft_leader_changes.inc();
            }
            leader_seen = Some(m.current_leader);
            let first_kept = m.purged.map(|p| p.index + 1).unwrap_or(0);
            let entries = m.last_log_index.map(|last| (last + 1).saturating_sub(first_kept)).unwrap_or(0);
            metrics.raft_log_entries.set(entries as i64);
            metrics.raft_snapshot_index.set(m.snapshot.map(|s| s.index).unwrap_or(0) as i64);
            // Leader only: a follower's figure would be its last term's, and wrong.
            match (m.state == ServerState::Leader, m.millis_since_quorum_ack) {
                (true, Some(ms)) => metrics.raft_quorum_ack_age.with_label_values(&[]).set(ms as f64 / 1000.0),
                _ => metrics.raft_quorum_ack_age.reset(),
            }
            metrics.raft_term.set(m.current_term as i64);
            metrics.raft_is_leader.set((m.state == ServerState::Leader) as i64);
            metrics.raft_leader_id.set(m.current_leader.unwrap_or(0) as i64);
            metrics.raft_last_log_index.set(m.last_log_index.unwrap_or(0) as i64);
            let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
            metrics.raft_applied_index.set(applied as i64);
            metrics.raft_commit_index.set(commit_index(&m).unwrap_or(applied) as i64);
            metrics.raft_voters.set(m.membership_config.voter_ids().count() as i64);
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// On the leader: the highest index held by a majority of voters.
pub fn commit_index(m: &openraft::RaftMetrics<u64, openraft::BasicNode>) -> Option<u64> {
    let repl = m.replication.as_ref()?;
    let mut held: Vec<u64> = m
        .membership_config
        .voter_ids()
        .map(|id| {
            if id == m.id {
                m.last_log_index.unwrap_or(0)
            } else {
                repl.get(&id).and_then(|l| l.map(|l| l.index)).unwrap_or(0)
            }
        })
        .collect();
    if held.is_empty() {
        return None;
    }
    held.sort_unstable_by(|a, b| b.cmp(a));
    Some(held[held.len() / 2])
}

/// Copies the alert tables' figures into the metrics every second, on every controller (each
/// applies the same log, so each exports the same). The time-to histograms observe each alert's
/// acknowledgement and closing once per process.
pub async fn follow_alerts(ctx: std::sync::Arc<crate::context::Ctx>) {
    use std::collections::HashSet;

    use crate::state::alerts::{AlertStatus, NotifyState, Severity};
    let mut acked: HashSet<(u64, u64)> = HashSet::new();
    let mut closed: HashSet<(u64, u64)> = HashSet::new();
    let mut exported = std::collections::HashMap::<&'static str, u64>::new();
    let m = &ctx.metrics;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let g = ctx.state.read().expect("state lock poisoned");
        let book = &g.state.alerts;
        let sources: Vec<&str> = book.sources.keys().map(String::as_str).collect();
        let channels: Vec<&str> = ctx.cfg.alerts.notify.channels.iter().map(|c| c.name.as_str()).collect();
        m.init_counters(&sources, &channels);
        for (outcome, total) in book.totals.named() {
            let seen = exported.entry(outcome).or_insert(0);
            if total > *seen {
                m.alerts_ingested.with_label_values(&[outcome]).inc_by(total - *seen);
                *seen = total;
            }
        }
        let mut open: std::collections::HashMap<(Severity, AlertStatus, &str), i64> = std::collections::HashMap::new();
        // What was observed is kept only for alerts still in memory: one that retention moved
        // to disk is not seen again, and remembering it would grow without bound.
        let (mut acked_now, mut closed_now) = (HashSet::new(), HashSet::new());
        for a in book.alerts.values() {
            if !a.status.is_closed() {
                // Sites recorded in the state only: an alert may name anything, and a label
                // must stay a bounded set.
                let site = match a.place.site.as_str() {
                    "" => "none",
                    s if g.state.sites.contains_key(s) => s,
                    _ => "other",
                };
                *open.entry((a.severity, a.status, site)).or_insert(0) += 1;
            }
            let key = (a.id, a.opened_ms);
            if let Some(t) = a.acknowledged_ms {
                if !acked.contains(&key) {
                    m.alerts_ack_seconds.observe(t.saturating_sub(a.opened_ms) as f64 / 1000.0);
                }
                acked_now.insert(key);
            }
            if let Some(t) = a.closed_ms {
                if !closed.contains(&key) {
                    m.alerts_resolve_seconds.observe(t.saturating_sub(a.opened_ms) as f64 / 1000.0);
                }
                closed_now.insert(key);
            }
        }
        (acked, closed) = (acked_now, closed_now);
        // Every severity and status at every recorded site (and `none`), zeros included, so that
        // a site with nothing open shows 0 rather than no data; a site removed is dropped.
        m.alerts_open.reset();
        for site in g.state.sites.keys().map(String::as_str).chain(["none", "other"]) {
            for sev in Severity::ALL {
                for status in [AlertStatus::Open, AlertStatus::Acknowledged] {
                    let n = open.get(&(*sev, status, site)).copied().unwrap_or(0);
                    m.alerts_open.with_label_values(&[sev.as_str(), status.as_str(), site]).set(n);
                }
            }
        }
        let count = |s: NotifyState| book.notifications.values().filter(|n| n.state == s).count() as i64;
        m.notifications_pending.set(count(NotifyState::Pending));
        m.notifications_failed.set(count(NotifyState::Failed));
    }
}
