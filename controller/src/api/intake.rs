//! The intake: alerts from every edge (HTTP requests, syslog lines) gathered per source for a
//! short window and proposed as one `IngestAlerts` command, so that a storm is a few log entries
//! (and audit lines) a second rather than one per event. Each sender waits for the commit of the
//! batch that carries its alerts: an acknowledged alert is in the log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::state::alerts::IncomingAlert;
use crate::state::{Actor, Command, Response, Role};

/// How long a batch stays open for more alerts of its source.
const WINDOW: Duration = Duration::from_millis(25);
/// A batch is proposed at once when it holds this many alerts.
const MAX_BATCH: usize = 5_000;
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
struct Batch {
    events: Vec<IncomingAlert>,
    origins: Vec<String>,
    replies: Vec<oneshot::Sender<Result<String>>>,
}

async fn run(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<Offer>) {
    let mut open: HashMap<String, Batch> = HashMap::new();
    loop {
        // Wait for the first offer, then gather for one window.
        let Some(first) = rx.recv().await else { return };
        let deadline = tokio::time::Instant::now() + WINDOW;
        add(&ctx, &mut open, first);
        loop {
            tokio::select! {
                offer = rx.recv() => match offer {
                    Some(o) => add(&ctx, &mut open, o),
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        for (source, batch) in open.drain() {
            tokio::spawn(propose(ctx.clone(), source, batch));
        }
    }
}

fn add(ctx: &Arc<Ctx>, open: &mut HashMap<String, Batch>, o: Offer) {
    let batch = open.entry(o.source.clone()).or_insert_with(|| Batch {
        events: Vec::new(),
        origins: Vec::new(),
        replies: Vec::new(),
    });
    batch.events.extend(o.events);
    if !batch.origins.contains(&o.origin) && batch.origins.len() < 8 {
        batch.origins.push(o.origin);
    }
    batch.replies.push(o.reply);
    if batch.events.len() >= MAX_BATCH {
        let full = open.remove(&o.source).expect("just added");
        tokio::spawn(propose(ctx.clone(), o.source, full));
    }
}

async fn propose(ctx: Arc<Ctx>, source: String, batch: Batch) {
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
