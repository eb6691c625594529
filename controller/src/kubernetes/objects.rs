//! What the Kubernetes edge writes, computed without an API server (so that `--dry-run` and the
//! tests see exactly what would be sent): each cluster's `<cluster>-rw` and `<cluster>-ro`
//! EndpointSlices with the route's version in their annotations, and the replicas of the
//! Deployments that follow the primary's site.

use serde_json::{json, Value};

use crate::brain::router::{Route, RouteError, RouteStep, RouteVersion};
use crate::config::kubernetes::{KubeCluster, KubernetesConfig};

/// The annotations that carry a slice's [`RouteVersion`].
pub const EPOCH: &str = "triad.io/epoch";
pub const STEP: &str = "triad.io/step";
/// Who manages the slices (`endpointslice.kubernetes.io/managed-by`), and the label the drift
/// watch selects them by.
pub const MANAGED_BY: &str = "triad.io";

/// One EndpointSlice to apply: its name and the whole object (a server-side apply body).
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    pub name: String,
    pub body: Value,
}

/// A Deployment's replicas to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scale {
    pub namespace: String,
    pub name: String,
    pub replicas: i32,
}

/// The version a slice carries, if it carries one Triad wrote.
pub fn version_of(annotations: Option<&std::collections::BTreeMap<String, String>>) -> Option<RouteVersion> {
    let a = annotations?;
    let epoch = a.get(EPOCH)?.parse().ok()?;
    let step = RouteStep::parse(a.get(STEP)?)?;
    Some(RouteVersion { epoch, step })
}

fn slice(
    cfg: &KubernetesConfig,
    c: &KubeCluster,
    name: &str,
    route: &Route,
    members: &[&str],
) -> Result<Slice, RouteError> {
    let mut addresses = Vec::new();
    for m in members {
        let a = c.addresses.get(*m).ok_or_else(|| {
            RouteError::Config(format!("kubernetes.clusters: no address for member `{m}` of `{}`", c.cluster))
        })?;
        addresses.push(a.clone());
    }
    let v6 = addresses.first().is_some_and(|a| a.contains(':'));
    let endpoints: Vec<Value> =
        addresses.iter().map(|a| json!({ "addresses": [a], "conditions": { "ready": true } })).collect();
    let body = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": cfg.namespace,
            "labels": {
                "kubernetes.io/service-name": name,
                "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
                "triad.io/cluster": route.cluster,
            },
            "annotations": {
                EPOCH: route.version.epoch.to_string(),
                STEP: route.version.step.as_str(),
                "triad.io/primary": route.primary.clone().unwrap_or_default(),
            },
        },
        "addressType": if v6 { "IPv6" } else { "IPv4" },
        "ports": [{ "name": "postgresql", "port": c.port, "protocol": "TCP" }],
        "endpoints": endpoints,
    });
    Ok(Slice { name: name.to_string(), body })
}

/// The slices `route` asks for: the writers' (the primary alone, or nobody while it is taken
/// out) first, then the readers' (the standbys).
pub fn slices(cfg: &KubernetesConfig, route: &Route) -> Result<Vec<Slice>, RouteError> {
    let c = cfg
        .cluster(&route.cluster)
        .ok_or_else(|| RouteError::Config(format!("kubernetes.clusters has no entry for `{}`", route.cluster)))?;
    let writers: Vec<&str> = route.primary.iter().map(String::as_str).collect();
    let readers: Vec<&str> = route.standbys.iter().map(String::as_str).collect();
    Ok(vec![
        slice(cfg, c, &format!("{}-rw", route.cluster), route, &writers)?,
        slice(cfg, c, &format!("{}-ro", route.cluster), route, &readers)?,
    ])
}

