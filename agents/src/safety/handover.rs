//! Restarting the agent in place, its primary serving on (issue 20, item 5: an upgrade with no
//! write error). SIGTERM stops a primary before the agent exits, since nothing would fence it
//! afterwards (`lib.rs`, `stop_cleanly`). SIGUSR2 hands the primary over to the next agent on the
//! same host instead, and the guard of DESIGN.md point 2 never lapses:
//!
//! - the leaving agent does it only while it holds a lease at the current epoch with more than
//!   [`MIN_LEFT_MS`] beyond `lease.fence_lead_ms`; otherwise it stops the primary as on SIGTERM;
//! - it writes `state_dir/handover` (the moment, on `CLOCK_BOOTTIME`, by which the lease needs
//!   fencing, and a token) and leaves the watchdog armed (not the magic close: a host
//!   whose next agent never comes is reset, in production);
//! - it starts a small guard process (`triad-agent --handover-guard`, in its own process group)
//!   that fences the server at that moment unless the next agent took the primary over first;
//! - the next agent, on the same boot, restores the lease it persisted (`lease.rs`), starts its own
//!   guard, then takes over by removing the file; the guard process, seeing it gone, exits.
//!
//! The next agent starting later than the lease allows finds its server fenced, exactly as after
//! a crash: it is then started again by the leader under a new lease (`brain/restart.rs`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::drivers::DatabaseDriver;
use crate::safety::lease::{boot_ms, Lease};

/// The file under the state directory.
pub const FILE: &str = "handover";

/// How much lease beyond the fence lead the leaving agent needs to hand over: the next agent's
/// start and first renewal must fit in it.
pub const MIN_LEFT_MS: i64 = 500;

/// How often the guard process looks.
const POLL: Duration = Duration::from_millis(20);

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// A handover under way: the `CLOCK_BOOTTIME` moment by which the server must be fenced, and the
/// token of the agent that left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    pub fence_at_boot_ms: u64,
    pub token: u32,
}

impl Handover {
    fn encode(&self) -> String {
        format!("{} {}\n", self.fence_at_boot_ms, self.token)
    }

    fn decode(text: &str) -> Option<Handover> {
        let mut f = text.split_whitespace();
        Some(Handover { fence_at_boot_ms: f.next()?.parse().ok()?, token: f.next()?.parse().ok()? })
    }

    /// The handover recorded in `state_dir`, if any (an unreadable one counts as none: the
    /// guard process then fences at once, the safe side).
    pub fn read(state_dir: &Path) -> Option<Handover> {
        std::fs::read_to_string(path(state_dir)).ok().as_deref().and_then(Handover::decode)
    }
}

/// Why the leaving agent does not hand over.
#[derive(Debug, thiserror::Error)]
pub enum NotHandedOver {
    #[error("no lease at epoch {epoch} with more than {need} ms left ({left} ms): stopping the server instead")]
    LeaseTooShort { epoch: u64, left: i64, need: i64 },
    #[error("the handover file could not be written: {0}")]
    Write(std::io::Error),
}

/// Records a handover of the primary at `epoch` if the lease allows it; returns it.
pub fn leave(state_dir: &Path, lease: &Lease, epoch: u64, fence_lead_ms: u64) -> Result<Handover, NotHandedOver> {
    let now = boot_ms();
    let left = lease.snapshot().remaining_ms(epoch, now);
    let need = fence_lead_ms as i64 + MIN_LEFT_MS;
    if left <= need {
        return Err(NotHandedOver::LeaseTooShort { epoch, left, need });
    }
    let h = Handover { fence_at_boot_ms: now + (left - fence_lead_ms as i64) as u64, token: std::process::id() };
    write_atomically(&path(state_dir), &h.encode()).map_err(NotHandedOver::Write)?;
    Ok(h)
}

