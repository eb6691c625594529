//! The `AgentLink` service: one long-lived stream per agent. The agent says hello (its identity
//! must match its certificate), then heartbeats; this controller records both as soft state and
//! tells the agent who leads, at once and again whenever that changes, so an agent never waits
//! out a timeout to find the new leader.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use triad_proto::v1::agent_link_server::AgentLink;
use triad_proto::v1::{
    agent_message, controller_message, AgentHeartbeat, AgentHello, AgentMessage, Assignment, ControllerMessage,
    HeartbeatAck, LeaderInfo, ProbePlan, Voucher,
};

use super::auth;
use crate::brain::{lease, AgentHelloInfo};
use crate::config::check_name;
use crate::context::{now_ms, Ctx};
use crate::state::{HostFacts, Role};

/// How long a new stream may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves agents.
pub struct AgentLinkApi {
    ctx: Arc<Ctx>,
}

impl AgentLinkApi {
    pub fn new(ctx: Arc<Ctx>) -> Self {
        AgentLinkApi { ctx }
    }
}

type OutStream = Pin<Box<dyn Stream<Item = Result<ControllerMessage, Status>> + Send>>;

fn leader_info(ctx: &Ctx) -> ControllerMessage {
    let m = ctx.raft.metrics().borrow().clone();
    let (leader_id, leader_addr) = ctx.leader();
    ControllerMessage {
        msg: Some(controller_message::Msg::Leader(LeaderInfo {
            controller_id: ctx.id,
            leader_id: leader_id.unwrap_or(0),
            leader_addr: leader_addr.unwrap_or_default(),
            term: m.current_term,
            controllers: m.membership_config.nodes().map(|(_, n)| n.addr.clone()).collect(),
        })),
    }
}

/// The committed target state of the database member on agent `name`'s host, if it hosts one
/// of an adopted cluster.
fn assignment_for(ctx: &Ctx, name: &str) -> Option<Assignment> {
    let g = ctx.state.read().expect("state lock poisoned");
    g.state.clusters.values().filter(|c| c.epoch > 0).find_map(|c| {
        let m = c.members.values().find(|m| m.agent == name)?;
        let primary = c.primary.clone().unwrap_or_default();
        let primary_endpoint = c.members.get(&primary).map(|p| p.endpoint.clone()).unwrap_or_default();
        let primary_agent = c.members.get(&primary).map(|p| p.agent.clone()).unwrap_or_default();
        Some(Assignment {
            primary_endpoint,
            cluster: c.name.clone(),
            member: m.name.clone(),
            epoch: c.epoch,
            log_index: c.epoch_index,
            role: if primary == m.name { "primary" } else { "standby" }.into(),
            primary,
            vouch: c.vouch.iter().cloned().collect(),
            vouchers: c
                .vouch
                .iter()
                .filter_map(|v| c.members.get(v))
                .map(|v| Voucher { member: v.name.clone(), addr: ctx.obs.vouch_addr(&v.agent) })
                .collect(),
            vouch_ms: ctx.cfg.lease.period_ms,
            vouch_hold_ms: ctx.cfg.lease.vouch_hold_ms(),
            paused: c.paused,
            lease_ms: 0,
            lease_from_seq: 0,
            confirmed: false,
            primary_agent,
        })
    })
}

/// What, when it changes, the agent must hear about: the leader and the membership.
fn leader_key(ctx: &Ctx) -> (Option<u64>, Option<openraft::LogId<u64>>) {
    let m = ctx.raft.metrics();
    let m = m.borrow();
    (m.current_leader, *m.membership_config.log_id())
}

#[tonic::async_trait]
impl AgentLink for AgentLinkApi {
    type AttachStream = OutStream;

    async fn attach(&self, req: Request<Streaming<AgentMessage>>) -> Result<Response<OutStream>, Status> {
        let result = self.open(req).await;
        self.ctx.metrics.rpc("AgentLink/Attach", &result);
        result
    }
}

