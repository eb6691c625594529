//! Services declared per cluster (issue 20, item 1, health part): seeded from the controllers'
//! config or put through the API, checked by the agents at their sites (HTTP and TCP here against
//! servers the test runs), judged by the leader with rise and fall, shown by `triadctl services`,
//! an instance going away degrading the service and raising its alert, its return resolving it.

use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::Value;
use triad_controller::state::services::{ServiceInstance, ServiceKind, ServiceSpec};
use triad_tests::{wait_for, Deployment};

const WAIT: Duration = Duration::from_secs(60);

fn services(d: &Deployment) -> Result<Vec<Value>> {
    let out = d.triadctl(&["services", "-o", "json"])?;
    ensure!(out.status.success(), "services: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

async fn wait_health(d: &Deployment, name: &str, health: &str) -> Result<Value> {
    wait_for(&format!("service {name} {health}"), WAIT, || async {
        services(d).ok()?.into_iter().find(|s| s["name"] == name && s["health"] == health)
    })
    .await
}

/// An HTTP server answering 200 on /health, on a free loopback port; dropped, it stops.
async fn http_server() -> Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let app = axum::Router::new().route("/health", axum::routing::get(|| async { "ok" }));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}/health"), task))
}

#[tokio::test(flavor = "multi_thread")]
async fn services_are_checked_at_their_sites_and_their_health_raises_and_resolves_an_alert() -> Result<()> {
    let mut d = Deployment::new()?;
    let (dc_url, dc_server) = http_server().await?;
    let (ndc_url, _ndc_server) = http_server().await?;
    let seeded = ServiceSpec {
        name: "asycuda".into(),
        cluster: "customs".into(),
        kind: ServiceKind::Http,
        group: 1,
        instances: vec![
            ServiceInstance { site: "dc".into(), agent: "agent-dc".into(), target: dc_url },
            ServiceInstance { site: "ndc".into(), agent: "agent-ndc".into(), target: ndc_url },
        ],
        query: String::new(),
        expect: String::new(),
        interval_ms: 500,
        timeout_ms: 300,
        pre_hook: String::new(),
        post_hook: String::new(),
        hook_timeout_ms: 30_000,
    };
    d.tune_controllers(|cfg| cfg.services = vec![seeded.clone()])?;
    d.start_all().await?;

    // Seeded from the config, checked by the agents at dc and ndc: up.
    let up = wait_health(&d, "asycuda", "up").await?;
    let instances = up["instances"].as_array().cloned().unwrap_or_default();
    ensure!(instances.len() == 2 && instances.iter().all(|i| i["state"] == "answering"), "{up}");
    // And `triadctl status` shows it under its cluster.
    let status = String::from_utf8_lossy(&d.triadctl(&["status"])?.stdout).into_owned();
    ensure!(status.contains("service asycuda (group 1, http) up"), "{status}");

    // One through the API, from a file: a TCP service at dr whose port nobody listens on (down).
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let closed = listener.local_addr()?.to_string();
    drop(listener);
    let file = d.dir().join("epayment.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"epayment\"\ncluster = \"customs\"\nkind = \"tcp\"\ngroup = 2\ninterval_ms = 500\ntimeout_ms = 300\n\
             [[instances]]\nsite = \"dr\"\nagent = \"agent-dr\"\ntarget = \"{closed}\"\n"
        ),
    )?;
    let out = d.triadctl(&["services", "put", "--file", file.to_str().unwrap_or_default()])?;
    ensure!(out.status.success(), "put: {}", String::from_utf8_lossy(&out.stderr));
    let down = wait_health(&d, "epayment", "down").await?;
    ensure!(down["reason"].as_str().is_some_and(|r| r.contains(&closed)), "{down}");

    // A bad definition is refused naming the field, and changes nothing.
    std::fs::write(&file, "name = \"bad\"\ncluster = \"customs\"\nkind = \"tcp\"\n[[instances]]\nsite = \"dr\"\nagent = \"agent-dr\"\ntarget = \"nowhere\"\n")?;
    let out = d.triadctl(&["services", "put", "--file", file.to_str().unwrap_or_default()])?;
    let said = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success() && said.contains("instances[0].target"), "{said}");
    ensure!(services(&d)?.len() == 2, "nothing recorded");

    // dc's instance goes away: degraded, and the service's own alert opens.
    dc_server.abort();
    let degraded = wait_health(&d, "asycuda", "degraded").await?;
    ensure!(degraded["reason"].as_str().is_some_and(|r| r.starts_with("dc ")), "{degraded}");
    let alert = wait_for("the service's alert", WAIT, || async {
        let out = d.triadctl(&["alerts", "list", "--source", "triad", "--status", "active", "-o", "json"]).ok()?;
        let list: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
        list.into_iter().find(|a| a["title"].as_str().is_some_and(|t| t.contains("service asycuda")))
    })
    .await?;
    ensure!(alert["site"] == "dc", "{alert}");

    // It answers again (a new server on the same port): up, and the alert is resolved.
    let port = seeded.instances[0].target.trim_start_matches("http://127.0.0.1:").trim_end_matches("/health");
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    let app = axum::Router::new().route("/health", axum::routing::get(|| async { "ok" }));
    let _again = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    wait_health(&d, "asycuda", "up").await?;
    wait_for("the alert resolved", WAIT, || async {
        let out = d.triadctl(&["alerts", "list", "--source", "triad", "--status", "active", "-o", "json"]).ok()?;
        let list: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
        (!list.iter().any(|a| a["title"].as_str().is_some_and(|t| t.contains("service asycuda")))).then_some(())
    })
    .await?;

    // The leader's metrics say the same.
    let leader = d.wait_leader(&d.founders(), WAIT).await?;
    let up =
        d.controller_metric(leader, r#"triad_service_health{cluster="customs",health="up",service="asycuda"}"#).await;
    ensure!(up == Some(1.0), "{up:?}");
    let dr = d.controller_metric(leader, r#"triad_service_instance_up{service="epayment",site="dr"}"#).await;
    ensure!(dr == Some(0.0), "{dr:?}");

    let out = d.triadctl(&["services", "delete", "epayment"])?;
    ensure!(out.status.success(), "delete: {}", String::from_utf8_lossy(&out.stderr));
    ensure!(services(&d)?.len() == 1);
    Ok(())
}
