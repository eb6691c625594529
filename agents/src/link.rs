//! The agent's streams to the controllers: one per controller, each reconnecting with capped
//! exponential backoff. Every stream says hello and heartbeats; each controller tells the agent
//! who leads, so a change of leader is learned from any surviving controller at once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{ClientTlsConfig, Endpoint};
use triad_proto::v1::agent_link_client::AgentLinkClient;
use triad_proto::v1::{
    agent_message, controller_message, AgentHeartbeat, AgentHello, AgentMessage, HostFacts, HostLoad,
};

use crate::config::AgentConfig;
use crate::error::{Error, Result};
use crate::metrics::AgentMetrics;

/// What the agent knows of one controller.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LinkStatus {
    pub connected: bool,
    pub controller_id: u64,
    pub leader_id: u64,
    pub leader_addr: String,
    pub term: u64,
    pub acks: u64,
    pub last_error: String,
}

/// Shared between the links, the HTTP endpoints and the metrics.
pub struct Links {
    pub status: Mutex<BTreeMap<String, LinkStatus>>,
}

impl Links {
    /// The leader as reported by the controller with the highest term.
    pub fn leader(&self) -> Option<(u64, String)> {
        let map = self.status.lock().expect("links lock poisoned");
        map.values()
            .filter(|s| s.connected && s.leader_id != 0)
            .max_by_key(|s| s.term)
            .map(|s| (s.leader_id, s.leader_addr.clone()))
    }
}

/// Everything one link needs.
pub struct LinkParams {
    /// Controllers a link task runs for; grows as controllers report new members.
    pub followed: Mutex<std::collections::BTreeSet<String>>,
    pub cfg: AgentConfig,
    pub tls: ClientTlsConfig,
    pub facts: HostFacts,
    pub load: Arc<RwLock<HostLoad>>,
    pub links: Arc<Links>,
    pub metrics: Arc<AgentMetrics>,
    /// The latest observation of this host's database member, if it has one.
    pub db: Arc<RwLock<Option<triad_proto::v1::DbStatus>>>,
    /// Target states from the controllers, checked against and recorded in the epoch file.
    pub target: Arc<crate::target::Target>,
    /// The primary's lease, renewed by the leader's acks.
    pub lease: Arc<crate::lease::Lease>,
    /// When this agent last vouched for a primary: it promotes only after that has expired.
    pub vouches: Arc<crate::vouch::Vouches>,
    /// Wakes every stream to send a heartbeat now (a lease to ask for).
    pub renew: tokio::sync::Notify,
    /// The database driver, for the commands the leader sends.
    pub driver: Option<Arc<dyn crate::drivers::DatabaseDriver>>,
}

