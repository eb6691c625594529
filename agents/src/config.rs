//! The agent's TOML configuration: every field documented, validated at start with errors that
//! name the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `triad-agent --config FILE`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The agent's name: must equal the common name of its certificate.
    pub name: String,
    /// The site of the host (`dc`, `ndc`, `dr`, ...).
    pub site: String,
    /// The host's name as reported; defaults to the system's hostname.
    #[serde(default)]
    pub host: String,
    /// gRPC addresses (`IP:PORT`) of every controller: the agent keeps a stream to each.
    pub controllers: Vec<String>,
    /// Address for `/metrics`, `/healthz` and `/status`, `IP:PORT`.
    pub http_addr: String,
    /// Where this agent's failsafe service listens, `IP:PORT` (DESIGN.md, point 3): when the
    /// controllers cannot renew the primary's lease, the primary's agent asks the agents of the
    /// vouch set (normally the synchronous standby's) here to vouch for it, over mutual TLS. Other
    /// agents dial this very address, so it must be one they reach (not `0.0.0.0`). Empty
    /// (default): this agent vouches for nobody, and a primary whose vouch set names this
    /// agent's member fences as soon as the controllers cannot renew its lease.
    #[serde(default)]
    pub vouch_addr: String,
    /// Where this agent answers link probes from the agents at the other ends of its site's
    /// links (a UDP and a TCP echo on one port), `IP:PORT` on the address those agents reach
    /// over the link. Empty (default): it answers none, and no link is probed from or to it.
    #[serde(default)]
    pub probe_addr: String,
    /// The address the other agents dial to reach `probe_addr`, when it differs (a NAT or a
    /// relay in the path). Default: `probe_addr`.
    #[serde(default)]
    pub probe_advertise_addr: String,
    /// Network devices this agent polls over SNMP for the links they carry (`[[snmp]]`).
    #[serde(default)]
    pub snmp: Vec<SnmpDevice>,
    /// Heartbeat interval in milliseconds (default 200).
    #[serde(default = "default_heartbeat")]
    pub heartbeat_interval_ms: u64,
    /// Cap of the exponential reconnect backoff in milliseconds (default 100). The controllers'
    /// lease period must cover two election timeouts plus this cap plus the fence lead, so that
    /// an election alone never makes a lease lapse; they check it with their
    /// `lease.agent_backoff_max_ms` and `lease.agent_fence_lead_ms`.
    #[serde(default = "default_backoff")]
    pub reconnect_backoff_max_ms: u64,
    /// Log format: `text` (default) or `json`.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// Certificates for mutual TLS (role `agent`).
    pub tls: TlsConfig,
    /// The database member on this host, if any.
    #[serde(default)]
    pub database: Option<DatabaseConfig>,
    /// Where the agent keeps its own state (the epoch file). Default `/var/lib/triad/agent`;
    /// relative paths are relative to the config file's directory. Created when missing.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Commands run on events.
    #[serde(default)]
    pub hooks: HooksConfig,
    /// How the primary's lease is enforced on this host.
    #[serde(default)]
    pub lease: LeaseConfig,
}

/// Enforcing the primary's lease (DESIGN.md, point 2). The lease period itself (P) is the
/// controllers' (`lease.period_ms` in their config) and comes with every grant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseConfig {
    /// Fence this long before the lease ends, so that the immediate stop has finished by then;
    /// also the lateness of a check that makes the agent fence at once, so the longest stall of
    /// this agent that a primary survives (default 500). The controllers' lease period counts it
    /// (their `lease.agent_fence_lead_ms` must be at least this).
    pub fence_lead_ms: u64,
    /// How often the lease is checked, in milliseconds (default 50).
    pub check_interval_ms: u64,
    /// `required` (fence a primary when no watchdog can be armed), `automatic` (default: use the
    /// device when present, else run unguarded and say so) or `off`.
    pub watchdog: String,
    /// The watchdog device (default `/dev/watchdog`); its timeout (softdog's `soft_margin`) must
    /// be shorter than the lease.
    pub watchdog_device: PathBuf,
    /// An agent that knows no epoch (a first start, or its state directory lost) waits this long
    /// after its start (or after a stream first named a leader, if later) for the controllers'
    /// first word before it fences a primary it finds: a
    /// lease at the cluster's epoch, or the word that the cluster is not adopted yet (a lease at
    /// epoch 0). Milliseconds, default 10000 (a deployment starting on a loaded host took over 5 s
    /// to elect its first leader and grant), at most 60000.
    pub start_grace_ms: u64,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            fence_lead_ms: 500,
            check_interval_ms: 50,
            watchdog: "automatic".into(),
            watchdog_device: PathBuf::from("/dev/watchdog"),
            start_grace_ms: 10_000,
        }
    }
}

