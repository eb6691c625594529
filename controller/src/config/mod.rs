//! The controller's TOML configuration: every field documented, validated before anything on disk
//! is touched, with errors that name the offending key.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod alerts;
pub mod balancers;
mod clusters;
pub mod kubernetes;
pub use alerts::*;
pub use clusters::*;

/// `triad-controller --config FILE`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    /// This controller's Raft node id: non-zero, unique in the deployment, never reused.
    pub id: u64,
    /// The site this controller runs in (`dc`, `ndc`, `dr`, or a witness site).
    pub site: String,
    /// Directory for the Raft log, vote and state machine (RocksDB). Created when missing.
    pub data_dir: PathBuf,
    /// Address the gRPC server (peers, agents, triadctl) listens on and advertises, `IP:PORT`.
    pub grpc_addr: String,
    /// Address of the plain HTTP server for `/metrics`, `/healthz` and `/readyz`, `IP:PORT`.
    pub http_addr: String,
    /// Log format: `text` (default) or `json`.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// Certificates for mutual TLS; see `triadctl certs`.
    pub tls: TlsConfig,
    /// Raft timing.
    #[serde(default)]
    pub raft: RaftTiming,
    /// Agent liveness.
    #[serde(default)]
    pub agents: AgentPolicy,
    /// The primary's lease (DESIGN.md, safety points 2 and 4).
    #[serde(default)]
    pub lease: LeaseTiming,
    /// Automatic failover (DESIGN.md, safety points 5, 6 and 9).
    #[serde(default)]
    pub failover: FailoverPolicy,
    /// The controllers that form the cluster when it is first started, this one included. Only
    /// read when the data directory is empty; afterwards membership changes with
    /// `triadctl cluster add/remove`.
    pub peers: Vec<PeerConfig>,
    /// Set on a controller that joins a running cluster (`triadctl cluster add`): it then never
    /// initialises a cluster of its own and waits for the leader to contact it. Default false.
    #[serde(default)]
    pub join: bool,
    /// The deployment's sites; seeds the replicated state on first start.
    #[serde(default)]
    pub sites: Vec<SiteConfig>,
    /// The database clusters and their members; seeds the replicated state on first start.
    #[serde(default)]
    pub clusters: Vec<ClusterConfig>,
    /// The network links between the sites (`[[links]]`, see `state/links.rs` for every field):
    /// seed the replicated state on first start; afterwards `triadctl links put/delete`.
    #[serde(default)]
    pub links: Vec<crate::state::links::LinkSpec>,
    /// The services that follow the database clusters (`[[services]]`, see `state/services.rs`
    /// for every field): seed the replicated state on first start; afterwards
    /// `triadctl services put/delete`.
    #[serde(default)]
    pub services: Vec<crate::state::services::ServiceSpec>,
    /// The drill plans (`[[drills]]`, see `state/drills.rs` for every field): seed the
    /// replicated state on first start.
    #[serde(default)]
    pub drills: Vec<crate::state::drills::DrillPlan>,
    /// The HAProxy instances told of every role change through their runtime API
    /// (`[[balancers]]`, see `config/balancers.rs` for every field). Config only: each controller
    /// reads its own file, so keep the list the same on all of them.
    #[serde(default)]
    pub balancers: Vec<balancers::BalancerConfig>,
    /// The Kubernetes Services and Deployments that follow the clusters (`[kubernetes]`, see
    /// `config/kubernetes.rs`). Off by default.
    #[serde(default)]
    pub kubernetes: kubernetes::KubernetesConfig,
    /// The IT asset register: warning lead times.
    #[serde(default)]
    pub inventory: InventoryConfig,
    /// Security alerts: ingest limits (sources and their tokens are in the replicated state,
    /// `triadctl alerts sources`).
    #[serde(default)]
    pub alerts: AlertsConfig,
}

