//! Silences: matchers with a start, an end and a reason. An alert that opens (or opens again)
//! while a silence matches it is recorded as usual but marked muted by it, so it notifies and
//! escalates nobody. A silence ends at its end time, or earlier when someone expires it.

use serde::{Deserialize, Serialize};

use super::{Alert, IncomingAlert};

crate::named_enum! {
    /// How a matcher compares.
    pub enum MatchOp: "match operator" {
        /// The field equals the value.
        Equal = "=",
        /// The field differs from the value (an absent field is empty).
        NotEqual = "!=",
    }
}

/// One condition of a silence: `field op value`. `field` is one of `source`, `kind`,
/// `severity`, `site`, `host`, `address`, `title`, or else a label name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matcher {
    pub field: String,
    pub op: MatchOp,
    pub value: String,
}

impl Matcher {
    /// Parses `field=value` or `field!=value`.
    pub fn parse(s: &str) -> Option<Matcher> {
        let (field, op, value) = match s.split_once("!=") {
            Some((f, v)) => (f, MatchOp::NotEqual, v),
            None => {
                let (f, v) = s.split_once('=')?;
                (f, MatchOp::Equal, v)
            }
        };
        let field = field.trim();
        let ok = !field.is_empty() && field.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        ok.then(|| Matcher { field: field.to_string(), op, value: value.trim().to_string() })
    }

    fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
        }
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{}", self.field, self.op, self.value)
    }
}

/// A silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub id: u64,
    /// Every matcher must match.
    pub matchers: Vec<Matcher>,
    pub starts_ms: u64,
    pub ends_ms: u64,
    pub reason: String,
    pub created_by: String,
    /// When someone ended it before its end time.
    pub expired_ms: Option<u64>,
}

impl Silence {
    /// Whether it mutes at `at_ms`.
    pub fn active_at(&self, at_ms: u64) -> bool {
        let end = self.expired_ms.map_or(self.ends_ms, |e| e.min(self.ends_ms));
        self.starts_ms <= at_ms && at_ms < end
    }

    /// Whether every matcher matches `alert` (as recorded, with its place) or `incoming`.
    pub fn matches(&self, alert: &Alert, incoming: &IncomingAlert) -> bool {
        self.matchers.iter().all(|m| {
            let value = match m.field.as_str() {
                "source" => alert.source.as_str(),
                "kind" => alert.kind.as_str(),
                "severity" => alert.severity.as_str(),
                "site" => alert.place.site.as_str(),
                "host" => alert.place.host.as_str(),
                "address" => alert.place.address.as_str(),
                "title" => alert.title.as_str(),
                label => incoming.labels.get(label).or_else(|| alert.labels.get(label)).map_or("", |v| v.as_str()),
            };
            m.matches(value)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_parse_and_refuse() {
        assert_eq!(
            Matcher::parse("site=dc"),
            Some(Matcher { field: "site".into(), op: MatchOp::Equal, value: "dc".into() })
        );
        assert_eq!(Matcher::parse(" alertname != Watchdog ").unwrap().op, MatchOp::NotEqual);
        assert_eq!(Matcher::parse("alertname!=Watchdog").unwrap().value, "Watchdog");
        assert_eq!(Matcher::parse("novalue"), None);
        assert_eq!(Matcher::parse("=dc"), None);
        assert_eq!(Matcher::parse("bad field=dc"), None);
    }

    #[test]
    fn a_silence_is_active_from_its_start_to_its_end_or_expiry() {
        let mut s = Silence {
            id: 1,
            matchers: vec![],
            starts_ms: 100,
            ends_ms: 200,
            reason: "r".into(),
            created_by: "a".into(),
            expired_ms: None,
        };
        assert!(!s.active_at(99) && s.active_at(100) && s.active_at(199) && !s.active_at(200));
        s.expired_ms = Some(150);
        assert!(s.active_at(149) && !s.active_at(150));
    }
}
