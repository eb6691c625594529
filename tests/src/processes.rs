//! Signalling the deployment's processes: stopped, killed, frozen and continued, and what they
//! logged when a wait failed.

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

use crate::Deployment;

impl Deployment {
    /// Sends `sig` to the whole process group of `key` (a database's or agent's children die too)
    /// and waits for it to exit.
    pub fn signal(&mut self, key: &str, sig: Signal) -> Result<()> {
        let child = self.procs.get_mut(key).ok_or_else(|| anyhow!("{key} was not started"))?;
        let _ = killpg(Pid::from_raw(child.id() as i32), sig);
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                child.wait()?;
                bail!("{key} ignored {sig} for 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Sends `sig` to `key`'s own process only (not the children in its group: an agent's
    /// PostgreSQL), and waits for it to exit.
    pub fn signal_process(&mut self, key: &str, sig: Signal) -> Result<()> {
        let child = self.procs.get_mut(key).ok_or_else(|| anyhow!("{key} was not started"))?;
        nix::sys::signal::kill(Pid::from_raw(child.id() as i32), sig).with_context(|| format!("{sig} to {key}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!("{key} did not exit within 30 s of {sig}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Freezes `key`'s whole process group with SIGSTOP, as a hung host would; it continues
    /// when the returned guard is dropped (also when the test fails).
    pub fn pause(&self, key: &str) -> Result<Paused> {
        let child = self.procs.get(key).ok_or_else(|| anyhow!("{key} was not started"))?;
        let group = Pid::from_raw(child.id() as i32);
        killpg(group, Signal::SIGSTOP).with_context(|| format!("SIGSTOP {key}"))?;
        Ok(Paused { group })
    }

    /// The pid of `key`'s process, while it was started and has not been reaped.
    pub fn pid(&self, key: &str) -> Option<u32> {
        self.procs.get(key).map(|c| c.id())
    }

    /// `kill -9` of a process (and its group).
    pub fn kill(&mut self, key: &str) -> Result<()> {
        self.signal(key, Signal::SIGKILL)
    }

    /// True while `key` runs.
    pub fn running(&mut self, key: &str) -> bool {
        self.procs.get_mut(key).map(|c| matches!(c.try_wait(), Ok(None))).unwrap_or(false)
    }

    /// Prints status, history and the recent logs of `keys`, to explain a failed wait.
    pub fn diagnose(&self, keys: &[&str]) -> Result<()> {
        let d = self;
        eprintln!("{}", String::from_utf8_lossy(&d.triadctl(&["status"])?.stdout));
        eprintln!("{}", String::from_utf8_lossy(&d.triadctl(&["history", "--cluster", "customs"])?.stdout));
        for key in keys {
            let tail = d.log_tail(key, 4000);
            let lines: Vec<&str> = tail
                .lines()
                .filter(|l| !l.contains("openraft::replication") && !l.contains("replication_handler"))
                .filter(|l| !l.contains("automatic failover is blocked"))
                .collect();
            eprintln!("--- {key}\n{}", lines[lines.len().saturating_sub(40)..].join("\n"));
        }
        let port = d.pg.as_ref().map(|p| p.member("dc").map(|m| m.port)).transpose()?.unwrap_or(0);
        let ss = std::process::Command::new("ss").args(["-tanpo"]).output()?;
        let text = String::from_utf8_lossy(&ss.stdout).into_owned();
        let on_port: Vec<&str> = text.lines().filter(|l| l.contains(&format!(":{port} "))).collect();
        eprintln!("--- sockets on dc's port {port}\n{}", on_port.join("\n"));
        for m in ["dc", "ndc", "dr"] {
            let log = std::fs::read_to_string(d.dir().join(format!("postgres/{m}/postgres.log"))).unwrap_or_default();
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| {
                    [
                        "starting",
                        "FATAL",
                        "PANIC",
                        "ready to",
                        "redo",
                        "shut down",
                        "timeline",
                        "bind",
                        "socket",
                        "rewind",
                    ]
                    .iter()
                    .any(|k| l.contains(k))
                })
                .collect();
            eprintln!("--- postgres {m}\n{}", lines[..lines.len().min(40)].join("\n"));
            let auto = std::fs::read_to_string(d.dir().join(format!("postgres/{m}/data/postgresql.auto.conf")));
            eprintln!("--- postgres {m}: postgresql.auto.conf\n{}", auto.unwrap_or_default());
        }
        Ok(())
    }
}

/// A process group stopped by [`Deployment::pause`]; continued when dropped.
pub struct Paused {
    group: Pid,
}

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = killpg(self.group, Signal::SIGCONT);
    }
}
