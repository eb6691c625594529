//! A syslog message's frame, in either of its two forms:
//!
//! - RFC 5424: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]`, `-` for
//!   a field left out; structured data `[id name="value" ...]`, where a value escapes `"`, `\`
//!   and `]` with a backslash; a MSG may begin with a UTF-8 byte-order mark;
//! - RFC 3164 (BSD): `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG`; the year is not sent (the
//!   receipt's is taken), and senders that leave out the time or the host are accepted.
//!
//! PRI is facility × 8 + severity (0-191).

use std::collections::BTreeMap;

use time::{Month, OffsetDateTime};

use crate::alerts::{timestamp, ParseError};

/// A parsed syslog frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub facility: u8,
    pub severity: u8,
    /// The sender's time, ms since the Unix epoch, when it sent one that could be read.
    pub at_ms: Option<u64>,
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
    pub msgid: String,
    /// Structured data (RFC 5424), flattened to `sdid.name` → value.
    pub structured: BTreeMap<String, String>,
    pub msg: String,
    /// `5424` or `3164`.
    pub rfc: u16,
}

/// Parses one message (without its transport framing).
pub fn parse(line: &str, now_ms: u64) -> Result<Message, ParseError> {
    let line = line.trim_end_matches(['\n', '\r', '\0']);
    let rest = line.strip_prefix('<').ok_or_else(|| ParseError::invalid("syslog", "does not start with `<PRI>`"))?;
    let close = rest
        .find('>')
        .filter(|&i| (1..=3).contains(&i))
        .ok_or_else(|| ParseError::invalid("syslog.pri", "no `<PRI>`"))?;
    let pri: u8 = rest[..close]
        .parse()
        .ok()
        .filter(|p| *p <= 191)
        .ok_or_else(|| ParseError::invalid("syslog.pri", format!("`{}` is not 0-191", &rest[..close])))?;
    let body = &rest[close + 1..];
    let mut m = match body.strip_prefix("1 ") {
        Some(after) => rfc5424(after)?,
        None => rfc3164(body, now_ms),
    };
    m.facility = pri / 8;
    m.severity = pri % 8;
    Ok(m)
}

fn nil(s: &str) -> String {
    if s == "-" {
        String::new()
    } else {
        s.to_string()
    }
}

fn rfc5424(s: &str) -> Result<Message, ParseError> {
    let mut parts = s.splitn(6, ' ');
    let mut field = |name: &str| parts.next().ok_or_else(|| ParseError::Missing(format!("syslog.{name}")));
    let ts = field("timestamp")?;
    let (hostname, app_name, procid, msgid) =
        (field("hostname")?, field("app_name")?, field("procid")?, field("msgid")?);
    let rest = parts.next().unwrap_or("-");
    let at_ms = match ts {
        "-" => None,
        t => Some(
            timestamp::parse_ms(t)
                .ok_or_else(|| ParseError::invalid("syslog.timestamp", format!("`{t}` is not RFC 3339")))?,
        ),
    };
    let (structured, msg) = structured_data(rest)?;
    Ok(Message {
        at_ms,
        hostname: nil(hostname),
        app_name: nil(app_name),
        procid: nil(procid),
        msgid: nil(msgid),
        structured,
        msg: msg.trim_start_matches('\u{feff}').trim().to_string(),
        rfc: 5424,
        ..Message::default()
    })
}

/// Structured data at the start of `s`, and the message after it.
fn structured_data(s: &str) -> Result<(BTreeMap<String, String>, &str), ParseError> {
    let mut out = BTreeMap::new();
    if let Some(msg) = s.strip_prefix('-') {
        return Ok((out, msg.strip_prefix(' ').unwrap_or(msg)));
    }
    let bad = |why: &str| ParseError::invalid("syslog.structured_data", why.to_string());
    let mut rest = s;
    while let Some(element) = rest.strip_prefix('[') {
        let id_end = element.find([' ', ']']).ok_or_else(|| bad("an element is not closed"))?;
        let id = &element[..id_end];
        let mut r = &element[id_end..];
        loop {
            r = r.trim_start_matches(' ');
            if let Some(after) = r.strip_prefix(']') {
                rest = after;
                break;
            }
            let eq = r.find("=\"").ok_or_else(|| bad("a parameter is not name=\"value\""))?;
            let name = &r[..eq];
            let mut value = String::new();
            let mut chars = r[eq + 2..].char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, c @ ('"' | '\\' | ']'))) => value.push(c),
                        Some((_, c)) => {
                            value.push('\\');
                            value.push(c);
                        }
                        None => return Err(bad("a value is not closed")),
                    },
                    Some((i, '"')) => break i,
                    Some((_, c)) => value.push(c),
                    None => return Err(bad("a value is not closed")),
                }
            };
            if out.len() < 64 {
                out.insert(format!("{id}.{name}"), value);
            }
            r = &r[eq + 2 + end + 1..];
        }
    }
    Ok((out, rest.strip_prefix(' ').unwrap_or(rest)))
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// `Mmm dd hh:mm:ss` at the start of `s`, in the year of `now_ms` (UTC), and what follows it.
fn bsd_time(s: &str, now_ms: u64) -> Option<(u64, &str)> {
    let head = s.get(..15)?;
    let month = MONTHS.iter().position(|m| head.starts_with(m))? as u8 + 1;
    let day: u8 = head[4..6].trim().parse().ok()?;
    let (h, mi, se): (u8, u8, u8) = (head[7..9].parse().ok()?, head[10..12].parse().ok()?, head[13..15].parse().ok()?);
    let now = OffsetDateTime::from_unix_timestamp((now_ms / 1000) as i64).ok()?;
    let date = time::Date::from_calendar_date(now.year(), Month::try_from(month).ok()?, day).ok()?;
    let t = date.with_hms(h, mi, se).ok()?.assume_utc();
    Some(((t.unix_timestamp() * 1000) as u64, s[15..].strip_prefix(' ').unwrap_or(&s[15..])))
}

fn rfc3164(s: &str, now_ms: u64) -> Message {
    let (at_ms, rest) = match bsd_time(s, now_ms) {
        Some((t, rest)) => (Some(t), rest),
        None => (None, s),
    };
    // HOSTNAME, unless the next word is already the tag (`tag:` or `tag[pid]:`).
    let first = rest.split(' ').next().unwrap_or("");
    let (hostname, rest) = if at_ms.is_some() && !first.ends_with(':') && !first.contains('[') && !first.is_empty() {
        (first.to_string(), rest[first.len()..].trim_start())
    } else {
        (String::new(), rest)
    };
    let (tag, procid, msg) = match rest.find(": ") {
        Some(colon) if !rest[..colon].contains(' ') => {
            let tag = &rest[..colon];
            let (name, pid) = match tag.split_once('[') {
                Some((n, p)) => (n, p.trim_end_matches(']')),
                None => (tag, ""),
            };
            (name.to_string(), pid.to_string(), &rest[colon + 2..])
        }
        _ => (String::new(), String::new(), rest),
    };
    Message { at_ms, hostname, app_name: tag, procid, msg: msg.trim().to_string(), rfc: 3164, ..Message::default() }
}
