//! Bringing back a primary that its own agent fenced: the lease was about to lapse (typically
//! while the controllers elected a new leader under load) and the agent stopped the server, as
//! DESIGN.md point 2 requires. Nothing else was wrong with it, so the leader starts it again
//! rather than leave the cluster unwritable or fail over.
//!
//! Safe by the same rules as any role decision: it is done as a recorded `restart` workflow, so
//! no failover can be started on the cluster meanwhile (one workflow at a time) and none can be
//! under way when it starts; the member is the primary that the committed state names at the
//! epoch its agent holds; and once started it serves only under leases this leader grants after
//! a quorum round. A server that crashed (not stopped by the fence) is not restarted: that is a
//! lost primary, judged by `detector.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use triad_proto::v1::agent_command;

use super::observations::AgentObservation;
use super::switchover::{command, propose, STEP_TIMEOUT};
use crate::context::Ctx;
use crate::state::{Actor, Command, State};

/// Clusters whose primary is stopped by its agent's fence: (cluster, primary, agent, why).
pub fn due(
    state: &State,
    obs: &HashMap<String, AgentObservation>,
    fresh: Duration,
    now: Instant,
) -> Vec<(String, String, String, String)> {
    let report =
        |agent: &str| obs.get(agent).filter(|o| now.saturating_duration_since(o.last_seen) < fresh)?.db.clone();
    let mut out = Vec::new();
    for c in state.clusters.values().filter(|c| c.epoch > 0 && !c.paused && c.workflow.is_none()) {
        let Some(p) = c.primary.as_ref().and_then(|p| c.members.get(p)) else { continue };
        let Some(d) = report(&p.agent) else { continue };
        if d.stopped_by_fence && !d.up && d.agent_epoch == c.epoch && !d.epoch_unknown {
            out.push((c.name.clone(), p.name.clone(), p.agent.clone(), d.fenced_reason.clone()));
        }
    }
    out
}

/// Runs one restart as a recorded workflow.
pub async fn run(ctx: Arc<Ctx>, cluster: String, member: String, agent: String, why: String) -> Result<String, String> {
    let actor = Actor::system(ctx.id);
    let (wf, c) = super::switchover::start_workflow(&ctx, &actor, &cluster, "restart", &member, &member).await?;
    let step = |name: &str, note: String| Command::RecordStep { workflow: wf, name: name.into(), note };
    propose(&ctx, &actor, step("detected", format!("{member} stopped by its agent's fence: {why}"))).await?;
    let started = Instant::now();
    let restart = command(&cluster, c.epoch, c.epoch_index, agent_command::Kind::Restart(Default::default()));
    let outcome = match ctx.bus.call(&agent, restart, STEP_TIMEOUT).await {
        Ok(_) => {
            // Done once the agent reports it running as the primary (under a lease again).
            let running = |d: &triad_proto::v1::DbStatus| d.up && d.role == "primary";
            if ctx.obs.wait_report(&agent, Instant::now(), STEP_TIMEOUT, running).await {
                format!("completed: {member} runs again at epoch {} ({} ms)", c.epoch, started.elapsed().as_millis())
            } else {
                format!("failed: {member} was started but is not reported running as the primary")
            }
        }
        Err(e) => format!("failed: {e}"),
    };
    propose(&ctx, &actor, Command::FinishWorkflow { workflow: wf, outcome: outcome.clone() }).await?;
    Ok(outcome)
}

/// The brain's step: restart each fenced primary that is due, one workflow per cluster.
pub fn tick(ctx: &Arc<Ctx>) {
    let fresh = Duration::from_millis(ctx.cfg.agents.down_after_ms);
    let due = {
        let g = ctx.state.read().expect("state lock poisoned");
        due(&g.state, &ctx.obs.snapshot(), fresh, Instant::now())
    };
    for (cluster, member, agent, why) in due {
        let c = ctx.clone();
        super::spawn_exclusive(ctx, cluster.clone(), async move {
            match run(c, cluster.clone(), member.clone(), agent, why).await {
                Ok(outcome) => tracing::warn!(cluster = %cluster, member = %member, "restart {outcome}"),
                Err(e) => tracing::warn!(cluster = %cluster, member = %member, "restart: {e}"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::DbCluster;
    use triad_proto::v1::DbStatus;

    fn seen(at: Instant, db: DbStatus) -> AgentObservation {
        AgentObservation::for_test("", at, Some(db))
    }

    #[test]
    fn only_a_primary_stopped_by_its_own_fence_at_the_current_epoch_is_restarted() {
        let mut c = DbCluster::for_test(&["dc", "ndc"], "");
        (c.epoch, c.primary) = (3, Some("dc".into()));
        let mut s = State::default();
        s.clusters.insert("customs".into(), c);
        let now = Instant::now();
        let fenced = DbStatus {
            stopped: true,
            stopped_by_fence: true,
            agent_epoch: 3,
            fenced_reason: "the lease ends in 480 ms".into(),
            ..Default::default()
        };
        let due_with = |s: &State, d: DbStatus| {
            due(s, &HashMap::from([("dc".to_string(), seen(now, d))]), Duration::from_secs(1), now)
        };
        let found = due_with(&s, fenced.clone());
        assert_eq!(found, vec![("customs".into(), "dc".into(), "dc".into(), "the lease ends in 480 ms".into())]);
        // Crashed (not the fence), at another epoch, or with a workflow under way: not restarted.
        assert!(due_with(&s, DbStatus { stopped_by_fence: false, ..fenced.clone() }).is_empty());
        assert!(due_with(&s, DbStatus { agent_epoch: 2, ..fenced.clone() }).is_empty());
        let mut busy = s.clone();
        busy.clusters.get_mut("customs").unwrap().workflow = Some(9);
        assert!(due_with(&busy, fenced.clone()).is_empty());
        // A stale report does not count.
        let stale = HashMap::from([("dc".to_string(), seen(now - Duration::from_secs(5), fenced))]);
        assert!(due(&s, &stale, Duration::from_secs(1), now).is_empty());
    }
}
