//! A rolling restart, as `runbooks/upgrade.md` does it for an upgrade (issue 20, item 5): the
//! demo's deployment (three controllers, an agent per site, real PostgreSQL) under continuous
//! writes to the primary; each controller in turn stopped with SIGTERM and started again, the next
//! only once it is back and caught up (quorum kept throughout, the leader last); then each agent
//! in turn, standbys first (SIGTERM) and the primary's last (SIGUSR2: restarted in place, the
//! primary handed over to the next agent, `agents/src/safety/handover.rs`). No write fails,
//! nothing acknowledged is lost, the primary never moves and no two members are ever writable at
//! once.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use nix::sys::signal::Signal;
use triad_tests::workload::SingleWorkload;
use triad_tests::{wait_for, Deployment};

/// Waits until controller `id` answers again and has applied what the leader had applied when
/// it came back.
async fn caught_up(d: &Deployment, id: u64) -> Result<()> {
    let leader = d.wait_leader(&[1, 2, 3], Duration::from_secs(30)).await?;
    let target = d.node_status(leader).await.context("the leader's status")?.last_applied;
    wait_for(&format!("controller {id} back and caught up"), Duration::from_secs(60), || async {
        let s = d.node_status(id).await?;
        (s.last_applied >= target).then_some(())
    })
    .await
}

/// Waits until every member is healthy again with dc primary at `epoch`.
async fn settled(d: &Deployment, epoch: u64) -> Result<()> {
    wait_for("every member healthy, dc primary", Duration::from_secs(60), || async {
        let v = d.status().await.ok()?;
        let c = v.cluster_state.get("customs")?;
        let healthy = v.clusters.get("customs")?.iter().all(|m| m.healthy);
        (c.epoch == epoch && c.primary == "dc" && healthy && c.synchronous == ["ndc"]).then_some(())
    })
    .await
}

/// Milliseconds since the Unix epoch (what status reports times in).
fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_of_controllers_then_agents_loses_no_write() -> Result<()> {
    let mut d = Deployment::with_postgres().await?;
    d.start_all().await?;
    settled(&d, 1).await?;
    let load = SingleWorkload::start(d.conninfos()?, 50).await?;

    // Controllers one at a time, followers first, the leader last.
    let leader = d.wait_leader(&[1, 2, 3], Duration::from_secs(30)).await?;
    let mut order: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    order.push(leader);
    for id in order {
        let key = format!("controller-{id}");
        d.signal(&key, Signal::SIGTERM)?;
        d.start_controller(id)?;
        caught_up(&d, id).await?;
        let errors = load.seen().errors;
        ensure!(errors == 0, "{errors} writes failed while controller {id} restarted");
    }
    settled(&d, 1).await?;

    // Agents one at a time, the primary's last: SIGTERM leaves a standby's server running;
    // the primary's agent restarts in place with SIGUSR2, handing its primary over.
    for site in ["dr", "ndc", "dc"] {
        let key = format!("agent-{site}");
        let sig = if site == "dc" { Signal::SIGUSR2 } else { Signal::SIGTERM };
        d.signal_process(&key, sig)?;
        let stopped_ms = wall_ms();
        d.start_agent(site)?;
        wait_for(&format!("{key} reporting again"), Duration::from_secs(60), || async {
            let v = d.status().await.ok()?;
            v.agents.iter().find(|a| a.name == key && a.up && a.last_seen_ms > stopped_ms).map(|_| ())
        })
        .await?;
        settled(&d, 1).await?;
        let errors = load.seen().errors;
        ensure!(errors == 0, "{errors} writes failed while {key} restarted");
        if site == "dc" {
            // The next agent took the primary over: the guard process's file is gone.
            let handover = d.dir().join(format!("data/{key}/handover"));
            ensure!(!handover.exists(), "{} still there: nobody took the primary over", handover.display());
        }
    }
    let acked_before = load.seen().acked.len();
    wait_for("writes still flowing", Duration::from_secs(10), || async {
        (load.seen().acked.len() > acked_before + 20).then_some(())
    })
    .await?;
    let seen = load.finish().await?;
    ensure!(seen.errors == 0, "{} writes failed", seen.errors);
    let acked: Vec<i64> = seen.acked.iter().copied().collect();
    for member in ["dc", "ndc"] {
        let lost = d.missing_on(member, &acked).await?;
        ensure!(lost == 0, "{lost} acknowledged writes missing on {member}");
    }
    println!(
        "{} writes acknowledged, none failed or lost; longest gap between two: {:?}",
        acked.len(),
        seen.longest_gap
    );
    Ok(())
}
