//! `State::apply` for the alerts table: ingest (deduplicate, place, mute), triage and silences.

use super::{fingerprint_key, Alert, AlertStatus, IncomingAlert, IngestOutcome, Matcher, Silence, TriageAction};
use crate::state::{Command, Proposal, Rejection, Role, State};

/// Most alerts one triage command may name.
pub const MAX_TRIAGE_IDS: usize = 10_000;
/// Most matchers in one silence.
pub const MAX_MATCHERS: usize = 16;

impl State {
    pub(in crate::state) fn apply_alerts(&mut self, p: &Proposal) -> (String, Result<String, Rejection>) {
        match &p.command {
            Command::IngestAlerts { source, events } => {
                let what = format!("ingest {} alert events from {source}", events.len());
                let outcome = self.ingest(source, events);
                self.alerts.totals.add(&outcome);
                (what, Ok(outcome.to_string()))
            }
            Command::IngestJournaled { journal, first, last, sources } => {
                self.ingest_journaled(p.at_ms, (*journal, *first, *last), sources)
            }
            Command::TriageAlerts { ids, action } => {
                let what = format!("{} alerts {}", action.describe(), id_list(ids));
                (what, self.triage(p, ids, action))
            }
            Command::PutSilence { matchers, starts_ms, ends_ms, reason } => {
                let list: Vec<String> = matchers.iter().map(Matcher::to_string).collect();
                let what = format!("silence {{{}}} until {ends_ms}: {reason}", list.join(", "));
                (what, self.put_silence(p, matchers, (*starts_ms, *ends_ms), reason))
            }
            Command::ExpireSilence { id } => (format!("expire silence {id}"), self.expire_silence(p, *id)),
            Command::PutIngestSource { name, kind, token_sha256, grace_ms } => (
                format!("put alert source {name} ({kind})"),
                self.put_ingest_source(p, (name, *kind), token_sha256, *grace_ms),
            ),
            Command::Notify { subject, channel, level } => {
                (format!("notify {channel} of {subject:?} at level {level}"), self.notify(p, *subject, channel, *level))
            }
            Command::RecordDelivery { id, outcome } => {
                (format!("delivery of notification {id}"), self.notification_outcome(p, *id, outcome))
            }
            Command::ArchiveAlerts { closed_before_ms, keep_at_most } => (
                format!("archive alerts closed before {closed_before_ms}"),
                self.archive_alerts(*closed_before_ms, *keep_at_most),
            ),
            Command::DeleteIngestSource { name } => {
                (format!("delete alert source {name}"), self.delete_ingest_source(p, name))
            }
            _ => ("alerts".into(), Err(Rejection::Invalid("not an alerts command".into()))),
        }
    }

    /// A batch from a controller's intake journal: applied once. The intake proposes its batches
    /// one at a time, each starting after the last one recorded, and after a restart proposes
    /// again exactly the batch it had announced; so a batch is either wholly new or wholly
    /// recorded. One that straddles the mark would be a fault in the intake: refused, so that
    /// no event counts twice.
    fn ingest_journaled(
        &mut self,
        at_ms: u64,
        (journal, first, last): (u64, u64, u64),
        sources: &[super::SourceAlerts],
    ) -> (String, Result<String, Rejection>) {
        let n: usize = sources.iter().map(|s| s.events.len()).sum();
        let names: Vec<&str> = sources.iter().map(|s| s.source.as_str()).collect();
        let what =
            format!("ingest {n} alert events from {} (journal {journal:016x}, {first}-{last})", names.join(", "));
        if first == 0 || last < first {
            return (what, Err(Rejection::Invalid(format!("journal range {first}-{last} is empty"))));
        }
        let mark = self.alerts.journals.get(&journal).copied().unwrap_or_default();
        if last <= mark.through {
            return (what, Ok(format!("already recorded (through {})", mark.through)));
        }
        if first <= mark.through {
            let why = format!(
                "journal {journal:016x}: batch {first}-{last} overlaps what is recorded (through {})",
                mark.through
            );
            return (what, Err(Rejection::Conflict(why)));
        }
        let mut total = IngestOutcome::default();
        for group in sources {
            let outcome = self.ingest(&group.source, &group.events);
            total.add(&outcome);
        }
        self.alerts.totals.add(&total);
        self.alerts.journals.insert(journal, super::JournalMark { through: last, at_ms });
        if self.alerts.journals.len() > super::MAX_JOURNALS {
            let oldest = self.alerts.journals.iter().min_by_key(|(_, m)| m.at_ms).map(|(j, _)| *j);
            if let Some(j) = oldest {
                self.alerts.journals.remove(&j);
            }
        }
        (what, Ok(total.to_string()))
    }

