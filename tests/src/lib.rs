//! The end-to-end harness: starts real controllers and agents (their real binaries, real gRPC with
//! mutual TLS, real RocksDB on disk) in a temporary directory, and stops every process and removes
//! every file when the test ends, whether it passed or not.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod chaos;
mod database;
pub mod flags;
pub mod haproxy;
pub mod links;
pub mod netns;
pub mod plot;
mod processes;
pub mod prometheus;
pub mod relay;
pub mod running_demo;
pub mod scripted;
pub mod slow_disk;
pub mod snmpd;
pub mod soak;
pub mod timing;
pub mod workload;

pub use processes::Paused;

use std::collections::BTreeMap;
use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tonic::transport::Channel;
use triad_controller::config::PeerConfig;
use triad_controller::ctl::client::{Client, CtlConfig};
pub use triad_controller::ctl::local::LocalDb;
use triad_controller::ctl::local::{free_port, LocalDeployment};
pub use triad_controller::ctl::postgres::PgCluster;
use triad_controller::ctl::status::{self, StatusView};
use triad_proto::v1 as pb;
use triad_proto::v1::control_client::ControlClient;

pub use triad_controller::ctl::certs;

/// Where the workspace's binaries are: `TRIAD_BIN_DIR`, or the target directory this test runs from.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TRIAD_BIN_DIR") {
        return PathBuf::from(d);
    }
    // Test binaries live in target/<profile>/deps; the programs in target/<profile>.
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).expect("target directory").to_path_buf()
}

/// The path of a workspace binary; panics with the fix when it has not been built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --bins` before the tests (scripts/test.sh does)",
        p.display()
    );
    p
}

/// Waits until `check` returns `Some`, polling every 100 ms, failing after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        // The deadline bounds each check too: one that hangs (a TLS handshake with a SIGSTOPped
        // controller) would otherwise never return to look at it (the chaos suite hung there).
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
        if let Ok(Some(v)) = tokio::time::timeout(left, check()).await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {:?} waiting for {what}", timeout);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A local deployment under test.
pub struct Deployment {
    pub plan: LocalDeployment,
    /// Dropped last: removes every file the test made.
    _dir: tempfile::TempDir,
    procs: BTreeMap<String, Child>,
    pub client: Client,
    /// Real PostgreSQL members, when the deployment has them; stopped on drop.
    pub pg: Option<PgCluster>,
    /// Extra environment for controllers started from now on (e.g. FAILPOINTS).
    pub controller_env: Vec<(String, String)>,
    /// The sites' network namespaces, when the deployment runs in them: every process starts
    /// in its site's namespace. Removed after every process has stopped.
    pub net: Option<netns::Net>,
}

impl Deployment {
    /// Plans a three-site deployment and writes its certificates and configs; starts nothing.
    pub fn new() -> Result<Self> {
        Self::with_db(LocalDb::None)
    }

    /// Like [`Deployment::new`], with database members of the given kind watched by the agents.
    pub fn with_db(db: LocalDb) -> Result<Self> {
        Self::with_db_on(db, None, &[])
    }

