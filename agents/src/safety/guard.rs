//! The guard that fences the database when the primary's lease is about to lapse, or when the
//! agent cannot prove one (DESIGN.md, "Safety of role changes", points 1 and 2). What it checks and
//! why is written in `lease.rs`'s module doc, beside the lease it reads.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::config::LeaseConfig;
use crate::drivers::{now_ms, DatabaseDriver, DbStatus};
use crate::metrics::AgentMetrics;
use crate::safety::lease::{Lease, LeaseState};
use crate::safety::target::Target;
use crate::safety::watchdog::SharedWatchdog;
use triad_proto::clock::{boot_ms, mono_ms};

/// How long after its start the guard waits for the first observation before it treats "none"
/// as "cannot see the server" (the observation's connection and queries time out sooner).
const FIRST_OBSERVATION_MS: u64 = 5_000;

/// Everything the guard watches.
pub struct Guard {
    pub lease: Arc<Lease>,
    pub target: Arc<Target>,
    pub db: Arc<RwLock<Option<DbStatus>>>,
    pub driver: Arc<dyn DatabaseDriver>,
    pub metrics: Arc<AgentMetrics>,
    pub cfg: LeaseConfig,
    /// Petted every check while the server may be a primary, disarmed when it cannot be.
    pub watchdog: SharedWatchdog,
}

/// One check's clocks: how late it ran, how far the boot-time clock ran ahead of the monotonic
/// one since the last check, and the boot-time clock now.
#[derive(Debug, Clone, Copy)]
struct Tick {
    late_ms: u64,
    jump_ms: i64,
    now_boot: u64,
}

/// Whether the server may be running as a primary, from the latest observation (`None`: none
/// yet) and the role last seen while it answered. A server that does not answer is assumed to be
/// one unless its data directory says it is a standby: an agent that cannot see its server
/// assumes the worst (DESIGN.md point 1).
pub(crate) fn may_be_primary(obs: Option<&DbStatus>, last_role: &str) -> bool {
    match obs {
        None => true,
        Some(o) if o.up => o.role == "primary",
        Some(o) if o.stopped => false,
        // Not answering: the files say what it would be. A server last seen as a standby whose
        // standby.signal is gone may have been promoted since (by hand), so that is no proof.
        Some(o) => last_role == "primary" || !o.configured_standby,
    }
}

/// Whether an agent that knows no epoch is still waiting for the controllers' first word (and
/// so does not judge its server yet): it started (or first heard of a leader) less than
/// `lease.start_grace_ms` ago, has accepted no target state, and holds either no lease at all or
/// the first lease of its adoption, at a real epoch and not about to end. That first lease is
/// recorded just before its target state is accepted (the epoch file written and fsynced
/// between them), so the guard may see the lease without the target; the lease alone is the
/// leader's word, after a quorum round, that this member is the primary at that epoch. A lease
/// at epoch 0 (the word that the cluster is not adopted) ends the wait: it is judged like any.
fn in_start_grace(
    epoch: Option<u64>,
    has_target: bool,
    st: &LeaseState,
    now_boot: u64,
    ends: u64,
    lead_ms: u64,
) -> bool {
    let no_word = st.until_boot_ms == 0;
    let first_lease_arriving = st.epoch > 0 && st.remaining_ms(st.epoch, now_boot) > lead_ms as i64;
    epoch == Some(0) && !has_target && now_boot < ends && (no_word || first_lease_arriving)
}

/// Every class [`fence_reason`] gives, so that the metric counts 0 of each before the first.
pub const FENCE_CLASSES: [&str; 5] = ["epoch_unknown", "stale_epoch", "late_tick", "watchdog", "lease"];

