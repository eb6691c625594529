//! The old primary's host restarted (DESIGN.md point 8): only the agent starts PostgreSQL, and a
//! member found stopped as a primary is started only once a lease at an epoch naming it primary
//! confirms its role. Real PostgreSQL, real processes; a watcher polls the old primary's server
//! throughout and notes the first moment it was writable.
//!
//! - After a failover: the old primary's agent comes back, its server never accepts a write, and
//!   the leader rejoins it as a standby and makes it synchronous again.
//! - With no failover (automatic failover off) and every controller down: the restarted agent
//!   leaves the server stopped for three lease periods; once the controllers are back, it starts
//!   it as the primary at the same epoch, and every acknowledged write is still there.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use triad_tests::workload::{kill_postgres, Workload, WritableWatch};
use triad_tests::{wait_for, Deployment};

/// Each test runs three controllers, three agents and three PostgreSQL servers; two at once on a
/// two-core machine starve Raft's heartbeats and stretch the timings, so these run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The host of dc lost: its agent and its server SIGKILLed. A reboot voids any lease the agent
/// persisted (a new boot id); on this machine's single boot the file is removed instead.
fn lose_dc_host(d: &mut Deployment) -> Result<()> {
    let dc_data = d.pg.as_ref().unwrap().member("dc")?.dir.join("data");
    d.kill("agent-dc")?;
    kill_postgres(&dc_data)?;
    let lease = d.dir().join("data/agent-dc/lease");
    if lease.exists() {
        std::fs::remove_file(lease)?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_failover_the_restarted_old_primary_never_takes_a_write_and_rejoins() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let mut d = Deployment::with_postgres().await?;
    d.start_all().await?;
    d.wait_ready(true).await?;
    let conninfos = d.conninfos()?;
    let load = Workload::start(conninfos.clone(), 50).await?;

    lose_dc_host(&mut d)?;
    d.wait_primary("ndc", 2, &["controller-1", "controller-2", "controller-3", "agent-ndc"]).await?;
    load.more("writes on ndc", 50, Duration::from_secs(20)).await?;

    let watch = WritableWatch::start(conninfos[0].clone());
    d.start_agent("dc")?;
    d.wait_synchronous_again("dc", Duration::from_secs(90)).await?;
    let log = d.log_tail("agent-dc", 3000);
    ensure!(log.contains("stays stopped: `ndc` is the primary at epoch 2"), "{log}");
    let writable = watch.finish().await;
    ensure!(writable.is_none(), "dc's server accepted writes after its host restarted");

    load.more("writes with dc back", 50, Duration::from_secs(20)).await?;
    let acked = load.finish().await?;
    d.wait_holds_all("ndc", &acked, Duration::from_secs(10)).await?;
    d.wait_holds_all("dc", &acked, Duration::from_secs(10)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn with_no_failover_the_restarted_primary_starts_only_once_the_controllers_confirm_it() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let mut d = Deployment::with_postgres().await?;
    d.tune_controllers(|c| c.failover.automatic = false)?;
    d.start_all().await?;
    let v = d.wait_ready(false).await?;
    let period = Duration::from_millis(v.lease.period_ms);
    let conninfos = d.conninfos()?;
    let load = Workload::start(conninfos.clone(), 50).await?;

    // The host goes, and so does every controller: nothing can confirm dc's role.
    lose_dc_host(&mut d)?;
    for id in d.founders() {
        d.kill(&format!("controller-{id}"))?;
    }
    let watch = WritableWatch::start(conninfos[0].clone());
    d.start_agent("dc")?;
    let restarted = Instant::now();
    let waiting = wait_for("dc's agent waiting for its role", Duration::from_secs(20), || async {
        d.log_tail("agent-dc", 50).contains("stays stopped until the controllers confirm").then_some(())
    })
    .await;
    if waiting.is_err() {
        d.diagnose(&["agent-dc"])?;
    }
    waiting?;
    wait_for("three lease periods with no controller", Duration::from_secs(30), || async {
        (restarted.elapsed() > 3 * period).then_some(())
    })
    .await?;
    ensure!(watch.first_writable().is_none(), "dc's server took writes before its role was confirmed");

    let controllers_back = Instant::now();
    d.start_controllers()?;
    let writable = wait_for("dc writable again", Duration::from_secs(40), || async { watch.first_writable() }).await;
    if writable.is_err() {
        d.diagnose(&["controller-1", "controller-2", "controller-3", "agent-dc"])?;
    }
    ensure!(writable? > controllers_back);
    let log = d.log_tail("agent-dc", 3000);
    ensure!(log.contains("role confirmed (lease held at epoch 1)"), "{log}");
    let c = d.status().await?.cluster_state["customs"].clone();
    ensure!(c.epoch == 1 && c.primary == "dc", "epoch {} primary {}", c.epoch, c.primary);

    load.more("writes on dc again", 50, Duration::from_secs(30)).await?;
    let acked = load.finish().await?;
    d.wait_holds_all("dc", &acked, Duration::from_secs(10)).await?;
    d.wait_synchronous_again("ndc", Duration::from_secs(30)).await?;
    watch.finish().await;
    Ok(())
}
