//! What the edges may ask of the brain, and nothing more: an operator's switchover, and whether a
//! manual failover could run. The gRPC edge (`api/control.rs`) is generic over [`Requests`] and
//! never runs a workflow or a precheck of its own; [`Brain`] is the implementation on a
//! controller, and a test of the edge gives it a fake.

use std::future::Future;
use std::sync::Arc;

use super::switchover::Outcome;
use crate::context::Ctx;
use crate::state::Actor;

/// Why the brain did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Refused before anything changed (not the leader, a precondition): ask again later.
    #[error("{0}")]
    Refused(String),
    /// Started, and ended without doing it (rolled back, or failed with the reason).
    #[error("{0}")]
    Failed(String),
    /// The task that ran it died (a bug, or the controller stopping).
    #[error("{0}")]
    Internal(String),
}

/// The requests an edge hands to the brain.
pub trait Requests: Send + Sync + 'static {
    /// Checks a switchover of `cluster` to `to`, then runs it to its end: it finishes or rolls
    /// back even if the asker goes away (a half-done switchover must not stop where a
    /// connection broke).
    fn switchover(
        &self,
        actor: Actor,
        cluster: String,
        to: String,
    ) -> impl Future<Output = Result<Outcome, RequestError>> + Send;

    /// Whether a manual failover of `cluster` to `to` could run now; checked again when
    /// approved, so this tells the requester at once.
    fn check_failover(
        &self,
        cluster: &str,
        to: &str,
        accept_data_loss: bool,
        attested_dead: &[String],
    ) -> Result<(), RequestError>;
}

/// The brain of this controller, as the edges see it.
#[derive(Clone)]
pub struct Brain {
    ctx: Arc<Ctx>,
}

impl Brain {
    pub fn new(ctx: Arc<Ctx>) -> Self {
        Brain { ctx }
    }
}

impl Requests for Brain {
    async fn switchover(&self, actor: Actor, cluster: String, to: String) -> Result<Outcome, RequestError> {
        super::switchover::precheck(&self.ctx, &cluster, &to).map_err(|e| RequestError::Refused(e.to_string()))?;
        let task = tokio::spawn(super::switchover::run(self.ctx.clone(), actor, cluster, to));
        match task.await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(why)) => Err(RequestError::Failed(why.to_string())),
            Err(e) => Err(RequestError::Internal(format!("the switchover's task: {e}"))),
        }
    }

    fn check_failover(
        &self,
        cluster: &str,
        to: &str,
        accept_data_loss: bool,
        attested_dead: &[String],
    ) -> Result<(), RequestError> {
        super::manual::precheck(&self.ctx, cluster, to, accept_data_loss, attested_dead)
            .map(|_| ())
            .map_err(|e| RequestError::Refused(e.to_string()))
    }
}
