//! Drill plans and their pre-checks (issue 21, items 2 and 3), on real processes: three
//! controllers over mTLS, an agent per site and real PostgreSQL. A plan is put through the API,
//! listed, and checked: it passes on a healthy cluster; with a member's agent stopped and the
//! target's replay paused under writes, the check lists each failure, exits 1, a run is refused
//! with the same list, and nothing changes.

use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::Value;
use triad_tests::{wait_for, Deployment};

const PLAN: &str = r#"
name = "quarterly-ndc"
kind = "switchover-roundtrip"
cluster = "customs"
target = "ndc"
max_lag_ms = 5000
required_every_days = 90

[targets]
rto_ms = 5000
max_write_outage_ms = 2000
"#;

/// `drill check PLAN -o json`: its exit status and report.
fn check(d: &Deployment, plan: &str) -> Result<(bool, Value, String)> {
    let out = d.triadctl(&["drill", "check", plan, "-o", "json"])?;
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    Ok((out.status.success(), report, stderr))
}

/// The leader's `triad_canary_replication_delay_seconds` for `member` (followers export none).
async fn canary_delay(d: &Deployment, member: &str) -> Option<f64> {
    let series = format!("triad_canary_replication_delay_seconds{{cluster=\"customs\",member=\"{member}\"}}");
    for id in 1..=3 {
        if let Some(v) = d.controller_metric(id, &series).await {
            return Some(v);
        }
    }
    None
}

fn failed(report: &Value) -> Vec<String> {
    let checks = report["checks"].as_array().cloned().unwrap_or_default();
    checks.iter().filter(|c| c["ok"] == false).filter_map(|c| c["name"].as_str().map(String::from)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_is_checked_like_validate_database_and_a_failing_check_changes_nothing() -> Result<()> {
    let mut d = Deployment::with_postgres().await?;
    d.start_all().await?;
    d.wait_ready(false).await?;

    // Bad input is refused with the field named, and records nothing.
    let bad = d.dir().join("bad-plan.toml");
    std::fs::write(&bad, PLAN.replace("switchover-roundtrip", "fire-drill"))?;
    let out = d.triadctl(&["drill", "put", "--file", bad.to_str().unwrap_or_default()])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success() && stderr.contains("fire-drill"), "{stderr}");
    std::fs::write(&bad, PLAN.replace("target = \"ndc\"", "target = \"mars\""))?;
    let out = d.triadctl(&["drill", "put", "--file", bad.to_str().unwrap_or_default()])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success() && stderr.contains("no member `mars`"), "{stderr}");

    let file = d.dir().join("quarterly-ndc.toml");
    std::fs::write(&file, PLAN)?;
    let out = d.triadctl(&["drill", "put", "--file", file.to_str().unwrap_or_default()])?;
    ensure!(out.status.success(), "put: {}", String::from_utf8_lossy(&out.stderr));
    let out = d.triadctl(&["drill", "list", "-o", "json"])?;
    let plans: Value = serde_json::from_slice(&out.stdout)?;
    ensure!(plans[0]["name"] == "quarterly-ndc" && plans[0]["kind"] == "switchover-roundtrip", "{plans}");

    // Healthy: every check passes (the synchronous standby may take a moment to catch up).
    let report = wait_for("every pre-check passes", Duration::from_secs(30), || async {
        let (ok, report, _) = check(&d, "quarterly-ndc").ok()?;
        ok.then_some(report)
    })
    .await?;
    ensure!(report["passes"] == true && report["checks"].as_array().map(Vec::len) == Some(7), "{report}");
    // The canary measures replication delay from inside the database: none on the primary, a
    // row or two at most on a synchronous standby.
    wait_for("the canary's replication delay exported", Duration::from_secs(20), || async {
        let (dc, ndc) = (canary_delay(&d, "dc").await?, canary_delay(&d, "ndc").await?);
        (dc == 0.0 && ndc <= 0.5).then_some(())
    })
    .await?;
    let out = d.triadctl(&["drill", "check", "nope"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success() && stderr.contains("no drill plan `nope` (known: quarterly-ndc)"), "{stderr}");

    // dr's agent stops; ndc's replay is paused under writes, so it falls behind in apply.
    let before = d.status().await?;
    let epoch = before.cluster_state["customs"].epoch;
    d.signal("agent-dr", nix::sys::signal::Signal::SIGTERM)?;
    std::fs::write(&file, PLAN.replace("max_lag_ms = 5000", "max_lag_ms = 500"))?;
    let dc = d.pg_connect("dc").await?;
    let ndc = d.pg_connect("ndc").await?;
    ndc.batch_execute("SELECT pg_wal_replay_pause()").await?;
    dc.batch_execute("CREATE TABLE IF NOT EXISTS drill_t(x int)").await?;
    let (ok, report, stderr) = wait_for("members-up fails with dr's agent gone", Duration::from_secs(30), || async {
        let r = check(&d, "quarterly-ndc").ok()?;
        failed(&r.1).contains(&"members-up".to_string()).then_some(r)
    })
    .await?;
    ensure!(!ok, "a failing check exits non-zero: {report}");
    ensure!(stderr.contains("drill plan `quarterly-ndc` would be refused: members-up"), "{stderr}");
    let members = report["checks"].as_array().and_then(|c| c.iter().find(|c| c["name"] == "members-up")).cloned();
    ensure!(members.is_some_and(|m| m["detail"].as_str().unwrap_or_default().contains("`dr`")), "{report}");
    let out = d.triadctl(&["drill", "put", "--file", file.to_str().unwrap_or_default()])?;
    ensure!(out.status.success(), "put: {}", String::from_utf8_lossy(&out.stderr));
    let report = wait_for("target-lag fails too", Duration::from_secs(30), || async {
        dc.batch_execute("INSERT INTO drill_t VALUES (1)").await.ok()?;
        let (_, report, _) = check(&d, "quarterly-ndc").ok()?;
        failed(&report).contains(&"target-lag".to_string()).then_some(report)
    })
    .await?;
    ensure!(failed(&report) == ["members-up", "target-lag"], "only those: {report}");
    // A run is refused by the same checks, with the same list, and starts nothing.
    let out = d.triadctl(&["drill", "run", "quarterly-ndc"])?;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    ensure!(!out.status.success(), "a refused run exits non-zero: {stdout}");
    ensure!(stderr.contains("drill plan `quarterly-ndc` refused: members-up"), "{stderr}");
    ensure!(stdout.contains("FAILED") && stdout.contains("`dr`'s agent is silent"), "{stdout}");
    let out = d.triadctl(&["drill", "history", "-o", "json"])?;
    let runs: Value = serde_json::from_slice(&out.stdout)?;
    ensure!(runs.as_array().is_some_and(|r| r.is_empty()), "no run recorded: {runs}");
    // ndc holds no row written since its replay paused: the canary's delay shows it.
    wait_for("ndc's canary delay past a second", Duration::from_secs(20), || async {
        (canary_delay(&d, "ndc").await? > 1.0).then_some(())
    })
    .await?;
    ndc.batch_execute("SELECT pg_wal_replay_resume()").await?;

    // Nothing changed: same epoch and primary, no workflow recorded.
    let after = d.status().await?;
    let c = &after.cluster_state["customs"];
    ensure!(c.epoch == epoch && c.primary == "dc", "{c:?}");
    let history = d.triadctl(&["history", "-o", "json"])?;
    let history: Value = serde_json::from_slice(&history.stdout).unwrap_or(Value::Null);
    ensure!(history.as_array().is_none_or(|h| h.is_empty()), "no workflow: {history}");
    Ok(())
}
