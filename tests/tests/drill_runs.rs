//! Drill runs (issue 21, items 1, 5-7), on real processes: three controllers over mTLS, an agent
//! per site and real PostgreSQL, under a writer that records when each write was acknowledged.
//!
//! - A `switchover-roundtrip` (dc → ndc → dc) passes; the write outage it reports for each move
//!   is within 250 ms of the longest gap the writer saw around it; no acknowledged write is lost;
//!   its report reads in every format, and the history and the auditors' summary show it.
//! - A run whose leader is killed after its first move is finished by the next leader.
//! - An abort during the first move lets that move finish or roll back, starts nothing more, and
//!   leaves exactly one writable primary with its standbys following it.
//! - A run refused by its pre-checks changes nothing (tests/drills.rs has the check itself).

use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use serde_json::Value;
use triad_tests::workload::{accepts_writes, TimedWorkload};
use triad_tests::{wait_for, Deployment};

/// Generous targets: a slow machine must not fail the drill (the measured figures are checked
/// against the writer instead).
const PLAN: &str = r#"
name = "roundtrip-ndc"
kind = "switchover-roundtrip"
cluster = "customs"
target = "ndc"

[targets]
rto_ms = 60000
max_write_outage_ms = 30000
"#;

/// How far the canary's outage may be from the writer's (the issue's bound).
const AGREEMENT_MS: i64 = 250;

/// A deployment with the plan; `failpoints` for its controllers (empty: none).
async fn deployment_with_plan(failpoints: &str) -> Result<Deployment> {
    let mut d = Deployment::with_postgres().await?;
    if !failpoints.is_empty() {
        d.controller_env.push(("FAILPOINTS".into(), failpoints.into()));
        d.controller_env.push(("TRIAD_TEST_FAILPOINTS".into(), "1".into()));
    }
    d.start_all().await?;
    d.wait_ready(false).await?;
    let file = d.dir().join("plan.toml");
    std::fs::write(&file, PLAN)?;
    let out = d.triadctl(&["drill", "put", "--file", file.to_str().unwrap_or_default()])?;
    ensure!(out.status.success(), "put: {}", String::from_utf8_lossy(&out.stderr));
    checks_pass(&d).await?;
    Ok(d)
}

/// Waits until the plan's pre-checks pass (a standby catching up, a controller rejoining).
async fn checks_pass(d: &Deployment) -> Result<()> {
    wait_for("every pre-check passes", Duration::from_secs(60), || async {
        d.triadctl(&["drill", "check", "roundtrip-ndc"]).ok()?.status.success().then_some(())
    })
    .await
}

