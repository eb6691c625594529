//! A real HAProxy (Debian's) in front of a test deployment, with the shipped configuration
//! (`deploy/haproxy/haproxy.cfg`) pointed at it; its runtime API; and writers through it that
//! note which server acknowledged each write and when, to measure what an application behind
//! the balancer sees of a role change.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{wait_for, Deployment};

/// Debian's haproxy (in /usr/sbin, which a user's PATH may lack).
fn haproxy() -> Command {
    let sbin = Path::new("/usr/sbin/haproxy");
    Command::new(if sbin.exists() { sbin } else { Path::new("haproxy") })
}

/// The check settings of a listener: `inter`, `fall`, `rise`.
#[derive(Debug, Clone, Copy)]
pub struct Checks {
    pub inter_ms: u64,
    pub fall: u32,
    pub rise: u32,
}

impl Checks {
    /// What the shipped file sets: Patroni's documented HAProxy settings.
    pub const SHIPPED: Checks = Checks { inter_ms: 3000, fall: 3, rise: 2 };
}

/// Where a HAProxy will listen, chosen before the controllers start (their `[[balancers]]`
/// names its socket).
#[derive(Debug, Clone)]
pub struct Plan {
    pub dir: PathBuf,
    pub rw: u16,
    pub ro: u16,
    pub socket: PathBuf,
}

impl Plan {
    /// Free ports and `DIR/haproxy/admin.sock` for the deployment `d`.
    pub fn new(d: &Deployment) -> Result<Plan> {
        let dir = d.dir().join("haproxy");
        std::fs::create_dir_all(&dir)?;
        let (rw, ro) = (triad_controller::ctl::local::free_port()?, triad_controller::ctl::local::free_port()?);
        let socket = dir.join("admin.sock");
        Ok(Plan { dir, rw, ro, socket })
    }

    /// The `[[balancers]]` entry for it, its runtime API reached by `agent` at `site`.
    pub fn balancer(&self, agent: &str, site: &str) -> triad_controller::config::balancers::BalancerConfig {
        triad_controller::config::balancers::BalancerConfig {
            name: format!("haproxy-{site}"),
            cluster: "customs".into(),
            agent: agent.into(),
            site: site.into(),
            socket: self.socket.display().to_string(),
            write_backend: String::new(),
            read_backend: String::new(),
        }
    }
}

/// A running HAProxy; dropped, it is killed.
pub struct Haproxy {
    child: Child,
    pub plan: Plan,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shipped file with each member's line pointed at the deployment (PostgreSQL's port and
/// the agent's HTTP port on loopback), the listeners on the plan's ports, the admin socket in
/// its directory and the checks' settings replaced by `checks`.
pub fn config(d: &Deployment, plan: &Plan, checks: Checks) -> Result<String> {
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
            format!("    bind 127.0.0.1:{}", plan.rw)
        } else if t == "bind *:5001" {
            format!("    bind 127.0.0.1:{}", plan.ro)
        } else if t.starts_with("default-server inter 3s fall 3 rise 2 ") {
            line.replace(
                "inter 3s fall 3 rise 2",
                &format!("inter {}ms fall {} rise {}", checks.inter_ms, checks.fall, checks.rise),
            )
        } else {
            line.replace("/run/haproxy/admin.sock", &plan.socket.display().to_string())
        };
        out.push_str(&line);
        out.push('\n');
    }
    let servers = out.lines().filter(|l| l.trim_start().starts_with("server ")).count();
    ensure!(servers == 6, "three servers in each of two listeners: {out}");
    let wanted = format!("inter {}ms fall {} rise {}", checks.inter_ms, checks.fall, checks.rise);
    let replaced = out.lines().filter(|l| l.trim_start().starts_with("default-server") && l.contains(&wanted)).count();
    ensure!(replaced == 2, "the check settings of both listeners replaced: {out}");
    Ok(out)
}

impl Haproxy {
    /// Writes the configuration for `plan`, checks it with `haproxy -c` and starts HAProxy.
    pub fn start(d: &Deployment, plan: Plan, checks: Checks) -> Result<Haproxy> {
        let cfg = plan.dir.join("haproxy.cfg");
        std::fs::write(&cfg, config(d, &plan, checks)?)?;
        let check = haproxy().arg("-c").arg("-f").arg(&cfg).output().context("haproxy (Debian's)")?;
        ensure!(check.status.success(), "haproxy -c: {}", String::from_utf8_lossy(&check.stdout));
        let log = std::fs::File::create(plan.dir.join("haproxy.log"))?;
        let child = haproxy()
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(Haproxy { child, plan })
    }