/// The IT asset register (`triadctl assets`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InventoryConfig {
    /// Lead times in days at which a licence's expiry, a warranty's end or an end of life is
    /// warned of (an alert in the queue), once each; a date passed is warned of once more.
    /// Default [90, 30, 7]; 1 to 10 of them, each 1 to 3650.
    pub warn_days: Vec<u32>,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig { warn_days: vec![90, 30, 7] }
    }
}

/// Paths to PEM files. Relative paths are relative to the config file's directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The deployment's CA certificate: peers must present a certificate it signed.
    pub ca: PathBuf,
    /// This controller's certificate (role `peer`), issued by `triadctl certs issue --role peer`.
    pub cert: PathBuf,
    /// The private key of `cert`.
    pub key: PathBuf,
}

/// Raft timing. Elections must be slower than heartbeats by a wide margin, or a busy machine
/// deposes healthy leaders.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftTiming {
    /// Leader heartbeat interval in milliseconds (default 50).
    pub heartbeat_interval_ms: u64,
    /// Lower bound of the randomised election timeout in milliseconds (default 150).
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomised election timeout in milliseconds (default 300).
    pub election_timeout_max_ms: u64,
    /// Build a snapshot (and allow the log before it to be purged) every this many entries
    /// (default 10000). Bounds restart time: at most this many entries are replayed.
    pub snapshot_every_entries: u64,
}

/// The primary's lease. The agent of the primary counts a lease from its own request; the leader
/// grants one only after a quorum round that began once the request had arrived, and promotes
/// another member only once every lease it (or, for a new leader, its predecessor) granted has
/// certainly ended: P(1+rho)+m after its last grant, and P(1+rho)^2+m after its own election.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseTiming {
    /// P, in milliseconds (default 1200, the floor with the other defaults). Must be at least 2 x `raft.election_timeout_max_ms` +
    /// `lease.agent_backoff_max_ms` + `lease.agent_fence_lead_ms`, so that an election alone
    /// never makes a lease lapse: the old leader may die right after a grant; openraft 0.9
    /// lets a follower stand only once the old leader's lease (one election timeout max) and its
    /// own random election timeout have passed, so an uncontested election ends within 2 x
    /// election max; the agent may be backing off from a broken stream when the new leader is
    /// named; and the agent fences its fence lead before the lease ends, so the next grant must
    /// arrive before that. A contested election (a candidate with a shorter log is refused and
    /// openraft adds 2 x election max) can take longer: the failsafe's vouchers cover it, and the
    /// leader-kill soak counts how often they had to (`tests/benches/leader_kill_soak.rs`).
    pub period_ms: u64,
    /// rho: how much faster or slower any two hosts' clocks may run, as a fraction (default
    /// 0.001, i.e. 1000 ppm: ten times what an ordinary quartz oscillator drifts).
    pub clock_drift: f64,
    /// m: the margin added to every wait, covering messages in flight and scheduling (default 200).
    pub margin_ms: u64,
    /// The largest `reconnect_backoff_max_ms` of any agent (default 100, the agents' default):
    /// counted in the check of `period_ms`.
    pub agent_backoff_max_ms: u64,
    /// The largest `lease.fence_lead_ms` of any agent (default 500, the agents' default): an
    /// agent fences that long before its lease ends, and also when its own lease check runs that
    /// late (a stall of the agent longer than this fences the primary). Counted in the check of
    /// `period_ms`.
    pub agent_fence_lead_ms: u64,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming {
            period_ms: 1200,
            clock_drift: 0.001,
            margin_ms: 200,
            agent_backoff_max_ms: 100,
            agent_fence_lead_ms: 500,
        }
    }
}

impl LeaseTiming {
    /// How long after a grant the lease has certainly ended on the agent: P(1+rho)+m.
    pub fn expiry(&self) -> std::time::Duration {
        std::time::Duration::from_millis(
            (self.period_ms as f64 * (1.0 + self.clock_drift)).ceil() as u64 + self.margin_ms,
        )
    }

