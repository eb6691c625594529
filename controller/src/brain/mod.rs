//! The brain: runs on the leader only, reads the applied state and the agents' soft state, and
//! changes the world only by proposing commands. It keeps nothing that a new leader could not
//! rebuild from `State` and fresh agent reports, so a change of leader loses no decision.

pub mod assets;
mod break_glass;
mod canary;
mod commands;
pub mod continuity;
mod converge;
mod detector;
pub mod drills;
mod error;
mod failover;
mod final_position;
pub mod lease;
pub mod links;
mod liveness;
pub mod manual;
pub mod notify;
pub(crate) mod observations;
mod promote;
mod recovery_plan;
mod rejoin;
mod requests;
mod restart;
mod retention;
mod rollback;
pub mod router;
pub mod services;
pub mod siem;
#[cfg(test)]
pub(crate) mod sim;
pub mod switchover;
pub mod synchronous;
mod topology;
mod workflow;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use commands::{CallError, CommandBus};
pub use error::{WorkflowError, WorkflowResult};
pub use lease::Leases;
pub use liveness::decide as decide_liveness;
pub use observations::{AgentHelloInfo, AgentObservation, Observations};
pub use requests::{Brain, RequestError, Requests};

use crate::context::Ctx;
use crate::state::{Actor, Command, ControllerRecord, DbCluster, DbMember, Response, Seed, Site};

/// How often the brain looks.
const TICK: Duration = Duration::from_millis(100);

/// The seed the first leader writes: sites, controllers and clusters from its configuration.
pub fn seed_from_config(cfg: &crate::config::ControllerConfig) -> Seed {
    Seed {
        sites: cfg
            .sites
            .iter()
            .map(|s| Site { name: s.name.clone(), description: s.description.clone(), city: s.city_or_name().into() })
            .collect(),
        controllers: cfg
            .peers
            .iter()
            .map(|p| ControllerRecord {
                id: p.id,
                site: p.site.clone(),
                grpc_addr: p.grpc_addr.clone(),
                http_addr: p.http_addr.clone(),
                voter: true,
            })
            .collect(),
        clusters: cfg
            .clusters
            .iter()
            .map(|c| {
                let mut cluster = DbCluster::new(
                    &c.name,
                    c.members
                        .iter()
                        .map(|m| {
                            (
                                m.name.clone(),
                                DbMember {
                                    name: m.name.clone(),
                                    site: m.site.clone(),
                                    agent: m.agent.clone(),
                                    endpoint: String::new(),
                                    endpoint_id: String::new(),
                                },
                            )
                        })
                        .collect(),
                );
                cluster.strict = c.synchronous_mode == "strict";
                cluster
            })
            .collect(),
        links: cfg.links.clone(),
        services: cfg.services.clone(),
        drills: cfg.drills.clone(),
    }
}

