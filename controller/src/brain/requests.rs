//! What the edges may ask of the brain, and nothing more: an operator's switchover, whether a
//! manual failover could run, a drill's pre-checks and its start. The gRPC edge (`api/control.rs`) is generic over [`Requests`] and
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

    /// The pre-checks of drill plan `plan` now, every one with its verdict (a plan that does not
    /// exist, or a controller that does not lead, is refused). Changes nothing.
    fn check_drill(
        &self,
        plan: &str,
        alerts_override: Option<&super::drills::Override>,
    ) -> Result<Vec<super::drills::Check>, RequestError>;

    /// Starts a run of drill plan `plan` as `actor` if its pre-checks pass, and returns its id at
    /// once (the run goes on, on the leader, to its end); or the pre-checks that refused it.
    fn start_drill(
        &self,
        actor: Actor,
        plan: String,
        alerts_override: Option<super::drills::Override>,
    ) -> impl Future<Output = Result<super::drills::Started, RequestError>> + Send;
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

    fn check_drill(
        &self,
        plan: &str,
        alerts_override: Option<&super::drills::Override>,
    ) -> Result<Vec<super::drills::Check>, RequestError> {
        if !self.ctx.is_leader() {
            return Err(RequestError::Refused("only the leader has the agents' reports: ask it".into()));
        }
        let controllers = super::drills::controllers(&self.ctx);
        let fresh = std::time::Duration::from_millis(self.ctx.cfg.agents.down_after_ms);
        let report = |agent: &str| self.ctx.obs.fresh_db(agent, fresh);
        let g = self.ctx.state.read().expect("state lock poisoned");
        let Some(p) = g.state.drill_plans.get(plan) else {
            let known: Vec<&str> = g.state.drill_plans.keys().map(String::as_str).collect();
            let known =
                if known.is_empty() { "none is defined".to_string() } else { format!("known: {}", known.join(", ")) };
            return Err(RequestError::Refused(format!("no drill plan `{plan}` ({known})")));
        };
        Ok(super::drills::precheck(&g.state, p, &report, &controllers, alerts_override))
    }

    async fn start_drill(
        &self,
        actor: Actor,
        plan: String,
        alerts_override: Option<super::drills::Override>,
    ) -> Result<super::drills::Started, RequestError> {
        super::drills::run::start(&self.ctx, actor, &plan, alerts_override).await.map_err(|e| match e {
            super::WorkflowError::Refused(_) | super::WorkflowError::NotLeader | super::WorkflowError::Rejected(_) => {
                RequestError::Refused(e.to_string())
            }
            other => RequestError::Internal(other.to_string()),
        })
    }
}
