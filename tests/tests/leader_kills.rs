//! Issue 16, item 4: changes of leader never disturb a healthy primary. A short run of the
//! leader-kill soak (`tests/src/soak.rs`; the 100-kill run is the `leader_kill_soak` bench):
//! the Raft leader SIGKILLed five times under writes to dc, with the default timings.

use anyhow::{ensure, Result};
use triad_tests::Deployment;

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_leader_never_fences_fails_over_or_fails_a_write() -> Result<()> {
    let mut d = Deployment::with_postgres().await?;
    d.start_all().await?;
    d.wait_ready(true).await?;
    let report =
        triad_tests::soak::leader_kills(&mut d, 5, |k, ms| eprintln!("kill {k}: new leader in {ms:.0} ms")).await?;
    eprint!("{}", report.table());
    if !report.clean() {
        d.diagnose(&["agent-dc", "controller-1", "controller-2", "controller-3"])?;
    }
    ensure!(report.fences == 0.0, "dc was fenced {} times", report.fences);
    ensure!(report.epoch_changes == 0, "the epoch changed {} times", report.epoch_changes);
    ensure!(report.writes_failed == 0, "{} writes to dc failed", report.writes_failed);
    ensure!(report.writes_acked > 100, "only {} writes were acknowledged", report.writes_acked);
    Ok(())
}
