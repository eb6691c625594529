//! Keeping the synchronous set true (DESIGN.md, safety point 5).
//!
//! When a synchronous standby stops streaming from the primary for longer than a grace period, a
//! relaxed cluster first records that the standby no longer holds every commit (so automatic
//! failover will not pick it), and only then tells the primary to stop waiting for it. A strict
//! cluster leaves the primary waiting. When a wanted standby streams again, the primary is
//! reconfigured first, Triad confirms the standby is `sync` and flushed, and only then records it
//! as synchronous again. While it changes, the primary waits for the old set and the new one.
//!
//! "Record first" is sound only while the database keeps commits waiting until Triad
//! reconfigures it (PostgreSQL's `synchronous_standby_names`). A database that stops waiting by
//! itself (Oracle's Maximum Availability after `NetTimeout`; its driver says `sync_may_lapse`)
//! has acknowledged commits the standby lacks from that moment on, so there the member is
//! dropped at the first report that does not show it synchronous, with no grace; the window
//! left (one observation and one heartbeat) is in docs/oracle-data-guard.md, B6, and the
//! detector closes the rest by not counting such a member as a loss-free candidate.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use triad_proto::replica;
use triad_proto::v1::{DbStatus, ReplicaState, ReplicaStatus};

use crate::state::State;

/// How long a synchronous standby may be missing before a relaxed cluster drops it (when the
/// database keeps commits waiting meanwhile).
pub const GRACE: Duration = Duration::from_secs(2);

/// How far behind a wanted standby may be to be made synchronous again: the primary's commits
/// wait for it from the reload on, so it must be close (16 MiB, or 2 s by a driver that does not
/// count bytes).
const RESTORE_WITHIN_BYTES: i64 = 16 << 20;
const RESTORE_WITHIN_SECONDS: f64 = 2.0;

/// Whether standby `r` is close enough behind to be made synchronous again.
fn close_behind(r: &ReplicaStatus) -> bool {
    replica::caught_up(r)
        || (0..=RESTORE_WITHIN_BYTES).contains(&r.flush_lag_bytes)
        || (r.flush_lag_bytes < 0 && (0.0..=RESTORE_WITHIN_SECONDS).contains(&r.flush_lag_seconds))
}

/// What to do for one cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncAction {
    /// Record that `member` is no longer synchronous, then reconfigure the primary to `remaining`.
    Drop { cluster: String, member: String, remaining: Vec<String> },
    /// Reconfigure the primary to `members`, confirm `member` is sync and flushed, then record.
    Restore { cluster: String, member: String, members: Vec<String> },
    /// No member is synchronous and none vouches: record the standbys streaming from the primary
    /// as its vouchers, so that it keeps the failsafe (issue 16, item 5: after a failover with the
    /// old site lost, losing two controllers fenced the new primary).
    Vouch { cluster: String, members: Vec<String> },
}

