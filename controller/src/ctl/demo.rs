//! `triadctl demo`: a complete three-site deployment on this machine, in the foreground. Every
//! controller and agent is its own OS process (so any one can be killed to see what happens);
//! Ctrl-C or SIGTERM stops them all, agents first, and leaves no process behind.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;
use tokio::process::{Child, Command};

use super::client::{Client, CtlConfig};
use super::demo_noc;
use super::local::{free_port, LocalDb, LocalDeployment, CLUSTER};
use super::postgres::{self, PgCluster};
use super::status;
use crate::error::{Error, Result};

/// One process the demo started.
struct Proc {
    label: String,
    child: Child,
}

/// Finds a Triad binary next to this `triadctl`, then on PATH.
pub fn find_binary(name: &str) -> Result<PathBuf> {
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            for d in [Some(dir), dir.parent()].into_iter().flatten() {
                let p = d.join(name);
                if p.is_file() {
                    return Ok(p);
                }
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            let p = d.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(Error::Unavailable(format!(
        "cannot find `{name}` next to triadctl or on PATH; build it with `cargo build --bins`"
    )))
}

/// Prepares `dir`: it must be empty, missing, or an earlier demo's directory (which is cleared).
fn prepare_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        if entries.next().is_some() {
            if !dir.join("demo.json").exists() {
                return Err(Error::InvalidArgument(format!(
                    "--dir {} is not empty and holds no earlier demo (no demo.json); choose another directory",
                    dir.display()
                )));
            }
            std::fs::remove_dir_all(dir).map_err(|e| Error::io(format!("clearing {}", dir.display()), e))?;
        }
    }
    std::fs::create_dir_all(dir.join("logs")).map_err(|e| Error::io(format!("creating {}", dir.display()), e))
}

fn spawn(bin: &Path, config: &Path, log: &Path, label: &str) -> Result<Proc> {
    let out = std::fs::File::create(log).map_err(|e| Error::io(format!("creating {}", log.display()), e))?;
    let err = out.try_clone().map_err(|e| Error::io("log file", e))?;
    let child = Command::new(bin)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Own process group: the terminal's Ctrl-C reaches only the demo, which then stops the
        // children in order.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::io(format!("starting {}", bin.display()), e))?;
    Ok(Proc { label: label.to_string(), child })
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(Error::Unavailable(format!("timed out after {}s waiting for {what}", timeout.as_secs())))
}

/// Stops every process: SIGTERM, then SIGKILL after a grace period.
async fn stop_all(procs: &mut [Proc]) {
    for p in procs.iter().rev() {
        if let Some(pid) = p.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for p in procs.iter_mut().rev() {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, p.child.wait()).await.is_err() {
            eprintln!("  {} did not stop within 5 s; killing it", p.label);
            let _ = p.child.kill().await;
        }
    }
}

