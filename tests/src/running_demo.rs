//! `triadctl demo` as a user runs it: its own process, its addresses read from `demo.json`, its
//! `triadctl.toml` for commands; stopped with SIGTERM (killed if it will not stop) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::{bin, wait_for};

pub struct RunningDemo {
    child: Child,
    pub dir: PathBuf,
    /// Its demo.json.
    pub doc: Value,
}

impl RunningDemo {
    /// Starts `triadctl demo --dir DIR` and waits (up to 3 minutes) until it wrote demo.json and
    /// `triadctl status` shows a leader, every agent up and the cluster's members healthy.
    pub async fn start(dir: &Path) -> Result<RunningDemo> {
        let log = std::fs::File::create(dir.with_extension("out"))?;
        let child = Command::new(bin("triadctl"))
            .args(["demo", "--dir"])
            .arg(dir)
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()?;
        let mut demo = RunningDemo { child, dir: dir.to_path_buf(), doc: Value::Null };
        let json_path = dir.join("demo.json");
        demo.doc = wait_for("demo.json", Duration::from_secs(180), || async {
            serde_json::from_str(&std::fs::read_to_string(&json_path).ok()?).ok()
        })
        .await
        .with_context(|| demo.output())?;
        wait_for("the demo to be healthy", Duration::from_secs(60), || async {
            let status: Value = serde_json::from_slice(&demo.ctl(&["status", "-o", "json"]).ok()?.stdout).ok()?;
            let leader = status["leader_id"].as_u64().is_some_and(|l| l > 0);
            let agents = status["agents"].as_array().is_some_and(|a| a.iter().all(|a| a["up"] == true));
            let members = status["clusters"]["customs"].as_array()?;
            (leader && agents && members.len() == 3 && members.iter().all(|m| m["healthy"] == true)).then_some(())
        })
        .await
        .with_context(|| demo.output())?;
        Ok(demo)
    }

    /// Runs triadctl with the demo's admin configuration.
    pub fn ctl(&self, args: &[&str]) -> Result<Output> {
        Ok(Command::new(bin("triadctl")).args(args).env("TRIAD_CONFIG", self.dir.join("triadctl.toml")).output()?)
    }

    /// Like [`RunningDemo::ctl`], failing with what it said unless it succeeded.
    pub fn ctl_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.ctl(args)?;
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        ensure!(out.status.success(), "triadctl {}: {said}", args.join(" "));
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// What the demo printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("out")).unwrap_or_default()
    }

    /// The pid of the process demo.json lists under `agents` or `controllers` by `key`/`value`.
    pub fn pid_of(&self, list: &str, key: &str, value: &str) -> Option<i32> {
        let entry = self.doc[list].as_array()?.iter().find(|e| e[key].as_str() == Some(value))?;
        entry["pid"].as_i64().map(|p| p as i32)
    }

    /// Stops the demo with SIGTERM and waits (up to 30 s) for it to exit.
    pub fn stop(&mut self) -> Result<()> {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        for _ in 0..300 {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        anyhow::bail!("the demo did not stop within 30 s after SIGTERM")
    }
}

impl Drop for RunningDemo {
    fn drop(&mut self) {
        if self.stop().is_err() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
