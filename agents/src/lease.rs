//! The primary's lease, and the guard that fences the database when it is about to lapse
//! (DESIGN.md, "Safety of role changes", point 2).
//!
//! The agent of the primary asks for its lease in every heartbeat and counts a grant from the
//! moment it *sent* that heartbeat, on `CLOCK_BOOTTIME`: the leader granted it later than that,
//! so the agent's lease always ends before the leader's idea of it (the leader waits
//! P(1+rho)+m after its last grant before promoting anyone else). `CLOCK_BOOTTIME` keeps counting
//! while the host is suspended, unlike `Instant` (CLOCK_MONOTONIC), so a host that wakes up finds
//! its lease gone rather than seemingly intact.
//!
//! The guard checks every `lease.check_interval_ms`. A server that may be running as a primary
//! (observed as one, or running without answering and not known to be a standby: an agent that
//! cannot see its server assumes the worst) is fenced (stopped immediately, killed if it does not
//! stop) unless the agent can prove a lease at the current epoch, whatever it remembers or forgot
//! (DESIGN.md point 1). So it is fenced when:
//! - its lease has less than `lease.fence_lead_ms` left, so that the stop finishes before the
//!   lease ends; at epoch 0 (an agent that knows no epoch, its cluster not adopted or its state
//!   directory lost) the lease is the leader's word that the cluster is not adopted, asked for
//!   like any lease; only during `lease.start_grace_ms` after its start, before any word, does
//!   such an agent wait instead;
//! - the accepted target state makes another member primary (a stale primary);
//! - the epoch file is unreadable;
//! - a check ran late by more than the fence lead, or the boot-time clock jumped past the
//!   monotonic one (the host was suspended): fence first, ask after;
//! - the watchdog is `required` and none can be armed.
//!
//! While a start or promote of a primary is under way (`opening.rs`), the server counts as a
//! possible primary whatever the observations say, until one made after it ended: so the
//! watchdog stays armed through it and a lease that runs short meanwhile fences it.
//!
//! The lease is also written to `state_dir/lease` with the kernel's boot id, so that an agent
//! restarted on the same boot keeps the lease it held; after a reboot (a new boot id), or with no
//! such file, an agent that has seen an epoch holds no lease and a primary it finds is fenced.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::config::LeaseConfig;
use crate::drivers::{now_ms, DatabaseDriver, DbStatus};
use crate::metrics::AgentMetrics;
use crate::target::Target;
use crate::watchdog::SharedWatchdog;

pub use triad_proto::clock::boot_ms;
use triad_proto::clock::{boot_id, mono_ms};

/// What the agent holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeaseState {
    /// The member is under lease: a primary without one is fenced. False only until the first
    /// lease of an agent that has never seen an epoch (a cluster not adopted yet).
    pub armed: bool,
    /// The epoch the lease is for.
    pub epoch: u64,
    /// When it ends, on `CLOCK_BOOTTIME` (0: none held).
    pub until_boot_ms: u64,
    /// P, as the leader last granted it.
    pub period_ms: u64,
    /// The lease held came from the vouch set (failsafe), not from the controllers; and who.
    pub failsafe: bool,
    pub vouched_by: Vec<String>,
    /// Why and when (wall clock, ms) the guard last fenced.
    pub fenced_reason: String,
    pub fenced_ms: u64,
    /// The server has not been seen running since that fence: it is stopped because of it (and
    /// the leader may start it again, `brain/restart.rs`), not because it crashed.
    pub stopped_by_fence: bool,
    pub fence_done_ms: u64,
    /// The lease was given up at this epoch (a failover's `ReleaseLease`), at this time on
    /// `CLOCK_BOOTTIME`: grants at that epoch for requests sent before it are ignored (0: none).
    pub released_epoch: u64,
    pub released_at_boot_ms: u64,
    /// A start or promote of a primary is under way (`opening.rs`), and when (wall clock, ms) the
    /// last one ended: until an observation made after that end, the server is treated as a
    /// possible primary whatever the observations say (in recovery, stopped), so the guard keeps
    /// the watchdog armed and fences it if the lease runs out before it opens.
    pub opening: bool,
    pub opening_began_ms: u64,
    pub opening_ended_ms: u64,
}

impl LeaseState {
    /// Whether an opening covers an observation made at `observed_ms` (see the field).
    pub fn opening_covers(&self, observed_ms: u64) -> bool {
        self.opening || observed_ms <= self.opening_ended_ms
    }