    fn with_db_on(db: LocalDb, net: Option<netns::Net>, witnesses: &[(&str, &str)]) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("triad-test-").tempdir()?;
        // tempdir() makes the directory 0700; PostgreSQL runs as `postgres` and must enter it.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let mut plan = match &net {
            Some(n) => LocalDeployment::plan_on(dir.path(), n.addrs())?,
            None => LocalDeployment::plan(dir.path())?,
        };
        plan.db = db;
        for (site, city) in witnesses {
            // Witnesses run on loopback: the namespace harness has no network for their sites.
            ensure!(net.is_none(), "witness controllers in network namespaces are not supported");
            plan.add_witness(site, city)?;
        }
        plan.write()?;
        std::fs::create_dir_all(dir.path().join("logs"))?;
        let client = Client::new(CtlConfig::load(&plan.ctl_config_path())?)?;
        Ok(Deployment { plan, _dir: dir, procs: BTreeMap::new(), client, pg: None, controller_env: Vec::new(), net })
    }

    /// A deployment with real PostgreSQL members (primary `dc`, synchronous standby `ndc`,
    /// asynchronous standby `dr`), created and started; controllers and agents are not started.
    pub async fn with_postgres() -> Result<Self> {
        Self::with_postgres_on(None, &[]).await
    }

    /// Like [`Deployment::with_postgres`], with founding witness controllers (voters with no
    /// database, ids 4 and up) at sites of their own, given as (site, city).
    pub async fn with_postgres_and_witnesses(witnesses: &[(&str, &str)]) -> Result<Self> {
        Self::with_postgres_on(None, witnesses).await
    }

    /// Like [`Deployment::with_db`], with every site in its own network namespaces
    /// ([`netns::Net`]). Needs root.
    pub fn in_namespaces(db: LocalDb) -> Result<Self> {
        Self::with_db_on(db, Some(netns::Net::create()?), &[])
    }

    /// Like [`Deployment::with_postgres`], with every site in its own network namespaces
    /// ([`netns::Net`]): each controller, each host's agent and database, so that a test can cut
    /// a site's links. Needs root.
    pub async fn with_postgres_in_namespaces() -> Result<Self> {
        Self::with_postgres_on(Some(netns::Net::create()?), &[]).await
    }

    async fn with_postgres_on(net: Option<netns::Net>, witnesses: &[(&str, &str)]) -> Result<Self> {
        let bin = triad_controller::ctl::postgres::find_bin_dir()
            .ok_or_else(|| anyhow!("PostgreSQL server binaries are required (scripts/test.sh installs them)"))?;
        let ports = [free_port()?, free_port()?, free_port()?];
        let places = net.as_ref().map(|n| {
            let addrs = n.addrs();
            [0, 1, 2].map(|i| (addrs[i].1.clone(), Some(n.host_ns(["dc", "ndc", "dr"][i]))))
        });
        let mut d = Self::with_db_on(LocalDb::Postgres { ports, bin_dir: bin.clone() }, net, witnesses)?;
        let mut cluster = PgCluster::plan(&bin, &d.dir().join("postgres"), ports);
        if let Some(places) = places {
            cluster = cluster.placed(places);
        }
        // Stored before it starts, so that a failure half way still stops what did start.
        d.pg = Some(cluster);
        let pg = d.pg.as_ref().expect("just set");
        tokio::task::block_in_place(|| pg.create_and_start())?;
        Ok(d)
    }

    pub fn dir(&self) -> &Path {
        &self.plan.dir
    }

    fn spawn(&mut self, key: &str, program: &Path, config: &Path) -> Result<()> {
        let env = if key.starts_with("controller-") { self.controller_env.clone() } else { Vec::new() };
        if let Some(mut old) = self.procs.remove(key) {
            if old.try_wait()?.is_none() {
                bail!("{key} is already running");
            }
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir().join("logs").join(format!("{key}.log")))?;
        // In namespaces: `ip netns exec` enters the namespace and execs the program, so the child
        // is the program itself (its pid, its process group).
        let netns = self.net.as_ref().and_then(|n| match key.strip_prefix("controller-") {
            Some(id) => {
                let site = self.plan.controllers.iter().find(|c| c.id.to_string() == id).map(|c| c.site.clone())?;
                Some(n.controller_ns(&site))
            }
            None => key.strip_prefix("agent-").map(|site| n.host_ns(site)),
        });
        let mut cmd = match &netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        };
        let child = cmd
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", std::env::var("TRIAD_TEST_RUST_LOG").unwrap_or_else(|_| "info,openraft=warn".into()))
            .envs(env)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        self.procs.insert(key.to_string(), child);
        Ok(())
    }

    /// Rewrites the founding controllers' configs through `f` (before they start).
    pub fn tune_controllers(&mut self, f: impl Fn(&mut triad_controller::config::ControllerConfig)) -> Result<()> {
        for peer in self.plan.controllers.clone() {
            let mut cfg = self.plan.controller_config(&peer, false);
            f(&mut cfg);
            self.plan.write_controller_config(&cfg)?;
        }
        Ok(())
    }

    /// Starts controller `id` (1-3 are the founders).
    pub fn start_controller(&mut self, id: u64) -> Result<()> {
        let cfg = self.plan.controller_config_path(id);
        self.spawn(&format!("controller-{id}"), &bin("triad-controller"), &cfg)
    }

    /// The founding controllers' ids (1-3, and any witnesses after them).
    pub fn founders(&self) -> Vec<u64> {
        self.plan.controllers.iter().map(|c| c.id).collect()
    }

    /// Starts the founding controllers.
    pub fn start_controllers(&mut self) -> Result<()> {
        for id in self.founders() {
            self.start_controller(id)?;
        }
        Ok(())
    }

    /// Starts the founding controllers, waits for a leader, then starts every site's agent.
    pub async fn start_all(&mut self) -> Result<()> {
        self.start_controllers()?;
        self.wait_leader(&self.founders(), Duration::from_secs(30)).await?;
        for site in ["dc", "ndc", "dr"] {
            self.start_agent(site)?;
        }
        Ok(())
    }

    /// Starts the agent of `site`.
    pub fn start_agent(&mut self, site: &str) -> Result<()> {
        let name = format!("agent-{site}");
        let cfg = self.plan.agent_config_path(&name);
        self.spawn(&name, &bin("triad-agent"), &cfg)
    }

    /// Plans controller `id` joining the running cluster: certificate and config (`join = true`).
    /// A site the plan does not know yet is added in `city`.
    pub fn plan_joiner(&mut self, id: u64, site: &str, city: &str) -> Result<PeerConfig> {
        if !self.plan.sites.iter().any(|s| s.name == site) {
            self.plan.sites.push(triad_controller::config::SiteConfig {
                name: site.into(),
                description: format!("joined in {city}"),
                city: city.into(),
            });
        }
        let peer = PeerConfig {
            id,
            site: site.into(),
            grpc_addr: format!("127.0.0.1:{}", free_port()?),
            http_addr: format!("127.0.0.1:{}", free_port()?),
        };
        let certs = self.plan.certs_dir();
        certs::issue(&certs, &certs, "peer", &format!("controller-{id}"), &[])?;
        let cfg = self.plan.controller_config(&peer, true);
        self.plan.write_controller_config(&cfg)?;
        Ok(peer)
    }

    /// The gRPC address of controller `id`.
    pub fn addr(&self, id: u64) -> String {
        self.plan
            .controllers
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.grpc_addr.clone())
            .unwrap_or_else(|| panic!("controller {id} is not planned"))
    }

    /// A `Control` client to controller `id`, as the admin.
    pub async fn control(&self, id: u64) -> Result<ControlClient<Channel>> {
        Ok(self.client.control(&self.addr(id)).await?)
    }

    /// Controller `id`'s view of itself, if it answers.
    pub async fn node_status(&self, id: u64) -> Option<pb::NodeStatusReply> {
        let addr = self.plan.controllers.iter().find(|c| c.id == id)?.grpc_addr.clone();
        let mut c = self.client.control(&addr).await.ok()?;
        tokio::time::timeout(Duration::from_secs(2), c.node_status(pb::NodeStatusRequest {}))
            .await
            .ok()?
            .ok()
            .map(|r| r.into_inner())
    }

    /// Controller `id`'s applied state, if it answers.
    pub async fn state_of(&self, id: u64) -> Option<pb::StateReply> {
        let mut c = self.control(id).await.ok()?;
        tokio::time::timeout(Duration::from_secs(2), c.state(pb::StateRequest {}))
            .await
            .ok()?
            .ok()
            .map(|r| r.into_inner())
    }

    /// Waits for a leader that the controllers in `among` agree on, and returns its id.
    pub async fn wait_leader(&self, among: &[u64], timeout: Duration) -> Result<u64> {
        wait_for("an agreed leader", timeout, || async {
            let mut leader = None;
            for id in among {
                let s = self.node_status(*id).await?;
                if s.leader_id == 0 || leader.is_some_and(|l| l != s.leader_id) {
                    return None;
                }
                leader = Some(s.leader_id);
            }
            let l = leader?;
            (self.node_status(l).await?.raft_role == "leader").then_some(l)
        })
        .await
    }

    /// `triadctl status` as data.
    pub async fn status(&self) -> Result<StatusView> {
        Ok(status::gather(&self.client).await?)
    }

    /// Runs `triadctl ARGS` with this deployment's config.
    pub fn triadctl(&self, args: &[&str]) -> Result<Output> {
        Ok(Command::new(bin("triadctl")).args(args).env("TRIAD_CONFIG", self.plan.ctl_config_path()).output()?)
    }

    /// `triadctl ARGS` as another person: a certificate for `name` with `role` is issued (once)
    /// and a triadctl config written for it.
    pub fn triadctl_as(&self, name: &str, role: &str, args: &[&str]) -> Result<Output> {
        let certs = self.plan.certs_dir();
        let config = self.dir().join(format!("triadctl-{name}.toml"));
        if !config.exists() {
            certs::issue(&certs, &certs, role, name, &[])?;
            let ctl = CtlConfig {
                controllers: self.plan.controllers.iter().map(|c| c.grpc_addr.clone()).collect(),
                ca: certs::ca_cert_path(&certs),
                cert: certs.join(format!("{name}.pem")),
                key: certs.join(format!("{name}.key")),
            };
            std::fs::write(&config, toml::to_string(&ctl)?)?;
        }
        Ok(Command::new(bin("triadctl")).args(args).env("TRIAD_CONFIG", &config).output()?)
    }

    /// Puts a user through the admin's client; returns the log index.
    pub async fn put_user(&self, name: &str, role: &str) -> Result<u64> {
        let r = self
            .client
            .on_leader(|mut c| {
                let req = pb::PutUserRequest { name: name.into(), role: role.into() };
                async move { c.put_user(req).await }
            })
            .await?;
        Ok(r.log_index)
    }

    /// GET `path` from an HTTP address; returns the status code and body.
    pub async fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Bounded: an address behind a cut link never answers.
        let mut buf = String::new();
        tokio::time::timeout(Duration::from_secs(2), async {
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await?;
            s.read_to_string(&mut buf).await
        })
        .await
        .map_err(|_| anyhow!("GET http://{addr}{path}: no answer within 2 s"))??;
        let code = buf.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Ok((code, body))
    }

    /// Makes founding controller `id` the Raft leader: kills whichever controller leads and
    /// restarts it once another has been elected, until the election lands on `id`.
    pub async fn make_leader(&mut self, id: u64) -> Result<()> {
        let founders = self.founders();
        for _ in 0..30 {
            let leader = self.wait_leader(&founders, Duration::from_secs(10)).await?;
            if leader == id {
                return Ok(());
            }
            self.kill(&format!("controller-{leader}"))?;
            let others: Vec<u64> = founders.iter().copied().filter(|i| *i != leader).collect();
            self.wait_leader(&others, Duration::from_secs(10)).await?;
            self.start_controller(leader)?;
        }
        bail!("controller {id} never won an election")
    }

    /// The value of one series (`name` or `name{labels}`, as exposed) on `site`'s agent's
    /// `/metrics`; `None` when the agent does not answer or does not export it.
    pub async fn agent_metric(&self, site: &str, series: &str) -> Option<f64> {
        let a = self.plan.agents.iter().find(|a| a.site == site)?;
        Self::metric_at(&a.http_addr, series).await
    }

    /// The sum of every series of the metric `name` (all its label sets) on `site`'s agent: a
    /// counter none of whose series exist yet is 0. `None` when the agent does not answer.
    pub async fn agent_metric_sum(&self, site: &str, name: &str) -> Option<f64> {
        let a = self.plan.agents.iter().find(|a| a.site == site)?;
        let (code, body) = Self::http_get(&a.http_addr, "/metrics").await.ok()?;
        if code != 200 {
            return None;
        }
        let values = body.lines().filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = match rest.chars().next()? {
                ' ' => rest,
                '{' => rest.split_once("} ")?.1,
                _ => return None,
            };
            value.trim().parse::<f64>().ok()
        });
        Some(values.sum())
    }

    /// One series (name and labels, as exposed) from controller `id`'s `/metrics`.
    pub async fn controller_metric(&self, id: u64, series: &str) -> Option<f64> {
        let c = self.plan.controllers.iter().find(|c| c.id == id)?;
        Self::metric_at(&c.http_addr, series).await
    }

    async fn metric_at(addr: &str, series: &str) -> Option<f64> {
        let (code, body) = Self::http_get(addr, "/metrics").await.ok()?;
        if code != 200 {
            return None;
        }
        body.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// The tail of a process's log, for failure messages.
    pub fn log_tail(&self, key: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir().join("logs").join(format!("{key}.log"))).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if let Some(pg) = &self.pg {
            for e in pg.stop_all() {
                eprintln!("stopping PostgreSQL: {e}");
            }
        }
        for (key, child) in self.procs.iter_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
            }
            if panicking {
                let text =
                    std::fs::read_to_string(self.plan.dir.join("logs").join(format!("{key}.log"))).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!("---- last lines of {key} ----\n{}", lines[lines.len().saturating_sub(25)..].join("\n"));
            }
        }
        keep_logs(&self.plan.dir.join("logs"));
        remove_dir(self._dir.path());
    }
}

