//! The database member at the agent's start (DESIGN.md, "Safety of role changes", point 8).
//!
//! Only the agent starts PostgreSQL: the distribution's unit is masked, so nothing brings a
//! server up behind Triad's back after a reboot. A member found stopped as a standby is left to
//! the leader, which rejoins it (rewinding it if it must). A member found stopped as a *primary*
//! is the dangerous case: the cluster may have failed over while this host was down. It is
//! started only once this agent holds a lease at an epoch whose target state makes it the
//! primary, and then in recovery, opened only under a lease still held once it is up
//! (`opening.rs`). The leader grants that lease only after a quorum round confirmed it still leads and
//! its committed state names this member primary at that epoch: a linearizable read of the role.
//! Until then it stays stopped, however long the controllers take; if they name another primary,
//! it stays stopped for good and the leader's rejoin turns it into a standby.
//!
//! A lease persisted before the restart counts only on the same boot (see `lease.rs`); after a
//! reboot there is none, so the wait always goes through the controllers.

use std::time::Duration;

use crate::error::Error;
use crate::safety::lease::boot_ms;
use crate::safety::opening::{Opener, Started};

/// How often the wait looks at the target state and the lease.
const POLL: Duration = Duration::from_millis(50);

/// Waits for the role of a member found stopped as a primary, then starts it if it is confirmed.
pub struct BootStart {
    /// The driver, target, lease and watchdog, and what opens the primary under its lease.
    pub opener: Opener,
}

/// What the wait decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Confirmed primary under a lease at this epoch: start it.
    Start { epoch: u64 },
    /// Not the primary any more (or fenced): leave it stopped.
    StayStopped(String),
    /// Nothing confirmed yet.
    Wait,
}

/// Decides from the accepted target state, the persisted epoch and the lease's remaining time.
pub fn decide(
    target: Option<&triad_proto::v1::Assignment>,
    epoch: Option<u64>,
    lease_left_ms: impl Fn(u64) -> i64,
    fence_lead_ms: u64,
) -> Decision {
    if epoch.is_none() {
        return Decision::StayStopped("the epoch file is unreadable: fenced".into());
    };
    let Some(t) = target else { return Decision::Wait };
    if t.role != "primary" {
        return Decision::StayStopped(format!(
            "`{}` is the primary at epoch {}; the leader rejoins this member as a standby",
            t.primary, t.epoch
        ));
    }
    if lease_left_ms(t.epoch) > fence_lead_ms as i64 {
        Decision::Start { epoch: t.epoch }
    } else {
        Decision::Wait
    }
}

impl BootStart {
    /// Runs once, at the agent's start.
    pub async fn run(self) {
        // A server that died just before the agent started may still look alive for a moment
        // (its pid not yet reaped): look until it is either up or confirmed stopped. A postmaster
        // that runs but never answers is not stopped; the guard and the leader judge that one.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let obs = self.opener.driver.observe().await;
            // A primary started in recovery by an opening this agent did not live to finish
            // (chaos seed 71: the agent restarted half way) would stay so for good: it accepts no
            // write, and the leader sees a standby, neither stopped nor lost. Stopped, it is a
            // member stopped as a primary like any other, started again below only once the
            // controllers confirm its role.
            if obs.up && self.opener.driver.started_unopened().await {
                tracing::warn!("the database member runs in recovery from an opening that did not finish: stopping it");
                if let Err(e) = self.opener.driver.stop_unopened().await {
                    tracing::error!("stopping the member that was not opened failed: {e}");
                    return;
                }
                continue;
            }
            if obs.up || tokio::time::Instant::now() >= deadline {
                return;
            }
            if obs.stopped {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if !self.opener.driver.stopped_as_primary().await {
            return;
        }
        tracing::warn!(
            "the database member is stopped and was a primary: it stays stopped until the controllers confirm \
             that it still is (a lease at its epoch)"
        );
        loop {
            let o = &self.opener;
            let target = o.target.current();
            let snapshot = o.lease.snapshot();
            let decision =
                decide(target.as_ref(), o.target.epoch(), |e| snapshot.remaining_ms(e, boot_ms()), o.fence_lead_ms);
            match decision {
                Decision::Wait => tokio::time::sleep(POLL).await,
                Decision::StayStopped(why) => {
                    tracing::warn!("the database member stays stopped: {why}");
                    return;
                }
                Decision::Start { epoch } => {
                    tracing::info!(epoch, "role confirmed (lease held at epoch {epoch}): starting the primary");
                    // Under the start gate, the opener looks at the lease again (a failover may
                    // have been told it was released since the decision), starts the member in
                    // recovery, and opens it only under a lease still held then (`opening.rs`).
                    match self.opener.start(epoch).await {
                        Ok(Started::Opened) => tracing::info!(epoch, "the primary is started"),
                        // Someone (an operator) started it meanwhile; the guard judges that one.
                        Ok(Started::NotStoppedAsPrimary) => {}
                        Err(Error::NoLease { .. }) => continue,
                        Err(e) => tracing::error!("starting the primary failed: {e}"),
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use triad_proto::v1::Assignment;

    fn target(role: &str, primary: &str, epoch: u64) -> Assignment {
        Assignment { role: role.into(), primary: primary.into(), epoch, member: "dc".into(), ..Default::default() }
    }

    #[test]
    fn starts_only_under_a_lease_at_an_epoch_that_makes_it_primary() {
        let p = target("primary", "dc", 3);
        assert_eq!(decide(None, Some(3), |_| 1000, 300), Decision::Wait, "no word from the controllers yet");
        assert_eq!(decide(Some(&p), Some(3), |_| -1, 300), Decision::Wait, "no lease yet");
        assert_eq!(decide(Some(&p), Some(3), |_| 200, 300), Decision::Wait, "a lease about to be fenced");
        assert_eq!(decide(Some(&p), Some(3), |e| if e == 3 { 1400 } else { -1 }, 300), Decision::Start { epoch: 3 });
    }

    #[test]
    fn stays_stopped_when_another_member_is_primary_or_the_epoch_is_unknown() {
        let s = target("standby", "ndc", 4);
        assert!(matches!(decide(Some(&s), Some(4), |_| 1400, 300), Decision::StayStopped(w) if w.contains("`ndc`")));
        assert!(matches!(decide(None, None, |_| 1400, 300), Decision::StayStopped(w) if w.contains("unreadable")));
    }
}