/// Runs until the process stops.
pub async fn run(ctx: Arc<Ctx>) {
    let down_after = Duration::from_millis(ctx.cfg.agents.down_after_ms);
    // Since when this controller has heard the agents: they stream to every controller, leader
    // or not, so its reports are as old as its process.
    let observing_since = Instant::now();
    let mut leader_since: Option<Instant> = None;
    let mut caught_up = false;
    // Commands the state machine refused, so that the same refusal is not proposed every tick.
    let mut refused: HashSet<String> = HashSet::new();
    let mut counted: HashSet<u64> = HashSet::new();
    let mut missing = std::collections::HashMap::new();
    let mut primary_down_since = std::collections::HashMap::new();
    let mut restarts_given_up = std::collections::HashMap::new();
    let mut break_glass_settled = false;
    let mut link_judge = links::Judge::default();
    let mut warnings_checked: Option<Instant> = None;
    let mut assets_exported: Option<Instant> = None;
    let mut routes_synced = HashSet::new();
    tokio::spawn(follow_leadership(ctx.clone()));
    tokio::spawn(notify::run(ctx.clone()));
    tokio::spawn(siem::run(ctx.clone()));
    tokio::spawn(retention::run(ctx.clone()));
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // One copy of the agents' reports for what is exported and assessed this tick (the
        // decisions below take their own, as fresh as can be).
        let obs = ctx.obs.snapshot();
        crate::metrics::export_state(&ctx, &mut counted, &obs);
        // The whole register is walked: every five seconds, not every tick.
        if assets_exported.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
            assets_exported = Some(Instant::now());
            crate::metrics::export_assets(&ctx, &ctx.state.read().expect("state lock poisoned").state);
            ctx.metrics.drills.export(&ctx.state.read().expect("state lock poisoned").state);
        }
        let assessed = links::assess_all(&ctx, &obs);
        links::export(&ctx, &ctx.state.read().expect("state lock poisoned").state, &assessed);
        let services_assessed = services::assess_all(&ctx, &obs);
        drop(obs);
        crate::metrics::export_services(&ctx, &services_assessed);
        step_continuity(&ctx).await;
        if !ctx.is_leader() {
            leader_since = None;
            caught_up = false;
            // A state pending from an earlier term would skip its hold when leading again.
            link_judge = links::Judge::default();
            continue;
        }
        let since = *leader_since.get_or_insert_with(Instant::now);
        if !caught_up {
            // Decide only on a state that includes everything committed before this term.
            if let Err(e) = ctx.raft.ensure_linearizable().await {
                tracing::debug!("brain: not yet confirmed as leader: {e}");
                continue;
            }
            caught_up = true;
            refused.clear();
            tracing::info!(id = ctx.id, "brain: leading");
            routes_synced.clear();
        }
        let (seeded, commands) = {
            let g = ctx.state.read().expect("state lock poisoned");
            let obs = ctx.obs.snapshot();
            let now = Instant::now();
            let mut commands = decide_liveness(&g.state, &obs, now, since, down_after);
            commands.extend(topology::decide(&g.state, &obs, now, down_after));
            commands.extend(link_judge.decide(&g.state, &assessed, now));
            commands.extend(services::decide(&g.state, &services_assessed));
            commands.extend(assets::discover(&g.state));
            // Every asset looked at: every ten seconds is plenty for dates counted in days.
            if warnings_checked.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                warnings_checked = Some(now);
                let today = crate::state::assets::Day::from_ms(crate::context::now_ms());
                let due = assets::warnings(&g.state, today, &ctx.cfg.inventory.warn_days);
                // One log entry for all of them: a register imported with thousands of dates
                // due must not hold this loop (liveness, failover) for a commit each.
                if !due.is_empty() {
                    let items = due.into_iter().take(assets::WARNINGS_PER_ENTRY);
                    commands.push(Command::Batch(items.map(|c| ctx.proposal(Actor::system(ctx.id), c)).collect()));
                }
            }
            (g.state.seeded, commands)
        };
        break_glass::tick(&ctx, &mut break_glass_settled);
        // A quorum re-formed after an absence changes no role until it is trusted (see
        // `continuity.rs`): no workflow is started or resumed, no synchronous set changed.
        let held = ctx.continuity.held(ctx.raft.metrics().borrow().current_term);
        if let Some(why) = &held {
            tracing::debug!("brain: {why}");
        }
        if held.is_none() {
            recover_workflows(&ctx);
            drills::run::resume(&ctx);
            keep_synchronous(&ctx, &mut missing);
            recovery_plan::sync_new(&ctx, &mut routes_synced);
        }
        // Judge only once agents had time to report to this leader: a primary it has not heard
        // from yet is not thereby lost. Every agent streams to every controller, leader or not,
        // so a follower that becomes leader has usually heard them all already: when it has been
        // running that long and hears every standby now, it judges at once (issue 16, item 11:
        // counted from the election, this wait made every failover whose leader died with the
        // primary's site start 1.35 s after the election, later than the lease wait it must
        // respect anyway). A controller just started, or cut off from the agents until it was
        // elected, waits as before rather than judge on what it does not know.
        let judge_after = Duration::from_millis(ctx.cfg.failover.primary_lost_after_ms) + down_after / 4;
        let informed = observing_since.elapsed() >= judge_after && {
            let fresh = Duration::from_millis(ctx.cfg.failover.primary_lost_after_ms);
            let g = ctx.state.read().expect("state lock poisoned");
            standbys_heard(&g.state, &ctx.obs.snapshot(), fresh, Instant::now())
        };
        if held.is_none() && (informed || since.elapsed() >= judge_after) {
            // A person's approved failover first; then a primary its own fence stopped is started
            // again (a bounded number of times) before it could be judged lost.
            manual::tick(&ctx);
            let holds = restart::tick(&ctx, &mut restarts_given_up);
            failover::tick(&ctx, &mut primary_down_since, &holds);
            rejoin::tick(&ctx);
            converge::tick(&ctx);
        }
        let mut todo = Vec::new();
        if !seeded {
            todo.push(Command::Seed(seed_from_config(&ctx.cfg)));
        }
        todo.extend(commands);
        for command in todo {
            let key = format!("{command:?}");
            if refused.contains(&key) {
                continue;
            }
            match ctx.proposer.propose(ctx.proposal(Actor::system(ctx.id), command)).await {
                Ok(c) => {
                    if let Response::Rejected(why) = c.response {
                        tracing::warn!("brain: refused: {why}");
                        refused.insert(key);
                    }
                }
                Err(e) => tracing::warn!("brain: proposal failed: {e}"),
            }
        }
    }
}

