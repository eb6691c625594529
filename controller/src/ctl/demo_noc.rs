//! The demo's NOC peers, so that its dashboards have something to show: an SNMP agent (Debian's
//! `snmpd`, when installed) whose loopback interface stands for the DWDM link's, and a pager, a
//! small webhook inside `triadctl demo` that writes every notification it receives to
//! `DIR/logs/pager.log`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::{Child, Command};

use super::local::free_port;
use crate::config::{ChannelConfig, NotifyConfig, RouteConfig};
use crate::error::{Error, Result};

/// The read community the demo's snmpd accepts (from 127.0.0.1 only).
pub const SNMP_COMMUNITY: &str = "triad-demo";

/// Where Debian installs snmpd.
fn snmpd_bin() -> Option<PathBuf> {
    ["/usr/sbin/snmpd", "/usr/bin/snmpd"].iter().map(PathBuf::from).find(|p| p.is_file())
}

/// Starts snmpd on a free loopback port, in the foreground, with its own configuration under
/// `dir`; None (said) when it is not installed. Returns the process and its `IP:PORT`.
pub fn start_snmpd(dir: &Path) -> Result<Option<(Child, String)>> {
    let Some(bin) = snmpd_bin() else {
        println!("  snmpd is not installed: the links' interface counters (SNMP) stay empty (apt-get install snmpd)");
        return Ok(None);
    };
    let dir = dir.join("snmpd");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let conf = dir.join("snmpd.conf");
    // Linux reports the loopback at 10 Mb/s, which the demo's own traffic would fill to the
    // link's degraded threshold; `interface` makes snmpd report it at 4 Gb/s (ifSpeed's ceiling),
    // a fair stand-in for the DWDM link it plays.
    let text = format!("agentAddress udp:{addr}\nrocommunity {SNMP_COMMUNITY} 127.0.0.1\ninterface lo 6 4000000000\n");
    std::fs::write(&conf, text).map_err(|e| Error::io(format!("writing {}", conf.display()), e))?;
    let child = Command::new(bin)
        .args(["-f", "-C", "-c"])
        .arg(&conf)
        .arg("-Lf")
        .arg(dir.join("snmpd.log"))
        .env("SNMP_PERSISTENT_DIR", dir.join("persist"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::io("starting snmpd", e))?;
    Ok(Some((child, addr)))
}

/// Serves the pager on a free loopback port until the demo ends; returns the controllers'
/// notification settings for it: high and critical alerts, and their escalations.
pub async fn start_pager(log: PathBuf) -> Result<NotifyConfig> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| Error::io("binding the pager", e))?;
    let addr = listener.local_addr().map_err(|e| Error::io("the pager's address", e))?;
    let app = axum::Router::new().route(
        "/notify",
        axum::routing::post(move |body: String| {
            let log = log.clone();
            async move {
                let line = body.replace('\n', " ");
                let written = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .and_then(|mut f| writeln!(f, "{line}"));
                match written {
                    Ok(()) => axum::http::StatusCode::NO_CONTENT,
                    Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                }
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("  the demo's pager stopped: {e}");
        }
    });
    let channel = ChannelConfig {
        name: "demo-pager".into(),
        kind: "webhook".into(),
        url: format!("http://{addr}/notify"),
        token: String::new(),
        smtp_addr: String::new(),
        from: String::new(),
        to: Vec::new(),
        timeout_ms: 5_000,
    };
    let route = RouteConfig {
        channel: channel.name.clone(),
        min_severity: "high".into(),
        sites: Vec::new(),
        sources: Vec::new(),
        level: 0,
        incidents: false,
    };
    Ok(NotifyConfig { channels: vec![channel], routes: vec![route], ..Default::default() })
}
