//! The intake: alerts from every edge (HTTP requests, syslog lines) gathered per source and
//! proposed as one `IngestAlerts` command, so that a storm is a few log entries (and audit lines)
//! a second rather than one per event. Group commit, not a timer: an offer is proposed at once
//! when a slot is free; while [`IN_FLIGHT`] batches are being committed, offers gather (repeats
//! merging) into the next. Each sender waits for the commit of the batch that carries its alerts:
//! an acknowledged alert is in the log.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::state::alerts::IncomingAlert;
use crate::state::{Actor, Command, Response, Role};

/// A batch is proposed at once when it holds this many (distinct) alerts: a log entry is sent to
/// the followers within one heartbeat, so it must stay small (openraft 0.9 times an append out
/// after `raft.heartbeat_interval_ms`).
const MAX_BATCH: usize = 200;
/// Batches of one intake being committed at once: more wait, so that a storm makes a few
/// entries at a time, not a queue of them.
const IN_FLIGHT: usize = 2;
/// Requests queued before senders wait (back-pressure rather than unbounded memory).
const QUEUE: usize = 4_096;

struct Offer {
    source: String,
    events: Vec<IncomingAlert>,
    origin: String,
    reply: oneshot::Sender<Result<String>>,
}

/// Handle to the intake task. Cheap to clone.
#[derive(Clone)]
pub struct Intake {
    tx: mpsc::Sender<Offer>,
}

impl Intake {
    /// Starts the intake for `ctx`.
    pub fn start(ctx: Arc<Ctx>) -> Intake {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(ctx, rx));
        Intake { tx }
    }

    /// Offers `events` from `source` (sent from `origin`); returns the state's account of the
    /// batch they were committed in.
    pub async fn offer(&self, source: &str, origin: &str, events: Vec<IncomingAlert>) -> Result<String> {
        let (reply, answer) = oneshot::channel();
        let offer = Offer { source: source.to_string(), events, origin: origin.to_string(), reply };
        self.tx.send(offer).await.map_err(|_| Error::Unavailable("the controller is shutting down".into()))?;
        answer.await.map_err(|_| Error::Unavailable("the controller is shutting down".into()))?
    }
}

/// An open batch of one source.
#[derive(Default)]
struct Batch {
    events: Vec<IncomingAlert>,
    /// Fingerprint → the index of its latest firing event in `events`, while no resolution of
    /// it came after: a repeat merges into it.
    firing: HashMap<String, usize>,
    origins: Vec<String>,
    replies: Vec<oneshot::Sender<Result<String>>>,
}

impl Batch {
    /// Adds `ev`, merging a repeat of an alert already firing in this batch into it (one event
    /// with `occurrences` counted, the latest time, the highest severity), so that a storm of
    /// repeats is a small log entry. Order is kept where it matters: a resolution is never merged
    /// across, and a firing after it is a new event.
    fn push(&mut self, ev: IncomingAlert) {
        if ev.resolved {
            self.firing.remove(&ev.fingerprint);
            self.events.push(ev);
            return;
        }
        if let Some(&i) = self.firing.get(&ev.fingerprint) {
            let merged = &mut self.events[i];
            merged.occurrences += ev.occurrences.max(1);
            merged.at_ms = merged.at_ms.max(ev.at_ms);
            merged.severity = merged.severity.max(ev.severity);
            return;
        }
        self.firing.insert(ev.fingerprint.clone(), self.events.len());
        self.events.push(ev);
    }
}

async fn run(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<Offer>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut open: HashMap<String, Batch> = HashMap::new();
    loop {
        // Take every offer already waiting, then propose what gathered as soon as a slot frees;
        // while none is free, keep gathering.
        if open.is_empty() {
            let Some(first) = rx.recv().await else { return };
            if let Some((source, full)) = add(&mut open, first) {
                let Ok(permit) = slots.clone().acquire_owned().await else { return };
                tokio::spawn(propose(ctx.clone(), source, full, permit));
            }
            continue;
        }
        tokio::select! {
            biased;
            offer = rx.recv() => match offer {
                Some(o) => {
                    if let Some((source, full)) = add(&mut open, o) {
                        let Ok(permit) = slots.clone().acquire_owned().await else { return };
                        tokio::spawn(propose(ctx.clone(), source, full, permit));
                    }
                }
                None => return,
            },
            permit = slots.clone().acquire_owned() => {
                let Ok(permit) = permit else { return };
                // One source's batch per slot; the others wait for the next.
                let Some(source) = open.keys().next().cloned() else { continue };
                let batch = open.remove(&source).expect("just seen");
                tokio::spawn(propose(ctx.clone(), source, batch, permit));
            }
        }
    }
}

/// Adds an offer to its source's batch; returns that batch when it is full.
fn add(open: &mut HashMap<String, Batch>, o: Offer) -> Option<(String, Batch)> {
    let batch = open.entry(o.source.clone()).or_default();
    for ev in o.events {
        batch.push(ev);
    }
    if !batch.origins.contains(&o.origin) && batch.origins.len() < 8 {
        batch.origins.push(o.origin);
    }
    batch.replies.push(o.reply);
    if batch.events.len() >= MAX_BATCH {
        return open.remove_entry(&o.source);
    }
    None
}

async fn propose(ctx: Arc<Ctx>, source: String, batch: Batch, _slot: OwnedSemaphorePermit) {
    let actor = Actor { name: format!("source/{source}"), role: Role::System, origin: batch.origins.join(",") };
    let proposal = ctx.proposal(actor, Command::IngestAlerts { source, events: batch.events });
    let answer = match ctx.proposer.propose(proposal).await {
        Ok(c) => match c.response {
            Response::Ok(outcome) => Ok(outcome),
            Response::Rejected(r) => Err(Error::Rejected(r)),
            other => Err(Error::Raft(format!("unexpected answer {other:?}"))),
        },
        Err(e) => Err(e),
    };
    for reply in batch.replies {
        let _ = reply.send(match &answer {
            Ok(s) => Ok(s.clone()),
            Err(e) => Err(Error::Unavailable(e.to_string())),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::alerts::Severity;

    fn ev(fp: &str, at_ms: u64, severity: Severity, resolved: bool) -> IncomingAlert {
        IncomingAlert { resolved, ..IncomingAlert::for_test(fp, at_ms, severity) }
    }

    #[test]
    fn repeats_merge_but_never_across_a_resolution() {
        let mut b = Batch::default();
        for e in [
            ev("a", 1, Severity::Low, false),
            ev("b", 2, Severity::Low, false),
            ev("a", 3, Severity::High, false),
            ev("a", 4, Severity::Low, true),
            ev("a", 5, Severity::Low, false),
            ev("a", 6, Severity::Low, false),
        ] {
            b.push(e);
        }
        let got: Vec<(&str, u64, u64, Severity, bool)> =
            b.events.iter().map(|e| (e.fingerprint.as_str(), e.occurrences, e.at_ms, e.severity, e.resolved)).collect();
        assert_eq!(
            got,
            [
                ("a", 2, 3, Severity::High, false),
                ("b", 1, 2, Severity::Low, false),
                ("a", 1, 4, Severity::Low, true),
                ("a", 2, 6, Severity::Low, false),
            ]
        );
    }
}