    /// Raises (with `ev.resolved`, resolves) one of Triad's own alerts (a link's; later an
    /// asset's) under the source [`TRIAD_SOURCE`](crate::state::links::TRIAD_SOURCE), writing
    /// `note` in its history so that each change of what it is about is there to read.
    pub(in crate::state) fn raise_own_alert(&mut self, ev: IncomingAlert, note: &str) {
        use crate::state::links::TRIAD_SOURCE;
        let outcome = self.ingest(TRIAD_SOURCE, std::slice::from_ref(&ev));
        self.alerts.totals.add(&outcome);
        let key = fingerprint_key(TRIAD_SOURCE, &ev.fingerprint);
        if let Some(a) = self.alerts.by_fingerprint.get(&key).and_then(|id| self.alerts.alerts.get_mut(id)) {
            a.note(ev.at_ms, TRIAD_SOURCE, note);
        }
    }

    /// Deduplicates a batch by fingerprint: a known alert counts the occurrence (and opens again
    /// when it was resolved; a false positive stays closed), an unknown one is recorded.
    fn ingest(&mut self, source: &str, events: &[IncomingAlert]) -> IngestOutcome {
        let mut out = IngestOutcome::default();
        for ev in events {
            let key = fingerprint_key(source, &ev.fingerprint);
            match self.alerts.by_fingerprint.get(&key).copied() {
                Some(id) if self.alerts.alerts.contains_key(&id) => self.ingest_known(id, source, ev, &mut out),
                _ if ev.resolved => out.ignored += 1,
                _ => {
                    self.alerts.last_id += 1;
                    let id = self.alerts.last_id;
                    let mut alert = Alert {
                        id,
                        source: source.to_string(),
                        kind: ev.kind,
                        fingerprint: ev.fingerprint.clone(),
                        severity: ev.severity,
                        title: ev.title.clone(),
                        description: ev.description.clone(),
                        labels: ev.labels.clone(),
                        place: self.locate(ev),
                        first_seen_ms: ev.at_ms,
                        last_seen_ms: ev.at_ms,
                        opened_ms: ev.at_ms,
                        count: ev.occurrences.max(1),
                        status: AlertStatus::Open,
                        assignee: None,
                        escalation: 0,
                        acknowledged_ms: None,
                        closed_ms: None,
                        silenced_by: None,
                        incident: None,
                        history: Vec::new(),
                    };
                    alert.note(ev.at_ms, source, format!("received ({})", ev.severity));
                    self.mute_if_silenced(&mut alert, ev, &mut out);
                    self.alerts.alerts.insert(id, alert);
                    self.alerts.by_fingerprint.insert(key, id);
                    out.new += 1;
                    out.repeated += ev.occurrences.max(1) - 1;
                    self.correlate(id, ev.at_ms);
                }
            }
        }
        out
    }

