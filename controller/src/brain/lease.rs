//! Granting the primary's lease, and knowing when every lease granted has ended (DESIGN.md,
//! "Safety of role changes", points 2 and 4).
//!
//! The argument: the agent counts a grant from its own request's send time, which precedes the
//! grant. The leader grants only after `ensure_linearizable` — a heartbeat round acknowledged by a
//! quorum — shows it still leads, and only if the committed state still makes that agent's member
//! the primary at the asked epoch. Every grant is decided here on a round that *began after the
//! request arrived* ([`fresh_round`] refuses any other; openraft 0.9 sends a new round of
//! heartbeats for each call). So every grant comes from the one current leader, and this leader
//! promotes another member only P(1+rho)+m after its last grant (rho: the clocks' rate
//! difference; m: messages in flight).
//!
//! A new leader cannot know what its predecessor granted. A lease sent at agent time s was
//! granted on a round that began after s, so a quorum acknowledged the predecessor after s; one of
//! that quorum also voted for the new leader, and it acknowledged the predecessor before voting
//! (it rejects the older term after). So s came before the new leader's election, and every old
//! lease ended within P(1+rho) of the election in real time: the new leader waits P(1+rho)^2+m
//! on its own clock (issue 16, item 11; without the condition it would be 2P(1+rho)+m). The first
//! lease that comes with a target state is sent after a round that began once a heartbeat had
//! arrived, and the agent counts it from receiving the state: it ends at most P(1+rho) after the
//! round plus the state's time in flight, which the margin m covers (as it does in every wait).
//! Counting it from the heartbeat's send time instead was tried: on a loaded host such a lease
//! could end at once and fence the primary at its adoption. Once a failover is recorded,
//! the primary it replaces is granted nothing more, so the last grant is known when the failover
//! computes its wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use triad_proto::v1::AgentCommand;

use crate::context::Ctx;
use crate::state::WorkflowKind;

/// Why a lease was not granted; its text goes back to the agent in the heartbeat's answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseRefusal {
    #[error("not the leader")]
    NotLeader,
    /// A quorum re-formed after an absence is not trusted yet (`continuity.rs`), with why.
    #[error("{0}")]
    Held(String),
    #[error("leadership not confirmed: {0}")]
    RoundFailed(String),
    #[error("leadership not confirmed in time")]
    RoundTimedOut,
    /// Point 4's condition: the round began `ms_before` the request arrived.
    #[error("the quorum round began {ms_before} ms before the request arrived: no grant rests on an earlier round")]
    EarlierRound { ms_before: u128 },
    #[error("agent `{0}` does not host a primary")]
    NotPrimary(String),
    #[error("epoch {asked} is not current (the cluster is at epoch {current})")]
    NotCurrent { asked: u64, current: u64 },
    #[error("agent `{0}` hosts no member of a configured cluster")]
    NoMember(String),
    #[error("no cluster `{0}`")]
    NoCluster(String),
    #[error("`{cluster}` is adopted (epoch {epoch}): this agent's epoch is behind")]
    Adopted { cluster: String, epoch: u64 },
    #[error("failover {workflow} of `{cluster}` is under way")]
    FailingOver { workflow: u64, cluster: String },
}

/// This controller's memory of its grants: soft state, lost (safely) with leadership.
#[derive(Default)]
pub struct Leases {
    /// Per cluster, when this leader last granted its primary a lease.
    granted: Mutex<HashMap<String, Instant>>,
    /// When this controller last became leader (set by the brain).
    leading_since: Mutex<Option<Instant>>,
}

impl Leases {
    /// Records that this controller leads since `at` (or no longer leads).
    pub fn set_leading(&self, at: Option<Instant>) {
        let mut l = self.leading_since.lock().expect("lease lock poisoned");
        if at.is_none() {
            self.granted.lock().expect("lease lock poisoned").clear();
        }
        *l = at;
    }

    /// Records a grant on the cluster `decide` names, deciding and recording under one lock:
    /// a failover that recorded its workflow and then asks [`Self::all_ended_at`] either sees
    /// this grant, or this grant's `decide` sees the workflow and refuses.
    fn grant(&self, decide: impl FnOnce() -> Result<String, LeaseRefusal>) -> Result<(), LeaseRefusal> {
        let mut granted = self.granted.lock().expect("lease lock poisoned");
        let cluster = decide()?;
        granted.insert(cluster, Instant::now());
        Ok(())
    }

