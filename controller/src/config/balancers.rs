//! The load balancers Triad tells of a role change (`[[balancers]]`): HAProxy instances reached
//! through their runtime API by the agent on their host (issue 20, item 2). Their server lines
//! are named after the cluster's members, as in `deploy/haproxy/haproxy.cfg`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{check_name, key_err, ControllerConfig};
use crate::error::Result;

/// One HAProxy in front of a database cluster.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BalancerConfig {
    /// A name for status and the workflow's record, e.g. `haproxy-dc`.
    pub name: String,
    /// The database cluster whose primary it routes writers to.
    pub cluster: String,
    /// The agent on the balancer's host, which reaches its runtime API (the API's admin level
    /// should never be exposed beyond the host).
    pub agent: String,
    /// The site it runs in (for the workflow's record and its alert).
    pub site: String,
    /// HAProxy's stats socket at `level admin`: a unix socket path (`/run/haproxy/admin.sock`)
    /// or `HOST:PORT`.
    pub socket: String,
    /// The writers' backend (or `listen` section), whose servers are named after the members
    /// (default `<cluster>-rw`).
    #[serde(default)]
    pub write_backend: String,
    /// The readers' backend (default `<cluster>-ro`; `""` after `read_backend = "-"`: none).
    #[serde(default)]
    pub read_backend: String,
}

impl BalancerConfig {
    /// The writers' backend, with its default.
    pub fn write_backend(&self) -> String {
        if self.write_backend.is_empty() {
            format!("{}-rw", self.cluster)
        } else {
            self.write_backend.clone()
        }
    }

    /// The readers' backend, with its default; `None` when disabled with `-`.
    pub fn read_backend(&self) -> Option<String> {
        match self.read_backend.as_str() {
            "" => Some(format!("{}-ro", self.cluster)),
            "-" => None,
            b => Some(b.to_string()),
        }
    }
}

impl ControllerConfig {
    /// The balancers: named once, in front of configured clusters, on configured sites, with a
    /// socket and backend names HAProxy accepts.
    pub(super) fn validate_balancers(&self, sites: &BTreeSet<&str>) -> Result<()> {
        let clusters: BTreeSet<&str> = self.clusters.iter().map(|c| c.name.as_str()).collect();
        let mut names = BTreeSet::new();
        for (i, b) in self.balancers.iter().enumerate() {
            let key = |field: &str| format!("balancers[{i}].{field}");
            check_name(&key("name"), &b.name)?;
            if !names.insert(b.name.as_str()) {
                return Err(key_err(key("name"), format!("balancer `{}` is listed twice", b.name)));
            }
            if !clusters.contains(b.cluster.as_str()) {
                return Err(key_err(key("cluster"), format!("`{}` is not among `clusters`", b.cluster)));
            }
            if b.agent.is_empty() || b.agent.len() > 128 {
                return Err(key_err(key("agent"), "the agent on the balancer's host is required"));
            }
            super::known_site(sites, key("site"), &b.site)?;
            let unix = b.socket.starts_with('/');
            let tcp = b.socket.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !(unix || tcp) || b.socket.len() > 300 {
                return Err(key_err(
                    key("socket"),
                    format!("`{}`: the stats socket's absolute path, or HOST:PORT", b.socket),
                ));
            }
            for (field, backend) in [("write_backend", Some(b.write_backend())), ("read_backend", b.read_backend())] {
                let Some(backend) = backend else { continue };
                let ok = backend.len() <= 128
                    && backend.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
                if !ok {
                    return Err(key_err(key(field), format!("`{backend}`: letters, digits, `-_.:` only")));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> ControllerConfig {
        toml::from_str(include_str!("../../../deploy/controller.example.toml")).expect("the example")
    }

    /// Each mistake is named by its key, and the example's balancer passes.
    #[test]
    fn a_bad_balancer_is_named_by_its_key() {
        let cfg = example();
        assert_eq!(cfg.balancers.len(), 1);
        let sites: BTreeSet<&str> = cfg.sites.iter().map(|s| s.name.as_str()).collect();
        assert!(cfg.validate_balancers(&sites).is_ok());
        type Spoil = fn(&mut BalancerConfig);
        let cases: [(Spoil, &str); 5] = [
            (|b| b.cluster = "billing".into(), "balancers[0].cluster"),
            (|b| b.site = "mars".into(), "balancers[0].site"),
            (|b| b.socket = "admin.sock".into(), "balancers[0].socket"),
            (|b| b.write_backend = "rw backend".into(), "balancers[0].write_backend"),
            (|b| b.agent = String::new(), "balancers[0].agent"),
        ];
        for (spoil, key) in cases {
            let mut cfg = example();
            spoil(&mut cfg.balancers[0]);
            let e = cfg.validate_balancers(&sites).expect_err(key).to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
        let mut cfg = example();
        cfg.balancers.push(cfg.balancers[0].clone());
        assert!(cfg.validate_balancers(&sites).expect_err("twice").to_string().contains("listed twice"));
        cfg.balancers[1].read_backend = "-".into();
        assert_eq!(cfg.balancers[1].read_backend(), None);
        assert_eq!(cfg.balancers[1].write_backend(), "customs-rw");
    }
}