    /// Milliseconds left at `epoch` (-1: none).
    pub fn remaining_ms(&self, epoch: u64, now_boot: u64) -> i64 {
        if self.epoch != epoch || self.until_boot_ms == 0 {
            return -1;
        }
        (self.until_boot_ms as i64 - now_boot as i64).max(-1)
    }
}

/// The lease, shared by the links (which renew it) and the guard (which enforces it).
pub struct Lease {
    state: Mutex<LeaseState>,
    file: PathBuf,
    /// Orders the writes of the lease file: the number of the newest state taken (under `state`)
    /// and, under this lock, of the newest written. The guard never takes it, so a slow disk
    /// cannot make a guard tick late (issue 16, item 4): the file is written after `state` is
    /// let go.
    taken: std::sync::atomic::AtomicU64,
    written: Mutex<u64>,
    /// When (boot-time ms) a stream first named a leader; 0 until then. The start grace of an
    /// agent that knows no epoch counts from then if that is later than its start.
    leader_known_boot_ms: std::sync::atomic::AtomicU64,
    boot_id: String,
    /// Held by whatever starts the server as a primary (after checking the lease under it) and by
    /// [`Lease::release`]'s caller (from its look at the server until the release): so a failover
    /// told "stopped, released" knows no start was under way behind that answer.
    start_gate: tokio::sync::Mutex<()>,
}

const MAGIC: &str = "triad-lease v1";

impl Lease {
    /// Reads `state_dir/lease`. `adopted` (the agent has persisted an epoch) arms the lease at
    /// once: a primary found now must hold a lease, whatever happened while no agent ran.
    pub fn open(state_dir: &Path, adopted: bool) -> Lease {
        let file = state_dir.join("lease");
        let boot_id = boot_id();
        let mut st = LeaseState { armed: adopted, ..Default::default() };
        if let Ok(text) = std::fs::read_to_string(&file) {
            let fields: Vec<&str> = text.lines().collect();
            if let [MAGIC, boot, epoch, until, period] = fields[..] {
                let num = |s: &str, k: &str| s.strip_prefix(k).and_then(|v| v.parse::<u64>().ok());
                if boot.strip_prefix("boot ") == Some(boot_id.as_str()) {
                    if let (Some(e), Some(u), Some(p)) =
                        (num(epoch, "epoch "), num(until, "until "), num(period, "period "))
                    {
                        st = LeaseState { armed: true, epoch: e, until_boot_ms: u, period_ms: p, ..st };
                        // Only a release writes `until 0`: it holds across a restart of the agent.
                        if u == 0 {
                            (st.released_epoch, st.released_at_boot_ms) = (e, boot_ms());
                        }
                    }
                }
            }
        }
        if st.until_boot_ms > boot_ms() {
            tracing::info!(
                epoch = st.epoch,
                left_ms = st.until_boot_ms - boot_ms(),
                "kept the lease held before a restart"
            );
        }
        Lease {
            state: Mutex::new(st),
            file,
            taken: std::sync::atomic::AtomicU64::new(0),
            written: Mutex::new(0),
            leader_known_boot_ms: std::sync::atomic::AtomicU64::new(0),
            boot_id,
            start_gate: tokio::sync::Mutex::new(()),
        }
    }

    /// A stream named a leader: the first time counts (see the field).
    pub fn leader_known(&self) {
        let _ = self.leader_known_boot_ms.compare_exchange(
            0,
            boot_ms(),
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
        );
    }

