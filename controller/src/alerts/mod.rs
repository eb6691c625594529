//! Alert parsers, one file per format, and what they share: each turns what a source sent into
//! [`IncomingAlert`]s on one severity scale (`severity.rs`) with a stable fingerprint
//! (`fingerprint.rs`), or into a [`ParseError`] that names what is wrong. Nothing here does I/O:
//! the edges (`api/ingest`) receive and authenticate, the state deduplicates.

pub mod alertmanager;
pub mod fingerprint;
pub mod generic;
pub mod severity;
pub mod syslog;
#[cfg(test)]
mod tests;
mod text;
pub mod timestamp;
pub mod wazuh;

pub use crate::state::alerts::{IncomingAlert, Severity, SourceKind};
pub use text::{bounded, clean_labels};

/// Longest title kept, in bytes (longer ones are cut, marked with `…`).
pub const MAX_TITLE: usize = 512;
/// Longest description kept, in bytes.
pub const MAX_DESCRIPTION: usize = 8 * 1024;
/// Most labels kept on one alert.
pub const MAX_LABELS: usize = 64;
/// Longest label name, in bytes; longer names are dropped.
pub const MAX_LABEL_NAME: usize = 128;
/// Longest label value kept, in bytes.
pub const MAX_LABEL_VALUE: usize = 1024;
/// Most alerts one request may carry.
pub const MAX_ALERTS_PER_REQUEST: usize = 10_000;

/// Why a payload was refused. Nothing of a refused payload is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, or not of the expected shape; serde's message names the line and column.
    #[error("malformed JSON: {0}")]
    Json(String),
    /// A required field is missing or empty.
    #[error("missing field `{0}`")]
    Missing(String),
    /// A field has a value that cannot be used.
    #[error("field `{field}`: {why}")]
    Invalid { field: String, why: String },
    /// More alerts in one request than [`MAX_ALERTS_PER_REQUEST`].
    #[error("{count} alerts in one request; at most {max}")]
    TooMany { count: usize, max: usize },
    /// Nothing to ingest.
    #[error("no alerts in the payload")]
    Empty,
}

impl ParseError {
    /// A short, bounded name for the `reason` label of `triad_alerts_rejected_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::Json(_) => "malformed",
            ParseError::Missing(_) => "missing_field",
            ParseError::Invalid { .. } => "invalid_field",
            ParseError::TooMany { .. } => "too_many",
            ParseError::Empty => "empty",
        }
    }

    fn invalid(field: &str, why: impl Into<String>) -> ParseError {
        ParseError::Invalid { field: field.to_string(), why: why.into() }
    }
}

impl From<serde_json::Error> for ParseError {
    fn from(e: serde_json::Error) -> Self {
        ParseError::Json(e.to_string())
    }
}

/// Parses a body holding one `T` or an array of them, at most [`MAX_ALERTS_PER_REQUEST`].
fn one_or_many<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<Vec<T>, ParseError> {
    // Not an untagged enum: that would hide serde's message (line, column, field) on errors.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let items = match first {
        Some(b'[') => serde_json::from_slice::<Vec<T>>(body)?,
        Some(_) => vec![serde_json::from_slice::<T>(body)?],
        None => return Err(ParseError::Empty),
    };
    check_count(items.len())?;
    Ok(items)
}

fn check_count(count: usize) -> Result<(), ParseError> {
    match count {
        0 => Err(ParseError::Empty),
        n if n > MAX_ALERTS_PER_REQUEST => Err(ParseError::TooMany { count: n, max: MAX_ALERTS_PER_REQUEST }),
        _ => Ok(()),
    }
}

/// The host part of `host:port`, `[v6]:port` or a bare host, and whether it is an IP address.
pub fn split_instance(instance: &str) -> (String, bool) {
    let s = instance.trim();
    if let Ok(addr) = s.parse::<std::net::SocketAddr>() {
        return (addr.ip().to_string(), true);
    }
    if let Ok(ip) = s.trim_matches(|c| c == '[' || c == ']').parse::<std::net::IpAddr>() {
        return (ip.to_string(), true);
    }
    let host = match s.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => s,
    };
    (host.to_string(), false)
}
