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

use anyhow::{bail, Result};
use triad_tests::flags::Flags;
use triad_tests::timing::Timing;
use triad_tests::Deployment;

fn kills_from_args() -> Result<usize> {
    let mut f = Flags::from_env("usage: leader_kill_soak [--kills 1-10000]   (default 100)")?;
    let kills = f.number("--kills", 1..=10_000)?.unwrap_or(100) as usize;
    f.finish()?;
    Ok(kills)
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
