//! The shipped HAProxy configuration (`deploy/haproxy/haproxy.cfg`) in front of a real cluster:
//! Debian's HAProxy, its addresses replaced with the test deployment's, checks the agents'
//! `/primary` and `/replica`; writers reach the primary, readers a standby, and after a switchover
//! writers reach the new primary (issue 20, item 2, the balancer's configuration; the runtime-API
//! push comes later).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use triad_tests::{wait_for, Deployment};

struct Haproxy(Child);

/// Debian's haproxy (in /usr/sbin, which a user's PATH may lack).
fn haproxy() -> Command {
    let sbin = Path::new("/usr/sbin/haproxy");
    Command::new(if sbin.exists() { sbin } else { Path::new("haproxy") })
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The shipped file with each member's line pointed at the deployment: PostgreSQL's port and
/// the agent's HTTP port on loopback, the listeners on `rw` and `ro`, the admin socket in `dir`.
fn config(d: &Deployment, rw: u16, ro: u16, dir: &Path) -> Result<String> {
    let shipped = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy/haproxy.cfg"))?;
    let pg = d.pg.as_ref().context("PostgreSQL members")?;
    let mut out = String::new();
    for line in shipped.lines() {
        let t = line.trim_start();
        let line = if let Some(rest) = t.strip_prefix("server ") {
            let name = rest.split_whitespace().next().unwrap_or_default();
            let member = pg.members.iter().find(|m| m.name == name).context("a member per server line")?;
            let agent = d.plan.agents.iter().find(|a| a.site == name).context("an agent per member")?;
            let agent_port = agent.http_addr.rsplit(':').next().unwrap_or_default();
            format!("    server {name} 127.0.0.1:{} check port {agent_port} addr 127.0.0.1", member.port)
        } else if t == "bind *:5000" {
            format!("    bind 127.0.0.1:{rw}")
        } else if t == "bind *:5001" {
            format!("    bind 127.0.0.1:{ro}")
        } else {
            line.replace("/run/haproxy/admin.sock", &dir.join("admin.sock").display().to_string())
        };
        out.push_str(&line);
        out.push('\n');
    }
    let servers = out.lines().filter(|l| l.trim_start().starts_with("server ")).count();
    ensure!(servers == 6, "three servers in each of two listeners: {out}");
    Ok(out)
}

/// The port of the server a new connection through `port` reaches, and whether it is in recovery.
async fn reached(port: u16) -> Option<(i32, bool)> {
    let conninfo = format!("host=127.0.0.1 port={port} user=postgres dbname=customs connect_timeout=2");
    let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await.ok()?;
    let conn = tokio::spawn(conn);
    let row = client.query_one("select inet_server_port(), pg_is_in_recovery()", &[]).await.ok();
    conn.abort();
    let row = row?;
    Some((row.get(0), row.get(1)))
}

fn port_of(d: &Deployment, member: &str) -> Result<i32> {
    let pg = d.pg.as_ref().context("PostgreSQL members")?;
    Ok(i32::from(pg.members.iter().find(|m| m.name == member).context("member")?.port))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_haproxy_config_routes_writers_to_the_primary_through_a_switchover() -> Result<()> {
    let mut d = Deployment::with_postgres().await?;
    d.start_all().await?;
    wait_for("customs adopted with every member healthy", Duration::from_secs(60), || async {
        let v = d.status().await.ok()?;
        let healthy = v.clusters.get("customs")?.iter().all(|m| m.healthy);
        (v.cluster_state.get("customs")?.epoch == 1 && healthy).then_some(())
    })
    .await?;

    let dir = d.dir().join("haproxy");
    std::fs::create_dir_all(&dir)?;
    let (rw, ro) = (triad_controller::ctl::local::free_port()?, triad_controller::ctl::local::free_port()?);
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(&cfg, config(&d, rw, ro, &dir)?)?;
    let check = haproxy().arg("-c").arg("-f").arg(&cfg).output().context("haproxy (Debian's)")?;
    ensure!(check.status.success(), "haproxy -c: {}", String::from_utf8_lossy(&check.stdout));
    let log = std::fs::File::create(dir.join("haproxy.log"))?;
    let _haproxy = Haproxy(
        haproxy().arg("-db").arg("-f").arg(&cfg).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).spawn()?,
    );

    let dc = port_of(&d, "dc")?;
    // HAProxy 2.6 starts every server up until `fall` checks fail (3 at 3 s): only then do the
    // checks alone decide. Settled means five new connections in a row land where they should.
    wait_for("writers through HAProxy reach only dc", Duration::from_secs(45), || async {
        for _ in 0..5 {
            if reached(rw).await? != (dc, false) {
                return None;
            }
        }
        Some(())
    })
    .await?;
    wait_for("readers reach only standbys", Duration::from_secs(45), || async {
        for _ in 0..5 {
            let (port, in_recovery) = reached(ro).await?;
            if !in_recovery || port == dc {
                return None;
            }
        }
        Some(())
    })
    .await?;

    let out = d.triadctl(&["switchover", "--cluster", "customs", "--to", "ndc"])?;
    ensure!(out.status.success(), "switchover: {}", String::from_utf8_lossy(&out.stderr));
    let ndc = port_of(&d, "ndc")?;
    // Fall 3 and rise 2 at inter 3 s: dc leaves and ndc comes in within about 15 s.
    wait_for("writers through HAProxy reach ndc", Duration::from_secs(45), || async {
        (reached(rw).await? == (ndc, false)).then_some(())
    })
    .await
    .with_context(|| std::fs::read_to_string(dir.join("haproxy.log")).unwrap_or_default())?;
    Ok(())
}
