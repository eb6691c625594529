//! Issue 16, item 4: a slow disk under the primary's agent never fences a healthy primary. The
//! agent writes its lease file on every grant and fsyncs its epoch file on every change of
//! epoch; neither may make the guard's tick late, nor hold back a renewal. Real processes: three
//! controllers, three agents, PostgreSQL; dc's agent keeps its state on a filesystem whose writes
//! are throttled (`triad_tests::slow_disk`). In the steady state, one write a second: a lease
//! write takes a second there, against a lease of 1.4 s and a fence lead of 0.5 s (the agent
//! wrote it on its stream's task, and fenced within 2 s). For the changes of epoch, four a
//! second: an epoch file's fsyncs take half a second, which a new primary must wait before it
//! may ask for a lease at its epoch (an fsync slower than P minus the fence lead fences it,
//! by design: `runbooks/agent-state.md`).

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use triad_tests::slow_disk::{self, SlowDisk};
use triad_tests::workload::TimedWorkload;
use triad_tests::Deployment;

/// The throttle while the epoch changes (the switchovers).
const EPOCH_CHANGE_IOPS: u32 = 4;

/// Every fence dc's agent counted, whatever the reason.
async fn fences(d: &Deployment) -> f64 {
    d.agent_metric_sum("dc", "triad_agent_fences_total").await.unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_primary_whose_agent_has_a_slow_disk_is_never_fenced() -> Result<()> {
    if let Some(why) = slow_disk::unavailable() {
        anyhow::bail!("this test needs a throttled disk, and here {why} (scripts/test.sh runs the tests as root)");
    }
    let mut d = Deployment::with_postgres().await?;
    let state_dir = d.dir().join("data/agent-dc");
    // Unthrottled while the cluster is adopted: the adoption's first lease and epoch are not what
    // this test is about (throttled, it fenced dc now and then on a loaded host).
    let mut disk = SlowDisk::create(&d.dir().join("slow-disk.img"), &state_dir, 0)?;
    d.start_controllers()?;
    d.wait_leader(&d.founders(), Duration::from_secs(30)).await?;
    d.start_agent("dc")?;
    disk.admit(d.pid("agent-dc").expect("just started"))?;
    d.start_agent("ndc")?;
    d.start_agent("dr")?;
    let load = match d.wait_ready(true).await {
        Ok(_) => TimedWorkload::start(d.conninfos()?).await,
        Err(e) => Err(e),
    };
    let load = match load {
        Ok(l) => l,
        Err(e) => {
            d.diagnose(&["agent-dc"])?;
            return Err(e);
        }
    };

    // Steady state: a lease grant every heartbeat, each written to the slow disk.
    disk.set_write_iops(1)?;
    let steady = Instant::now();
    let until = steady + Duration::from_secs(12);
    while Instant::now() < until {
        if fences(&d).await > 0.0 {
            d.diagnose(&["agent-dc"])?;
            anyhow::bail!("dc fenced {} s into the steady state", steady.elapsed().as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (gap, _) = load.gap_since(steady);
    eprintln!("steady state: longest write gap {} ms", gap.as_millis());
    let written = std::fs::read_to_string(disk.path().join("lease"))?;
    ensure!(written.contains("epoch 1"), "the lease file on the slow disk: {written}");

    // Two changes of epoch, each fsynced to the slow disk when dc's agent takes it.
    disk.set_write_iops(EPOCH_CHANGE_IOPS)?;
    for (to, epoch) in [("ndc", 2), ("dc", 3)] {
        let out = d.triadctl(&["switchover", "--cluster", "customs", "--to", to])?;
        if !out.status.success() {
            d.diagnose(&["controller-1", "controller-2", "controller-3", "agent-dc", "agent-ndc"])?;
        }
        ensure!(out.status.success(), "switchover to {to}: {}", String::from_utf8_lossy(&out.stderr));
        d.wait_primary(to, epoch, &["agent-dc", "agent-ndc"]).await?;
    }
    let back = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    if fences(&d).await > 0.0 {
        d.diagnose(&["agent-dc"])?;
        anyhow::bail!("dc fenced after the switchovers");
    }
    let (gap, _) = load.gap_since(back);
    eprintln!("after the switchovers: longest write gap {} ms", gap.as_millis());
    let acked = load.finish().await?;
    d.wait_holds_all("dc", &acked, Duration::from_secs(10)).await?;
    // The disk first, as when the test fails early (locals drop in reverse): it is unmounted
    // lazily under the running agent, so the deployment can then remove its whole directory.
    // The other way round, data/agent-dc was still a mount point when the deployment removed
    // its directory, and half of it was left behind in /tmp.
    drop(disk);
    drop(d);
    Ok(())
}
