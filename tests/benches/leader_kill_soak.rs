//! The leader-kill soak (issue 16, item 4): the Raft leader SIGKILLed `--kills N` times (default
//! 100) under writes to the primary, the database untouched, every killed controller restarted
//! and following again before the next kill. Target: 0 fences, 0 failovers, 0 failed writes.
//! It also counts the failsafe rounds (the primary's agent asking its vouchers because no renewal
//! came in time): 0 means the lease alone covered every change of leader.
//!
//! ```text
//! cargo bench --profile dev -p triad-tests --bench leader_kill_soak -- --kills 100
//! ```
//! (Triad's crates unoptimised, as the tests run them: the harsher case for a lease.)
//! Every setting is the default, unless `TRIAD_BENCH_ELECTION_MS` and `TRIAD_BENCH_LEASE_MS` say
//! otherwise (`tests/src/timing.rs`).

use std::time::Instant;

use anyhow::{bail, Context, Result};
use triad_tests::timing::Timing;
use triad_tests::Deployment;

fn kills_from_args() -> Result<usize> {
    // cargo passes `--bench` to a bench without libtest's harness; everything else is ours.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    match args.as_slice() {
        [] => Ok(100),
        [flag, n] if flag == "--kills" => {
            let n: usize = n.parse().with_context(|| format!("--kills takes a number of kills, not `{n}`"))?;
            if n == 0 || n > 10_000 {
                bail!("--kills must be between 1 and 10000");
            }
            Ok(n)
        }
        _ => bail!("usage: leader_kill_soak [--kills N]   (default 100)"),
    }
}

async fn run() -> Result<()> {
    let kills = kills_from_args()?;
    let timing = Timing::from_env()?;
    let mut d = Deployment::with_postgres().await?;
    d.tune_controllers(|c| timing.apply(c))?;
    println!("{}", timing.describe());
    d.start_all().await?;
    d.wait_ready(true).await?;
    let v = d.status().await?;
    println!(
        "Leader-kill soak: {kills} SIGKILLs of the Raft leader under writes to dc, real PostgreSQL 15, P = {} ms",
        v.lease.period_ms
    );
    println!("{:>6} {:>16}", "kill", "new leader ms");
    let started = Instant::now();
    let report = triad_tests::soak::leader_kills(&mut d, kills, |k, ms| println!("{k:>6} {ms:>16.0}")).await?;
    println!();
    print!("{}", report.table());
    println!("{:<34} {:>10.0}", "duration, s", started.elapsed().as_secs_f64());
    if !report.clean() {
        bail!("a change of leader disturbed the database: {report:?}");
    }
    Ok(())
}

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run())
}