/// `drill report ID -o json`.
fn report(d: &Deployment, id: u64) -> Result<Value> {
    let out = d.triadctl(&["drill", "report", &id.to_string(), "-o", "json"])?;
    ensure!(out.status.success(), "report {id}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Starts a run of the plan without following it; its id.
fn start(d: &Deployment) -> Result<u64> {
    let out = d.triadctl(&["drill", "run", "roundtrip-ndc", "-o", "json"])?;
    ensure!(out.status.success(), "run: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout)?;
    v["id"].as_u64().filter(|id| *id > 0).ok_or_else(|| anyhow!("no run id in {v}"))
}

/// Waits until run `id`'s report satisfies `f`.
async fn report_when(
    d: &Deployment,
    id: u64,
    what: &str,
    within: Duration,
    f: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let r = wait_for(what, within, || async { report(d, id).ok().filter(|r| f(r)) }).await;
    if r.is_err() {
        eprintln!("{}", report(d, id).map(|r| r.to_string()).unwrap_or_default());
        d.diagnose(&["controller-1", "controller-2", "controller-3", "agent-dc", "agent-ndc"])?;
    }
    r
}

fn ended(r: &Value) -> bool {
    !r["end"].is_null()
}

/// Exactly one member accepts writes, every member is healthy and each standby follows.
async fn one_primary_and_replication(d: &Deployment) -> Result<String> {
    let conninfos = d.conninfos()?;
    wait_for("one writable primary, its standbys following", Duration::from_secs(60), || async {
        let v = d.status().await.ok()?;
        let members = v.clusters.get("customs")?;
        let primaries: Vec<&str> = members.iter().filter(|m| m.role == "primary").map(|m| m.name.as_str()).collect();
        let standbys = members.iter().filter(|m| m.role == "standby").count();
        let healthy = members.iter().all(|m| m.healthy);
        let mut writable = 0;
        for ci in &conninfos {
            writable += usize::from(accepts_writes(ci).await);
        }
        (primaries.len() == 1 && standbys == 2 && healthy && writable == 1).then(|| primaries[0].to_string())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_roundtrip_drill_reports_the_outage_the_writer_saw_and_loses_nothing() -> Result<()> {
    let d = deployment_with_plan("").await?;
    let load = TimedWorkload::start(d.conninfos()?).await?;

    let out = d.triadctl(&["drill", "run", "roundtrip-ndc", "--watch"])?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    ensure!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    // --watch shows each step as it starts and ends, then the verdict.
    for line in ["checks-before", "switchover", "checks-there", "switch-back", "checks-back", "PASSED"] {
        ensure!(stdout.contains(line), "no `{line}` in:\n{stdout}");
    }
    let id: u64 =
        stdout.split_whitespace().nth(1).and_then(|w| w.parse().ok()).ok_or_else(|| anyhow!("no id in {stdout}"))?;
    let r = report(&d, id)?;
    ensure!(r["result"] == "passed", "{r}");
    let steps = r["steps"].as_array().cloned().unwrap_or_default();
    ensure!(steps.len() == 5 && steps.iter().all(|s| s["ok"] == true), "{r}");
    ensure!(r["started_by"].as_str().is_some_and(|s| !s.is_empty()) && r["origin"] == "dc", "{r}");
    ensure!(r["prechecks"].as_array().map(Vec::len) == Some(7), "{r}");

    // Each move's write outage, by the canary, against the longest gap the writer saw in it.
    let legs = r["legs"].as_array().cloned().unwrap_or_default();
    ensure!(legs.len() == 2, "{r}");
    let ended_ms = r["end"]["at_ms"].as_u64().unwrap_or(u64::MAX);
    for (i, leg) in legs.iter().enumerate() {
        ensure!(leg["moved"] == true && leg["data_loss_ms"] == 0, "{leg}");
        let reported = leg["write_outage_ms"].as_u64().ok_or_else(|| anyhow!("no outage measured: {leg}"))?;
        let rto = leg["rto_ms"].as_u64().ok_or_else(|| anyhow!("no RTO measured: {leg}"))?;
        let from = leg["started_ms"].as_u64().unwrap_or_default();
        let to = legs.get(i + 1).and_then(|l| l["started_ms"].as_u64()).unwrap_or(ended_ms);
        let (gap, at) = load.longest_gap_within(from, to).ok_or_else(|| anyhow!("no write around leg {i}"))?;
        let diff = reported as i64 - gap.as_millis() as i64;
        eprintln!(
            "leg {} {}→{}: canary outage {reported} ms, writer gap {} ms (began at {at}), RTO {rto} ms",
            i + 1,
            leg["from"],
            leg["to"],
            gap.as_millis()
        );
        ensure!(diff.abs() <= AGREEMENT_MS, "leg {i}: reported {reported} ms, the writer saw {} ms", gap.as_millis());
        ensure!(rto >= reported.saturating_sub(AGREEMENT_MS as u64), "an RTO shorter than the outage: {leg}");
    }
    let acked = load.finish().await?;
    let missing = wait_for("dc holds every acknowledged write", Duration::from_secs(10), || async {
        let n = d.missing_on("dc", &acked).await.ok()?;
        (n == 0).then_some(n)
    })
    .await?;
    eprintln!("{} acknowledged writes, {missing} lost", acked.len());
    ensure!(one_primary_and_replication(&d).await? == "dc");

    // The report in its other forms; the history and the auditors' summary.
    let text = d.triadctl(&["drill", "report", &id.to_string()])?;
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    ensure!(text.contains("Result:") && text.contains("PASSED") && text.contains("max-write-outage"), "{text}");
    let md = d.triadctl(&["drill", "report", &id.to_string(), "-o", "md"])?;
    let md = String::from_utf8_lossy(&md.stdout).to_string();
    ensure!(md.starts_with("# Drill") && md.contains("| target | limit | measured | verdict |"), "{md}");
    let html = d.triadctl(&["drill", "report", &id.to_string(), "-o", "html"])?;
    let html = String::from_utf8_lossy(&html.stdout).to_string();
    ensure!(html.starts_with("<!DOCTYPE html>") && html.contains("<table>") && html.contains("dc → ndc"), "{html}");
    let out = d.triadctl(&["drill", "history", "-o", "json"])?;
    let history: Value = serde_json::from_slice(&out.stdout)?;
    ensure!(history[0]["id"] == id && history[0]["result"] == "passed", "{history}");
    let out = d.triadctl(&["drill", "summary", "-o", "json"])?;
    let summary: Value = serde_json::from_slice(&out.stdout)?;
    ensure!(summary[0]["plan"] == "roundtrip-ndc" && summary[0]["passed"] == 1, "{summary}");
    ensure!(summary[0]["last_success"][0] == id, "{summary}");
    // Every controller exports the drills' metrics from the state.
    let passed =
        "triad_drill_runs{cluster=\"customs\",kind=\"switchover-roundtrip\",plan=\"roundtrip-ndc\",result=\"passed\"}";
    let success = "triad_drill_last_success_timestamp_seconds{cluster=\"customs\",plan=\"roundtrip-ndc\"}";
    let outage = "triad_drill_last_write_outage_seconds{cluster=\"customs\",plan=\"roundtrip-ndc\"}";
    let ended_s = r["end"]["at_ms"].as_u64().unwrap_or_default() as f64 / 1000.0;
    let worst = r["write_outage_ms"].as_u64().unwrap_or_default() as f64 / 1000.0;
    for id in 1..=3 {
        wait_for(&format!("controller {id} exports the drill"), Duration::from_secs(20), || async {
            let ok = d.controller_metric(id, passed).await? == 1.0
                && (d.controller_metric(id, success).await? - ended_s).abs() < 0.01
                && (d.controller_metric(id, outage).await? - worst).abs() < 0.01;
            ok.then_some(())
        })
        .await?;
    }
    let out = d.triadctl(&["drill", "report", "999"])?;
    ensure!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no drill 999"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drill_outlives_its_leader_and_an_abort_leaves_one_primary() -> Result<()> {
    // Each run holds still for 8 s once its first move is recorded: the test kills its leader
    // there, and the next leader finishes the run.
    let mut d = deployment_with_plan("drill-pause-after-switchover=return(8000)").await?;

    let id = start(&d)?;
    report_when(&d, id, "the first move recorded", Duration::from_secs(60), |r| {
        r["legs"].as_array().is_some_and(|l| !l.is_empty())
    })
    .await?;
    let leader = d.wait_leader(&[1, 2, 3], Duration::from_secs(10)).await?;
    d.kill(&format!("controller-{leader}"))?;
    let r = report_when(&d, id, "the run finished by the next leader", Duration::from_secs(120), ended).await?;
    ensure!(r["result"] == "passed", "{r}");
    ensure!(r["legs"].as_array().map(Vec::len) == Some(2) && r["end"]["primary"] == "dc", "{r}");
    ensure!(one_primary_and_replication(&d).await? == "dc");
    d.start_controller(leader)?;
    checks_pass(&d).await?;

    // An abort while the first move is under way: it finishes (or rolls back), nothing more moves.
    let id = start(&d)?;
    report_when(&d, id, "the first move begun", Duration::from_secs(60), |r| {
        r["steps"].as_array().is_some_and(|s| s.iter().any(|s| s["kind"] == "switchover"))
    })
    .await?;
    let out = d.triadctl(&["drill", "abort", &id.to_string(), "--reason", "a customs release at 14:00"])?;
    ensure!(out.status.success(), "abort: {}", String::from_utf8_lossy(&out.stderr));
    let r = report_when(&d, id, "the run aborted", Duration::from_secs(120), ended).await?;
    ensure!(r["result"] == "aborted", "{r}");
    ensure!(r["abort"]["reason"] == "a customs release at 14:00", "{r}");
    let steps: Vec<String> =
        r["steps"].as_array().into_iter().flatten().filter_map(|s| s["kind"].as_str().map(String::from)).collect();
    ensure!(!steps.iter().any(|s| s == "switch-back"), "no move after the abort: {steps:?}");
    let primary = one_primary_and_replication(&d).await?;
    ensure!(r["end"]["primary"] == primary.as_str(), "the report says where it left the cluster: {r}");
    let again = d.triadctl(&["drill", "abort", &id.to_string(), "--reason", "twice"])?;
    ensure!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("has ended"));
    let out = d.triadctl(&["drill", "abort", &id.to_string(), "--reason", " "])?;
    ensure!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("reason"));
    Ok(())
}

/// A dr-test of the remote site, and the SQL service its copy is checked with.
const DR_PLAN: &str = r#"
name = "dr-copy"
kind = "dr-test"
cluster = "customs"
target = "dr"
services = ["orders-db"]

[targets]
rto_ms = 120000
"#;

/// What `dr`'s server said at one look: in recovery, and its WAL receiver streaming.
struct DrSample {
    in_recovery: bool,
    streaming: bool,
}

/// Looks at `dr` every 100 ms until `stop`: what a dr-test must leave alone.
async fn watch_dr(
    client: tokio_postgres::Client,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<DrSample> {
    let mut seen = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let q = "SELECT pg_is_in_recovery(), coalesce((SELECT status = 'streaming' FROM pg_stat_wal_receiver), false)";
        match client.query_one(q, &[]).await {
            Ok(row) => seen.push(DrSample { in_recovery: row.get(0), streaming: row.get(1) }),
            Err(_) => seen.push(DrSample { in_recovery: false, streaming: false }),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dr_test_checks_an_isolated_copy_and_leaves_production_untouched() -> Result<()> {
    // Each run holds still for 3 s once its copy is made: the second run is aborted there.
    let d = deployment_with_plan("drill-pause-after-copy-make=return(3000)").await?;
    let pg = d.pg.as_ref().ok_or_else(|| anyhow!("no PostgreSQL"))?;
    let service = format!(
        "name = \"orders-db\"\ncluster = \"customs\"\nkind = \"sql\"\ngroup = 1\n\
         query = \"SELECT CASE WHEN count(*) > 0 THEN 'ready' ELSE 'empty' END FROM orders\"\nexpect = \"ready\"\n\n\
         [[instances]]\nsite = \"dc\"\nagent = \"agent-dc\"\ntarget = \"{}\"\n",
        pg.member("dc")?.conninfo("customs")
    );
    for (file, text, what) in [("orders-db.toml", service.as_str(), "services"), ("dr-copy.toml", DR_PLAN, "drill")] {
        let path = d.dir().join(file);
        std::fs::write(&path, text)?;
        let out = d.triadctl(&[what, "put", "--file", path.to_str().unwrap_or_default()])?;
        ensure!(out.status.success(), "{what} put: {}", String::from_utf8_lossy(&out.stderr));
    }
    let load = TimedWorkload::start(d.conninfos()?).await?;
    let epoch = d.status().await?.cluster_state["customs"].epoch;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = tokio::spawn(watch_dr(d.pg_connect("dr").await?, stop.clone()));

    let out = d.triadctl(&["drill", "run", "dr-copy", "--watch"])?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let samples = watcher.await?;
    ensure!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let id: u64 = stdout.split_whitespace().nth(1).and_then(|w| w.parse().ok()).ok_or_else(|| anyhow!("{stdout}"))?;
    let r = report(&d, id)?;
    ensure!(r["result"] == "passed", "{r}");
    let steps: Vec<&str> = r["steps"].as_array().into_iter().flatten().filter_map(|s| s["kind"].as_str()).collect();
    ensure!(steps == ["checks-before", "copy-make", "checks-copy", "copy-destroy"], "{r}");
    // Measured: time to a usable copy, and how old its newest data was (the canary it holds).
    let copy = &r["copy"];
    let (ready, age) = (copy["ready_ms"].as_u64().unwrap_or(0), copy["data_age_ms"].as_u64());
    eprintln!("dr copy usable after {ready} ms, newest data {age:?} ms old: {}", copy["detail"]);
    ensure!(ready > 0 && r["rto_ms"] == ready, "{r}");
    ensure!(age.is_some_and(|a| a < 60_000) && r["data_loss_ms"].as_u64() == age, "a plausible RPO: {r}");
    let copy_checks: Vec<&Value> =
        r["checks"].as_array().into_iter().flatten().filter(|c| c["step"] == "checks-copy").collect();
    ensure!(copy_checks.len() == 1 && copy_checks[0]["service"] == "orders-db" && copy_checks[0]["ok"] == true, "{r}");

    // Production untouched: dr a streaming standby throughout, no role change, no write failed.
    ensure!(samples.len() > 5, "dr looked at {} times", samples.len());
    ensure!(samples.iter().all(|s| s.in_recovery), "dr stayed a standby");
    ensure!(samples.iter().all(|s| s.streaming), "dr's replication never stopped");
    let c = d.status().await?;
    ensure!(c.cluster_state["customs"].epoch == epoch && c.cluster_state["customs"].primary == "dc");
    let failed = load.failed();
    let acked = load.finish().await?;
    ensure!(failed == 0, "{failed} production writes failed during the dr-test");
    ensure!(d.missing_on("dc", &acked).await? == 0, "an acknowledged write is missing");
    // The copy is gone: its directory and its server.
    let dir = format!("{}.drill-{id}", pg.member("dr")?.data_dir().display());
    ensure!(!std::path::Path::new(&dir).exists(), "{dir} was left behind");
    let (host, copy_port) = (pg.member("dr")?.host.clone(), pg.member("dr")?.port + 100);
    ensure!(std::net::TcpStream::connect((host.as_str(), copy_port)).is_err(), "the copy still listens on {copy_port}");

    // Aborted once its copy exists: the copy is destroyed all the same, nothing else changes.
    let out = d.triadctl(&["drill", "run", "dr-copy", "-o", "json"])?;
    let id = serde_json::from_slice::<Value>(&out.stdout)?["id"].as_u64().ok_or_else(|| anyhow!("no id"))?;
    report_when(&d, id, "the copy made", Duration::from_secs(60), |r| !r["copy"].is_null()).await?;
    let out = d.triadctl(&["drill", "abort", &id.to_string(), "--reason", "the WAN is needed"])?;
    ensure!(out.status.success(), "abort: {}", String::from_utf8_lossy(&out.stderr));
    let r = report_when(&d, id, "the run aborted", Duration::from_secs(60), ended).await?;
    ensure!(r["result"] == "aborted", "{r}");
    let destroyed = r["steps"].as_array().into_iter().flatten().any(|s| s["kind"] == "copy-destroy" && s["ok"] == true);
    ensure!(destroyed, "the copy destroyed after the abort: {r}");
    let dir = format!("{}.drill-{id}", pg.member("dr")?.data_dir().display());
    ensure!(!std::path::Path::new(&dir).exists(), "{dir} was left behind");
    ensure!(one_primary_and_replication(&d).await? == "dc");
    Ok(())
}

/// A failover rehearsal to the synchronous standby.
const REHEARSAL_PLAN: &str = r#"
name = "rehearsal-ndc"
kind = "failover-rehearsal"
cluster = "customs"
target = "ndc"

[targets]
rto_ms = 120000
max_write_outage_ms = 60000
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_failover_rehearsal_runs_the_automatic_path_and_is_reported_as_a_failover() -> Result<()> {
    let d = deployment_with_plan("").await?;
    let file = d.dir().join("rehearsal.toml");
    std::fs::write(&file, REHEARSAL_PLAN)?;
    let out = d.triadctl(&["drill", "put", "--file", file.to_str().unwrap_or_default()])?;
    ensure!(out.status.success(), "put: {}", String::from_utf8_lossy(&out.stderr));
    d.wait_ready(true).await?;
    let load = TimedWorkload::start(d.conninfos()?).await?;

    let out = d.triadctl(&["drill", "run", "rehearsal-ndc", "--watch"])?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    ensure!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let id: u64 = stdout.split_whitespace().nth(1).and_then(|w| w.parse().ok()).ok_or_else(|| anyhow!("{stdout}"))?;
    let r = report(&d, id)?;
    ensure!(r["result"] == "passed", "{r}");
    let steps: Vec<&str> = r["steps"].as_array().into_iter().flatten().filter_map(|s| s["kind"].as_str()).collect();
    let expected =
        ["checks-before", "fail-primary", "failover", "rejoin", "checks-there", "switch-back", "checks-back"];
    ensure!(steps == expected, "{steps:?}");
    // The first move is the automatic failover's own workflow, measured like a switchover.
    let legs = r["legs"].as_array().cloned().unwrap_or_default();
    ensure!(legs.len() == 2 && legs[0]["step"] == "failover" && legs[0]["to"] == "ndc", "{r}");
    ensure!(legs[0]["moved"] == true && legs[0]["data_loss_ms"] == 0, "{r}");
    ensure!(legs[0]["write_outage_ms"].is_u64() && legs[0]["rto_ms"].is_u64(), "measured: {r}");
    let workflow = legs[0]["workflow"].as_u64().unwrap_or_default();
    let history = d.history()?;
    let failover = history.iter().find(|w| w["id"] == workflow).cloned().unwrap_or_default();
    ensure!(failover["kind"] == "failover", "the rehearsal is a real failover: {failover}");
    eprintln!(
        "rehearsal: failover write outage {} ms, RTO {} ms; writer gap {:?}",
        legs[0]["write_outage_ms"],
        legs[0]["rto_ms"],
        load.longest_gap_within(
            legs[0]["started_ms"].as_u64().unwrap_or(0),
            legs[1]["started_ms"].as_u64().unwrap_or(0)
        )
    );
    let acked = load.finish().await?;
    let missing = wait_for("dc holds every acknowledged write", Duration::from_secs(10), || async {
        let n = d.missing_on("dc", &acked).await.ok()?;
        (n == 0).then_some(n)
    })
    .await?;
    ensure!(missing == 0);
    ensure!(one_primary_and_replication(&d).await? == "dc");
    Ok(())
}
