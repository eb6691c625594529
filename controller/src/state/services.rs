//! The services that follow a database cluster (the ASYCUDA World application, e-payment, the
//! BEPZA integration): what each is, where it runs, how its health is checked, its recovery group
//! and hooks, and the health the leader last judged from its agents' checks (`brain/services.rs`).
//! Only definitions and health transitions are recorded; check results are soft state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::links::InvalidField;

/// The suffix of a failed recovery step's name in a workflow (`check-failed`).
pub const FAILED_SUFFIX: &str = "-failed";

crate::named_enum! {
    /// How a service's health is checked.
    pub enum ServiceKind: "service kind" {
        /// An HTTP GET of `target` (a URL): healthy on a 2xx or 3xx answer.
        Http = "http",
        /// A TCP connection to `target` (`HOST:PORT`): healthy when it is accepted.
        Tcp = "tcp",
        /// A query on `target` (libpq keywords): healthy when its first column of its first row
        /// is `expect`.
        Sql = "sql",
    }
}

crate::named_enum! {
    /// What a role change does for its services and balancers, step by step (`brain/recovery_plan.rs`).
    pub enum RecoveryPhase: "recovery phase" {
        /// A service's pre-hook, before anyone is promoted: failing aborts the role change.
        PreHook = "pre-hook",
        /// A balancer told to take the old primary out, before the promotion.
        BalancerOut = "balancer-out",
        /// A balancer told to put the new primary in, once it holds its lease.
        BalancerIn = "balancer-in",
        /// A service's post-hook, group by group after the promotion.
        PostHook = "post-hook",
        /// A service's check after its post-hooks.
        Check = "check",
    }
}

crate::named_enum! {
    /// A service's health as the leader judged it from its instances' checks.
    pub enum ServiceHealth: "service health" {
        /// No check reported yet (or none lately): not known to work.
        Unknown = "unknown",
        /// Every instance answers.
        Up = "up",
        /// Some instances answer, some do not.
        Degraded = "degraded",
        /// No instance answers.
        Down = "down",
    }
}

/// One place a service runs, and who checks it there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceInstance {
    /// The site it runs in.
    pub site: String,
    /// The agent that checks it and runs its hooks (an agent at that site).
    pub agent: String,
    /// What to check: a URL (`http`), `HOST:PORT` (`tcp`) or libpq keywords (`sql`).
    pub target: String,
}

/// What a service is: the part an operator configures (config `[[services]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Unique name, e.g. `asycuda`: letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// The database cluster it writes to and follows through role changes.
    pub cluster: String,
    /// `http`, `tcp` or `sql`.
    pub kind: ServiceKind,
    /// Its recovery group: after a role change, group 1's services are re-pointed and checked
    /// first, then group 2's, and so on, like the steps of a disaster-recovery plan (default 1).
    #[serde(default = "default_group")]
    pub group: u32,
    /// Where it runs.
    pub instances: Vec<ServiceInstance>,
    /// `sql` only: the query, and the first column of its first row when healthy.
    #[serde(default)]
    pub query: String,
    #[serde(default)]
    pub expect: String,
    /// Between checks, in milliseconds (default 5000; 500 to 600000).
    #[serde(default = "default_interval")]
    pub interval_ms: u32,
    /// How long one check may take, in milliseconds (default 2000; 100 to 60000, under the
    /// interval).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u32,
    /// A command each instance's agent runs before a role change promotes anyone (absolute
    /// path; empty: none). Failing aborts the role change before the promotion.
    #[serde(default)]
    pub pre_hook: String,
    /// A command each instance's agent runs after the new primary holds its lease (absolute
    /// path; empty: none). Failing raises an alert and marks the role change "completed with
    /// errors".
    #[serde(default)]
    pub post_hook: String,
    /// How long one hook may run before its agent kills it (and it counts as failed), in
    /// milliseconds (default 30000; 1000 to 600000).
    #[serde(default = "default_hook_timeout")]
    pub hook_timeout_ms: u32,
}

fn default_hook_timeout() -> u32 {
    30_000
}

fn default_group() -> u32 {
    1
}

fn default_interval() -> u32 {
    5000
}

fn default_timeout() -> u32 {
    2000
}

/// Most services the state keeps, and most instances of one.
pub const MAX_SERVICES: usize = 500;
pub const MAX_INSTANCES: usize = 64;

