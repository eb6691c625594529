//! `[kubernetes]`: the writer and reader Services of each database cluster pointed at its members
//! by the leader (issue 20, item 3; `controller/src/kubernetes/`), and the application
//! Deployments it scales per site when the primary moves. Off unless `enabled`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{check_name, key_err, ControllerConfig};
use crate::error::Result;

/// The Kubernetes edge.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Write the EndpointSlices and scale the Deployments on every role change (default false).
    /// The leader reaches the API server with its in-cluster service account, or the kubeconfig
    /// of the user it runs as.
    #[serde(default)]
    pub enabled: bool,
    /// Log and record the changes it would make, and make none (default false).
    #[serde(default)]
    pub dry_run: bool,
    /// The namespace of the clusters' Services (default `triad`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The field manager of its server-side applies (default `triad`).
    #[serde(default = "default_manager")]
    pub field_manager: String,
    /// One entry per database cluster whose Services it points.
    #[serde(default)]
    pub clusters: Vec<KubeCluster>,
    /// Application Deployments scaled by where the primary is.
    #[serde(default)]
    pub deployments: Vec<KubeDeployment>,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            enabled: false,
            dry_run: false,
            namespace: default_namespace(),
            field_manager: default_manager(),
            clusters: Vec::new(),
            deployments: Vec::new(),
        }
    }
}

fn default_namespace() -> String {
    "triad".into()
}

fn default_manager() -> String {
    "triad".into()
}

/// A cluster's Services: `<cluster>-rw` (the primary) and `<cluster>-ro` (the standbys), whose
/// EndpointSlices (same names) the leader writes. The Services themselves have no selector and
/// are created with the manifests (`deploy/kubernetes/80-database-services.yaml`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KubeCluster {
    /// The database cluster, e.g. `customs`.
    pub cluster: String,
    /// The database's port on every member (default 5432).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Each member's IP address, by member name.
    pub addresses: BTreeMap<String, String>,
}

fn default_port() -> u16 {
    5432
}

/// An application Deployment at one site, scaled by where its cluster's primary is: e.g. the
/// ASYCUDA World application servers of `ndc`, 4 replicas when the primary is in `ndc`, 1
/// otherwise (warm) or 0 (cold).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KubeDeployment {
    /// The Deployment's name.
    pub name: String,
    /// Its namespace (default: `kubernetes.namespace`).
    #[serde(default)]
    pub namespace: String,
    /// The database cluster it follows.
    pub cluster: String,
    /// The site it runs in.
    pub site: String,
    /// Replicas while the cluster's primary is in that site.
    pub replicas_with_primary: i32,
    /// Replicas otherwise.
    pub replicas_otherwise: i32,
}

impl KubernetesConfig {
    /// The entry of `cluster`, if its Services are pointed.
    pub fn cluster(&self, cluster: &str) -> Option<&KubeCluster> {
        self.clusters.iter().find(|c| c.cluster == cluster)
    }

    /// A Deployment's namespace, with its default.
    pub fn namespace_of<'a>(&'a self, d: &'a KubeDeployment) -> &'a str {
        if d.namespace.is_empty() {
            &self.namespace
        } else {
            &d.namespace
        }
    }
}

impl ControllerConfig {
    /// `[kubernetes]`: names Kubernetes accepts, configured clusters with an address for each of
    /// their members, Deployments at configured sites.
    pub(super) fn validate_kubernetes(&self, sites: &BTreeSet<&str>) -> Result<()> {
        let k = &self.kubernetes;
        let dns = |key: String, v: &str| -> Result<()> {
            let ok = !v.is_empty()
                && v.len() <= 63
                && v.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !v.starts_with('-')
                && !v.ends_with('-');
            if ok {
                Ok(())
            } else {
                Err(key_err(key, format!("`{v}`: 1-63 lowercase letters, digits or '-' (a Kubernetes name)")))
            }
        };
        dns("kubernetes.namespace".into(), &k.namespace)?;
        if k.field_manager.is_empty() || k.field_manager.len() > 128 {
            return Err(key_err("kubernetes.field_manager", "1 to 128 characters"));
        }
        for (i, c) in k.clusters.iter().enumerate() {
            let key = |f: &str| format!("kubernetes.clusters[{i}].{f}");
            let Some(cc) = self.clusters.iter().find(|cc| cc.name == c.cluster) else {
                return Err(key_err(key("cluster"), format!("`{}` is not among `clusters`", c.cluster)));
            };
            dns(key("cluster"), &format!("{}-rw", c.cluster))?;
            if c.port == 0 {
                return Err(key_err(key("port"), "a port from 1 to 65535"));
            }
            for m in &cc.members {
                let Some(addr) = c.addresses.get(&m.name) else {
                    return Err(key_err(key("addresses"), format!("no address for member `{}`", m.name)));
                };
                if addr.parse::<IpAddr>().is_err() {
                    return Err(key_err(
                        key(&format!("addresses.{}", m.name)),
                        format!("`{addr}` is not an IP address"),
                    ));
                }
            }
            if let Some(extra) = c.addresses.keys().find(|a| !cc.members.iter().any(|m| &&m.name == a)) {
                return Err(key_err(key("addresses"), format!("`{extra}` is not a member of `{}`", c.cluster)));
            }
        }
        for (i, d) in k.deployments.iter().enumerate() {
            let key = |f: &str| format!("kubernetes.deployments[{i}].{f}");
            dns(key("name"), &d.name)?;
            if !d.namespace.is_empty() {
                dns(key("namespace"), &d.namespace)?;
            }
            if !self.clusters.iter().any(|c| c.name == d.cluster) {
                return Err(key_err(key("cluster"), format!("`{}` is not among `clusters`", d.cluster)));
            }
            check_name(&key("site"), &d.site)?;
            super::known_site(sites, key("site"), &d.site)?;
            for (f, n) in
                [("replicas_with_primary", d.replicas_with_primary), ("replicas_otherwise", d.replicas_otherwise)]
            {
                if !(0..=1000).contains(&n) {
                    return Err(key_err(key(f), format!("0 to 1000 (got {n})")));
                }
            }
        }
        Ok(())
    }
}
