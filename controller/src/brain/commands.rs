//! The command bus: how the leader's workflows reach an agent. Each agent stream registers its
//! outbound channel here; a command goes out on the agent's stream to this controller and its
//! result comes back on the same stream, matched by id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use triad_proto::v1::{controller_message, AgentCommand, CommandFailure, CommandResult, ControllerMessage};

type Outbound = mpsc::Sender<Result<ControllerMessage, tonic::Status>>;

/// Why a command to an agent brought no successful result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The agent has no stream to this controller: the command was never sent.
    #[error("agent `{agent}` has no stream to the leader")]
    NoStream { agent: String },
    /// The stream closed before the result came back (sent, outcome unknown).
    #[error("agent `{agent}`'s stream closed before it answered")]
    Closed { agent: String },
    /// The agent carried it out and it failed, with the agent's reason and its kind.
    #[error("agent `{agent}`: {detail}")]
    Failed { agent: String, detail: String, failure: CommandFailure },
    /// No answer in time (outcome unknown).
    #[error("agent `{agent}` did not answer within {secs} s")]
    Timeout { agent: String, secs: u64 },
}

impl CallError {
    /// The agent's own reason, when it answered with a failure.
    pub fn agent_said(&self) -> Option<&str> {
        match self {
            CallError::Failed { detail, .. } => Some(detail),
            _ => None,
        }
    }

    /// The agent's driver says the member must be re-created as a standby by an operator.
    pub fn needs_recreation(&self) -> bool {
        matches!(self, CallError::Failed { failure: CommandFailure::NeedsRecreation, .. })
    }
}

/// A command awaiting its result: the stream it went out on (agent, token), and where the
/// result goes.
struct Pending {
    agent: String,
    token: u64,
    done: oneshot::Sender<CommandResult>,
}

/// Registered agent streams and commands awaiting results.
#[derive(Default)]
pub struct CommandBus {
    streams: Mutex<HashMap<String, (u64, Outbound)>>,
    pending: Mutex<HashMap<u64, Pending>>,
    next: AtomicU64,
}

impl CommandBus {
    /// An agent's stream opened; returns a token for [`CommandBus::unregister`].
    pub fn register(&self, agent: &str, tx: Outbound) -> u64 {
        let token = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.streams.lock().expect("bus lock poisoned").insert(agent.to_string(), (token, tx));
        token
    }

    /// The stream with `token` closed (a newer stream of the same agent stays registered). The
    /// commands sent on it fail at once: their results, sent on that stream, can no longer
    /// arrive, and a caller waiting out its whole timeout would hold its workflow (and the
    /// cluster's workflow key) for nothing (chaos seed 25: a rejoin done just as its agent's
    /// link to the leader was cut held the key for ten minutes, so the crashed primary was not
    /// restarted).
    pub fn unregister(&self, agent: &str, token: u64) {
        let mut map = self.streams.lock().expect("bus lock poisoned");
        if map.get(agent).is_some_and(|(t, _)| *t == token) {
            map.remove(agent);
        }
        drop(map);
        // Dropping a sender wakes its caller with "the stream closed before it answered".
        self.pending.lock().expect("bus lock poisoned").retain(|_, p| !(p.agent == agent && p.token == token));
    }

    /// True while `agent` has a stream to this controller.
    pub fn has_stream(&self, agent: &str) -> bool {
        self.streams.lock().expect("bus lock poisoned").contains_key(agent)
    }

    /// A result arrived.
    pub fn complete(&self, result: CommandResult) {
        if let Some(p) = self.pending.lock().expect("bus lock poisoned").remove(&result.id) {
            let _ = p.done.send(result);
        }
    }

    /// Sends `cmd` (its id is assigned here) to `agent` and waits up to `timeout` for the result.
    pub async fn call(
        &self,
        agent: &str,
        mut cmd: AgentCommand,
        timeout: Duration,
    ) -> Result<CommandResult, CallError> {
        cmd.id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (token, tx) = self
            .streams
            .lock()
            .expect("bus lock poisoned")
            .get(agent)
            .map(|(token, tx)| (*token, tx.clone()))
            .ok_or_else(|| CallError::NoStream { agent: agent.to_string() })?;
        let (done, rx) = oneshot::channel();
        self.pending
            .lock()
            .expect("bus lock poisoned")
            .insert(cmd.id, Pending { agent: agent.to_string(), token, done });
        // A stream that closed since it was looked up has already failed its pending commands.
        let open = self.streams.lock().expect("bus lock poisoned").get(agent).is_some_and(|(t, _)| *t == token);
        if !open {
            self.pending.lock().expect("bus lock poisoned").remove(&cmd.id);
            return Err(CallError::Closed { agent: agent.to_string() });
        }
        let id = cmd.id;
        let msg = ControllerMessage { msg: Some(controller_message::Msg::Command(cmd)) };
        if tx.send(Ok(msg)).await.is_err() {
            self.pending.lock().expect("bus lock poisoned").remove(&id);
            return Err(CallError::Closed { agent: agent.to_string() });
        }
        let r = tokio::time::timeout(timeout, rx).await;
        self.pending.lock().expect("bus lock poisoned").remove(&id);
        match r {
            Ok(Ok(result)) if result.ok => Ok(result),
            Ok(Ok(result)) => {
                Err(CallError::Failed { agent: agent.to_string(), failure: result.failure(), detail: result.detail })
            }
            Ok(Err(_)) => Err(CallError::Closed { agent: agent.to_string() }),
            Err(_) => Err(CallError::Timeout { agent: agent.to_string(), secs: timeout.as_secs() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use triad_proto::v1::agent_command;

    #[tokio::test]
    async fn a_command_fails_at_once_when_the_stream_it_went_out_on_closes() {
        let bus = std::sync::Arc::new(CommandBus::default());
        let (tx, mut rx) = mpsc::channel(4);
        let token = bus.register("agent-ndc", tx);
        let cmd = AgentCommand { kind: Some(agent_command::Kind::Rejoin(Default::default())), ..Default::default() };
        let calling = {
            let bus = bus.clone();
            tokio::spawn(async move { bus.call("agent-ndc", cmd, Duration::from_secs(600)).await })
        };
        // The command went out; then the stream closes before the result comes back.
        assert!(rx.recv().await.is_some());
        bus.unregister("agent-ndc", token);
        let answer = tokio::time::timeout(Duration::from_secs(5), calling).await.expect("the call waited on").unwrap();
        assert!(matches!(answer, Err(CallError::Closed { .. })), "{answer:?}");
        // A newer stream of the same agent is not affected by the older one closing.
        let (tx2, mut rx2) = mpsc::channel(4);
        let newer = bus.register("agent-ndc", tx2);
        let cmd = AgentCommand { kind: Some(agent_command::Kind::Rejoin(Default::default())), ..Default::default() };
        let calling = {
            let bus = bus.clone();
            tokio::spawn(async move { bus.call("agent-ndc", cmd, Duration::from_secs(600)).await })
        };
        let Some(Ok(ControllerMessage { msg: Some(controller_message::Msg::Command(sent)) })) = rx2.recv().await else {
            panic!("no command on the newer stream");
        };
        bus.unregister("agent-ndc", token);
        bus.complete(CommandResult { id: sent.id, ok: true, ..Default::default() });
        assert!(calling.await.unwrap().is_ok());
        bus.unregister("agent-ndc", newer);
    }
}
