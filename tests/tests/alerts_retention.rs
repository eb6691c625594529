//! Retention (issue 17): closed alerts leave memory for the on-disk history and stay readable
//! there (`alerts show`, `alerts list --archived`), also after every controller restarts; open
//! alerts stay in the queue.

use std::time::Duration;

use anyhow::{ensure, Result};
use triad_tests::alerts::{curl_post, Post};
use triad_tests::{wait_for, Deployment};

const WAIT: Duration = Duration::from_secs(30);

/// The ids `triadctl alerts list` shows, live or from the on-disk history.
fn list(d: &Deployment, archived: bool) -> Option<Vec<u64>> {
    let mut args = vec!["alerts", "list", "-o", "json"];
    if archived {
        args.push("--archived");
    }
    let out = d.triadctl(&args).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let mut ids: Vec<u64> = v.as_array()?.iter().filter_map(|a| a["id"].as_u64()).collect();
    ids.sort();
    Some(ids)
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_alerts_move_to_disk_and_stay_readable_across_a_full_restart() -> Result<()> {
    let mut d = Deployment::new()?;
    d.tune_controllers(|c| {
        c.alerts.retention.keep_closed_ms = 1_000;
        // Snapshots often, so the restart below reads one and the log after it.
        c.raft.snapshot_every_entries = 100;
    })?;
    d.start_controllers()?;
    let leader = d.wait_leader(&d.founders(), WAIT).await?;
    let token = d.add_alert_source("siem", "generic")?;
    let body = d.dir().join("alerts.json");
    let alerts: Vec<String> =
        (0..3).map(|i| format!(r#"{{"title":"retention test {i}","severity":"low","fingerprint":"r{i}"}}"#)).collect();
    std::fs::write(&body, format!("[{}]", alerts.join(",")))?;
    let (code, answer) = curl_post(
        &d,
        &d.http_addr(leader),
        &Post { path: "/ingest/generic?wait=commit", token: Some(&token), body: &body, tls: true },
    )?;
    ensure!(code == 200, "{code} {answer}");
    // Enough entries for a snapshot or two.
    for i in 0..120 {
        d.put_user(&format!("user{i}"), "noc").await?;
    }
    let out = d.triadctl(&["alerts", "resolve", "1", "2", "--reason", "checked"])?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    wait_for("the two closed alerts to leave memory", WAIT, || async {
        (list(&d, false)? == vec![3] && list(&d, true)? == vec![1, 2]).then_some(())
    })
    .await?;
    let shown = d.triadctl(&["alerts", "show", "1"])?;
    let text = String::from_utf8_lossy(&shown.stdout);
    ensure!(shown.status.success() && text.contains("retention test 0") && text.contains("resolve: checked"), "{text}");

    for id in d.founders() {
        d.kill(&format!("controller-{id}"))?;
    }
    d.start_controllers()?;
    d.wait_leader(&d.founders(), WAIT).await?;
    wait_for("the same after a full restart", WAIT, || async {
        (list(&d, false)? == vec![3] && list(&d, true)? == vec![1, 2]).then_some(())
    })
    .await?;
    Ok(())
}