impl AgentLinkApi {
    async fn open(&self, req: Request<Streaming<AgentMessage>>) -> Result<Response<OutStream>, Status> {
        let caller = auth::caller(&req, &self.ctx.state)?;
        auth::require_recorded(&self.ctx, &caller, &[Role::Agent], "an agent stream")?;
        let mut inbound = req.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no hello within 5 s"))??;
        let hello = match first.and_then(|m| m.msg) {
            Some(agent_message::Msg::Hello(h)) => h,
            _ => return Err(Status::invalid_argument("the first message on an agent stream must be a hello")),
        };
        let info = self.accept_hello(&caller.name, hello)?;
        let name = caller.name.clone();
        self.ctx.obs.connected(&name, info, now_ms());
        tracing::info!(agent = %name, from = %caller.origin, "agent stream opened");

        let (tx, rx) = mpsc::channel(16);
        let ctx = self.ctx.clone();
        let token = ctx.bus.register(&name, tx.clone());
        tokio::spawn(async move {
            serve(&ctx, &name, &tx, inbound).await;
            ctx.bus.unregister(&name, token);
            ctx.obs.disconnected(&name);
            tracing::info!(agent = %name, "agent stream closed");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx)) as OutStream))
    }

    /// Checks an agent's hello against its certificate and the deployment: its name, its site,
    /// its failsafe address. What it says about itself, when it is admitted.
    fn accept_hello(&self, certified: &str, hello: AgentHello) -> Result<AgentHelloInfo, Status> {
        if hello.name != certified {
            return Err(Status::permission_denied(format!(
                "the stream says it is agent `{}` but its certificate is for `{}`",
                hello.name, certified
            )));
        }
        check_name("site", &hello.site).map_err(|e| Status::invalid_argument(e.to_string()))?;
        {
            let g = self.ctx.state.read().expect("state lock poisoned");
            if g.state.seeded && !g.state.sites.is_empty() && !g.state.sites.contains_key(&hello.site) {
                return Err(Status::invalid_argument(format!(
                    "site `{}` is not a site of this deployment",
                    hello.site
                )));
            }
        }
        for (key, addr) in [("vouch_addr", &hello.vouch_addr), ("probe_addr", &hello.probe_addr)] {
            if !addr.is_empty() && addr.parse::<std::net::SocketAddr>().is_err() {
                return Err(Status::invalid_argument(format!("{key} `{addr}` is not an IP:PORT address")));
            }
        }
        let f = hello.facts.clone().unwrap_or_default();
        let info = AgentHelloInfo {
            site: hello.site.clone(),
            host: hello.host.clone(),
            version: hello.version.clone(),
            vouch_addr: hello.vouch_addr.clone(),
            probe_addr: hello.probe_addr.clone(),
            facts: HostFacts {
                os: f.os,
                kernel: f.kernel,
                cpus: f.cpus,
                memory_total_bytes: f.memory_total_bytes,
                disk_total_bytes: f.disk_total_bytes,
                addresses: f.addresses.into_iter().take(64).map(|a| a.chars().take(64).collect()).collect(),
            },
        };
        Ok(info)
    }
}

/// Records a heartbeat that arrived at `arrived`, and decides the lease it asks for, if any.
async fn answer_heartbeat(ctx: &Ctx, name: &str, hb: AgentHeartbeat, arrived: Instant) -> HeartbeatAck {
    let (seq, lease_epoch) = (hb.seq, hb.lease_epoch);
    ctx.obs.heartbeat(name, now_ms(), hb);
    let mut ack = HeartbeatAck { seq, ..Default::default() };
    if let Some(epoch) = lease_epoch {
        match lease::grant(ctx, name, epoch, arrived).await {
            Ok(ms) => (ack.lease_ms, ack.lease_epoch) = (ms, epoch),
            Err(why) => ack.lease_refused = why.to_string(),
        }
    }
    ack
}