    /// How long a voucher waits after its last vouch (and its start) before it promotes:
    /// P(1+rho)+m, in milliseconds, as the agents are told it.
    pub fn vouch_hold_ms(&self) -> u64 {
        self.expiry().as_millis() as u64
    }

    /// How long a new leader waits after its election: P(1+rho)^2+m.
    pub fn new_leader_wait(&self) -> std::time::Duration {
        // P(1+rho)^2+m, not 2P(1+rho)+m: every grant is decided on a quorum round that began
        // after its request arrived (`brain/lease.rs` says why that bounds the old leases).
        let rate = 1.0 + self.clock_drift;
        std::time::Duration::from_millis((self.period_ms as f64 * rate * rate).ceil() as u64 + self.margin_ms)
    }
}

/// When the leader fails over on its own.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailoverPolicy {
    /// Fail over automatically when the primary is lost (default true). Maintenance mode
    /// (`triadctl pause`) turns it off per cluster.
    pub automatic: bool,
    /// The primary is lost when its agent has not been heard for this long, or has reported the
    /// server stopped for this long, in milliseconds (default 600) — and no standby still
    /// streams from it.
    pub primary_lost_after_ms: u64,
    /// At least this long between two automatic failovers of one cluster, in milliseconds
    /// (default 300000: five minutes). Anti-flapping; a manual failover is not limited.
    pub min_interval_ms: u64,
}

impl Default for FailoverPolicy {
    fn default() -> Self {
        FailoverPolicy { automatic: true, primary_lost_after_ms: 600, min_interval_ms: 300_000 }
    }
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming {
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            snapshot_every_entries: 10_000,
        }
    }
}

/// How the leader judges agents.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentPolicy {
    /// An agent not heard from for this many milliseconds is marked down (default 3000).
    pub down_after_ms: u64,
}

impl Default for AgentPolicy {
    fn default() -> Self {
        AgentPolicy { down_after_ms: 3000 }
    }
}

/// One member of the initial controller cluster.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Raft node id.
    pub id: u64,
    /// Site the controller runs in.
    pub site: String,
    /// Its gRPC address, `IP:PORT`.
    pub grpc_addr: String,
    /// Its HTTP address, `IP:PORT`.
    pub http_addr: String,
}

/// A site of the deployment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Short name, e.g. `dc`.
    pub name: String,
    /// Free text shown in status.
    #[serde(default)]
    pub description: String,
    /// The city it is in (default: the site's own name, a city of its own). Sites in one city can
    /// be lost together, so no city may hold more than two voting controllers (DESIGN.md point
    /// 10); `triadctl status` says whether losing any one city leaves a quorum.
    #[serde(default)]
    pub city: String,
}

impl SiteConfig {
    /// The city, or the site's name when none is given.
    pub fn city_or_name(&self) -> &str {
        if self.city.is_empty() {
            &self.name
        } else {
            &self.city
        }
    }
}

fn default_log_format() -> String {
    "text".to_string()
}

pub(crate) fn key_err(key: impl Into<String>, msg: impl Into<String>) -> Error {
    Error::ConfigKey { key: key.into(), msg: msg.into() }
}

/// A site named by `key` must be one of `sites` (when any are configured).
pub(crate) fn known_site(sites: &BTreeSet<&str>, key: String, site: &str) -> Result<()> {
    check_name(&key, site)?;
    if !sites.is_empty() && !sites.contains(site) {
        return Err(key_err(key, format!("site `{site}` is not among `sites`")));
    }
    Ok(())
}

/// Reads a certificate and its key (bounded) and checks that they belong together, naming the
/// key at fault: `(common name, organisational unit)` of the certificate.
pub fn check_tls_pair((cert_key, cert): (&str, &Path), (key_key, key): (&str, &Path)) -> Result<(String, String)> {
    use triad_proto::tls::IdentityError;
    triad_proto::tls::check_identity_files(cert, key).map_err(|e| match e {
        IdentityError::Cert(why) => key_err(cert_key, why),
        IdentityError::Key(why) => key_err(key_key, why),
        mismatch @ IdentityError::Mismatch => key_err(key_key, mismatch.to_string()),
    })
}

