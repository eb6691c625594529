//! Opening a primary for writes, by a start or by a promotion, only under a lease valid at that
//! moment and with the watchdog armed first (DESIGN.md point 2; issue 16, item 2).
//!
//! A start of a primary (`pg_ctl start`, retried while its port is still taken) can take longer
//! than the lease it began under: started as a primary, the server would accept writes from the
//! moment it came up, lease or not. So a member stopped as a primary is started *in recovery*
//! (`DatabaseDriver::start_in_recovery`: it replays its own WAL and accepts no write), the lease
//! is looked at again once it is up, and only then is it opened (a promotion that keeps its
//! synchronous standbys). A lease that ended meanwhile leaves it stopped, as the primary it was.
//!
//! From the moment the opening begins until an observation made after it ended, the lease marks
//! it (`LeaseState::opening`): the guard treats the server as a possible primary whatever it looks
//! like (in recovery, stopped), keeps the watchdog petted, and fences it if the lease runs short
//! before the opening is done. So a promotion that finishes late (the last step, `pg_promote`,
//! cannot be taken back) finishes on a server the guard has already stopped, or under a lease.
//!
//! The watchdog is armed before any of it, so that an agent that hangs or dies half way cannot
//! leave an opened primary unguarded; in mode `required`, no watchdog means no opening.
//!
//! Everything here runs under the lease's start gate, so a failover told "stopped, lease
//! released" (`link/execute.rs`, `release_lease`) knows that no opening is under way behind it.

use std::sync::Arc;
use std::time::Instant;

use crate::drivers::DatabaseDriver;
use crate::error::{Error, Result};
use crate::safety::lease::{boot_ms, Lease};
use crate::safety::target::Target;
use crate::safety::watchdog::SharedWatchdog;

/// What an opening needs.
pub struct Opener {
    pub driver: Arc<dyn DatabaseDriver>,
    pub lease: Arc<Lease>,
    pub target: Arc<Target>,
    pub watchdog: SharedWatchdog,
    /// `lease.fence_lead_ms`: a lease with less than this left is about to be fenced.
    pub fence_lead_ms: u64,
}

/// What [`Opener::start`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// Started in recovery and opened, under a lease at the epoch.
    Opened,
    /// The member is not stopped as a primary (running, or a standby): nothing was done.
    NotStoppedAsPrimary,
}

