//! Drills on real PostgreSQL (issue 21): `switchover-roundtrip` runs under continuous writes, each
//! move's write outage as the drill's canary measured it beside the longest gap an outside writer
//! saw (the peer measured in the same run), its RTO and data-loss window; then `dr-test` runs,
//! the copy's time to usable (RTO) and the age of its newest data (RPO). Nothing is asserted but
//! that every drill passed and no acknowledged write was lost.
//!
//! ```text
//! cargo bench --profile dev -p triad-tests --bench drills \
//!   --config 'profile.dev.package.triad-controller.opt-level=2' \
//!   --config 'profile.dev.package.triad-proto.opt-level=2' \
//!   --config 'profile.dev.package.triad-agent.opt-level=2'
//! ```
//! `TRIAD_BENCH_TRIALS` sets the number of drills of each kind (default 10).

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde_json::Value;
use triad_tests::workload::{pct, TimedWorkload};
use triad_tests::{wait_for, Deployment};

const PLANS: [(&str, &str); 2] = [
    (
        "roundtrip.toml",
        "name = \"roundtrip\"\nkind = \"switchover-roundtrip\"\ncluster = \"customs\"\ntarget = \"ndc\"\n\n\
         [targets]\nrto_ms = 60000\nmax_write_outage_ms = 30000\n",
    ),
    (
        "dr.toml",
        "name = \"dr\"\nkind = \"dr-test\"\ncluster = \"customs\"\ntarget = \"dr\"\n\n[targets]\nrto_ms = 600000\n",
    ),
];

/// Runs `plan` to its end (once its pre-checks pass); its report.
async fn drill(d: &Deployment, plan: &str) -> Result<Value> {
    wait_for("the pre-checks pass", Duration::from_secs(60), || async {
        d.triadctl(&["drill", "check", plan]).ok()?.status.success().then_some(())
    })
    .await?;
    let out = d.triadctl(&["drill", "run", plan, "--watch", "-o", "json"])?;
    let report: Value =
        serde_json::from_slice(&out.stdout).map_err(|e| anyhow!("{e}: {}", String::from_utf8_lossy(&out.stderr)))?;
    if report["result"] != "passed" {
        bail!("drill of {plan} did not pass: {report}");
    }
    Ok(report)
}

fn ms(v: &Value) -> f64 {
    v.as_u64().map_or(f64::NAN, |v| v as f64)
}

async fn run() -> Result<()> {
    let trials: usize = std::env::var("TRIAD_BENCH_TRIALS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let d = Deployment::with_postgres().await?;
    let mut d = d;
    d.start_all().await?;
    d.wait_ready(false).await?;
    for (file, text) in PLANS {
        let path = d.dir().join(file);
        std::fs::write(&path, text)?;
        let out = d.triadctl(&["drill", "put", "--file", path.to_str().unwrap_or_default()])?;
        if !out.status.success() {
            bail!("{}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let load = TimedWorkload::start(d.conninfos()?).await?;

    println!("switchover-roundtrip drills (dc → ndc → dc) under continuous writes, real PostgreSQL 15, {trials} runs");
    println!(
        "{:>4} {:>8} {:>16} {:>14} {:>10} {:>8} {:>10}",
        "run", "move", "canary outage ms", "writer gap ms", "diff ms", "RTO ms", "loss ms"
    );
    let (mut outages, mut gaps, mut diffs, mut rtos) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for t in 0..trials {
        let r = drill(&d, "roundtrip").await?;
        let legs = r["legs"].as_array().cloned().unwrap_or_default();
        let ended = r["end"]["at_ms"].as_u64().unwrap_or(u64::MAX);
        for (i, leg) in legs.iter().enumerate() {
            let from = leg["started_ms"].as_u64().unwrap_or_default();
            let to = legs.get(i + 1).and_then(|l| l["started_ms"].as_u64()).unwrap_or(ended);
            let gap = load.longest_gap_within(from, to).map_or(f64::NAN, |g| g.0.as_secs_f64() * 1e3);
            let outage = ms(&leg["write_outage_ms"]);
            println!(
                "{:>4} {:>8} {:>16.0} {:>14.0} {:>10.0} {:>8.0} {:>10.0}",
                t + 1,
                format!("{}→{}", leg["from"].as_str().unwrap_or("?"), leg["to"].as_str().unwrap_or("?")),
                outage,
                gap,
                outage - gap,
                ms(&leg["rto_ms"]),
                ms(&leg["data_loss_ms"])
            );
            outages.push(outage);
            gaps.push(gap);
            diffs.push((outage - gap).abs());
            rtos.push(ms(&leg["rto_ms"]));
        }
    }
    let failed = load.failed();
    let acked = load.finish().await?;
    let lost = d.missing_on("dc", &acked).await?;
    println!();
    println!("canary outage p50 {:>5.0} ms  max {:>5.0} ms", pct(&mut outages.clone(), 0.5), pct(&mut outages, 1.0));
    println!("writer gap    p50 {:>5.0} ms  max {:>5.0} ms", pct(&mut gaps.clone(), 0.5), pct(&mut gaps, 1.0));
    println!("|difference|  p50 {:>5.0} ms  max {:>5.0} ms", pct(&mut diffs.clone(), 0.5), pct(&mut diffs, 1.0));
    println!("RTO           p50 {:>5.0} ms  max {:>5.0} ms", pct(&mut rtos.clone(), 0.5), pct(&mut rtos, 1.0));
    println!("{} acknowledged writes, {lost} lost ({failed} failed while the primary moved)", acked.len());
    if lost > 0 {
        bail!("{lost} acknowledged writes lost");
    }

    println!();
    println!("dr-test drills (an isolated copy of dr's standby), {trials} runs");
    println!("{:>4} {:>16} {:>18} {:>10}  agent's account", "run", "usable after ms", "newest data age ms", "total ms");
    let (mut readies, mut ages) = (Vec::new(), Vec::new());
    for t in 0..trials {
        let r = drill(&d, "dr").await?;
        let c = &r["copy"];
        let total = r["end"]["at_ms"].as_u64().unwrap_or(0).saturating_sub(r["started_ms"].as_u64().unwrap_or(0));
        println!(
            "{:>4} {:>16.0} {:>18.0} {:>10}  {}",
            t + 1,
            ms(&c["ready_ms"]),
            ms(&c["data_age_ms"]),
            total,
            c["detail"].as_str().unwrap_or_default()
        );
        readies.push(ms(&c["ready_ms"]));
        ages.push(ms(&c["data_age_ms"]));
    }
    println!();
    println!(
        "copy usable after  p50 {:>5.0} ms  max {:>5.0} ms",
        pct(&mut readies.clone(), 0.5),
        pct(&mut readies, 1.0)
    );
    println!("newest data age    p50 {:>5.0} ms  max {:>5.0} ms", pct(&mut ages.clone(), 0.5), pct(&mut ages, 1.0));
    Ok(())
}

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run())
}
