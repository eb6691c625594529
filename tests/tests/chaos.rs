//! The chaos suite's fixed seeds (issue 16; `tests/src/chaos.rs` says what a run does and
//! checks). CI runs these few; `cargo bench --profile dev -p triad-tests --bench chaos -- --runs N`
//! runs many and prints the table.

use anyhow::{ensure, Result};
use triad_tests::chaos;

/// Each run is a whole deployment in namespaces: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Steps per run in CI: each holds its faults 0.5-6 s.
const STEPS: usize = 4;

async fn seed(seed: u64) -> Result<()> {
    let _serial = SERIAL.lock().await;
    let r = chaos::run(seed, STEPS).await?;
    eprintln!("seed {seed}: {:?}", r);
    ensure!(r.violations.is_empty(), "seed {seed}: {}", r.violations.join("; "));
    ensure!(r.writes_acked > 0, "seed {seed}: no write was acknowledged");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn chaos_seed_1() -> Result<()> {
    seed(1).await
}

#[tokio::test(flavor = "multi_thread")]
async fn chaos_seed_2() -> Result<()> {
    seed(2).await
}

#[tokio::test(flavor = "multi_thread")]
async fn chaos_seed_3() -> Result<()> {
    seed(3).await
}

/// The one of the first seeds that kills the Raft leader during a switchover.
#[tokio::test(flavor = "multi_thread")]
async fn chaos_seed_11() -> Result<()> {
    seed(11).await
}

#[test]
fn a_seed_replays_the_same_schedule() {
    assert_eq!(chaos::schedule(42, 8), chaos::schedule(42, 8));
    assert_ne!(chaos::schedule(42, 8), chaos::schedule(43, 8));
    for step in chaos::schedule(7, 50) {
        assert!(!step.faults.is_empty() && step.faults.len() <= 2);
        assert!(step.faults.len() < 2 || step.faults[0].site != step.faults[1].site, "{step:?}");
        assert!((500..6_000).contains(&step.hold_ms));
    }
}

#[test]
#[ignore = "prints the schedules of the first seeds, to choose CI's: cargo test --test chaos -- --ignored --nocapture"]
fn print_schedules() {
    for seed in 1..=12 {
        let kinds: Vec<String> = chaos::schedule(seed, STEPS)
            .iter()
            .map(|s| s.faults.iter().map(|f| format!("{}@{}", f.kind.name(), f.site)).collect::<Vec<_>>().join("+"))
            .collect();
        println!("{seed}: {}", kinds.join(" | "));
    }
}
