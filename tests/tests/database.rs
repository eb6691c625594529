//! Database members watched by their agents: roles, positions, lag and synchronous state reach
//! `triadctl status`, the agents' metrics, and the `/primary` and `/replica` health endpoints.

use std::time::Duration;

use anyhow::{ensure, Result};
use triad_tests::{wait_for, Deployment, LocalDb};

#[tokio::test(flavor = "multi_thread")]
async fn simulated_members_are_observed_and_routed() -> Result<()> {
    let mut d = Deployment::with_db(LocalDb::Simulated)?;
    d.start_controllers()?;
    d.wait_leader(&[1, 2, 3], Duration::from_secs(30)).await?;
    for site in ["dc", "ndc", "dr"] {
        d.start_agent(site)?;
    }
    let v = wait_for(
        "three observed members",
        Duration::from_secs(30),
        || async {
            let v = d.status().await.ok()?;
            let m = v.clusters.get("customs")?;
            (m.len() == 3 && m.iter().all(|m| m.healthy && m.driver == "simulated")).then_some(v)
        },
    )
    .await?;
    let members = &v.clusters["customs"];
    let role = |n: &str| {
        members
            .iter()
            .find(|m| m.name == n)
            .map(|m| m.role.clone())
            .unwrap_or_default()
    };
    ensure!(
        role("dc") == "primary" && role("ndc") == "standby" && role("dr") == "standby",
        "{members:?}"
    );
    ensure!(
        members.iter().all(|m| m.lag_bytes.is_some()),
        "lag is known for every member"
    );
    let table = d.triadctl(&["status"])?;
    let table = String::from_utf8_lossy(&table.stdout);
    ensure!(
        table.contains("primary") && table.contains("standby"),
        "{table}"
    );

    // The health endpoints route writers: only dc answers /primary.
    for a in &d.plan.agents {
        let (p, _) = Deployment::http_get(&a.http_addr, "/primary").await?;
        let (r, _) = Deployment::http_get(&a.http_addr, "/replica").await?;
        if a.site == "dc" {
            ensure!(p == 200 && r == 503, "dc: /primary {p}, /replica {r}");
        } else {
            ensure!(
                p == 503 && r == 200,
                "{}: /primary {p}, /replica {r}",
                a.site
            );
        }
        let (_, metrics) = Deployment::http_get(&a.http_addr, "/metrics").await?;
        ensure!(
            metrics.contains("triad_db_up{cluster=\"customs\",member=\""),
            "db metrics on {}",
            a.name
        );
    }

    // A member whose agent stops is no longer shown as healthy.
    d.signal("agent-dr", nix::sys::signal::Signal::SIGTERM)?;
    wait_for("dr shown as unknown", Duration::from_secs(15), || async {
        let v = d.status().await.ok()?;
        v.clusters["customs"]
            .iter()
            .any(|m| m.name == "dr" && !m.healthy && m.role == "unknown")
            .then_some(())
    })
    .await?;
    Ok(())
}
