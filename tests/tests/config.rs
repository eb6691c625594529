//! Bad configuration is refused at start, naming the key, without touching the data directory;
//! bad command lines get a clear error.

use std::process::Command;

use anyhow::{ensure, Result};
use triad_tests::{bin, Deployment};

fn run_with(program: &str, config: &std::path::Path) -> Result<(i32, String)> {
    let out = Command::new(bin(program)).arg("--config").arg(config).output()?;
    Ok((out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned()))
}

#[test]
fn bad_controller_configs_name_the_key_and_touch_nothing() -> Result<()> {
    let d = Deployment::new()?;
    let good = std::fs::read_to_string(d.plan.controller_config_path(1))?;
    let cases: Vec<(String, &str)> = vec![
        (good.replace("election_timeout_min_ms = 200", "election_timeout_min_ms = 50"), "raft.election_timeout_min_ms"),
        (good.replace("period_ms = 1100", "period_ms = 1000"), "lease.period_ms"),
        (good.replace("clock_drift = 0.001", "clock_drift = 0.5"), "lease.clock_drift"),
        (good.replacen("grpc_addr = \"127.0.0.1:", "grpc_addr = \"localhost-no-port", 1), "grpc_addr"),
        (good.replace("down_after_ms = 3000", "down_after_ms = 5"), "agents.down_after_ms"),
        (good.replace("id = 1\n", "id = 0\n"), "id"),
        (format!("{good}\nbogus_key = 1\n"), "bogus_key"),
        (good.replace("log_format = \"text\"", "log_format = \"xml\""), "log_format"),
        // dr moved into dc's and ndc's city: three voters in one city.
        (good.replace("city = \"dr\"", "city = \"dhaka\""), "city `dhaka` would hold 3 of 3 voters"),
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
