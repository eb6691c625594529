//! The alerts table: security alerts deduplicated by fingerprint, their triage, and silences.
//!
//! Alerts arrive in batches ([`Command::IngestAlerts`](super::Command::IngestAlerts)) already
//! parsed and normalised by the edge (`alerts/`); applying a batch deduplicates them against what
//! is recorded, places them (host or address → agent → site, `locate.rs`) and mutes those a
//! silence matches. Triage actions change one alert or many at once; each is recorded in the
//! alert's own history (bounded) as well as in the audit log (complete, on disk).

mod apply;
mod archive;
mod incidents;
mod locate;
mod notifications;
mod silences;
mod sources;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use incidents::{Incident, Incidents, InfraEvent, InfraKind, WINDOW_MS as CORRELATION_WINDOW_MS};
pub use locate::Place;
pub use notifications::{Delivery, Notification, NotifyState, Subject};
pub use silences::{MatchOp, Matcher, Silence};
pub use sources::{IngestSource, TokenDigest};

/// Notes kept in an alert's own history; older ones are in the audit log.
pub const HISTORY_KEPT: usize = 50;

crate::named_enum! {
    /// The one severity scale every source is mapped onto (`alerts/severity.rs` documents how).
    pub enum Severity: "severity" {
        /// Worth recording, nothing to do.
        Info = "info",
        Low = "low",
        Medium = "medium",
        High = "high",
        /// Escalated when not acknowledged in time.
        Critical = "critical",
    }
}

crate::named_enum! {
    /// Where an alert stands in triage.
    pub enum AlertStatus: "alert status" {
        /// Firing, nobody has taken it yet.
        Open = "open",
        /// Someone is on it.
        Acknowledged = "acknowledged",
        /// Over: resolved by its source or by an analyst.
        Resolved = "resolved",
        /// Closed as not a real problem; repeats are counted but do not reopen it.
        FalsePositive = "false-positive",
    }
}

impl AlertStatus {
    /// Resolved or a false positive.
    pub fn is_closed(self) -> bool {
        matches!(self, AlertStatus::Resolved | AlertStatus::FalsePositive)
    }
}

crate::named_enum! {
    /// The format an alert came in.
    pub enum SourceKind: "source kind" {
        /// Prometheus Alertmanager's webhook (version 4).
        Alertmanager = "alertmanager",
        /// Wazuh's alert JSON.
        Wazuh = "wazuh",
        /// Triad's own JSON form (`/ingest/generic`).
        Generic = "generic",
        /// Syslog (RFC 5424 or RFC 3164), with or without a CEF payload.
        Syslog = "syslog",
        /// Raised by Triad itself (a link down; later an asset's warning): never received.
        Triad = "triad",
    }
}

/// One alert as a source reported it, normalised by the edge: what `IngestAlerts` carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncomingAlert {
    pub kind: SourceKind,
    /// Alertmanager's own; for the other sources a digest of their identifying fields.
    pub fingerprint: String,
    pub severity: Severity,
    pub title: String,
    pub description: String,
    pub labels: BTreeMap<String, String>,
    /// Where the source says it happened (any of them may be empty).
    pub site: String,
    pub host: String,
    pub address: String,
    /// When the source says it happened (ms since the Unix epoch); the receipt time when it
    /// does not say.
    pub at_ms: u64,
    /// The source says it is over (Alertmanager's `resolved`).
    pub resolved: bool,
    /// How many reports this stands for: the intake merges a source's repeats of one alert
    /// received within its window into one (keeping the latest time and the highest severity).
    pub occurrences: u64,
}

impl IncomingAlert {
    /// One of Triad's own alerts (a link down, a service not healthy, a role change's step that
    /// failed), with no labels, place or resolution yet: callers add theirs with struct update.
    pub fn own(fingerprint: String, severity: Severity, title: String, description: String, at_ms: u64) -> Self {
        IncomingAlert {
            kind: SourceKind::Triad,
            fingerprint,
            severity,
            title,
            description,
            labels: BTreeMap::new(),
            site: String::new(),
            host: String::new(),
            address: String::new(),
            at_ms,
            resolved: false,
            occurrences: 1,
        }
    }
}

/// One source's alerts within an intake batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceAlerts {
    /// The configured source's name.
    pub source: String,
    pub events: Vec<IncomingAlert>,
}

/// How far the state has recorded one controller's intake journal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalMark {
    /// The journal's last sequence number recorded.
    pub through: u64,
    /// When (the proposer's clock) that batch was recorded: the oldest marks are forgotten
    /// first when there are more than [`MAX_JOURNALS`].
    pub at_ms: u64,
}

/// Intake journals whose marks the state keeps. A controller makes a new journal only when its
/// data directory is made anew, so this many covers years of rebuilt controllers; a forgotten
/// journal's replays would be recorded again, which only a journal unused for that long risks.
pub const MAX_JOURNALS: usize = 64;

#[cfg(test)]
impl IncomingAlert {
    /// A generic firing alert for unit tests: title and fingerprint `fp`, nowhere in particular.
    pub(crate) fn for_test(fp: &str, at_ms: u64, severity: Severity) -> IncomingAlert {
        IncomingAlert {
            kind: SourceKind::Generic,
            ..IncomingAlert::own(fp.into(), severity, fp.into(), String::new(), at_ms)
        }
    }
}

/// One line of an alert's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertNote {
    pub at_ms: u64,
    /// Who (a person, `controller-N` for Triad, or the source's name).
    pub actor: String,
    /// What happened, e.g. `acknowledged`, `comment: looking at the firewall`.
    pub text: String,
}

