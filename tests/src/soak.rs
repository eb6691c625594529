//! The leader-kill soak (issue 16, item 4): the Raft leader SIGKILLed again and again under
//! writes, the database untouched. A change of leader must never fence a healthy primary, fail
//! it over or fail a write: the lease period covers two elections, the agents' reconnect backoff
//! and their fence lead (`lease.period_ms`'s check in the controller's config). Shared by the
//! end-to-end test (a few kills) and the benchmark (`--kills 100`).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::workload::{pct, SingleWorkload};
use crate::{wait_for, Deployment};

/// What one soak saw.
#[derive(Debug, Default)]
pub struct SoakReport {
    pub kills: usize,
    /// From each kill until another controller leads, in milliseconds.
    pub elections_ms: Vec<f64>,
    /// Fences of the primary (any reason), counted by its agent.
    pub fences: f64,
    /// Rounds in which the primary's agent had to ask its vouchers because no renewal came in
    /// time: each is a change of leader the lease alone did not cover.
    pub failsafe_rounds: f64,
    /// Epoch changes (failovers, switchovers) during the soak.
    pub epoch_changes: u64,
    pub writes_acked: usize,
    pub writes_failed: usize,
    /// The longest time between two acknowledged writes, in milliseconds.
    pub longest_gap_ms: f64,
}

impl SoakReport {
    /// The summary table.
    pub fn table(&self) -> String {
        let mut e = self.elections_ms.clone();
        let (p50, max) = if e.is_empty() { (0.0, 0.0) } else { (pct(&mut e.clone(), 0.5), pct(&mut e, 1.0)) };
        format!(
            "{:<34} {:>10}\n{:<34} {:>10}\n{:<34} {:>10}\n{:<34} {:>10}\n{:<34} {:>10}\n{:<34} {:>10}\n{:<34} {:>10.0}\n\
             {:<34} {:>10.0}\n{:<34} {:>10.0}\n",
            "leader kills",
            self.kills,
            "fences of the primary",
            self.fences,
            "failovers (epoch changes)",
            self.epoch_changes,
            "failsafe rounds (vouchers asked)",
            self.failsafe_rounds,
            "writes acknowledged",
            self.writes_acked,
            "writes failed",
            self.writes_failed,
            "new leader after a kill, p50 ms",
            p50,
            "new leader after a kill, max ms",
            max,
            "longest gap between writes, ms",
            self.longest_gap_ms,
        )
    }

    /// True when no change of leader disturbed the database.
    pub fn clean(&self) -> bool {
        self.fences == 0.0 && self.epoch_changes == 0 && self.writes_failed == 0
    }
}

/// A counter of dc's agent, summed over its labels; an agent that does not answer is an error,
/// never a zero.
async fn dc_counter(d: &Deployment, name: &str) -> Result<f64> {
    d.agent_metric_sum("dc", name).await.with_context(|| format!("dc's agent did not answer for {name}"))
}

/// Kills the leader `kills` times while one client writes to the primary `dc`; restarts each
/// killed controller and waits until it follows again before the next kill. `progress` is told
/// after every kill.
pub async fn leader_kills(
    d: &mut Deployment,
    kills: usize,
    mut progress: impl FnMut(usize, f64),
) -> Result<SoakReport> {
    let conninfos = d.conninfos()?;
    let epoch = d.status().await?.cluster_state["customs"].epoch;
    let fences0 = dc_counter(d, "triad_agent_fences_total").await?;
    let failsafe0 = dc_counter(d, "triad_agent_failsafe_rounds_total").await?;
    let load = SingleWorkload::start(conninfos, 50).await?;
    let started = Instant::now();
    let mut report = SoakReport { kills, ..Default::default() };
    for k in 0..kills {
        let leader = d.wait_leader(&[1, 2, 3], Duration::from_secs(30)).await?;
        let others: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != leader).collect();
        let killed = Instant::now();
        d.kill(&format!("controller-{leader}"))?;
        let next = d.wait_leader(&others, Duration::from_secs(30)).await.with_context(|| format!("kill {}", k + 1))?;
        let ms = killed.elapsed().as_secs_f64() * 1e3;
        report.elections_ms.push(ms);
        d.start_controller(leader)?;
        // Back and following the new leader before the next kill, or two kills would take the
        // quorum away (that is the failsafe's test, not this one).
        wait_for("the killed controller following again", Duration::from_secs(60), || async {
            let s = d.node_status(leader).await?;
            let n = d.node_status(next).await?;
            (s.raft_role == "follower" && s.leader_id == next && s.last_applied + 5 >= n.last_applied).then_some(())
        })
        .await?;
        progress(k + 1, ms);
    }
    let seconds = started.elapsed().as_secs_f64();
    report.fences = dc_counter(d, "triad_agent_fences_total").await? - fences0;
    report.failsafe_rounds = dc_counter(d, "triad_agent_failsafe_rounds_total").await? - failsafe0;
    report.epoch_changes = d.status().await?.cluster_state["customs"].epoch - epoch;
    let seen = load.finish().await?;
    report.writes_acked = seen.acked.len();
    report.writes_failed = seen.errors;
    report.longest_gap_ms = seen.longest_gap.as_secs_f64() * 1e3;
    eprintln!("soak: {kills} kills in {seconds:.0} s");
    Ok(report)
}
