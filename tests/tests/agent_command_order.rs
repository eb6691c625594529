//! Issue 16, items 3 and 6: an agent applies the leader's commands in (epoch, log index) order,
//! a promote checks its epoch again after its waits, and a promote that reaches an agent before
//! its first target state still waits the vouch hold. The agent is the real `triad-agent` with
//! real PostgreSQL; its controller is scripted (`triad_tests::scripted`), since real controllers
//! produce these orders only by chance (overlapping streams across a change of leader, a command
//! sent in the moment between a stream's registration and its first target state).

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use triad_proto::v1::{agent_command::Kind, Assignment, Follow, Promote};
use triad_tests::scripted::Scripted;
use triad_tests::{wait_for, Deployment};

/// The target state naming `primary` at `epoch`, as the leader would send it to ndc's agent.
fn target(epoch: u64, primary: &str, hold_ms: u64) -> Assignment {
    Assignment {
        cluster: "customs".into(),
        member: "ndc".into(),
        epoch,
        log_index: epoch * 10,
        role: if primary == "ndc" { "primary" } else { "standby" }.into(),
        primary: primary.into(),
        primary_agent: format!("agent-{primary}"),
        lease_ms: 10_000,
        vouch_ms: 10_000,
        vouch_hold_ms: hold_ms,
        confirmed: true,
        ..Default::default()
    }
}

fn promote(hold_ms: u64) -> Kind {
    Kind::Promote(Promote { vouch_hold_ms: hold_ms, timeout_ms: 30_000, ..Default::default() })
}

/// A deployment's PostgreSQL members, a scripted controller 1 and ndc's agent attached to it;
/// returns when the agent started (taken before it was spawned).
async fn ndc_under_script() -> Result<(Deployment, Scripted, Instant)> {
    let mut d = Deployment::with_postgres().await?;
    let script = Scripted::start(&d, 1).await?;
    let started = Instant::now();
    d.start_agent("ndc")?;
    if let Err(e) = script.attached(2, Duration::from_secs(15)).await {
        d.diagnose(&["agent-ndc"])?;
        return Err(e);
    }
    Ok((d, script, started))
}

/// Whether ndc's server is in recovery (a standby), as the server itself says.
async fn in_recovery(d: &Deployment) -> Result<bool> {
    let client = d.pg_connect("ndc").await?;
    Ok(client.query_one("SELECT pg_is_in_recovery()", &[]).await?.get(0))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_promote_that_arrives_before_the_first_target_state_waits_the_hold() -> Result<()> {
    const HOLD_MS: u64 = 5_000;
    let (d, script, started) = ndc_under_script().await?;
    script.grant(1, 10_000);
    // The promote first, its target state a moment later: the agent has no target to read a
    // hold from when the promote arrives, only the command's.
    let id = script.command("customs", 1, 10, promote(HOLD_MS)).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    script.assign(target(1, "ndc", HOLD_MS)).await?;
    let result = script.result(id, Duration::from_secs(40)).await?;
    let answered = started.elapsed();
    if !result.ok {
        d.diagnose(&["agent-ndc"])?;
    }
    ensure!(result.ok, "the promote failed: {}", result.detail);
    ensure!(!in_recovery(&d).await?, "ndc still in recovery after a promote reported done");
    eprintln!("promoted {} ms after the agent started: {}", answered.as_millis(), result.detail);
    // The agent started after `started`: its hold ended later still.
    ensure!(
        answered >= Duration::from_millis(HOLD_MS),
        "ndc promoted {} ms after its agent started, inside the hold of {HOLD_MS} ms ({})",
        answered.as_millis(),
        result.detail
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_promote_overtaken_by_a_newer_epoch_during_its_hold_does_nothing() -> Result<()> {
    const HOLD_MS: u64 = 4_000;
    let (d, script, _) = ndc_under_script().await?;
    // ndc is the primary at epoch 1 and holds a long lease there, so that only the epoch, read
    // again after the hold, can stop the promote.
    script.grant(1, 10_000);
    script.assign(target(1, "ndc", HOLD_MS)).await?;
    wait_for("ndc's lease at epoch 1", Duration::from_secs(10), || async {
        (d.agent_metric("ndc", "triad_agent_lease_remaining_seconds").await? > 5.0).then_some(())
    })
    .await?;
    let id = script.command("customs", 1, 10, promote(HOLD_MS)).await?;
    // During the hold, a failover elsewhere: epoch 2 makes dr the primary.
    tokio::time::sleep(Duration::from_millis(300)).await;
    script.assign(target(2, "dr", HOLD_MS)).await?;
    let result = script.result(id, Duration::from_secs(40)).await?;
    eprintln!("the promote answered: ok {}, {}", result.ok, result.detail);
    ensure!(!result.ok, "a promote overtaken by epoch 2 reported done: {}", result.detail);
    ensure!(result.detail.contains("epoch"), "refused for another reason than its epoch: {}", result.detail);
    ensure!(in_recovery(&d).await?, "ndc left recovery: a promote at epoch 1 ran after epoch 2");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_older_than_one_applied_is_refused_never_run_after_it() -> Result<()> {
    let (d, script, _) = ndc_under_script().await?;
    script.assign(target(1, "dc", 1_600)).await?;
    // ndc follows dc (log index 20), as it does already; then a command from further back
    // (index 15) arrives, as from an old leader's stream, pointing it at a port nothing serves.
    let current: String = d.pg_connect("ndc").await?.query_one("SHOW primary_conninfo", &[]).await?.get(0);
    let dc_port =
        d.conninfos()?[0].split("port=").nth(1).and_then(|p| p.split_whitespace().next()).unwrap_or("").to_string();
    ensure!(current.contains(&format!("port={dc_port}")), "ndc does not follow dc's port {dc_port}: {current}");
    let newer = script.command("customs", 1, 20, Kind::Follow(Follow { primary_endpoint: current.clone() })).await?;
    let stale = Follow { primary_endpoint: current.replace(&format!("port={dc_port}"), "port=9") };
    let older = script.command("customs", 1, 15, Kind::Follow(stale)).await?;
    let newer = script.result(newer, Duration::from_secs(30)).await?;
    ensure!(newer.ok, "following dc failed: {}", newer.detail);
    let older = script.result(older, Duration::from_secs(30)).await?;
    eprintln!("the older command answered: ok {}, {}", older.ok, older.detail);
    ensure!(!older.ok && older.detail.contains("older"), "the older command was not refused: {}", older.detail);
    // And ndc still streams from dc.
    let streaming = wait_for("ndc streaming from dc", Duration::from_secs(20), || async {
        let client = d.pg_connect("ndc").await.ok()?;
        let row = client.query_opt("SELECT conninfo FROM pg_stat_wal_receiver WHERE status = 'streaming'", &[]).await;
        let conninfo: String = row.ok()??.get(0);
        conninfo.contains(&format!("port={dc_port}")).then_some(())
    })
    .await;
    if streaming.is_err() {
        d.diagnose(&["agent-ndc"])?;
    }
    streaming
}
