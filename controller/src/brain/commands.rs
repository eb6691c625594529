//! The command bus: how the leader's workflows reach an agent. Each agent stream registers its
//! outbound channel here; a command goes out on the agent's stream to this controller and its
//! result comes back on the same stream, matched by id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use triad_proto::v1::{controller_message, AgentCommand, CommandResult, ControllerMessage};

type Outbound = mpsc::Sender<Result<ControllerMessage, tonic::Status>>;

/// Registered agent streams and commands awaiting results.
#[derive(Default)]
pub struct CommandBus {
    streams: Mutex<HashMap<String, (u64, Outbound)>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<CommandResult>>>,
    next: AtomicU64,
}

impl CommandBus {
    /// An agent's stream opened; returns a token for [`CommandBus::unregister`].
    pub fn register(&self, agent: &str, tx: Outbound) -> u64 {
        let token = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.streams.lock().expect("bus lock poisoned").insert(agent.to_string(), (token, tx));
        token
    }

    /// The stream with `token` closed (a newer stream of the same agent stays registered).
    pub fn unregister(&self, agent: &str, token: u64) {
        let mut map = self.streams.lock().expect("bus lock poisoned");
        if map.get(agent).is_some_and(|(t, _)| *t == token) {
            map.remove(agent);
        }
    }

    /// True while `agent` has a stream to this controller.
    pub fn has_stream(&self, agent: &str) -> bool {
        self.streams.lock().expect("bus lock poisoned").contains_key(agent)
    }

    /// A result arrived.
    pub fn complete(&self, result: CommandResult) {
        if let Some(tx) = self.pending.lock().expect("bus lock poisoned").remove(&result.id) {
            let _ = tx.send(result);
        }
    }

    /// Sends `cmd` (its id is assigned here) to `agent` and waits up to `timeout` for the result.
    pub async fn call(&self, agent: &str, mut cmd: AgentCommand, timeout: Duration) -> Result<CommandResult, String> {
        cmd.id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let tx = self
            .streams
            .lock()
            .expect("bus lock poisoned")
            .get(agent)
            .map(|(_, tx)| tx.clone())
            .ok_or_else(|| format!("agent `{agent}` has no stream to the leader"))?;
        let (done, rx) = oneshot::channel();
        self.pending.lock().expect("bus lock poisoned").insert(cmd.id, done);
        let id = cmd.id;
        let msg = ControllerMessage { msg: Some(controller_message::Msg::Command(cmd)) };
        if tx.send(Ok(msg)).await.is_err() {
            self.pending.lock().expect("bus lock poisoned").remove(&id);
            return Err(format!("agent `{agent}`'s stream closed"));
        }
        let r = tokio::time::timeout(timeout, rx).await;
        self.pending.lock().expect("bus lock poisoned").remove(&id);
        match r {
            Ok(Ok(result)) if result.ok => Ok(result),
            Ok(Ok(result)) => Err(format!("agent `{agent}`: {}", result.detail)),
            Ok(Err(_)) => Err(format!("agent `{agent}`'s stream closed before it answered")),
            Err(_) => Err(format!("agent `{agent}` did not answer within {} s", timeout.as_secs())),
        }
    }
}