/// Runs the demo until Ctrl-C or SIGTERM.
pub async fn run(dir: PathBuf, simulated: bool) -> Result<()> {
    let dir = if dir.is_absolute() { dir } else { std::env::current_dir().map_err(|e| Error::io("cwd", e))?.join(dir) };
    let controller_bin = find_binary("triad-controller")?;
    let agent_bin = find_binary("triad-agent")?;
    prepare_dir(&dir)?;
    let mut plan = LocalDeployment::plan(&dir)?;
    println!("Triad demo in {}", dir.display());
    let pg_bin = if simulated { None } else { postgres::find_bin_dir() };
    let pg = match pg_bin {
        None if simulated => {
            println!("  --simulated: the `{CLUSTER}` members are simulated inside the agents.");
            plan.db = LocalDb::Simulated;
            None
        }
        None => {
            println!();
            println!("  !!! No PostgreSQL server binaries on PATH or under /usr/lib/postgresql/*/bin.");
            println!("  !!! Falling back to SIMULATED database members (as with --simulated).");
            println!();
            plan.db = LocalDb::Simulated;
            None
        }
        Some(bin) => {
            let ports = [free_port()?, free_port()?, free_port()?];
            plan.db = LocalDb::Postgres { ports, bin_dir: bin.clone() };
            let cluster = Arc::new(PgCluster::plan(&bin, &dir.join("postgres"), ports));
            println!(
                "  starting PostgreSQL from {}: primary dc, synchronous standby ndc, asynchronous standby dr ...",
                bin.display()
            );
            let c = cluster.clone();
            let started = tokio::task::spawn_blocking(move || c.create_and_start())
                .await
                .map_err(|e| Error::Unavailable(format!("PostgreSQL setup task: {e}")))?;
            if let Err(e) = started {
                let c = cluster.clone();
                let _ = tokio::task::spawn_blocking(move || c.stop_all()).await;
                return Err(e);
            }
            Some(cluster)
        }
    };
    for c in &plan.controllers {
        let port = free_port()?;
        plan.syslog.insert(c.id, (format!("127.0.0.1:{port}"), format!("127.0.0.1:{port}")));
    }
    plan.links = crate::ctl::local::reference_links();
    plan.drills = crate::ctl::local::demo_drills();
    let mut procs: Vec<Proc> = Vec::new();
    if let Some((child, addr)) = demo_noc::start_snmpd(&dir)? {
        plan.snmp = Some((addr, demo_noc::SNMP_COMMUNITY.into()));
        procs.push(Proc { label: "snmpd".into(), child });
    }
    plan.notify = demo_noc::start_pager(dir.join("logs").join("pager.log")).await?;
    plan.write()?;

    let workload = pg.as_ref().map(|c| Workload::start(c.members.iter().map(|m| m.conninfo("customs")).collect()));
    let result =
        start_and_serve(&plan, &controller_bin, &agent_bin, &mut procs, pg.as_deref(), workload.as_ref()).await;
    println!("\nstopping {} processes ...", procs.len());
    if let Some(w) = &workload {
        w.stop();
        println!(
            "  the write workload committed {} rows ({} attempts failed, {} commits not acknowledged within {} s)",
            w.ok(),
            w.failed(),
            w.unacknowledged(),
            COMMIT_TIMEOUT.as_secs()
        );
    }
    stop_all(&mut procs).await;
    if let Some(c) = pg {
        let errors = tokio::task::spawn_blocking(move || c.stop_all()).await.unwrap_or_default();
        for e in errors {
            eprintln!("  stopping PostgreSQL: {e}");
        }
    }
    println!("stopped; logs and data are left in {}", dir.display());
    result
}

