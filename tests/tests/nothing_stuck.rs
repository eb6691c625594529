//! Nothing loops forever, and no fault leaves the cluster stuck in silence (issue 16, items 7
//! and 8). Real PostgreSQL, real processes.
//!
//! - A fenced primary that cannot start (its `postgresql.conf` broken) is restarted a bounded
//!   number of times, then judged lost like any stopped primary: ndc is promoted on its own, and
//!   with automatic failover off, a person's approved failover runs (before this, the leader
//!   restarted it five times a second, forever, and nothing else could run on the cluster).
//! - dr's agent is down during a switchover to ndc, so dr keeps streaming from dc (now a standby):
//!   once its agent is back, the leader repoints it at ndc on its own (a recorded `follow`
//!   workflow). Then the whole ndc site is lost: dc, its synchronous standby, takes over. Before,
//!   dr stayed on dc, "reached the database", and for over 100 s nothing was promoted or raised.

use std::time::Duration;

use anyhow::{ensure, Result};
use triad_tests::{wait_for, Deployment};

/// Each test runs three controllers, three agents and three PostgreSQL servers: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const ALL: &[&str] = &["controller-1", "controller-2", "controller-3", "agent-dc", "agent-ndc", "agent-dr"];

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Breaks dc's configuration so that its server cannot start, then stalls its agent past its
/// lease so that it fences dc on its late tick (DESIGN.md point 2).
async fn fence_dc_for_good(d: &Deployment) -> Result<()> {
    let conf = d.pg.as_ref().expect("a PostgreSQL deployment").member("dc")?.dir.join("data/postgresql.conf");
    let mut text = std::fs::read_to_string(&conf)?;
    text.push_str("\nshared_buffers = 'bogus'\n");
    std::fs::write(&conf, text)?;
    let paused = d.pause("agent-dc")?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    drop(paused);
    wait_for("dc fenced by its agent", Duration::from_secs(15), || async {
        d.log_tail("agent-dc", 300).contains("fencing the primary").then_some(())
    })
    .await
}

