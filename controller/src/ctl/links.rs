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
}

/// What SNMP says of one of the link's device interfaces.
#[derive(Debug, Clone, Serialize)]
pub struct SnmpLine {
    pub target: String,
    pub if_index: u32,
    pub oper_up: bool,
    pub in_bps: f64,
    pub out_bps: f64,
    pub speed_bps: f64,
    /// The busier direction against the speed (or the link's capacity); none before two polls.
    pub utilisation: Option<f64>,
    pub in_errors_per_s: f64,
    /// Since the last poll that answered.
    pub age_ms: u64,
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
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snmp: Vec<SnmpLine>,
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
    }
}

fn snmp_line(r: pb::SnmpReport, capacity_mbps: u64) -> SnmpLine {
    SnmpLine {
        utilisation: crate::brain::links::utilisation(&r, capacity_mbps),
        target: r.target,
        if_index: r.if_index,
        oper_up: r.oper_up,
        in_bps: r.in_bps,
        out_bps: r.out_bps,
        speed_bps: r.speed_bps,
        in_errors_per_s: r.in_errors_per_s,
        age_ms: r.age_ms,
        error: r.error,
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
            let capacity = s.capacity_mbps;
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
                snmp: l.snmp.into_iter().map(|r| snmp_line(r, capacity)).collect(),
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
        for s in &l.snmp {
            let used = s.utilisation.map_or("-".to_string(), |u| format!("{:.1}%", 100.0 * u));
            out += &format!(
                "{:<16} snmp {} ifIndex {}: {} in {:.0} bit/s out {:.0} bit/s, {used} used, {:.1} errors/s{}\n",
                "",
                s.target,
                s.if_index,
                if s.oper_up { "up" } else { "DOWN" },
                s.in_bps,
                s.out_bps,
                s.in_errors_per_s,
                if s.error.is_empty() { String::new() } else { format!(" (last poll failed: {})", s.error) }
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
