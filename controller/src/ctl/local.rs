//! A complete deployment on one machine: certificates, one controller and one agent per site, and
//! the configuration files that tie them together. `triadctl demo` and the end-to-end tests both
//! build on it, so the demo runs exactly what the tests prove.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use crate::config::{
    AgentPolicy, ClusterConfig, ControllerConfig, MemberConfig, PeerConfig, RaftTiming, SiteConfig, TlsConfig,
};
use crate::ctl::certs;
use crate::ctl::client::CtlConfig;
use crate::error::{Error, Result};
use crate::state::links::{LinkKind, LinkSpec};

/// The three sites of the reference deployment.
pub const SITES: [(&str, &str); 3] =
    [("dc", "primary data centre"), ("ndc", "near data centre (synchronous, DWDM)"), ("dr", "remote recovery site")];

/// The city of a reference site: `dc` and `ndc` share one (DESIGN.md point 10), `dr` is far away.
pub fn reference_city(site: &str) -> &str {
    match site {
        "dc" | "ndc" => "dhaka",
        other => other,
    }
}

/// The demo's database cluster.
pub const CLUSTER: &str = "customs";

/// A free TCP port on loopback.
///
/// Chosen below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`): a client that
/// keeps reconnecting to a stopped server's port inside that range can be given the very same
/// port as its own source port and connect to itself, and the server then cannot bind its port
/// when it starts again.
pub fn free_port() -> Result<u16> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (first, span) = (10_000u16, low.saturating_sub(10_000).max(1));
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
            ^ std::process::id().wrapping_mul(2_654_435_761);
    // A port handed out is not bound until its process starts, so a later call (the same plan,
    // or a test running beside it in this process) could get it again: never hand one out twice.
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for i in 0..span as u32 {
        let port = first + ((seed.wrapping_add(i.wrapping_mul(7919))) % span as u32) as u16;
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return Ok(port);
        }
    }
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("finding a free port", e))?;
    Ok(l.local_addr().map_err(|e| Error::io("finding a free port", e))?.port())
}

/// One agent of a local deployment.
#[derive(Debug, Clone)]
pub struct LocalAgent {
    pub name: String,
    pub site: String,
    pub http_addr: String,
    /// Its failsafe service, where the primary's agent asks for vouches.
    pub vouch_addr: String,
    /// The host's address: its database member listens there.
    pub host_ip: String,
    /// Where it answers link probes (UDP and TCP).
    pub probe_addr: String,
    /// What the other agents dial to probe it, when not `probe_addr` (a relay in a test).
    pub probe_advertise_addr: String,
}

/// The database members of a local deployment, one per site, watched by that site's agent.
#[derive(Debug, Clone, PartialEq)]
pub enum LocalDb {
    /// No database: agents only report their hosts.
    None,
    /// In-process simulated members (`dc` primary, the others standbys).
    Simulated,
    /// Real PostgreSQL members listening on 127.0.0.1 at these ports (dc, ndc, dr), run from
    /// the server binaries in `bin_dir`.
    Postgres { ports: [u16; 3], bin_dir: PathBuf },
}

/// The plan of a local deployment rooted at `dir`.
#[derive(Debug, Clone)]
pub struct LocalDeployment {
    pub dir: PathBuf,
    /// The sites: [`SITES`], then any witness sites.
    pub sites: Vec<SiteConfig>,
    pub controllers: Vec<PeerConfig>,
    pub agents: Vec<LocalAgent>,
    pub db: LocalDb,
    /// Syslog listeners (UDP, TCP addresses) by controller id, admitting 127.0.0.1 (the demo
    /// sets them; tests set their own).
    pub syslog: std::collections::BTreeMap<u64, (String, String)>,
    /// The links between the sites (none unless set: the demo sets [`reference_links`]).
    pub links: Vec<LinkSpec>,
    /// An SNMP agent (`IP:PORT`, v2c community) whose `lo` interface stands for the DWDM link's
    /// at both its ends (the demo sets one when Debian's snmpd is installed).
    pub snmp: Option<(String, String)>,
    /// The controllers' notification channels and routes (the demo sets its pager).
    pub notify: crate::config::NotifyConfig,
    /// The services that follow the cluster (none unless set).
    pub services: Vec<crate::state::services::ServiceSpec>,
    /// The balancers told of role changes (none unless set).
    pub balancers: Vec<crate::config::balancers::BalancerConfig>,
    /// The drill plans (none unless set: the demo sets [`demo_drills`]).
    pub drills: Vec<crate::state::drills::DrillPlan>,
}