/// The Deployments to scale once a primary is in (none while it is only taken out).
pub fn scales(cfg: &KubernetesConfig, route: &Route) -> Vec<Scale> {
    if route.version.step == RouteStep::Out {
        return Vec::new();
    }
    cfg.deployments
        .iter()
        .filter(|d| d.cluster == route.cluster)
        .map(|d| Scale {
            namespace: cfg.namespace_of(d).to_string(),
            name: d.name.clone(),
            replicas: if d.site == route.primary_site { d.replicas_with_primary } else { d.replicas_otherwise },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::kubernetes::KubeDeployment;

    pub(crate) fn config() -> KubernetesConfig {
        let addresses: BTreeMap<String, String> =
            [("dc", "10.1.0.21"), ("ndc", "10.2.0.21"), ("dr", "10.3.0.21")].map(|(m, a)| (m.into(), a.into())).into();
        let deployment = |site: &str, with, otherwise| KubeDeployment {
            name: format!("asycuda-{site}"),
            namespace: "asycuda".into(),
            cluster: "customs".into(),
            site: site.into(),
            replicas_with_primary: with,
            replicas_otherwise: otherwise,
        };
        KubernetesConfig {
            enabled: true,
            clusters: vec![KubeCluster { cluster: "customs".into(), port: 5432, addresses }],
            deployments: vec![deployment("dc", 4, 1), deployment("ndc", 4, 1), deployment("dr", 2, 0)],
            ..Default::default()
        }
    }

    fn route(step: RouteStep, primary: Option<&str>, site: &str) -> Route {
        let standbys = ["dc", "ndc", "dr"].into_iter().filter(|m| Some(*m) != primary && *m != site).map(String::from);
        Route {
            cluster: "customs".into(),
            version: RouteVersion { epoch: 4, step },
            primary: primary.map(String::from),
            primary_site: site.into(),
            standbys: standbys.collect(),
        }
    }

    #[test]
    fn the_writers_slice_holds_the_primary_alone_with_the_version_and_the_readers_the_standbys() {
        let s = slices(&config(), &route(RouteStep::In, Some("ndc"), "ndc")).expect("slices");
        assert_eq!((s[0].name.as_str(), s[1].name.as_str()), ("customs-rw", "customs-ro"));
        assert_eq!(s[0].body["endpoints"], json!([{ "addresses": ["10.2.0.21"], "conditions": { "ready": true } }]));
        assert_eq!(s[0].body["metadata"]["annotations"][EPOCH], "4");
        assert_eq!(s[0].body["metadata"]["annotations"][STEP], "in");
        assert_eq!(s[0].body["metadata"]["labels"]["kubernetes.io/service-name"], "customs-rw");
        let readers: Vec<&str> =
            s[1].body["endpoints"].as_array().unwrap().iter().map(|e| e["addresses"][0].as_str().unwrap()).collect();
        assert_eq!(readers, ["10.1.0.21", "10.3.0.21"]);
    }

    #[test]
    fn a_take_out_empties_the_writers_and_scales_nothing() {
        let r = route(RouteStep::Out, None, "dc");
        let s = slices(&config(), &r).expect("slices");
        assert_eq!(s[0].body["endpoints"], json!([]));
        assert_eq!(s[0].body["metadata"]["annotations"][STEP], "out");
        assert!(scales(&config(), &r).is_empty());
    }

    #[test]
    fn deployments_follow_the_primarys_site() {
        let got = scales(&config(), &route(RouteStep::In, Some("ndc"), "ndc"));
        let by: Vec<(&str, i32)> = got.iter().map(|s| (s.name.as_str(), s.replicas)).collect();
        assert_eq!(by, [("asycuda-dc", 1), ("asycuda-ndc", 4), ("asycuda-dr", 0)]);
        assert!(got.iter().all(|s| s.namespace == "asycuda"));
    }

    #[test]
    fn a_member_without_an_address_is_a_configuration_error() {
        let mut cfg = config();
        cfg.clusters[0].addresses.remove("ndc");
        let e = slices(&cfg, &route(RouteStep::In, Some("ndc"), "ndc")).expect_err("no address");
        assert!(e.to_string().contains("no address for member `ndc`"), "{e}");
    }

    #[test]
    fn only_triads_own_annotations_are_a_version() {
        let a: BTreeMap<String, String> = [(EPOCH, "7"), (STEP, "out")].map(|(k, v)| (k.into(), v.into())).into();
        assert_eq!(version_of(Some(&a)), Some(RouteVersion { epoch: 7, step: RouteStep::Out }));
        let b: BTreeMap<String, String> = [(EPOCH, "seven"), (STEP, "out")].map(|(k, v)| (k.into(), v.into())).into();
        assert_eq!(version_of(Some(&b)), None);
        assert_eq!(version_of(None), None);
    }
}
