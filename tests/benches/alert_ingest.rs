//! Alert ingest, measured (issue 17): sustained alerts/s into the three-controller deployment over
//! HTTP, with Debian's Alertmanager 0.25 beside it in the same run, the same load generator (wrk,
//! a Lua body script, 32 connections, 1,000 distinct alerts, one alert per request and a hundred)
//! and the same transport: plain HTTP for both (Triad with `alerts.ingest_plain_http`), then TLS
//! for both (Alertmanager with a web config serving the controller's certificate). Also: p99
//! from sending an alert to its being visible on every controller, during the storm; RSS of each
//! controller over a long storm; and RSS after a million past alerts (fired, resolved, moved out
//! of memory by retention).
//!
//! ```text
//! cargo bench --profile dev -p triad-tests --bench alert_ingest -- [--seconds 30] [--transport both|plain|tls] [--storm-seconds 600] [--past-alerts 1000000]
//! ```
//! Triad persists (a synced Raft log on three controllers) and replicates every accepted alert
//! before it answers; Alertmanager keeps its alerts in memory only.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use triad_proto::v1 as pb;
use triad_tests::alerts::Alertmanager;
use triad_tests::flags::Flags;
use triad_tests::Deployment;

struct Args {
    seconds: u64,
    transports: Vec<Transport>,
    storm_seconds: u64,
    past_alerts: usize,
}

/// How wrk reaches both servers.
#[derive(Clone, Copy, PartialEq)]
enum Transport {
    Plain,
    Tls,
}

impl Transport {
    fn scheme(self) -> &'static str {
        match self {
            Transport::Plain => "http",
            Transport::Tls => "https",
        }
    }
}

const USAGE: &str =
    "usage: alert_ingest [--seconds 1..3600] [--transport both|plain|tls] [--storm-seconds N] [--past-alerts N]";

fn args() -> Result<Args> {
    let mut f = Flags::from_env(USAGE)?;
    let transports = match f.text("--transport").as_deref() {
        None | Some("both") => vec![Transport::Plain, Transport::Tls],
        Some("plain") => vec![Transport::Plain],
        Some("tls") => vec![Transport::Tls],
        Some(other) => bail!("--transport takes both, plain or tls, not `{other}`\n{USAGE}"),
    };
    let a = Args {
        seconds: f.number("--seconds", 1..=3600)?.unwrap_or(30),
        transports,
        storm_seconds: f.number("--storm-seconds", 0..=36_000)?.unwrap_or(600),
        past_alerts: f.number("--past-alerts", 0..=10_000_000)?.unwrap_or(1_000_000) as usize,
    };
    f.finish()?;
    Ok(a)
}