    /// When the agent's start grace begins: its start, or the moment a leader was first known
    /// if later (a deployment whose controllers elect slowly on a loaded host has had nobody to
    /// answer until then; one with no leader at all keeps the grace from its start).
    fn grace_from(&self, started_boot: u64) -> u64 {
        started_boot.max(self.leader_known_boot_ms.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// See the field: take it before looking at the lease to start a primary, or to release it.
    pub fn start_gate(&self) -> &tokio::sync::Mutex<()> {
        &self.start_gate
    }

    /// Gives up the lease at `epoch` for good (DESIGN.md point 4: the failover's skip of the
    /// wait): nothing held is counted any more, a grant answering a request sent before now is
    /// ignored, and the record outlives a restart of the agent. Only a grant for a request sent
    /// from now on (which the leader refuses while it fails over) lets this member start again.
    /// The caller holds the start gate and has seen the server stopped.
    pub fn release(&self, epoch: u64) {
        let mut st = self.state.lock().expect("lease lock poisoned");
        st.epoch = st.epoch.max(epoch);
        st.armed = true;
        st.until_boot_ms = 0;
        st.failsafe = false;
        st.vouched_by.clear();
        (st.released_epoch, st.released_at_boot_ms) = (epoch, boot_ms());
        self.persist(st);
    }

    /// A grant at `epoch` for `period_ms` from `sent_boot_ms`, when the request left this agent.
    pub fn granted(&self, epoch: u64, sent_boot_ms: u64, period_ms: u64) {
        let mut st = self.state.lock().expect("lease lock poisoned");
        if epoch < st.epoch || (epoch <= st.released_epoch && sent_boot_ms <= st.released_at_boot_ms) {
            return;
        }
        let until = sent_boot_ms + period_ms;
        if epoch > st.epoch || until > st.until_boot_ms {
            st.epoch = epoch;
            st.until_boot_ms = until;
        }
        st.period_ms = period_ms;
        // A lease at epoch 0 is the word that the cluster is not adopted yet: the member is not
        // under a primary's lease for that (the target state that adopts it gives the first).
        st.armed |= epoch > 0;
        if st.failsafe {
            tracing::info!(epoch, "the controllers renew the lease again");
        }
        st.failsafe = false;
        st.vouched_by.clear();
        self.persist(st);
    }

    /// Every member of the vouch set vouched for this primary at `epoch`, for `period_ms` from
    /// `sent_boot_ms`, when the round's requests left (DESIGN.md, point 3). Extends a lease still
    /// held; never revives a lapsed one, since the guard fenced the server when it lapsed.
    pub fn vouched(&self, epoch: u64, sent_boot_ms: u64, period_ms: u64, by: Vec<String>) -> bool {
        let mut st = self.state.lock().expect("lease lock poisoned");
        if epoch != st.epoch || st.until_boot_ms <= sent_boot_ms || !st.armed {
            return false;
        }
        let until = sent_boot_ms + period_ms;
        if until <= st.until_boot_ms {
            return false;
        }
        if !st.failsafe {
            tracing::warn!(epoch, vouched_by = ?by, "failsafe: the controllers do not renew the lease; the vouch set does");
        }
        st.until_boot_ms = until;
        st.failsafe = true;
        st.vouched_by = by;
        self.persist(st);
        true
    }

    /// The first lease of a primary that has never held one (the cluster was just adopted):
    /// counted from `sent_boot_ms`, when the target state that carries it arrived (the leader
    /// sent it after a quorum round and counts it as a grant; the margin m covers its time in
    /// flight: DESIGN.md point 4); and no shorter than a lease still held at epoch 0,
    /// the controllers' word that the cluster was not adopted. That word is decided and recorded
    /// like any grant, so every failover waits for it to end too: it covers the member that the
    /// adoption names primary until then (without it, a first lease counted from a heartbeat
    /// that left a while ago ended at once on a loaded host, and the primary fenced at its
    /// adoption).
    pub fn first(&self, epoch: u64, period_ms: u64, sent_boot_ms: Option<u64>) {
        let mut st = self.state.lock().expect("lease lock poisoned");
        if st.armed {
            return;
        }
        let from_target = sent_boot_ms.filter(|_| period_ms > 0).map(|sent| sent + period_ms);
        let unadopted = (st.epoch == 0).then_some(st.until_boot_ms);
        let until_boot_ms = from_target.into_iter().chain(unadopted).max().unwrap_or(0);
        if until_boot_ms <= boot_ms() {
            return;
        }
        let period_ms = if period_ms > 0 { period_ms } else { st.period_ms };
        *st = LeaseState { armed: true, epoch, until_boot_ms, period_ms, ..st.clone() };
        tracing::info!(epoch, "under lease from now on");
        self.persist(st);
    }

    /// A copy of what is held.
    pub fn snapshot(&self) -> LeaseState {
        self.state.lock().expect("lease lock poisoned").clone()
    }

    /// A start or promote of a primary begins (see [`LeaseState::opening`]).
    pub fn begin_opening(&self) {
        let mut st = self.state.lock().expect("lease lock poisoned");
        st.opening = true;
        st.opening_began_ms = now_ms();
    }

    /// ... and has ended, opened or not.
    pub fn end_opening(&self) {
        let mut st = self.state.lock().expect("lease lock poisoned");
        st.opening = false;
        st.opening_ended_ms = now_ms();
    }

    fn record_fence(&self, reason: &str) {
        let mut st = self.state.lock().expect("lease lock poisoned");
        st.fenced_reason = reason.to_string();
        st.fenced_ms = now_ms();
    }

    /// The fence stopped the server (wall clock, ms, from now on).
    fn fence_done(&self) {
        let mut st = self.state.lock().expect("lease lock poisoned");
        st.stopped_by_fence = true;
        st.fence_done_ms = now_ms();
    }

    /// The server was seen running by an observation made at `observed_ms`: if that was after
    /// the fence, whatever stops it next is not the fence.
    pub fn seen_running(&self, observed_ms: u64) {
        let mut st = self.state.lock().expect("lease lock poisoned");
        if observed_ms > st.fence_done_ms {
            st.stopped_by_fence = false;
        }
    }

    /// Written on every grant, without fsync: it only has to survive the agent's process (the page
    /// cache outlives it); after a host crash the boot id differs and the file is void anyway.
    /// Taken under the state lock, written after it is let go, newest last: a state overtaken by
    /// a newer one before its turn is not written at all. Returns once the state given (or a newer
    /// one) is in the file, so a release is recorded before it is answered.
    fn persist(&self, st: std::sync::MutexGuard<'_, LeaseState>) {
        let text = format!(
            "{MAGIC}\nboot {}\nepoch {}\nuntil {}\nperiod {}\n",
            self.boot_id, st.epoch, st.until_boot_ms, st.period_ms
        );
        let number = self.taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        drop(st);
        let mut written = self.written.lock().expect("lease file lock poisoned");
        if *written >= number {
            return;
        }
        let tmp = self.file.with_extension("tmp");
        if let Err(e) = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, &self.file)) {
            tracing::warn!("cannot record the lease in {}: {e}", self.file.display());
        }
        *written = number;
    }
}

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

