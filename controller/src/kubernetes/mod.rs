//! The Kubernetes edge (issue 20, item 3): on every role change the leader points each
//! cluster's `<cluster>-rw` Service at the primary and `<cluster>-ro` at the standbys by a
//! server-side apply of their EndpointSlices, and scales the application Deployments that follow
//! the primary's site. It implements the core's [`Router`]: the brain calls it at the same
//! moments as the balancers (`brain/recovery_plan.rs`: the old primary out before the promotion,
//! the new one in once it holds its lease).
//!
//! Every slice carries the route's version (epoch and step) in its annotations, and a write is
//! conditional on what it read: refused when the slice holds a newer version (a replaced leader
//! finishing its role change never undoes its successor's), sent with the `resourceVersion` it
//! read, so that a slice changed in between makes the API server answer 409 and the write starts
//! again from a fresh read. Server errors are retried a bounded number of times, then reported
//! (the role change then ends "completed with errors"). A drift watch (`watch.rs`) puts back a
//! slice someone changed.
//!
//! - `objects.rs`: what is written, without an API server (the dry run prints it);
//! - `apply.rs`: the conditional writes and the scaling;
//! - `watch.rs`: the drift watch, restarted whenever the API server ends it.

mod apply;
pub mod objects;
#[cfg(test)]
mod tests;
mod watch;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::brain::router::{Route, RouteError, Router};
use crate::config::kubernetes::KubernetesConfig;
use crate::config::ControllerConfig;
use crate::error::{Error, Result};

/// The Kubernetes [`Router`]: a client (none in a dry run) and the configuration.
pub struct KubeRouter {
    client: Option<kube::Client>,
    cfg: KubernetesConfig,
    /// What this controller last applied to each slice, for the drift watch.
    applied: Mutex<BTreeMap<String, objects::Slice>>,
}

impl KubeRouter {
    /// A router writing through `client`, or only saying what it would write (`None`).
    pub fn new(client: Option<kube::Client>, cfg: KubernetesConfig) -> Self {
        KubeRouter { client, cfg, applied: Mutex::new(BTreeMap::new()) }
    }

    /// What `route` would write, as text: each slice's body and each Deployment's replicas.
    pub fn plan(&self, route: &Route) -> std::result::Result<String, RouteError> {
        let mut out = Vec::new();
        for s in objects::slices(&self.cfg, route)? {
            out.push(format!("apply EndpointSlice {}/{}: {}", self.cfg.namespace, s.name, s.body));
        }
        for s in objects::scales(&self.cfg, route) {
            out.push(format!("scale Deployment {}/{} to {}", s.namespace, s.name, s.replicas));
        }
        Ok(out.join("\n"))
    }
}

#[async_trait::async_trait]
impl Router for KubeRouter {
    fn name(&self) -> &str {
        "kubernetes"
    }

    async fn apply(&self, route: &Route) -> std::result::Result<String, RouteError> {
        let Some(client) = self.client.clone() else {
            let plan = self.plan(route)?;
            tracing::info!(cluster = %route.cluster, "kubernetes dry run, nothing applied:\n{plan}");
            return Ok(format!("dry run, nothing applied: {}", plan.replace('\n', "; ")));
        };
        let slices = objects::slices(&self.cfg, route)?;
        let mut did = Vec::new();
        for s in &slices {
            did.push(apply::slice(&client, &self.cfg, s, route.version).await?);
            self.applied.lock().expect("applied lock poisoned").insert(s.name.clone(), s.clone());
        }
        for s in objects::scales(&self.cfg, route) {
            did.push(apply::scale(&client, &self.cfg, &s).await?);
        }
        Ok(did.join("; "))
    }
}

/// The router `cfg` asks for: none unless `kubernetes.enabled`; in a dry run one without a
/// client; otherwise one with the in-cluster service account or the kubeconfig, and its drift
/// watch. A deployment that enables Kubernetes and cannot reach it does not start.
pub async fn router(cfg: &ControllerConfig) -> Result<Option<Arc<dyn Router>>> {
    let k = &cfg.kubernetes;
    if !k.enabled {
        return Ok(None);
    }
    if k.dry_run {
        tracing::warn!("kubernetes.dry_run: role changes say what they would apply and apply nothing");
        return Ok(Some(Arc::new(KubeRouter::new(None, k.clone()))));
    }
    let client = kube::Client::try_default().await.map_err(|e| Error::ConfigKey {
        key: "kubernetes.enabled".into(),
        msg: format!("no in-cluster service account or kubeconfig to reach the API server: {e}"),
    })?;
    let router = Arc::new(KubeRouter::new(Some(client.clone()), k.clone()));
    tokio::spawn(watch::follow(client, router.clone()));
    Ok(Some(router))
}
