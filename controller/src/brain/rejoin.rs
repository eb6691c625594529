//! The return of a member that is neither the primary nor running: typically the old primary
//! after a failover, back with its site (DESIGN.md, point 8). Its agent never starts PostgreSQL
//! on its own; the leader has it rewound and started as a standby of the current primary, in a
//! recorded `rejoin` workflow whose steps carry the WAL the member discarded. The synchronous
//! set is then restored by `synchronous.rs` (reconfigure, confirm, record) if it is wanted there.

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

/// How long a finished rejoin waits for its agent to report the server running.
const RUNNING_WAIT: Duration = Duration::from_secs(10);

/// How a rejoin's outcome begins when the member's driver says it cannot be rejoined in place and
/// must be re-created as a standby by an operator (B7 of docs/oracle-data-guard.md). Such a
/// member is not tried again until it reports itself configured as a standby: a re-creation
/// (hours, on Oracle: RMAN) runs outside any workflow, so it never holds the cluster's workflow
/// key, and the member returns through an ordinary rejoin.
pub const NEEDS_RECREATION: &str = "failed: needs re-creation";

/// How the command bus says a command never went out (`commands.rs`).
const NO_STREAM: &str = "has no stream to the leader";

/// After a failed rejoin the member is left alone this long, doubling with each further failure
/// up to [`RETRY_AFTER_MAX_MS`] (every failure is in the history). A failure is often the fault of
/// the moment (the primary out of reach while a link is cut): chaos seed 32 waited a flat 30 s
/// for a retry that then took 2 s, converging 19 s after the heal.
const RETRY_AFTER_MS: u64 = 2_000;
/// The longest wait between two failed rejoins of a member.
const RETRY_AFTER_MAX_MS: u64 = 30_000;
/// Failures older than this no longer count toward the wait.
const RETRY_WINDOW_MS: u64 = 600_000;

/// Members to rejoin: (cluster, member, agent, primary endpoint). A member qualifies when its
/// agent is heard, its epoch is the cluster's, it reports the server confirmed stopped, and the
/// primary runs and reports an endpoint; never while paused or while a workflow runs, nor soon
/// after a failed rejoin of the same member (see [`RETRY_AFTER_MS`]).
pub fn due(
    state: &State,
    obs: &HashMap<String, AgentObservation>,
    fresh: Duration,
    now: Instant,
    now_ms: u64,
) -> Vec<(String, String, String, String)> {
    let failed_recently = |cluster: &str, member: &str| {
        let failures: Vec<u64> = state
            .workflows
            .values()
            .filter(|w| w.kind == WorkflowKind::Rejoin && w.cluster == cluster && w.to == member)
            .filter_map(|w| w.finished.as_ref())
            // One that never reached the agent (restarting, its stream not open yet) did nothing
            // to the member: it may be tried again at once (chaos seed 12).
            .filter(|(at, o)| {
                o.starts_with("failed") && !o.contains(NO_STREAM) && now_ms.saturating_sub(*at) < RETRY_WINDOW_MS
            })
            .map(|(at, _)| *at)
            .collect();
        let Some(last) = failures.iter().max() else { return false };
        let doublings = (failures.len() as u32 - 1).min(8);
        now_ms.saturating_sub(*last) < (RETRY_AFTER_MS << doublings).min(RETRY_AFTER_MAX_MS)
    };
    // The member's last rejoin said it must be re-created.
    let awaiting_recreation = |cluster: &str, member: &str| {
        let rejoins = state.workflows.values().filter(|w| w.kind == WorkflowKind::Rejoin && w.cluster == cluster);
        let last = rejoins.filter(|w| w.to == member).filter_map(|w| w.finished.as_ref().map(|f| (w.id, f))).max();
        last.is_some_and(|(_, (_, outcome))| outcome.starts_with(NEEDS_RECREATION))
    };
    let report =
        |agent: &str| obs.get(agent).filter(|o| now.saturating_duration_since(o.last_seen) < fresh)?.db.clone();
    let mut out = Vec::new();
    for c in state.clusters.values().filter(|c| c.epoch > 0 && !c.paused && c.workflow.is_none()) {
        let Some(primary) = c.primary.as_ref().and_then(|p| c.members.get(p)) else { continue };
        let Some(p) = report(&primary.agent).filter(|d| d.up && d.role == "primary" && !d.endpoint.is_empty()) else {
            continue;
        };
        for m in c.members.values().filter(|m| m.name != primary.name) {
            let Some(d) = report(&m.agent) else { continue };
            let stopped = !d.up && d.stopped && d.agent_epoch == c.epoch;
            let held = awaiting_recreation(&c.name, &m.name) && !d.configured_standby;
            if stopped && !held && !failed_recently(&c.name, &m.name) {
                out.push((c.name.clone(), m.name.clone(), m.agent.clone(), p.endpoint.clone()));
            }
        }
    }
    out
}

