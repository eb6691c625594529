//! Carrying out the leader's commands: each after the epoch gate, its result reported on the
//! stream it came from. The lease rules a command must respect (a start under a lease, a lease
//! released only with the server stopped) are written where each is enforced.
//!
//! Commands are applied one at a time, in (epoch, log index) order (DESIGN.md point 1; issue 16,
//! item 3): they pass through one queue, whatever stream brought them (a new leader's and an old
//! one's may overlap), and one older than a command already applied is refused, never run after
//! it. Running them one at a time means a stop sent while a promote runs takes effect after it,
//! not beside it; and a promote checks its epoch again after its waits, so that one overtaken
//! by a newer epoch meanwhile does nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use triad_proto::v1::{agent_message, AgentCommand, AgentMessage, CommandFailure, CommandResult};

use super::LinkParams;
use crate::drivers::DriverError;

/// Why a command was not carried out; its text is what the leader records.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Refused before anything was done: its order, its epoch, a missing hold, a full queue, a
    /// server not confirmed stopped.
    #[error("{0}")]
    Refused(String),
    /// No lease at the command's epoch came in time.
    #[error("no lease at epoch {epoch} within 5 s; not {doing}")]
    NoLease { epoch: u64, doing: &'static str },
    /// Stopped as asked, but it had finished a promotion: it may hold writes the old primary
    /// lacks (a rollback goes forward to it; the leader reads this text).
    #[error("{}: it may hold writes the old primary lacks", triad_proto::FINISHED_PROMOTION)]
    FinishedPromotion,
    /// The epoch gate (`safety/target.rs`).
    #[error(transparent)]
    Epoch(#[from] crate::safety::target::AdmitError),
    /// Starting or promoting under the lease (`safety/opening.rs`).
    #[error(transparent)]
    Opening(#[from] crate::Error),
    /// The database driver.
    #[error(transparent)]
    Driver(#[from] DriverError),
}

type Outcome = std::result::Result<(u64, String), CommandError>;

/// Commands waiting their turn; more than this and the newest is refused as busy.
const QUEUE_LEN: usize = 64;

/// A command and the stream to answer it on.
type Queued = (AgentCommand, mpsc::Sender<AgentMessage>);

/// Where the streams put the commands they receive (see [`run`]).
#[derive(Clone)]
pub struct CommandQueue {
    tx: mpsc::Sender<Queued>,
}

/// The other end of a [`CommandQueue`], for [`run`].
pub struct QueuedCommands {
    rx: mpsc::Receiver<Queued>,
}

/// A queue and its receiving end.
pub fn queue() -> (CommandQueue, QueuedCommands) {
    let (tx, rx) = mpsc::channel(QUEUE_LEN);
    (CommandQueue { tx }, QueuedCommands { rx })
}

impl CommandQueue {
    /// Queues `cmd`; answers it at once when the queue is full.
    pub(super) fn push(&self, cmd: AgentCommand, reply: mpsc::Sender<AgentMessage>) {
        if let Err(mpsc::error::TrySendError::Full((cmd, reply)) | mpsc::error::TrySendError::Closed((cmd, reply))) =
            self.tx.try_send((cmd, reply))
        {
            let why = CommandError::Refused(format!("refused: {QUEUE_LEN} commands are already waiting"));
            tokio::spawn(async move { answer(&reply, cmd.id, Err(why)).await });
        }
    }
}

/// The newest (epoch, log index) applied: a command never runs after a newer one.
#[derive(Debug, Default)]
pub(super) struct Order {
    last: (u64, u64),
}

impl Order {
    /// Admits a command at (`epoch`, `index`) unless an older one than the newest applied.
    pub(super) fn admit(&mut self, epoch: u64, index: u64) -> std::result::Result<(), CommandError> {
        if (epoch, index) < self.last {
            let (e, i) = self.last;
            return Err(CommandError::Refused(format!(
                "refused: a command at epoch {epoch} (log index {index}) is older than one already applied (epoch \
                 {e}, log index {i})"
            )));
        }
        self.last = (epoch, index);
        Ok(())
    }
}

/// Applies the queued commands one at a time, in order, for as long as the agent runs.
pub async fn run(p: Arc<LinkParams>, mut queued: QueuedCommands) {
    let mut order = Order::default();
    while let Some((cmd, reply)) = queued.rx.recv().await {
        match order.admit(cmd.epoch, cmd.log_index) {
            Ok(()) => execute(p.clone(), cmd, reply).await,
            Err(why) => {
                tracing::warn!(id = cmd.id, epoch = cmd.epoch, "command {why}");
                answer(&reply, cmd.id, Err(why)).await;
            }
        }
    }
}

impl CommandError {
    /// The kind the controller acts on (most failures it only records).
    fn failure(&self) -> CommandFailure {
        match self {
            CommandError::Driver(DriverError::NeedsRecreation(_)) => CommandFailure::NeedsRecreation,
            _ => CommandFailure::Unspecified,
        }
    }
}

/// Reports a command's outcome on the stream it came from (gone: the leader asks again).
pub(super) async fn answer(reply: &mpsc::Sender<AgentMessage>, id: u64, outcome: Outcome) {
    answer_with(reply, id, outcome, None).await
}

/// [`answer`], with the canary row a command read (WaitReplayed).
async fn answer_with(
    reply: &mpsc::Sender<AgentMessage>,
    id: u64,
    outcome: Outcome,
    canary: Option<triad_proto::v1::CanaryRow>,
) {
    let result = match outcome {
        Ok((position, detail)) => CommandResult { id, ok: true, detail, position, canary, ..Default::default() },
        Err(e) => CommandResult {
            id,
            ok: false,
            detail: e.to_string(),
            position: 0,
            failure: e.failure() as i32,
            ..Default::default()
        },
    };
    let _ = reply.send(AgentMessage { msg: Some(agent_message::Msg::Result(result)) }).await;
}

/// The canary row in an observation, if the member read one.
fn canary_row(st: &triad_proto::v1::DbStatus) -> Option<triad_proto::v1::CanaryRow> {
    (st.canary_seq > 0 && st.canary_age_seconds >= 0.0).then(|| triad_proto::v1::CanaryRow {
        seq: st.canary_seq,
        epoch: st.canary_epoch,
        origin: st.canary_origin.clone(),
        written_ms: st.observed_ms.saturating_sub((st.canary_age_seconds * 1000.0) as u64),
    })
}

/// Right before a switchover stops this primary: a canary row now, rather than up to one writer
/// tick (100 ms) earlier, so that the write outage the controller measures begins where writes
/// stopped. Bounded, and a failure only logged: the stop must not wait on a measurement.
async fn last_canary(p: &LinkParams, driver: &dyn crate::drivers::DatabaseDriver, epoch: u64) {
    let Some(member) = p.target.current().map(|t| t.member) else { return };
    let seq = p.db.read().expect("db lock poisoned").as_ref().map_or(0, |d| d.canary_seq) + 1;
    match tokio::time::timeout(Duration::from_millis(300), driver.write_canary(seq, epoch, &member)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("last canary before the stop: {e}"),
        Err(_) => tracing::debug!("last canary before the stop: not committed within 300 ms"),
    }
}

/// Right after a promote: a canary row at the new epoch at once, rather than at the writer's next
/// tick once an observation shows the server as primary (up to 300 ms later), so that the write
/// outage the controller measures ends when writes became possible. On a task of its own: a first
/// commit that waits for a synchronous standby must not hold the promote's answer.
fn first_canary(p: &LinkParams, driver: Arc<dyn crate::drivers::DatabaseDriver>, epoch: u64) {
    let Some(member) = p.target.current().map(|t| t.member) else { return };
    let seq = p.db.read().expect("db lock poisoned").as_ref().map_or(0, |d| d.canary_seq) + 1;
    tokio::spawn(async move {
        match tokio::time::timeout(Duration::from_secs(1), driver.write_canary(seq, epoch, &member)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!("first canary after the promote: {e}"),
            Err(_) => tracing::debug!("first canary after the promote: not committed within 1 s"),
        }
    });
}

/// Runs one command from the leader, after the epoch gate, and reports the result on the stream
/// it came from.
async fn execute(p: Arc<LinkParams>, cmd: AgentCommand, tx: mpsc::Sender<AgentMessage>) {
    use triad_proto::v1::agent_command::Kind;
    let started = Instant::now();
    let mut canary = None;
    let outcome: Outcome = async {
        let refused = |why: &str| CommandError::Refused(why.to_string());
        let driver = p.driver.clone().ok_or_else(|| refused("this agent has no database"))?;
        p.target.admit(cmd.epoch)?;
        let done = |r: std::result::Result<(), DriverError>| r.map(|_| (0, String::new())).map_err(CommandError::from);
        match cmd.kind.clone().ok_or_else(|| refused("empty command"))? {
            Kind::StopPrimary(_) => {
                last_canary(&p, driver.as_ref(), cmd.epoch).await;
                Ok(driver.stop_primary().await.map(|lsn| (lsn, String::new()))?)
            }
            Kind::Promote(promote) => {
                // Every primary this member vouched for (DESIGN.md, point 3) has fenced after
                // the hold. The command carries it (an agent restarted moments ago may have no
                // target state yet); the longer of that and the target's counts, and with
                // neither the promote is refused rather than run without a hold.
                let hold = promote_hold(promote.vouch_hold_ms, p.target.current().as_ref())?;
                // The whole promote keeps within the time the controller gave it (and waits for
                // a little longer): it never outlives the workflow that asked for it.
                let deadline = started + promote_budget(promote.timeout_ms);
                p.vouches.wait_clear(hold).await;
                let held = started.elapsed().as_millis();
                // A new primary opens for writes only under a lease at its epoch; the leader
                // grants one only after a quorum confirmed it still leads and the epoch holds.
                wait_for_lease(&p, cmd.epoch, "promoting").await?;
                // The target state naming this member primary at the epoch comes with that
                // lease, but the stream hands the lease over just before the target: the
                // opener's check must not read the target a moment early (seen in CI: "epoch 2
                // is no longer current (persisted Some(2), target Some((1, standby)))").
                wait_for_target(&p, cmd.epoch).await?;
                let leased = started.elapsed().as_millis();
                // The opener checks the lease and the epoch again and arms the watchdog first.
                let opener = p.opener(driver.clone());
                opener.promote(cmd.epoch, &promote.synchronous, deadline).await?;
                first_canary(&p, driver.clone(), cmd.epoch);
                // For the workflow's log: where the promote's time went (since the command came).
                let (epoch, promoted) = (cmd.epoch, started.elapsed().as_millis());
                Ok((0, format!("vouch hold {held} ms, lease at epoch {epoch} {leased} ms, promoted {promoted} ms")))
            }
            Kind::Rejoin(r) => Ok(driver.rejoin(&r.primary_endpoint).await.map(|report| (0, report))?),
            Kind::SetSynchronous(s) => done(driver.set_synchronous(&s.names).await),
            Kind::Restart(_) => restart(&p, driver.clone(), cmd.epoch).await.map(|_| (0, String::new())),
            Kind::FailPrimary(_) => {
                // Only a member the accepted target state makes primary at this epoch: a stale
                // rehearsal must not stop a standby (or a primary of a newer epoch).
                let primary = p.target.current().is_some_and(|t| t.epoch == cmd.epoch && t.role == "primary");
                if !primary {
                    return Err(refused("not the primary at this epoch: nothing stopped"));
                }
                driver.fence().await?;
                Ok((0, "stopped at once, as a lost site would be".into()))
            }
            Kind::ReleaseLease(_) => release_lease(&p, driver.as_ref(), cmd.epoch).await,
            Kind::StopStandby(_) => {
                driver.fence().await?;
                if driver.stopped_as_primary().await {
                    return Err(CommandError::FinishedPromotion);
                }
                Ok((0, "stopped as a standby: it never finished a promotion".into()))
            }
            Kind::Follow(f) => done(driver.follow(&f.primary_endpoint).await),
            Kind::WaitReplayed(w) => {
                driver.wait_replayed(w.position, Duration::from_millis(u64::from(w.timeout_ms))).await?;
                canary = canary_row(&driver.observe().await);
                Ok((0, String::new()))
            }
            Kind::ValidateTarget(_) => Ok(driver.validate_target().await.map(|said| (0, said))?),
            // The link hands these to `side.rs`; one here was misrouted, and is not run.
            Kind::RunHook(_) | Kind::RunCheck(_) | Kind::SetBalancer(_) | Kind::MakeCopy(_) | Kind::DestroyCopy(_) => {
                Err(refused("a hook, check, balancer or copy command reached the database's queue"))
            }
        }
    }
    .await;
    let what = format!("{:?}", cmd.kind);
    match &outcome {
        Ok(_) => tracing::info!(
            id = cmd.id,
            epoch = cmd.epoch,
            ms = started.elapsed().as_millis() as u64,
            "command done: {what}"
        ),
        Err(e) => tracing::warn!(id = cmd.id, epoch = cmd.epoch, "command failed: {what}: {e}"),
    }
    answer_with(&tx, cmd.id, outcome, canary).await;
}

/// The vouch hold a promote waits out: the longer of the command's and the accepted target
/// state's (an agent restarted moments ago may have none); refused when neither carries one.
fn promote_hold(
    command_ms: u64,
    target: Option<&triad_proto::v1::Assignment>,
) -> std::result::Result<u64, CommandError> {
    match command_ms.max(target.map(|t| t.vouch_hold_ms).unwrap_or(0)) {
        0 => Err(CommandError::Refused(
            "no vouch hold known (neither the command nor a target state carries one): not promoting".into(),
        )),
        hold => Ok(hold),
    }
}

/// The time a promote may take from its arrival: the command's, else 60 s.
fn promote_budget(timeout_ms: u64) -> Duration {
    match timeout_ms {
        0 => Duration::from_secs(60),
        ms => Duration::from_millis(ms),
    }
}

/// Whether this agent holds a lease at `epoch` that the guard would not fence at once.
fn holds_lease(p: &LinkParams, epoch: u64) -> bool {
    p.lease.snapshot().remaining_ms(epoch, crate::safety::lease::boot_ms()) > p.cfg.lease.fence_lead_ms as i64
}

/// Waits (a few seconds at most) until this agent holds a lease at `epoch`; else refuses `doing`.
async fn wait_for_lease(p: &LinkParams, epoch: u64, doing: &'static str) -> std::result::Result<(), CommandError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !holds_lease(p, epoch) {
        if Instant::now() > deadline {
            return Err(CommandError::NoLease { epoch, doing });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Waits (a few seconds at most) until the accepted target state is at `epoch` or newer; the
/// opener then judges whether it still makes this member the primary.
async fn wait_for_target(p: &LinkParams, epoch: u64) -> std::result::Result<(), CommandError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.target.current().is_none_or(|t| t.epoch < epoch) {
        if Instant::now() > deadline {
            return Err(CommandError::Refused(format!("no target state at epoch {epoch} within 5 s; not promoting")));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// `Restart`: a member stopped as a primary starts only under a lease at `epoch`, in recovery,
/// and opens only under a lease still held once it is up (`opening.rs`), all under the start
/// gate, so that a lease released to a failover (DESIGN.md point 4) cannot be undone by a
/// restart the leader (or an earlier leader) asked for. Any other member starts as it was.
async fn restart(
    p: &LinkParams,
    driver: Arc<dyn crate::drivers::DatabaseDriver>,
    epoch: u64,
) -> std::result::Result<(), CommandError> {
    if driver.stopped_as_primary().await {
        wait_for_lease(p, epoch, "starting the primary").await?;
    }
    match p.opener(driver.clone()).start(epoch).await? {
        crate::safety::opening::Started::Opened => Ok(()),
        crate::safety::opening::Started::NotStoppedAsPrimary => Ok(driver.restart().await?),
    }
}

/// `ReleaseLease` (DESIGN.md point 4): a failover's leader may skip its wait for the old lease
/// to end only on this member's word that its server is stopped *and will stay so*. Under the
/// start gate no start is under way, so the server seen stopped here stays stopped once the lease
/// is released: every start needs a lease, and the only grants left to count are for requests
/// sent after the release, which the leader refuses while it fails over and an earlier leader
/// never granted (it grants only on a quorum round that came before the election of this one).
/// Returns the final position when the member is stopped as a primary.
async fn release_lease(p: &LinkParams, driver: &dyn crate::drivers::DatabaseDriver, epoch: u64) -> Outcome {
    let _gate = p.lease.start_gate().lock().await;
    let obs = driver.observe().await;
    if obs.up || !obs.stopped {
        return Err(CommandError::Refused("the server is not confirmed stopped: the lease is kept".into()));
    }
    // Fail closed: in memory the lease is given up either way (nothing starts under it), but
    // the failover may skip its wait only if a restart of this agent cannot revive it.
    if !p.lease.release(epoch) {
        return Err(CommandError::Refused(
            "the lease release could not be written to the state directory: the failover must wait the lease out"
                .into(),
        ));
    }
    tracing::warn!(epoch, "the server is stopped and its lease released to a failover");
    Ok((obs.final_position, format!("stopped; the lease at epoch {epoch} is released")))
}

#[cfg(test)]
mod simulated;

#[cfg(test)]
mod tests {
    use super::*;
    use triad_proto::v1::Assignment;

    #[test]
    fn commands_never_run_after_a_newer_one() {
        let mut order = Order::default();
        assert!(order.admit(2, 40).is_ok());
        assert!(order.admit(2, 40).is_ok(), "several commands share their epoch's log index");
        assert!(order.admit(3, 55).is_ok());
        let refused = order.admit(2, 40).unwrap_err().to_string();
        assert!(refused.contains("older than one already applied (epoch 3, log index 55)"), "{refused}");
        assert!(order.admit(3, 54).is_err(), "an older index at the same epoch");
        assert!(order.admit(4, 1).is_ok(), "a newer epoch, whatever its index");
    }

    #[test]
    fn a_promote_waits_the_longer_hold_and_never_none() {
        let target = Assignment { vouch_hold_ms: 1200, ..Default::default() };
        assert_eq!(promote_hold(1500, None).ok(), Some(1500), "no target state yet: the command's hold");
        assert_eq!(promote_hold(1500, Some(&target)).ok(), Some(1500));
        assert_eq!(promote_hold(0, Some(&target)).ok(), Some(1200));
        assert!(promote_hold(0, None).is_err(), "no hold known: refused, not skipped");
    }
}