/// How long the opening of a started member may take (its promotion normally takes
/// milliseconds; a member that does not open in this time is stopped again).
const OPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Opener {
    /// Whether a lease at `epoch` is held that the guard would not fence at once.
    fn holds_lease(&self, epoch: u64) -> bool {
        self.lease.snapshot().remaining_ms(epoch, boot_ms()) > self.fence_lead_ms as i64
    }

    /// Starts this member, if it is stopped as a primary, and opens it at `epoch`.
    pub async fn start(&self, epoch: u64) -> Result<Started> {
        let _gate = self.lease.start_gate().lock().await;
        if !self.driver.stopped_as_primary().await {
            return Ok(Started::NotStoppedAsPrimary);
        }
        if !self.holds_lease(epoch) {
            return Err(Error::NoLease { epoch, doing: "starting the primary" });
        }
        not_overtaken(&self.target, epoch)?;
        self.armed(|| async {
            let outcome = self.start_and_open(epoch).await;
            if let Err(e) = &outcome {
                tracing::error!(epoch, "the primary was not opened: {e}");
                // Whatever was started (in recovery, or half promoted) stops: a start that did
                // not end opened leaves nothing that could accept a write later.
                if let Err(e) = self.driver.stop_unopened().await {
                    tracing::error!("stopping the member that was not opened failed: {e}");
                }
            }
            outcome
        })
        .await?;
        Ok(Started::Opened)
    }

    async fn start_and_open(&self, epoch: u64) -> Result<()> {
        let began = Instant::now();
        self.driver.start_in_recovery().await.map_err(Error::Driver)?;
        // The start may have outlasted the lease it began under: look again before opening.
        if !self.holds_lease(epoch) {
            let ms = began.elapsed().as_millis() as u64;
            return Err(Error::LeaseEndedDuringStart { epoch, ms });
        }
        not_overtaken(&self.target, epoch)?;
        self.driver.open_started(Instant::now() + OPEN_TIMEOUT).await.map_err(Error::Driver)
    }

    /// Promotes this standby at `epoch` under a lease at it, waiting for `synchronous` from its
    /// first commit; gives up at `deadline`. The caller has waited for the lease and the vouch
    /// hold; both the lease and the epoch are looked at again here, under the start gate.
    pub async fn promote(&self, epoch: u64, synchronous: &[String], deadline: Instant) -> Result<()> {
        let _gate = self.lease.start_gate().lock().await;
        if !self.holds_lease(epoch) {
            return Err(Error::NoLease { epoch, doing: "promoting" });
        }
        still_current(&self.target, epoch)?;
        self.armed(|| async { self.driver.promote(synchronous, deadline).await.map_err(Error::Driver) }).await
    }

    /// Runs `open` with the watchdog armed first and the opening marked on the lease meanwhile.
    async fn armed<F, Fut>(&self, open: F) -> Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let period_ms = self.lease.snapshot().period_ms;
        {
            // The opening is marked before the watchdog is armed, both under the watchdog's
            // lock, which the guard holds while it decides to disarm: armed the other way
            // round, a guard tick between the two saw "not a primary, nothing opening" and
            // disarmed it again, and the start ran unguarded (seen in lease_covers_start).
            let mut watchdog = self.watchdog.lock().expect("watchdog lock poisoned");
            self.lease.begin_opening();
            if let Err(e) = watchdog.arm(period_ms) {
                self.lease.end_opening();
                return Err(Error::Watchdog(e));
            }
        }
        let outcome = open().await;
        self.lease.end_opening();
        outcome
    }
}

/// A start at `epoch` must not run once a newer epoch is persisted, or once the accepted target
/// names another primary at `epoch` or later (the guard would fence it anyway).
fn not_overtaken(target: &Target, epoch: u64) -> Result<()> {
    let current = target.current();
    let persisted = target.epoch();
    let other = current.as_ref().filter(|t| t.epoch >= epoch && t.role != "primary");
    if persisted != Some(epoch) || other.is_some() {
        return Err(Error::NotCurrent(format!(
            "epoch {epoch} is no longer current (persisted {persisted:?}, target {:?}): not starting the primary",
            current.map(|t| (t.epoch, t.role, t.primary))
        )));
    }
    Ok(())
}

