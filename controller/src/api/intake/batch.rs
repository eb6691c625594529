//! A batch in the making: the journal's offers from one sequence number to another, their
//! repeats merged, waiting to be proposed as one `IngestJournaled` command.

use std::collections::HashMap;

use tokio::sync::oneshot;

use super::journal::Offered;
use crate::error::Result;
use crate::state::alerts::{IncomingAlert, SourceAlerts};

/// A batch closes at this many distinct events (repeats merged into one do not count), or at
/// [`MAX_BYTES`]: it is one log entry, which a follower must take within one heartbeat interval
/// (openraft 0.9 times an append out after `raft.heartbeat_interval_ms`). Large enough that a
/// storm's repeats, arriving while the batch before commits, merge into one entry.
pub const MAX_DISTINCT: usize = 5_000;
/// A batch closes when its events' text (titles, descriptions, labels...) reaches this size.
pub const MAX_BYTES: usize = 1 << 20;

/// Offers merged into one command.
#[derive(Default)]
pub struct Batch {
    /// The sequence numbers of the first and last offers in it.
    pub first: u64,
    pub last: u64,
    /// Per source, in the order the sources first appear.
    pub sources: Vec<SourceAlerts>,
    /// Per source (as in `sources`), fingerprint → the index of its latest firing event, while
    /// no resolution of it came after: a repeat merges into it.
    firing: Vec<HashMap<String, usize>>,
    /// Where the offers came from (the first few), for the audit log.
    pub origins: Vec<String>,
    /// Events offered (before merging).
    pub offered: u64,
    distinct: usize,
    /// The text size of its distinct events, roughly their size in the log entry.
    bytes: usize,
    /// Senders waiting for the commit (`?wait=commit`).
    pub waiting: Vec<oneshot::Sender<Result<String>>>,
}

impl Batch {
    /// A new, empty batch starting at `first`.
    pub fn starting(first: u64) -> Batch {
        Batch { first, last: first.saturating_sub(1), ..Batch::default() }
    }

    pub fn is_empty(&self) -> bool {
        self.last < self.first
    }

    /// Events in it once repeats are merged.
    pub fn distinct(&self) -> usize {
        self.distinct
    }

    /// True when no further offer should join.
    pub fn is_full(&self) -> bool {
        self.distinct >= MAX_DISTINCT || self.bytes >= MAX_BYTES
    }

    /// Adds the next offer (offers join in journal order).
    pub fn push(&mut self, offer: Offered) {
        if self.is_empty() {
            self.first = offer.seq;
        }
        self.last = offer.seq;
        let s = match self.sources.iter().position(|g| g.source == offer.source) {
            Some(i) => i,
            None => {
                self.sources.push(SourceAlerts { source: offer.source, events: Vec::new() });
                self.firing.push(HashMap::new());
                self.sources.len() - 1
            }
        };
        if self.origins.len() < 8 && !self.origins.contains(&offer.origin) {
            self.origins.push(offer.origin);
        }
        for ev in offer.events {
            self.offered += 1;
            self.merge(s, ev);
        }
    }

    /// Adds `ev` to source `s`, merging a repeat of an alert already firing in this batch into
    /// it (one event with `occurrences` counted, the latest time, the highest severity), so that
    /// a storm of repeats is a small log entry. Order is kept where it matters: a resolution is
    /// never merged across, and a firing after it is a new event.
    fn merge(&mut self, s: usize, ev: IncomingAlert) {
        let events = &mut self.sources[s].events;
        let firing = &mut self.firing[s];
        if ev.resolved {
            firing.remove(&ev.fingerprint);
            self.bytes += text_size(&ev);
            events.push(ev);
            self.distinct += 1;
            return;
        }
        if let Some(&i) = firing.get(&ev.fingerprint) {
            let merged = &mut events[i];
            merged.occurrences += ev.occurrences.max(1);
            merged.at_ms = merged.at_ms.max(ev.at_ms);
            merged.severity = merged.severity.max(ev.severity);
            return;
        }
        firing.insert(ev.fingerprint.clone(), events.len());
        self.bytes += text_size(&ev);
        events.push(ev);
        self.distinct += 1;
    }
}

/// Roughly the bytes `ev` takes in a log entry.
fn text_size(ev: &IncomingAlert) -> usize {
    let labels: usize = ev.labels.iter().map(|(k, v)| k.len() + v.len() + 16).sum();
    64 + ev.fingerprint.len()
        + ev.title.len()
        + ev.description.len()
        + labels
        + ev.site.len()
        + ev.host.len()
        + ev.address.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::alerts::Severity;

    fn offer(seq: u64, source: &str, fp: &str, at_ms: u64, severity: Severity, resolved: bool) -> Offered {
        let ev = IncomingAlert { resolved, ..IncomingAlert::for_test(fp, at_ms, severity) };
        Offered { seq, source: source.into(), origin: "o".into(), events: vec![ev] }
    }

    #[test]
    fn repeats_merge_per_source_but_never_across_a_resolution() {
        let mut b = Batch::starting(5);
        assert!(b.is_empty());
        for (i, (src, fp, at, sev, res)) in [
            ("p", "a", 1, Severity::Low, false),
            ("p", "b", 2, Severity::Low, false),
            ("w", "a", 2, Severity::Low, false),
            ("p", "a", 3, Severity::High, false),
            ("p", "a", 4, Severity::Low, true),
            ("p", "a", 5, Severity::Low, false),
            ("p", "a", 6, Severity::Low, false),
        ]
        .into_iter()
        .enumerate()
        {
            b.push(offer(5 + i as u64, src, fp, at, sev, res));
        }
        assert_eq!((b.first, b.last, b.offered), (5, 11, 7));
        let got: Vec<(&str, &str, u64, u64, Severity, bool)> = b
            .sources
            .iter()
            .flat_map(|g| g.events.iter().map(move |e| (g.source.as_str(), e)))
            .map(|(s, e)| (s, e.fingerprint.as_str(), e.occurrences, e.at_ms, e.severity, e.resolved))
            .collect();
        assert_eq!(
            got,
            [
                ("p", "a", 2, 3, Severity::High, false),
                ("p", "b", 1, 2, Severity::Low, false),
                ("p", "a", 1, 4, Severity::Low, true),
                ("p", "a", 2, 6, Severity::Low, false),
                ("w", "a", 1, 2, Severity::Low, false),
            ]
        );
    }

    #[test]
    fn a_batch_is_full_at_the_distinct_limit_not_at_repeats() {
        let mut b = Batch::starting(1);
        for i in 0..10 * MAX_DISTINCT as u64 {
            b.push(offer(i + 1, "p", "same", i, Severity::Low, false));
        }
        assert!(!b.is_full(), "ten thousand repeats are one event");
        for i in 0..MAX_DISTINCT as u64 {
            b.push(offer(b.last + 1, "p", &format!("d{i}"), i, Severity::Low, false));
        }
        assert!(b.is_full());
    }
}
