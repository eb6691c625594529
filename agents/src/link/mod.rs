//! The agent's streams to the controllers: one per controller, each reconnecting with capped
//! exponential backoff. Every stream says hello and heartbeats; each controller tells the agent
//! who leads, so a change of leader is learned from any surviving controller at once. The
//! commands that come on the leader's stream are carried out in `execute.rs`.

mod copy;
mod execute;
mod side;

pub use execute::{queue as command_queue, run as run_commands, CommandQueue, QueuedCommands};
pub use side::SideCommands;

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
    pub target: Arc<crate::safety::target::Target>,
    /// The primary's lease, renewed by the leader's acks.
    pub lease: Arc<crate::safety::lease::Lease>,
    /// When this agent last vouched for a primary: it promotes only after that has expired.
    pub vouches: Arc<crate::safety::vouch::Vouches>,
    /// Wakes every stream to send a heartbeat now (a lease to ask for).
    pub renew: tokio::sync::Notify,
    /// Where the commands from the leader wait their turn ([`run_commands`] applies them).
    pub commands: CommandQueue,
    /// Where service hooks, checks and balancer updates go: beside the database's queue.
    pub side: SideCommands,
    /// The database driver, for the commands the leader sends.
    pub driver: Option<Arc<dyn crate::drivers::DatabaseDriver>>,
    /// Armed before a primary is started or promoted (`opening.rs`).
    pub watchdog: crate::safety::watchdog::SharedWatchdog,
    /// The links this agent probes (the leader's plan) and what it measured.
    pub probes: Arc<crate::probes::Probes>,
}

impl LinkParams {
    /// What opens a primary on `driver` under this agent's lease.
    pub fn opener(&self, driver: Arc<dyn crate::drivers::DatabaseDriver>) -> crate::safety::opening::Opener {
        crate::safety::opening::Opener {
            driver,
            lease: self.lease.clone(),
            target: self.target.clone(),
            watchdog: self.watchdog.clone(),
            fence_lead_ms: self.cfg.lease.fence_lead_ms,
        }
    }
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
            probe_addr: p.cfg.probe_advertised().to_string(),
        })),
    };
    tx.send(hello).await.map_err(|_| Error::Protocol("outbound stream closed".into()))?;
    let mut inbound = client.attach(ReceiverStream::new(rx)).await?.into_inner();
    let interval = Duration::from_millis(p.cfg.heartbeat_interval_ms);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    // Send times (CLOCK_BOOTTIME) of the heartbeats, by seq: a grant counts from the moment its
    // request left, and a first lease from the heartbeat its target state names.
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
        asked.push_back((seq, crate::safety::lease::boot_ms()));
        while asked.len() > 64 {
            asked.pop_front();
        }
        let db = p.db.read().expect("db lock poisoned").clone();
        let (links, snmp) = (p.probes.reports(), p.probes.snmp_reports());
        let services = p.probes.checks.reports();
        let hb = AgentHeartbeat { seq, load: Some(load), db, lease_epoch, links, snmp, services };
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
            if l.leader_id != 0 {
                p.lease.leader_known();
            }
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
                // Counted from receiving it (the margin m covers its time in flight, as it does
                // every wait), or carried over from the lease at epoch 0 if that ends later.
                p.lease.first(a.epoch, a.lease_ms, Some(crate::safety::lease::boot_ms()));
            }
            p.target.receive(a);
            let now = lease_epoch(p);
            if now != was && now.is_some_and(|e| e > 0) {
                p.renew.notify_waiters();
                return true;
            }
        }
        Some(controller_message::Msg::Probes(plan)) => {
            drop(map);
            p.probes.set_plan(plan);
        }
        Some(controller_message::Msg::Checks(plan)) => {
            drop(map);
            p.probes.checks.set_plan(plan);
        }
        Some(controller_message::Msg::Command(cmd)) => {
            drop(map);
            if side::is_side(&cmd) {
                p.side.push(cmd, tx.clone());
            } else if copy::is_copy(&cmd) {
                copy::spawn(p.driver.clone(), cmd, tx.clone());
            } else {
                p.commands.push(cmd, tx.clone());
            }
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