/// A deduplicated alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: u64,
    /// The configured source it came from (e.g. `prometheus`, `wazuh`, `syslog`).
    pub source: String,
    pub kind: SourceKind,
    pub fingerprint: String,
    /// The highest severity any occurrence had.
    pub severity: Severity,
    pub title: String,
    pub description: String,
    pub labels: BTreeMap<String, String>,
    /// Where it is, as reported and as Triad placed it.
    pub place: Place,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    /// When it last opened: first seen, or reopened (notifications are decided per opening).
    pub opened_ms: u64,
    /// Occurrences (firing reports) received.
    pub count: u64,
    pub status: AlertStatus,
    pub assignee: Option<String>,
    /// How many escalation levels have been notified (0: none).
    pub escalation: u32,
    pub acknowledged_ms: Option<u64>,
    /// When it was resolved or marked a false positive.
    pub closed_ms: Option<u64>,
    /// The silence that muted it when it (re)opened, if any.
    pub silenced_by: Option<u64>,
    /// The incident it was grouped into, if any.
    pub incident: Option<u64>,
    /// The newest [`HISTORY_KEPT`] notes, oldest first.
    pub history: Vec<AlertNote>,
}

impl Alert {
    fn note(&mut self, at_ms: u64, actor: &str, text: impl Into<String>) {
        self.history.push(AlertNote { at_ms, actor: actor.to_string(), text: text.into() });
        if self.history.len() > HISTORY_KEPT {
            let extra = self.history.len() - HISTORY_KEPT;
            self.history.drain(..extra);
        }
    }
}

/// What an analyst (or the escalation timer) does to alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TriageAction {
    /// Take it: open → acknowledged (already acknowledged: nothing to do).
    Acknowledge,
    /// Give it to someone (acknowledges it when open).
    Assign { to: String },
    /// Raise it to the next level (`to_level`: the level notified), with why.
    Escalate { to_level: u32, reason: String },
    /// A comment in its history.
    Comment { text: String },
    /// Close it as dealt with.
    Resolve { reason: String },
    /// Close it as not a real problem.
    FalsePositive { reason: String },
    /// Open a closed alert again.
    Reopen { reason: String },
}

impl TriageAction {
    /// A short description for the audit log and the history.
    pub fn describe(&self) -> String {
        match self {
            TriageAction::Acknowledge => "acknowledge".into(),
            TriageAction::Assign { to } => format!("assign to {to}"),
            TriageAction::Escalate { to_level, reason } => format!("escalate to level {to_level}: {reason}"),
            TriageAction::Comment { text } => format!("comment: {text}"),
            TriageAction::Resolve { reason } => format!("resolve: {reason}"),
            TriageAction::FalsePositive { reason } => format!("mark false positive: {reason}"),
            TriageAction::Reopen { reason } => format!("reopen: {reason}"),
        }
    }
}

/// The alerts, their fingerprint index and the silences.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertBook {
    pub alerts: BTreeMap<u64, Alert>,
    /// `source` + NUL + `fingerprint` → the alert's id.
    pub by_fingerprint: BTreeMap<String, u64>,
    pub last_id: u64,
    pub silences: BTreeMap<u64, Silence>,
    pub last_silence_id: u64,
    /// Configured ingest sources, by name.
    pub sources: BTreeMap<String, IngestSource>,
    /// Every batch's outcome, added up since the first: deduplication as a counter.
    pub totals: IngestOutcome,
    /// Alerts moved to the on-disk history so far.
    pub archived: u64,
    /// Alerts an apply has just moved out of memory, for the store to write to disk in the same
    /// step (never serialised; the store empties it after every batch of entries).
    #[serde(skip)]
    pub outbox: Vec<Alert>,
    /// Notifications decided and their deliveries (the newest 10000).
    pub notifications: BTreeMap<u64, Notification>,
    pub last_notification_id: u64,
    /// Each controller's intake journal (by its id): how far it is recorded, so that a batch
    /// proposed twice (a retry, a replay after a restart) is applied once.
    pub journals: BTreeMap<u64, JournalMark>,
}

/// The key of the fingerprint index.
pub fn fingerprint_key(source: &str, fingerprint: &str) -> String {
    format!("{source}\u{0}{fingerprint}")
}

/// How one ingested batch went, for the audit log and the edge's answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestOutcome {
    /// Alerts recorded for the first time.
    pub new: u64,
    /// Occurrences of alerts already recorded (deduplicated).
    pub repeated: u64,
    /// Closed alerts opened again by a new occurrence.
    pub reopened: u64,
    /// Alerts resolved by their source.
    pub resolved: u64,
    /// Resolutions of alerts never recorded (or already closed): nothing to do.
    pub ignored: u64,
    /// New or reopened alerts a silence muted.
    pub silenced: u64,
}

impl IngestOutcome {
    fn add(&mut self, o: &IngestOutcome) {
        self.new += o.new;
        self.repeated += o.repeated;
        self.reopened += o.reopened;
        self.resolved += o.resolved;
        self.ignored += o.ignored;
        self.silenced += o.silenced;
    }

    /// Each count with its name, for metrics.
    pub fn named(&self) -> [(&'static str, u64); 6] {
        [
            ("new", self.new),
            ("repeated", self.repeated),
            ("reopened", self.reopened),
            ("resolved", self.resolved),
            ("ignored", self.ignored),
            ("silenced", self.silenced),
        ]
    }
}

impl std::fmt::Display for IngestOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} new, {} repeated, {} reopened, {} resolved, {} ignored, {} silenced",
            self.new, self.repeated, self.reopened, self.resolved, self.ignored, self.silenced
        )
    }
}
