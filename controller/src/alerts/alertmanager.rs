//! Alertmanager's webhook (`/ingest/alertmanager`), version 4 as its documentation describes it
//! (`webhook_config`): a group of alerts, each with `status`, `labels`, `annotations`,
//! `startsAt`, `endsAt` and `fingerprint`. Fields not named here are accepted and ignored.
//!
//! - fingerprint: Alertmanager's own; when absent, a digest of the sorted labels;
//! - title: the `summary` annotation, else the `alertname` label;
//! - description: the `description` annotation, else `message`;
//! - severity: the `severity` label (`severity.rs`);
//! - host: the `host`, `hostname` or `nodename` label, else the host part of `instance`;
//!   address: the `instance`'s host part when it is an IP address;
//! - site: the `site` label, else `datacenter`;
//! - time: `startsAt` (firing) or `endsAt` (resolved), else the receipt time;
//! - a `resolved` alert resolves the Triad alert with the same fingerprint.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{bounded, clean_labels, fingerprint, severity, timestamp};
use super::{IncomingAlert, ParseError, SourceKind, MAX_DESCRIPTION, MAX_TITLE};

#[derive(Deserialize)]
struct Webhook {
    version: String,
    alerts: Vec<WebhookAlert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookAlert {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    starts_at: String,
    #[serde(default)]
    ends_at: String,
    #[serde(default)]
    fingerprint: String,
}

/// Parses one webhook body; `now_ms` stands in for missing times.
pub fn parse(body: &[u8], now_ms: u64) -> Result<Vec<IncomingAlert>, ParseError> {
    let hook: Webhook = serde_json::from_slice(body)?;
    if hook.version != "4" {
        return Err(ParseError::invalid(
            "version",
            format!("`{}`: only version 4 is understood", bounded(&hook.version, 16)),
        ));
    }
    super::check_count(hook.alerts.len())?;
    hook.alerts.into_iter().enumerate().map(|(i, a)| convert(i, a, now_ms)).collect()
}

fn convert(i: usize, a: WebhookAlert, now_ms: u64) -> Result<IncomingAlert, ParseError> {
    let resolved = match a.status.as_str() {
        "firing" => false,
        "resolved" => true,
        other => {
            return Err(ParseError::invalid(
                &format!("alerts[{i}].status"),
                format!("`{}`: expected `firing` or `resolved`", bounded(other, 32)),
            ))
        }
    };
    if a.labels.is_empty() {
        return Err(ParseError::Missing(format!("alerts[{i}].labels")));
    }
    let label = |names: &[&str]| names.iter().find_map(|n| a.labels.get(*n).filter(|v| !v.trim().is_empty()));
    let fingerprint = if a.fingerprint.trim().is_empty() {
        let flat: Vec<&str> = a.labels.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]).collect();
        fingerprint::of("alertmanager", &flat)
    } else {
        bounded(&a.fingerprint, 64)
    };
    let (instance_host, is_ip) = label(&["instance"]).map(|i| super::split_instance(i)).unwrap_or_default();
    let host = label(&["host", "hostname", "nodename"]).cloned().unwrap_or_else(|| instance_host.clone());
    let title = a.annotations.get("summary").or_else(|| label(&["alertname"])).map(String::as_str).unwrap_or("alert");
    let description = a.annotations.get("description").or_else(|| a.annotations.get("message"));
    let at = if resolved { &a.ends_at } else { &a.starts_at };
    Ok(IncomingAlert {
        kind: SourceKind::Alertmanager,
        fingerprint,
        severity: severity::from_alertmanager_label(label(&["severity"]).map(String::as_str)),
        title: bounded(title, MAX_TITLE),
        description: description.map(|d| bounded(d, MAX_DESCRIPTION)).unwrap_or_default(),
        site: label(&["site", "datacenter"]).map(|s| bounded(s, 64)).unwrap_or_default(),
        host: bounded(&host, 255),
        address: if is_ip { instance_host } else { String::new() },
        at_ms: timestamp::parse_ms(at).unwrap_or(now_ms),
        resolved,
        occurrences: 1,
        labels: clean_labels(a.labels),
    })
}
