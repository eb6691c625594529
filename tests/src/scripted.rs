//! A scripted controller: serves the `AgentLink` service at a real controller's address, over
//! mutual TLS with that controller's certificate, and sends a real agent exactly the messages a
//! test chooses, in the order it chooses. Real controllers never send an agent a promote before
//! its target state, nor two commands out of order; an agent must still be right when they do
//! (a new leader's stream and an old one's overlap, a stream registers before its first target
//! state), and only a scripted peer can make those orders happen on demand.
//!
//! It answers every heartbeat; with [`Scripted::grant`] set, the answer grants the lease asked
//! for at that epoch, as a leader would.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use triad_proto::v1::agent_link_server::{AgentLink, AgentLinkServer};
use triad_proto::v1::{
    agent_command, agent_message, controller_message, AgentCommand, AgentHeartbeat, AgentMessage, Assignment,
    CommandResult, ControllerMessage, HeartbeatAck, LeaderInfo,
};

use crate::Deployment;

type Outbound = mpsc::Sender<Result<ControllerMessage, Status>>;

/// What the service shares with the test.
#[derive(Default)]
struct Shared {
    /// The open stream's sender (the newest, when the agent reconnected).
    stream: Mutex<Option<Outbound>>,
    /// Command results, in the order they arrived.
    results: Mutex<Vec<CommandResult>>,
    /// Heartbeats, in the order they arrived.
    heartbeats: Mutex<Vec<AgentHeartbeat>>,
    /// Non-zero: grant leases asked for at this epoch.
    grant_epoch: AtomicU64,
    /// The lease granted, in milliseconds.
    lease_ms: AtomicU64,
    /// This controller's id.
    id: u64,
}

/// The `AgentLink` service of the scripted controller.
struct Service(Arc<Shared>);

#[tonic::async_trait]
impl AgentLink for Service {
    type AttachStream = Pin<Box<dyn Stream<Item = Result<ControllerMessage, Status>> + Send>>;

    async fn attach(&self, request: Request<Streaming<AgentMessage>>) -> Result<Response<Self::AttachStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        // The agent learns who leads first, as from a real controller: this one.
        let id = self.0.id;
        let leader = LeaderInfo { controller_id: id, leader_id: id, term: 1, ..Default::default() };
        let _ = tx.send(Ok(ControllerMessage { msg: Some(controller_message::Msg::Leader(leader)) })).await;
        *self.0.stream.lock().expect("stream lock") = Some(tx.clone());
        let shared = self.0.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = inbound.next().await {
                match msg.msg {
                    Some(agent_message::Msg::Heartbeat(hb)) => {
                        let mut ack = HeartbeatAck { seq: hb.seq, ..Default::default() };
                        let grant = shared.grant_epoch.load(Ordering::SeqCst);
                        if grant > 0 && hb.lease_epoch == Some(grant) {
                            ack.lease_ms = shared.lease_ms.load(Ordering::SeqCst);
                            ack.lease_epoch = grant;
                        } else if hb.lease_epoch.is_some() {
                            ack.lease_refused = "the script grants no lease at this epoch".into();
                        }
                        shared.heartbeats.lock().expect("heartbeats lock").push(hb);
                        let msg = ControllerMessage { msg: Some(controller_message::Msg::Ack(ack)) };
                        if tx.send(Ok(msg)).await.is_err() {
                            break;
                        }
                    }
                    Some(agent_message::Msg::Result(r)) => shared.results.lock().expect("results lock").push(r),
                    _ => {}
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// A scripted controller serving at one of a deployment's controller addresses.
pub struct Scripted {
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    next_id: AtomicU64,
}

impl Scripted {
    /// Serves at controller `id`'s address with its certificate (the real one must not run).
    pub async fn start(d: &Deployment, id: u64) -> Result<Scripted> {
        let certs = d.plan.certs_dir();
        let read = |f: &str| std::fs::read(certs.join(f)).with_context(|| format!("reading {f}"));
        let ca = std::fs::read(triad_controller::ctl::certs::ca_cert_path(&certs))?;
        let name = format!("controller-{id}");
        let tls = triad_proto::tls::server_tls(&ca, &read(&format!("{name}.pem"))?, &read(&format!("{name}.key"))?);
        let addr: SocketAddr = d.addr(id).parse().context("controller address")?;
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        let shared = Arc::new(Shared { id, lease_ms: AtomicU64::new(1_400), ..Default::default() });
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .tls_config(tls)?
            .add_service(AgentLinkServer::new(Service(shared.clone())))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            });
        tokio::spawn(server);
        Ok(Scripted { shared, stop: Some(stop), next_id: AtomicU64::new(1) })
    }

    /// Waits until an agent has opened a stream and sent `heartbeats` heartbeats on it.
    pub async fn attached(&self, heartbeats: usize, timeout: Duration) -> Result<()> {
        crate::wait_for("the agent's stream to the scripted controller", timeout, || async {
            let open = self.shared.stream.lock().expect("stream lock").is_some();
            (open && self.shared.heartbeats.lock().expect("heartbeats lock").len() >= heartbeats).then_some(())
        })
        .await
    }

    /// From now on, grants leases asked for at `epoch`, for `lease_ms` (0: grants none).
    pub fn grant(&self, epoch: u64, lease_ms: u64) {
        self.shared.lease_ms.store(lease_ms, Ordering::SeqCst);
        self.shared.grant_epoch.store(epoch, Ordering::SeqCst);
    }

    /// Sends a target state.
    pub async fn assign(&self, a: Assignment) -> Result<()> {
        self.send(ControllerMessage { msg: Some(controller_message::Msg::Assignment(a)) }).await
    }

    /// Sends a command for `cluster` at (`epoch`, `log_index`); returns its id.
    pub async fn command(&self, cluster: &str, epoch: u64, log_index: u64, kind: agent_command::Kind) -> Result<u64> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let cmd = AgentCommand { id, cluster: cluster.into(), epoch, log_index, kind: Some(kind) };
        self.send(ControllerMessage { msg: Some(controller_message::Msg::Command(cmd)) }).await?;
        Ok(id)
    }

    /// Waits for the result of command `id`.
    pub async fn result(&self, id: u64, timeout: Duration) -> Result<CommandResult> {
        crate::wait_for(&format!("the result of command {id}"), timeout, || async {
            self.shared.results.lock().expect("results lock").iter().find(|r| r.id == id).cloned()
        })
        .await
    }

    async fn send(&self, msg: ControllerMessage) -> Result<()> {
        let tx = self.shared.stream.lock().expect("stream lock").clone().ok_or_else(|| anyhow!("no agent attached"))?;
        tx.send(Ok(msg)).await.map_err(|_| anyhow!("the agent's stream closed"))
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
