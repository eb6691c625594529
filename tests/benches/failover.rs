//! Write outage of an automatic failover on real PostgreSQL: the primary's whole site (agent,
//! postmaster and its children, controller) SIGKILLed under continuous writes, then brought back
//! (it rejoins as a standby and becomes synchronous again) before the next trial, which loses the
//! other site. Trials alternate dc → ndc → dc. In every other pair of trials the Raft leader is
//! first moved into the site about to be lost (its leader is killed and restarted until the
//! election lands there), so the new leader's wait of P(1+rho)^2+m after its election is measured
//! too; in the others it is moved to dr. Each trial says whether the leader died with the site.
//!
//! ```text
//! cargo bench --profile dev -p triad-tests --bench failover \
//!   --config 'profile.dev.package.triad-controller.opt-level=2' \
//!   --config 'profile.dev.package.triad-proto.opt-level=2' \
//!   --config 'profile.dev.package.triad-agent.opt-level=2'
//! ```
//! `TRIAD_BENCH_ELECTION_MS=MIN-MAX` and `TRIAD_BENCH_LEASE_MS=P` try other timings than the
//! defaults (the controllers refuse a P below their floor, 2 x MAX + the agents' backoff cap +
//! their fence lead), e.g. `TRIAD_BENCH_ELECTION_MS=150-300 TRIAD_BENCH_LEASE_MS=1200`.
//! `TRIAD_BENCH_TRIALS` sets the number of failovers (default 20: ten with the leader surviving,
//! ten with it dying). The minimum interval between
//! automatic failovers is lowered to 1 s for the run; every other setting is the default.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use triad_tests::timing::Timing;
use triad_tests::workload::{kill_postgres, pct, TimedWorkload};
use triad_tests::{wait_for, Deployment};

