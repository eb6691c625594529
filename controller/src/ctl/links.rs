//! `triadctl links ...`: the network links between the sites, their state and what the probes
//! at both ends measure now; defining and removing links.

use serde::Serialize;
use triad_proto::v1 as pb;

use super::client::Client;
use crate::alerts::timestamp::format_ms;
use crate::error::Result;

/// One end as listed.
#[derive(Debug, Clone, Serialize)]
pub struct EndLine {
    pub site: String,
    pub agent: String,
    /// False when no recent report came from it.
    pub reporting: bool,
    pub rtt_ms: f64,
    pub loss_percent: f64,
    pub jitter_ms: f64,
    pub silent_ms: u64,
    pub tcp_ok: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tcp_error: String,
    /// From SNMP, where this end polls a device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snmp: Option<SnmpLine>,
}

/// What SNMP says of one end's interface.
#[derive(Debug, Clone, Serialize)]
pub struct SnmpLine {
    pub oper_up: bool,
    pub in_bps: f64,
    pub out_bps: f64,
    pub utilisation: f64,
    pub in_errors_per_s: f64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// A link as `links -o json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct LinkLine {
    pub name: String,
    pub a: String,
    pub b: String,
    pub kind: String,
    pub capacity_mbps: u64,
    pub provider: String,
    pub circuit: String,
    pub carries: Vec<String>,
    pub state: String,
    pub since: String,
    pub reason: String,
    /// What the probes say now on the answering controller.
    pub assessed: String,
    pub assessed_reason: String,
    pub ends: Vec<EndLine>,
}

fn end_line(e: pb::LinkEnd) -> EndLine {
    let r = e.report.clone().unwrap_or_default();
    let loss = if r.sent == 0 { 0.0 } else { 100.0 * f64::from(r.sent.saturating_sub(r.answered)) / f64::from(r.sent) };
    EndLine {
        site: e.site,
        agent: e.agent,
        reporting: e.report.is_some(),
        rtt_ms: r.rtt_ms,
        loss_percent: loss,
        jitter_ms: r.jitter_ms,
        silent_ms: r.silent_ms,
        tcp_ok: r.tcp_ok,
        tcp_error: r.tcp_error,
        snmp: r.snmp_polled.then_some(SnmpLine {
            oper_up: r.snmp_oper_up,
            in_bps: r.snmp_in_bps,
            out_bps: r.snmp_out_bps,
            utilisation: r.snmp_utilisation,
            in_errors_per_s: r.snmp_in_errors_per_s,
            error: r.snmp_error,
        }),
    }
}

/// `links` (list): every link, with whether the answer came from a follower.
pub async fn list(client: &Client) -> Result<(Vec<LinkLine>, bool)> {
    let r = client.inventory().await?.list_links(pb::ListLinksRequest {}).await?.into_inner();
    let lines = r
        .links
        .into_iter()
        .map(|l| {
            let s = l.spec.unwrap_or_default();
            LinkLine {
                name: s.name,
                a: s.a,
                b: s.b,
                kind: s.kind,
                capacity_mbps: s.capacity_mbps,
                provider: s.provider,
                circuit: s.circuit,
                carries: s.carries,
                state: l.state,
                since: format_ms(l.since_ms),
                reason: l.reason,
                assessed: l.assessed,
                assessed_reason: l.assessed_reason,
                ends: l.ends.into_iter().map(end_line).collect(),
            }
        })
        .collect();
    Ok((lines, r.stale))
}

pub fn render(lines: &[LinkLine], stale: bool) -> String {
    let mut out = format!(
        "{:<16} {:<5} {:<9} {:<9} {:>9} {:>7} {:>9}  {}\n",
        "LINK", "KIND", "ENDS", "STATE", "RTT ms", "LOSS %", "JITTER ms", "SINCE / WHY"
    );
    for l in lines {
        let worst = |f: fn(&EndLine) -> f64| {
            l.ends.iter().filter(|e| e.reporting).map(f).reduce(f64::max).map_or("-".to_string(), |v| format!("{v:.1}"))
        };
        out += &format!(
            "{:<16} {:<5} {:<9} {:<9} {:>9} {:>7} {:>9}  {} {}\n",
            l.name,
            l.kind,
            format!("{}–{}", l.a, l.b),
            l.state,
            worst(|e| e.rtt_ms),
            worst(|e| e.loss_percent),
            worst(|e| e.jitter_ms),
            l.since,
            l.reason
        );
        if l.assessed != l.state && !l.assessed.is_empty() {
            out += &format!("{:<16} now assessed {}: {}\n", "", l.assessed, l.assessed_reason);
        }
        for e in l.ends.iter().filter_map(|e| e.snmp.as_ref().map(|s| (e, s))) {
            let (e, s) = e;
            out += &format!(
                "{:<16} snmp at {}: {} in {:.0} bit/s out {:.0} bit/s, {:.0}% used, {:.1} errors/s {}\n",
                "",
                e.site,
                if s.oper_up { "up" } else { "DOWN" },
                s.in_bps,
                s.out_bps,
                100.0 * s.utilisation,
                s.in_errors_per_s,
                s.error
            );
        }
    }
    if stale {
        out += "(answered by a follower: states may lag the leader's by a moment)\n";
    }
    out
}

/// `links put`.
pub async fn put(client: &Client, spec: pb::LinkSpec) -> Result<String> {
    let r = client.inventory().await?.put_link(pb::PutLinkRequest { spec: Some(spec) }).await?.into_inner();
    Ok(format!("{} (log index {})", r.message, r.log_index))
}

/// `links delete`.
pub async fn delete(client: &Client, name: &str) -> Result<String> {
    let r = client.inventory().await?.delete_link(pb::DeleteLinkRequest { name: name.into() }).await?.into_inner();
    Ok(format!("{} (log index {})", r.message, r.log_index))
}
