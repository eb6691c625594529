//! Triad's own JSON form (`/ingest/generic`), for any sender that can post JSON: one alert, or
//! an array of them. Unknown fields are refused, so a misspelt field is an error rather than
//! lost.
//!
//! ```json
//! {
//!   "title": "Anti-DDoS: SYN flood mitigated on the Internet uplink",   (required)
//!   "severity": "high",                 (required: info, low, medium, high or critical)
//!   "description": "12 Gbit/s from 4,096 sources",
//!   "fingerprint": "ddos-uplink-1",     (default: a digest of title, host, address, site, labels)
//!   "labels": {"device": "ddos-1"},
//!   "site": "dc", "host": "edge-fw-1", "address": "10.1.0.1",
//!   "time": "2026-12-06T14:02:00Z",     (RFC 3339; default: the receipt time)
//!   "resolved": false                   (true resolves the alert with the same fingerprint)
//! }
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{bounded, clean_labels, fingerprint, timestamp};
use super::{IncomingAlert, ParseError, Severity, SourceKind, MAX_DESCRIPTION, MAX_TITLE};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenericAlert {
    title: Option<String>,
    severity: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    fingerprint: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    site: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    resolved: bool,
}

/// Parses a body of one alert or an array of them; `now_ms` stands in for a missing time.
pub fn parse(body: &[u8], now_ms: u64) -> Result<Vec<IncomingAlert>, ParseError> {
    let alerts: Vec<GenericAlert> = super::one_or_many(body)?;
    alerts.into_iter().enumerate().map(|(i, a)| convert(i, a, now_ms)).collect()
}

fn convert(i: usize, a: GenericAlert, now_ms: u64) -> Result<IncomingAlert, ParseError> {
    let field = |f: &str| format!("[{i}].{f}");
    let title = a.title.filter(|t| !t.trim().is_empty()).ok_or_else(|| ParseError::Missing(field("title")))?;
    let severity_name = a.severity.ok_or_else(|| ParseError::Missing(field("severity")))?;
    let severity: Severity = severity_name.trim().to_ascii_lowercase().parse().map_err(|_| {
        ParseError::invalid(
            &field("severity"),
            format!("`{}`: expected one of {}", bounded(&severity_name, 32), Severity::names()),
        )
    })?;
    let at_ms = match a.time.as_deref() {
        None => now_ms,
        Some(t) => timestamp::parse_ms(t).ok_or_else(|| {
            ParseError::invalid(&field("time"), format!("`{}` is not an RFC 3339 time", bounded(t, 64)))
        })?,
    };
    let address = match a.address.trim() {
        "" => String::new(),
        addr => addr
            .parse::<std::net::IpAddr>()
            .map_err(|_| {
                ParseError::invalid(&field("address"), format!("`{}` is not an IP address", bounded(addr, 64)))
            })?
            .to_string(),
    };
    let labels = clean_labels(a.labels);
    let (title, host, site) = (bounded(&title, MAX_TITLE), bounded(&a.host, 255), bounded(&a.site, 64));
    let fingerprint = if a.fingerprint.trim().is_empty() {
        let mut fields = vec![title.as_str(), host.as_str(), address.as_str(), site.as_str()];
        fields.extend(labels.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]));
        fingerprint::of("generic", &fields)
    } else {
        bounded(&a.fingerprint, 128)
    };
    Ok(IncomingAlert {
        kind: SourceKind::Generic,
        fingerprint,
        severity,
        title,
        description: bounded(&a.description, MAX_DESCRIPTION),
        labels,
        site,
        host,
        address,
        at_ms,
        resolved: a.resolved,
        occurrences: 1,
    })
}