/// Why the guard fences now, with a short class for the metric's label; `None`: it need not.
///
/// `grace`: this agent knows no epoch, has heard nothing from the controllers, and started less
/// than `lease.start_grace_ms` ago; it waits for their first word before judging.
///
/// The rule (DESIGN.md point 1): a server that may be a primary keeps running only while the
/// agent can prove a lease at the current epoch; what it remembers or forgot changes nothing.
/// An agent that lost its state directory knows epoch 0, and at epoch 0 only a lease at epoch 0
/// (the leader's word, after a quorum round, that the cluster is not adopted) counts.
fn fence_reason(
    st: &LeaseState,
    target: Option<&triad_proto::v1::Assignment>,
    epoch: Option<u64>,
    tick: Tick,
    lead_ms: u64,
    (watchdog_problem, grace): (Option<&str>, bool),
) -> Option<(&'static str, String)> {
    let Tick { late_ms, jump_ms, now_boot } = tick;
    let Some(epoch) = epoch else {
        return Some(("epoch_unknown", "the epoch file is unreadable".into()));
    };
    if let Some(t) = target.filter(|t| t.role != "primary") {
        return Some(("stale_epoch", format!("epoch {} makes `{}` the primary", t.epoch, t.primary)));
    }
    if grace {
        return None;
    }
    if jump_ms > 50 {
        return Some((
            "clock",
            format!("the boot-time clock ran {jump_ms} ms ahead of the monotonic clock (suspended?)"),
        ));
    }
    if late_ms > lead_ms {
        return Some(("late_tick", format!("the lease check ran {late_ms} ms late")));
    }
    if let Some(p) = watchdog_problem {
        return Some(("watchdog", p.to_string()));
    }
    let at = target.map(|t| t.epoch).unwrap_or(epoch);
    let left = st.remaining_ms(at, now_boot);
    if left < lead_ms as i64 {
        let why = match (left < 0, at) {
            (true, 0) => "no word from the controllers that the cluster is not adopted (no lease at epoch 0), \
                          and no epoch on record: this primary cannot be proved current"
                .to_string(),
            (true, _) => format!("no lease at epoch {at}"),
            (false, _) => format!("the lease ends in {left} ms"),
        };
        return Some(("lease", why));
    }
    None
}

impl Guard {
    /// Runs forever.
    pub async fn run(self) {
        let every = Duration::from_millis(self.cfg.check_interval_ms);
        let (mut last_boot, mut last_mono) = (boot_ms(), mono_ms());
        let started_boot = last_boot;
        // The role last seen while the server answered: a primary that stops answering is still
        // treated as one until the agent confirms it stopped.
        let mut last_role = String::new();
        let mut repeats = Repeats::default();
        loop {
            tokio::time::sleep(every).await;
            let (now_boot, now_mono) = (boot_ms(), mono_ms());
            let (gap_boot, gap_mono) = (now_boot - last_boot, now_mono - last_mono);
            (last_boot, last_mono) = (now_boot, now_mono);
            let late_ms = gap_boot.saturating_sub(self.cfg.check_interval_ms);
            let jump_ms = gap_boot as i64 - gap_mono as i64;

            let obs = self.db.read().expect("db lock poisoned").clone();
            // The target before the lease: a target state naming this member primary is accepted
            // only after its first lease is recorded (`link.rs`), so this order never sees one
            // without the other.
            let target = self.target.current();
            let epoch = self.target.epoch();
            let st = self.lease.snapshot();
            self.metrics.lease_remaining.set(st.remaining_ms(st.epoch, now_boot) as f64 / 1000.0);
            // Before the first observation, give the observer its bound (it has timeouts) to look.
            if obs.is_none() && now_boot < started_boot + FIRST_OBSERVATION_MS {
                continue;
            }
            if let Some(o) = &obs {
                if o.up {
                    last_role = o.role.clone();
                } else if o.stopped {
                    // Whatever it was, it is stopped; only this agent starts it again, and the
                    // next observations say as what.
                    last_role.clear();
                }
            }
            // A start or promote under way may be about to open the server, whatever it looks like.
            let observed_ms = obs.as_ref().map(|o| o.observed_ms).unwrap_or(0);
            let mut opening = st.opening_covers(observed_ms);
            if !may_be_primary(obs.as_ref(), &last_role) && !opening {
                // Decided again under the watchdog's lock, with the lease read afresh: an opener
                // marks its opening and arms under the same lock, so one that began since `st`
                // was read is seen here and its watchdog left armed.
                let mut watchdog = self.watchdog.lock().expect("watchdog lock poisoned");
                if !self.lease.snapshot().opening_covers(observed_ms) {
                    watchdog.disarm("the server is not a primary");
                    continue;
                }
                opening = true;
            }
            let wd_problem =
                self.watchdog.lock().expect("watchdog lock poisoned").keep_alive(st.period_ms).map(|p| p.to_string());
            let grace_ends = self.lease.grace_from(started_boot) + self.cfg.start_grace_ms;
            let grace = in_start_grace(epoch, target.is_some(), &st, now_boot, grace_ends, self.cfg.fence_lead_ms);
            let Some((class, reason)) = fence_reason(
                &st,
                target.as_ref(),
                epoch,
                Tick { late_ms, jump_ms, now_boot },
                self.cfg.fence_lead_ms,
                (wd_problem.as_deref(), grace),
            ) else {
                continue;
            };
            if repeats.admit(obs.as_ref(), &st, opening, now_ms()) {
                self.fence(class, &reason).await;
            }
        }
    }

