//! The intake's two workers: the journal's writer (a thread of its own: it syncs a file) and the
//! task that proposes batches, one at a time, in journal order.
//!
//! One batch at a time is what makes applying exactly once simple (see `IngestJournaled`): a
//! batch is announced in the journal (synced) before it is proposed, retried with the same
//! bounds until the log answers, and the next one starts after it. Throughput does not suffer:
//! while one batch commits, the next gathers everything that arrives, repeats merged.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::batch::Batch;
use super::journal::{Entry, Journal, Offered, Replay};
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::state::{Actor, Command, Response, Role};

/// Most requests written (and synced) together.
const GROUP: usize = 4_096;
/// With fewer requests than this waiting, the writer waits this long for more before it syncs:
/// under load a few more arrive meanwhile, and one sync serves them all.
const LINGER: (usize, Duration) = (8, Duration::from_micros(100));
/// The shortest time between two batches' proposals. Commits here take a few milliseconds; a
/// trickle of alerts would otherwise make one log entry (synced on three disks, applied three
/// times) per handful of alerts. Waiting this long lets a batch gather a storm's worth.
const PACE: Duration = Duration::from_millis(5);
/// Between attempts to propose a batch the log refused for want of a leader: doubling from
/// the first to the second.
const RETRY: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

/// A request's alerts on their way to the journal.
pub struct Offer {
    pub source: String,
    pub origin: String,
    pub events: Vec<crate::state::alerts::IncomingAlert>,
    /// Told the sequence number once synced.
    pub reply: oneshot::Sender<Result<u64>>,
    /// Told the batch's outcome once committed, if the sender waits for that.
    pub commit: Option<oneshot::Sender<Result<String>>>,
}

/// What the writer thread is asked to do.
pub enum ToWriter {
    Offer(Offer),
    /// Write (and sync) a mark, then say so.
    Mark(Entry, Option<oneshot::Sender<std::io::Result<()>>>),
}

/// An offer synced to the journal, handed to the proposing task.
struct Accepted {
    offer: Offered,
    commit: Option<oneshot::Sender<Result<String>>>,
}

/// Starts the writer thread and the proposing task.
pub fn start(
    ctx: Arc<Ctx>,
    journal: Journal,
    replay: Replay,
    (tx, rx): (mpsc::Sender<ToWriter>, mpsc::Receiver<ToWriter>),
    backlog: Arc<AtomicU64>,
) {
    let (accepted_tx, accepted_rx) = mpsc::unbounded_channel();
    let id = journal.id();
    let writer_backlog = backlog.clone();
    std::thread::Builder::new()
        .name("intake-journal".into())
        .spawn(move || write_loop(journal, rx, accepted_tx, writer_backlog))
        .expect("spawning the intake journal's thread");
    let queue = replayed_batches(replay, &backlog);
    tokio::spawn(propose_loop(ctx, id, queue, accepted_rx, tx, backlog));
}

