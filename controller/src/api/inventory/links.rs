//! Links in the `Inventory` service: definitions from and to the API, and a link's record with
//! what the probes say now.

use tonic::Status;
use triad_proto::v1 as pb;

use crate::api::bounded_text;
use crate::brain::links::Assessment;
use crate::state::links::{Link, LinkKind, LinkSpec, LinkThresholds};

/// A link's definition from a request, checked (defaults for what it leaves out).
pub fn spec_from(p: pb::LinkSpec) -> Result<LinkSpec, Status> {
    let kind: LinkKind = p.kind.parse().map_err(|_| {
        Status::invalid_argument(format!(
            "kind `{}`: one of {}",
            p.kind.chars().take(40).collect::<String>(),
            LinkKind::names()
        ))
    })?;
    let d = LinkThresholds::default();
    let t = p.thresholds.unwrap_or_default();
    let thresholds = LinkThresholds {
        degraded_rtt_ms: t.degraded_rtt_ms.unwrap_or(d.degraded_rtt_ms),
        degraded_loss_percent: t.degraded_loss_percent.unwrap_or(d.degraded_loss_percent),
        degraded_jitter_ms: t.degraded_jitter_ms.unwrap_or(d.degraded_jitter_ms),
        degraded_utilisation_percent: t.degraded_utilisation_percent.unwrap_or(d.degraded_utilisation_percent),
        degraded_errors_per_second: t.degraded_errors_per_second.unwrap_or(d.degraded_errors_per_second),
        down_loss_percent: t.down_loss_percent.unwrap_or(d.down_loss_percent),
        down_silence_ms: t.down_silence_ms.unwrap_or(d.down_silence_ms),
        worse_after_ms: t.worse_after_ms.unwrap_or(d.worse_after_ms),
        better_after_ms: t.better_after_ms.unwrap_or(d.better_after_ms),
    };
    if p.carries.len() > 64 {
        return Err(Status::invalid_argument("a link carries at most 64 clusters"));
    }
    let spec = LinkSpec {
        name: bounded_text("the link's name", &p.name, 64)?,
        a: bounded_text("end a", &p.a, 64)?,
        b: bounded_text("end b", &p.b, 64)?,
        kind,
        capacity_mbps: p.capacity_mbps,
        provider: p.provider,
        circuit: p.circuit,
        carries: p.carries.into_iter().collect(),
        a_agent: p.a_agent,
        b_agent: p.b_agent,
        devices: p.devices,
        probe_interval_ms: if p.probe_interval_ms == 0 { 200 } else { p.probe_interval_ms },
        thresholds,
    };
    spec.validate("link").map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok(spec)
}

/// A definition as the API shows it.
pub fn spec_record(s: &LinkSpec) -> pb::LinkSpec {
    let t = &s.thresholds;
    pb::LinkSpec {
        name: s.name.clone(),
        a: s.a.clone(),
        b: s.b.clone(),
        kind: s.kind.to_string(),
        capacity_mbps: s.capacity_mbps,
        provider: s.provider.clone(),
        circuit: s.circuit.clone(),
        carries: s.carries.iter().cloned().collect(),
        a_agent: s.a_agent.clone(),
        b_agent: s.b_agent.clone(),
        probe_interval_ms: s.probe_interval_ms,
        devices: s.devices.clone(),
        thresholds: Some(pb::LinkThresholds {
            degraded_rtt_ms: Some(t.degraded_rtt_ms),
            degraded_loss_percent: Some(t.degraded_loss_percent),
            degraded_jitter_ms: Some(t.degraded_jitter_ms),
            degraded_utilisation_percent: Some(t.degraded_utilisation_percent),
            degraded_errors_per_second: Some(t.degraded_errors_per_second),
            down_loss_percent: Some(t.down_loss_percent),
            down_silence_ms: Some(t.down_silence_ms),
            worse_after_ms: Some(t.worse_after_ms),
            better_after_ms: Some(t.better_after_ms),
        }),
    }
}

pub fn record(link: &Link, a: Option<&Assessment>) -> pb::LinkRecord {
    let ends = a
        .map(|a| {
            a.ends
                .iter()
                .map(|e| pb::LinkEnd {
                    site: e.site.clone(),
                    agent: e.agent.clone().unwrap_or_default(),
                    report: e.report.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    pb::LinkRecord {
        spec: Some(spec_record(&link.spec)),
        state: link.state.to_string(),
        since_ms: link.since_ms,
        reason: link.reason.clone(),
        assessed: a.map(|a| a.state.to_string()).unwrap_or_default(),
        assessed_reason: a.map(|a| a.reason.clone()).unwrap_or_default(),
        ends,
        snmp: a.map(|a| a.snmp.clone()).unwrap_or_default(),
    }
}
