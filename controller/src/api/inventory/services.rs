//! Services in the `Inventory` service: a definition from its TOML (the config's `[[services]]`
//! entry), and a service's record with what its checks say now.

use tonic::Status;
use triad_proto::v1 as pb;

use crate::brain::services::Assessment;
use crate::state::services::{Service, ServiceSpec};

/// Most bytes of a service's TOML definition.
const MAX_SPEC_BYTES: usize = 64 * 1024;

/// A service's definition from its TOML, checked.
pub fn spec_from_toml(text: &str) -> Result<ServiceSpec, Status> {
    if text.len() > MAX_SPEC_BYTES {
        return Err(Status::invalid_argument(format!("a service's definition is at most {MAX_SPEC_BYTES} bytes")));
    }
    let spec: ServiceSpec =
        toml::from_str(text).map_err(|e| Status::invalid_argument(format!("the service's definition: {e}")))?;
    spec.validate("service").map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok(spec)
}

/// A definition as TOML.
pub fn spec_toml(spec: &ServiceSpec) -> String {
    // A ServiceSpec has only strings, numbers and tables: it always serialises.
    toml::to_string(spec).unwrap_or_default()
}

pub fn record(s: &Service, a: Option<&Assessment>) -> pb::ServiceRecord {
    let instances = s
        .spec
        .instances
        .iter()
        .map(|i| {
            let seen = a.and_then(|a| a.instances.iter().find(|v| v.site == i.site && v.target == i.target));
            pb::ServiceInstanceRecord {
                site: i.site.clone(),
                agent: i.agent.clone(),
                target: i.target.clone(),
                state: match seen.map(|v| v.answering) {
                    None => String::new(),
                    Some(Some(true)) => "answering".into(),
                    Some(Some(false)) => "failing".into(),
                    Some(None) => "settling".into(),
                },
                detail: seen.map(|v| v.detail.clone()).unwrap_or_default(),
                latency_ms: seen.and_then(|v| v.latency_ms).unwrap_or(0.0),
            }
        })
        .collect();
    pb::ServiceRecord {
        name: s.spec.name.clone(),
        cluster: s.spec.cluster.clone(),
        kind: s.spec.kind.to_string(),
        group: s.spec.group,
        health: s.health.to_string(),
        since_ms: s.since_ms,
        reason: s.reason.clone(),
        instances,
        pre_hook: s.spec.pre_hook.clone(),
        post_hook: s.spec.post_hook.clone(),
        spec_toml: spec_toml(&s.spec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_definition_round_trips_through_toml_and_bad_ones_are_named() {
        let text = "name = \"asycuda\"\ncluster = \"customs\"\nkind = \"http\"\n\
                    [[instances]]\nsite = \"dc\"\nagent = \"agent-dc\"\ntarget = \"http://app-dc:8080/health\"\n";
        let spec = spec_from_toml(text).unwrap();
        assert_eq!((spec.group, spec.interval_ms), (1, 5000), "defaults");
        assert_eq!(spec_from_toml(&spec_toml(&spec)).unwrap(), spec);
        let err = spec_from_toml(&text.replace("http\"", "gopher\"")).unwrap_err();
        assert!(err.message().contains("kind"), "{}", err.message());
        let err = spec_from_toml(&text.replace("http://app-dc", "app-dc")).unwrap_err();
        assert!(err.message().contains("service.instances[0].target"), "{}", err.message());
        assert!(spec_from_toml(&format!("{text}colour = \"red\"\n")).is_err(), "unknown keys are errors");
    }
}