async fn run() -> Result<()> {
    let trials: usize = std::env::var("TRIAD_BENCH_TRIALS").ok().and_then(|s| s.parse().ok()).unwrap_or(20).max(1);
    let mut d = Deployment::with_postgres().await?;
    let timing = Timing::from_env()?;
    d.tune_controllers(|c| {
        c.failover.min_interval_ms = 1000;
        timing.apply(c);
    })?;
    println!("{}", timing.describe());
    d.start_all().await?;
    wait_for("adoption, failover ready", Duration::from_secs(30), || async {
        let c = d.status().await.ok()?.cluster_state.get("customs")?.clone();
        (c.synchronous == ["ndc"] && c.failover_blocked.is_empty()).then_some(())
    })
    .await?;
    let pg = d.pg.as_ref().unwrap();
    let conninfos = d.conninfos()?;
    let data = |m: &str| pg.member(m).map(|m| m.dir.join("data"));
    let (dc_data, ndc_data) = (data("dc")?, data("ndc")?);
    let load = TimedWorkload::start(conninfos).await?;

    println!("Automatic failover after the primary site is SIGKILLed, real PostgreSQL 15, {trials} trials");
    println!(
        "{:>6} {:>10} {:>12} {:>14} {:>17} {:>14}",
        "trial", "failover", "leader died", "writer gap ms", "canary outage ms", "promoted ms"
    );
    let (mut gaps, mut gaps_leader, mut promoted) = (Vec::new(), Vec::new(), Vec::new());
    let (mut canaries, mut canaries_leader) = (Vec::new(), Vec::new());
    for t in 0..trials {
        let (from, to, id, from_data) =
            if t % 2 == 0 { ("dc", "ndc", 1, &dc_data) } else { ("ndc", "dc", 2, &ndc_data) };
        // The leader goes into the site about to be lost, or into dr (never lost here).
        let leader_should_die = (t / 2) % 2 == 1;
        let wanted = if leader_should_die { id } else { 3 };
        if d.wait_leader(&[1, 2, 3], Duration::from_secs(10)).await? != wanted {
            d.make_leader(wanted).await?;
            // Past the new leader's own wait, so that the trial measures only the loss.
            let elected = Instant::now();
            wait_for("the forced election settled", Duration::from_secs(30), || async {
                let v = d.status().await.ok()?;
                let wait = Duration::from_millis(2 * v.lease.period_ms + v.lease.margin_ms + 500);
                let c = v.cluster_state.get("customs")?;
                (elected.elapsed() > wait && c.failover_blocked.is_empty()).then_some(())
            })
            .await?;
        }
        let epoch = d.status().await?.cluster_state["customs"].epoch;
        let leader = d.wait_leader(&[1, 2, 3], Duration::from_secs(10)).await?;
        let (killed, killed_ms) = (Instant::now(), wall_ms());
        d.kill(&format!("agent-{from}"))?;
        kill_postgres(from_data)?;
        d.kill(&format!("controller-{id}"))?;
        wait_for("the new primary", Duration::from_secs(30), || async {
            let c = d.status().await.ok()?.cluster_state.get("customs")?.clone();
            (c.epoch == epoch + 1 && c.primary == to).then_some(())
        })
        .await?;
        let seen = killed.elapsed().as_secs_f64() * 1e3;
        // The longest time between consecutive acknowledged writes from just before the kill
        // until writes flow on the new primary (what an application sees).
        let gap = wait_for("writes on the new primary", Duration::from_secs(30), || async {
            let (gap, last) = load.gap_since(killed);
            let flowing = last.is_some_and(|l| l > killed + Duration::from_millis(seen as u64));
            flowing.then_some(gap.as_secs_f64() * 1e3)
        })
        .await?;
        // The outage as the failover measured it by the canary (its `canary` step).
        let canary = wait_for("the failover's canary measure", Duration::from_secs(20), || async {
            let (w, steps) = d.newest_workflow("failover").ok()?;
            (w["to"] == to && w["outcome"] != "under way").then_some(())?;
            let note = steps.iter().find(|(n, _)| n == "canary").map(|(_, note)| note.clone())?;
            note.strip_prefix("write outage about ")?.split(' ').next()?.parse::<f64>().ok()
        })
        .await?;
        let leader_died = leader == id;
        let breakdown = failover_breakdown(&d, killed_ms).unwrap_or_else(|e| format!("(no breakdown: {e})"));
        println!(
            "{:>6} {:>10} {:>12} {:>14.0} {:>17.0} {:>14.0}",
            t + 1,
            format!("{from}→{to}"),
            if leader_died { "yes" } else { "no" },
            gap,
            canary,
            seen
        );
        println!("       {breakdown}");
        if leader_died {
            gaps_leader.push(gap);
            canaries_leader.push(canary);
        } else {
            gaps.push(gap);
            canaries.push(canary);
        }
        promoted.push(seen);
        // The lost site returns: rejoined, synchronous again, before the next trial.
        d.start_controller(id)?;
        d.start_agent(from)?;
        wait_for("the old primary synchronous again", Duration::from_secs(180), || async {
            let c = d.status().await.ok()?.cluster_state.get("customs")?.clone();
            (c.synchronous == [from] && c.failover_blocked.is_empty()).then_some(())
        })
        .await?;
    }
    let acked = load.finish().await?;
    let lost = d.missing_on(if trials % 2 == 1 { "ndc" } else { "dc" }, &acked).await?;
    println!();
    for (what, v) in [
        ("writer gap, leader survived", &mut gaps),
        ("writer gap, leader died", &mut gaps_leader),
        ("canary outage, leader survived", &mut canaries),
        ("canary outage, leader died", &mut canaries_leader),
    ] {
        if !v.is_empty() {
            println!(
                "{what:<31} p50 {:>6.0} ms  max {:>6.0} ms  ({} trials)",
                pct(&mut v.clone(), 0.5),
                pct(v, 1.0),
                v.len()
            );
        }
    }
    println!(
        "new primary seen in status  p50 {:>6.0} ms  max {:>6.0} ms",
        pct(&mut promoted.clone(), 0.5),
        pct(&mut promoted, 1.0)
    );
    println!("{} acknowledged writes, {lost} lost", acked.len());
    if lost > 0 {
        bail!("{lost} acknowledged writes lost");
    }
    Ok(())
}

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run())
}

/// Milliseconds since the Unix epoch, to compare with the times the history records.
fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Where the newest failover's time went, from its recorded steps: each step's time after the
/// kill (the proposers' wall clocks, on the same host), and the promote's own account.
fn failover_breakdown(d: &Deployment, killed_ms: u64) -> Result<String> {
    let (w, _) = d.newest_workflow("failover")?;
    let started = w["started_ms"].as_u64().ok_or_else(|| anyhow::anyhow!("no start time"))?;
    let killed = triad_proto::words::format_utc(killed_ms);
    let mut out = vec![format!("killed {killed}, started +{}", started.saturating_sub(killed_ms))];
    for s in w["steps"].as_array().into_iter().flatten() {
        let (name, offset) = (s[0].as_str().unwrap_or_default(), s[1].as_u64().unwrap_or_default());
        if ["lease-ended", "promoted", "canary"].contains(&name) {
            out.push(format!("{name} +{}", (started + offset).saturating_sub(killed_ms)));
        }
        if name == "promoted" {
            let note = s[2].as_str().unwrap_or_default();
            out.push(note.split_once('(').map(|(_, n)| n.trim_end_matches(')')).unwrap_or(note).to_string());
        }
    }
    Ok(out.join(", "))
}