/// Runs one rejoin as a recorded workflow.
pub async fn run(
    ctx: Arc<Ctx>,
    cluster: String,
    member: String,
    agent: String,
    endpoint: String,
) -> WorkflowResult<String> {
    let actor = Actor::system(ctx.id);
    let primary = super::workflow::cluster(&ctx, &cluster)
        .and_then(|c| c.primary)
        .ok_or_else(|| WorkflowError::gone("no primary"))?;
    let (wf, c) =
        super::workflow::start_workflow(&ctx, &actor, &cluster, WorkflowKind::Rejoin, &primary, &member).await?;
    let started = Instant::now();
    let rejoin = agent_command::Kind::Rejoin(triad_proto::v1::Rejoin { primary_endpoint: endpoint });
    // Rewinding copies what differs; a base backup of a large database takes longer still
    // (`[clusters.timeouts]` `rejoin_ms`, default 10 min).
    let budget = ctx.cfg.timeouts(&cluster).rejoin();
    let call = ctx.bus.call(&agent, command(&cluster, c.epoch, c.epoch_index, rejoin), budget);
    // A rejoin holds the cluster's workflow key; if the primary it copies from goes down
    // meanwhile, whatever must replace or restart the primary waits behind it, for as long as
    // the rewind takes to fail (chaos seeds 32 and 36: the primary died during a rejoin, and the
    // cluster stayed unwritable). So the leader stops waiting then; the agent's rewind, which
    // can no longer succeed, ends on its own (its programs are bounded, `postgres_ctl.rs`).
    let primary_agent = c.members.get(&primary).map(|m| m.agent.clone()).unwrap_or_default();
    let fresh = Duration::from_millis(ctx.cfg.agents.down_after_ms);
    let primary_down = async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let named = super::workflow::cluster(&ctx, &cluster).and_then(|c| c.primary);
            let report = ctx.obs.fresh_db(&primary_agent, fresh);
            if named.as_deref() != Some(primary.as_str()) || report.is_some_and(|d| !d.up && d.stopped) {
                return;
            }
        }
    };
    let result = tokio::select! {
        r = call => r,
        () = primary_down => {
            let outcome = format!("abandoned: `{primary}` went down (or is no longer the primary) during the rejoin");
            propose(&ctx, &actor, Command::FinishWorkflow { workflow: wf, outcome: outcome.clone() }).await?;
            return Ok(outcome);
        }
    };
    let outcome = match result {
        Ok(r) => {
            let note = if r.detail.is_empty() { "started as a standby".to_string() } else { r.detail };
            propose(&ctx, &actor, Command::RecordStep { workflow: wf, name: "rewound".into(), note: note.clone() })
                .await?;
            // Finish only once a report made after the rejoin no longer says "stopped" (the one
            // from before it still does, and would start another). Running is enough: a standby
            // rewound past where its upstream can still feed it (the upstream died meanwhile)
            // serves no connection until it is consistent, and waiting for that here would hold
            // the cluster's workflow key from whatever must replace the upstream (chaos seed 25).
            let since = Instant::now();
            let running = ctx.obs.wait_report(&agent, since, RUNNING_WAIT, |d| d.up || !d.stopped).await;
            let serving = ctx.obs.wait_report(&agent, since, Duration::ZERO, |d| d.up).await;
            let state = match (running, serving) {
                (_, true) => "",
                (true, false) => "; its server runs but accepts no connection yet (still replaying)",
                (false, _) => "; its agent has not reported the server running since",
            };
            format!("completed: {member} follows {primary} ({} ms); {note}{state}", started.elapsed().as_millis())
        }
        Err(e) if e.needs_recreation() => {
            let why = e.agent_said().unwrap_or_default().to_string();
            propose(
                &ctx,
                &actor,
                Command::RecordStep { workflow: wf, name: "needs-recreation".into(), note: why.clone() },
            )
            .await?;
            propose(&ctx, &actor, recreation_alert(&cluster, &member, &why, wf, crate::context::now_ms())).await?;
            format!(
                "{NEEDS_RECREATION}: {why}; re-create it as a standby of {primary} (runbooks/rejoin.md#re-creation)"
            )
        }
        Err(e) => format!("failed: {e}"),
    };
    propose(&ctx, &actor, Command::FinishWorkflow { workflow: wf, outcome: outcome.clone() }).await?;
    Ok(outcome)
}