/// wrk's Lua script: `batch` alerts per request, cycling over 1,000 distinct ones.
fn lua(triad: bool, batch: usize, token: &str) -> String {
    let alert = if triad {
        r#"string.format('{"title":"bench alert %d","severity":"medium","fingerprint":"b%d","host":"h%d"}', k, k, k % 50)"#
    } else {
        r#"string.format('{"labels":{"alertname":"bench%d","severity":"warning","instance":"h%d:9100"},"annotations":{"summary":"bench alert %d"}}', k, k % 50, k)"#
    };
    let auth = if token.is_empty() { String::new() } else { format!(r#"headers["Authorization"] = "Bearer {token}""#) };
    format!(
        r#"local n, batch = 1000, {batch}
local bodies = {{}}
for r = 0, n - 1 do
  local parts = {{}}
  for j = 0, batch - 1 do
    local k = (r * batch + j) % n
    parts[#parts + 1] = {alert}
  end
  bodies[r] = "[" .. table.concat(parts, ",") .. "]"
end
local headers = {{}}
headers["Content-Type"] = "application/json"
{auth}
local i = 0
request = function()
  i = (i + 1) % n
  return wrk.format("POST", nil, headers, bodies[i])
end
"#
    )
}

/// One wrk run: requests/s and the non-2xx count.
fn wrk(dir: &Path, url: &str, script: &str, seconds: u64) -> Result<(f64, u64)> {
    let path = dir.join(format!("wrk-{}.lua", std::process::id()));
    std::fs::write(&path, script)?;
    let out = Command::new("wrk")
        .args(["-t2", "-c32", &format!("-d{seconds}s"), "--timeout", "10s", "-s"])
        .arg(&path)
        .arg(url)
        .output()
        .context("running wrk (Debian's wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(out.status.success(), "wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    let field = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
    };
    let rps = field("Requests/sec:").with_context(|| format!("no Requests/sec in: {text}"))?;
    let bad = field("Non-2xx or 3xx responses:").unwrap_or(0.0) as u64;
    Ok((rps, bad))
}

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib =
        status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok());
    kib.unwrap_or(0.0) / 1024.0
}

/// Sends a probe alert every 250 ms to `leader` until `stop`; the time until every controller
/// lists each one, in ms.
async fn probe(d: Arc<Deployment>, leader: u64, token: String, stop: Arc<std::sync::atomic::AtomicBool>) -> Vec<f64> {
    let http = reqwest::Client::new();
    let url = format!("http://{}/ingest/generic", d.http_addr(leader));
    let mut lags = Vec::new();
    let mut n = 0;
    // One connection to each controller for the whole run, made before the clock starts.
    let mut clients = Vec::new();
    for id in d.founders() {
        match d.alerts_on(id).await {
            Ok(c) => clients.push(c),
            Err(e) => {
                eprintln!("probe: controller {id}: {e}");
                return lags;
            }
        }
    }
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        n += 1;
        let title = format!("probe-{n}-{}", std::process::id());
        let body = format!(r#"{{"title":"{title}","severity":"low","fingerprint":"{title}"}}"#);
        let sent = Instant::now();
        if !matches!(http.post(&url).bearer_auth(&token).body(body).send().await, Ok(r) if r.status().is_success()) {
            continue;
        }
        let mut seen = 0;
        for c in clients.iter_mut() {
            let req = pb::ListAlertsRequest { text: title.clone(), ..Default::default() };
            let deadline = sent + Duration::from_secs(10);
            while Instant::now() < deadline {
                if c.list(req.clone()).await.is_ok_and(|r| !r.into_inner().alerts.is_empty()) {
                    seen += 1;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        if seen == 3 {
            lags.push(sent.elapsed().as_secs_f64() * 1000.0);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    lags
}

fn p(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn run() -> Result<()> {
    let a = args()?;
    let mut d = Deployment::new()?;
    d.tune_controllers(|c| {
        c.alerts.ingest_plain_http = true;
        c.alerts.retention.keep_closed_ms = 1_000;
    })?;
    d.start_controllers()?;
    let leader = d.wait_leader(&d.founders(), Duration::from_secs(30)).await?;
    let token = d.add_alert_source("bench", "generic")?;
    let certs = d.plan.certs_dir();
    let (cert, key) = (certs.join(format!("controller-{leader}.pem")), certs.join(format!("controller-{leader}.key")));
    let mut servers = Vec::new();
    for t in &a.transports {
        let am = match t {
            Transport::Plain => Alertmanager::start_plain(&d)?,
            Transport::Tls => Alertmanager::start_tls(&d, &cert, &key)?,
        };
        servers.push((*t, am));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let d = Arc::new(d);
    let dir = d.dir().to_path_buf();
    let triad_http = |t: Transport| format!("{}://{}", t.scheme(), d.http_addr(leader));

    let mut rows = Vec::new();
    for (t, am) in &servers {
        let am_base = format!("{}://{}", t.scheme(), am.addr);
        let transport = match t {
            Transport::Plain => "plain HTTP for both",
            Transport::Tls => "TLS for both (Alertmanager's web config, Triad's own port)",
        };
        println!("\nAlert ingest, {} s per run, wrk -t2 -c32, 1,000 distinct alerts, {transport}", a.seconds);
        println!("{:<34} {:>10} {:>12} {:>14} {:>8}", "system", "per req", "requests/s", "alerts/s", "non-2xx");
        // The floor under both: each server's cheapest request (a health check), same wrk.
        let get = "request = function() return wrk.format(\"GET\") end\n";
        let (am_h, _) = wrk(&dir, &format!("{am_base}/-/healthy"), get, a.seconds.min(5))?;
        let (triad_h, _) = wrk(&dir, &format!("{}/healthz", triad_http(*t)), get, a.seconds.min(5))?;
        println!("{:<34} {:>10} {:>12.0}", "Alertmanager GET /-/healthy", "-", am_h);
        println!("{:<34} {:>10} {:>12.0}", "Triad GET /healthz", "-", triad_h);
        for batch in [1usize, 100] {
            let (rps, bad) = wrk(&dir, &format!("{am_base}/api/v2/alerts"), &lua(false, batch, ""), a.seconds)?;
            println!(
                "{:<34} {:>10} {:>12.0} {:>14.0} {:>8}",
                "Alertmanager 0.25 (memory only)",
                batch,
                rps,
                rps * batch as f64,
                bad
            );
            let row =
                triad_row(&d, leader, &token, &format!("{}/ingest/generic", triad_http(*t)), batch, a.seconds).await?;
            println!(
                "{:<34} {:>10} {:>12.0} {:>14.0} {:>8}",
                "Triad (3 controllers, replicated)", batch, row.requests_per_s, row.alerts_per_s, row.refused
            );
            rows.push((*t, batch, rps * batch as f64, row));
        }
    }
    println!();
    println!(
        "{:<6} {:<10} {:>12} {:>16} {:>16} {:>20}",
        "wire", "per req", "Triad/AM", "visible p50 ms", "visible p99 ms", "all committed after"
    );
    for (t, batch, am_rate, row) in &rows {
        println!(
            "{:<6} {:<10} {:>12.2} {:>16.0} {:>16.0} {:>17.0} ms",
            t.scheme(),
            batch,
            row.alerts_per_s / am_rate,
            p(&row.lags, 0.5),
            p(&row.lags, 0.99),
            row.drained_ms
        );
    }
    let triad_url = format!("{}/ingest/generic", triad_http(Transport::Plain));

    let pids: Vec<u32> = d.founders().iter().filter_map(|id| d.pid(&format!("controller-{id}"))).collect();
    if a.storm_seconds > 0 {
        println!("\nRSS of each controller (MiB) over a {} s storm, 100 alerts per request:", a.storm_seconds);
        let storm = {
            let (dir, url, script, secs) = (dir.clone(), triad_url.clone(), lua(true, 100, &token), a.storm_seconds);
            tokio::task::spawn_blocking(move || wrk(&dir, &url, &script, secs))
        };
        let started = Instant::now();
        while !storm.is_finished() {
            let rss: Vec<String> = pids.iter().map(|p| format!("{:>8.1}", rss_mib(*p))).collect();
            println!("{:>6.0} s {}", started.elapsed().as_secs_f64(), rss.join(" "));
            tokio::time::sleep(Duration::from_secs((a.storm_seconds / 10).max(1))).await;
        }
        let (rps, bad) = storm.await??;
        println!("storm: {:.0} alerts/s, {bad} non-2xx", rps * 100.0);
    }
    if a.past_alerts > 0 {
        past_alerts(&d, leader, &token, a.past_alerts, &pids).await?;
    }
    Ok(())
}

/// A million past alerts: each fired and resolved (distinct fingerprints), retention moving the
/// closed ones out of memory; RSS before and after.
async fn past_alerts(d: &Deployment, leader: u64, token: &str, n: usize, pids: &[u32]) -> Result<()> {
    let before: Vec<f64> = pids.iter().map(|p| rss_mib(*p)).collect();
    let http = reqwest::Client::new();
    let url = format!("http://{}/ingest/generic", d.http_addr(leader));
    let started = Instant::now();
    let chunk = 1000;
    let mut sent = 0;
    while sent < n {
        for resolved in [false, true] {
            let alerts: Vec<String> = (sent..(sent + chunk).min(n))
                .map(|k| {
                    format!(r#"{{"title":"past {k}","severity":"low","fingerprint":"past-{k}","resolved":{resolved}}}"#)
                })
                .collect();
            let body = format!("[{}]", alerts.join(","));
            // 503 is "busy, send again" (the intake's backlog is full): a sender waits and does.
            let mut tries = 0;
            loop {
                let r = http.post(&url).bearer_auth(token).body(body.clone()).send().await?;
                if r.status().is_success() {
                    break;
                }
                tries += 1;
                ensure!(r.status() == 503 && tries < 600, "past alerts: {} after {tries} tries", r.status());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        sent += chunk;
    }
    let secs = started.elapsed().as_secs_f64();
    // Retention runs every second with keep_closed_ms = 1 s: wait until it has moved (nearly)
    // all of them to disk, or two minutes.
    let mut live = usize::MAX;
    let waited = Instant::now();
    while waited.elapsed() < Duration::from_secs(120) {
        live = d.alerts_of(leader).await.map(|a| a.len()).unwrap_or(usize::MAX);
        if live < 2_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let after: Vec<f64> = pids.iter().map(|p| rss_mib(*p)).collect();
    println!(
        "\n{n} past alerts (fired, then resolved) sent in {secs:.0} s; {:.0} s later alerts still in memory on the leader: {live}",
        waited.elapsed().as_secs_f64()
    );
    println!("RSS MiB before: {before:.1?}, after: {after:.1?}");
    Ok(())
}

/// One Triad row: its rate, the visibility lags measured meanwhile, and how long after the load
/// stopped everything accepted was committed.
struct TriadRow {
    requests_per_s: f64,
    alerts_per_s: f64,
    refused: u64,
    lags: Vec<f64>,
    drained_ms: f64,
}

async fn triad_row(
    d: &Arc<Deployment>,
    leader: u64,
    token: &str,
    url: &str,
    batch: usize,
    seconds: u64,
) -> Result<TriadRow> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = tokio::spawn(probe(d.clone(), leader, token.to_string(), stop.clone()));
    let (rps, refused) = wrk(d.dir(), url, &lua(true, batch, token), seconds)?;
    // Accepted is journaled: the rate counts only if the log keeps up. How long after the load
    // stops until everything accepted is committed (the leader's backlog empty).
    let ended = Instant::now();
    loop {
        let backlog = d.controller_metric(leader, "triad_alerts_intake_backlog").await;
        if backlog == Some(0.0) || ended.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained_ms = ended.elapsed().as_secs_f64() * 1000.0;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut lags = prober.await?;
    lags.sort_by(|x, y| x.total_cmp(y));
    // Only accepted requests count: a 503 (backlog full) is not ingest.
    let accepted = (rps - refused as f64 / seconds as f64).max(0.0);
    Ok(TriadRow { requests_per_s: rps, alerts_per_s: accepted * batch as f64, refused, lags, drained_ms })
}

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run())
}
