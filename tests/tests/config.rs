//! Bad configuration is refused at start, naming the key, without touching the data directory;
//! bad command lines get a clear error.

use std::process::Command;

use anyhow::{ensure, Result};
use triad_tests::{bin, Deployment};

fn run_with(program: &str, config: &std::path::Path) -> Result<(i32, String)> {
    let out = Command::new(bin(program)).arg("--config").arg(config).output()?;
    Ok((out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned()))
}

/// `text` with the first line that sets `key` set to `value` instead.
fn set(text: &str, key: &str, value: &str) -> String {
    let prefix = format!("{key} = ");
    let mut done = false;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            if !done && l.starts_with(&prefix) {
                done = true;
                format!("{prefix}{value}")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(done, "no `{key}` in the config");
    lines.join("\n") + "\n"
}

const HUGE: &str = "9223372036854775807";

#[test]
fn bad_controller_configs_name_the_key_and_touch_nothing() -> Result<()> {
    let d = Deployment::new()?;
    let good = std::fs::read_to_string(d.plan.controller_config_path(1))?;
    let cases: Vec<(String, &str)> = vec![
        (good.replace("election_timeout_min_ms = 150", "election_timeout_min_ms = 50"), "raft.election_timeout_min_ms"),
        (good.replace("period_ms = 1200", "period_ms = 1100"), "lease.period_ms"),
        // A fence lead that no longer fits the lease (item 4 of issue 16).
        (good.replace("agent_fence_lead_ms = 500", "agent_fence_lead_ms = 600"), "lease.period_ms"),
        (good.replace("clock_drift = 0.001", "clock_drift = 0.5"), "lease.clock_drift"),
        (good.replacen("grpc_addr = \"127.0.0.1:", "grpc_addr = \"localhost-no-port", 1), "grpc_addr"),
        (good.replace("down_after_ms = 3000", "down_after_ms = 5"), "agents.down_after_ms"),
        (good.replace("id = 1\n", "id = 0\n"), "id"),
        (format!("{good}\nbogus_key = 1\n"), "bogus_key"),
        (good.replace("log_format = \"text\"", "log_format = \"xml\""), "log_format"),
        // dr moved into dc's and ndc's city: three voters in one city.
        (good.replace("city = \"dr\"", "city = \"dhaka\""), "city `dhaka` would hold 3 of 3 voters"),
        // Timings near i64::MAX: a keyed error, not an overflow.
        (set(&good, "heartbeat_interval_ms", HUGE), "raft.heartbeat_interval_ms"),
        (set(&good, "election_timeout_max_ms", HUGE), "raft.election_timeout_max_ms"),
        (set(&good, "period_ms", HUGE), "lease.period_ms"),
        (set(&good, "margin_ms", HUGE), "lease.margin_ms"),
        // A workflow step given no time, a rejoin given less than a step.
        (good.replace("step_ms = 30000", "step_ms = 10"), "clusters[0].timeouts.step_ms"),
        (good.replace("rejoin_ms = 600000", "rejoin_ms = 20000"), "clusters[0].timeouts.rejoin_ms"),
        // Another identity's key, or another controller's certificate.
        (good.replace("controller-1.key", "controller-2.key"), "tls.key"),
        (
            good.replace("controller-1.pem", "controller-2.pem").replace("controller-1.key", "controller-2.key"),
            "tls.cert",
        ),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        ensure!(text != &good, "case {i} did not change the config");
        let path = d.dir().join(format!("bad-{i}.toml"));
        std::fs::write(&path, text)?;
        let (code, stderr) = run_with("triad-controller", &path)?;
        ensure!(code == 2, "case {i} ({key}): exit code {code}, stderr: {stderr}");
        ensure!(stderr.contains(key), "case {i}: the error names `{key}`: {stderr}");
    }
    ensure!(!d.dir().join("data").exists(), "no data directory was created");
    let (code, stderr) = run_with("triad-controller", &d.dir().join("missing.toml"))?;
    ensure!(code == 2 && stderr.contains("missing.toml"), "{stderr}");
    Ok(())
}

#[test]
fn bad_agent_configs_name_the_key() -> Result<()> {
    let d = Deployment::new()?;
    let good = std::fs::read_to_string(d.plan.agent_config_path("agent-dc"))?;
    let cases = [
        (good.replacen("controllers = [\"127.0.0.1:", "controllers = [\"nowhere:", 1), "controllers[0]"),
        (good.replace("name = \"agent-dc\"", "name = \"\""), "name"),
        (format!("{good}\nheartbeat_interval_ms = 1\n"), "heartbeat_interval_ms"),
        (format!("{good}\nreconnect_backoff_max_ms = {HUGE}\n"), "reconnect_backoff_max_ms"),
        (good.replace("agent-dc.key", "agent-ndc.key"), "tls.key"),
        // A name its certificate does not carry: the controllers would refuse its every stream.
        (good.replace("name = \"agent-dc\"", "name = \"agent-ndc\""), "name"),
        (good.replace("[tls]", "[lease]\nfence_lead_ms = 9223372036854775807\n\n[tls]"), "lease.fence_lead_ms"),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let path = d.dir().join(format!("bad-agent-{i}.toml"));
        std::fs::write(&path, text)?;
        let (code, stderr) = run_with("triad-agent", &path)?;
        ensure!(code == 2 && stderr.contains(key), "case {i} ({key}): exit {code}: {stderr}");
    }
    Ok(())
}

#[test]
fn triadctl_refuses_bad_arguments_clearly() -> Result<()> {
    let out = Command::new(bin("triadctl")).args(["status", "-o", "yaml"]).output()?;
    ensure!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("yaml"));
    let out = Command::new(bin("triadctl")).env_remove("TRIAD_CONFIG").arg("status").output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success() && err.contains("TRIAD_CONFIG"), "{err}");
    let d = Deployment::new()?;
    let certs = d.plan.certs_dir();
    let out = Command::new(bin("triadctl"))
        .args(["certs", "issue", "--dir"])
        .arg(&certs)
        .args(["--role", "superuser", "--name", "x"])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success() && err.contains("superuser"), "{err}");
    ensure!(!certs.join("x.pem").exists());
    Ok(())
}

