//! Incidents on real controllers and agents (issue 17): an alert about a host whose agent is down
//! joins the agent-down incident, which is exported to the helpdesk's e-ticket webhook (a local
//! HTTP sink) with its alerts, and the ticket id the helpdesk answers with is recorded.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use triad_controller::config::{ChannelConfig, RouteConfig};
use triad_tests::alerts::{curl_post, Post, Sink};
use triad_tests::{wait_for, Deployment};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn an_alert_during_an_agent_outage_joins_its_incident_which_gets_a_ticket() -> Result<()> {
    let mut d = Deployment::new()?;
    let http = Sink::http(&d)?;
    let port = http.port;
    d.tune_controllers(|c| {
        c.alerts.notify.channels = vec![ChannelConfig {
            name: "helpdesk".into(),
            kind: "ticket".into(),
            url: format!("http://127.0.0.1:{port}/ticket"),
            token: String::new(),
            smtp_addr: String::new(),
            from: String::new(),
            to: vec![],
            timeout_ms: 5_000,
        }];
        c.alerts.notify.routes = vec![RouteConfig {
            channel: "helpdesk".into(),
            min_severity: "medium".into(),
            sites: vec![],
            sources: vec![],
            level: 0,
            incidents: true,
        }];
    })?;
    d.start_all().await?;
    let host = wait_for("agent-ndc registered", WAIT, || async {
        let s = d.state_of(d.wait_leader(&d.founders(), WAIT).await.ok()?).await?;
        s.agents.iter().find(|a| a.name == "agent-ndc" && a.up).map(|a| a.host.clone())
    })
    .await?;
    let token = d.add_alert_source("siem", "generic")?;

    d.kill("agent-ndc")?;
    wait_for("agent-ndc recorded down", WAIT, || async {
        let s = d.state_of(d.wait_leader(&d.founders(), WAIT).await.ok()?).await?;
        s.agents.iter().any(|a| a.name == "agent-ndc" && !a.up).then_some(())
    })
    .await?;
    let body = d.dir().join("alert.json");
    std::fs::write(
        &body,
        format!(r#"{{"title":"EDR: service stopped unexpectedly","severity":"high","host":"{host}"}}"#),
    )?;
    let leader = d.wait_leader(&d.founders(), WAIT).await?;
    let (code, answer) = curl_post(
        &d,
        &d.http_addr(leader),
        &Post { path: "/ingest/generic?wait=commit", token: Some(&token), body: &body, tls: true },
    )?;
    ensure!(code == 200, "{code} {answer}");

    let incident = wait_for("the incident's ticket recorded", WAIT, || async {
        let out = d.triadctl(&["alerts", "incidents", "-o", "json"]).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let first = v.as_array()?.first()?.clone();
        (first["ticket"] == "INC-1").then_some(first)
    })
    .await?;
    ensure!(incident["title"].as_str().is_some_and(|t| t.starts_with("agent agent-ndc down")), "{incident}");
    ensure!(incident["kind"] == "agent down" && incident["sites"][0] == "ndc", "{incident}");
    let tickets = http.posts("/ticket");
    ensure!(tickets.len() == 1, "one export: {tickets:?}");
    let exported = &tickets[0]["body"]["incident"];
    ensure!(exported["alerts"][0]["title"] == "EDR: service stopped unexpectedly", "{exported}");
    let id = incident["alerts"][0].as_u64().context("an alert in the incident")?;
    let out = d.triadctl(&["alerts", "show", &id.to_string()])?;
    let shown = String::from_utf8_lossy(&out.stdout);
    ensure!(shown.contains("incident") && shown.contains("agent agent-ndc down"), "{shown}");
    Ok(())
}