/// The demo's drill plans, so that a newcomer can run a drill at once: a round trip to `ndc` and
/// back, and a test of the remote site on an isolated copy of `dr`. Generous targets: a laptop
/// is not a data centre.
pub fn demo_drills() -> Vec<crate::state::drills::DrillPlan> {
    use crate::state::drills::{DrillKind, DrillPlan, DrillTargets};
    let plan = |name: &str, kind, target: &str, targets| DrillPlan {
        name: name.into(),
        kind,
        cluster: CLUSTER.into(),
        target: target.into(),
        targets,
        max_lag_ms: 5_000,
        services: Vec::new(),
        required_every_days: 90,
        copy_port: 0,
    };
    vec![
        plan(
            "roundtrip-ndc",
            DrillKind::SwitchoverRoundtrip,
            "ndc",
            DrillTargets { rto_ms: 10_000, rpo_ms: 0, max_write_outage_ms: 5_000 },
        ),
        plan(
            "dr-copy",
            DrillKind::DrTest,
            "dr",
            DrillTargets { rto_ms: 120_000, rpo_ms: 60_000, max_write_outage_ms: 0 },
        ),
    ]
}

/// The reference deployment's links: the DWDM link `dc`–`ndc` and the WAN links to `dr`, all
/// carrying the `customs` cluster's replication. On one machine every round trip is tiny, so
/// the WAN links' thresholds are the defaults' too; a real WAN wants `degraded_rtt_ms` raised.
pub fn reference_links() -> Vec<LinkSpec> {
    let link = |name: &str, a: &str, b: &str, kind: LinkKind, mbps: u64| LinkSpec {
        name: name.into(),
        a: a.into(),
        b: b.into(),
        kind,
        capacity_mbps: mbps,
        provider: "local".into(),
        circuit: format!("LOCAL-{}", name.to_uppercase()),
        carries: [CLUSTER.to_string()].into(),
        a_agent: String::new(),
        b_agent: String::new(),
        devices: Vec::new(),
        probe_interval_ms: 200,
        thresholds: Default::default(),
    };
    vec![
        link("dwdm-dc-ndc", "dc", "ndc", LinkKind::Dwdm, 10_000),
        link("wan-dc-dr", "dc", "dr", LinkKind::Wan, 1_000),
        link("wan-ndc-dr", "ndc", "dr", LinkKind::Wan, 1_000),
    ]
}

impl LocalDeployment {
    /// One controller (ids from 1) and one agent per site of [`SITES`], on free loopback ports.
    pub fn plan(dir: &Path) -> Result<Self> {
        let lo = || ("127.0.0.1".to_string(), "127.0.0.1".to_string());
        Self::plan_on(dir, [lo(), lo(), lo()])
    }

    /// Like [`LocalDeployment::plan`], with each site's (controller address, host address) given,
    /// in [`SITES`] order: for tests that give every site its own network.
    pub fn plan_on(dir: &Path, addrs: [(String, String); 3]) -> Result<Self> {
        let mut controllers = Vec::new();
        let mut agents = Vec::new();
        for (i, ((site, _), (ctl_ip, host_ip))) in SITES.iter().zip(addrs).enumerate() {
            controllers.push(PeerConfig {
                id: i as u64 + 1,
                site: site.to_string(),
                grpc_addr: format!("{ctl_ip}:{}", free_port()?),
                http_addr: format!("{ctl_ip}:{}", free_port()?),
            });
            agents.push(LocalAgent {
                name: format!("agent-{site}"),
                site: site.to_string(),
                http_addr: format!("{host_ip}:{}", free_port()?),
                vouch_addr: format!("{host_ip}:{}", free_port()?),
                probe_addr: format!("{host_ip}:{}", free_port()?),
                probe_advertise_addr: String::new(),
                host_ip,
            });
        }
        let sites = SITES
            .iter()
            .map(|(n, d)| SiteConfig {
                name: n.to_string(),
                description: d.to_string(),
                city: reference_city(n).to_string(),
            })
            .collect();
        Ok(LocalDeployment {
            dir: dir.to_path_buf(),
            sites,
            controllers,
            agents,
            db: LocalDb::None,
            syslog: Default::default(),
            links: Vec::new(),
            snmp: None,
            notify: Default::default(),
            services: Vec::new(),
            drills: Vec::new(),
            balancers: Vec::new(),
        })
    }

    /// Adds a founding witness controller (a voter with no database) at a site of its own in
    /// `city`, on loopback; call before [`LocalDeployment::write`].
    pub fn add_witness(&mut self, site: &str, city: &str) -> Result<()> {
        let id = self.controllers.iter().map(|c| c.id).max().unwrap_or(0) + 1;
        self.sites.push(SiteConfig {
            name: site.into(),
            description: format!("witness controller in {city}"),
            city: city.into(),
        });
        self.controllers.push(PeerConfig {
            id,
            site: site.into(),
            grpc_addr: format!("127.0.0.1:{}", free_port()?),
            http_addr: format!("127.0.0.1:{}", free_port()?),
        });
        Ok(())
    }