/// The alert that tells the NOC a member waits for an operator to re-create it.
fn recreation_alert(cluster: &str, member: &str, why: &str, workflow: u64, at_ms: u64) -> Command {
    use crate::state::alerts::{IncomingAlert, Severity};
    let labels = [("cluster", cluster), ("member", member)].map(|(k, v)| (k.to_string(), v.to_string()));
    let alert = IncomingAlert {
        labels: labels.into_iter().collect(),
        ..IncomingAlert::own(
            format!("rejoin:{cluster}:{member}:needs-recreation"),
            Severity::High,
            format!("{member} of {cluster} must be re-created as a standby"),
            format!(
                "workflow {workflow}: its driver cannot rejoin it in place: {why}. Until it is re-created it \
                 is no standby (runbooks/rejoin.md#re-creation)."
            ),
            at_ms,
        )
    };
    Command::IngestAlerts { source: crate::state::links::TRIAD_SOURCE.into(), events: vec![alert] }
}

/// The brain's step: start a rejoin for each member that is due, one workflow per cluster.
pub fn tick(ctx: &Arc<Ctx>) {
    let fresh = Duration::from_millis(ctx.cfg.agents.down_after_ms);
    let due = {
        let g = ctx.state.read().expect("state lock poisoned");
        due(&g.state, &ctx.obs.snapshot(), fresh, Instant::now(), crate::context::now_ms())
    };
    // Only to an agent with a stream to this leader now: one restarting would refuse it unsent.
    for (cluster, member, agent, endpoint) in due.into_iter().filter(|d| ctx.bus.has_stream(&d.2)) {
        let c = ctx.clone();
        super::spawn_exclusive(ctx, cluster.clone(), async move {
            match run(c, cluster.clone(), member.clone(), agent, endpoint).await {
                Ok(outcome) => tracing::info!(cluster = %cluster, member = %member, "rejoin {outcome}"),
                Err(e) => tracing::warn!(cluster = %cluster, member = %member, "rejoin: {e}"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{DbCluster, Workflow, WorkflowKind};
    use triad_proto::v1::DbStatus;

    /// `customs` at epoch 2 with ndc primary (dc, its old primary, to rejoin).
    fn after_failover() -> State {
        let mut c = DbCluster::for_test(&["dc", "ndc"], "agent-");
        (c.epoch, c.primary) = (2, Some("ndc".into()));
        let mut state = State::default();
        state.clusters.insert("customs".into(), c);
        state
    }

    /// A rejoin of dc that ended at `at_ms` with `outcome`.
    fn rejoin_of_dc(id: u64, at_ms: u64, outcome: &str) -> Workflow {
        Workflow {
            id,
            kind: WorkflowKind::Rejoin,
            cluster: "customs".into(),
            from: "ndc".into(),
            to: "dc".into(),
            requested_by: "controller-1".into(),
            started_ms: at_ms.saturating_sub(500),
            steps: Vec::new(),
            finished: Some((at_ms, outcome.to_string())),
            write_outage_ms: None,
            writes_resumed_ms: None,
        }
    }

    #[test]
    fn a_failed_rejoin_holds_the_member_back_unless_it_never_reached_its_agent() {
        let now = Instant::now();
        let mut state = after_failover();
        let report = |db: DbStatus| AgentObservation::for_test("", now, Some(db));
        let primary = DbStatus { up: true, role: "primary".into(), endpoint: "host=ndc".into(), ..Default::default() };
        let stopped = DbStatus { stopped: true, agent_epoch: 2, role: "down".into(), ..Default::default() };
        let obs =
            HashMap::from([("agent-ndc".to_string(), report(primary)), ("agent-dc".to_string(), report(stopped))]);
        let fresh = Duration::from_secs(3);
        assert_eq!(due(&state, &obs, fresh, now, 100_000).len(), 1, "dc is due");
        let failed = |outcome: &str| rejoin_of_dc(1, 99_500, outcome);
        state.workflows.insert(1, failed("failed: pg_rewind failed"));
        assert!(due(&state, &obs, fresh, now, 100_000).is_empty(), "held back after a real failure");
        assert_eq!(due(&state, &obs, fresh, now, 99_500 + RETRY_AFTER_MS).len(), 1, "until the wait is over");
        // Each further failure doubles the wait, up to its cap.
        state.workflows.insert(2, rejoin_of_dc(2, 104_000, "failed: pg_rewind failed"));
        assert!(due(&state, &obs, fresh, now, 104_000 + RETRY_AFTER_MS).is_empty(), "the second wait is longer");
        assert_eq!(due(&state, &obs, fresh, now, 104_000 + 2 * RETRY_AFTER_MS).len(), 1);
        for id in 3..20 {
            state.workflows.insert(id, rejoin_of_dc(id, 104_000, "failed: pg_rewind failed"));
        }
        assert!(due(&state, &obs, fresh, now, 104_000 + RETRY_AFTER_MAX_MS - 1).is_empty());
        assert_eq!(due(&state, &obs, fresh, now, 104_000 + RETRY_AFTER_MAX_MS).len(), 1, "never longer than the cap");
        state.workflows.retain(|id, _| *id == 1);
        state.workflows.insert(1, failed(&format!("failed: agent `agent-dc` {NO_STREAM}")));
        assert_eq!(due(&state, &obs, fresh, now, 100_000).len(), 1, "an unsent one holds nothing back");
    }

    #[test]
    fn a_member_that_needs_re_creating_is_left_alone_until_it_is_a_standby_again() {
        let now = Instant::now();
        let mut state = after_failover();
        let report = |db: DbStatus| AgentObservation::for_test("", now, Some(db));
        let primary =
            DbStatus { up: true, role: "primary".into(), endpoint: "customs_ndc".into(), ..Default::default() };
        let stopped = DbStatus { stopped: true, agent_epoch: 2, role: "down".into(), ..Default::default() };
        let obs = |dc: DbStatus| {
            HashMap::from([("agent-ndc".to_string(), report(primary.clone())), ("agent-dc".to_string(), report(dc))])
        };
        let outcome = format!("{NEEDS_RECREATION}: agent `agent-dc`: no flashback log reaches the divergence");
        state.workflows.insert(1, rejoin_of_dc(1, 99_500, &outcome));
        let fresh = Duration::from_secs(3);
        // Long after any retry wait: still not tried, the operator has the member.
        let much_later = 99_500 + RETRY_WINDOW_MS + 1;
        assert!(due(&state, &obs(stopped.clone()), fresh, now, much_later).is_empty());
        // Re-created: its control file (Oracle) says standby; the ordinary rejoin takes it back.
        let recreated = DbStatus { configured_standby: true, ..stopped };
        assert_eq!(due(&state, &obs(recreated), fresh, now, much_later).len(), 1);
    }
}