impl ServiceSpec {
    /// Checks what does not depend on the rest of the state; errors name the field under `key`.
    pub fn validate(&self, key: &str) -> Result<(), InvalidField> {
        let err = |field: &str, msg: String| InvalidField { key: format!("{key}.{field}"), msg };
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(err("name", format!("`{}`: 1 to 64 letters, digits, `-`, `_` or `.`", self.name)));
        }
        if self.cluster.is_empty() {
            return Err(err("cluster", "the database cluster it follows is required".into()));
        }
        if !(1..=100).contains(&self.group) {
            return Err(err("group", format!("1 to 100 (got {})", self.group)));
        }
        if self.instances.is_empty() || self.instances.len() > MAX_INSTANCES {
            return Err(err("instances", format!("1 to {MAX_INSTANCES} (got {})", self.instances.len())));
        }
        for (i, inst) in self.instances.iter().enumerate() {
            self.validate_instance(&format!("instances[{i}]"), inst).map_err(|(f, m)| err(&f, m))?;
        }
        match self.kind {
            ServiceKind::Sql if self.query.trim().is_empty() => {
                return Err(err("query", "an sql service needs the query its check runs".into()))
            }
            ServiceKind::Http | ServiceKind::Tcp if !self.query.is_empty() || !self.expect.is_empty() => {
                return Err(err(
                    "query",
                    format!("only an sql service has a query and expect (this one is {})", self.kind),
                ))
            }
            _ => {}
        }
        if self.query.len() > 2000 || self.expect.len() > 200 {
            return Err(err("query", "the query at most 2000 bytes, expect at most 200".into()));
        }
        if !(500..=600_000).contains(&self.interval_ms) {
            return Err(err("interval_ms", format!("500 to 600000 (got {})", self.interval_ms)));
        }
        if !(100..=60_000).contains(&self.timeout_ms) || self.timeout_ms >= self.interval_ms {
            let msg = format!("100 to 60000 and under interval_ms {} (got {})", self.interval_ms, self.timeout_ms);
            return Err(err("timeout_ms", msg));
        }
        if !(1_000..=600_000).contains(&self.hook_timeout_ms) {
            return Err(err("hook_timeout_ms", format!("1000 to 600000 (got {})", self.hook_timeout_ms)));
        }
        for (field, hook) in [("pre_hook", &self.pre_hook), ("post_hook", &self.post_hook)] {
            if !hook.is_empty() && (!hook.starts_with('/') || hook.len() > 500 || hook.contains('\0')) {
                return Err(err(field, format!("`{hook}`: an absolute path, at most 500 bytes")));
            }
        }
        Ok(())
    }

    /// The field (under the instance) and why, for an instance that is wrong.
    fn validate_instance(&self, at: &str, inst: &ServiceInstance) -> Result<(), (String, String)> {
        let bad = |field: &str, msg: String| Err((format!("{at}.{field}"), msg));
        if inst.site.is_empty() || inst.site.len() > 64 {
            return bad("site", "the site it runs in is required (at most 64 bytes)".into());
        }
        if inst.agent.is_empty() || inst.agent.len() > 128 {
            return bad("agent", "the agent that checks it is required (at most 128 bytes)".into());
        }
        let t = inst.target.as_str();
        if t.is_empty() || t.len() > 500 || t.contains(['\n', '\0']) {
            return bad("target", "required, one line of at most 500 bytes".into());
        }
        match self.kind {
            ServiceKind::Http if !(t.starts_with("http://") || t.starts_with("https://")) => {
                bad("target", format!("`{t}`: an http service's target is an http:// or https:// URL"))
            }
            ServiceKind::Tcp if t.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()) => {
                bad("target", format!("`{t}`: a tcp service's target is HOST:PORT"))
            }
            ServiceKind::Sql if !t.contains('=') => {
                bad("target", format!("`{t}`: an sql service's target is libpq keywords (host=... dbname=...)"))
            }
            _ => Ok(()),
        }
    }
}

/// A service with its recorded health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub spec: ServiceSpec,
    pub health: ServiceHealth,
    /// When `health` was recorded (proposer's clock, ms since the Unix epoch).
    pub since_ms: u64,
    /// Why, in words (e.g. `dc: connection refused`), empty while unknown or up.
    pub reason: String,
}

/// The services, by name.
pub type Services = BTreeMap<String, Service>;

/// The fingerprint of a service's own alert: one per service, resolved when it is up again.
pub fn alert_fingerprint(service: &str) -> String {
    format!("service/{service}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: ServiceKind, target: &str) -> ServiceSpec {
        ServiceSpec {
            name: "asycuda".into(),
            cluster: "customs".into(),
            kind,
            group: 1,
            instances: vec![ServiceInstance { site: "dc".into(), agent: "agent-dc".into(), target: target.into() }],
            query: String::new(),
            expect: String::new(),
            interval_ms: 5000,
            timeout_ms: 2000,
            pre_hook: String::new(),
            post_hook: String::new(),
            hook_timeout_ms: 30_000,
        }
    }

    #[test]
    fn each_kind_wants_its_own_target() {
        assert!(spec(ServiceKind::Http, "http://10.1.0.30:8080/health").validate("s").is_ok());
        assert!(spec(ServiceKind::Tcp, "10.1.0.30:1521").validate("s").is_ok());
        let e = spec(ServiceKind::Http, "10.1.0.30:8080").validate("services[0]").unwrap_err();
        assert_eq!(e.key, "services[0].instances[0].target");
        let e = spec(ServiceKind::Tcp, "10.1.0.30").validate("s").unwrap_err();
        assert!(e.msg.contains("HOST:PORT"), "{e}");
        let mut sql = spec(ServiceKind::Sql, "host=10.1.0.30 dbname=customs");
        assert_eq!(sql.validate("s").unwrap_err().key, "s.query");
        (sql.query, sql.expect) = ("select 1".into(), "1".into());
        assert!(sql.validate("s").is_ok());
    }

    #[test]
    fn bad_timings_hooks_and_names_are_refused() {
        let mut s = spec(ServiceKind::Tcp, "db:5432");
        s.timeout_ms = 6000;
        assert_eq!(s.validate("s").unwrap_err().key, "s.timeout_ms");
        let mut s = spec(ServiceKind::Tcp, "db:5432");
        s.pre_hook = "hooks/pre.sh".into();
        assert_eq!(s.validate("s").unwrap_err().key, "s.pre_hook");
        let mut s = spec(ServiceKind::Tcp, "db:5432");
        s.name = "a b".into();
        assert_eq!(s.validate("s").unwrap_err().key, "s.name");
        let mut s = spec(ServiceKind::Tcp, "db:5432");
        s.instances.clear();
        assert_eq!(s.validate("s").unwrap_err().key, "s.instances");
    }
}