    pub fn certs_dir(&self) -> PathBuf {
        self.dir.join("certs")
    }

    pub fn controller_config_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("controller-{id}.toml"))
    }

    pub fn agent_config_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.toml"))
    }

    pub fn ctl_config_path(&self) -> PathBuf {
        self.dir.join("triadctl.toml")
    }

    /// The configuration of controller `peer` (which need not be one of the founders).
    pub fn controller_config(&self, peer: &PeerConfig, join: bool) -> ControllerConfig {
        let certs = self.certs_dir();
        ControllerConfig {
            id: peer.id,
            site: peer.site.clone(),
            data_dir: self.dir.join(format!("data/controller-{}", peer.id)),
            grpc_addr: peer.grpc_addr.clone(),
            http_addr: peer.http_addr.clone(),
            log_format: "text".into(),
            tls: TlsConfig {
                ca: certs::ca_cert_path(&certs),
                cert: certs.join(format!("controller-{}.pem", peer.id)),
                key: certs.join(format!("controller-{}.key", peer.id)),
            },
            raft: RaftTiming::default(),
            agents: AgentPolicy::default(),
            lease: Default::default(),
            failover: Default::default(),
            peers: if join {
                let mut all = self.controllers.clone();
                all.push(peer.clone());
                all
            } else {
                self.controllers.clone()
            },
            join,
            sites: self.sites.clone(),
            clusters: vec![ClusterConfig {
                timeouts: Default::default(),
                name: CLUSTER.into(),
                members: SITES
                    .iter()
                    .map(|(s, _)| MemberConfig {
                        name: s.to_string(),
                        site: s.to_string(),
                        agent: format!("agent-{s}"),
                    })
                    .collect(),
                synchronous_mode: "relaxed".into(),
                lag_bounds: Default::default(),
            }],
            links: self.links.clone(),
            services: self.services.clone(),
            drills: self.drills.clone(),
            balancers: self.balancers.clone(),
            kubernetes: Default::default(),
            inventory: Default::default(),
            alerts: crate::config::AlertsConfig {
                syslog: match self.syslog.get(&peer.id) {
                    None => Default::default(),
                    Some((udp, tcp)) => crate::config::SyslogConfig {
                        udp_addr: udp.clone(),
                        tcp_addr: tcp.clone(),
                        allow: vec!["127.0.0.1".into()],
                        ..Default::default()
                    },
                },
                notify: self.notify.clone(),
                ..Default::default()
            },
        }
    }

    /// Writes a controller's configuration file.
    pub fn write_controller_config(&self, cfg: &ControllerConfig) -> Result<PathBuf> {
        let path = self.controller_config_path(cfg.id);
        let text = toml::to_string(cfg).map_err(|e| Error::InvalidArgument(format!("serialising config: {e}")))?;
        write(&path, &format!("# Controller {} of a local Triad deployment.\n{text}", cfg.id))?;
        Ok(path)
    }

    /// The directory the agents run services' hooks from (`hooks.dir`): `DIR/hooks`.
    pub fn hooks_dir(&self) -> PathBuf {
        self.dir.join("hooks")
    }

    /// The TOML of an agent's configuration.
    pub fn agent_config_text(&self, a: &LocalAgent) -> String {
        let certs = self.certs_dir();
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let controllers: Vec<String> = self.controllers.iter().map(|c| q(&c.grpc_addr)).collect();
        format!(
            "# Agent of site {site} in a local Triad deployment.\nname = {name}\nsite = {site_q}\nhost = {host}\ncontrollers = [{ctrls}]\nhttp_addr = {http}\nvouch_addr = {vouch}\nstate_dir = {state}\n{probe}\n[tls]\nca = {ca}\ncert = {cert}\nkey = {key}\n\n[hooks]\ndir = {hooks}\n",
            state = q(&self.dir.join(format!("data/{}", a.name)).display().to_string()),
            hooks = q(&self.hooks_dir().display().to_string()),
            site = a.site,
            name = q(&a.name),
            site_q = q(&a.site),
            host = q(&format!("{}-host", a.site)),
            ctrls = controllers.join(", "),
            http = q(&a.http_addr),
            vouch = q(&a.vouch_addr),
            probe = self.agent_probe_text(a),
            ca = q(&certs::ca_cert_path(&certs).display().to_string()),
            cert = q(&certs.join(format!("{}.pem", a.name)).display().to_string()),
            key = q(&certs.join(format!("{}.key", a.name)).display().to_string()),
        ) + &self.agent_db_text(a)
            + &self.agent_snmp_text(a)
    }

    /// The `[[snmp]]` section of an agent at an end of the DWDM link, when an SNMP agent is set.
    fn agent_snmp_text(&self, a: &LocalAgent) -> String {
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let Some((target, community)) = &self.snmp else { return String::new() };
        let dwdm = self.links.iter().find(|l| l.kind == LinkKind::Dwdm && (l.a == a.site || l.b == a.site));
        let Some(link) = dwdm else { return String::new() };
        format!(
            "\n# The link's interface counters: on one machine, the loopback interface stands for it.\n[[snmp]]\nlink = {}\ntarget = {}\nif_name = \"lo\"\ncommunity = {}\ninterval_ms = 2000\n",
            q(&link.name),
            q(target),
            q(community)
        )
    }

    fn agent_probe_text(&self, a: &LocalAgent) -> String {
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        if a.probe_addr.is_empty() {
            return String::new();
        }
        let mut text =
            format!("# Link probes: the agents at the other ends dial this.\nprobe_addr = {}\n", q(&a.probe_addr));
        if !a.probe_advertise_addr.is_empty() {
            text += &format!("probe_advertise_addr = {}\n", q(&a.probe_advertise_addr));
        }
        text
    }

    fn agent_db_text(&self, a: &LocalAgent) -> String {
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let index = SITES.iter().position(|(s, _)| *s == a.site);
        let head = format!("\n[database]\ncluster = {}\nmember = {}\n", q(CLUSTER), q(&a.site));
        match (&self.db, index) {
            (LocalDb::None, _) | (_, None) => String::new(),
            (LocalDb::Simulated, Some(i)) => format!(
                "{head}driver = \"simulated\"\nsimulated_role = {}\nendpoint = {}\n",
                q(if i == 0 { "primary" } else { "standby" }),
                q(&format!("host=simulated-{}", a.site))
            ),
            (LocalDb::Postgres { ports, bin_dir }, Some(i)) => format!(
                "{head}driver = \"postgres\"\nconninfo = {}\nendpoint = {}\ndata_dir = {}\nlog_file = {}\nbin_dir = {}\n",
                q(&format!("host={} port={} user=postgres dbname=customs connect_timeout=2", a.host_ip, ports[i])),
                q(&format!("host={} port={} user=postgres", a.host_ip, ports[i])),
                q(&self.dir.join(format!("postgres/{}/data", a.site)).display().to_string()),
                q(&self.dir.join(format!("postgres/{}/postgres.log", a.site)).display().to_string()),
                q(&bin_dir.display().to_string())
            ),
        }
    }

    /// Creates the CA and every certificate, and writes every configuration file.
    pub fn write(&self) -> Result<()> {
        let certs = self.certs_dir();
        certs::init(&certs, "local", true)?;
        for c in &self.controllers {
            certs::issue(&certs, &certs, "peer", &format!("controller-{}", c.id), &[])?;
            self.write_controller_config(&self.controller_config(c, false))?;
        }
        let hooks = self.hooks_dir();
        std::fs::create_dir_all(&hooks).map_err(|e| Error::io(format!("creating {}", hooks.display()), e))?;
        for a in &self.agents {
            certs::issue(&certs, &certs, "agent", &a.name, &[])?;
            write(&self.agent_config_path(&a.name), &self.agent_config_text(a))?;
        }
        self.write_ctl_identity("admin", "admin", &self.ctl_config_path())?;
        // A second person, for what needs two (a manual failover, pause, break-glass): the noc
        // engineer `nora` approves what `admin` asked.
        self.write_ctl_identity("noc", "nora", &self.second_ctl_config_path())
    }

    /// A second `triadctl` configuration, for the noc identity `nora`.
    pub fn second_ctl_config_path(&self) -> PathBuf {
        self.dir.join("triadctl-noc.toml")
    }

    /// Issues a certificate for `name` with `role` and writes a `triadctl` config using it.
    fn write_ctl_identity(&self, role: &str, name: &str, path: &Path) -> Result<()> {
        let certs = self.certs_dir();
        certs::issue(&certs, &certs, role, name, &[])?;
        let ctl = CtlConfig {
            controllers: self.controllers.iter().map(|c| c.grpc_addr.clone()).collect(),
            ca: certs::ca_cert_path(&certs),
            cert: certs.join(format!("{name}.pem")),
            key: certs.join(format!("{name}.key")),
        };
        let text = toml::to_string(&ctl).map_err(|e| Error::InvalidArgument(format!("serialising config: {e}")))?;
        write(path, &format!("# triadctl as `{name}` (role {role}): export TRIAD_CONFIG={}\n{text}", path.display()))
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    std::fs::write(path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}