/// `--check` runs every check a start would: a key that is not the certificate's is named.
#[test]
fn check_catches_a_key_that_is_not_the_certificates() -> Result<()> {
    let d = Deployment::new()?;
    for (program, config, key) in [
        ("triad-controller", d.plan.controller_config_path(1), ("controller-1.key", "controller-3.key")),
        ("triad-agent", d.plan.agent_config_path("agent-dc"), ("agent-dc.key", "agent-dr.key")),
    ] {
        let good = std::fs::read_to_string(&config)?;
        let out = Command::new(bin(program)).arg("--check").arg("--config").arg(&config).output()?;
        ensure!(out.status.success(), "{program}: the good config passes --check");
        let bad = d.dir().join(format!("{program}-wrong-key.toml"));
        std::fs::write(&bad, good.replace(key.0, key.1))?;
        let out = Command::new(bin(program)).arg("--check").arg("--config").arg(&bad).output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(out.status.code() == Some(2), "{program}: exit {:?}: {err}", out.status.code());
        ensure!(err.contains("tls.key") && err.contains("not the private key"), "{program}: {err}");
    }
    // triadctl's own configuration: named before any call, not "transport error".
    let ctl = std::fs::read_to_string(d.plan.ctl_config_path())?;
    let bad = d.dir().join("ctl-wrong-key.toml");
    std::fs::write(&bad, ctl.replace("admin.key", "agent-dc.key"))?;
    ensure!(ctl.contains("admin.key"), "the client config names admin.key: {ctl}");
    let out = Command::new(bin("triadctl")).arg("--config").arg(&bad).arg("status").output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success() && err.contains("key") && err.contains("not the private key"), "{err}");
    Ok(())
}

/// A configuration path that never ends (`/dev/zero`) is refused at once, not read into memory.
#[test]
fn an_endless_config_file_is_refused() -> Result<()> {
    let dev_zero = std::path::Path::new("/dev/zero");
    for program in ["triad-controller", "triad-agent"] {
        let (code, stderr) = run_with(program, dev_zero)?;
        ensure!(code == 2 && stderr.contains("larger than"), "{program}: exit {code}: {stderr}");
    }
    let out = Command::new(bin("triadctl")).args(["--config", "/dev/zero", "status"]).output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success() && err.contains("larger than"), "{err}");
    Ok(())
}
