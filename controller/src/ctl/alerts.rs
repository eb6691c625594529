//! `triadctl alerts ...`: the SOC's queue (list, show, triage), silences, and alert sources (their
//! tokens are made here and shown once; the controllers keep only their SHA-256).

use serde::Serialize;
use triad_proto::v1 as pb;

use super::client::Client;
use crate::alerts::timestamp::format_ms;
use crate::error::{Error, Result};

/// A new random token: `triad_` and 64 hex digits (256 bits from the system's generator).
pub fn new_token() -> Result<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Unavailable("the system's random number generator failed".into()))?;
    Ok(format!("triad_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

/// `alerts sources add` and `rotate`: a new token for source `name`; returns the token (shown
/// once) and the controllers' answer.
pub async fn put_source(client: &Client, name: &str, kind: &str, grace_ms: u64) -> Result<(String, String)> {
    let token = new_token()?;
    let req = pb::PutSourceRequest {
        name: name.into(),
        kind: kind.into(),
        token_sha256: crate::api::token_digest(&token),
        grace_ms,
    };
    let r = client.alerts().await?.put_source(req).await?.into_inner();
    Ok((token, format!("{} (log index {})", r.message, r.log_index)))
}

/// `alerts sources delete`.
pub async fn delete_source(client: &Client, name: &str) -> Result<String> {
    let r = client.alerts().await?.delete_source(pb::DeleteSourceRequest { name: name.into() }).await?.into_inner();
    Ok(format!("{} (log index {})", r.message, r.log_index))
}

/// A source as listed.
#[derive(Serialize)]
pub struct SourceLine {
    pub name: String,
    pub kind: String,
    pub valid_tokens: u32,
    pub created_by: String,
    pub created: String,
}

/// `alerts sources list`.
pub async fn sources(client: &Client) -> Result<Vec<SourceLine>> {
    let r = client.alerts().await?.list_sources(pb::ListSourcesRequest {}).await?.into_inner();
    Ok(r.sources
        .into_iter()
        .map(|s| SourceLine {
            name: s.name,
            kind: s.kind,
            valid_tokens: s.tokens,
            created_by: s.created_by,
            created: format_ms(s.created_ms),
        })
        .collect())
}

pub fn render_sources(lines: &[SourceLine]) -> String {
    let mut out = format!("{:<20} {:<13} {:>6}  {:<16} {}\n", "SOURCE", "FORMAT", "TOKENS", "CREATED BY", "CREATED");
    for s in lines {
        out += &format!("{:<20} {:<13} {:>6}  {:<16} {}\n", s.name, s.kind, s.valid_tokens, s.created_by, s.created);
    }
    out
}

/// An alert as `list -o json` and `show -o json` print it.
#[derive(Serialize)]
pub struct AlertView {
    pub id: u64,
    pub status: String,
    pub severity: String,
    pub source: String,
    pub title: String,
    pub site: String,
    pub host: String,
    pub count: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub assignee: String,
    pub escalation: u32,
    pub silenced_by: Option<u64>,
    pub incident: Option<u64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub incident_title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<AlertDetail>,
}

/// What only `show` prints.
#[derive(Serialize)]
pub struct AlertDetail {
    pub kind: String,
    pub fingerprint: String,
    pub description: String,
    pub address: String,
    pub agent: String,
    pub placed_by: String,
    /// The asset it was placed on, its office and owner; the link it concerns.
    pub asset: String,
    pub office: String,
    pub owner: String,
    pub link: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub acknowledged: Option<String>,
    pub closed: Option<String>,
    pub history: Vec<(String, String, String)>,
}

fn view(a: pb::AlertRecord, detail: bool) -> AlertView {
    let when = |ms: u64| (ms > 0).then(|| format_ms(ms));
    let detail = detail.then(|| AlertDetail {
        kind: a.kind,
        fingerprint: a.fingerprint,
        description: a.description,
        address: a.address,
        agent: a.agent,
        placed_by: a.placed_by,
        asset: a.asset,
        office: a.office,
        owner: a.owner,
        link: a.link,
        labels: a.labels.into_iter().collect(),
        acknowledged: when(a.acknowledged_ms),
        closed: when(a.closed_ms),
        history: a.history.into_iter().map(|n| (format_ms(n.at_ms), n.actor, n.text)).collect(),
    });
    AlertView {
        id: a.id,
        status: a.status,
        severity: a.severity,
        source: a.source,
        title: a.title,
        site: a.site,
        host: a.host,
        count: a.count,
        first_seen: format_ms(a.first_seen_ms),
        last_seen: format_ms(a.last_seen_ms),
        assignee: a.assignee,
        escalation: a.escalation,
        silenced_by: (a.silenced_by > 0).then_some(a.silenced_by),
        incident: (a.incident > 0).then_some(a.incident),
        incident_title: a.incident_title,
        detail,
    }
}

/// `alerts list`: the matching alerts, newest first, and how many matched in all.
pub async fn list(client: &Client, req: pb::ListAlertsRequest) -> Result<(Vec<AlertView>, u64, bool)> {
    let r = client.alerts().await?.list(req).await?.into_inner();
    Ok((r.alerts.into_iter().map(|a| view(a, false)).collect(), r.matched, r.stale))
}

pub fn render_list(alerts: &[AlertView], matched: u64, stale: bool) -> String {
    let mut out = format!(
        "{:>6}  {:<14} {:<9} {:<6} {:<14} {:>6}  {:<24} {}\n",
        "ID", "STATUS", "SEVERITY", "SITE", "HOST", "COUNT", "LAST SEEN", "TITLE"
    );
    for a in alerts {
        let mut flags = String::new();
        if let Some(s) = a.silenced_by {
            flags += &format!(" [silenced by {s}]");
        }
        if !a.assignee.is_empty() {
            flags += &format!(" [{}]", a.assignee);
        }
        out += &format!(
            "{:>6}  {:<14} {:<9} {:<6} {:<14} {:>6}  {:<24} {}{flags}\n",
            a.id,
            a.status,
            a.severity,
            dash(&a.site),
            dash(&a.host),
            a.count,
            a.last_seen,
            a.title
        );
    }
    out += &format!("{} shown of {matched} matching", alerts.len());
    if stale {
        out += " (read from a follower: may lag the leader)";
    }
    out + "\n"
}

fn dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// `alerts show ID`.
pub async fn show(client: &Client, id: u64) -> Result<AlertView> {
    let a = client.alerts().await?.get(pb::GetAlertRequest { id }).await?.into_inner();
    Ok(view(a, true))
}

pub fn render_show(a: &AlertView) -> String {
    let mut out = format!("alert {}: {} [{} {}]\n", a.id, a.title, a.severity, a.status);
    let line = |k: &str, v: &str| if v.is_empty() { String::new() } else { format!("  {k:<13} {v}\n") };
    out += &line("source", &a.source);
    if let Some(d) = &a.detail {
        out += &line("format", &d.kind);
        out += &line("fingerprint", &d.fingerprint);
        let place = format!(
            "site {} host {} address {} agent {}",
            dash(&a.site),
            dash(&a.host),
            dash(&d.address),
            dash(&d.agent)
        );
        out += &line("place", &place);
        out += &line("placed by", &d.placed_by);
        if !d.asset.is_empty() {
            out += &line("asset", &format!("{} (office {}, owner {})", d.asset, dash(&d.office), dash(&d.owner)));
        }
        out += &line("link", &d.link);
        out += &line("seen", &format!("{} times, first {}, last {}", a.count, a.first_seen, a.last_seen));
        out += &line("assignee", &a.assignee);
        out += &line("acknowledged", d.acknowledged.as_deref().unwrap_or(""));
        out += &line("closed", d.closed.as_deref().unwrap_or(""));
        if a.escalation > 0 {
            out += &line("escalation", &format!("level {}", a.escalation));
        }
        if let Some(s) = a.silenced_by {
            out += &line("silenced by", &s.to_string());
        }
        if let Some(i) = a.incident {
            out += &line("incident", &format!("{i}: {}", a.incident_title));
        }
        for (k, v) in &d.labels {
            out += &line(&format!("label {k}"), v);
        }
        if !d.description.is_empty() {
            out += &format!("  description\n    {}\n", d.description);
        }
        out += "  history\n";
        for (at, who, what) in &d.history {
            out += &format!("    {at}  {who:<20} {what}\n");
        }
    }
    out
}

/// An incident as listed.
#[derive(Serialize)]
pub struct IncidentLine {
    pub id: u64,
    pub title: String,
    pub kind: String,
    pub sites: Vec<String>,
    pub started: String,
    pub ended: Option<String>,
    pub alerts: Vec<u64>,
    pub more: u64,
    pub ticket: String,
}

/// `alerts incidents`.
pub async fn incidents(client: &Client, limit: u32) -> Result<Vec<IncidentLine>> {
    let r = client.alerts().await?.list_incidents(pb::ListIncidentsRequest { limit }).await?.into_inner();
    Ok(r.incidents
        .into_iter()
        .map(|i| IncidentLine {
            id: i.id,
            title: i.title,
            kind: i.event_kind,
            sites: i.sites,
            started: format_ms(i.started_ms),
            ended: (i.ended_ms > 0).then(|| format_ms(i.ended_ms)),
            alerts: i.alerts,
            more: i.more,
            ticket: i.ticket,
        })
        .collect())
}

pub fn render_incidents(lines: &[IncidentLine]) -> String {
    let mut out = format!("{:>4}  {:>6}  {:<10} {}\n", "ID", "ALERTS", "TICKET", "TITLE");
    for i in lines {
        let n = i.alerts.len() as u64 + i.more;
        out += &format!("{:>4}  {:>6}  {:<10} {}\n", i.id, n, dash(&i.ticket), i.title);
        let ids: Vec<String> = i.alerts.iter().take(20).map(u64::to_string).collect();
        out += &format!("      alerts {}{}\n", ids.join(" "), if n > 20 { " ..." } else { "" });
    }
    out
}

/// `alerts ack|assign|escalate|comment|resolve|false-positive|reopen IDS...`.
pub async fn triage(client: &Client, ids: Vec<u64>, action: &str, text: &str) -> Result<String> {
    let req = pb::TriageRequest { ids, action: action.into(), text: text.into() };
    let r = client.alerts().await?.triage(req).await?.into_inner();
    Ok(format!("{} (log index {})", r.message, r.log_index))
}

/// `alerts silence add`.
pub async fn silence(
    client: &Client,
    matchers: Vec<String>,
    starts_ms: u64,
    ends_ms: u64,
    reason: &str,
) -> Result<String> {
    let req = pb::PutSilenceRequest { matchers, starts_ms, ends_ms, reason: reason.into() };
    let r = client.alerts().await?.put_silence(req).await?.into_inner();
    Ok(format!("{} (log index {})", r.message, r.log_index))
}

/// `alerts silence expire`.
pub async fn expire_silence(client: &Client, id: u64) -> Result<String> {
    let r = client.alerts().await?.expire_silence(pb::ExpireSilenceRequest { id }).await?.into_inner();
    Ok(format!("{} (log index {})", r.message, r.log_index))
}

/// A silence as listed.
#[derive(Serialize)]
pub struct SilenceLine {
    pub id: u64,
    pub state: String,
    pub matchers: Vec<String>,
    pub starts: String,
    pub ends: String,
    pub reason: String,
    pub created_by: String,
}

/// `alerts silence list`.
pub async fn silences(client: &Client) -> Result<Vec<SilenceLine>> {
    let r = client.alerts().await?.list_silences(pb::ListSilencesRequest {}).await?.into_inner();
    let now = crate::context::now_ms();
    Ok(r.silences
        .into_iter()
        .map(|s| {
            let end = if s.expired_ms > 0 { s.expired_ms.min(s.ends_ms) } else { s.ends_ms };
            let state = if now < s.starts_ms {
                "pending"
            } else if now < end {
                "active"
            } else {
                "ended"
            };
            SilenceLine {
                id: s.id,
                state: state.into(),
                matchers: s.matchers,
                starts: format_ms(s.starts_ms),
                ends: format_ms(end),
                reason: s.reason,
                created_by: s.created_by,
            }
        })
        .collect())
}

pub fn render_silences(lines: &[SilenceLine]) -> String {
    let mut out = format!("{:>4}  {:<8} {:<24} {:<24} {:<12} {}\n", "ID", "STATE", "ENDS", "BY", "REASON", "MATCHERS");
    for s in lines {
        out += &format!(
            "{:>4}  {:<8} {:<24} {:<24} {:<12} {}\n",
            s.id,
            s.state,
            s.ends,
            s.created_by,
            s.reason,
            s.matchers.join(", ")
        );
    }
    out
}

/// A duration such as `90s`, `30m`, `2h` or `1d`, in milliseconds.
pub fn parse_duration_ms(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("`{s}`: expected a number and a unit, e.g. 30m, 2h, 1d"))?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("`{s}`: the unit is one of ms, s, m, h, d")),
    };
    n.checked_mul(unit_ms).filter(|&ms| ms <= 366 * 86_400_000).ok_or_else(|| format!("`{s}`: at most a year"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_refuse() {
        assert_eq!(parse_duration_ms("90s"), Ok(90_000));
        assert_eq!(parse_duration_ms("2h"), Ok(7_200_000));
        assert!(parse_duration_ms("2").unwrap_err().contains("unit"));
        assert!(parse_duration_ms("h").is_err());
        assert!(parse_duration_ms("400d").unwrap_err().contains("year"));
        assert!(parse_duration_ms("99999999999999999999d").is_err());
    }

    #[test]
    fn tokens_are_random_and_well_formed() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 6 + 64);
        assert!(a.starts_with("triad_"));
    }
}
