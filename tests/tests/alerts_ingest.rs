//! Alert ingest over HTTPS on real controllers (issue 17): sources and tokens made with
//! `triadctl`, payloads posted with curl and by Debian's Alertmanager, refusals that store
//! nothing, and triage through one controller seen on all.

use std::time::Duration;

use anyhow::{ensure, Result};
use triad_tests::alerts::{curl_post, data, Alertmanager, Post};
use triad_tests::{wait_for, Deployment};

const WAIT: Duration = Duration::from_secs(20);

async fn started() -> Result<(Deployment, u64)> {
    let mut d = Deployment::new()?;
    d.tune_controllers(|c| c.alerts.max_body_bytes = 64 * 1024)?;
    d.start_controllers()?;
    let leader = d.wait_leader(&d.founders(), WAIT).await?;
    Ok((d, leader))
}

/// Waits until every controller has applied `n` alerts passing `check`.
async fn on_every_controller(
    d: &Deployment,
    what: &str,
    check: impl Fn(&[triad_proto::v1::AlertRecord]) -> bool,
) -> Result<()> {
    for id in d.founders() {
        wait_for(&format!("{what} on controller {id}"), WAIT, || async {
            let alerts = d.alerts_of(id).await?;
            check(&alerts).then_some(())
        })
        .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn https_ingest_authenticates_parses_replicates_and_refuses_cleanly() -> Result<()> {
    let (d, leader) = started().await?;
    let prometheus = d.add_alert_source("prometheus", "alertmanager")?;
    let siem = d.add_alert_source("siem", "generic")?;
    // Post to a follower, asking for the answer once committed (it forwards to the leader).
    let follower = d.founders().into_iter().find(|id| *id != leader).expect("a follower");
    let addr = d.http_addr(follower);
    let firing = data("alertmanager-firing.json");
    let post = |path, token, body: &std::path::Path, tls| curl_post(&d, &addr, &Post { path, token, body, tls });

    let (code, body) = post("/ingest/alertmanager?wait=commit", Some(&prometheus), &firing, true)?;
    ensure!(code == 200 && body.contains("\"received\":2") && body.contains("2 new"), "{code} {body}");
    on_every_controller(&d, "the two alerts", |a| a.len() == 2).await?;
    let (code, body) = post("/ingest/generic?wait=commit", Some(&siem), &data("generic.json"), true)?;
    ensure!(code == 200 && body.contains("2 new"), "{code} {body}");
    // The same firing again, answered once journaled (the default): 202, then deduplicated.
    let (code, body) = post("/ingest/alertmanager", Some(&prometheus), &firing, true)?;
    ensure!(code == 202 && body.contains("\"journal_seq\"") && !body.contains("committed"), "{code} {body}");
    on_every_controller(&d, "four alerts, the repeated ones counted twice", |a| {
        a.len() == 4 && a.iter().filter(|x| x.source == "prometheus").all(|x| x.count == 2)
    })
    .await?;

    // Refusals: each a clear status, none stores anything.
    let big = d.dir().join("big.json");
    std::fs::write(&big, format!("{{\"title\":\"{}\",\"severity\":\"low\"}}", "x".repeat(100 * 1024)))?;
    let broken = d.dir().join("broken.json");
    std::fs::write(&broken, r#"{"title":"t","severity":"urgent"}"#)?;
    let cases = [
        (post("/ingest/alertmanager", None, &firing, true)?, 401, "Authorization"),
        (post("/ingest/alertmanager", Some("triad_wrong"), &firing, true)?, 401, "not one of any"),
        (post("/ingest/generic", Some(&prometheus), &data("generic.json"), true)?, 403, "sends alertmanager"),
        (post("/ingest/alertmanager", Some(&prometheus), &firing, false)?, 403, "HTTPS only"),
        (post("/ingest/generic", Some(&siem), &big, true)?, 413, "over 65536 bytes"),
        (post("/ingest/generic", Some(&siem), &broken, true)?, 400, "`[0].severity`"),
        (post("/ingest/syslog", Some(&siem), &broken, true)?, 404, "no ingest path"),
        (post("/ingest/generic?wait=never", Some(&siem), &broken, true)?, 400, "`?wait=commit`"),
    ];
    for ((code, body), want_code, want_text) in cases {
        ensure!(code == want_code && body.contains(want_text), "wanted {want_code} `{want_text}`, got {code} {body}");
    }
    for id in d.founders() {
        let alerts = d.alerts_of(id).await.unwrap_or_default();
        ensure!(alerts.len() == 4, "controller {id} has {} alerts after the refusals", alerts.len());
    }
    let rejected =
        d.controller_metric(follower, "triad_alerts_rejected_total{reason=\"bad_token\",source=\"unknown\"}").await;
    ensure!(rejected == Some(1.0), "bad_token counted once: {rejected:?}");
    let too_large =
        d.controller_metric(follower, "triad_alerts_rejected_total{reason=\"too_large\",source=\"siem\"}").await;
    ensure!(too_large == Some(1.0), "too_large counted once: {too_large:?}");

    // Acknowledged through one controller, acknowledged on all.
    let id = d.alerts_of(leader).await.unwrap_or_default().iter().find(|a| a.source == "prometheus").map(|a| a.id);
    let id = id.expect("a prometheus alert").to_string();
    let out = d.triadctl(&["alerts", "ack", &id])?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    on_every_controller(&d, "the acknowledgement", |a| {
        a.iter().any(|x| x.id.to_string() == id && x.status == "acknowledged")
    })
    .await?;
    // A resolved report resolves the alert it names.
    let resolved = data("alertmanager-resolved.json");
    let (code, body) = post("/ingest/alertmanager?wait=commit", Some(&prometheus), &resolved, true)?;
    ensure!(code == 200 && body.contains("1 resolved"), "{code} {body}");
    on_every_controller(&d, "the resolution", |a| {
        a.iter().any(|x| x.fingerprint == "8b3c2a1f0e9d7c65" && x.status == "resolved")
    })
    .await?;
    // A token rotated with no grace is refused at once; the new one works.
    let out = d.triadctl(&["alerts", "sources", "rotate", "siem", "--kind", "generic", "--grace", "0s"])?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let new_siem = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_string();
    let (code, _) = post("/ingest/generic", Some(&siem), &data("generic.json"), true)?;
    ensure!(code == 401, "the old token after rotation: {code}");
    let (code, body) = post("/ingest/generic", Some(&new_siem), &data("generic.json"), true)?;
    ensure!(code == 202, "the new token: {code} {body}");
    // An auditor may read the queue but not triage it; the refusal is audited.
    let out = d.triadctl_as("audra", "auditor", &["alerts", "resolve", &id, "--reason", "x"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success() && err.contains("PermissionDenied"), "{err}");
    wait_for("the auditor's refusal in the audit log", WAIT, || async {
        let out = d.triadctl(&["audit", "--limit", "20"]).ok()?;
        String::from_utf8_lossy(&out.stdout).contains("triaging alerts").then_some(())
    })
    .await?;
    let out = d.triadctl_as("audra", "auditor", &["alerts", "list", "--status", "active"])?;
    ensure!(out.status.success(), "an auditor reads: {}", String::from_utf8_lossy(&out.stderr));

    // The alert metrics: deduplication counted from the replicated totals, on any controller,
    // and the exposition passes promtool.
    wait_for("the deduplication counter", WAIT, || async {
        let repeated = d.controller_metric(follower, "triad_alerts_ingested_total{outcome=\"repeated\"}").await;
        (repeated == Some(4.0)).then_some(())
    })
    .await?;
    let (code, text) = Deployment::http_get(&addr, "/metrics").await?;
    ensure!(
        code == 200
            && text.contains("triad_alerts_open{severity=\"critical\",site=\"none\",status=\"acknowledged\"} 0"),
        "{text}"
    );
    let file = d.dir().join("metrics.txt");
    std::fs::write(&file, &text)?;
    let check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file)?)
        .output()?;
    ensure!(
        check.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn alertmanager_delivers_a_firing_then_a_resolved_alert() -> Result<()> {
    let (d, leader) = started().await?;
    let token = d.add_alert_source("alertmanager", "alertmanager")?;
    let am = Alertmanager::start(&d, &d.http_addr(leader), &token)?;
    let alert = |ends: &str| {
        format!(
            r#"[{{"labels":{{"alertname":"CustomsGatewayDown","severity":"critical","instance":"10.1.0.20:443","site":"dc"}},
                "annotations":{{"summary":"The customs declaration gateway does not answer"}}{ends}}}]"#
        )
    };
    wait_for("Alertmanager to take the alert", WAIT, || async { am.post(&alert("")).ok() }).await?;
    on_every_controller(&d, "Alertmanager's firing alert", |a| {
        a.iter().any(|x| x.title == "The customs declaration gateway does not answer" && x.status == "open")
    })
    .await?;
    let recorded = d.alerts_of(leader).await.unwrap_or_default();
    let a = recorded.iter().find(|x| x.source == "alertmanager").expect("recorded");
    ensure!(a.severity == "critical" && a.site == "dc" && a.address == "10.1.0.20", "{a:?}");
    ensure!(a.fingerprint.len() == 16, "Alertmanager's own fingerprint is kept: {}", a.fingerprint);
    // Ended: Alertmanager sends it resolved.
    let now = triad_controller::alerts::timestamp::format_ms(triad_controller::context::now_ms());
    am.post(&alert(&format!(r#","endsAt":"{now}""#)))?;
    on_every_controller(&d, "Alertmanager's resolution", |a| {
        a.iter().any(|x| x.source == "alertmanager" && x.status == "resolved")
    })
    .await?;
    Ok(())
}