/// The demo's small continuous write workload: one row into `customs.orders` every 100 ms on
/// whichever member accepts writes (it follows the primary through a switchover), as an
/// application server would write.
struct Workload {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    /// Commits not acknowledged within [`COMMIT_TIMEOUT`]: outcome unknown.
    unacknowledged: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// How long the demo's workload waits for a commit. A commit that the synchronous standby never
/// confirms waits in `SyncRep` for ever; the workload gives up on that connection, says so, and
/// reconnects (its outcome is unknown: it may be committed locally).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(2);

impl Workload {
    fn start(conninfos: Vec<String>) -> Self {
        let (ok, failed, unacknowledged) =
            (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (o, f, u) = (ok.clone(), failed.clone(), unacknowledged.clone());
        let task = tokio::spawn(async move {
            let mut waiting = false;
            let mut client: Option<tokio_postgres::Client> = None;
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                if client.as_ref().is_none_or(|c| c.is_closed()) {
                    client = None;
                    for ci in &conninfos {
                        let Ok((c, conn)) = tokio_postgres::connect(ci, tokio_postgres::NoTls).await else { continue };
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                        let writable = c.query_one("SELECT NOT pg_is_in_recovery()", &[]).await.is_ok_and(|r| r.get(0));
                        if writable {
                            client = Some(c);
                            break;
                        }
                    }
                }
                let Some(c) = &client else {
                    f.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let insert = c.execute("INSERT INTO orders (note) VALUES ('demo')", &[]);
                match tokio::time::timeout(COMMIT_TIMEOUT, insert).await {
                    Ok(Ok(_)) => {
                        if std::mem::take(&mut waiting) {
                            println!("  demo workload: commits are acknowledged again");
                        }
                        o.fetch_add(1, Ordering::Relaxed)
                    }
                    Ok(Err(_)) => {
                        client = None;
                        f.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(_) => {
                        if !std::mem::replace(&mut waiting, true) {
                            println!(
                                "  ! demo workload: a commit was not acknowledged within {} s (waiting for its \
                                 synchronous standby?); its outcome is unknown, reconnecting",
                                COMMIT_TIMEOUT.as_secs()
                            );
                        }
                        client = None;
                        u.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        });
        Workload { ok, failed, unacknowledged, task }
    }

    fn unacknowledged(&self) -> u64 {
        self.unacknowledged.load(Ordering::Relaxed)
    }

    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    fn stop(&self) {
        self.task.abort();
    }
}

async fn start_and_serve(
    plan: &LocalDeployment,
    controller_bin: &Path,
    agent_bin: &Path,
    procs: &mut Vec<Proc>,
    pg: Option<&PgCluster>,
    workload: Option<&Workload>,
) -> Result<()> {
    let logs = plan.dir.join("logs");
    for c in &plan.controllers {
        let label = format!("controller-{} ({})", c.id, c.site);
        procs.push(spawn(
            controller_bin,
            &plan.controller_config_path(c.id),
            &logs.join(format!("controller-{}.log", c.id)),
            &label,
        )?);
    }
    let client = Client::new(CtlConfig::load(&plan.ctl_config_path())?)?;
    let signal = crate::shutdown_signal();
    tokio::pin!(signal);
    let ready = async {
        wait_until("a leader and the seeded state", Duration::from_secs(60), || async {
            matches!(status::gather(&client).await, Ok(v) if v.leader_id != 0 && !v.clusters.is_empty())
        })
        .await?;
        for a in &plan.agents {
            procs.push(spawn(
                agent_bin,
                &plan.agent_config_path(&a.name),
                &logs.join(format!("{}.log", a.name)),
                &a.name,
            )?);
        }
        wait_until("every agent to register", Duration::from_secs(60), || async {
            matches!(status::gather(&client).await, Ok(v) if v.agents.iter().filter(|a| a.up).count() == plan.agents.len())
        })
        .await?;
        if plan.db != LocalDb::None {
            wait_until("every database member to be observed", Duration::from_secs(60), || async {
                matches!(status::gather(&client).await, Ok(v) if v.clusters.get(CLUSTER).is_some_and(|m| m.iter().all(|m| m.healthy)))
            })
            .await?;
        }
        Ok::<_, Error>(())
    };
    tokio::select! {
        r = ready => r?,
        _ = &mut signal => return Ok(()),
    }
    let tokens = make_alert_sources(&client).await?;
    write_demo_json(plan, procs, pg, &tokens)?;
    print_summary(plan, &client, pg, workload).await;

    // Serve until told to stop; report children that die (someone may be testing failover).
    let mut reported = vec![false; procs.len()];
    loop {
        tokio::select! {
            _ = &mut signal => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                for (i, p) in procs.iter_mut().enumerate() {
                    if !reported[i] {
                        if let Ok(Some(status)) = p.child.try_wait() {
                            println!("note: {} exited ({status}); the rest keep running", p.label);
                            reported[i] = true;
                        }
                    }
                }
            }
        }
    }
}

/// One alert source per HTTP format (`alertmanager`, `wazuh`, `generic`), each named after it;
/// their tokens, for demo.json.
async fn make_alert_sources(client: &Client) -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut tokens = serde_json::Map::new();
    for kind in ["alertmanager", "wazuh", "generic"] {
        let (token, _) = super::alerts::put_source(client, kind, kind, 0).await?;
        tokens.insert(kind.to_string(), json!(token));
    }
    Ok(tokens)
}

fn write_demo_json(
    plan: &LocalDeployment,
    procs: &[Proc],
    pg: Option<&PgCluster>,
    tokens: &serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    let pid_of =
        |label_prefix: &str| procs.iter().find(|p| p.label.starts_with(label_prefix)).and_then(|p| p.child.id());
    let doc = json!({
        "dir": plan.dir,
        "triadctl_config": plan.ctl_config_path(),
        "controllers": plan.controllers.iter().map(|c| json!({
            "id": c.id, "site": c.site, "grpc_addr": c.grpc_addr, "http_addr": c.http_addr,
            "pid": pid_of(&format!("controller-{} ", c.id)),
        })).collect::<Vec<_>>(),
        "agents": plan.agents.iter().map(|a| json!({
            "name": a.name, "site": a.site, "http_addr": a.http_addr, "probe_addr": a.probe_addr,
            "pid": pid_of(&a.name),
        })).collect::<Vec<_>>(),
        "database_mode": match plan.db { LocalDb::None => "none", LocalDb::Simulated => "simulated", LocalDb::Postgres { .. } => "postgres" },
        "databases": pg.map(|c| c.members.iter().map(|m| json!({
            "cluster": CLUSTER, "member": m.name, "site": m.name, "addr": format!("127.0.0.1:{}", m.port),
            "conninfo": m.conninfo("customs"), "data_dir": m.data_dir(), "pid": c.postmaster_pid(&m.name),
        })).collect::<Vec<_>>()).unwrap_or_default(),
        "syslog": plan.syslog.iter().map(|(id, (udp, tcp))| json!({
            "controller": id, "udp": udp, "tcp": tcp, "allow": ["127.0.0.1"],
        })).collect::<Vec<_>>(),
        "ingest": plan.controllers.iter().map(|c| json!({
            "controller": c.id,
            "alertmanager": format!("https://{}/ingest/alertmanager", c.http_addr),
            "wazuh": format!("https://{}/ingest/wazuh", c.http_addr),
            "generic": format!("https://{}/ingest/generic", c.http_addr),
        })).collect::<Vec<_>>(),
        "ingest_tls_name": triad_proto::tls::CONTROLLER_SAN,
        "ingest_ca": plan.certs_dir().join("ca.pem"),
        "ingest_tokens": tokens,
        "snmp": plan.snmp.as_ref().map(|(addr, community)| json!({"addr": addr, "community": community})),
        "pager": plan.notify.channels.first().map(|c| json!({"url": c.url, "log": plan.dir.join("logs").join("pager.log")})),
        "pids": procs.iter().filter_map(|p| p.child.id()).collect::<Vec<_>>(),
    });
    let path = plan.dir.join("demo.json");
    let text = serde_json::to_string_pretty(&doc).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    std::fs::write(&path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

async fn print_summary(plan: &LocalDeployment, client: &Client, pg: Option<&PgCluster>, workload: Option<&Workload>) {
    println!("\nRunning:");
    for c in &plan.controllers {
        println!("  controller {} ({:<3})  gRPC {}  metrics http://{}/metrics", c.id, c.site, c.grpc_addr, c.http_addr);
    }
    for a in &plan.agents {
        println!("  {:<16} ({:<3})  metrics http://{}/metrics", a.name, a.site, a.http_addr);
    }
    if let Some(c) = pg {
        for m in &c.members {
            println!("  postgres {:<7} ({:<3})  127.0.0.1:{}  ({})", m.name, m.name, m.port, m.conninfo("customs"));
        }
    }
    if let Some(w) = workload {
        println!("  write workload: one row into customs.orders every 100 ms on dc ({} so far)", w.ok());
    }
    if let Some((addr, _)) = &plan.snmp {
        println!("  snmpd {addr}: its `lo` stands for the DWDM link's interface (SNMP counters in `triadctl links`)");
    }
    println!("  pager: high and critical alerts are written to {}", plan.dir.join("logs").join("pager.log").display());
    if let Ok(v) = status::gather(client).await {
        println!("\n{}", status::render(&v));
    }
    println!("Every address and pid is in {}.", plan.dir.join("demo.json").display());
    println!("Next, in another terminal:");
    println!("  export TRIAD_CONFIG={}", plan.ctl_config_path().display());
    println!("  triadctl status");
    println!("  kill -9 <the leader's pid from demo.json>   # a new leader within seconds; triadctl status shows it");
    println!(
        "  TRIAD_CONFIG={} triadctl approve ID   # a second person (noc `nora`) approves a request",
        plan.second_ctl_config_path().display()
    );
    if let Some((_, (udp, _))) = plan.syslog.iter().next() {
        println!(
            "  logger --server {} --port {} -p auth.crit -t sshd 'Failed password for root'   # a syslog alert",
            udp.split(':').next().unwrap_or("127.0.0.1"),
            udp.rsplit(':').next().unwrap_or("")
        );
        println!("  triadctl alerts list     # the SOC's queue (HTTP ingest tokens are in demo.json)");
    }
    println!("Dashboards: a Prometheus for this demo (then see runbooks/noc-dashboards.md):");
    println!(
        "  triadctl prometheus scrape-config --demo {} --rules deploy/prometheus/rules.yml --out {}",
        plan.dir.join("demo.json").display(),
        plan.dir.join("prometheus.yml").display()
    );
    println!("Ctrl-C here stops everything.");
}
