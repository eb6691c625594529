//! `triadctl demo`: starts the three-site deployment, writes demo.json and triadctl.toml, answers
//! `triadctl status`, and on SIGTERM stops every process it started.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use triad_tests::{bin, wait_for};

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn alive(pid: i32) -> bool {
    // Signal 0 checks existence; a zombie not yet reaped by its parent counts as gone.
    kill(Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z ")).unwrap_or(true)
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_starts_everything_answers_status_and_stops_cleanly() -> Result<()> {
    let dir = tempfile::Builder::new().prefix("triad-demo-test-").tempdir()?;
    let demo_dir = dir.path().join("demo");
    let log = std::fs::File::create(dir.path().join("demo.out"))?;
    let mut demo = KillOnDrop(
        Command::new(bin("triadctl"))
            .args(["demo", "--dir"])
            .arg(&demo_dir)
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()?,
    );
    let json_path = demo_dir.join("demo.json");
    let doc: serde_json::Value = wait_for("demo.json", Duration::from_secs(90), || async {
        let text = std::fs::read_to_string(&json_path).ok()?;
        serde_json::from_str(&text).ok()
    })
    .await
    .with_context(|| std::fs::read_to_string(dir.path().join("demo.out")).unwrap_or_default())?;
    let pids: Vec<i32> =
        doc["pids"].as_array().context("pids")?.iter().filter_map(|p| p.as_i64()).map(|p| p as i32).collect();
    // And the demo's snmpd, when Debian's is installed (scripts/prereqs.sh installs it).
    let with_snmpd = doc["snmp"]["addr"].is_string();
    ensure!(pids.len() == 6 + usize::from(with_snmpd), "three controllers, three agents (and snmpd): {pids:?}");
    ensure!(pids.iter().all(|p| alive(*p)));
    ensure!(doc["controllers"]
        .as_array()
        .is_some_and(|c| c.len() == 3 && c.iter().all(|c| c["grpc_addr"].is_string() && c["http_addr"].is_string())));
    ensure!(doc["agents"].as_array().is_some_and(|a| a.len() == 3));

    // triadctl, pointed at the demo's config, sees a leader, three agents up and the cluster.
    let out = Command::new(bin("triadctl"))
        .args(["status", "-o", "json"])
        .env("TRIAD_CONFIG", demo_dir.join("triadctl.toml"))
        .output()?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    ensure!(status["leader_id"].as_u64().is_some_and(|l| l > 0));
    ensure!(status["agents"].as_array().is_some_and(|a| a.len() == 3 && a.iter().all(|a| a["up"] == true)));
    ensure!(status["clusters"]["customs"].as_array().is_some_and(|m| m.len() == 3));
    let table =
        Command::new(bin("triadctl")).arg("status").env("TRIAD_CONFIG", demo_dir.join("triadctl.toml")).output()?;
    let table = String::from_utf8_lossy(&table.stdout);
    ensure!(table.contains("leader") && table.contains("agent-ndc") && table.contains("customs"), "{table}");

    // The two-person rule with the demo's own second identity (noc `nora`): admin asks, nora
    // approves; the demo's instructions name her config.
    let ctl = |config: &str, args: &[&str]| {
        Command::new(bin("triadctl")).args(args).env("TRIAD_CONFIG", demo_dir.join(config)).output()
    };
    let out = ctl("triadctl.toml", &["pause", "--cluster", "customs", "--reason", "trying the two-person rule"])?;
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(out.status.success() && said.contains("a second person"), "{said}{}", String::from_utf8_lossy(&out.stderr));
    let id = said.split_whitespace().nth(1).map(|s| s.trim_end_matches(':').to_string()).unwrap_or_default();
    let out = ctl("triadctl-noc.toml", &["approve", &id])?;
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success() && said.contains("automatic failover off"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ctl("triadctl.toml", &["resume", "--cluster", "customs"])?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The demo ships a round trip and a DR test, so that a newcomer can run a drill at once: the
    // DR test (production untouched) passes.
    let out = ctl("triadctl.toml", &["drill", "list", "-o", "json"])?;
    let plans: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let kinds: Vec<&str> = plans.as_array().into_iter().flatten().filter_map(|p| p["kind"].as_str()).collect();
    ensure!(kinds.contains(&"switchover-roundtrip") && kinds.contains(&"dr-test"), "{plans}");
    wait_for("the DR test's pre-checks pass", Duration::from_secs(60), || async {
        ctl("triadctl.toml", &["drill", "check", "dr-copy"]).ok()?.status.success().then_some(())
    })
    .await?;
    let out = ctl("triadctl.toml", &["drill", "run", "dr-copy", "--watch"])?;
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(out.status.success() && said.contains("PASSED"), "{said}{}", String::from_utf8_lossy(&out.stderr));
    let out_path = dir.path().join("demo.out");
    wait_for("the demo's instructions for a second approver", Duration::from_secs(10), || async {
        let printed = std::fs::read_to_string(&out_path).unwrap_or_default();
        printed.contains("triadctl-noc.toml triadctl approve ID").then_some(())
    })
    .await?;

    // The controllers' metrics endpoint answers with triad_* metrics.
    let http = doc["controllers"][0]["http_addr"].as_str().context("http_addr")?;
    let body = http_get(http, "/metrics").await?;
    for m in [
        "triad_raft_term",
        "triad_raft_applied_index",
        "triad_raft_apply_duration_seconds",
        "triad_agents_connected",
        "triad_grpc_requests_total",
    ] {
        ensure!(body.contains(m), "metric {m} missing");
    }
    let agent_http = doc["agents"][0]["http_addr"].as_str().context("agent http_addr")?;
    ensure!(http_get(agent_http, "/metrics").await?.contains("triad_agent_controller_connected"));

    // The SOC's side: demo.json names the syslog listeners and the ingest tokens; a syslog line
    // and an HTTPS post with the generic token each become an alert.
    let syslog_udp = doc["syslog"][0]["udp"].as_str().context("syslog udp")?.to_string();
    let port = syslog_udp.rsplit(':').next().context("port")?;
    let out = Command::new("logger")
        .args(["--server", "127.0.0.1", "--port", port, "--udp", "-p", "auth.crit", "-t", "sshd"])
        .arg("Failed password for root from 203.0.113.9")
        .output()?;
    ensure!(out.status.success(), "logger: {}", String::from_utf8_lossy(&out.stderr));
    let token = doc["ingest_tokens"]["generic"].as_str().context("generic token")?;
    ensure!(token.starts_with("triad_") && doc["ingest_tokens"]["alertmanager"].is_string(), "{doc}");
    let url = doc["ingest"][1]["generic"].as_str().context("ingest url")?;
    let (addr, tls_name) = (
        url.trim_start_matches("https://").split('/').next().unwrap_or(""),
        doc["ingest_tls_name"].as_str().unwrap_or(""),
    );
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(doc["ingest_ca"].as_str().context("ingest_ca")?)
        .args(["--resolve", &format!("{tls_name}:{}:127.0.0.1", addr.rsplit(':').next().unwrap_or(""))])
        .args([
            "-H",
            &format!("Authorization: Bearer {token}"),
            "--data",
            r#"{"title":"demo alert","severity":"high"}"#,
        ])
        .arg(url.replace(addr.split(':').next().unwrap_or(""), tls_name))
        .output()?;
    ensure!(
        out.status.success(),
        "curl: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("both alerts in triadctl alerts list", Duration::from_secs(20), || async {
        let out = ctl("triadctl.toml", &["alerts", "list"]).ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (text.contains("sshd: Failed password for root") && text.contains("demo alert")).then_some(())
    })
    .await?;

    // SIGTERM: everything stops, nothing is left behind.
    kill(Pid::from_raw(demo.0.id() as i32), Signal::SIGTERM)?;
    let status = wait_for("the demo to exit", Duration::from_secs(30), || {
        let r = demo.0.try_wait().ok().flatten();
        async move { r }
    })
    .await?;
    ensure!(status.success(), "demo exit status {status}");
    for p in pids {
        ensure!(!alive(p), "pid {p} survived the demo");
    }
    Ok(())
}

async fn http_get(addr: &str, path: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await?;
    ensure!(
        buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200"),
        "GET {path}: {}",
        buf.lines().next().unwrap_or("")
    );
    Ok(buf)
}
