//! `triadctl services ...`: the services that follow the database clusters, their health and
//! what their checks say now; defining (from a TOML file) and removing them.

use serde::Serialize;
use triad_proto::v1 as pb;

use super::client::Client;
use crate::alerts::timestamp::format_ms;
use crate::error::{Error, Result};

/// One instance as listed.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceLine {
    pub site: String,
    pub agent: String,
    pub target: String,
    /// `answering`, `failing`, `settling`, or empty when the answering controller has no view.
    pub state: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    pub latency_ms: f64,
}

/// A service as `services -o json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceLine {
    pub name: String,
    pub cluster: String,
    pub kind: String,
    pub group: u32,
    pub health: String,
    pub since: String,
    pub reason: String,
    pub instances: Vec<InstanceLine>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pre_hook: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub post_hook: String,
}

fn line(r: pb::ServiceRecord) -> ServiceLine {
    ServiceLine {
        name: r.name,
        cluster: r.cluster,
        kind: r.kind,
        group: r.group,
        health: r.health,
        since: format_ms(r.since_ms),
        reason: r.reason,
        instances: r
            .instances
            .into_iter()
            .map(|i| InstanceLine {
                site: i.site,
                agent: i.agent,
                target: i.target,
                state: i.state,
                detail: i.detail,
                latency_ms: i.latency_ms,
            })
            .collect(),
        pre_hook: r.pre_hook,
        post_hook: r.post_hook,
    }
}

/// Every service, in recovery-group order, and whether a follower answered.
pub async fn list(client: &Client) -> Result<(Vec<ServiceLine>, bool)> {
    let r = client.inventory().await?.list_services(pb::ListServicesRequest {}).await?.into_inner();
    let mut lines: Vec<ServiceLine> = r.services.into_iter().map(line).collect();
    lines.sort_by(|a, b| (a.group, &a.name).cmp(&(b.group, &b.name)));
    Ok((lines, r.stale))
}

/// The table `services` prints.
pub fn render(lines: &[ServiceLine], stale: bool) -> String {
    if lines.is_empty() {
        return "no services defined (triadctl services put --file SERVICE.toml)\n".into();
    }
    let mut out =
        format!("{:<16} {:<10} {:<5} {:>5} {:<9} {}\n", "SERVICE", "CLUSTER", "KIND", "GROUP", "HEALTH", "SINCE");
    for s in lines {
        let mark = if s.health == "up" { "  " } else { "!!" };
        out += &format!(
            "{:<16} {:<10} {:<5} {:>5} {:<9} {} {mark}\n",
            s.name, s.cluster, s.kind, s.group, s.health, s.since
        );
        if s.health != "up" && !s.reason.is_empty() {
            out += &format!("{:<16} {}\n", "", s.reason);
        }
        for i in &s.instances {
            let state = if i.state.is_empty() { "?" } else { i.state.as_str() };
            let detail = if i.detail.is_empty() { String::new() } else { format!(": {}", i.detail) };
            out += &format!(
                "{:<16} {:<4} {} via {} {state} ({:.1} ms){detail}\n",
                "", i.site, i.target, i.agent, i.latency_ms
            );
        }
    }
    if stale {
        out += "(answered by a follower: health may lag the leader's by a moment)\n";
    }
    out
}

/// A definition file (`--file`) as text, bounded like a config file: the controllers check
/// what it says.
pub fn read_definition(path: &std::path::Path) -> Result<String> {
    let bytes = triad_proto::files::read_bounded(path, triad_proto::files::CONFIG_LIMIT)
        .map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?;
    String::from_utf8(bytes).map_err(|_| Error::InvalidArgument(format!("{}: not UTF-8 text", path.display())))
}

/// `services put --file`: the definition as TOML, checked by the controllers.
pub async fn put(client: &Client, path: &std::path::Path) -> Result<String> {
    let spec_toml = read_definition(path)?;
    let r = client.inventory().await?.put_service(pb::PutServiceRequest { spec_toml }).await?.into_inner();
    Ok(format!("{} (log index {})", r.message, r.log_index))
}

/// `services delete`.
pub async fn delete(client: &Client, name: &str) -> Result<String> {
    let r =
        client.inventory().await?.delete_service(pb::DeleteServiceRequest { name: name.into() }).await?.into_inner();
    Ok(format!("{} (log index {})", r.message, r.log_index))
}
