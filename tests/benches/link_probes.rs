//! Link probes, measured (issue 18): the round trip the probes report against a delay injected
//! in a userspace relay (10, 50, 200 ms round trips), beside the same relay measured by a plain
//! TCP echo from this process; and an agent's CPU while it probes 20 links at 5 Hz.
//!
//! `cargo bench -p triad-tests --bench link_probes -- [--seconds N]`

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use triad_controller::state::links::{LinkKind, LinkThresholds};
use triad_tests::flags::Flags;
use triad_tests::links::link;
use triad_tests::relay::{Impairment, Relay};
use triad_tests::{wait_for, Deployment};

const USAGE: &str = "usage: link_probes [--seconds 5..600]";

/// CPU seconds (user + system) of process `pid` so far.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(") ").context("/proc stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// The mean round trip of `n` TCP echoes through `addr` (the agent's probe echo behind the
/// relay), measured here: the reference the probes are compared with.
async fn tcp_reference(addr: std::net::SocketAddr, n: u32) -> Result<f64> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let mut total = Duration::ZERO;
    for seq in 0..n {
        // A probe question in Triad's frame format (magic, version 1, ask), answered by the echo.
        let mut q = [0u8; 40];
        q[..4].copy_from_slice(b"TRPB");
        q[4] = 1;
        q[8..16].copy_from_slice(&u64::from(seq).to_be_bytes());
        let t = Instant::now();
        s.write_all(&q).await?;
        let mut a = [0u8; 40];
        s.read_exact(&mut a).await?;
        total += t.elapsed();
    }
    Ok(total.as_secs_f64() * 1e3 / f64::from(n))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut flags = Flags::from_env(USAGE)?;
    let seconds = flags.number("--seconds", 5..=600)?.unwrap_or(30);
    flags.finish()?;

    let mut d = Deployment::new()?;
    let ndc = d.probe_addr("ndc")?;
    let relay = Relay::start("127.0.0.1:0".parse()?, ndc.parse()?).await?;
    d.set_probe_addrs("ndc", &ndc, &relay.addr.to_string())?;
    // 20 links between dc and ndc, all probed through the relay at 5 Hz; thresholds wide open,
    // so that the injected delays do not matter to their state.
    let wide = LinkThresholds { degraded_rtt_ms: 1000.0, degraded_jitter_ms: 1000.0, ..LinkThresholds::default() };
    let links: Vec<_> = (0..20).map(|i| link(&format!("l{i:02}"), "dc", "ndc", LinkKind::Wan, wide.clone())).collect();
    d.set_links(links)?;
    d.start_all().await?;
    wait_for("20 links up", Duration::from_secs(90), || async {
        let l = d.links().await.ok()?;
        (l.len() == 20 && l.iter().all(|l| l.state == "up")).then_some(())
    })
    .await?;

    println!("\nLink probes: the round trip agent-dc reports (mean over its 10 s window, 20 links, 5 Hz),");
    println!("against the delay the relay adds each way, and a TCP echo through the same relay from here");
    println!(
        "{:>16} {:>14} {:>16} {:>16} {:>12}",
        "injected RTT ms", "reference ms", "Triad mean ms", "Triad max ms", "loss %"
    );
    for one_way in [0u64, 5, 25, 100] {
        relay.set(Impairment { delay: Duration::from_millis(one_way), loss: 0.0 });
        // A whole window of probes at the new delay.
        tokio::time::sleep(Duration::from_secs(12)).await;
        let reference = tcp_reference(relay.addr, 20).await?;
        let links = d.links().await?;
        let from_dc: Vec<_> =
            links.iter().filter_map(|l| l.ends.iter().find(|e| e.site == "dc" && e.reporting)).collect();
        let mean = from_dc.iter().map(|e| e.rtt_ms).sum::<f64>() / from_dc.len().max(1) as f64;
        let max = from_dc.iter().map(|e| e.rtt_ms).fold(0.0, f64::max);
        let loss = from_dc.iter().map(|e| e.loss_percent).fold(0.0, f64::max);
        println!("{:>16} {:>14.2} {:>16.2} {:>16.2} {:>12.1}", one_way * 2, reference, mean, max, loss);
    }
    relay.set(Impairment::default());

    let pid = d.pid("agent-dc").context("agent-dc's pid")?;
    let (cpu0, t0) = (cpu_seconds(pid)?, Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (cpu1, t1) = (cpu_seconds(pid)?, Instant::now());
    let share = (cpu1 - cpu0) / (t1 - t0).as_secs_f64();
    println!(
        "\nagent-dc probing 20 links at 5 Hz (and answering agent-ndc's 20): {:.2}% of one core over {seconds} s",
        share * 100.0
    );
    let idle = d.pid("agent-dr").context("agent-dr's pid")?;
    let (c0, s0) = (cpu_seconds(idle)?, Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds.min(30))).await;
    let idle_share = (cpu_seconds(idle)? - c0) / s0.elapsed().as_secs_f64();
    println!("agent-dr beside it, probing nothing: {:.2}% of one core", idle_share * 100.0);
    Ok(())
}