    fn ingest_known(&mut self, id: u64, source: &str, ev: &IncomingAlert, out: &mut IngestOutcome) {
        let book = &mut self.alerts;
        let alert = book.alerts.get_mut(&id).expect("checked by the caller");
        if ev.resolved {
            if alert.status.is_closed() {
                out.ignored += 1;
            } else {
                alert.status = AlertStatus::Resolved;
                alert.closed_ms = Some(ev.at_ms);
                alert.note(ev.at_ms, source, "resolved by its source");
                out.resolved += 1;
            }
            return;
        }
        alert.count += ev.occurrences.max(1);
        alert.last_seen_ms = alert.last_seen_ms.max(ev.at_ms);
        if ev.severity > alert.severity {
            alert.note(ev.at_ms, source, format!("severity raised from {} to {}", alert.severity, ev.severity));
            alert.severity = ev.severity;
        }
        out.repeated += ev.occurrences.max(1);
        if alert.status == AlertStatus::Resolved {
            alert.status = AlertStatus::Open;
            alert.closed_ms = None;
            alert.acknowledged_ms = None;
            alert.escalation = 0;
            alert.silenced_by = None;
            alert.opened_ms = alert.opened_ms.max(ev.at_ms);
            alert.note(ev.at_ms, source, "fired again: reopened");
            out.reopened += 1;
            mute(&book.silences, alert, ev, out);
            alert.incident = None;
            self.correlate(id, ev.at_ms);
        }
    }

    fn mute_if_silenced(&self, alert: &mut Alert, ev: &IncomingAlert, out: &mut IngestOutcome) {
        mute(&self.alerts.silences, alert, ev, out);
    }

    fn triage(&mut self, p: &Proposal, ids: &[u64], action: &TriageAction) -> Result<String, Rejection> {
        if !matches!(p.actor.role, Role::Admin | Role::Soc | Role::System) {
            return Err(Rejection::NotAllowed(format!("role {} may not triage alerts", p.actor.role)));
        }
        if ids.is_empty() || ids.len() > MAX_TRIAGE_IDS {
            return Err(Rejection::Invalid(format!("name between 1 and {MAX_TRIAGE_IDS} alerts")));
        }
        check_action(action)?;
        // Every alert must exist and take the action before any changes: all or nothing.
        for id in ids {
            let alert = self.alerts.alerts.get(id).ok_or_else(|| Rejection::NotFound(format!("no alert {id}")))?;
            fits(alert, action)?;
        }
        let mut changed = 0;
        for id in ids {
            let alert = self.alerts.alerts.get_mut(id).expect("checked above");
            if act(alert, action, p.at_ms) {
                alert.note(p.at_ms, &p.actor.name, action.describe());
                changed += 1;
            }
        }
        Ok(format!("{changed} of {} alerts changed", ids.len()))
    }

    fn put_silence(
        &mut self,
        p: &Proposal,
        matchers: &[Matcher],
        (starts_ms, ends_ms): (u64, u64),
        reason: &str,
    ) -> Result<String, Rejection> {
        if !matches!(p.actor.role, Role::Admin | Role::Soc) {
            return Err(Rejection::NotAllowed(format!("role {} may not silence alerts", p.actor.role)));
        }
        if matchers.is_empty() || matchers.len() > MAX_MATCHERS {
            return Err(Rejection::Invalid(format!("a silence needs between 1 and {MAX_MATCHERS} matchers")));
        }
        if ends_ms <= starts_ms || ends_ms <= p.at_ms {
            return Err(Rejection::Invalid("a silence must end after it starts, and in the future".into()));
        }
        if reason.trim().is_empty() {
            return Err(Rejection::Invalid("a silence needs a reason".into()));
        }
        self.alerts.last_silence_id += 1;
        let id = self.alerts.last_silence_id;
        let silence = Silence {
            id,
            matchers: matchers.to_vec(),
            starts_ms,
            ends_ms,
            reason: reason.to_string(),
            created_by: p.actor.name.clone(),
            expired_ms: None,
        };
        self.alerts.silences.insert(id, silence);
        // Keep the table bounded: silences over for long are dropped (the audit log keeps them).
        let cutoff = p.at_ms.saturating_sub(30 * 86_400_000);
        self.alerts.silences.retain(|_, s| s.expired_ms.unwrap_or(s.ends_ms) >= cutoff);
        Ok(format!("silence {id} created"))
    }

