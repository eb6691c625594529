//! Write outage of a planned switchover on real PostgreSQL, as an outside writer and as Triad's
//! canary see it, over repeated trials alternating dc → ndc → dc under continuous writes.
//!
//! ```text
//! cargo bench --profile dev -p triad-tests --bench switchover \
//!   --config 'profile.dev.package.triad-controller.opt-level=2' \
//!   --config 'profile.dev.package.triad-proto.opt-level=2' \
//!   --config 'profile.dev.package.triad-agent.opt-level=2'
//! ```
//! `TRIAD_BENCH_TRIALS` sets the number of switchovers (default 10).

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use triad_tests::workload::{pct, TimedWorkload};
use triad_tests::{wait_for, Deployment};

async fn run() -> Result<()> {
    let trials: usize = std::env::var("TRIAD_BENCH_TRIALS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let mut d = Deployment::with_postgres().await?;
    d.start_all().await?;
    wait_for("adoption", Duration::from_secs(30), || async {
        let v = d.status().await.ok()?;
        (v.cluster_state.get("customs")?.synchronous == ["ndc"]).then_some(())
    })
    .await?;
    let conninfos = d.conninfos()?;
    let load = TimedWorkload::start(conninfos).await?;

    println!("Planned switchover under continuous writes, real PostgreSQL 15, 3 controllers, {trials} trials");
    println!(
        "{:>6} {:>10} {:>14} {:>16} {:>8} {:>9} {:>10} {:>10} {:>12}",
        "trial",
        "to",
        "writer gap ms",
        "canary outage ms",
        "stop ms",
        "catch-up",
        "promote ms",
        "of it hold",
        "total ms"
    );
    let (mut gaps, mut canaries) = (Vec::new(), Vec::new());
    for t in 0..trials {
        let to = if t % 2 == 0 { "ndc" } else { "dc" };
        let from = if to == "ndc" { "dc" } else { "ndc" };
        let started = Instant::now();
        let out = d.triadctl(&["switchover", "--cluster", "customs", "--to", to])?;
        let total = started.elapsed();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!("switchover {t} failed: {}{text}", String::from_utf8_lossy(&out.stderr));
        }
        let canary = number_after(&text, "write outage about ");
        // The switchover's own step timings: "stop writes on dc: 119 ms", "ndc holds the final
        // position: 42 ms", "promote ndc: 117 ms".
        let step_ms = |marker: &str| {
            let line = text.lines().find(|l| l.contains(marker)).unwrap_or_default();
            number_after(line, ": ")
        };
        let (stop, catch_up, promote) =
            (step_ms("stop writes on"), step_ms("holds the final position"), step_ms(&format!("promote {to}")));
        // Within the promote, as its agent timed it: "(vouch hold 4 ms, lease at epoch 3 34 ms, ...".
        let hold = number_after(&text, "vouch hold ");
        // The largest gap between consecutive acknowledged writes during the switchover.
        let gap = load.gap_since(started).0.as_secs_f64() * 1e3;
        println!(
            "{:>6} {:>10} {:>14.0} {:>16.0} {:>8.0} {:>9.0} {:>10.0} {:>10.0} {:>12.0}",
            t + 1,
            format!("{from}→{to}"),
            gap,
            canary,
            stop,
            catch_up,
            promote,
            hold,
            total.as_secs_f64() * 1e3
        );
        gaps.push(gap);
        canaries.push(canary);
        // Let the old primary settle as a synchronous standby before the next trial.
        wait_for("synchronous again", Duration::from_secs(30), || async {
            let v = d.status().await.ok()?;
            let c = v.cluster_state.get("customs")?;
            (c.primary == to && c.synchronous == [from]).then_some(())
        })
        .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Zero loss: every acknowledged write is on the final primary.
    let acked = load.finish().await?;
    let lost = d.missing_on(if trials % 2 == 1 { "ndc" } else { "dc" }, &acked).await?;
    println!();
    println!("writer gap  p50 {:>6.0} ms  max {:>6.0} ms", pct(&mut gaps.clone(), 0.5), pct(&mut gaps, 1.0));
    println!("canary      p50 {:>6.0} ms  max {:>6.0} ms", pct(&mut canaries.clone(), 0.5), pct(&mut canaries, 1.0));
    println!("{} acknowledged writes, {lost} lost", acked.len());
    if lost > 0 {
        bail!("{lost} acknowledged writes lost");
    }
    Ok(())
}

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run())
}

/// The number that follows the first `marker` in `text` (NaN when there is none).
fn number_after(text: &str, marker: &str) -> f64 {
    text.split(marker).nth(1).and_then(|s| s.split(' ').next()).and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
}
