//! Wazuh's alert JSON (`/ingest/wazuh`), as written to `alerts.json` and sent by its
//! integrations: one alert, or an array of them. Fields not named here are ignored.
//!
//! - required: `rule.level` (0-15) and `rule.id` (a string or a number);
//! - fingerprint: a digest of `rule.id`, `agent.id`, `agent.name` and `data.srcip`: one rule
//!   firing on one agent from one source address is one alert, however often it repeats;
//! - title: `rule.description`, else `Wazuh rule ID`; description: `full_log`;
//! - severity: `rule.level` (`severity.rs`);
//! - host: `agent.name`; address: `agent.ip`;
//! - labels: `rule_id`, `rule_groups` (comma-separated), `agent_id`, `manager`, `location`,
//!   `srcip`, `srcuser`, `dstuser`, the MITRE ids, and the alert's `id`;
//! - time: `timestamp`, else the receipt time.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::{bounded, clean_labels, fingerprint, severity, timestamp};
use super::{IncomingAlert, ParseError, SourceKind, MAX_DESCRIPTION, MAX_TITLE};

#[derive(Deserialize)]
struct WazuhAlert {
    rule: Option<Rule>,
    #[serde(default)]
    agent: Agent,
    #[serde(default)]
    manager: Named,
    #[serde(default)]
    data: BTreeMap<String, Value>,
    #[serde(default)]
    full_log: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    timestamp: String,
    #[serde(default)]
    id: Value,
}

#[derive(Deserialize)]
struct Rule {
    level: Option<i64>,
    id: Option<Value>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    mitre: Mitre,
}

#[derive(Deserialize, Default)]
struct Mitre {
    #[serde(default)]
    id: Vec<String>,
}

#[derive(Deserialize, Default)]
struct Agent {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    ip: String,
}

#[derive(Deserialize, Default)]
struct Named {
    #[serde(default)]
    name: String,
}

/// A JSON scalar as text (`"5710"` and `5710` are the same rule id).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses a body of one alert or an array of them; `now_ms` stands in for a missing time.
pub fn parse(body: &[u8], now_ms: u64) -> Result<Vec<IncomingAlert>, ParseError> {
    let alerts: Vec<WazuhAlert> = super::one_or_many(body)?;
    alerts.into_iter().enumerate().map(|(i, a)| convert(i, a, now_ms)).collect()
}

fn convert(i: usize, a: WazuhAlert, now_ms: u64) -> Result<IncomingAlert, ParseError> {
    let at = |f: &str| format!("[{i}].rule.{f}");
    let rule = a.rule.ok_or_else(|| ParseError::Missing(format!("[{i}].rule")))?;
    let level = rule.level.ok_or_else(|| ParseError::Missing(at("level")))?;
    let severity = severity::from_wazuh_level(level)
        .ok_or_else(|| ParseError::invalid(&at("level"), format!("{level} is not a Wazuh level (0-15)")))?;
    let rule_id = rule.id.as_ref().and_then(scalar).ok_or_else(|| ParseError::Missing(at("id")))?;
    let data = |k: &str| a.data.get(k).and_then(scalar).unwrap_or_default();
    let srcip = data("srcip");
    let fingerprint = fingerprint::of("wazuh", &[&rule_id, &a.agent.id, &a.agent.name, &srcip]);
    let mut labels = vec![
        ("rule_id".to_string(), rule_id.clone()),
        ("rule_groups".into(), rule.groups.join(",")),
        ("agent_id".into(), a.agent.id.clone()),
        ("manager".into(), a.manager.name),
        ("location".into(), a.location),
        ("srcip".into(), srcip),
        ("srcuser".into(), data("srcuser")),
        ("dstuser".into(), data("dstuser")),
        ("mitre".into(), rule.mitre.id.join(",")),
        ("wazuh_id".into(), scalar(&a.id).unwrap_or_default()),
    ];
    labels.retain(|(_, v)| !v.is_empty());
    let title = if rule.description.trim().is_empty() { format!("Wazuh rule {rule_id}") } else { rule.description };
    Ok(IncomingAlert {
        kind: SourceKind::Wazuh,
        fingerprint,
        severity,
        title: bounded(&title, MAX_TITLE),
        description: bounded(&a.full_log, MAX_DESCRIPTION),
        labels: clean_labels(labels),
        site: String::new(),
        host: bounded(&a.agent.name, 255),
        address: a.agent.ip.parse::<std::net::IpAddr>().map(|ip| ip.to_string()).unwrap_or_default(),
        at_ms: timestamp::parse_ms(&a.timestamp).unwrap_or(now_ms),
        resolved: false,
        occurrences: 1,
    })
}