/// Removes a deployment's directory. `remove_dir_all` stops at the first folder it cannot
/// remove and leaves the rest behind: a folder still in use (a process group's other members
/// die a moment after its leader is reaped, and may write meanwhile) is tried again, a few
/// times; what still fails is printed. A mount inside the directory must be undone before (see
/// `tests/slow_disk.rs`).
fn remove_dir(dir: &std::path::Path) {
    let mut last = None;
    for attempt in 0..20 {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(50 * (attempt + 1).min(4)));
    }
    if let Some(e) = last {
        eprintln!("removing {}: {e} (left behind)", dir.display());
    }
}

/// With `TRIAD_KEEP_LOGS=DIR`, a deployment's process logs are copied into a new directory
/// under DIR as it is dropped, for a look at a run afterwards (the rest is removed as always).
fn keep_logs(logs: &std::path::Path) {
    let Some(keep) = std::env::var_os("TRIAD_KEEP_LOGS") else { return };
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let to = std::path::Path::new(&keep).join(format!("deployment-{stamp}"));
    let copied = std::fs::create_dir_all(&to).and_then(|_| {
        for entry in std::fs::read_dir(logs)? {
            let entry = entry?;
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
        Ok(())
    });
    match copied {
        Ok(()) => eprintln!("logs kept in {}", to.display()),
        Err(e) => eprintln!("keeping the logs in {}: {e}", to.display()),
    }
}