/// Checks that `value` is an `IP:PORT` socket address.
pub fn check_addr(key: &str, value: &str) -> Result<SocketAddr> {
    value.parse::<SocketAddr>().map_err(|_| key_err(key, format!("`{value}` is not an IP:PORT address")))
}

/// Checks a name used as an identifier (site, cluster, member, agent, user).
pub fn check_name(key: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(key_err(key, format!("`{value}` must be 1-64 characters of letters, digits, '-', '_' or '.'")))
    }
}

impl ControllerConfig {
    /// Reads, parses and validates `path`; relative paths inside are resolved against its directory.
    pub fn load(path: &Path) -> Result<Self> {
        let text = triad_proto::files::read_config(path)
            .map_err(|e| Error::ConfigFile { path: path.display().to_string(), msg: e.to_string() })?;
        let mut cfg: ControllerConfig = toml::from_str(&text)
            .map_err(|e| Error::ConfigFile { path: path.display().to_string(), msg: e.to_string() })?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        cfg.validate()?;
        Ok(cfg)
    }

    fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.data_dir, &mut self.tls.ca, &mut self.tls.cert, &mut self.tls.key] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Validates every field; the first problem found is returned, naming its key.
    pub fn validate(&self) -> Result<()> {
        self.validate_identity()?;
        self.validate_timings()?;
        let sites = self.validate_sites()?;
        self.validate_peers(&sites)?;
        self.validate_clusters(&sites)?;
        self.validate_links(&sites)?;
        self.validate_services(&sites)?;
        self.validate_drills()?;
        self.validate_balancers(&sites)?;
        self.validate_kubernetes(&sites)?;
        let days = &self.inventory.warn_days;
        let distinct: BTreeSet<&u32> = days.iter().collect();
        if days.is_empty()
            || days.len() > 10
            || distinct.len() != days.len()
            || days.iter().any(|d| !(1..=3650).contains(d))
        {
            return Err(key_err("inventory.warn_days", "1 to 10 distinct lead times, each 1 to 3650 days"));
        }
        self.validate_alerts()
    }

    /// This controller: its id, addresses, log format, and a certificate that is its own.
    fn validate_identity(&self) -> Result<()> {
        if self.id == 0 {
            return Err(key_err("id", "must be a positive integer"));
        }
        check_name("site", &self.site)?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(key_err("data_dir", "must not be empty"));
        }
        check_addr("grpc_addr", &self.grpc_addr)?;
        check_addr("http_addr", &self.http_addr)?;
        if self.log_format != "text" && self.log_format != "json" {
            return Err(key_err("log_format", format!("`{}` is neither `text` nor `json`", self.log_format)));
        }
        for (key, p) in [("tls.ca", &self.tls.ca), ("tls.cert", &self.tls.cert), ("tls.key", &self.tls.key)] {
            if !p.is_file() {
                return Err(key_err(key, format!("{} is not a readable file", p.display())));
            }
        }
        let (cn, ou) = check_tls_pair(("tls.cert", &self.tls.cert), ("tls.key", &self.tls.key))?;
        let want = format!("controller-{}", self.id);
        if cn != want || ou != "peer" {
            return Err(key_err(
                "tls.cert",
                format!(
                    "the certificate is for `{cn}` with role `{ou}`; controller {} needs `{want}` with role `peer`",
                    self.id
                ),
            ));
        }
        Ok(())
    }

    /// Raft's, the lease's, the agents' and the failover's timings, each within sane bounds and
    /// the lease above its floor.
    fn validate_timings(&self) -> Result<()> {
        let r = &self.raft;
        let l = &self.lease;
        // Upper bounds first: beyond them a timing is a typo, not a choice (a lease of years, a
        // heartbeat of hours), and the checks below multiply and add these without overflowing.
        for (key, value, most) in [
            ("raft.heartbeat_interval_ms", r.heartbeat_interval_ms, 10_000),
            ("raft.election_timeout_min_ms", r.election_timeout_min_ms, 60_000),
            ("raft.election_timeout_max_ms", r.election_timeout_max_ms, 120_000),
            ("lease.period_ms", l.period_ms, 600_000),
            ("lease.margin_ms", l.margin_ms, 60_000),
            ("lease.agent_backoff_max_ms", l.agent_backoff_max_ms, 60_000),
            ("lease.agent_fence_lead_ms", l.agent_fence_lead_ms, 60_000),
            ("agents.down_after_ms", self.agents.down_after_ms, 3_600_000),
            ("failover.primary_lost_after_ms", self.failover.primary_lost_after_ms, 3_600_000),
        ] {
            if value > most {
                return Err(key_err(key, format!("{value} is absurd: at most {most} ms")));
            }
        }
        if r.heartbeat_interval_ms < 10 {
            return Err(key_err("raft.heartbeat_interval_ms", "must be at least 10"));
        }
        if r.election_timeout_min_ms < 3 * r.heartbeat_interval_ms {
            return Err(key_err(
                "raft.election_timeout_min_ms",
                format!(
                    "must be at least 3 x raft.heartbeat_interval_ms ({}), or one late heartbeat starts an election",
                    3 * r.heartbeat_interval_ms
                ),
            ));
        }
        if r.election_timeout_max_ms <= r.election_timeout_min_ms {
            return Err(key_err("raft.election_timeout_max_ms", "must be greater than raft.election_timeout_min_ms"));
        }
        if r.snapshot_every_entries < 100 {
            return Err(key_err("raft.snapshot_every_entries", "must be at least 100"));
        }
        if self.agents.down_after_ms < 100 {
            return Err(key_err("agents.down_after_ms", "must be at least 100"));
        }
        // The lease floor: see `LeaseTiming::period_ms` for why each term is there.
        let floor = 2 * r.election_timeout_max_ms + l.agent_backoff_max_ms + l.agent_fence_lead_ms;
        if l.period_ms < floor {
            return Err(key_err(
                "lease.period_ms",
                format!(
                    "must be at least 2 x raft.election_timeout_max_ms + lease.agent_backoff_max_ms + \
                     lease.agent_fence_lead_ms ({floor} ms), or an election alone could make the primary's lease \
                     lapse (an agent stall longer than lease.agent_fence_lead_ms, {} ms, fences the primary \
                     whatever P is)",
                    l.agent_fence_lead_ms
                ),
            ));
        }
        if !(0.0..0.1).contains(&l.clock_drift) {
            return Err(key_err("lease.clock_drift", "must be at least 0 and below 0.1"));
        }
        if l.margin_ms < 10 {
            return Err(key_err("lease.margin_ms", "must be at least 10"));
        }
        if self.failover.primary_lost_after_ms < 100 {
            return Err(key_err("failover.primary_lost_after_ms", "must be at least 100"));
        }
        Ok(())
    }

    /// The sites, each named once; returns their names.
    fn validate_sites(&self) -> Result<BTreeSet<&str>> {
        let mut site_names = BTreeSet::new();
        for (i, s) in self.sites.iter().enumerate() {
            check_name(&format!("sites[{i}].name"), &s.name)?;
            if !site_names.insert(s.name.as_str()) {
                return Err(key_err(format!("sites[{i}].name"), format!("site `{}` is listed twice", s.name)));
            }
        }
        for (i, s) in self.sites.iter().enumerate() {
            if !s.city.is_empty() {
                check_name(&format!("sites[{i}].city"), &s.city)?;
            }
        }
        Ok(site_names)
    }

    /// The founding controllers: ids and addresses each once, at known sites, at most two voters
    /// a city, this controller among them as configured.
    fn validate_peers(&self, sites: &BTreeSet<&str>) -> Result<()> {
        known_site(sites, "site".into(), &self.site)?;
        if self.peers.is_empty() {
            return Err(key_err("peers", "must list the initial controllers, this one included"));
        }
        let mut ids = BTreeSet::new();
        let mut addrs = BTreeSet::new();
        for (i, p) in self.peers.iter().enumerate() {
            if p.id == 0 {
                return Err(key_err(format!("peers[{i}].id"), "must be a positive integer"));
            }
            if !ids.insert(p.id) {
                return Err(key_err(format!("peers[{i}].id"), format!("id {} is listed twice", p.id)));
            }
            known_site(sites, format!("peers[{i}].site"), &p.site)?;
            check_addr(&format!("peers[{i}].grpc_addr"), &p.grpc_addr)?;
            check_addr(&format!("peers[{i}].http_addr"), &p.http_addr)?;
            if !addrs.insert(p.grpc_addr.as_str()) {
                return Err(key_err(format!("peers[{i}].grpc_addr"), format!("{} is listed twice", p.grpc_addr)));
            }
        }
        let city = |site: &str| {
            self.sites.iter().find(|s| s.name == site).map(|s| s.city_or_name().to_string()).unwrap_or(site.into())
        };
        let cities = crate::state::voters_by_city(self.peers.iter().map(|p| (p.id, city(&p.site))));
        if let Some(why) = crate::state::crowded(&cities) {
            return Err(key_err("peers", why));
        }
        match self.peers.iter().find(|p| p.id == self.id) {
            None => return Err(key_err("peers", format!("this controller (id {}) is not listed", self.id))),
            Some(me) if me.grpc_addr != self.grpc_addr || me.site != self.site => {
                return Err(key_err(
                    "peers",
                    format!("the entry for id {} disagrees with this controller's site or grpc_addr", self.id),
                ))
            }
            Some(_) => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented example parses: every key in it exists (unknown keys are refused).
    #[test]
    fn the_example_config_parses() {
        let cfg: ControllerConfig = toml::from_str(include_str!("../../../deploy/controller.example.toml"))
            .expect("deploy/controller.example.toml");
        assert_eq!(cfg.peers.len(), 3);
        assert!(cfg.clusters.iter().all(|c| c.synchronous_mode == "relaxed" || c.synchronous_mode == "strict"));
    }

    #[test]
    fn drill_plans_name_a_member_of_a_configured_cluster() {
        let cfg: ControllerConfig = toml::from_str(include_str!("../../../deploy/controller.example.toml"))
            .expect("deploy/controller.example.toml");
        assert_eq!(cfg.drills.len(), 2, "the example ships a round trip and a dr-test");
        cfg.validate_drills().expect("the example's plans");
        let good = cfg.drills[0].clone();
        let cases = [
            (crate::state::drills::DrillPlan { target: "mars".into(), ..good.clone() }, "drills[2].target"),
            (crate::state::drills::DrillPlan { cluster: "nope".into(), ..good.clone() }, "drills[2].cluster"),
            (
                crate::state::drills::DrillPlan { services: vec!["ghost".into()], ..good.clone() },
                "drills[2].services[0]",
            ),
            (good.clone(), "drills[2].name"),
        ];
        for (plan, key) in cases {
            let mut c = cfg.clone();
            c.drills.push(if key.ends_with("name") {
                plan
            } else {
                crate::state::drills::DrillPlan { name: "other".into(), ..plan }
            });
            let e = c.validate_drills().expect_err(key).to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn the_example_ctl_config_parses() {
        let cfg: crate::ctl::client::CtlConfig = toml::from_str(include_str!("../../../deploy/triadctl.example.toml"))
            .expect("deploy/triadctl.example.toml");
        assert!(!cfg.controllers.is_empty());
    }
}