/// Serves one agent's stream until it closes: who leads, target states (and the first lease
/// with a primary's), answers to heartbeats (a lease decided per request), command results.
async fn serve(
    ctx: &Arc<Ctx>,
    name: &str,
    tx: &mpsc::Sender<Result<ControllerMessage, Status>>,
    mut inbound: Streaming<AgentMessage>,
) {
    let mut metrics = ctx.raft.metrics();
    let mut last_sent = None;
    let mut last_assignment: Option<Assignment> = None;
    // The newest heartbeat on this stream: its seq and when it arrived.
    let mut last_heartbeat: Option<(u64, Instant)> = None;
    let mut last_plan: Option<ProbePlan> = None;
    let mut last_checks: Option<triad_proto::v1::CheckPlan> = None;
    loop {
        let key = leader_key(ctx);
        if last_sent.as_ref() != Some(&key) {
            last_sent = Some(key);
            if tx.send(Ok(leader_info(ctx))).await.is_err() {
                break;
            }
        }
        // Only the leader sends target states, each read after a quorum round (a
        // linearizable read): a follower's applied state may lag, and so may a leader's
        // until the round shows it applied all that was committed. So the epoch sent is
        // current, and an agent whose epoch file is unreadable may accept it (`confirmed`).
        // When the round fails the target state is sent at a later wake-up.
        let assignment = if ctx.is_leader() { assignment_for(ctx, name) } else { None };
        // The heartbeat a first lease counts from: one that arrived before the round began.
        let heartbeat = last_heartbeat;
        let round = if assignment.is_some() && assignment != last_assignment {
            lease::confirm_leading(ctx).await
        } else {
            None
        };
        if let Some(round_began) = round {
            if let Some(mut a) = assignment_for(ctx, name) {
                last_assignment = Some(a.clone());
                a.confirmed = true;
                if a.role == "primary" {
                    let arrived = heartbeat.map(|(_, at)| at);
                    a.lease_ms = lease::with_target_state(ctx, &a.cluster, arrived, round_began);
                    a.lease_from_seq = heartbeat.map(|(seq, _)| seq).unwrap_or(0);
                }
                let msg = ControllerMessage { msg: Some(controller_message::Msg::Assignment(a)) };
                if tx.send(Ok(msg)).await.is_err() {
                    break;
                }
            }
        } else if assignment.is_none() {
            last_assignment = None;
        }
        // The links this agent probes: the leader's word, sent when it changes.
        if ctx.is_leader() {
            let plan = crate::brain::links::plan_for(ctx, name);
            if last_plan.as_ref() != Some(&plan) {
                last_plan = Some(plan.clone());
                if tx.send(Ok(ControllerMessage { msg: Some(controller_message::Msg::Probes(plan)) })).await.is_err() {
                    break;
                }
            }
            // And the service checks it runs, likewise.
            let checks = crate::brain::services::plan_for(ctx, name);
            if last_checks.as_ref() != Some(&checks) {
                last_checks = Some(checks.clone());
                let msg = ControllerMessage { msg: Some(controller_message::Msg::Checks(checks)) };
                if tx.send(Ok(msg)).await.is_err() {
                    break;
                }
            }
        } else {
            last_plan = None;
            last_checks = None;
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { break },
            msg = inbound.message() => match msg {
                Ok(Some(AgentMessage { msg: Some(agent_message::Msg::Heartbeat(hb)) })) => {
                    let arrived = Instant::now();
                    last_heartbeat = Some((hb.seq, arrived));
                    let ack = answer_heartbeat(ctx, name, hb, arrived).await;
                    let ack = ControllerMessage { msg: Some(controller_message::Msg::Ack(ack)) };
                    if tx.send(Ok(ack)).await.is_err() {
                        break;
                    }
                }
                Ok(Some(AgentMessage { msg: Some(agent_message::Msg::Result(r)) })) => ctx.bus.complete(r),
                Ok(Some(_)) => {
                    let _ = tx.send(Err(Status::invalid_argument("only heartbeats may follow the hello"))).await;
                    break;
                }
                Ok(None) | Err(_) => break,
            },
        }
    }
}