/// The writer: takes every request waiting, appends them (and any marks) with one sync, then
/// answers them and hands the offers on.
fn write_loop(
    mut journal: Journal,
    mut rx: mpsc::Receiver<ToWriter>,
    accepted: mpsc::UnboundedSender<Accepted>,
    backlog: Arc<AtomicU64>,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        drain(&mut rx, &mut jobs);
        if jobs.len() < LINGER.0 {
            // A sync costs the same for one request as for many: let a few more arrive.
            std::thread::sleep(LINGER.1);
            drain(&mut rx, &mut jobs);
        }
        let first_seq = journal.next_seq();
        let mut entries = Vec::with_capacity(jobs.len());
        let mut answers = Vec::with_capacity(jobs.len());
        let mut forget = None;
        for job in jobs {
            match job {
                ToWriter::Offer(o) => {
                    let seq = journal.take_seq();
                    let offered = Offered { seq, source: o.source, origin: o.origin, events: o.events };
                    entries.push(Entry::Offer(offered));
                    answers.push(Answer::Offer(o.reply, o.commit));
                }
                ToWriter::Mark(mark, reply) => {
                    if let Entry::Committed { through } = mark {
                        forget = Some(through);
                    }
                    entries.push(mark);
                    answers.push(Answer::Mark(reply));
                }
            }
        }
        let result = journal.append(&entries);
        if result.is_err() {
            journal.give_back(first_seq);
        }
        for (entry, answer) in entries.into_iter().zip(answers) {
            match (answer, entry, &result) {
                (Answer::Offer(reply, commit), Entry::Offer(offer), Ok(())) => {
                    let seq = offer.seq;
                    // Handed on before the sender hears: by then it is in the pipeline.
                    let _ = accepted.send(Accepted { offer, commit });
                    let _ = reply.send(Ok(seq));
                }
                (Answer::Offer(reply, _), Entry::Offer(offer), Err(e)) => {
                    backlog.fetch_sub(offer.events.len() as u64, Ordering::Relaxed);
                    let _ =
                        reply.send(Err(Error::Unavailable(format!("the intake journal could not be written: {e}"))));
                }
                (Answer::Mark(reply), _, r) => {
                    if let Some(reply) = reply {
                        let _ = reply
                            .send(r.as_ref().map(|_| ()).map_err(|e| std::io::Error::new(e.kind(), e.to_string())));
                    }
                }
                _ => unreachable!("answers are made in the entries' order"),
            }
        }
        match (&result, forget) {
            (Err(e), _) => tracing::error!("intake journal: a write failed, its senders were told 503: {e}"),
            (Ok(()), Some(through)) => {
                if let Err(e) = journal.forget_through(through) {
                    tracing::warn!("intake journal: an old segment could not be deleted: {e}");
                }
            }
            _ => {}
        }
    }
}

fn drain(rx: &mut mpsc::Receiver<ToWriter>, jobs: &mut Vec<ToWriter>) {
    while jobs.len() < GROUP {
        match rx.try_recv() {
            Ok(j) => jobs.push(j),
            Err(_) => break,
        }
    }
}

enum Answer {
    Offer(oneshot::Sender<Result<u64>>, Option<oneshot::Sender<Result<String>>>),
    Mark(Option<oneshot::Sender<std::io::Result<()>>>),
}

/// The batches left from before a restart: those announced keep their bounds exactly (they may
/// have been committed: the state answers "already recorded"); the rest are batched afresh.
fn replayed_batches(replay: Replay, backlog: &AtomicU64) -> VecDeque<(Batch, bool)> {
    let mut queue: VecDeque<(Batch, bool)> = VecDeque::new();
    let mut announced = replay.proposing.into_iter().peekable();
    for offer in replay.offers {
        backlog.fetch_add(offer.events.len() as u64, Ordering::Relaxed);
        while announced.peek().is_some_and(|&(_, last)| last < offer.seq) {
            announced.next();
        }
        let within = announced.peek().copied().filter(|&(first, _)| first <= offer.seq);
        match (queue.back_mut(), within) {
            (Some((b, true)), Some((first, last))) if b.first == first => {
                b.push(offer);
                b.last = last;
            }
            (_, Some((first, last))) => {
                let mut b = Batch::starting(first);
                b.push(offer);
                (b.first, b.last) = (first, last);
                queue.push_back((b, true));
            }
            (Some((b, false)), None) if !b.is_full() => b.push(offer),
            (_, None) => {
                let mut b = Batch::starting(offer.seq);
                b.push(offer);
                queue.push_back((b, false));
            }
        }
    }
    queue
}

