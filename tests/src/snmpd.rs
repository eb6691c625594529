//! A real SNMP agent for the link tests: Debian's `snmpd`, started by the test on a loopback
//! port with its own configuration (a v2c community and a v3 user with SHA and AES), in the
//! foreground, stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// The v2c community and the v3 user and passwords it accepts.
pub const COMMUNITY: &str = "triad-test";
pub const V3_USER: &str = "triadv3";
pub const V3_AUTH_PASSWORD: &str = "auth-pass-123";
pub const V3_PRIV_PASSWORD: &str = "priv-pass-123";

/// A running `snmpd`.
pub struct Snmpd {
    child: Child,
    /// Where it listens (UDP).
    pub addr: String,
    pub dir: PathBuf,
}

impl Drop for Snmpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn snmpd_bin() -> Result<PathBuf> {
    ["/usr/sbin/snmpd", "/usr/bin/snmpd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .context("snmpd is required (Debian's snmpd; scripts/prereqs.sh installs it)")
}

impl Snmpd {
    /// Starts `snmpd` in `dir` on a free loopback port and waits until it answers.
    pub async fn start(dir: &Path) -> Result<Snmpd> {
        std::fs::create_dir_all(dir)?;
        let port = triad_controller::ctl::local::free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let conf = dir.join("snmpd.conf");
        std::fs::write(
            &conf,
            format!(
                "agentAddress udp:{addr}\nrocommunity {COMMUNITY} 127.0.0.1\n\
                 createUser {V3_USER} SHA \"{V3_AUTH_PASSWORD}\" AES \"{V3_PRIV_PASSWORD}\"\nrouser {V3_USER} priv\n"
            ),
        )?;
        let child = Command::new(snmpd_bin()?)
            .args(["-f", "-C", "-c"])
            .arg(&conf)
            .arg("-Lf")
            .arg(dir.join("snmpd.log"))
            .env("SNMP_PERSISTENT_DIR", dir.join("persist"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting snmpd")?;
        let mut s = Snmpd { child, addr, dir: dir.to_path_buf() };
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = s.child.try_wait()? {
                let log = std::fs::read_to_string(dir.join("snmpd.log")).unwrap_or_default();
                bail!("snmpd exited ({status}): {log}");
            }
            let out = Command::new("snmpget")
                .args(["-v2c", "-c", COMMUNITY, "-t", "1", "-r", "0", &s.addr, "1.3.6.1.2.1.1.1.0"])
                .output();
            if out.is_ok_and(|o| o.status.success()) {
                return Ok(s);
            }
            if std::time::Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.join("snmpd.log")).unwrap_or_default();
                let _ = s.child.kill();
                bail!("snmpd did not answer on {} within 15 s: {log}", s.addr);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