/// Commands the agent runs on events, with the details in their environment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    /// Run (program and arguments, no shell) whenever the cluster's primary changes, once the
    /// agent has accepted the new epoch. Environment: TRIAD_CLUSTER, TRIAD_EPOCH, TRIAD_PRIMARY,
    /// TRIAD_PRIMARY_ENDPOINT, TRIAD_MEMBER (this host's member) and TRIAD_ROLE (its role).
    /// Default: none.
    #[serde(default)]
    pub on_role_change: Vec<String>,
    /// The only directory services' pre- and post-hooks may run from (their paths, resolved,
    /// must lie inside it): a service definition comes through the API, and must not be a way to
    /// run any program on this host. Default `/etc/triad/hooks`.
    #[serde(default = "default_hooks_dir")]
    pub dir: PathBuf,
}

fn default_hooks_dir() -> PathBuf {
    PathBuf::from("/etc/triad/hooks")
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig { on_role_change: Vec::new(), dir: default_hooks_dir() }
    }
}

/// A device interface a link runs through, polled over SNMP (IF-MIB: ifOperStatus,
/// ifHCInOctets/ifHCOutOctets, ifInErrors, ifHighSpeed).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpDevice {
    /// The link whose traffic runs through the interface (as named in the controllers' `[[links]]`).
    pub link: String,
    /// The device's SNMP agent, `IP:PORT` (UDP; the standard port is 161).
    pub target: String,
    /// The interface's ifIndex; or give `if_name` instead.
    #[serde(default)]
    pub if_index: u32,
    /// The interface's ifName (or ifDescr), resolved to its ifIndex at the first poll.
    #[serde(default)]
    pub if_name: String,
    /// `v2c` (default) or `v3`.
    #[serde(default = "default_snmp_version")]
    pub version: String,
    /// v2c: the read community.
    #[serde(default)]
    pub community: String,
    /// v3: the USM user name.
    #[serde(default)]
    pub user: String,
    /// v3: `md5`, `sha`, `sha224`, `sha256`, `sha384` or `sha512`; empty: noAuthNoPriv.
    #[serde(default)]
    pub auth_protocol: String,
    /// v3: the authentication password (at least 8 characters).
    #[serde(default)]
    pub auth_password: String,
    /// v3: `des`, `3des`, `aes` (AES-128), `aes192-blumenthal`, ...; empty: authNoPriv.
    #[serde(default)]
    pub privacy_protocol: String,
    /// v3: the privacy password (at least 8 characters).
    #[serde(default)]
    pub privacy_password: String,
    /// Between polls, in milliseconds (default 5000; 1000 to 600000).
    #[serde(default = "default_snmp_interval")]
    pub interval_ms: u64,
}

fn default_snmp_version() -> String {
    "v2c".into()
}

fn default_snmp_interval() -> u64 {
    5000
}