/// Proposes batches one at a time; `queue` holds them in order, with whether each is already
/// announced in the journal.
async fn propose_loop(
    ctx: Arc<Ctx>,
    journal_id: u64,
    mut queue: VecDeque<(Batch, bool)>,
    mut accepted: mpsc::UnboundedReceiver<Accepted>,
    writer: mpsc::Sender<ToWriter>,
    backlog: Arc<AtomicU64>,
) {
    let mut last_proposed: Option<std::time::Instant> = None;
    loop {
        ctx.metrics.alerts_intake_backlog.set(backlog.load(Ordering::Relaxed) as i64);
        if let Some(wait) = last_proposed.and_then(|t| PACE.checked_sub(t.elapsed())) {
            if !queue.is_empty() {
                tokio::time::sleep(wait).await;
            }
        }
        // Gather everything already accepted into the queue, then propose its head.
        while let Ok(a) = accepted.try_recv() {
            enqueue(&mut queue, a);
        }
        let Some((mut batch, announced)) = queue.pop_front() else {
            match accepted.recv().await {
                Some(a) => enqueue(&mut queue, a),
                None => return,
            }
            continue;
        };
        if !announced {
            let (reply, done) = oneshot::channel();
            let mark = Entry::Proposing { first: batch.first, last: batch.last };
            if writer.send(ToWriter::Mark(mark, Some(reply))).await.is_err() {
                return;
            }
            match done.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!("intake journal: a batch could not be announced, trying again: {e}");
                    queue.push_front((batch, false));
                    tokio::time::sleep(RETRY.1).await;
                    continue;
                }
                Err(_) => return,
            }
        }
        let started = std::time::Instant::now();
        last_proposed = Some(started);
        let outcome = commit(&ctx, journal_id, &batch).await;
        tracing::debug!(
            first = batch.first,
            last = batch.last,
            offered = batch.offered,
            distinct = batch.distinct(),
            queued = queue.len(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "intake batch committed"
        );
        backlog.fetch_sub(batch.offered, Ordering::Relaxed);
        for w in batch.waiting.drain(..) {
            let _ = w.send(match &outcome {
                Ok(o) => Ok(o.clone()),
                Err(e) => Err(Error::Unavailable(e.to_string())),
            });
        }
        if writer.send(ToWriter::Mark(Entry::Committed { through: batch.last }, None)).await.is_err() {
            return;
        }
    }
}

fn enqueue(queue: &mut VecDeque<(Batch, bool)>, a: Accepted) {
    let joinable = matches!(queue.back(), Some((b, false)) if !b.is_full());
    if !joinable {
        queue.push_back((Batch::starting(a.offer.seq), false));
    }
    let (b, _) = queue.back_mut().expect("just made sure");
    b.push(a.offer);
    if let Some(w) = a.commit {
        b.waiting.push(w);
    }
}

/// Proposes `batch` until the log answers: committed, or refused (which loses it, and says so
/// loudly: only a fault in the intake makes the state refuse a batch). While there is no
/// leader, attempts go on, further and further apart; senders meanwhile see the backlog grow
/// in `triad_alerts_intake_backlog` and, once it is full, 503.
async fn commit(ctx: &Ctx, journal: u64, batch: &Batch) -> Result<String> {
    let mut pause = RETRY.0;
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        let actor = Actor {
            name: format!("intake/controller-{}", ctx.id),
            role: Role::System,
            origin: batch.origins.join(","),
        };
        let command =
            Command::IngestJournaled { journal, first: batch.first, last: batch.last, sources: batch.sources.clone() };
        match ctx.proposer.propose(ctx.proposal(actor, command)).await {
            Ok(c) => match c.response {
                Response::Ok(outcome) => return Ok(outcome),
                Response::Rejected(r) => {
                    tracing::error!(
                        "intake: the log refused batch {}-{} ({} events), which is lost: {r}",
                        batch.first,
                        batch.last,
                        batch.offered
                    );
                    return Err(Error::Rejected(r));
                }
                other => return Err(Error::Raft(format!("unexpected answer {other:?}"))),
            },
            Err(e) => {
                if attempt == 1 || attempt.is_multiple_of(10) {
                    tracing::warn!(
                        "intake: batch {}-{} ({} events) not yet committed (attempt {attempt}), trying again: {e}",
                        batch.first,
                        batch.last,
                        batch.offered
                    );
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY.1);
            }
        }
    }
}