    /// When every lease on `cluster` that any leader granted has certainly ended, by this
    /// controller's clock; `None` when it does not lead.
    pub fn all_ended_at(&self, ctx: &Ctx, cluster: &str) -> Option<Instant> {
        let since = (*self.leading_since.lock().expect("lease lock poisoned"))?;
        let mut at = since + ctx.cfg.lease.new_leader_wait();
        if let Some(g) = self.granted.lock().expect("lease lock poisoned").get(cluster) {
            at = at.max(*g + ctx.cfg.lease.expiry());
        }
        Some(at)
    }
}

/// How long the quorum round behind a grant may take: a grant that late is better refused.
fn round_timeout(ctx: &Ctx) -> Duration {
    Duration::from_millis(ctx.cfg.lease.period_ms / 3)
}

/// Point 4's condition, checked where every grant is decided: the quorum round it rests on
/// began after the request arrived. A round that began earlier (a cached or shared one) could
/// predate the new leader's election by more than the wait counts on, so it grants nothing.
pub fn fresh_round(arrived: Instant, round_began: Instant) -> Result<(), LeaseRefusal> {
    if round_began < arrived {
        return Err(LeaseRefusal::EarlierRound { ms_before: arrived.duration_since(round_began).as_millis() });
    }
    Ok(())
}

/// Runs one quorum round (bounded like a grant's); returns when it began.
async fn quorum_round(ctx: &Ctx) -> Result<Instant, LeaseRefusal> {
    let began = Instant::now();
    match tokio::time::timeout(round_timeout(ctx), ctx.raft.ensure_linearizable()).await {
        Ok(Ok(_)) => Ok(began),
        Ok(Err(e)) => Err(LeaseRefusal::RoundFailed(e.to_string())),
        Err(_) => Err(LeaseRefusal::RoundTimedOut),
    }
}

/// Decides the lease `agent` asked for at `epoch`, in a heartbeat that arrived at `arrived`:
/// `Ok(P)` when granted.
pub async fn grant(ctx: &Ctx, agent: &str, epoch: u64, arrived: Instant) -> Result<u64, LeaseRefusal> {
    if !ctx.is_leader() {
        return Err(LeaseRefusal::NotLeader);
    }
    // An old quorum re-formed after a break-glass must not produce a writable primary
    // (`continuity.rs`): a held leader grants nothing.
    // Judged now if the brain has not yet at this term: a new leader's first grants (the
    // primary's renewals after an election) need not wait for its next tick. Afterwards the
    // brain's tick keeps the verdict current; a grant only reads it.
    let term = ctx.raft.metrics().borrow().current_term;
    if !ctx.continuity.judged(term) {
        ctx.continuity.step(&super::continuity_view(ctx));
    }
    if let Some(why) = ctx.continuity.held(term) {
        return Err(LeaseRefusal::Held(why));
    }
    let began = quorum_round(ctx).await?;
    fresh_round(arrived, began)?;
    ctx.leases.grant(|| {
        let g = ctx.state.read().expect("state lock poisoned");
        if epoch == 0 {
            return unadopted(&g.state, agent);
        }
        let c = g
            .state
            .clusters
            .values()
            .find(|c| c.primary.as_ref().and_then(|p| c.members.get(p)).is_some_and(|m| m.agent == agent))
            .ok_or_else(|| LeaseRefusal::NotPrimary(agent.to_string()))?;
        if c.epoch != epoch {
            return Err(LeaseRefusal::NotCurrent { asked: epoch, current: c.epoch });
        }
        not_failing_over(&g.state, c)?;
        Ok(c.name.clone())
    })?;
    Ok(ctx.cfg.lease.period_ms)
}

/// A lease at epoch 0, asked for by an agent that knows no epoch: granted (the cluster's name)
/// only while the cluster of the member it hosts is not adopted. That is the controllers' word
/// that no primary has been named, so a primary the agent finds may keep running (DESIGN.md
/// point 1); it is decided after the same quorum round as any grant, and recorded like one, so a
/// failover after the adoption waits for it to end too.
fn unadopted(state: &crate::state::State, agent: &str) -> Result<String, LeaseRefusal> {
    let c = state
        .clusters
        .values()
        .find(|c| c.members.values().any(|m| m.agent == agent))
        .ok_or_else(|| LeaseRefusal::NoMember(agent.to_string()))?;
    match c.epoch {
        0 => Ok(c.name.clone()),
        epoch => Err(LeaseRefusal::Adopted { cluster: c.name.clone(), epoch }),
    }
}