impl SnmpDevice {
    /// Errors name the key under `key` (e.g. `snmp[0]`).
    fn validate(&self, key: &str) -> Result<()> {
        let err = |field: &str, msg: String| key_err(format!("{key}.{field}"), msg);
        if self.link.is_empty() {
            return Err(err("link", "the link this interface carries is required".into()));
        }
        if self.target.parse::<SocketAddr>().is_err() {
            return Err(err("target", format!("`{}` is not an IP:PORT address", self.target)));
        }
        if (self.if_index == 0) == self.if_name.is_empty() {
            return Err(err("if_index", "give either if_index (above 0) or if_name".into()));
        }
        if !(1000..=600_000).contains(&self.interval_ms) {
            return Err(err("interval_ms", format!("1000 to 600000 (got {})", self.interval_ms)));
        }
        match self.version.as_str() {
            "v2c" if self.community.is_empty() => Err(err("community", "v2c needs a community".into())),
            "v2c" => Ok(()),
            "v3" => self.validate_v3(key),
            other => Err(err("version", format!("`{other}`: v2c or v3"))),
        }
    }

    fn validate_v3(&self, key: &str) -> Result<()> {
        let err = |field: &str, msg: String| key_err(format!("{key}.{field}"), msg);
        if self.user.is_empty() {
            return Err(err("user", "v3 needs a user".into()));
        }
        if self.auth_protocol.is_empty() && !self.privacy_protocol.is_empty() {
            return Err(err("privacy_protocol", "privacy needs authentication (auth_protocol)".into()));
        }
        if !self.auth_protocol.is_empty() && self.auth_password.chars().count() < 8 {
            return Err(err("auth_password", "at least 8 characters".into()));
        }
        if !self.privacy_protocol.is_empty() && self.privacy_password.chars().count() < 8 {
            return Err(err("privacy_password", "at least 8 characters".into()));
        }
        crate::probes::snmp::auth(self).map(|_| ()).map_err(|e| err("auth_protocol", e.to_string()))
    }
}

impl AgentConfig {
    /// What the other agents dial to probe this one (empty: it answers no probes).
    pub fn probe_advertised(&self) -> &str {
        if self.probe_advertise_addr.is_empty() {
            &self.probe_addr
        } else {
            &self.probe_advertise_addr
        }
    }

    /// `probe_addr` and `probe_advertise_addr`: IP:PORT; what is advertised is dialable.
    fn validate_probe_addrs(&self) -> Result<()> {
        for (key, text) in [("probe_addr", &self.probe_addr), ("probe_advertise_addr", &self.probe_advertise_addr)] {
            if !text.is_empty() && text.parse::<SocketAddr>().map(|a| a.port() == 0).unwrap_or(true) {
                return Err(key_err(key, format!("`{text}` is not an IP:PORT address with a port")));
            }
        }
        if self.probe_addr.is_empty() && !self.probe_advertise_addr.is_empty() {
            return Err(key_err("probe_advertise_addr", "set only with `probe_addr` (where the echo listens)"));
        }
        let advertised = self.probe_advertised();
        if advertised.parse::<SocketAddr>().is_ok_and(|a| a.ip().is_unspecified()) {
            return Err(key_err(
                "probe_advertise_addr",
                format!("`{advertised}` is dialled by other agents: give a reachable address"),
            ));
        }
        Ok(())
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/triad/agent")
}

/// The database member this agent watches.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// The cluster's name as the controllers know it (e.g. `customs`).
    pub cluster: String,
    /// This member's name (by convention, its site: `dc`, `ndc`, `dr`).
    pub member: String,
    /// `postgres` (default) or `simulated`.
    #[serde(default = "default_driver")]
    pub driver: String,
    /// For `postgres`: a libpq-style connection string, e.g.
    /// `host=/var/run/postgresql port=5432 user=postgres dbname=postgres connect_timeout=2`.
    #[serde(default)]
    pub conninfo: String,
    /// For `simulated`: `primary` or `standby`.
    #[serde(default)]
    pub simulated_role: String,
    /// How often the member is observed, in milliseconds (default 200).
    #[serde(default = "default_observe")]
    pub observe_interval_ms: u64,
    /// How other members reach this one to replicate from it, as libpq keywords
    /// (`host=10.1.2.3 port=5432`). Required for switchovers.
    #[serde(default)]
    pub endpoint: String,
    /// For `postgres`: the member's data directory, for stopping, starting and promoting it.
    /// Required for switchovers.
    #[serde(default)]
    pub data_dir: PathBuf,
    /// For `postgres`: the server binaries (`pg_ctl`, `pg_controldata`). Default: the highest
    /// version under `/usr/lib/postgresql/*/bin`.
    #[serde(default)]
    pub bin_dir: PathBuf,
    /// The operating-system user PostgreSQL runs as when the agent runs as root (default
    /// `postgres`).
    #[serde(default = "default_os_user")]
    pub os_user: String,
    /// The server log `pg_ctl start` appends to (default: `postgres.log` beside the data directory).
    #[serde(default)]
    pub log_file: PathBuf,
}