    async fn fence(&self, class: &'static str, reason: &str) {
        tracing::error!(reason = %reason, "fencing the primary");
        self.lease.record_fence(reason);
        self.metrics.fences.with_label_values(&[class]).inc();
        self.metrics.last_fence.set(crate::drivers::now_ms() as f64 / 1000.0);
        match self.driver.fence().await {
            Ok(()) => {
                self.lease.fence_done();
                tracing::warn!("fenced: the server is stopped")
            }
            Err(e) => tracing::error!("fencing failed: {e}"),
        }
    }
}

/// Which of the guard's reasons to fence lead to a fence.
#[derive(Debug, Default)]
struct Repeats {
    /// When (wall clock, ms) the guard last fenced.
    fenced_ms: Option<u64>,
    /// The opening (when it began, when the last one ended) during which it last fenced a
    /// server seen stopped.
    stopped_opening: Option<(u64, u64)>,
}

impl Repeats {
    /// One fence per observation: the next waits until the observer has looked again. And while
    /// an opening's server is seen stopped (its start not begun yet, or stopped already), one per
    /// opening: that fence only makes sure; what the opener starts after it the guard sees
    /// running and fences then, and the opener, finding the lease gone, stops it as well.
    fn admit(&mut self, obs: Option<&DbStatus>, st: &LeaseState, opening: bool, now_ms: u64) -> bool {
        let observed_ms = obs.map(|o| o.observed_ms).unwrap_or(0);
        if self.fenced_ms.is_some_and(|at| observed_ms <= at) {
            return false;
        }
        if opening && obs.is_some_and(|o| o.stopped && !o.up) {
            let this = (st.opening_began_ms, st.opening_ended_ms);
            if self.stopped_opening == Some(this) {
                return false;
            }
            self.stopped_opening = Some(this);
        }
        self.fenced_ms = Some(now_ms);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use triad_proto::v1::{Assignment, DbStatus};

    fn held(epoch: u64, until: u64) -> LeaseState {
        LeaseState { armed: true, epoch, until_boot_ms: until, period_ms: 1500, ..Default::default() }
    }

    fn t(late_ms: u64, jump_ms: i64, now_boot: u64) -> Tick {
        Tick { late_ms, jump_ms, now_boot }
    }

    fn primary(epoch: u64) -> Assignment {
        Assignment { epoch, role: "primary".into(), primary: "dc".into(), ..Default::default() }
    }

    #[test]
    fn a_held_lease_keeps_the_primary_running() {
        let r = fence_reason(&held(3, 10_000), Some(&primary(3)), Some(3), t(0, 0, 9_000), 500, (None, false));
        assert_eq!(r, None);
    }

    #[test]
    fn every_reason_to_fence() {
        let p = primary(3);
        let class = |r: Option<(&'static str, String)>| r.map(|(c, _)| c);
        // About to lapse: fence early enough for the stop to finish.
        assert_eq!(
            class(fence_reason(&held(3, 10_000), Some(&p), Some(3), t(0, 0, 9_600), 500, (None, false))),
            Some("lease")
        );
        // A lease for an older epoch is no lease.
        assert_eq!(
            class(fence_reason(&held(2, 10_000), Some(&p), Some(3), t(0, 0, 9_000), 500, (None, false))),
            Some("lease")
        );
        // Another member is primary at the accepted epoch.
        let standby = Assignment { role: "standby".into(), primary: "ndc".into(), epoch: 4, ..Default::default() };
        assert_eq!(
            class(fence_reason(&held(3, 10_000), Some(&standby), Some(4), t(0, 0, 9_000), 500, (None, false))),
            Some("stale_epoch")
        );
        assert_eq!(
            class(fence_reason(&held(3, 10_000), Some(&p), None, t(0, 0, 9_000), 500, (None, false))),
            Some("epoch_unknown")
        );
        assert_eq!(
            class(fence_reason(&held(3, 10_000), Some(&p), Some(3), t(0, 400, 9_000), 500, (None, false))),
            Some("clock")
        );
        assert_eq!(
            class(fence_reason(&held(3, 10_000), Some(&p), Some(3), t(700, 0, 9_000), 500, (None, false))),
            Some("late_tick")
        );
        assert_eq!(
            class(fence_reason(&held(3, 10_000), Some(&p), Some(3), t(0, 0, 9_000), 500, (Some("no watchdog"), false))),
            Some("watchdog")
        );
    }

    /// The two-primaries bug of issue 16: an agent restarted with its state directory emptied
    /// knows epoch 0 and remembers no lease; its server still runs as the old primary.
    #[test]
    fn an_agent_that_forgot_everything_proves_nothing_and_fences() {
        let forgot = LeaseState::default();
        let class = |r: Option<(&'static str, String)>| r.map(|(c, _)| c);
        // The controllers name another primary: fenced at once, whatever it remembers.
        let standby = Assignment { role: "standby".into(), primary: "ndc".into(), epoch: 2, ..Default::default() };
        let r = fence_reason(&forgot, Some(&standby), Some(2), t(0, 0, 9_000), 500, (None, false));
        assert_eq!(class(r), Some("stale_epoch"));
        // ... even during the start grace.
        let r = fence_reason(&forgot, Some(&standby), Some(2), t(0, 0, 9_000), 500, (None, true));
        assert_eq!(class(r), Some("stale_epoch"));
        // No word at all: only the grace keeps it running, and only while it lasts.
        assert_eq!(fence_reason(&forgot, None, Some(0), t(0, 0, 9_000), 500, (None, true)), None);
        let r = fence_reason(&forgot, None, Some(0), t(0, 0, 9_000), 500, (None, false));
        assert!(r.as_ref().is_some_and(|(c, why)| *c == "lease" && why.contains("not adopted")), "{r:?}");
        // The leader's word that the cluster is not adopted is a lease at epoch 0.
        let unadopted = LeaseState { epoch: 0, until_boot_ms: 10_000, period_ms: 1500, ..Default::default() };
        assert_eq!(fence_reason(&unadopted, None, Some(0), t(0, 0, 9_000), 500, (None, false)), None);
        let r = fence_reason(&unadopted, None, Some(0), t(0, 0, 9_800), 500, (None, false));
        assert_eq!(class(r), Some("lease"), "and it lapses like one");
    }

    #[test]
    fn a_server_that_does_not_answer_may_be_a_primary() {
        let obs = |up: bool, role: &str, stopped: bool, configured_standby: bool| DbStatus {
            up,
            role: role.into(),
            stopped,
            configured_standby,
            ..Default::default()
        };
        assert!(may_be_primary(None, ""), "no observation yet: assume the worst");
        assert!(may_be_primary(Some(&obs(true, "primary", false, false)), ""));
        assert!(!may_be_primary(Some(&obs(true, "standby", false, true)), ""));
        assert!(!may_be_primary(Some(&obs(false, "down", true, false)), "primary"), "confirmed stopped");
        // Running (its postmaster is there) but not answering, e.g. SIGSTOPped:
        assert!(may_be_primary(Some(&obs(false, "down", false, false)), ""), "not configured as a standby");
        assert!(may_be_primary(Some(&obs(false, "down", false, true)), "primary"), "last seen as a primary");
        assert!(!may_be_primary(Some(&obs(false, "down", false, true)), ""), "a standby by its files");
        assert!(
            may_be_primary(Some(&obs(false, "down", false, false)), "standby"),
            "last seen as a standby, but its files no longer say so: promoted since?"
        );
    }

    #[test]
    fn a_fence_per_observation_and_one_per_opening_while_the_server_is_seen_stopped() {
        let seen = |at: u64, up: bool, stopped: bool| DbStatus { observed_ms: at, up, stopped, ..Default::default() };
        let opening = LeaseState { opening: true, opening_began_ms: 100, ..Default::default() };
        let mut r = Repeats::default();
        assert!(r.admit(Some(&seen(200, true, false)), &LeaseState::default(), false, 250));
        assert!(!r.admit(Some(&seen(200, true, false)), &LeaseState::default(), false, 260), "the same observation");
        assert!(r.admit(Some(&seen(300, true, false)), &LeaseState::default(), false, 310), "a newer one");
        // An opening whose server is not started yet: once, whatever the observer says next.
        assert!(r.admit(Some(&seen(400, false, true)), &opening, true, 410));
        assert!(!r.admit(Some(&seen(500, false, true)), &opening, true, 510));
        // ... but once it runs (starting, in recovery), at every observation.
        assert!(r.admit(Some(&seen(600, false, false)), &opening, true, 610));
        assert!(r.admit(Some(&seen(700, true, false)), &opening, true, 710));
        // A later opening is another.
        let next = LeaseState { opening_began_ms: 900, ..opening };
        assert!(r.admit(Some(&seen(1000, false, true)), &next, true, 1010));
    }

    #[test]
    fn the_first_lease_arriving_before_its_target_state_is_not_fenced() {
        // CI caught it: the guard read no target, then the first lease at epoch 1, and with no
        // lease at epoch 0 it fenced the primary being adopted.
        let now = 100_000;
        let ends = now + 5_000;
        let first = LeaseState { armed: true, epoch: 1, until_boot_ms: now + 1_400, ..Default::default() };
        assert!(in_start_grace(Some(0), false, &first, now, ends, 500), "the target is on its way");
        assert!(!in_start_grace(Some(0), true, &first, now, ends, 500), "the target is here: judged");
        assert!(!in_start_grace(Some(0), false, &first, now + 1_000, ends, 500), "about to end: judged");
        assert!(!in_start_grace(Some(0), false, &first, now, now, 500), "the grace is over");
        assert!(!in_start_grace(Some(1), false, &first, now, ends, 500), "an epoch on record: judged");
        let unadopted = LeaseState { epoch: 0, until_boot_ms: now + 1_400, ..Default::default() };
        assert!(!in_start_grace(Some(0), false, &unadopted, now, ends, 500), "epoch 0's word is judged");
        assert!(in_start_grace(Some(0), false, &LeaseState::default(), now, ends, 500), "no word yet");
    }
}