/// Whether this controller heard, within `fresh`, the agent of every member of every adopted
/// cluster but its primary.
fn standbys_heard(
    state: &crate::state::State,
    obs: &std::collections::HashMap<String, AgentObservation>,
    fresh: Duration,
    now: Instant,
) -> bool {
    state.clusters.values().filter(|c| c.epoch > 0).all(|c| {
        c.members
            .values()
            .filter(|m| c.primary.as_ref() != Some(&m.name))
            .all(|m| obs.get(&m.agent).is_some_and(|o| now.saturating_duration_since(o.last_seen) < fresh))
    })
}

/// Tells the leases when this controller became leader, and when it stopped, as soon as
/// openraft says so rather than at the brain's next tick: a new leader's wait for the leases its
/// predecessor granted (DESIGN.md point 4) counts from this moment, so noting it up to a tick
/// late only made every failover after an election wait that much longer. Noting it any later
/// than the election itself is safe (the wait ends later); it is never noted earlier.
async fn follow_leadership(ctx: Arc<Ctx>) {
    let mut metrics = ctx.raft.metrics();
    let mut leading_term = None;
    loop {
        let (leading, term) = {
            let m = metrics.borrow_and_update();
            (m.state == openraft::ServerState::Leader, m.current_term)
        };
        match (leading, leading_term) {
            (true, Some(t)) if t == term => {}
            (true, _) => {
                ctx.leases.set_leading(Some(Instant::now()));
                leading_term = Some(term);
            }
            (false, Some(_)) => {
                ctx.leases.set_leading(None);
                leading_term = None;
            }
            (false, None) => {}
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// One step of the continuity rule (`continuity.rs`) on what openraft and the state say now; keeps
/// the last contact in the store and tells the network whether this leader has a quorum.
async fn step_continuity(ctx: &Arc<Ctx>) {
    let view = continuity_view(ctx);
    ctx.net.set_leader_has_quorum(continuity::Continuity::leader_has_quorum(&view));
    let todo = ctx.continuity.step(&view);
    if let Some(at) = ctx.continuity.to_save() {
        if let Err(e) = crate::raft::contact::save(&ctx.db, at) {
            tracing::warn!("cannot keep the last quorum contact in the store: {e}");
        }
    }
    if let Some(continuity::Todo::WriteCheck { term }) = todo {
        let proposal = ctx.proposal(Actor::system(ctx.id), Command::QuorumCheck { term });
        match tokio::time::timeout(Duration::from_secs(2), ctx.proposer.propose(proposal)).await {
            Ok(Ok(c)) => ctx.continuity.check_written(term, c.log_index),
            Ok(Err(e)) => tracing::warn!("brain: writing the quorum check: {e}"),
            Err(_) => tracing::warn!("brain: writing the quorum check took over 2 s"),
        }
    }
}

/// What the continuity rule looks at, from openraft's metrics and the applied state now.
pub(crate) fn continuity_view(ctx: &Ctx) -> continuity::View {
    let m = ctx.raft.metrics().borrow().clone();
    let leader = m.state == openraft::ServerState::Leader;
    continuity::View {
        id: ctx.id,
        leader,
        term: m.current_term,
        quorum_ack_ms: m.millis_since_quorum_ack,
        voters: m.membership_config.voter_ids().collect(),
        matched: m.replication.iter().flatten().map(|(id, log)| (*id, log.map(|l| l.index).unwrap_or(0))).collect(),
        confirmed_term: ctx.state.read().expect("state lock poisoned").state.quorum_confirmed_term,
        now_ms: triad_proto::clock::boot_ms(),
        absence_ms: continuity::absence_ms(ctx.cfg.raft.election_timeout_max_ms),
        fresh_ms: ctx.cfg.raft.election_timeout_max_ms,
    }
}

/// Keeps each cluster's synchronous set true to what its primary does (see `synchronous.rs`):
/// drop a lost standby (record, then reconfigure), restore a returning one (reconfigure,
/// confirm, then record). One change per cluster at a time.
fn keep_synchronous(ctx: &Arc<Ctx>, missing: &mut std::collections::HashMap<(String, String), Instant>) {
    let fresh = Duration::from_millis(ctx.cfg.agents.down_after_ms);
    let obs = ctx.obs.snapshot();
    let actions = {
        let g = ctx.state.read().expect("state lock poisoned");
        let reports = g
            .state
            .clusters
            .values()
            .filter_map(|c| {
                let agent = &c.members.get(c.primary.as_ref()?)?.agent;
                let o = obs.get(agent).filter(|o| o.last_seen.elapsed() < fresh)?;
                Some((c.name.clone(), o.db.clone().filter(|d| d.cluster == c.name)?))
            })
            .collect();
        synchronous::decide(&g.state, &reports, Instant::now(), missing)
    };
    for action in actions {
        let cluster = match &action {
            synchronous::SyncAction::Drop { cluster, .. }
            | synchronous::SyncAction::Restore { cluster, .. }
            | synchronous::SyncAction::Vouch { cluster, .. } => cluster.clone(),
        };
        let c = ctx.clone();
        spawn_exclusive(ctx, format!("sync:{cluster}"), async move {
            if let Err(e) = apply_sync_action(&c, action).await {
                tracing::warn!("synchronous set of {cluster}: {e}");
            }
        });
    }
}

async fn apply_sync_action(ctx: &Ctx, action: synchronous::SyncAction) -> WorkflowResult<()> {
    use triad_proto::v1::{agent_command, AgentCommand, SetSynchronous};
    let actor = Actor::system(ctx.id);
    let (cluster, names) = match &action {
        synchronous::SyncAction::Drop { cluster, remaining, .. } => (cluster.clone(), remaining.clone()),
        synchronous::SyncAction::Restore { cluster, members, .. } => (cluster.clone(), members.clone()),
        synchronous::SyncAction::Vouch { cluster, members } => (cluster.clone(), members.clone()),
    };
    let c = workflow::recorded_cluster(ctx, &cluster)?;
    let (primary, agent) = workflow::recorded_primary(&c)?;
    let reconfigure = || AgentCommand {
        id: 0,
        cluster: cluster.clone(),
        epoch: c.epoch,
        log_index: c.epoch_index,
        kind: Some(agent_command::Kind::SetSynchronous(SetSynchronous { names: names.clone() })),
    };
    let propose = |command: Command| workflow::propose(ctx, &actor, command);
    let reconfiguring = || WorkflowError::agent(format!("reconfiguring {primary}'s synchronous standbys"));
    match action {
        synchronous::SyncAction::Vouch { members, .. } => {
            propose(Command::SetVouch { cluster: cluster.clone(), members: members.clone() }).await?;
            tracing::warn!(cluster = %cluster, vouchers = ?members, "no member is synchronous: these vouch for the primary");
        }
        synchronous::SyncAction::Drop { member, .. } => {
            let mut reason = format!("not streaming for {} s", synchronous::GRACE.as_secs());
            if let Some(link) = links::explaining(&ctx.state.read().expect("state lock poisoned").state, &c, &member) {
                reason = format!("{reason}; {link}");
            }
            // Record first: from here on nothing counts on `member` holding every commit.
            propose(Command::DropSynchronous { cluster: cluster.clone(), member: member.clone(), reason }).await?;
            ctx.bus.call(&agent, reconfigure(), Duration::from_secs(10)).await.map_err(reconfiguring())?;
            tracing::warn!(cluster = %cluster, member = %member, "synchronous standby lost: the primary commits asynchronously");
        }
        synchronous::SyncAction::Restore { member, members, .. } => {
            // Reconfigure first, confirm, then record.
            ctx.bus.call(&agent, reconfigure(), Duration::from_secs(10)).await.map_err(reconfiguring())?;
            if !switchover::confirm_sync(ctx, &agent, &member).await {
                return Err(WorkflowError::NotSo(format!("{member} did not become synchronous and flushed in time")));
            }
            propose(Command::SetSynchronous { cluster: cluster.clone(), members }).await?;
            tracing::info!(cluster = %cluster, member = %member, "synchronous standby restored");
        }
    }
    Ok(())
}

/// Runs `work` on a task of its own unless one already runs under `key` (a cluster's name for
/// its workflows; `judge:`, `sync:` for smaller jobs): the key is held until the work ends, so a
/// tick never starts a second one beside it. False when one was running.
pub(crate) fn spawn_exclusive<F>(ctx: &Arc<Ctx>, key: String, work: F) -> bool
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    if !ctx.running.lock().expect("running lock poisoned").insert(key.clone()) {
        return false;
    }
    let ctx = ctx.clone();
    tokio::spawn(async move {
        work.await;
        ctx.running.lock().expect("running lock poisoned").remove(&key);
    });
    true
}

/// How long after a failed recovery attempt the next one starts.
const RECOVERY_RETRY: Duration = Duration::from_secs(2);

/// Starts recovery of every unfinished workflow that no task on this controller is running.
fn recover_workflows(ctx: &Arc<Ctx>) {
    let unfinished: Vec<(String, u64)> = {
        let g = ctx.state.read().expect("state lock poisoned");
        g.state.clusters.values().filter_map(|c| Some((c.name.clone(), c.workflow?))).collect()
    };
    for (cluster, wf) in unfinished {
        let ctx2 = ctx.clone();
        spawn_exclusive(ctx, cluster, async move {
            let ctx = ctx2;
            match switchover::recover(ctx.clone(), wf).await {
                Ok(outcome) => tracing::info!(workflow = wf, "recovered: {outcome}"),
                Err(e) => {
                    tracing::warn!(workflow = wf, "recovery: {e}; retrying in {} s", RECOVERY_RETRY.as_secs());
                    // Still marked running meanwhile: a step that fails at once is not hammered.
                    tokio::time::sleep(RECOVERY_RETRY).await;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::State;

    #[test]
    fn a_new_leader_judges_at_once_only_when_it_hears_every_standby() {
        let mut c = DbCluster::for_test(&["dc", "ndc", "dr"], "agent-");
        (c.epoch, c.primary) = (1, Some("dc".into()));
        let mut state = State::default();
        state.clusters.insert("customs".into(), c);
        let now = Instant::now();
        let heard = |agent: &str, ago_ms: u64| {
            (agent.to_string(), AgentObservation::for_test("", now - Duration::from_millis(ago_ms), None))
        };
        let fresh = Duration::from_millis(600);
        // The primary's agent silent (its site lost): the standbys are what counts.
        let obs = std::collections::HashMap::from([heard("agent-ndc", 100), heard("agent-dr", 150)]);
        assert!(standbys_heard(&state, &obs, fresh, now));
        // One standby not heard lately (this controller cut off from it): not informed.
        let obs = std::collections::HashMap::from([heard("agent-ndc", 100), heard("agent-dr", 2_000)]);
        assert!(!standbys_heard(&state, &obs, fresh, now));
        let obs = std::collections::HashMap::from([heard("agent-ndc", 100)]);
        assert!(!standbys_heard(&state, &obs, fresh, now), "never heard");
    }
}
