//! The intake: alerts from every edge (HTTP requests, syslog lines) accepted into this
//! controller's journal, then proposed to the replicated log in batches.
//!
//! Why a journal: a sender that waits for a replicated commit can send only one request per
//! commit round (a few milliseconds here) per connection, which caps ingest far below what a
//! storm brings. So an alert is *accepted* once it is synced to this controller's disk
//! (`journal.rs`, group commit: one sync serves every request waiting), and the sender hears
//! 202 then; batches go to the log one after another, as fast as it commits them, each carrying
//! everything accepted meanwhile with its repeats merged (`batch.rs`), so a storm is a few log
//! entries a second. A sender that wants the commit itself asks with `?wait=commit`.
//!
//! What "accepted" promises: the alert survives the loss of any controller but the one that
//! accepted it while it is still only in that one's journal (normally tens of milliseconds);
//! if that one stops, it proposes the alert when it starts again. Applying is exactly once per
//! journal: the state records how far each journal is recorded (`IngestJournaled`), and a batch
//! announced before a crash is proposed again with the same bounds.

mod batch;
mod journal;
mod pipeline;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::state::alerts::IncomingAlert;

/// Requests queued for the journal's writer before senders wait.
const QUEUE: usize = 4_096;
/// How long `?wait=commit` waits for the log before answering that the alert is accepted but
/// not yet committed.
const COMMIT_WAIT: Duration = Duration::from_secs(10);

/// What a sender is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipt {
    /// Synced to this controller's journal under this sequence number.
    Journaled { seq: u64 },
    /// In the replicated log; the state's account of the batch that carried it.
    Committed { seq: u64, outcome: String },
    /// Journaled, but the log did not take it within the wait (no leader, say): it will.
    NotYetCommitted { seq: u64 },
}

/// Handle to the intake. Cheap to clone.
#[derive(Clone)]
pub struct Intake {
    tx: mpsc::Sender<pipeline::ToWriter>,
    /// Events accepted and not yet committed.
    backlog: Arc<AtomicU64>,
    limit: u64,
}

impl Intake {
    /// Opens the journal in `dir`, and starts the writer and the proposing of batches (those
    /// left from before a restart first).
    pub fn start(ctx: Arc<Ctx>, dir: &Path) -> Result<Intake> {
        let (journal, replay) =
            journal::Journal::open(dir).map_err(|e| Error::io(format!("intake journal {}", dir.display()), e))?;
        for d in &replay.damaged {
            tracing::error!("intake journal: damaged, alerts in it are lost: {d}");
        }
        if !replay.offers.is_empty() {
            tracing::info!(
                "intake journal: {} accepted requests not yet in the log (from before a restart): proposing them",
                replay.offers.len()
            );
        }
        let backlog = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel(QUEUE);
        let limit = ctx.cfg.alerts.intake_backlog;
        pipeline::start(ctx, journal, replay, (tx.clone(), rx), backlog.clone());
        Ok(Intake { tx, backlog, limit })
    }

    /// Accepts `events` from `source` (sent from `origin`): journaled, and with `wait_commit`
    /// also committed (or not within [`COMMIT_WAIT`]).
    pub async fn offer(
        &self,
        source: &str,
        origin: &str,
        events: Vec<IncomingAlert>,
        wait_commit: bool,
    ) -> Result<Receipt> {
        let n = events.len() as u64;
        let before = self.backlog.fetch_add(n, Ordering::Relaxed);
        if before + n > self.limit {
            self.backlog.fetch_sub(n, Ordering::Relaxed);
            return Err(Error::Unavailable(format!(
                "busy: {before} alert events are waiting for the replicated log (alerts.intake_backlog is {})",
                self.limit
            )));
        }
        let (reply, journaled) = oneshot::channel();
        let (commit_tx, committed) = if wait_commit {
            let (t, r) = oneshot::channel();
            (Some(t), Some(r))
        } else {
            (None, None)
        };
        let job = pipeline::Offer { source: source.into(), origin: origin.into(), events, reply, commit: commit_tx };
        let gone = || Error::Unavailable("the controller is shutting down".into());
        if self.tx.send(pipeline::ToWriter::Offer(job)).await.is_err() {
            self.backlog.fetch_sub(n, Ordering::Relaxed);
            return Err(gone());
        }
        let seq = journaled.await.map_err(|_| gone())??;
        let Some(committed) = committed else { return Ok(Receipt::Journaled { seq }) };
        match tokio::time::timeout(COMMIT_WAIT, committed).await {
            Ok(Ok(Ok(outcome))) => Ok(Receipt::Committed { seq, outcome }),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(gone()),
            Err(_) => Ok(Receipt::NotYetCommitted { seq }),
        }
    }
}
