//! Standbys converge on the current primary, continuously (issue 16, item 8). A role change
//! points the other standbys at the new primary once (`switchover::follow_others`); a standby
//! whose agent was down at that moment kept streaming from the old primary, a standby itself
//! now, and nothing repointed it. Here the leader compares every running standby's upstream
//! with the primary's endpoint and repoints one that follows anything else, as a recorded
//! `follow` workflow, so that the history says why its stream moved.
//!
//! Safe because it changes no role: the command carries the current epoch (an agent at another
//! refuses it), the agent refuses to repoint a server that runs as a primary, and nothing is
//! done while another workflow runs on the cluster.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use triad_proto::v1::agent_command;

use super::observations::AgentObservation;
use super::workflow::{command, propose};
use super::{WorkflowError, WorkflowResult};
use crate::context::Ctx;
use crate::state::WorkflowKind;
use crate::state::{Actor, Command, State};

/// After a failed repoint, the member is left alone this long (the failure is in the history).
const RETRY_AFTER_MS: u64 = 30_000;

/// After any workflow on the cluster ends, its standbys are left this long to settle: a standby
/// the workflow itself repointed reports its old upstream until its WAL receiver reconnects.
const SETTLE_MS: u64 = 5_000;

/// How long a repointed standby has to report its new upstream.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(15);

/// A standby to repoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub cluster: String,
    pub member: String,
    pub agent: String,
    /// The primary's connect string, handed to the standby's driver as it is.
    pub endpoint: String,
    /// The primary's identity as a replication source, which the standby must report as its
    /// `upstream_id` once repointed.
    pub endpoint_id: String,
}

/// Standbys that follow something other than the primary. A member qualifies when its agent is
/// heard at the cluster's epoch, its server runs as a standby and names an upstream that is not
/// the primary's (identities in the driver's canonical form, compared for equality alone), and
/// the primary runs and reports its endpoint and identity; never while paused or
/// while a workflow runs, nor within `RETRY_AFTER_MS` of a failed repoint of the same member.
pub fn due(
    state: &State,
    obs: &HashMap<String, AgentObservation>,
    fresh: Duration,
    now: Instant,
    now_ms: u64,
) -> Vec<Due> {
    let failed_recently = |cluster: &str, member: &str| {
        state.workflows.values().any(|w| {
            w.kind == WorkflowKind::Follow
                && w.cluster == cluster
                && w.to == member
                && w.finished
                    .as_ref()
                    .is_some_and(|(at, o)| !o.starts_with("completed") && now_ms.saturating_sub(*at) < RETRY_AFTER_MS)
        })
    };
    let report =
        |agent: &str| obs.get(agent).filter(|o| now.saturating_duration_since(o.last_seen) < fresh)?.db.clone();
    let mut out = Vec::new();
    for c in state.clusters.values().filter(|c| c.epoch > 0 && !c.paused && c.workflow.is_none()) {
        let Some(primary) = c.primary.as_ref().and_then(|p| c.members.get(p)) else { continue };
        let Some(p) = report(&primary.agent)
            .filter(|d| d.up && d.role == "primary" && !d.endpoint.is_empty() && !d.endpoint_id.is_empty())
        else {
            continue;
        };
        let last_ended = state.workflows.values().filter(|w| w.cluster == c.name).filter_map(|w| w.finished.as_ref());
        if last_ended.map(|(at, _)| *at).max().is_some_and(|at| now_ms.saturating_sub(at) < SETTLE_MS) {
            continue;
        }
        for m in c.members.values().filter(|m| m.name != primary.name) {
            let Some(d) = report(&m.agent) else { continue };
            let astray = d.up
                && d.role == "standby"
                && d.agent_epoch == c.epoch
                && !d.epoch_unknown
                && !d.upstream_id.is_empty()
                && d.upstream_id != p.endpoint_id;
            if astray && !failed_recently(&c.name, &m.name) {
                out.push(Due {
                    cluster: c.name.clone(),
                    member: m.name.clone(),
                    agent: m.agent.clone(),
                    endpoint: p.endpoint.clone(),
                    endpoint_id: p.endpoint_id.clone(),
                });
            }
        }
    }
    out
}

/// Repoints one standby as a recorded workflow; done once its agent reports the new upstream.
pub async fn run(ctx: Arc<Ctx>, due: Due) -> WorkflowResult<String> {
    let Due { cluster, member, agent, endpoint, endpoint_id } = due;
    let actor = Actor::system(ctx.id);
    let primary = super::workflow::cluster(&ctx, &cluster)
        .and_then(|c| c.primary)
        .ok_or_else(|| WorkflowError::gone("no primary"))?;
    let was = ctx.obs.fresh_db(&agent, FOLLOW_TIMEOUT).map(|d| d.upstream_id).unwrap_or_default();
    let (wf, c) =
        super::workflow::start_workflow(&ctx, &actor, &cluster, WorkflowKind::Follow, &primary, &member).await?;
    let note = format!("{member} streams from {was}, not from the primary {primary} ({endpoint})");
    propose(&ctx, &actor, Command::RecordStep { workflow: wf, name: "astray".into(), note }).await?;
    let follow = agent_command::Kind::Follow(triad_proto::v1::Follow { primary_endpoint: endpoint.clone() });
    let sent = Instant::now();
    let result = ctx.bus.call(&agent, command(&cluster, c.epoch, c.epoch_index, follow), FOLLOW_TIMEOUT).await;
    let outcome = match result {
        Ok(_) => {
            let follows = |d: &triad_proto::v1::DbStatus| d.upstream_id == endpoint_id;
            if ctx.obs.wait_report(&agent, sent, FOLLOW_TIMEOUT, follows).await {
                format!("completed: {member} follows {primary} ({} ms)", sent.elapsed().as_millis())
            } else {
                format!("failed: {member} was repointed but does not report {primary} as its upstream")
            }
        }
        Err(e) => format!("failed: {e}"),
    };
    propose(&ctx, &actor, Command::FinishWorkflow { workflow: wf, outcome: outcome.clone() }).await?;
    Ok(outcome)
}

