//! The writes: a slice applied on the condition of what was read (its version and its
//! `resourceVersion`), a Deployment's replicas set; each retried a bounded number of times on a
//! conflict or a server error, then reported.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};

use super::objects::{version_of, Scale, Slice};
use crate::brain::router::{RouteError, RouteVersion};
use crate::config::kubernetes::KubernetesConfig;

/// Attempts of one write (a conflict or a server error starts it again), and the first pause.
pub const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The HTTP status the API server answered, when it answered.
fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Whether `e` is worth another attempt: a conflict (read again), a server error or no answer.
fn retryable(e: &kube::Error) -> bool {
    match code(e) {
        Some(409) => true,
        Some(c) => c >= 500,
        None => true,
    }
}

/// Applies `s` at `ours`: reads the slice, refuses when it holds a newer version, applies with
/// the `resourceVersion` read (a change in between is a 409: read again).
pub async fn slice(
    client: &kube::Client,
    cfg: &KubernetesConfig,
    s: &Slice,
    ours: RouteVersion,
) -> Result<String, RouteError> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &cfg.namespace);
    let params = PatchParams::apply(&cfg.field_manager).force();
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(FIRST_BACKOFF * 2u32.pow(attempt - 2)).await;
        }
        let current = match api.get_opt(&s.name).await {
            Ok(c) => c,
            Err(e) if retryable(&e) => {
                last = format!("reading EndpointSlice {}: {e}", s.name);
                continue;
            }
            Err(e) => return Err(RouteError::Api(format!("reading EndpointSlice {}: {e}", s.name))),
        };
        let mut body = s.body.clone();
        if let Some(current) = &current {
            if let Some(theirs) = version_of(current.metadata.annotations.as_ref()).filter(|t| *t > ours) {
                return Err(RouteError::Stale { what: format!("EndpointSlice {}", s.name), ours, theirs });
            }
            if let Some(rv) = &current.metadata.resource_version {
                body["metadata"]["resourceVersion"] = serde_json::Value::String(rv.clone());
            }
        }
        match api.patch(&s.name, &params, &Patch::Apply(&body)).await {
            Ok(_) => return Ok(format!("EndpointSlice {} at {ours}", s.name)),
            Err(e) if retryable(&e) => last = format!("applying EndpointSlice {}: {e}", s.name),
            Err(e) => return Err(RouteError::Api(format!("applying EndpointSlice {}: {e}", s.name))),
        }
    }
    Err(RouteError::Api(format!("{last} (gave up after {ATTEMPTS} attempts)")))
}

/// Sets a Deployment's replicas (its scale subresource).
pub async fn scale(client: &kube::Client, cfg: &KubernetesConfig, s: &Scale) -> Result<String, RouteError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), &s.namespace);
    let params = PatchParams { field_manager: Some(cfg.field_manager.clone()), ..Default::default() };
    let patch = serde_json::json!({ "spec": { "replicas": s.replicas } });
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(FIRST_BACKOFF * 2u32.pow(attempt - 2)).await;
        }
        match api.patch_scale(&s.name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => return Ok(format!("Deployment {}/{} scaled to {}", s.namespace, s.name, s.replicas)),
            Err(e) if retryable(&e) => last = format!("scaling Deployment {}/{}: {e}", s.namespace, s.name),
            Err(e) => return Err(RouteError::Api(format!("scaling Deployment {}/{}: {e}", s.namespace, s.name))),
        }
    }
    Err(RouteError::Api(format!("{last} (gave up after {ATTEMPTS} attempts)")))
}
