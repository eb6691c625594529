//! Agents: registration, heartbeats through a change of leader, marked down when silent and up
//! again when back, with the changes committed.

use std::time::Duration;

use anyhow::{ensure, Result};
use triad_tests::{wait_for, Deployment};

#[tokio::test(flavor = "multi_thread")]
async fn agents_report_through_a_leader_change_and_are_marked_down_and_up() -> Result<()> {
    let mut d = Deployment::new()?;
    d.start_controllers()?;
    let leader = d.wait_leader(&[1, 2, 3], Duration::from_secs(30)).await?;
    for site in ["dc", "ndc", "dr"] {
        d.start_agent(site)?;
    }
    wait_for("three agents up, with host facts", Duration::from_secs(30), || async {
        let v = d.status().await.ok()?;
        (v.agents.len() == 3 && v.agents.iter().all(|a| a.up && a.cpus > 0 && a.memory_total_bytes > 0)).then_some(())
    })
    .await?;

    // Kill the leader: the agents keep reporting to the new one and are never marked down.
    d.kill(&format!("controller-{leader}"))?;
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    let new = d.wait_leader(&rest, Duration::from_secs(20)).await?;
    // Longer than the 3 s down timeout: a lost stream would have shown by now.
    let mut seen_fresh = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let s = d.state_of(new).await;
        if let Some(s) = s {
            ensure!(s.agents.iter().all(|a| a.up), "an agent was marked down after the leader change: {:?}", s.agents);
            let now = triad_controller::context::now_ms();
            if s.agents.iter().all(|a| now.saturating_sub(a.last_seen_ms) < 2000) {
                seen_fresh += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    ensure!(seen_fresh > 5, "the new leader hears every agent ({seen_fresh} fresh samples)");

    // Stop one agent: it is marked down, by a committed change.
    d.signal("agent-dr", nix::sys::signal::Signal::SIGTERM)?;
    wait_for("agent-dr down", Duration::from_secs(15), || async {
        let v = d.status().await.ok()?;
        v.agents.iter().any(|a| a.name == "agent-dr" && !a.up).then_some(())
    })
    .await?;
    let mut c = d.control(new).await?;
    let audit = c.audit(triad_proto::v1::AuditRequest { limit: 50 }).await?.into_inner();
    ensure!(
        audit.entries.iter().any(|e| e.action.starts_with("mark agent agent-dr down") && e.role == "system"),
        "the down decision is in the audit log: {:?}",
        audit.entries
    );
    // Restarted: up again.
    d.start_agent("dr")?;
    wait_for("agent-dr up again", Duration::from_secs(15), || async {
        let v = d.status().await.ok()?;
        v.agents.iter().any(|a| a.name == "agent-dr" && a.up).then_some(())
    })
    .await?;
    Ok(())
}
