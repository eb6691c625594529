//! Commit throughput and latency of a three-controller cluster on this machine, through the whole
//! write path (gRPC with mTLS → authentication → proposer batching → Raft replication with synced
//! RocksDB appends → apply), and the write outage when the leader is killed.
//!
//! Run, with Triad's own crates optimised like its dependencies (the dev profile optimises only
//! dependencies, to keep the edit-test loop quick):
//!
//! ```text
//! cargo bench --profile dev -p triad-tests --bench raft_commits \
//!   --config 'profile.dev.package.triad-controller.opt-level=2' \
//!   --config 'profile.dev.package.triad-proto.opt-level=2'
//! ```
//!
//! `TRIAD_BENCH_SECS` sets each run's length (default 5).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use tonic::transport::Channel;
use triad_proto::v1::control_client::ControlClient;
use triad_proto::v1::PutUserRequest;
use triad_tests::Deployment;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// `clients` concurrent writers for `secs` seconds against `leader`; returns (commits, latencies).
async fn load(channels: &[ControlClient<Channel>], clients: usize, secs: f64, tag: &str) -> (usize, Vec<Duration>) {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for t in 0..clients {
        let mut c = channels[t % channels.len()].clone();
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let start = Instant::now();
                let req = PutUserRequest { name: format!("{tag}-{t}-{i}"), role: "noc".into() };
                if c.put_user(req).await.is_ok() {
                    lat.push(start.elapsed());
                }
                i += 1;
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    all.sort();
    (all.len(), all)
}

async fn run() -> Result<()> {
    let secs: f64 = std::env::var("TRIAD_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let mut d = Deployment::new()?;
    d.start_controllers()?;
    let leader = d.wait_leader(&[1, 2, 3], Duration::from_secs(30)).await?;
    // A few HTTP/2 connections, as a handful of application servers would hold.
    let mut channels = Vec::new();
    for _ in 0..8 {
        channels.push(d.control(leader).await?);
    }
    // Warm up connections and caches.
    load(&channels, 16, 1.0, "warmup").await;

    println!("Triad commit benchmark: 3 controllers on one machine, {secs} s per row, writes = PutUser to the leader");
    println!(
        "{:>8} {:>10} {:>12} {:>10} {:>10} {:>10}",
        "clients", "commits", "commits/s", "p50 ms", "p99 ms", "max ms"
    );
    for clients in [1usize, 16, 256] {
        let started = Instant::now();
        let (n, lat) = load(&channels, clients, secs, &format!("c{clients}")).await;
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "{:>8} {:>10} {:>12.0} {:>10.2} {:>10.2} {:>10.2}",
            clients,
            n,
            n as f64 / elapsed,
            percentile(&lat, 0.50).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3,
            lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
    }

    // Leader failover: one writer keeps writing through the admin client (which follows the
    // leader); measure from SIGKILL of the leader to the next committed write.
    let mut trials = Vec::new();
    for trial in 0..3 {
        let leader = d.wait_leader(&[1, 2, 3], Duration::from_secs(30)).await?;
        let killed = Arc::new(std::sync::Mutex::new(None::<Instant>));
        d.put_user(&format!("pre-kill-{trial}"), "noc").await?;
        d.kill(&format!("controller-{leader}"))?;
        let at = Instant::now();
        *killed.lock().unwrap() = Some(at);
        let mut i = 0;
        loop {
            i += 1;
            if d.put_user(&format!("post-kill-{trial}-{i}"), "noc").await.is_ok() {
                break;
            }
            if at.elapsed() > Duration::from_secs(30) {
                anyhow::bail!("no write committed within 30 s of killing the leader");
            }
        }
        let outage = at.elapsed();
        let new = d
            .wait_leader(&[1, 2, 3].into_iter().filter(|id| *id != leader).collect::<Vec<_>>(), Duration::from_secs(10))
            .await?;
        trials.push((leader, new, outage));
        d.start_controller(leader)?;
        // Let the restarted controller catch up before the next trial.
        let target = d.node_status(new).await.map(|s| s.last_applied).unwrap_or(0);
        triad_tests::wait_for("catch-up", Duration::from_secs(30), || async {
            (d.node_status(leader).await?.last_applied >= target).then_some(())
        })
        .await?;
    }
    println!();
    println!("{:>6} {:>12} {:>12} {:>26}", "trial", "old leader", "new leader", "kill -> next commit (ms)");
    for (i, (old, new, outage)) in trials.iter().enumerate() {
        println!("{:>6} {:>12} {:>12} {:>26.0}", i + 1, old, new, outage.as_secs_f64() * 1e3);
    }

    // Restart of the whole cluster with everything written above: kill -9 all three, start them,
    // and time until a leader serves the complete state again.
    let leader = d.wait_leader(&[1, 2, 3], Duration::from_secs(30)).await?;
    let users = d.state_of(leader).await.map(|s| s.users.len()).unwrap_or(0);
    let log = d.node_status(leader).await.map(|s| s.last_log_index).unwrap_or(0);
    for id in [1, 2, 3] {
        d.kill(&format!("controller-{id}"))?;
    }
    let started = Instant::now();
    d.start_controllers()?;
    let leader = d.wait_leader(&[1, 2, 3], Duration::from_secs(60)).await?;
    triad_tests::wait_for("the full state after restart", Duration::from_secs(60), || async {
        (d.state_of(leader).await?.users.len() >= users).then_some(())
    })
    .await?;
    println!();
    println!(
        "full restart (kill -9 of all three, log index {log}, {users} users): leader serving the whole state after {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run())
}
