//! The primary's lease, and the rules the guard (`guard.rs`) enforces with it: it fences the
//! database when the lease is about to lapse (DESIGN.md, "Safety of role changes", point 2).
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

use std::path::Path;
use std::sync::Mutex;

use super::disk::LeaseFile;
use crate::drivers::now_ms;

use triad_proto::clock::boot_id;
pub use triad_proto::clock::boot_ms;

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
    /// The number of the newest state taken (under `state`) for the file, which its own thread
    /// writes, newest last (`disk.rs`): neither the guard nor a renewal waits for the disk
    /// (issue 16, item 4).
    taken: std::sync::atomic::AtomicU64,
    file: LeaseFile,
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
            taken: std::sync::atomic::AtomicU64::new(0),
            file: LeaseFile::new(file),
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
    pub(crate) fn grace_from(&self, started_boot: u64) -> u64 {
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
    /// True once the release is in the lease file; false when it could not be written (the
    /// caller must then not answer that the lease is released: a restarted agent would read the
    /// lease it held before).
    pub fn release(&self, epoch: u64) -> bool {
        let mut st = self.state.lock().expect("lease lock poisoned");
        st.epoch = st.epoch.max(epoch);
        st.armed = true;
        st.until_boot_ms = 0;
        st.failsafe = false;
        st.vouched_by.clear();
        (st.released_epoch, st.released_at_boot_ms) = (epoch, boot_ms());
        // In the file before it is answered: it must outlive a restart of the agent.
        let number = self.persist(st);
        self.file.wait_written(number)
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

    pub(crate) fn record_fence(&self, reason: &str) {
        let mut st = self.state.lock().expect("lease lock poisoned");
        st.fenced_reason = reason.to_string();
        st.fenced_ms = now_ms();
    }

    /// The fence stopped the server (wall clock, ms, from now on).
    pub(crate) fn fence_done(&self) {
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

    /// Hands the state to the file's writer once `state` is let go, and returns its number (see
    /// [`LeaseFile::wait_written`]). Written on every grant, without fsync (`disk.rs` says why).
    fn persist(&self, st: std::sync::MutexGuard<'_, LeaseState>) -> u64 {
        let text = format!(
            "{MAGIC}\nboot {}\nepoch {}\nuntil {}\nperiod {}\n",
            self.boot_id, st.epoch, st.until_boot_ms, st.period_ms
        );
        let number = self.taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        drop(st);
        self.file.write(number, text);
        number
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn neither_a_renewal_nor_the_guard_waits_for_a_stalled_lease_file() {
        let dir = tempfile::tempdir().unwrap();
        // A disk that does not answer: the temporary file is a named pipe nobody reads, so the
        // writer blocks opening it.
        let tmp = dir.path().join("lease.tmp");
        let made = std::process::Command::new("mkfifo").arg(&tmp).status().unwrap();
        assert!(made.success());
        let l = Arc::new(Lease::open(dir.path(), true));
        // Renewals return at once (on a thread of their own: were one to wait for the disk,
        // the test fails on its deadline rather than hang), and the guard's read sees them.
        let (tx, rx) = std::sync::mpsc::channel();
        let renewing = l.clone();
        std::thread::spawn(move || {
            for _ in 0..3 {
                renewing.granted(1, boot_ms(), 60_000);
            }
            let _ = tx.send(renewing.snapshot().remaining_ms(1, boot_ms()));
        });
        let left = rx.recv_timeout(Duration::from_secs(5)).expect("a renewal waited for the disk");
        assert!(left > 59_000, "{left}");
        // The disk answers: the newest state reaches the file.
        let drained = std::thread::spawn(move || std::fs::read(&tmp).unwrap());
        drained.join().unwrap();
        assert!(l.release(1), "the release is in the file");
        let text = std::fs::read_to_string(dir.path().join("lease")).unwrap();
        assert!(text.contains("epoch 1\nuntil 0\n"), "a release is in the file once answered: {text}");
    }

    #[test]
    fn a_release_that_cannot_be_written_says_so() {
        let dir = tempfile::tempdir().unwrap();
        // The temporary file cannot be made: it is a directory.
        std::fs::create_dir(dir.path().join("lease.tmp")).unwrap();
        let l = Lease::open(dir.path(), true);
        l.granted(1, boot_ms(), 60_000);
        assert!(!l.release(1), "a release not in the file is not reported as done");
        assert_eq!(l.snapshot().remaining_ms(1, boot_ms()), -1, "in memory the lease is given up all the same");
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
        assert!(l.release(4));
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