/// Runs one command from the leader, after the epoch gate, and reports the result on the stream
/// it came from.
async fn execute(p: Arc<LinkParams>, cmd: triad_proto::v1::AgentCommand, tx: mpsc::Sender<AgentMessage>) {
    use triad_proto::v1::agent_command::Kind;
    let started = Instant::now();
    let outcome: std::result::Result<(u64, String), String> = async {
        let driver = p.driver.clone().ok_or("this agent has no database")?;
        p.target.admit(cmd.epoch)?;
        let done = |r: std::result::Result<(), String>| r.map(|_| (0, String::new()));
        match cmd.kind.clone().ok_or("empty command")? {
            Kind::StopPrimary(_) => driver.stop_primary().await.map(|lsn| (lsn, String::new())),
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
                let leased = started.elapsed().as_millis();
                driver.promote(&promote.synchronous_standby_names, deadline).await?;
                // For the workflow's log: where the promote's time went (since the command came).
                let (epoch, promoted) = (cmd.epoch, started.elapsed().as_millis());
                Ok((0, format!("vouch hold {held} ms, lease at epoch {epoch} {leased} ms, promoted {promoted} ms")))
            }
            Kind::Rejoin(r) => driver.rejoin(&r.primary_conninfo).await.map(|report| (0, report)),
            Kind::SetSynchronous(s) => done(driver.set_synchronous(&s.names).await),
            Kind::Restart(_) => done(restart(&p, driver.as_ref(), cmd.epoch).await),
            Kind::ReleaseLease(_) => release_lease(&p, driver.as_ref(), cmd.epoch).await,
            Kind::StopStandby(_) => {
                driver.fence().await?;
                if driver.stopped_as_primary().await {
                    let finished = triad_proto::FINISHED_PROMOTION;
                    return Err(format!("{finished}: it may hold writes the old primary lacks"));
                }
                Ok((0, "stopped as a standby: it never finished a promotion".into()))
            }
            Kind::Follow(f) => done(driver.follow(&f.primary_conninfo).await),
            Kind::WaitReplayed(w) => {
                done(driver.wait_replayed(w.lsn, Duration::from_millis(u64::from(w.timeout_ms))).await)
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
    let result = match outcome {
        Ok((lsn, detail)) => triad_proto::v1::CommandResult { id: cmd.id, ok: true, detail, lsn },
        Err(detail) => triad_proto::v1::CommandResult { id: cmd.id, ok: false, detail, lsn: 0 },
    };
    let _ = tx.send(AgentMessage { msg: Some(agent_message::Msg::Result(result)) }).await;
}

/// The vouch hold a promote waits out: the longer of the command's and the accepted target
/// state's (an agent restarted moments ago may have none); refused when neither carries one.
fn promote_hold(command_ms: u64, target: Option<&triad_proto::v1::Assignment>) -> std::result::Result<u64, String> {
    match command_ms.max(target.map(|t| t.vouch_hold_ms).unwrap_or(0)) {
        0 => Err("no vouch hold known (neither the command nor a target state carries one): not promoting".into()),
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
    p.lease.snapshot().remaining_ms(epoch, crate::lease::boot_ms()) > p.cfg.lease.fence_lead_ms as i64
}

/// Waits (a few seconds at most) until this agent holds a lease at `epoch`; else refuses `doing`.
async fn wait_for_lease(p: &LinkParams, epoch: u64, doing: &str) -> std::result::Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !holds_lease(p, epoch) {
        if Instant::now() > deadline {
            return Err(format!("no lease at epoch {epoch} within 5 s; not {doing}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// `Restart`: a member that would start as a primary starts only under a lease at `epoch`,
/// checked under the start gate, so that a lease released to a failover (DESIGN.md point 4)
/// cannot be undone by a restart the leader (or an earlier leader) asked for.
async fn restart(
    p: &LinkParams,
    driver: &dyn crate::drivers::DatabaseDriver,
    epoch: u64,
) -> std::result::Result<(), String> {
    if driver.stopped_as_primary().await {
        wait_for_lease(p, epoch, "starting the primary").await?;
    }
    let _gate = p.lease.start_gate().lock().await;
    if driver.stopped_as_primary().await && !holds_lease(p, epoch) {
        return Err(format!("the lease at epoch {epoch} ended before the start; not starting the primary"));
    }
    driver.restart().await
}

/// `ReleaseLease` (DESIGN.md point 4): a failover's leader may skip its wait for the old lease
/// to end only on this member's word that its server is stopped *and will stay so*. Under the
/// start gate no start is under way, so the server seen stopped here stays stopped once the lease
/// is released: every start needs a lease, and the only grants left to count are for requests
/// sent after the release, which the leader refuses while it fails over and an earlier leader
/// never granted (it grants only on a quorum round that came before the election of this one).
/// Returns the final position when the member is stopped as a primary.
async fn release_lease(
    p: &LinkParams,
    driver: &dyn crate::drivers::DatabaseDriver,
    epoch: u64,
) -> std::result::Result<(u64, String), String> {
    let _gate = p.lease.start_gate().lock().await;
    let obs = driver.observe().await;
    if obs.up || !obs.stopped {
        return Err("the server is not confirmed stopped: the lease is kept".into());
    }
    p.lease.release(epoch);
    tracing::warn!(epoch, "the server is stopped and its lease released to a failover");
    Ok((obs.final_lsn, format!("stopped; the lease at epoch {epoch} is released")))
}

/// The epoch at which this agent asks for a lease: the accepted target's, while it makes this
/// member the primary at the persisted epoch; 0 for a database agent that knows no epoch and has
/// no target state (its cluster not adopted, or its state directory lost): granted, that is the
/// leader's word that the cluster is not adopted, without which the guard fences a primary.
fn lease_epoch(p: &LinkParams) -> Option<u64> {
    match (p.target.current(), p.target.epoch()) {
        (Some(t), Some(e)) if t.role == "primary" && t.epoch == e => Some(e),
        (None, Some(0)) if p.driver.is_some() => Some(0),
        _ => None,
    }
}

/// Starts a link to `addr` unless one runs already.
pub fn ensure_following(p: &Arc<LinkParams>, addr: &str) {
    let new = p.followed.lock().expect("followed lock poisoned").insert(addr.to_string());
    if new {
        p.metrics.connected.with_label_values(&[addr]).set(0);
        tokio::spawn(follow(p.clone(), addr.to_string()));
    }
}

/// Keeps a stream to the controller at `addr` open, forever.
async fn follow(p: Arc<LinkParams>, addr: String) {
    let max = Duration::from_millis(p.cfg.reconnect_backoff_max_ms);
    let mut backoff = Duration::from_millis(50);
    loop {
        let opened = Instant::now();
        let result = stream_once(&p, &addr).await;
        {
            let mut map = p.links.status.lock().expect("links lock poisoned");
            let s = map.entry(addr.clone()).or_default();
            s.connected = false;
            if let Err(e) = &result {
                s.last_error = e.to_string();
            }
        }
        p.metrics.connected.with_label_values(&[&addr]).set(0);
        if let Err(e) = result {
            tracing::debug!(controller = %addr, "link down: {e}");
        }
        // A stream that stayed up a while starts the backoff afresh.
        if opened.elapsed() > Duration::from_secs(2) {
            backoff = Duration::from_millis(50);
        }
        p.metrics.reconnects.inc();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(max);
    }
}

async fn stream_once(p: &Arc<LinkParams>, addr: &str) -> Result<()> {
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .map_err(|e| Error::Protocol(format!("bad controller address {addr}: {e}")))?
        .tls_config(p.tls.clone())?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(2))
        .keep_alive_timeout(Duration::from_secs(3))
        .connect()
        .await?;
    let mut client = AgentLinkClient::new(channel);
    let (tx, rx) = mpsc::channel(16);
    let hello = AgentMessage {
        msg: Some(agent_message::Msg::Hello(AgentHello {
            name: p.cfg.name.clone(),
            site: p.cfg.site.clone(),
            host: p.cfg.host.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            facts: Some(p.facts.clone()),
            vouch_addr: p.cfg.vouch_addr.clone(),
        })),
    };
    tx.send(hello).await.map_err(|_| Error::Protocol("outbound stream closed".into()))?;
    let mut inbound = client.attach(ReceiverStream::new(rx)).await?.into_inner();
    let interval = Duration::from_millis(p.cfg.heartbeat_interval_ms);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    // Send times (CLOCK_BOOTTIME) of the heartbeats that asked for a lease, by seq: a grant
    // counts from the moment its request left.
    let mut asked: std::collections::VecDeque<(u64, u64)> = std::collections::VecDeque::new();
    let mut last_heard = Instant::now();
    // A controller that stops answering (a cut link, a stopped process) is noticed within a few
    // heartbeats rather than at the TCP timeout.
    let silence = (interval * 5).max(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            // A member just made primary asks for its lease at once rather than at the next tick.
            _ = p.renew.notified() => {}
            msg = inbound.message() => {
                let Some(msg) = msg? else { return Err(Error::Protocol("controller closed the stream".into())) };
                last_heard = Instant::now();
                // A target state that changes the lease to ask for came on this stream (the
                // leader's): ask at once. `renew` wakes only the streams waiting on it, and this
                // one is not while it handles the message.
                if !handle(p, addr, msg, &tx, &asked) {
                    continue;
                }
            }
        }
        if last_heard.elapsed() > silence {
            return Err(Error::Protocol(format!("controller silent for {} ms", last_heard.elapsed().as_millis())));
        }
        seq += 1;
        let load = *p.load.read().expect("load lock poisoned");
        let lease_epoch = lease_epoch(p);
        if lease_epoch.is_some() {
            asked.push_back((seq, crate::lease::boot_ms()));
            while asked.len() > 64 {
                asked.pop_front();
            }
        }
        let db = p.db.read().expect("db lock poisoned").clone();
        let hb = AgentHeartbeat { seq, load: Some(load), db, lease_epoch };
        if tx.send(AgentMessage { msg: Some(agent_message::Msg::Heartbeat(hb)) }).await.is_err() {
            return Err(Error::Protocol("outbound stream closed".into()));
        }
        p.metrics.heartbeats.inc();
    }
}

/// Handles one message from the controller at `addr`; true when a lease should be asked for now.
fn handle(
    p: &Arc<LinkParams>,
    addr: &str,
    msg: triad_proto::v1::ControllerMessage,
    tx: &mpsc::Sender<AgentMessage>,
    asked: &std::collections::VecDeque<(u64, u64)>,
) -> bool {
    let mut map = p.links.status.lock().expect("links lock poisoned");
    let s = map.entry(addr.to_string()).or_default();
    if !s.connected {
        s.connected = true;
        s.last_error.clear();
        p.metrics.connected.with_label_values(&[addr]).set(1);
    }
    match msg.msg {
        Some(controller_message::Msg::Leader(l)) => {
            tracing::info!(controller = %addr, leader = l.leader_id, term = l.term, "leader info");
            s.controller_id = l.controller_id;
            s.leader_id = l.leader_id;
            s.leader_addr = l.leader_addr;
            s.term = l.term;
            p.metrics.leader_id.set(l.leader_id as i64);
            drop(map);
            for other in &l.controllers {
                if other.parse::<std::net::SocketAddr>().is_ok() {
                    ensure_following(p, other);
                }
            }
        }
        Some(controller_message::Msg::Assignment(a)) => {
            drop(map);
            let was = lease_epoch(p);
            // The first lease before the target is accepted: the guard reads the target before
            // the lease, so it never sees this member named primary without the lease that comes
            // with it. (Only an agent never under lease takes it, so nothing else changes; a
            // lease at an epoch no accepted target names counts for nothing.)
            if a.role == "primary" {
                p.lease.first(a.epoch, a.lease_ms);
            }
            p.target.receive(a);
            let now = lease_epoch(p);
            if now != was && now.is_some_and(|e| e > 0) {
                p.renew.notify_waiters();
                return true;
            }
        }
        Some(controller_message::Msg::Command(cmd)) => {
            drop(map);
            tokio::spawn(execute(p.clone(), cmd, tx.clone()));
        }
        Some(controller_message::Msg::Ack(ack)) => {
            s.acks += 1;
            p.metrics.acks.inc();
            drop(map);
            if ack.lease_ms > 0 {
                if let Some(&(_, sent)) = asked.iter().find(|(n, _)| *n == ack.seq) {
                    p.lease.granted(ack.lease_epoch, sent, ack.lease_ms);
                }
            } else if !ack.lease_refused.is_empty() {
                tracing::debug!(controller = %addr, "lease not granted: {}", ack.lease_refused);
            }
        }
        None => {}
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use triad_proto::v1::Assignment;

    #[test]
    fn a_promote_waits_the_longer_hold_and_never_none() {
        let target = Assignment { vouch_hold_ms: 1200, ..Default::default() };
        assert_eq!(promote_hold(1500, None), Ok(1500), "no target state yet: the command's hold");
        assert_eq!(promote_hold(1500, Some(&target)), Ok(1500));
        assert_eq!(promote_hold(0, Some(&target)), Ok(1200));
        assert!(promote_hold(0, None).is_err(), "no hold known: refused, not skipped");
    }
}
