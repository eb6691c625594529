//! The promote a role change sends: whom the new primary's first commits wait for, and how long
//! the agent may take (DESIGN.md point 7: sized from the candidate's replay lag).

use std::time::Duration;

use triad_proto::v1::agent_command;

use super::workflow::fresh_db;
use crate::context::Ctx;
use crate::state::DbCluster;

/// A promote to send, and how long to wait for its answer.
pub(crate) struct PromoteOrder {
    pub kind: agent_command::Kind,
    /// Longer than the agent may take ([`promote_time`]), so that a workflow never gives up
    /// on a promote its agent is still running (issue 16, item 7: one that outlived the step
    /// timeout made a switchover roll back while the target went on promoting).
    pub wait: Duration,
}

/// The agent's wait for a lease at the new epoch before it promotes (`agents/src/link/execute.rs`).
const AGENT_LEASE_WAIT: Duration = Duration::from_secs(5);
/// What the promotion itself is given beyond replaying the candidate's lag.
const PROMOTION_FLOOR: Duration = Duration::from_secs(20);
/// The slowest replay counted on: 8 MiB/s.
const MIN_REPLAY_BYTES_PER_SEC: u64 = 8 << 20;
/// Between the agent's deadline and the workflow's: the answer's way back.
const ANSWER_MARGIN: Duration = Duration::from_secs(5);

/// What a promote may take at the agent (DESIGN.md point 7: sized from the candidate's replay
/// lag): the vouch hold, the wait for a lease, the replay of what it received but has not
/// replayed at the slowest rate counted on, and a floor for the promotion itself; at most 10 min.
pub(crate) fn promote_time(vouch_hold_ms: u64, replay_lag_bytes: u64) -> Duration {
    let replay = Duration::from_millis(replay_lag_bytes.saturating_mul(1000) / MIN_REPLAY_BYTES_PER_SEC);
    (Duration::from_millis(vouch_hold_ms) + AGENT_LEASE_WAIT + PROMOTION_FLOOR + replay).min(Duration::from_secs(600))
}

/// What the candidate on `agent` has received and not yet replayed, by its latest report (0
/// without one: the floor still applies).
pub(crate) fn replay_lag(ctx: &Ctx, agent: &str) -> u64 {
    fresh_db(ctx, agent).map(|d| d.receive_lsn.saturating_sub(d.replay_lsn)).unwrap_or(0)
}

/// The promote for `c`, read after its new epoch was committed. In strict mode the new primary
/// waits from its first commit for the standbys the cluster wants synchronous (DESIGN.md point 5:
/// commits wait rather than go asynchronous), unless the role change accepted data loss (a manual
/// failover outside the synchronous set, e.g. to `dr` with a city lost, where nobody is left to
/// wait for). Otherwise it starts asynchronous until a standby follows and is made synchronous.
/// `vouch_hold_ms` is P(1+rho)+m: the candidate waits that long after its last vouch.
pub(crate) fn promote(c: &DbCluster, accepted_loss: bool, vouch_hold_ms: u64, replay_lag_bytes: u64) -> PromoteOrder {
    let names = first_commit_waits_for(c, accepted_loss);
    let time = promote_time(vouch_hold_ms, replay_lag_bytes);
    let promote = triad_proto::v1::Promote {
        synchronous_standby_names: names,
        vouch_hold_ms,
        timeout_ms: time.as_millis() as u64,
    };
    PromoteOrder { kind: agent_command::Kind::Promote(promote), wait: time + ANSWER_MARGIN }
}

/// The standbys that [`promote`] makes the new primary's first commits wait for (none: it starts
/// asynchronous).
pub(crate) fn first_commit_waits_for(c: &DbCluster, accepted_loss: bool) -> Vec<String> {
    if c.strict && !accepted_loss {
        c.want_synchronous.iter().filter(|m| c.primary.as_ref() != Some(*m)).cloned().collect()
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_promote_is_given_its_hold_lease_wait_and_replay_and_the_workflow_waits_longer() {
        // No lag: the hold, the lease wait and the floor.
        assert_eq!(promote_time(1_300, 0), Duration::from_millis(26_300));
        // 80 MiB to replay at 8 MiB/s: ten seconds more.
        assert_eq!(promote_time(1_300, 80 << 20), Duration::from_millis(36_300));
        // Bounded, whatever a report says.
        assert_eq!(promote_time(1_300, u64::MAX), Duration::from_secs(600));
        let c = DbCluster::for_test(&["dc", "ndc"], "");
        let order = promote(&c, false, 1_300, 80 << 20);
        let agent_command::Kind::Promote(p) = &order.kind else { panic!("not a promote: {:?}", order.kind) };
        assert_eq!(p.timeout_ms, 36_300);
        assert!(order.wait > Duration::from_millis(p.timeout_ms), "the workflow outwaits the agent");
    }
}
