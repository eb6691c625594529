//! The promote a role change sends: whom the new primary's first commits wait for, and how long
//! the agent may take (DESIGN.md point 7: sized from the candidate's replay lag).

use std::time::Duration;

use triad_proto::v1::agent_command;

use super::workflow::fresh_db;
use crate::context::Ctx;
use crate::state::DbCluster;

/// What a promote's time is made of: the vouch hold (P(1+rho)+m), the floor for the promotion
/// itself, and the candidate's time to apply what it received ([`replay_time`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PromoteBudget {
    pub vouch_hold_ms: u64,
    pub floor: Duration,
    pub replay: Duration,
}

impl PromoteBudget {
    /// The budget of a promote of the candidate on `agent` in `cluster`, from the configuration
    /// and the candidate's latest report.
    pub(crate) fn of(ctx: &Ctx, cluster: &str, agent: &str) -> Self {
        PromoteBudget {
            vouch_hold_ms: ctx.cfg.lease.vouch_hold_ms(),
            floor: ctx.cfg.timeouts(cluster).promote_floor(),
            replay: replay_time(ctx, agent),
        }
    }
}

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
/// What replay is given when the candidate reports no estimate of its own (an agent's driver
/// that cannot tell): generous, since a promote still running when the workflow gives up on it
/// is what issue 16, item 7 was.
const UNKNOWN_REPLAY: Duration = Duration::from_secs(60);
/// Between the agent's deadline and the workflow's: the answer's way back.
const ANSWER_MARGIN: Duration = Duration::from_secs(5);

/// What a promote may take at the agent (DESIGN.md point 7: sized from the candidate's replay
/// lag): the vouch hold, the wait for a lease, the time to apply what it received but has not
/// applied, and a floor for the promotion itself (`[clusters.timeouts]` `promote_floor_ms`);
/// at most 10 min beyond the floor.
pub(crate) fn promote_time(vouch_hold_ms: u64, floor: Duration, replay: Duration) -> Duration {
    let waits = Duration::from_millis(vouch_hold_ms) + AGENT_LEASE_WAIT + replay;
    waits.min(Duration::from_secs(600)) + floor
}

/// How long the candidate on `agent` needs to apply what it has received, by its driver's own
/// estimate in its latest report (PostgreSQL: the bytes at 8 MiB/s; Oracle: `apply finish
/// time`); [`UNKNOWN_REPLAY`] when it gives none, 0 without a report (the floor still applies).
pub(crate) fn replay_time(ctx: &Ctx, agent: &str) -> Duration {
    match fresh_db(ctx, agent) {
        None => Duration::ZERO,
        Some(d) => triad_proto::replica::replay_remaining_seconds(&d)
            .map(|s| Duration::from_secs_f64(s.min(600.0)))
            .unwrap_or(UNKNOWN_REPLAY),
    }
}

/// The promote for `c`, read after its new epoch was committed. In strict mode the new primary
/// waits from its first commit for the standbys the cluster wants synchronous (DESIGN.md point 5:
/// commits wait rather than go asynchronous), unless the role change accepted data loss (a manual
/// failover outside the synchronous set, e.g. to `dr` with a city lost, where nobody is left to
/// wait for). Otherwise it starts asynchronous until a standby follows and is made synchronous.
/// `vouch_hold_ms` is P(1+rho)+m: the candidate waits that long after its last vouch.
pub(crate) fn promote(c: &DbCluster, accepted_loss: bool, budget: PromoteBudget) -> PromoteOrder {
    let names = first_commit_waits_for(c, accepted_loss);
    let PromoteBudget { vouch_hold_ms, floor, replay } = budget;
    let time = promote_time(vouch_hold_ms, floor, replay);
    let promote = triad_proto::v1::Promote { synchronous: names, vouch_hold_ms, timeout_ms: time.as_millis() as u64 };
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
        let floor = Duration::from_secs(20);
        assert_eq!(promote_time(1_300, floor, Duration::ZERO), Duration::from_millis(26_300));
        // Ten seconds to apply (80 MiB at 8 MiB/s by the PostgreSQL driver's estimate).
        assert_eq!(promote_time(1_300, floor, Duration::from_secs(10)), Duration::from_millis(36_300));
        // Bounded, whatever a report says; the floor configured for a slower database on top.
        assert_eq!(promote_time(1_300, floor, Duration::MAX / 2), Duration::from_secs(620));
        assert_eq!(promote_time(1_300, Duration::from_secs(120), Duration::ZERO), Duration::from_millis(126_300));
        let c = DbCluster::for_test(&["dc", "ndc"], "");
        let budget = PromoteBudget { vouch_hold_ms: 1_300, floor, replay: Duration::from_secs(10) };
        let order = promote(&c, false, budget);
        let agent_command::Kind::Promote(p) = &order.kind else { panic!("not a promote: {:?}", order.kind) };
        assert_eq!(p.timeout_ms, 36_300);
        assert!(order.wait > Duration::from_millis(p.timeout_ms), "the workflow outwaits the agent");
    }
}
