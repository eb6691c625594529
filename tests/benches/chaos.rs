//! The chaos suite over many seeds (issue 16; `tests/src/chaos.rs` says what a run does and
//! checks): `--runs N` seeds from `--first S` (default 1), `--steps K` steps each (default 6).
//! Prints a row per run, then the table: runs, faults injected by kind, violations, convergence
//! time p50/max, and the seeds of any failure.
//!
//! ```text
//! cargo bench --profile dev -p triad-tests --bench chaos -- --runs 200
//! cargo bench --profile dev -p triad-tests --bench chaos -- --first 51 --runs 50   # a chunk
//! ```

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use triad_tests::chaos::{self, FaultKind};
use triad_tests::flags::Flags;
use triad_tests::workload::pct;

struct Args {
    first: u64,
    runs: u64,
    steps: usize,
}

fn args() -> Result<Args> {
    let mut f = Flags::from_env("usage: chaos [--first SEED] [--runs 1-10000] [--steps 1-100]")?;
    let a = Args {
        first: f.number("--first", 0..=u64::MAX / 2)?.unwrap_or(1),
        runs: f.number("--runs", 1..=10_000)?.unwrap_or(10),
        steps: f.number("--steps", 1..=100)?.unwrap_or(6) as usize,
    };
    f.finish()?;
    Ok(a)
}

async fn run() -> Result<()> {
    let a = args()?;
    println!("Chaos suite: seeds {}..{}, {} steps each", a.first, a.first + a.runs - 1, a.steps);
    println!(
        "{:>6} {:>7} {:>12} {:>8} {:>7} {:>10}  violations",
        "seed", "faults", "converged ms", "epochs", "fences", "writes"
    );
    let mut faults: BTreeMap<FaultKind, usize> = BTreeMap::new();
    let (mut converge_ms, mut failed, mut stuck, mut violations) = (Vec::new(), Vec::new(), 0, 0);
    let (mut fences, mut epochs) = (0u64, 0u64);
    for seed in a.first..a.first + a.runs {
        let r = match chaos::run(seed, a.steps).await {
            Ok(r) => r,
            Err(e) => {
                println!("{seed:>6}  harness error: {e:#}");
                failed.push(seed);
                continue;
            }
        };
        for (k, n) in &r.faults {
            *faults.entry(*k).or_default() += n;
        }
        let ms = r.converged_in.map(|d| d.as_secs_f64() * 1e3);
        if let Some(ms) = ms {
            converge_ms.push(ms);
        } else {
            stuck += 1;
        }
        violations += r.violations.len();
        (fences, epochs) = (fences + r.fences, epochs + r.epoch_changes);
        if !r.violations.is_empty() {
            failed.push(seed);
        }
        println!(
            "{seed:>6} {:>7} {:>12} {:>8} {:>7} {:>10}  {}",
            r.faults.values().sum::<usize>(),
            ms.map(|m| format!("{m:.0}")).unwrap_or_else(|| "stuck".into()),
            r.epoch_changes,
            r.fences,
            r.writes_acked,
            r.violations.join("; ")
        );
        for line in &r.slow {
            println!("{:>6}   slow: {line}", "");
        }
    }
    println!();
    println!("{:<34} {:>8}", "runs", a.runs);
    for (k, n) in &faults {
        println!("{:<34} {:>8}", format!("faults: {}", k.name()), n);
    }
    println!("{:<34} {:>8}", "epoch changes", epochs);
    println!("{:<34} {:>8}", "fences (each explained)", fences);
    println!("{:<34} {:>8}", "violations", violations);
    println!("{:<34} {:>8}", "runs left stuck", stuck);
    if !converge_ms.is_empty() {
        println!("{:<34} {:>8.0}", "convergence p50 ms", pct(&mut converge_ms.clone(), 0.5));
        println!("{:<34} {:>8.0}", "convergence max ms", pct(&mut converge_ms, 1.0));
    }
    println!("failed seeds: {failed:?}");
    if !failed.is_empty() {
        bail!("{} of {} runs failed", failed.len(), a.runs);
    }
    Ok(())
}

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run())
}