    /// HAProxy's own log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.plan.dir.join("haproxy.log")).unwrap_or_default()
    }

    /// Sends `command` to the runtime API and returns its answer.
    pub async fn runtime(&self, command: &str) -> Result<String> {
        let mut conn = tokio::net::UnixStream::connect(&self.plan.socket).await?;
        conn.write_all(format!("{command}\n").as_bytes()).await?;
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), conn.read_to_string(&mut answer)).await??;
        Ok(answer)
    }

    /// The administrative state HAProxy holds for `backend/server`: `ready`, `maint` or
    /// `drain` (from `show servers state`: srv_admin_state bits 0x01-0x04 are maintenance,
    /// forced, inherited or configured; 0x08 and 0x10 drain).
    pub async fn admin_state(&self, backend: &str, server: &str) -> Result<&'static str> {
        let state = self.runtime(&format!("show servers state {backend}")).await?;
        for line in state.lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ...
            if f.len() > 6 && f[1] == backend && f[3] == server {
                let admin: u32 = f[6].parse()?;
                return Ok(if admin & 0x07 != 0 {
                    "maint"
                } else if admin & 0x18 != 0 {
                    "drain"
                } else {
                    "ready"
                });
            }
        }
        anyhow::bail!("no server {backend}/{server} in: {state}")
    }

    /// Waits until HAProxy's checks settled: five new connections in a row through `rw` reach
    /// `primary`'s server, and five through `ro` reach standbys. HAProxy 2.6 starts every server
    /// up until `fall` checks fail (3 at 3 s with the shipped settings).
    pub async fn settled(&self, d: &Deployment, primary: &str) -> Result<()> {
        let port = port_of(d, primary)?;
        wait_for(&format!("writers through HAProxy reach only {primary}"), Duration::from_secs(45), || async {
            for _ in 0..5 {
                if reached(self.plan.rw).await? != (port, false) {
                    return None;
                }
            }
            Some(())
        })
        .await?;
        wait_for("readers through HAProxy reach only standbys", Duration::from_secs(45), || async {
            for _ in 0..5 {
                let (p, in_recovery) = reached(self.plan.ro).await?;
                if !in_recovery || p == port {
                    return None;
                }
            }
            Some(())
        })
        .await
    }
}

/// The port of the server a new connection through `port` reaches, and whether it is in recovery.
pub async fn reached(port: u16) -> Option<(i32, bool)> {
    let conninfo = format!("host=127.0.0.1 port={port} user=postgres dbname=customs connect_timeout=2");
    let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await.ok()?;
    let conn = tokio::spawn(conn);
    let row = client.query_one("select inet_server_port(), pg_is_in_recovery()", &[]).await.ok();
    conn.abort();
    let row = row?;
    Some((row.get(0), row.get(1)))
}

/// The PostgreSQL port of `member`.
pub fn port_of(d: &Deployment, member: &str) -> Result<i32> {
    let pg = d.pg.as_ref().context("PostgreSQL members")?;
    Ok(i32::from(pg.members.iter().find(|m| m.name == member).context("member")?.port))
}

/// Every acknowledged write of a [`Writer`]: when, and which server's port acknowledged it.
#[derive(Debug, Default, Clone)]
pub struct Acks {
    pub acks: Vec<(Instant, i32)>,
    /// Failed attempts (connection refused or closed by the balancer, a read-only server...).
    pub errors: usize,
}

impl Acks {
    /// The first acknowledgement by `port` after `after`.
    pub fn first_by(&self, port: i32, after: Instant) -> Option<Instant> {
        self.acks.iter().find(|(t, p)| *p == port && *t >= after).map(|(t, _)| *t)
    }

    /// The last acknowledgement by `port`.
    pub fn last_by(&self, port: i32) -> Option<Instant> {
        self.acks.iter().rev().find(|(_, p)| *p == port).map(|(t, _)| *t)
    }
}

/// A writer that inserts a row every few milliseconds through `port` (HAProxy's writers' port,
/// or a member's own), reconnecting at once after any failure, and notes every acknowledgement.
pub struct Writer {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Acks>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    pub fn start(port: u16) -> Writer {
        let (stop, seen) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Acks::default())));
        let (s, log) = (stop.clone(), seen.clone());
        let conninfo = format!("host=127.0.0.1 port={port} user=postgres dbname=customs connect_timeout=1");
        let task = tokio::spawn(async move {
            let fail = || log.lock().unwrap().errors += 1;
            while !s.load(Ordering::Relaxed) {
                let connect = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls);
                let Ok(Ok((client, conn))) = tokio::time::timeout(Duration::from_secs(1), connect).await else {
                    fail();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let conn = tokio::spawn(conn);
                while !s.load(Ordering::Relaxed) {
                    let insert = client.query_one(
                        "INSERT INTO orders (note) VALUES ('through the balancer') RETURNING inet_server_port()",
                        &[],
                    );
                    match tokio::time::timeout(Duration::from_secs(2), insert).await {
                        Ok(Ok(row)) => log.lock().unwrap().acks.push((Instant::now(), row.get(0))),
                        _ => {
                            fail();
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                conn.abort();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Writer { stop, seen, task }
    }

    /// What it saw so far.
    pub fn acks(&self) -> Acks {
        self.seen.lock().unwrap().clone()
    }

    /// Stops it; returns what it saw.
    pub async fn finish(self) -> Acks {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let seen = self.seen.lock().unwrap().clone();
        seen
    }
}