/// Temporary file, then rename: the guard process never reads half a file. No fsync: like the
/// lease file, it only has to outlive this process on the same boot (after a reboot there is no
/// lease to hand over, and no server running).
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// The next agent takes the primary over (its own guard runs): the guard process exits.
pub fn take_over(state_dir: &Path) {
    match std::fs::remove_file(path(state_dir)) {
        Ok(()) => tracing::info!("took over the primary left running by the previous agent"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("the handover file could not be removed: {e}"),
    }
}

/// Starts the guard process: this binary again, with the same arguments and `--handover-guard`,
/// in its own process group so that whatever stops this agent's group does not stop it.
pub fn spawn_guard() -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()?;
    std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .arg("--handover-guard")
        .stdin(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .map(drop)
}

/// What the guard process did.
#[derive(Debug, PartialEq, Eq)]
pub enum Guarded {
    /// The next agent took over in time.
    TakenOver,
    /// The moment came first: the server was fenced.
    Fenced,
}

/// The guard process: waits for the next agent to take over, else fences at the recorded moment.
pub async fn guard(state_dir: &Path, driver: &dyn DatabaseDriver) -> Result<Guarded, crate::drivers::DriverError> {
    let Some(h) = Handover::read(state_dir) else {
        // Gone already (taken over), or unreadable: only the latter needs the fence, and a
        // fence of a server that the next agent already guards is merely an outage.
        return if path(state_dir).exists() { fence(state_dir, driver).await } else { Ok(Guarded::TakenOver) };
    };
    loop {
        if Handover::read(state_dir).is_none_or(|now| now != h) {
            return Ok(Guarded::TakenOver);
        }
        if boot_ms() >= h.fence_at_boot_ms {
            tracing::warn!("no agent took the primary over before its lease runs out: fencing it");
            return fence(state_dir, driver).await;
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn fence(state_dir: &Path, driver: &dyn DatabaseDriver) -> Result<Guarded, crate::drivers::DriverError> {
    driver.fence().await?;
    let _ = std::fs::remove_file(path(state_dir));
    Ok(Guarded::Fenced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::SimulatedDriver;

    fn lease_for(dir: &Path, epoch: u64, period_ms: u64) -> Lease {
        let lease = Lease::open(dir, true);
        lease.granted(epoch, boot_ms(), period_ms);
        lease
    }

    #[test]
    fn a_handover_needs_enough_lease_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let short = lease_for(dir.path(), 3, 600);
        let e = leave(dir.path(), &short, 3, 500).expect_err("600 ms is not enough beside a 500 ms lead");
        assert!(e.to_string().contains("stopping the server instead"), "{e}");
        assert!(Handover::read(dir.path()).is_none(), "nothing recorded");
        let other_epoch = lease_for(dir.path(), 2, 10_000);
        assert!(leave(dir.path(), &other_epoch, 3, 500).is_err(), "a lease at another epoch counts for nothing");
        let long = lease_for(dir.path(), 3, 10_000);
        let h = leave(dir.path(), &long, 3, 500).expect("handed over");
        assert_eq!(Handover::read(dir.path()), Some(h.clone()));
        assert!(h.fence_at_boot_ms <= boot_ms() + 9_500, "fenced a lead before the lease ends: {h:?}");
    }

    #[tokio::test]
    async fn the_guard_exits_when_the_next_agent_takes_over_and_fences_otherwise() {
        let dir = tempfile::tempdir().expect("tempdir");
        let driver = SimulatedDriver::new("customs", "dc", true);
        let lease = lease_for(dir.path(), 1, 10_000);
        leave(dir.path(), &lease, 1, 500).expect("handed over");
        let state = dir.path().to_path_buf();
        let taker = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            take_over(&state);
        });
        assert_eq!(guard(dir.path(), &driver).await.ok(), Some(Guarded::TakenOver));
        taker.await.expect("the next agent");
        assert!(driver.observe().await.up, "the server serves on");

        // Nobody takes over: fenced at the moment recorded (here: the lease almost spent; a
        // fresh state directory, since a lease persisted in the first keeps its longer grant).
        let dir = tempfile::tempdir().expect("tempdir");
        let lease = lease_for(dir.path(), 1, 800);
        leave(dir.path(), &lease, 1, 200).expect("handed over");
        let t = std::time::Instant::now();
        assert_eq!(guard(dir.path(), &driver).await.ok(), Some(Guarded::Fenced));
        assert!(t.elapsed() < Duration::from_millis(800), "before the lease ended: {:?}", t.elapsed());
        assert!(!driver.observe().await.up, "fenced");
        assert!(Handover::read(dir.path()).is_none());
    }
}