/// Once a failover is recorded, the primary it replaces gets no more leases: the failover waits
/// for the ones granted before to end, and a grant after that wait would outlive it. (Its new
/// primary, once the epoch names it, is granted as usual.)
fn not_failing_over(state: &crate::state::State, c: &crate::state::DbCluster) -> Result<(), LeaseRefusal> {
    let replaced =
        |w: &&crate::state::Workflow| w.kind == WorkflowKind::Failover && c.primary.as_ref() == Some(&w.from);
    match c.workflow.and_then(|w| state.workflows.get(&w)).filter(replaced) {
        Some(w) => Err(LeaseRefusal::FailingOver { workflow: w.id, cluster: c.name.clone() }),
        None => Ok(()),
    }
}

/// Confirms with a quorum round (bounded like a grant's) that this controller still leads and
/// has applied everything committed before the round began: what it reads of the state next is
/// current (a linearizable read). Target states are read and sent only after one. Returns when
/// the round began.
pub async fn confirm_leading(ctx: &Ctx) -> Option<Instant> {
    quorum_round(ctx).await.ok()
}

/// The lease an agent's target state carries when it makes the agent's member primary, the state
/// read after [`confirm_leading`]'s round, which began at `round_began`: counted by an agent that
/// never held one from the send time of its heartbeat that arrived at `heartbeat_arrived`, so it
/// counts as a grant here. Zero while a failover replaces that primary, without a heartbeat to
/// count from, or when the round began before it arrived.
pub fn with_target_state(ctx: &Ctx, cluster: &str, heartbeat_arrived: Option<Instant>, round_began: Instant) -> u64 {
    let Some(arrived) = heartbeat_arrived else { return 0 };
    if fresh_round(arrived, round_began).is_err() {
        return 0;
    }
    let granted = ctx.leases.grant(|| {
        let g = ctx.state.read().expect("state lock poisoned");
        let c = g.state.clusters.get(cluster).ok_or_else(|| LeaseRefusal::NoCluster(cluster.to_string()))?;
        not_failing_over(&g.state, c)?;
        Ok(cluster.to_string())
    });
    if granted.is_ok() {
        ctx.cfg.lease.period_ms
    } else {
        0
    }
}

/// A failover's request that the primary it replaces give up its lease (`ReleaseLease`), asked
/// again and again until the agent answers, `until` passes, or this is dropped. The agent agrees
/// only when its server is stopped, and then can start it again only under a grant for a request
/// sent after its answer (the agent's `release_lease` states why): so once this reports the
/// release, the wait for every lease to end may be skipped (DESIGN.md point 4).
pub struct Release {
    at: Arc<OnceLock<Instant>>,
    task: tokio::task::JoinHandle<()>,
}

impl Release {
    /// Starts asking `agent` with `cmd` (stamped with the cluster's current epoch).
    pub fn ask(ctx: Arc<Ctx>, agent: String, cmd: AgentCommand, until: Instant) -> Release {
        let at = Arc::new(OnceLock::new());
        let answered = at.clone();
        let task = tokio::spawn(async move {
            while Instant::now() < until {
                match ctx.bus.call(&agent, cmd.clone(), Duration::from_secs(2)).await {
                    Ok(_) => {
                        let _ = answered.set(Instant::now());
                        return;
                    }
                    // Silent (the usual case: its site is lost) or its server still runs.
                    Err(e) => tracing::debug!(agent = %agent, "the lease is not released: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Release { at, task }
    }

    /// When the agent's answer arrived: reports heard after it were made after the release.
    pub fn released_at(&self) -> Option<Instant> {
        self.at.get().copied()
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_rests_only_on_a_round_that_began_after_the_request_arrived() {
        let arrived = Instant::now();
        assert!(fresh_round(arrived, arrived).is_ok());
        assert!(fresh_round(arrived, arrived + Duration::from_millis(3)).is_ok());
        let earlier = fresh_round(arrived, arrived - Duration::from_millis(40)).unwrap_err();
        assert_eq!(earlier, LeaseRefusal::EarlierRound { ms_before: 40 });
        assert!(earlier.to_string().contains("began 40 ms before the request arrived"), "{earlier}");
    }

    #[test]
    fn a_new_leader_waits_one_lease_and_the_margin() {
        let l = crate::config::LeaseTiming::default();
        // P = 1200 ms, rho = 0.001, m = 200 ms: P(1+rho)^2 = 1202.4012 ms, rounded up.
        assert_eq!(l.new_leader_wait(), Duration::from_millis(1203 + 200));
        assert!(l.new_leader_wait() >= l.expiry(), "never shorter than one grant's expiry");
    }
}