/// A promote's epoch, checked again after its waits: still the persisted one, and the accepted
/// target still makes this member the primary at it. Otherwise a newer epoch overtook it (a
/// rollback, a failover elsewhere) and it must not promote.
pub fn still_current(target: &Target, epoch: u64) -> Result<()> {
    let current = target.current();
    match (target.epoch(), current.as_ref()) {
        (Some(e), Some(t)) if e == epoch && t.epoch == epoch && t.role == "primary" => Ok(()),
        (persisted, _) => Err(Error::NotCurrent(format!(
            "epoch {epoch} is no longer current (persisted {persisted:?}, target {:?}): not promoting",
            current.map(|t| (t.epoch, t.role))
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::{DbStatus, SimulatedDriver};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;
    use triad_proto::v1::Assignment;

    /// A member stopped as a primary whose start in recovery takes `start_ms`, recording what
    /// the opener asked of it and what the watchdog file held when the start began.
    struct SlowStart {
        start_ms: u64,
        lease: Arc<Lease>,
        watchdog_file: std::path::PathBuf,
        calls: Mutex<Vec<String>>,
        running: AtomicBool,
    }

    impl SlowStart {
        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
        fn call(&self, what: &str) {
            self.calls.lock().unwrap().push(what.to_string());
        }
    }

    #[async_trait::async_trait]
    impl DatabaseDriver for SlowStart {
        fn kind(&self) -> &'static str {
            "slow-start"
        }

        fn endpoint_id(&self, endpoint: &str) -> String {
            endpoint.into()
        }
        async fn observe(&self) -> DbStatus {
            DbStatus::default()
        }
        async fn write_canary(&self, _: u64, _: u64, _: &str) -> std::result::Result<(), crate::drivers::DriverError> {
            Ok(())
        }
        async fn stop_primary(&self) -> std::result::Result<u64, crate::drivers::DriverError> {
            Ok(0)
        }
        async fn promote(&self, _: &[String], _: Instant) -> std::result::Result<(), crate::drivers::DriverError> {
            self.call("promote");
            Ok(())
        }
        async fn rejoin(&self, _: &str) -> std::result::Result<String, crate::drivers::DriverError> {
            Ok(String::new())
        }
        async fn set_synchronous(&self, _: &[String]) -> std::result::Result<(), crate::drivers::DriverError> {
            Ok(())
        }
        async fn restart(&self) -> std::result::Result<(), crate::drivers::DriverError> {
            self.call("restart");
            Ok(())
        }
        async fn start_in_recovery(&self) -> std::result::Result<(), crate::drivers::DriverError> {
            let pets = std::fs::read_to_string(&self.watchdog_file).unwrap_or_default();
            let opening = self.lease.snapshot().opening;
            self.call(&format!("start_in_recovery watchdog={pets:?} opening={opening}"));
            tokio::time::sleep(Duration::from_millis(self.start_ms)).await;
            self.running.store(true, Ordering::SeqCst);
            Ok(())
        }
        async fn open_started(&self, _: Instant) -> std::result::Result<(), crate::drivers::DriverError> {
            self.call("open_started");
            Ok(())
        }
        async fn stop_unopened(&self) -> std::result::Result<(), crate::drivers::DriverError> {
            self.call("stop_unopened");
            self.running.store(false, Ordering::SeqCst);
            Ok(())
        }
        async fn follow(&self, _: &str) -> std::result::Result<(), crate::drivers::DriverError> {
            Ok(())
        }
        async fn stopped_as_primary(&self) -> bool {
            !self.running.load(Ordering::SeqCst)
        }
        async fn fence(&self) -> std::result::Result<(), crate::drivers::DriverError> {
            Ok(())
        }
    }

    struct Setup {
        _dir: tempfile::TempDir,
        driver: Arc<SlowStart>,
        opener: Opener,
    }

    /// An adopted member, primary at epoch 3 by its target state, whose lease at epoch 3 has
    /// `lease_ms` left; its watchdog a regular file (`mode`).
    fn setup(lease_ms: u64, start_ms: u64, mode: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let target = Arc::new(Target::open(dir.path(), Vec::new()).unwrap());
        let primary = Assignment {
            cluster: "customs".into(),
            member: "dc".into(),
            epoch: 3,
            log_index: 10,
            role: "primary".into(),
            primary: "dc".into(),
            ..Default::default()
        };
        target.receive(primary);
        assert_eq!(target.epoch(), Some(3));
        let lease = Arc::new(Lease::open(dir.path(), true));
        lease.granted(3, boot_ms(), lease_ms);
        let watchdog_file = dir.path().join("watchdog");
        std::fs::write(&watchdog_file, "").unwrap();
        // `required-missing`: mode `required`, and no device where it is configured.
        let (watchdog, watchdog_device) = match mode {
            "required-missing" => ("required".to_string(), dir.path().join("none")),
            _ => (mode.to_string(), watchdog_file.clone()),
        };
        let cfg = crate::config::LeaseConfig { watchdog, watchdog_device, ..Default::default() };
        let driver = Arc::new(SlowStart {
            start_ms,
            lease: lease.clone(),
            watchdog_file,
            calls: Mutex::new(Vec::new()),
            running: AtomicBool::new(false),
        });
        let opener = Opener {
            driver: driver.clone(),
            lease,
            target,
            watchdog: crate::safety::watchdog::Watchdog::shared(&cfg),
            fence_lead_ms: 50,
        };
        Setup { _dir: dir, driver, opener }
    }

    #[tokio::test]
    async fn a_primary_is_started_in_recovery_with_the_watchdog_armed_then_opened() {
        let s = setup(60_000, 0, "automatic");
        assert_eq!(s.opener.start(3).await.unwrap(), Started::Opened);
        assert_eq!(
            s.driver.calls(),
            vec!["start_in_recovery watchdog=\"1\" opening=true".to_string(), "open_started".into()],
            "armed and marked before the start, opened after it"
        );
        let st = s.opener.lease.snapshot();
        assert!(!st.opening && st.opening_ended_ms > 0 && st.opening_covers(st.opening_ended_ms));
        // Already running: nothing to start.
        assert_eq!(s.opener.start(3).await.unwrap(), Started::NotStoppedAsPrimary);
    }

    /// The bug of issue 16, item 2: a start that outlasts its lease must not open the server.
    #[tokio::test]
    async fn a_start_that_outlasts_its_lease_is_stopped_again_not_opened() {
        let s = setup(300, 400, "automatic");
        let e = s.opener.start(3).await.unwrap_err();
        assert!(matches!(e, Error::LeaseEndedDuringStart { epoch: 3, .. }), "{e}");
        let calls = s.driver.calls();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(calls[1], "stop_unopened", "stopped as the primary it was, never opened: {calls:?}");
        assert!(!s.opener.lease.snapshot().opening);
    }

    #[tokio::test]
    async fn nothing_starts_without_a_lease_a_current_epoch_or_a_required_watchdog() {
        let s = setup(30, 0, "automatic");
        assert!(matches!(s.opener.start(3).await, Err(Error::NoLease { epoch: 3, .. })), "less than the fence lead");
        let s = setup(60_000, 0, "automatic");
        assert!(matches!(s.opener.start(2).await, Err(Error::NoLease { .. })), "a lease at another epoch");
        let newer =
            Assignment { epoch: 4, log_index: 20, role: "standby".into(), primary: "ndc".into(), ..Default::default() };
        s.opener.target.receive(newer);
        s.opener.lease.granted(4, boot_ms(), 60_000);
        assert!(matches!(s.opener.start(4).await, Err(Error::NotCurrent(_))), "another member is primary");
        let s = setup(60_000, 0, "required-missing");
        assert!(matches!(s.opener.start(3).await, Err(Error::Watchdog(_))));
        assert!(s.driver.calls().is_empty(), "nothing was started: {:?}", s.driver.calls());
    }

    #[tokio::test]
    async fn a_promote_arms_the_watchdog_first_and_rechecks_lease_and_epoch() {
        let s = setup(60_000, 0, "automatic");
        let deadline = Instant::now() + Duration::from_secs(5);
        s.opener.promote(3, &[], deadline).await.unwrap();
        assert_eq!(s.driver.calls(), vec!["promote".to_string()]);
        assert_eq!(std::fs::read_to_string(&s.driver.watchdog_file).unwrap(), "1", "armed before the promote");
        assert!(matches!(s.opener.promote(2, &[], deadline).await, Err(Error::NoLease { .. })));
        let newer =
            Assignment { epoch: 4, log_index: 20, role: "standby".into(), primary: "ndc".into(), ..Default::default() };
        s.opener.target.receive(newer);
        s.opener.lease.granted(4, boot_ms(), 60_000);
        assert!(matches!(s.opener.promote(4, &[], deadline).await, Err(Error::NotCurrent(_))));
        assert_eq!(s.driver.calls().len(), 1, "neither refused promote reached the driver");
    }

    #[tokio::test]
    async fn the_simulated_member_opens_like_a_real_one() {
        let sim = SimulatedDriver::new("customs", "dc", true);
        sim.fence().await.unwrap();
        sim.start_in_recovery().await.unwrap();
        let o = sim.observe().await;
        assert!(o.up && o.role == "standby", "in recovery before it opens");
        sim.open_started(Instant::now()).await.unwrap();
        assert_eq!(sim.observe().await.role, "primary");
    }
}
