//! The drift watch: the slices Triad manages, watched on every controller; one that no longer
//! says what this controller last applied (edited by hand, deleted endpoints, another tool) and
//! holds no newer version is applied again, on the same condition as any write (`apply.rs`).
//! kube-runtime's watcher lists and then watches; when the API server ends the watch (its
//! timeout, a `410 Gone` for a version too old, a restart), it lists again after a backoff, so a
//! change made while the watch was down is seen on that list.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;

use super::objects::{version_of, MANAGED_BY};
use super::KubeRouter;

/// Follows the managed slices for as long as the controller runs.
pub async fn follow(client: kube::Client, router: Arc<KubeRouter>) {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &router.cfg.namespace);
    let selector = format!("endpointslice.kubernetes.io/managed-by={MANAGED_BY}");
    let mut events = watcher::watcher(api, watcher::Config::default().labels(&selector)).default_backoff().boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Apply(s) | Event::InitApply(s)) => mend(&client, &router, &s).await,
            Ok(Event::Init) => tracing::debug!("kubernetes drift watch: listing the managed slices"),
            Ok(_) => {}
            Err(e) => tracing::warn!("kubernetes drift watch: {e}; it lists again"),
        }
    }
}

/// The addresses of a slice's endpoints.
fn addresses(s: &EndpointSlice) -> BTreeSet<String> {
    s.endpoints.iter().flat_map(|e| e.addresses.iter().cloned()).collect()
}

/// The addresses of an apply body's endpoints.
fn body_addresses(body: &serde_json::Value) -> BTreeSet<String> {
    let endpoints = body["endpoints"].as_array().cloned().unwrap_or_default();
    endpoints
        .iter()
        .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(String::from))
        .collect()
}

/// Applies again what this controller last applied to `seen`'s name, when `seen` differs from
/// it and holds no newer version.
pub(super) async fn mend(client: &kube::Client, router: &KubeRouter, seen: &EndpointSlice) {
    let Some(name) = seen.metadata.name.as_deref() else { return };
    let Some(ours) = router.applied.lock().expect("applied lock poisoned").get(name).cloned() else { return };
    let Some(version) = version_of(
        ours.body["metadata"]["annotations"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
            .as_ref(),
    ) else {
        return;
    };
    let theirs = version_of(seen.metadata.annotations.as_ref());
    if theirs.is_some_and(|t| t > version) || (theirs == Some(version) && addresses(seen) == body_addresses(&ours.body))
    {
        return;
    }
    tracing::warn!(slice = name, "EndpointSlice {name} changed outside Triad: applying {version} again");
    match super::apply::slice(client, &router.cfg, &ours, version).await {
        Ok(did) => tracing::info!("kubernetes drift mended: {did}"),
        Err(e) => tracing::warn!("kubernetes drift not mended: {e}"),
    }
}
