//! Real network partitions: every site's controller and host in network namespaces of their own,
//! links cut with `ip link set … down` (tests/src/netns.rs), real PostgreSQL under writes.
//!
//! - Only the primary agent's path to the controllers cut: its synchronous standby vouches for it
//!   (DESIGN.md point 3), so nothing fails over, nothing fences, no write fails.
//! - The primary site isolated: its primary fences before ndc is promoted (the safety of points 2
//!   and 4, seen from outside: the moment dc's server stops against the moment ndc accepts
//!   writes); after the heal dc rejoins as a standby and what it discarded is reported.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use triad_tests::workload::{SingleWorkload, Workload};
use triad_tests::{wait_for, Deployment};

/// Each test runs three controllers, three agents and three PostgreSQL servers; two at once on a
/// two-core machine starve Raft's heartbeats and stretch the timings, so these run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts everything in namespaces and waits until dc is primary under lease with failover ready.
async fn ready() -> Result<(Deployment, Vec<String>, u64)> {
    let mut d = Deployment::with_postgres_in_namespaces().await?;
    d.start_all().await?;
    let v = d.wait_ready(true).await?;
    let conninfos = d.conninfos()?;
    Ok((d, conninfos, v.lease.period_ms))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_primary_agents_path_cut_no_failover_no_fence_no_write_error() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let (d, conninfos, period) = ready().await?;
    let load = SingleWorkload::start(conninfos.clone(), 50).await?;

    let net = d.net.as_ref().expect("in namespaces");
    net.cut_agent_path("dc", true)?;
    let cut = Instant::now();
    d.wait_failsafe("dc").await?;
    // Three lease periods cut off: the controllers hear nothing from dc's agent, but ndc still
    // streams from dc, so dc is not lost; and ndc vouches, so dc does not fence.
    let before = load.seen().acked.len();
    wait_for("three lease periods cut off", Duration::from_secs(30), || async {
        (cut.elapsed() > Duration::from_millis(3 * period)).then_some(())
    })
    .await?;
    let v = d.status().await?;
    let cs = &v.cluster_state["customs"];
    ensure!(cs.epoch == 1 && cs.primary == "dc", "the cluster moved: epoch {} primary {}", cs.epoch, cs.primary);
    ensure!(
        d.agent_metric("dc", r#"triad_agent_fences_total{reason="lease"}"#).await.unwrap_or(0.0) == 0.0,
        "dc fenced"
    );
    {
        let s = load.seen();
        ensure!(s.errors == 0, "{} writes to dc failed while its agent was cut off", s.errors);
        ensure!(s.acked.len() > before + 100, "dc acknowledged only {} writes meanwhile", s.acked.len() - before);
    }

    // Healed: the controllers renew the lease again.
    net.cut_agent_path("dc", false)?;
    wait_for("the controllers renewing dc's lease again", Duration::from_secs(20), || async {
        (d.agent_metric("dc", "triad_agent_lease_failsafe").await? == 0.0).then_some(())
    })
    .await?;
    let s = load.finish().await?;
    ensure!(s.errors == 0, "{} writes to dc failed", s.errors);
    eprintln!("{} writes, none failed, with dc's agent cut off for {} ms", s.acked.len(), cut.elapsed().as_millis());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_primary_site_isolated_fences_before_ndc_is_promoted_then_rejoins() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let (d, conninfos, _) = ready().await?;
    let load = Workload::start(conninfos.clone(), 50).await?;

    // Watch from outside: when dc's server stops (its postmaster exits: the fence), and when ndc
    // first accepts writes.
    let pg = d.pg.clone().expect("with PostgreSQL");
    let watching = Arc::new(AtomicBool::new(true));
    let dc_stopped = {
        let (pg, watching) = (pg.clone(), watching.clone());
        tokio::spawn(async move {
            while watching.load(Ordering::Relaxed) {
                if pg.postmaster_pid("dc").is_none() {
                    return Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            None
        })
    };
    let ndc_writable = {
        let (ci, watching) = (conninfos[1].clone(), watching.clone());
        tokio::spawn(async move {
            let (client, conn) = tokio_postgres::connect(&ci, tokio_postgres::NoTls).await.ok()?;
            tokio::spawn(conn);
            while watching.load(Ordering::Relaxed) {
                let row = client.query_one("SELECT NOT pg_is_in_recovery()", &[]).await.ok()?;
                if row.get::<_, bool>(0) {
                    return Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            None
        })
    };

    let net = d.net.as_ref().expect("in namespaces");
    let leader = d.wait_leader(&[1, 2, 3], Duration::from_secs(5)).await?;
    net.isolate("dc", true)?;
    let cut = Instant::now();
    eprintln!("site dc isolated (the Raft leader was controller {leader})");
    d.wait_primary("ndc", 2, &["controller-2", "controller-3", "agent-ndc", "agent-dc"]).await?;
    let ndc_at =
        wait_for("ndc writable", Duration::from_secs(10), || async { ndc_writable.is_finished().then_some(()) }).await;
    watching.store(false, Ordering::Relaxed);
    ndc_at?;
    let ndc_at = ndc_writable.await?.ok_or_else(|| anyhow::anyhow!("ndc never became writable"))?;
    let dc_at = dc_stopped.await?.ok_or_else(|| anyhow::anyhow!("dc's server never stopped"))?;
    eprintln!(
        "dc fenced {} ms after the cut; ndc writable {} ms after the cut",
        dc_at.duration_since(cut).as_millis(),
        ndc_at.duration_since(cut).as_millis()
    );
    ensure!(
        dc_at < ndc_at,
        "ndc accepted writes {} ms before dc's server stopped",
        dc_at.duration_since(ndc_at).as_millis()
    );

    // The heal: dc returns as ndc's standby (rewound if it had diverged), synchronous again.
    net.isolate("dc", false)?;
    d.wait_synchronous_again("dc", Duration::from_secs(120)).await?;
    let acked = load.finish().await?;
    for member in ["ndc", "dc"] {
        d.wait_holds_all(member, &acked, Duration::from_secs(15)).await?;
    }
    // The rejoin's first step is recorded once dc has been rewound; read it with a deadline, as
    // the history's last word may still be on its way when dc is already synchronous.
    let history = || -> Result<(serde_json::Value, String)> {
        let h = d.history()?;
        let rejoin = h.iter().find(|w| w["kind"] == "rejoin");
        let note = rejoin.and_then(|r| r["steps"][0][2].as_str().map(str::to_string)).unwrap_or_default();
        Ok((serde_json::Value::Array(h), note))
    };
    let seen = wait_for("the rejoin's first step in the history", Duration::from_secs(10), || async {
        history().ok().filter(|(_, note)| !note.is_empty())
    })
    .await;
    let (history, note) = match seen {
        Ok(found) => found,
        Err(_) => history()?,
    };
    ensure!(note.starts_with("rewound: WAL from") || note.starts_with("no rewind required"), "{history}");
    eprintln!("{} acknowledged writes, none lost; rejoin: {note}", acked.len());
    Ok(())
}
