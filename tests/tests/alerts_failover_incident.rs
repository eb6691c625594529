//! Correlation on a real failover (issue 17): while dc's database and agent are lost and Triad
//! fails over to ndc, alerts about dc's host keep arriving; they end up in one incident named
//! after the failover.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use triad_tests::alerts::Ingest;
use triad_tests::workload::kill_postgres;
use triad_tests::{wait_for, Deployment};

#[tokio::test(flavor = "multi_thread")]
async fn alerts_about_dc_during_its_failover_are_one_incident_with_it() -> Result<()> {
    let mut d = Deployment::with_postgres().await?;
    d.start_all().await?;
    d.wait_ready(true).await?;
    let token = d.add_alert_source("siem", "generic")?;
    let ingest = Arc::new(Ingest::new(&d)?);
    let leader = d.wait_leader(&d.founders(), Duration::from_secs(10)).await?;

    // A burst of database errors from dc's host, one new alert every 200 ms, from before the
    // loss until after the failover.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let burst = {
        let (ingest, token) = (ingest.clone(), token.clone());
        tokio::spawn(async move {
            let mut sent = 0u32;
            loop {
                let body = format!(
                    r#"{{"title":"ORA-style error {sent} on the customs database","severity":"high","host":"dc-host","fingerprint":"db-error-{sent}"}}"#
                );
                if matches!(ingest.post(leader, &token, body).await, Ok(202)) {
                    sent += 1;
                }
                tokio::select! {
                    _ = stop_rx.changed() => return sent,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let dc_data = d.pg.as_ref().context("postgres")?.member("dc")?.dir.join("data");
    d.kill("agent-dc")?;
    kill_postgres(&dc_data)?;
    d.wait_primary("ndc", 2, &["controller-1", "controller-2", "agent-ndc"]).await?;
    // A little more of the burst after the failover, then stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop_tx.send(true);
    let sent = burst.await?;
    ensure!(sent >= 10, "only {sent} alerts sent");

    let incidents = wait_for("the burst grouped with the failover", Duration::from_secs(20), || async {
        let out = d.triadctl(&["alerts", "incidents", "-o", "json"]).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let n = v.as_array()?.iter().map(|i| i["alerts"].as_array().map_or(0, |a| a.len())).sum::<usize>();
        (n == sent as usize).then_some(v)
    })
    .await?;
    let list = incidents.as_array().context("incidents")?;
    ensure!(list.len() == 1, "one incident: {incidents}");
    let title = list[0]["title"].as_str().unwrap_or_default();
    ensure!(title.contains("failover of customs dc→ndc"), "named after the failover: {title}");
    Ok(())
}
