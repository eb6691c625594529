//! Keeping the synchronous set true (DESIGN.md, safety point 5).
//!
//! When a synchronous standby stops streaming from the primary for longer than a grace period, a
//! relaxed cluster first records that the standby no longer holds every commit (so automatic
//! failover will not pick it), and only then tells the primary to stop waiting for it. A strict
//! cluster leaves the primary waiting. When a wanted standby streams again, the primary is
//! reconfigured first, Triad confirms the standby is `sync` and flushed, and only then records it
//! as synchronous again. While it changes, the primary waits for the old set and the new one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use triad_proto::v1::DbStatus;

use crate::state::State;

/// How long a synchronous standby may be missing before a relaxed cluster drops it.
pub const GRACE: Duration = Duration::from_secs(2);

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
        let streaming = |m: &str| report.replicas.iter().any(|r| r.name == m && r.state == "streaming");
        for m in &c.synchronous {
            let key = (c.name.clone(), m.clone());
            if streaming(m) {
                missing.remove(&key);
                continue;
            }
            let since = *missing.entry(key).or_insert(now);
            if !c.strict && now.saturating_duration_since(since) >= GRACE {
                let remaining = c.synchronous.iter().filter(|x| *x != m).cloned().collect();
                out.push(SyncAction::Drop { cluster: c.name.clone(), member: m.clone(), remaining });
            }
        }
        for m in c.want_synchronous.iter().filter(|m| !c.synchronous.contains(*m) && *m != primary) {
            let caught_up = report
                .replicas
                .iter()
                .any(|r| r.name == *m && r.state == "streaming" && (0..=16 << 20).contains(&r.flush_lag_bytes));
            if caught_up {
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
                    .map(|(n, st)| ReplicaStatus { name: n.to_string(), state: st.to_string(), ..Default::default() })
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