    fn expire_silence(&mut self, p: &Proposal, id: u64) -> Result<String, Rejection> {
        if !matches!(p.actor.role, Role::Admin | Role::Soc) {
            return Err(Rejection::NotAllowed(format!("role {} may not expire silences", p.actor.role)));
        }
        let s = self.alerts.silences.get_mut(&id).ok_or_else(|| Rejection::NotFound(format!("no silence {id}")))?;
        if !s.active_at(p.at_ms) && s.starts_ms <= p.at_ms {
            return Err(Rejection::Conflict(format!("silence {id} has already ended")));
        }
        s.expired_ms = Some(p.at_ms);
        Ok(format!("silence {id} expired"))
    }
}

fn mute(
    silences: &std::collections::BTreeMap<u64, Silence>,
    alert: &mut Alert,
    ev: &IncomingAlert,
    out: &mut IngestOutcome,
) {
    if let Some(s) = silences.values().find(|s| s.active_at(ev.at_ms) && s.matches(alert, ev)) {
        alert.silenced_by = Some(s.id);
        alert.note(ev.at_ms, "triad", format!("muted by silence {}", s.id));
        out.silenced += 1;
    }
}

fn id_list(ids: &[u64]) -> String {
    let shown: Vec<String> = ids.iter().take(10).map(u64::to_string).collect();
    if ids.len() > 10 {
        format!("{} and {} more", shown.join(","), ids.len() - 10)
    } else {
        shown.join(",")
    }
}

/// The action's own arguments are well formed.
fn check_action(action: &TriageAction) -> Result<(), Rejection> {
    let empty = |s: &str| s.trim().is_empty();
    match action {
        TriageAction::Assign { to } if empty(to) => Err(Rejection::Invalid("assign to whom?".into())),
        TriageAction::Comment { text } if empty(text) => Err(Rejection::Invalid("an empty comment".into())),
        TriageAction::Escalate { reason, .. }
        | TriageAction::Resolve { reason }
        | TriageAction::FalsePositive { reason }
        | TriageAction::Reopen { reason }
            if empty(reason) =>
        {
            Err(Rejection::Invalid(format!("`{}` needs a reason", action.describe().trim_end_matches(": "))))
        }
        _ => Ok(()),
    }
}

/// Whether `action` can be taken on `alert` (doing nothing counts, e.g. acknowledging twice).
fn fits(alert: &Alert, action: &TriageAction) -> Result<(), Rejection> {
    let closed = alert.status.is_closed();
    match action {
        TriageAction::Acknowledge | TriageAction::Assign { .. } | TriageAction::Escalate { .. } if closed => {
            Err(Rejection::Conflict(format!("alert {} is {}: reopen it first", alert.id, alert.status)))
        }
        _ => Ok(()),
    }
}

/// Takes the action; false when there was nothing to do.
fn act(alert: &mut Alert, action: &TriageAction, at_ms: u64) -> bool {
    let acknowledge = |alert: &mut Alert| {
        if alert.status == AlertStatus::Open {
            alert.status = AlertStatus::Acknowledged;
            alert.acknowledged_ms = Some(at_ms);
        }
    };
    match action {
        TriageAction::Acknowledge => {
            let was = alert.status;
            acknowledge(alert);
            was != alert.status
        }
        TriageAction::Assign { to } => {
            acknowledge(alert);
            alert.assignee = Some(to.clone());
            true
        }
        TriageAction::Escalate { to_level, .. } => {
            if *to_level <= alert.escalation {
                return false;
            }
            alert.escalation = *to_level;
            true
        }
        TriageAction::Comment { .. } => true,
        TriageAction::Resolve { .. } | TriageAction::FalsePositive { .. } => {
            let to = if matches!(action, TriageAction::Resolve { .. }) {
                AlertStatus::Resolved
            } else {
                AlertStatus::FalsePositive
            };
            if alert.status == to {
                return false;
            }
            alert.status = to;
            alert.closed_ms = Some(at_ms);
            true
        }
        TriageAction::Reopen { .. } => {
            if !alert.status.is_closed() {
                return false;
            }
            alert.opened_ms = alert.opened_ms.max(at_ms);
            alert.status = AlertStatus::Open;
            alert.closed_ms = None;
            alert.acknowledged_ms = None;
            alert.escalation = 0;
            true
        }
    }
}