fn default_os_user() -> String {
    "postgres".into()
}

fn default_driver() -> String {
    "postgres".into()
}
fn default_observe() -> u64 {
    200
}

/// PEM files; relative paths are relative to the config file's directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The deployment's CA certificate.
    pub ca: PathBuf,
    /// The agent's certificate, issued with `triadctl certs issue --role agent --name NAME`.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

fn default_heartbeat() -> u64 {
    200
}
fn default_backoff() -> u64 {
    100
}
fn default_log_format() -> String {
    "text".into()
}

fn key_err(key: impl Into<String>, msg: impl Into<String>) -> Error {
    Error::ConfigKey { key: key.into(), msg: msg.into() }
}

fn check_name(key: &str, v: &str) -> Result<()> {
    let ok = !v.is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(key_err(key, format!("`{v}` must be 1-64 characters of letters, digits, '-', '_' or '.'")))
    }
}

impl AgentConfig {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = triad_proto::files::read_config(path)
            .map_err(|e| Error::ConfigFile { path: path.display().to_string(), msg: e.to_string() })?;
        let mut cfg: AgentConfig = toml::from_str(&text)
            .map_err(|e| Error::ConfigFile { path: path.display().to_string(), msg: e.to_string() })?;
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(db) = cfg.database.as_mut() {
            for p in [&mut db.data_dir, &mut db.bin_dir, &mut db.log_file] {
                if !p.as_os_str().is_empty() && p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        for p in [&mut cfg.tls.ca, &mut cfg.tls.cert, &mut cfg.tls.key, &mut cfg.state_dir] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if cfg.host.is_empty() {
            cfg.host = sysinfo::System::host_name().unwrap_or_else(|| "unknown".into());
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every field; the first problem is returned, naming its key.
    pub fn validate(&self) -> Result<()> {
        check_name("name", &self.name)?;
        check_name("site", &self.site)?;
        if self.controllers.is_empty() {
            return Err(key_err("controllers", "must list at least one controller"));
        }
        for (i, c) in self.controllers.iter().enumerate() {
            c.parse::<SocketAddr>()
                .map_err(|_| key_err(format!("controllers[{i}]"), format!("`{c}` is not an IP:PORT address")))?;
        }
        self.http_addr
            .parse::<SocketAddr>()
            .map_err(|_| key_err("http_addr", format!("`{}` is not an IP:PORT address", self.http_addr)))?;
        if !self.vouch_addr.is_empty() {
            let addr = self
                .vouch_addr
                .parse::<SocketAddr>()
                .map_err(|_| key_err("vouch_addr", format!("`{}` is not an IP:PORT address", self.vouch_addr)))?;
            if addr.ip().is_unspecified() || addr.port() == 0 {
                return Err(key_err(
                    "vouch_addr",
                    format!("`{addr}` is dialled by other agents: give a reachable address and a port"),
                ));
            }
        }
        self.validate_probe_addrs()?;
        for (i, d) in self.snmp.iter().enumerate() {
            d.validate(&format!("snmp[{i}]"))?;
        }
        if !(10..=60_000).contains(&self.heartbeat_interval_ms) {
            return Err(key_err("heartbeat_interval_ms", "must be between 10 and 60000"));
        }
        if !(50..=60_000).contains(&self.reconnect_backoff_max_ms) {
            return Err(key_err("reconnect_backoff_max_ms", "must be between 50 and 60000"));
        }
        let l = &self.lease;
        if !(10..=1000).contains(&l.check_interval_ms) {
            return Err(key_err("lease.check_interval_ms", "must be between 10 and 1000"));
        }
        if l.fence_lead_ms > 60_000 {
            return Err(key_err("lease.fence_lead_ms", "must be at most 60000"));
        }
        if l.fence_lead_ms < 2 * l.check_interval_ms {
            return Err(key_err(
                "lease.fence_lead_ms",
                format!("must be at least twice lease.check_interval_ms ({} ms)", l.check_interval_ms),
            ));
        }
        if l.start_grace_ms > 60_000 {
            return Err(key_err("lease.start_grace_ms", "must be at most 60000"));
        }
        if !["required", "automatic", "off"].contains(&l.watchdog.as_str()) {
            return Err(key_err("lease.watchdog", format!("`{}` is not `required`, `automatic` or `off`", l.watchdog)));
        }
        if self.log_format != "text" && self.log_format != "json" {
            return Err(key_err("log_format", format!("`{}` is neither `text` nor `json`", self.log_format)));
        }
        if let Some(db) = &self.database {
            check_name("database.cluster", &db.cluster)?;
            check_name("database.member", &db.member)?;
            match db.driver.as_str() {
                "postgres" => {
                    if db.conninfo.trim().is_empty() {
                        return Err(key_err("database.conninfo", "is required with driver `postgres`"));
                    }
                    db.conninfo
                        .parse::<tokio_postgres::Config>()
                        .map_err(|e| key_err("database.conninfo", format!("not a valid connection string: {e}")))?;
                }
                "simulated" => {
                    if db.simulated_role != "primary" && db.simulated_role != "standby" {
                        return Err(key_err(
                            "database.simulated_role",
                            "must be `primary` or `standby` with driver `simulated`",
                        ));
                    }
                }
                other => {
                    return Err(key_err("database.driver", format!("`{other}` is neither `postgres` nor `simulated`")))
                }
            }
            if !(20..=60_000).contains(&db.observe_interval_ms) {
                return Err(key_err("database.observe_interval_ms", "must be between 20 and 60000"));
            }
        }
        for (key, p) in [("tls.ca", &self.tls.ca), ("tls.cert", &self.tls.cert), ("tls.key", &self.tls.key)] {
            if !p.is_file() {
                return Err(key_err(key, format!("{} is not a readable file", p.display())));
            }
        }
        self.check_identity()
    }

    /// The certificate and key belong together, and the certificate is this agent's: the
    /// controllers refuse a stream whose hello names another agent, so an agent whose `name`
    /// differs from its certificate could never do anything.
    fn check_identity(&self) -> Result<()> {
        use triad_proto::tls::IdentityError;
        let (cn, ou) = triad_proto::tls::check_identity_files(&self.tls.cert, &self.tls.key).map_err(|e| match e {
            IdentityError::Cert(why) => key_err("tls.cert", why),
            IdentityError::Key(why) => key_err("tls.key", why),
            mismatch @ IdentityError::Mismatch => key_err("tls.key", mismatch.to_string()),
        })?;
        if cn != self.name || ou != "agent" {
            return Err(key_err(
                "name",
                format!(
                    "`{}` does not match the certificate tls.cert (`{cn}`, role `{ou}`); an agent's certificate \
                     has its name and role `agent`",
                    self.name
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// The documented example parses: every key in it exists (unknown keys are refused).
    #[test]
    fn the_example_config_parses() {
        let cfg: super::AgentConfig =
            toml::from_str(include_str!("../../deploy/agent.example.toml")).expect("deploy/agent.example.toml");
        assert!(cfg.database.is_some());
        assert!(!cfg.hooks.on_role_change.is_empty());
    }
}