/// Decides from the primary's latest report. `missing` remembers since when each synchronous
/// standby has been missing.
pub fn decide(
    state: &State,
    primary_reports: &HashMap<String, DbStatus>,
    now: Instant,
    missing: &mut HashMap<(String, String), Instant>,
) -> Vec<SyncAction> {
    let mut out = Vec::new();
    for c in state.clusters.values().filter(|c| c.epoch > 0 && c.workflow.is_none()) {
        let Some(primary) = c.primary.as_ref() else { continue };
        let Some(report) = primary_reports.get(&c.name).filter(|r| r.up && r.role == "primary" && &r.member == primary)
        else {
            continue;
        };
        let replica = |m: &str| report.replicas.iter().find(|r| r.name == m);
        let streaming = |m: &str| replica(m).is_some_and(|r| replica::state(r) == ReplicaState::Streaming);
        // Where the database may stop waiting by itself, "held" means it says it waits now.
        let lapses = report.sync_may_lapse;
        let held = |m: &str| streaming(m) && (!lapses || replica(m).is_some_and(replica::synchronous));
        for m in &c.synchronous {
            let key = (c.name.clone(), m.clone());
            if held(m) {
                missing.remove(&key);
                continue;
            }
            let since = *missing.entry(key).or_insert(now);
            let grace = if lapses { Duration::ZERO } else { GRACE };
            if !c.strict && now.saturating_duration_since(since) >= grace {
                let remaining = c.synchronous.iter().filter(|x| *x != m).cloned().collect();
                out.push(SyncAction::Drop { cluster: c.name.clone(), member: m.clone(), remaining });
            }
        }
        for m in c.want_synchronous.iter().filter(|m| !c.synchronous.contains(*m) && *m != primary) {
            if streaming(m) && replica(m).is_some_and(close_behind) {
                let mut members: Vec<String> = c.synchronous.iter().cloned().collect();
                members.push(m.clone());
                out.push(SyncAction::Restore { cluster: c.name.clone(), member: m.clone(), members });
            }
        }
        let restoring = out.iter().any(|a| matches!(a, SyncAction::Restore { cluster, .. } if *cluster == c.name));
        if c.synchronous.is_empty() && c.vouch.is_empty() && !restoring {
            let members: Vec<String> = c.members.keys().filter(|m| *m != primary && streaming(m)).cloned().collect();
            if !members.is_empty() {
                out.push(SyncAction::Vouch { cluster: c.name.clone(), members });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use triad_proto::v1::ReplicaStatus;

    use super::*;
    use crate::state::DbCluster;

    fn state(strict: bool, synchronous: &[&str]) -> State {
        let mut c = DbCluster::for_test(&["dc", "ndc"], "");
        c.epoch = 1;
        c.primary = Some("dc".into());
        c.synchronous = synchronous.iter().map(|s| s.to_string()).collect();
        c.want_synchronous = ["ndc".to_string()].into();
        c.strict = strict;
        let mut s = State::default();
        s.clusters.insert("customs".into(), c);
        s
    }

    fn report(replicas: &[(&str, &str)]) -> HashMap<String, DbStatus> {
        HashMap::from([(
            "customs".to_string(),
            DbStatus {
                member: "dc".into(),
                up: true,
                role: "primary".into(),
                replicas: replicas
                    .iter()
                    .map(|(n, st)| ReplicaStatus {
                        name: n.to_string(),
                        replica_state: if *st == "streaming" { ReplicaState::Streaming } else { ReplicaState::Unknown }
                            as i32,
                        caught_up: true,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
        )])
    }

    #[test]
    fn a_lost_standby_is_dropped_after_the_grace_in_relaxed_mode_only() {
        let t0 = Instant::now();
        let mut missing = HashMap::new();
        let s = state(false, &["ndc"]);
        assert!(decide(&s, &report(&[]), t0, &mut missing).is_empty(), "not before the grace period");
        let later = t0 + GRACE;
        assert_eq!(
            decide(&s, &report(&[]), later, &mut missing),
            vec![SyncAction::Drop { cluster: "customs".into(), member: "ndc".into(), remaining: vec![] }]
        );
        let mut missing = HashMap::new();
        let strict = state(true, &["ndc"]);
        decide(&strict, &report(&[]), t0, &mut missing);
        assert!(decide(&strict, &report(&[]), later, &mut missing).is_empty(), "strict: commits wait");
    }

    #[test]
    fn where_the_database_stops_waiting_by_itself_a_member_is_dropped_at_once() {
        let s = state(false, &["ndc"]);
        let now = Instant::now();
        let with = |lapses: bool, synchronous: bool| {
            let mut r = report(&[("ndc", "streaming")]);
            let d = r.get_mut("customs").unwrap();
            d.sync_may_lapse = lapses;
            d.replicas[0].synchronous = synchronous;
            r
        };
        let drop = vec![SyncAction::Drop { cluster: "customs".into(), member: "ndc".into(), remaining: vec![] }];
        // Oracle's Maximum Availability: streaming but no longer synchronized (NetTimeout passed).
        assert_eq!(decide(&s, &with(true, false), now, &mut HashMap::new()), drop, "no grace");
        assert!(decide(&s, &with(true, true), now, &mut HashMap::new()).is_empty());
        // PostgreSQL keeps commits waiting: streaming is enough, whatever the word.
        assert!(decide(&s, &with(false, false), now + GRACE, &mut HashMap::new()).is_empty());
    }

    #[test]
    fn a_returning_standby_is_restored_and_a_streaming_one_left_alone() {
        let mut missing = HashMap::new();
        let now = Instant::now();
        assert!(decide(&state(false, &["ndc"]), &report(&[("ndc", "streaming")]), now, &mut missing).is_empty());
        assert_eq!(
            decide(&state(false, &[]), &report(&[("ndc", "streaming")]), now, &mut missing),
            vec![SyncAction::Restore { cluster: "customs".into(), member: "ndc".into(), members: vec!["ndc".into()] }]
        );
        assert!(decide(&state(false, &[]), &report(&[("ndc", "catchup")]), now, &mut missing).is_empty());
    }

    #[test]
    fn with_no_synchronous_member_the_standbys_streaming_from_the_primary_vouch() {
        let mut missing = HashMap::new();
        let now = Instant::now();
        let mut s = state(false, &[]);
        s.clusters.get_mut("customs").unwrap().want_synchronous.clear();
        assert_eq!(
            decide(&s, &report(&[("ndc", "streaming")]), now, &mut missing),
            vec![SyncAction::Vouch { cluster: "customs".into(), members: vec!["ndc".into()] }]
        );
        // Not once it has vouchers, nor with nobody streaming.
        assert!(decide(&s, &report(&[("ndc", "catchup")]), now, &mut missing).is_empty());
        s.clusters.get_mut("customs").unwrap().vouch = ["ndc".to_string()].into();
        assert!(decide(&s, &report(&[("ndc", "streaming")]), now, &mut missing).is_empty());
    }
}