/// The brain's step: repoint each standby that is due, one workflow per cluster.
pub fn tick(ctx: &Arc<Ctx>) {
    let fresh = Duration::from_millis(ctx.cfg.agents.down_after_ms);
    let due = {
        let g = ctx.state.read().expect("state lock poisoned");
        due(&g.state, &ctx.obs.snapshot(), fresh, Instant::now(), crate::context::now_ms())
    };
    for d in due {
        let (c, cluster, member) = (ctx.clone(), d.cluster.clone(), d.member.clone());
        super::spawn_exclusive(ctx, cluster.clone(), async move {
            match run(c, d).await {
                Ok(outcome) => tracing::warn!(cluster = %cluster, member = %member, "follow {outcome}"),
                Err(e) => tracing::warn!(cluster = %cluster, member = %member, "follow: {e}"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::DbCluster;
    use triad_proto::v1::DbStatus;

    fn state() -> State {
        let mut c = DbCluster::for_test(&["dc", "ndc", "dr"], "");
        (c.epoch, c.primary) = (2, Some("ndc".into()));
        let mut s = State::default();
        s.clusters.insert("customs".into(), c);
        s
    }

    fn world(now: Instant, dr: DbStatus) -> HashMap<String, AgentObservation> {
        let ndc = DbStatus {
            up: true,
            role: "primary".into(),
            agent_epoch: 2,
            endpoint: "host=10.0.0.2 port=5432".into(),
            endpoint_id: "10.0.0.2:5432".into(),
            ..Default::default()
        };
        let dc = DbStatus {
            up: true,
            role: "standby".into(),
            agent_epoch: 2,
            upstream_id: "10.0.0.2:5432".into(),
            ..Default::default()
        };
        HashMap::from([
            ("ndc".to_string(), AgentObservation::for_test("", now, Some(ndc))),
            ("dc".to_string(), AgentObservation::for_test("", now, Some(dc))),
            ("dr".to_string(), AgentObservation::for_test("", now, Some(dr))),
        ])
    }

    fn dr(upstream: &str) -> DbStatus {
        DbStatus {
            up: true,
            role: "standby".into(),
            agent_epoch: 2,
            upstream_id: upstream.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_standby_following_anything_but_the_primary_is_repointed() {
        let now = Instant::now();
        let astray = world(now, dr("10.0.0.1:5432"));
        let found = due(&state(), &astray, Duration::from_secs(3), now, 1_000_000);
        let expected = Due {
            cluster: "customs".into(),
            member: "dr".into(),
            agent: "dr".into(),
            endpoint: "host=10.0.0.2 port=5432".into(),
            endpoint_id: "10.0.0.2:5432".into(),
        };
        assert_eq!(found, vec![expected]);
        // Following the primary, naming no upstream, at another epoch: left alone.
        let s = state();
        for d in [dr("10.0.0.2:5432"), dr(""), DbStatus { agent_epoch: 1, ..dr("10.0.0.1:5432") }] {
            assert!(due(&s, &world(now, d), Duration::from_secs(3), now, 1_000_000).is_empty());
        }
        // Nor while a workflow runs, nor right after a failed repoint.
        let mut busy = state();
        busy.clusters.get_mut("customs").unwrap().workflow = Some(4);
        assert!(due(&busy, &astray, Duration::from_secs(3), now, 1_000_000).is_empty());
        let mut failed = state();
        failed.workflows.insert(
            4,
            crate::state::Workflow {
                id: 4,
                kind: WorkflowKind::Follow,
                cluster: "customs".into(),
                from: "ndc".into(),
                to: "dr".into(),
                requested_by: "controller-1".into(),
                started_ms: 990_000,
                steps: vec![],
                finished: Some((995_000, "failed: agent `dr` has no stream to the leader".into())),
                write_outage_ms: None,
                writes_resumed_ms: None,
            },
        );
        assert!(due(&failed, &astray, Duration::from_secs(3), now, 1_000_000).is_empty());
        assert_eq!(due(&failed, &astray, Duration::from_secs(3), now, 1_030_000).len(), 1, "retried later");
        // Right after a workflow ended (one that repointed it itself, say), it is left to settle.
        let mut settling = state();
        let mut w = failed.workflows[&4].clone();
        (w.kind, w.finished) = (WorkflowKind::Switchover, Some((999_000, "completed".into())));
        settling.workflows.insert(4, w);
        assert!(due(&settling, &astray, Duration::from_secs(3), now, 1_000_000).is_empty());
        assert_eq!(due(&settling, &astray, Duration::from_secs(3), now, 1_004_000).len(), 1);
    }
}