/// The restart workflows on `customs`, each with its outcome.
fn restarts(d: &Deployment) -> Result<Vec<String>> {
    Ok(d.history()?
        .iter()
        .filter(|w| w["kind"] == "restart")
        .map(|w| w["outcome"].as_str().unwrap_or_default().to_string())
        .collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fenced_primary_that_cannot_start_is_restarted_a_few_times_then_failed_over() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let mut d = Deployment::with_postgres().await?;
    d.start_all().await?;
    d.wait_ready(true).await?;

    fence_dc_for_good(&d).await?;
    let promoted = wait_for("ndc promoted after dc's restarts failed", Duration::from_secs(45), || async {
        let v = d.status().await.ok()?;
        let c = v.cluster_state.get("customs")?;
        (c.primary == "ndc" && c.epoch == 2).then_some(())
    })
    .await;
    if promoted.is_err() {
        d.diagnose(ALL)?;
    }
    promoted?;
    let tried = restarts(&d)?;
    ensure!(!tried.is_empty() && tried.len() <= 3, "between one and three restarts, not {}: {tried:?}", tried.len());
    ensure!(tried.iter().all(|o| o.starts_with("failed")), "{tried:?}");
    let (failover, steps) = wait_for("the failover finished", Duration::from_secs(30), || async {
        let (w, steps) = d.newest_workflow("failover").ok()?;
        (w["outcome"] != "under way").then_some((w, steps))
    })
    .await?;
    ensure!(failover["outcome"].as_str().is_some_and(|o| o.starts_with("completed")), "{failover}");
    ensure!(steps.iter().any(|(n, note)| n == "detected" && note.contains("reported stopped")), "{steps:?}");
    let log = d.log_tail("controller-1", 2000) + &d.log_tail("controller-2", 2000) + &d.log_tail("controller-3", 2000);
    ensure!(log.contains("did not come back after 3 restarts"), "the leader says it gave up");
    // And it stays given up: no restart starts once ndc is the primary.
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(restarts(&d)?.len() == tried.len(), "restarted again: {:?}", restarts(&d)?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn with_automatic_failover_off_an_approved_failover_runs_past_a_primary_that_cannot_start() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let mut d = Deployment::with_postgres().await?;
    d.tune_controllers(|c| c.failover.automatic = false)?;
    d.start_all().await?;
    d.wait_ready(false).await?;

    fence_dc_for_good(&d).await?;
    // The leader gives up restarting, and status says the primary is lost and why nothing runs.
    let said = wait_for("status: dc lost, not failed over", Duration::from_secs(30), || async {
        let v = d.status().await.ok()?;
        let blocked = v.cluster_state.get("customs")?.failover_blocked.clone();
        (blocked.starts_with(triad_controller::state::PRIMARY_LOST) && blocked.contains("automatic failover is off"))
            .then_some(blocked)
    })
    .await;
    if said.is_err() {
        d.diagnose(ALL)?;
    }
    said?;
    let out = d.triadctl(&["failover", "--cluster", "customs", "--to", "ndc", "--reason", "dc cannot start"])?;
    ensure!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    let id = t.split("request ").nth(1).and_then(|r| r.split(',').next()).map(|s| s.trim().to_string());
    let id = id.filter(|i| i.parse::<u64>().is_ok()).ok_or_else(|| anyhow::anyhow!("no request id in: {t}"))?;
    let out = d.triadctl_as("bob", "noc", &["approve", &id])?;
    ensure!(out.status.success(), "{}", text(&out));
    d.wait_primary("ndc", 2, ALL).await?;
    let tried = restarts(&d)?;
    ensure!(tried.len() <= 3, "{tried:?}");
    let (failover, _) = d.newest_workflow("failover")?;
    ensure!(failover["requested_by"].as_str().is_some_and(|r| r.contains("bob")), "{failover}");
    Ok(())
}

/// The port of the server `member`'s WAL receiver streams from (0: none).
async fn streams_from_port(d: &Deployment, member: &str) -> Option<i32> {
    let client = tokio::time::timeout(Duration::from_secs(2), d.pg_connect(member)).await.ok()?.ok()?;
    let row = client.query_opt("SELECT sender_port FROM pg_stat_wal_receiver WHERE status = 'streaming'", &[]).await;
    Some(row.ok()?.map(|r| r.get::<_, i32>(0)).unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_left_on_the_old_primary_is_repointed_and_the_new_primarys_loss_is_failed_over() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let mut d = Deployment::with_postgres().await?;
    d.start_all().await?;
    d.wait_ready(true).await?;
    let pg = d.pg.as_ref().expect("a PostgreSQL deployment");
    let (dc_port, ndc_port) = (i32::from(pg.member("dc")?.port), i32::from(pg.member("ndc")?.port));
    let ndc_data = pg.member("ndc")?.dir.join("data");

    d.kill("agent-dr")?;
    let out = d.triadctl(&["switchover", "--cluster", "customs", "--to", "ndc"])?;
    ensure!(text(&out).contains("dr did not follow ndc"), "{}", text(&out));
    ensure!(streams_from_port(&d, "dr").await == Some(dc_port), "dr still streams from dc");
    d.start_agent("dr")?;
    let repointed = wait_for("dr repointed at ndc", Duration::from_secs(30), || async {
        (streams_from_port(&d, "dr").await? == ndc_port).then_some(())
    })
    .await;
    if repointed.is_err() {
        d.diagnose(ALL)?;
    }
    repointed?;
    let (follow, steps) = wait_for("the follow workflow finished", Duration::from_secs(20), || async {
        let (w, steps) = d.newest_workflow("follow").ok()?;
        (w["outcome"] != "under way").then_some((w, steps))
    })
    .await?;
    ensure!(follow["to"] == "dr" && follow["outcome"].as_str().is_some_and(|o| o.starts_with("completed")), "{follow}");
    ensure!(steps.iter().any(|(n, note)| n == "astray" && note.contains("not from the primary ndc")), "{steps:?}");
    d.wait_synchronous_again("dc", Duration::from_secs(60)).await?;

    // The new primary's whole site is lost.
    d.kill("agent-ndc")?;
    triad_tests::workload::kill_postgres(&ndc_data)?;
    d.kill("controller-2")?;
    let promoted = wait_for("dc primary again at epoch 3", Duration::from_secs(30), || async {
        let v = d.status().await.ok()?;
        let c = v.cluster_state.get("customs")?;
        (c.epoch == 3 && c.primary == "dc").then_some(())
    })
    .await;
    if promoted.is_err() {
        d.diagnose(&["controller-1", "controller-3", "agent-dc", "agent-dr"])?;
    }
    promoted?;
    Ok(())
}