/// Why the guard fences now, with a short class for the metric's label; `None`: it need not.
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
            let opening = st.opening_covers(obs.as_ref().map(|o| o.observed_ms).unwrap_or(0));
            if !may_be_primary(obs.as_ref(), &last_role) && !opening {
                self.watchdog.lock().expect("watchdog lock poisoned").disarm("the server is not a primary");
                continue;
            }
            let wd_problem = self.watchdog.lock().expect("watchdog lock poisoned").keep_alive(st.period_ms);
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
    fn a_slow_lease_file_write_never_holds_what_the_guard_reads() {
        let dir = tempfile::tempdir().unwrap();
        let l = Arc::new(Lease::open(dir.path(), true));
        // A disk stalled in the middle of writing the file.
        let stalled = l.written.lock().unwrap();
        let renewing = {
            let l = l.clone();
            std::thread::spawn(move || l.granted(1, boot_ms(), 60_000))
        };
        // The guard's read answers meanwhile (on a thread of its own: were it to wait for the
        // disk, the test fails on its deadline rather than hang), and already sees the grant.
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = l.clone();
        std::thread::spawn(move || loop {
            if reader.snapshot().remaining_ms(1, boot_ms()) > 0 {
                let _ = tx.send(());
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        });
        rx.recv_timeout(Duration::from_secs(5)).expect("the guard's read waited for the disk");
        assert!(!renewing.is_finished(), "the renewal still waits for its write");
        drop(stalled);
        renewing.join().unwrap();
        let text = std::fs::read_to_string(dir.path().join("lease")).unwrap();
        assert!(text.contains("epoch 1\n"), "written once the disk answered: {text}");
    }

    #[test]
    fn at_its_adoption_a_primary_keeps_the_lease_it_held_at_epoch_0() {
        let dir = tempfile::tempdir().unwrap();
        let l = Lease::open(dir.path(), false);
        let now = boot_ms();
        l.granted(0, now, 1100);
        // The first lease's heartbeat left long ago: the word at epoch 0 still covers it.
        l.first(1, 1100, Some(now.saturating_sub(1000)));
        let st = l.snapshot();
        assert!(st.armed && st.epoch == 1 && st.until_boot_ms == now + 1100, "{st:?}");
        // With neither, no lease: the guard fences rather than trust nothing.
        let fresh = tempfile::tempdir().unwrap();
        let bare = Lease::open(fresh.path(), false);
        bare.first(1, 1100, None);
        assert!(!bare.snapshot().armed);
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

    #[test]
    fn the_start_grace_counts_from_the_first_leader_known_when_that_is_later() {
        let dir = tempfile::tempdir().unwrap();
        let l = Lease::open(dir.path(), false);
        let started = boot_ms();
        assert_eq!(l.grace_from(started), started, "no leader known: from the start");
        std::thread::sleep(Duration::from_millis(5));
        l.leader_known();
        let first = l.grace_from(started);
        assert!(first > started);
        std::thread::sleep(Duration::from_millis(5));
        l.leader_known();
        assert_eq!(l.grace_from(started), first, "only the first time counts");
    }

    #[test]
    fn a_lease_at_epoch_0_does_not_arm_the_member() {
        let dir = tempfile::tempdir().unwrap();
        let l = Lease::open(dir.path(), false);
        l.granted(0, boot_ms(), 1500);
        assert!(!l.snapshot().armed, "epoch 0 is the word that the cluster is not adopted");
        assert!(l.snapshot().remaining_ms(0, boot_ms()) > 1000);
        // The target state that adopts the cluster gives the first lease at epoch 1.
        l.first(1, 1500, Some(boot_ms()));
        let st = l.snapshot();
        assert!(st.armed && st.remaining_ms(1, boot_ms()) > 1000);
    }

    #[test]
    fn grants_count_from_the_send_time_and_survive_a_restart_on_the_same_boot() {
        let dir = tempfile::tempdir().unwrap();
        let l = Lease::open(dir.path(), true);
        assert_eq!(l.snapshot().remaining_ms(1, boot_ms()), -1, "an adopted agent starts without a lease");
        let sent = boot_ms();
        l.granted(1, sent, 60_000);
        l.granted(0, sent, 90_000); // an older epoch does not extend it
        assert_eq!(l.snapshot().until_boot_ms, sent + 60_000);
        drop(l);
        let again = Lease::open(dir.path(), true);
        assert_eq!(again.snapshot().until_boot_ms, sent + 60_000);
        std::fs::write(dir.path().join("lease"), "triad-lease v1\nboot other\nepoch 1\nuntil 99999999999\nperiod 1\n")
            .unwrap();
        let rebooted = Lease::open(dir.path(), true);
        assert_eq!(rebooted.snapshot().until_boot_ms, 0, "a lease from another boot is void");
        assert!(rebooted.snapshot().armed);
    }

    #[test]
    fn a_released_lease_is_gone_for_grants_sent_before_and_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let l = Lease::open(dir.path(), true);
        let before = boot_ms();
        l.granted(4, before, 60_000);
        // A grant answering an earlier request, still in flight, may arrive after the release.
        let in_flight = boot_ms();
        l.release(4);
        let st = l.snapshot();
        assert_eq!(st.remaining_ms(4, boot_ms()), -1, "nothing held is counted any more");
        l.granted(4, in_flight, 60_000);
        l.granted(4, before, 60_000);
        assert_eq!(l.snapshot().remaining_ms(4, boot_ms()), -1, "grants for requests sent before are ignored");
        assert!(!l.vouched(4, boot_ms(), 60_000, vec!["ndc".into()]), "a vouch never revives it");
        l.first(4, 60_000, Some(boot_ms()));
        assert_eq!(l.snapshot().remaining_ms(4, boot_ms()), -1, "nor a target state's first lease");
        drop(l);
        let again = Lease::open(dir.path(), true);
        let st = again.snapshot();
        assert_eq!((st.released_epoch, st.remaining_ms(4, boot_ms())), (4, -1), "the release outlives the agent");
        again.granted(4, in_flight, 60_000);
        assert_eq!(again.snapshot().remaining_ms(4, boot_ms()), -1);
        // A request sent after the release, granted (by a leader that is not failing over).
        let after = boot_ms() + 1;
        again.granted(4, after, 60_000);
        assert_eq!(again.snapshot().until_boot_ms, after + 60_000);
    }

    #[test]
    fn an_agent_never_adopted_is_unarmed_until_its_first_lease() {
        let dir = tempfile::tempdir().unwrap();
        let l = Lease::open(dir.path(), false);
        assert!(!l.snapshot().armed);
        l.first(1, 1500, Some(boot_ms()));
        let st = l.snapshot();
        assert!(st.armed && st.remaining_ms(1, boot_ms()) > 1000);
    }
}
