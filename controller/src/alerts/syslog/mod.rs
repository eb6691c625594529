//! Syslog (RFC 5424 and RFC 3164, `message.rs`), with CEF payloads (`cef.rs`), to alerts; and the
//! TCP framings of RFC 6587 (`framing.rs`).
//!
//! - a message whose text holds a CEF record (`CEF:0|...`) is that record: title its Name,
//!   severity its Severity (`severity.rs`), host `dvchost` (else the syslog host, else the
//!   sender), address `dvc` (else the sender's address), time `rt` (else the syslog time);
//!   fingerprint: a digest of vendor, product, signature id, host and `src`, so one signature
//!   on one device from one source address is one alert;
//! - any other message: title its text (its app name first), severity the syslog severity,
//!   host the syslog host (else the sender), address the sender's; fingerprint: a digest of
//!   host, app name, MSGID and text, so identical lines are one alert;
//! - labels: facility, app, procid, msgid, the structured data (`sdid.name`), and for CEF the
//!   vendor, product, device version, signature id and every extension field.

pub mod cef;
pub mod framing;
pub mod message;

use std::net::IpAddr;

use super::{bounded, clean_labels, fingerprint, severity, timestamp};
use super::{IncomingAlert, ParseError, Severity, SourceKind, MAX_DESCRIPTION, MAX_TITLE};

/// The longest message taken, in bytes (UDP datagrams and TCP frames alike).
pub const MAX_MESSAGE: usize = 64 * 1024;

/// One syslog message from `sender`, as an alert.
pub fn to_alert(line: &str, sender: IpAddr, now_ms: u64) -> Result<IncomingAlert, ParseError> {
    if line.len() > MAX_MESSAGE {
        return Err(ParseError::invalid("syslog", format!("{} bytes: at most {MAX_MESSAGE}", line.len())));
    }
    let m = message::parse(line, now_ms)?;
    let mut labels = vec![("facility".to_string(), m.facility.to_string())];
    for (k, v) in [("app", &m.app_name), ("procid", &m.procid), ("msgid", &m.msgid)] {
        if !v.is_empty() {
            labels.push((k.into(), v.clone()));
        }
    }
    labels.extend(m.structured.iter().map(|(k, v)| (k.clone(), v.clone())));
    let sender_ip = sender.to_string();
    let host = if m.hostname.is_empty() { sender_ip.clone() } else { m.hostname.clone() };
    let cef_at = line.find("CEF:").filter(|&i| line[i + 4..].starts_with(|c: char| c.is_ascii_digit()));
    let Some(cef_at) = cef_at else {
        let text = if m.app_name.is_empty() { m.msg.clone() } else { format!("{}: {}", m.app_name, m.msg) };
        if text.trim().is_empty() {
            return Err(ParseError::Missing("syslog.msg".into()));
        }
        return Ok(IncomingAlert {
            kind: SourceKind::Syslog,
            fingerprint: fingerprint::of("syslog", &[&host, &m.app_name, &m.msgid, &m.msg]),
            severity: severity::from_syslog(m.severity),
            title: bounded(&text, MAX_TITLE),
            description: bounded(&m.msg, MAX_DESCRIPTION),
            labels: clean_labels(labels),
            site: String::new(),
            host: bounded(&host, 255),
            address: sender_ip,
            at_ms: m.at_ms.unwrap_or(now_ms),
            resolved: false,
            occurrences: 1,
        });
    };
    let c = cef::parse(&line[cef_at..])?;
    let sev = severity::from_cef(&c.severity).ok_or_else(|| {
        ParseError::invalid(
            "cef.severity",
            format!("`{}`: 0-10 or Low, Medium, High, Very-High", bounded(&c.severity, 20)),
        )
    })?;
    let ext = |k: &str| c.extension.get(k).map(String::as_str).unwrap_or("");
    let host = if ext("dvchost").is_empty() { host } else { ext("dvchost").to_string() };
    let address = ext("dvc").parse::<IpAddr>().map(|a| a.to_string()).unwrap_or(sender_ip);
    let at_ms = cef_time(ext("rt")).or(m.at_ms).unwrap_or(now_ms);
    labels.extend([
        ("cef_vendor".to_string(), c.vendor.clone()),
        ("cef_product".into(), c.product.clone()),
        ("cef_device_version".into(), c.device_version.clone()),
        ("cef_signature_id".into(), c.signature_id.clone()),
    ]);
    labels.extend(c.extension.iter().map(|(k, v)| (k.clone(), v.clone())));
    let title = if c.name.trim().is_empty() {
        format!("{} {} {}", c.vendor, c.product, c.signature_id)
    } else {
        c.name.clone()
    };
    Ok(IncomingAlert {
        kind: SourceKind::Syslog,
        fingerprint: fingerprint::of("cef", &[&c.vendor, &c.product, &c.signature_id, &host, ext("src")]),
        severity: sev,
        title: bounded(&title, MAX_TITLE),
        description: bounded(ext("msg"), MAX_DESCRIPTION),
        labels: {
            let mut l = clean_labels(labels);
            l.retain(|_, v| !v.is_empty());
            l
        },
        site: String::new(),
        host: bounded(&host, 255),
        address,
        at_ms,
        resolved: false,
        occurrences: 1,
    })
}

/// CEF's `rt`: milliseconds since the epoch, or a time in RFC 3339.
fn cef_time(rt: &str) -> Option<u64> {
    rt.parse::<u64>().ok().filter(|ms| *ms > 0).or_else(|| timestamp::parse_ms(rt))
}

/// Whether an alert of severity `s` passes `min`.
pub fn passes(s: Severity, min: Severity) -> bool {
    s >= min
}

#[cfg(test)]
mod tests;
