//! Automatic failover: when the primary is lost, promote its synchronous standby — only after
//! every lease the primary could hold has ended — and point the other standbys at it.
//!
//! The safety argument, point by point (DESIGN.md, "Safety of role changes"):
//! - *When is a primary lost* (point 6): its agent has been silent, or has reported the server
//!   stopped, for `failover.primary_lost_after_ms`; **and** no standby reports a WAL receiver
//!   that still streams (a standby streams only from a running primary). A primary that serves
//!   but lost its path to the controllers is therefore not failed over.
//! - *No lost commits* (point 5): a member of the committed synchronous set is a candidate;
//!   with synchronous replication every acknowledged commit is on it. When none of them can take
//!   over, another standby may if its position reaches the stopped primary's final position
//!   (`final_position.rs`); the vouchers acknowledge the new epoch first (point 3). With no
//!   synchronous member recorded (relaxed mode after the standby was lost) automatic failover is
//!   off: no failover, and the reason is recorded for status.
//! - *Wait out the lease* (point 4): the new epoch is committed only after
//!   [`super::Leases::all_ended_at`], unless the old primary's agent, asked with
//!   [`super::lease::Release`], answers that its server is stopped and its lease released.
//! - *Epoch first* (point 1): the new epoch is committed before the promote command goes out,
//!   and the candidate promotes only once it holds a lease at that epoch.
//! - *Anti-flapping* (point 9): none while the cluster is paused, and at least
//!   `failover.min_interval_ms` between two automatic failovers of a cluster.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use triad_proto::v1::{agent_command, DbStatus};

use super::final_position;
use super::observations::AgentObservation;
use super::switchover::{cluster, command, propose, STEP_TIMEOUT};
use crate::config::FailoverPolicy;
use crate::context::{now_ms, Ctx};
use crate::state::{Actor, Command, DbCluster, State, PRIMARY_LOST};

/// What the detector concluded for one cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    /// Why automatic failover could not happen now (empty: it could).
    pub blocked: String,
    /// The primary is lost and `to` should take over; `why` says how it was judged lost.
    pub failover: Option<(String, String)>,
}

/// The healthy synchronous standbys, best position first, or why there is none.
fn candidates(c: &DbCluster, report: &dyn Fn(&str) -> Option<DbStatus>) -> Result<Vec<(String, u64)>, String> {
    if c.synchronous.is_empty() {
        return Err("no synchronous standby is recorded: a failover could lose acknowledged commits".into());
    }
    let mut problems = Vec::new();
    let mut ok = Vec::new();
    for m in &c.synchronous {
        let Some(member) = c.members.get(m) else { continue };
        match report(&member.agent) {
            None => problems.push(format!("`{m}`'s agent is silent")),
            Some(d) if d.epoch_unknown => problems.push(format!("`{m}`'s agent is fenced (epoch unknown)")),
            Some(d) if !(d.up && d.role == "standby") => problems.push(format!("`{m}` is not a running standby")),
            Some(d) if d.agent_epoch != c.epoch => {
                problems.push(format!("`{m}`'s agent is at epoch {}, not {}", d.agent_epoch, c.epoch))
            }
            Some(d) => ok.push((m.clone(), d.wal_lsn)),
        }
    }
    if ok.is_empty() {
        return Err(format!("no synchronous standby can take over: {}", problems.join("; ")));
    }
    ok.sort_by_key(|c| std::cmp::Reverse(c.1));
    Ok(ok)
}

/// Judges every adopted cluster: is its primary lost, and could it be failed over?
/// `down_since` remembers, per cluster, since when its primary's agent reports it stopped.
pub fn judge(
    state: &State,
    obs: &HashMap<String, AgentObservation>,
    policy: &FailoverPolicy,
    fresh: Duration,
    now: Instant,
    now_ms: u64,
    down_since: &mut HashMap<String, Instant>,
) -> HashMap<String, Judgement> {
    let report =
        |agent: &str| obs.get(agent).filter(|o| now.saturating_duration_since(o.last_seen) < fresh)?.db.clone();
    let mut out = HashMap::new();
    for c in state.clusters.values().filter(|c| c.epoch > 0) {
        let Some(primary) = c.primary.clone() else { continue };
        let Some(pm) = c.members.get(&primary) else { continue };
        let mut blocked = Vec::new();
        if !policy.automatic {
            blocked.push("automatic failover is off (failover.automatic = false)".to_string());
        }
        if c.paused {
            blocked.push("the cluster is paused (maintenance)".into());
        }
        let last = automatic_failovers(state, &c.name)
            // One abandoned before it changed anything does not count.
            .filter(|w| !w.finished.as_ref().is_some_and(|(_, o)| o.starts_with("abandoned")))
            .map(|w| w.started_ms)
            .max();
        if let Some(last) = last.filter(|l| now_ms.saturating_sub(*l) < policy.min_interval_ms) {
            blocked.push(format!(
                "the last automatic failover was {} s ago (failover.min_interval_ms is {} s)",
                now_ms.saturating_sub(last) / 1000,
                policy.min_interval_ms / 1000
            ));
        }
        let retry_in = retry_after_abandoned(state, &c.name, now_ms);
        let found = match candidates(c, &report) {
            // Outside the synchronous set only by proven position, and never while no member is
            // recorded synchronous (relaxed mode keeps automatic failover off then).
            Err(why) if !c.synchronous.is_empty() => match report(&pm.agent).and_then(|d| final_position::of(c, &d)) {
                Some(end) => final_position::candidates(c, &report, end).map_err(|p| format!("{why}; {p}")),
                None => Err(why),
            },
            found => found,
        };
        if let Err(why) = &found {
            blocked.push(why.clone());
        }
        // Point 6: the primary's agent silent, or reporting the server stopped, long enough...
        let lost_after = Duration::from_millis(policy.primary_lost_after_ms);
        let silent = obs.get(&pm.agent).map(|o| now.saturating_duration_since(o.last_seen)).unwrap_or(Duration::MAX);
        let stopped = report(&pm.agent).is_some_and(|d| !d.up && d.stopped);
        if stopped {
            down_since.entry(c.name.clone()).or_insert(now);
        } else {
            down_since.remove(&c.name);
        }
        let stopped_for = down_since.get(&c.name).map(|t| now.saturating_duration_since(*t)).unwrap_or_default();
        let gone = if silent >= lost_after {
            Some(format!("`{primary}`'s agent silent for {} ms", silent.as_millis()))
        } else if stopped && stopped_for >= lost_after {
            Some(format!("`{primary}` reported stopped for {} ms", stopped_for.as_millis()))
        } else {
            None
        };
        // ...and no standby still streams from it.
        let streaming: Vec<&str> = c
            .members
            .values()
            .filter(|m| m.name != primary)
            .filter(|m| report(&m.agent).is_some_and(|d| d.up && d.receiver_streaming))
            .map(|m| m.name.as_str())
            .collect();
        let lost = gone.filter(|_| streaming.is_empty());
        let failover = match (&lost, found) {
            (Some(why), Ok(cands)) if blocked.is_empty() && c.workflow.is_none() && retry_in.is_none() => {
                Some((cands[0].0.clone(), format!("{why}; no standby streams from it")))
            }
            _ => None,
        };
        let mut blocked = blocked.join("; ");
        // Lost with nothing to replace it: the verdict says so first (status, the
        // triad_db_primary_lost metric, an ERROR in the log).
        if let Some(why) = lost.filter(|_| !blocked.is_empty()) {
            blocked = format!("{PRIMARY_LOST} ({why}; no standby streams from it) and is not failed over: {blocked}");
        }
        out.insert(c.name.clone(), Judgement { blocked, failover });
    }
    out
}

/// The failovers of `cluster` a controller decided on (a manual one is asked by a person).
fn automatic_failovers<'a>(state: &'a State, cluster: &'a str) -> impl Iterator<Item = &'a crate::state::Workflow> {
    state
        .workflows
        .values()
        .filter(move |w| w.cluster == cluster && w.kind == "failover" && w.requested_by.starts_with("controller-"))
}

/// How long an automatic failover of `cluster` waits, after attempts abandoned before they
/// changed anything, for the next: 250 ms after the first, doubling up to 8 s, counting those
/// that ended within the last minute. An attempt that cannot succeed (an agent that will not
/// confirm, a standby still behind) is retried, but not ten times a second into the history.
/// Derived from `State`, so a new leader keeps the pace. `None`: it may start now.
fn retry_after_abandoned(state: &State, cluster: &str, now_ms: u64) -> Option<Duration> {
    let ended: Vec<u64> = automatic_failovers(state, cluster)
        .filter_map(|w| w.finished.as_ref().filter(|(_, o)| o.starts_with("abandoned")).map(|(at, _)| *at))
        .filter(|at| now_ms.saturating_sub(*at) < 60_000)
        .collect();
    let last = *ended.iter().max()?;
    let wait = Duration::from_millis(250 << (ended.len() - 1).min(5));
    let since = Duration::from_millis(now_ms.saturating_sub(last));
    (since < wait).then(|| wait - since)
}

/// What a manual failover adds to the automatic one's steps.
#[derive(Debug, Clone, Default)]
pub struct Manual {
    /// Recorded first: who requested, who approved, why.
    pub approved: String,
    /// Set when the target is outside the vouch set (DESIGN.md point 3): the vouchers whose agents
    /// must accept the new epoch before the promote (those attested dead excluded); after them,
    /// P(1+rho)+m more, for the last vouch any of them gave to end.
    pub await_vouchers: Option<Vec<String>>,
    /// The data-loss window it accepts, when the target is not synchronous.
    pub data_loss: Option<String>,
}

/// The step of a manual failover that accepted losing commits, with the window it accepts.
const DATA_LOSS_WINDOW: &str = "data-loss-window";

/// The step that lists the vouchers a promote outside the vouch set waits for.
const AWAIT_VOUCHERS: &str = "await-vouchers";

/// Runs the failover of `name` from its primary to `to`, as `actor`; returns a summary.
pub async fn run(ctx: Arc<Ctx>, actor: Actor, name: String, to: String, why: String) -> Result<String, String> {
    run_with(ctx, actor, name, to, why, None).await
}

/// [`run`], for a manual failover when `manual` is given.
pub async fn run_with(
    ctx: Arc<Ctx>,
    actor: Actor,
    name: String,
    to: String,
    why: String,
    manual: Option<Manual>,
) -> Result<String, String> {
    let c = cluster(&ctx, &name).ok_or("cluster vanished")?;
    let from = c.primary.clone().ok_or("no primary recorded")?;
    let from_agent = c.members.get(&from).map(|m| m.agent.clone()).ok_or("the primary is not a member")?;
    let started = Instant::now();
    tracing::error!(cluster = %name, from = %from, to = %to, "primary lost ({why}): failing over");
    let (wf, _) = super::switchover::start_workflow(&ctx, &actor, &name, "failover", &from, &to).await?;
    let step = |n: &'static str, note: String| Command::RecordStep { workflow: wf, name: n.into(), note };
    if let Some(m) = &manual {
        propose(&ctx, &actor, step("approved", m.approved.clone())).await?;
        if let Some(loss) = &m.data_loss {
            propose(&ctx, &actor, step(DATA_LOSS_WINDOW, loss.clone())).await?;
        }
    }
    propose(&ctx, &actor, step("detected", why)).await?;

    // Point 4: every lease the old primary could hold must have ended, unless its own agent
    // released its lease with the server stopped (a report that the server is stopped is not
    // enough: it may have been made just before a start under a lease granted earlier).
    let t = Instant::now();
    let ended = ctx.leases.all_ended_at(&ctx, &name).ok_or("no longer the leader")?;
    // Outside the synchronous set, the old primary's final position is needed, so only its
    // agent's word will do: a report made after it released its lease, which no start can
    // have overtaken. Its agent gets a few heartbeats to give it even when every lease ended
    // long ago (a primary whose server stopped a while back holds none).
    let by_position = manual.is_none() && !c.synchronous.contains(&to);
    let recorded = Instant::now();
    let confirm_by = if by_position { ended.max(recorded + final_position::REPORT_WAIT) } else { ended };
    let release = command(&name, c.epoch, c.epoch_index, agent_command::Kind::ReleaseLease(Default::default()));
    let release = super::lease::Release::ask(ctx.clone(), from_agent.clone(), release, confirm_by);
    // Only what the old primary's agent reports from now on counts: its last report before it
    // fell silent still says "running primary".
    let heard_since =
        |t: Instant| ctx.obs.snapshot().get(&from_agent).filter(|o| o.last_seen > t).and_then(|o| o.db.clone());
    loop {
        let released = release.released_at();
        let confirmed = if by_position {
            released.and_then(heard_since).is_some_and(|d| final_position::of(&c, &d).is_some())
        } else {
            released.is_some()
        };
        if by_position && Instant::now() >= confirm_by && !confirmed {
            let outcome = format!("abandoned: {from}'s agent did not confirm its server stopped with a final position");
            propose(&ctx, &actor, Command::FinishWorkflow { workflow: wf, outcome: outcome.clone() }).await?;
            return Err(outcome);
        }
        if confirmed || (!by_position && Instant::now() >= ended) {
            let note = if confirmed {
                format!(
                    "{from}'s agent confirms it stopped and released its lease (after {} ms)",
                    t.elapsed().as_millis()
                )
            } else {
                format!("waited {} ms for every lease to end", t.elapsed().as_millis())
            };
            propose(&ctx, &actor, step("lease-ended", note)).await?;
            break;
        }
        // The primary came back (its agent renews the lease and a standby streams again):
        // nothing was changed yet, so the failover is simply abandoned.
        if heard_since(started).is_some_and(|d| d.up && d.role == "primary") {
            let outcome = format!("abandoned: {from} is back as a running primary");
            propose(&ctx, &actor, Command::FinishWorkflow { workflow: wf, outcome: outcome.clone() }).await?;
            return Err(outcome);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    if by_position {
        let released = release.released_at().unwrap_or(recorded);
        match final_position::check_before_epoch(&ctx, &c, (&from, released), (&to, recorded)).await {
            Ok(note) => propose(&ctx, &actor, step(final_position::STEP, note)).await?,
            Err(outcome) => {
                propose(&ctx, &actor, Command::FinishWorkflow { workflow: wf, outcome: outcome.clone() }).await?;
                return Err(outcome);
            }
        };
    }
    // Recorded before the epoch, so that a new leader finishing this workflow waits as well.
    let vouchers = match manual.as_ref() {
        Some(m) => m.await_vouchers.clone(),
        None if by_position && !c.vouch.is_empty() => Some(c.vouch.iter().cloned().collect()),
        None => None,
    };
    if let Some(list) = vouchers {
        propose(&ctx, &actor, step(AWAIT_VOUCHERS, list.join(","))).await?;
    }
    // Point 1: the new epoch, committed before any promote goes out.
    propose(&ctx, &actor, Command::SwitchPrimary { cluster: name.clone(), workflow: wf, primary: to.clone() }).await?;
    finish(ctx, actor, wf, started).await
}

/// The steps after the new epoch: promote, point the other standbys at the new primary, end the
/// workflow. Also how a new leader completes a failover its predecessor left after the epoch.
pub async fn finish(ctx: Arc<Ctx>, actor: Actor, wf: u64, started: Instant) -> Result<String, String> {
    let w = ctx.state.read().expect("state lock poisoned").state.workflows.get(&wf).cloned().ok_or("no workflow")?;
    let c = cluster(&ctx, &w.cluster).ok_or("cluster vanished")?;
    let to_agent = c.members.get(&w.to).map(|m| m.agent.clone()).ok_or("the target is not a member")?;
    let step = |n: &'static str, note: String| Command::RecordStep { workflow: wf, name: n.into(), note };
    if let Some(list) = w.steps.iter().find(|s| s.name == AWAIT_VOUCHERS).map(|s| s.note.clone()) {
        let waited = await_vouchers(&ctx, &c, &list).await?;
        propose(&ctx, &actor, step("vouchers-acked", waited)).await?;
    }
    if w.steps.iter().any(|s| s.name == final_position::STEP) {
        if let Err(why) = final_position::confirm_after_epoch(&ctx, &c, &w.from, &w.to).await {
            let outcome = format!("failed: {why}; {} was not promoted and no member is writable", w.to);
            propose(&ctx, &actor, Command::FinishWorkflow { workflow: wf, outcome: outcome.clone() }).await?;
            tracing::error!(cluster = %w.cluster, "failover {outcome}");
            return Err(outcome);
        }
        propose(&ctx, &actor, step("final-position-confirmed", format!("{} at epoch {} and stopped", w.from, c.epoch)))
            .await?;
    }
    // The old primary's last canary, as the candidate holds it: where the write outage begins.
    let last_canary = super::canary::newest(&ctx, &to_agent).filter(|k| k.epoch < c.epoch);
    let t = Instant::now();
    let accepted_loss = w.steps.iter().any(|s| s.name == DATA_LOSS_WINDOW);
    super::switchover::restart_if_stopped(&ctx, &c, &w.to, &to_agent).await?;
    let waits_for = super::switchover::first_commit_waits_for(&c, accepted_loss);
    let promote = command(&w.cluster, c.epoch, c.epoch_index, super::switchover::promote(&c, accepted_loss));
    // A promote that fails leaves the workflow open: the epoch is committed, so the only way on
    // is forward, and the brain's recovery retries it.
    ctx.bus.call(&to_agent, promote, STEP_TIMEOUT).await.map_err(|e| format!("promoting {}: {e}", w.to))?;
    propose(&ctx, &actor, step("promoted", format!("{} at epoch {} in {} ms", w.to, c.epoch, t.elapsed().as_millis())))
        .await?;
    let others = super::switchover::follow_others(&ctx, &c, &[w.from.as_str(), w.to.as_str()], &w.cluster).await;
    if !others.followed.is_empty() {
        propose(&ctx, &actor, step("followed", others.followed.join(", "))).await?;
    }
    let note = super::canary::measure(&ctx, &to_agent, &w.to, c.epoch, last_canary.as_ref(), &waits_for).await;
    propose(&ctx, &actor, step("canary", note)).await?;
    let mut outcome = format!(
        "completed: {} is primary at epoch {} ({} ms); {} rejoins as a standby when it returns",
        w.to,
        c.epoch,
        started.elapsed().as_millis(),
        w.from
    );
    if !others.problems.is_empty() {
        outcome = format!("{outcome}; problems: {}", others.problems.join("; "));
    }
    propose(&ctx, &actor, Command::FinishWorkflow { workflow: wf, outcome: outcome.clone() }).await?;
    tracing::warn!(cluster = %w.cluster, "failover {outcome}");
    Ok(outcome)
}

/// Point 3, for a promote outside the vouch set: every listed voucher's agent reports the new
/// epoch (so it vouches no more), then P(1+rho)+m passes (so any vouch it gave has ended).
/// Waits as long as it takes: promoting without it could leave a vouched primary writing.
async fn await_vouchers(ctx: &Ctx, c: &DbCluster, list: &str) -> Result<String, String> {
    let t = Instant::now();
    let members: Vec<&str> = list.split(',').filter(|m| !m.is_empty()).collect();
    let mut logged = Instant::now() - Duration::from_secs(60);
    loop {
        if !ctx.is_leader() {
            return Err("no longer the leader".into());
        }
        let behind: Vec<&str> = members
            .iter()
            .copied()
            .filter(|m| {
                let agent = c.members.get(*m).map(|x| x.agent.as_str()).unwrap_or_default();
                let fresh = Duration::from_millis(ctx.cfg.agents.down_after_ms);
                !ctx.obs.fresh_db(agent, fresh).is_some_and(|d| d.agent_epoch >= c.epoch && !d.epoch_unknown)
            })
            .collect();
        if behind.is_empty() {
            break;
        }
        if logged.elapsed() > Duration::from_secs(10) {
            tracing::error!(cluster = %c.name, waiting_for = ?behind, "the promote waits for the vouchers to accept epoch {}", c.epoch);
            logged = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let acked = t.elapsed();
    tokio::time::sleep(ctx.cfg.lease.expiry()).await;
    Ok(format!(
        "[{list}] at epoch {} after {} ms; then waited {} ms for their last vouch to end",
        c.epoch,
        acked.as_millis(),
        ctx.cfg.lease.expiry().as_millis()
    ))
}

/// The brain's step: judge, record a changed verdict, start a failover when one is due.
pub fn tick(ctx: &Arc<Ctx>, down_since: &mut HashMap<String, Instant>) {
    let fresh = Duration::from_millis(ctx.cfg.failover.primary_lost_after_ms).max(Duration::from_millis(500));
    let judgements = {
        let g = ctx.state.read().expect("state lock poisoned");
        judge(&g.state, &ctx.obs.snapshot(), &ctx.cfg.failover, fresh, Instant::now(), now_ms(), down_since)
    };
    for (name, j) in judgements {
        let recorded = cluster(ctx, &name).map(|c| c.failover_blocked).unwrap_or_default();
        if recorded != j.blocked {
            let (c, reason, cluster) = (ctx.clone(), j.blocked.clone(), name.clone());
            super::spawn_exclusive(ctx, format!("judge:{name}"), async move {
                let ctx = c;
                if reason.starts_with(PRIMARY_LOST) {
                    tracing::error!(cluster = %cluster, "{reason}");
                } else if !reason.is_empty() {
                    tracing::error!(cluster = %cluster, "automatic failover is blocked: {reason}");
                }
                let cmd = Command::SetFailoverBlocked { cluster: cluster.clone(), reason };
                if let Err(e) = propose(&ctx, &Actor::system(ctx.id), cmd).await {
                    tracing::warn!("recording the failover verdict: {e}");
                }
            });
        }
        let Some((to, why)) = j.failover else { continue };
        let c = ctx.clone();
        super::spawn_exclusive(ctx, name.clone(), async move {
            let actor = Actor::system(c.id);
            if let Err(e) = run(c, actor, name.clone(), to, why).await {
                tracing::error!(cluster = %name, "failover: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::state::Workflow;

    fn state(synchronous: &[&str]) -> State {
        let mut c = DbCluster::for_test(&["dc", "ndc", "dr"], "");
        c.epoch = 1;
        c.primary = Some("dc".into());
        c.synchronous = synchronous.iter().map(|s| s.to_string()).collect();
        let mut s = State::default();
        s.clusters.insert("customs".into(), c);
        s
    }

    fn seen(at: Instant, db: DbStatus) -> AgentObservation {
        AgentObservation::for_test("", at, Some(db))
    }

    fn standby(member: &str, streaming: bool) -> DbStatus {
        DbStatus {
            member: member.into(),
            up: true,
            role: "standby".into(),
            agent_epoch: 1,
            receiver_streaming: streaming,
            ..Default::default()
        }
    }

    fn judge_at(s: &State, obs: &HashMap<String, AgentObservation>, now: Instant) -> Judgement {
        let policy = FailoverPolicy::default();
        let mut down = HashMap::new();
        judge(s, obs, &policy, Duration::from_secs(1), now, 10_000_000, &mut down).remove("customs").unwrap()
    }

    #[test]
    fn a_silent_primary_with_no_streaming_standby_fails_over_to_the_synchronous_one() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(5);
        let s = state(&["ndc"]);
        let mut obs = HashMap::from([
            ("dc".to_string(), seen(t0, DbStatus { up: true, role: "primary".into(), ..Default::default() })),
            ("ndc".to_string(), seen(now, standby("ndc", false))),
            ("dr".to_string(), seen(now, standby("dr", false))),
        ]);
        let j = judge_at(&s, &obs, now);
        assert_eq!(j.blocked, "");
        assert_eq!(j.failover.map(|f| f.0), Some("ndc".to_string()));
        // A standby still streaming means the primary runs: only its agent's path is cut.
        obs.insert("dr".into(), seen(now, standby("dr", true)));
        assert_eq!(judge_at(&s, &obs, now).failover, None);
    }

    #[test]
    fn no_synchronous_member_or_a_pause_blocks_it_and_says_why() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(5);
        let obs = HashMap::from([("ndc".to_string(), seen(now, standby("ndc", false)))]);
        let j = judge_at(&state(&[]), &obs, now);
        assert!(j.failover.is_none() && j.blocked.contains("no synchronous standby"), "{j:?}");
        // dc's agent was never heard: the primary is lost, and nothing replaces it.
        assert!(j.blocked.starts_with(PRIMARY_LOST), "{j:?}");
        let mut heard = obs.clone();
        heard.insert("dc".into(), seen(now, DbStatus { up: true, role: "primary".into(), ..Default::default() }));
        let j = judge_at(&state(&[]), &heard, now);
        assert!(!j.blocked.starts_with(PRIMARY_LOST) && j.blocked.contains("no synchronous standby"), "{j:?}");
        let mut paused = state(&["ndc"]);
        paused.clusters.get_mut("customs").unwrap().paused = true;
        let j = judge_at(&paused, &obs, now);
        assert!(j.failover.is_none() && j.blocked.contains("paused"), "{j:?}");
        // The synchronous standby's agent at an older epoch is no candidate.
        let behind =
            HashMap::from([("ndc".to_string(), seen(now, DbStatus { agent_epoch: 0, ..standby("ndc", false) }))]);
        let j = judge_at(&state(&["ndc"]), &behind, now);
        assert!(j.failover.is_none() && j.blocked.contains("epoch 0"), "{j:?}");
    }

    #[test]
    fn a_standby_reaching_the_stopped_primarys_final_position_is_the_candidate_when_no_synchronous_one_can() {
        let mut s = state(&["ndc"]);
        s.clusters.get_mut("customs").unwrap().vouch = ["ndc".to_string()].into();
        let stopped =
            DbStatus { stopped: true, final_lsn: 1000, agent_epoch: 1, role: "down".into(), ..Default::default() };
        let ndc_down = DbStatus { role: "down".into(), agent_epoch: 1, ..Default::default() };
        let judge_over = |obs: &dyn Fn(Instant) -> HashMap<String, AgentObservation>| {
            // The primary must be reported stopped for `primary_lost_after_ms` first.
            let (t0, mut down) = (Instant::now(), HashMap::new());
            let policy = FailoverPolicy::default();
            judge(&s, &obs(t0), &policy, Duration::from_secs(1), t0, 10_000_000, &mut down);
            let later = t0 + Duration::from_secs(5);
            judge(&s, &obs(later), &policy, Duration::from_secs(1), later, 10_000_000, &mut down)
                .remove("customs")
                .unwrap()
        };
        let world = |dr_at: u64, ndc: Option<DbStatus>| {
            let (stopped, ndc) = (stopped.clone(), ndc.clone());
            move |now: Instant| {
                let mut obs = HashMap::from([
                    ("dc".to_string(), seen(now, stopped.clone())),
                    ("dr".to_string(), seen(now, DbStatus { wal_lsn: dr_at, ..standby("dr", false) })),
                ]);
                if let Some(n) = ndc.clone() {
                    obs.insert("ndc".into(), seen(now, n));
                }
                obs
            }
        };
        // ndc's server is down but its agent answers (and can acknowledge a new epoch); dr
        // received every byte dc wrote.
        let j = judge_over(&world(1000, Some(ndc_down.clone())));
        assert_eq!(j.failover.map(|f| f.0), Some("dr".to_string()), "{}", j.blocked);
        // One byte short: no failover, and why.
        let j = judge_over(&world(999, Some(ndc_down.clone())));
        assert!(j.failover.is_none() && j.blocked.contains("final position 0/3E8"), "{j:?}");
        // The voucher's agent silent: it could not acknowledge the epoch (point 3).
        let j = judge_over(&world(1000, None));
        assert!(j.failover.is_none() && j.blocked.contains("voucher `ndc`"), "{j:?}");
        // A final position read before the agent had the cluster's epoch does not count.
        let early = DbStatus { agent_epoch: 0, ..stopped.clone() };
        let j = judge_over(&|now| {
            let mut obs = world(1000, Some(ndc_down.clone()))(now);
            obs.insert("dc".into(), seen(now, early.clone()));
            obs
        });
        assert!(j.failover.is_none(), "{j:?}");
    }

    #[test]
    fn with_no_synchronous_member_recorded_even_a_caught_up_standby_is_not_promoted() {
        let s = state(&[]);
        let (t0, mut down) = (Instant::now(), HashMap::new());
        let stopped =
            DbStatus { stopped: true, final_lsn: 1000, agent_epoch: 1, role: "down".into(), ..Default::default() };
        let policy = FailoverPolicy::default();
        for now in [t0, t0 + Duration::from_secs(5)] {
            let obs = HashMap::from([
                ("dc".to_string(), seen(now, stopped.clone())),
                ("dr".to_string(), seen(now, DbStatus { wal_lsn: 2000, ..standby("dr", false) })),
            ]);
            let j = judge(&s, &obs, &policy, Duration::from_secs(1), now, 10_000_000, &mut down).remove("customs");
            let j = j.unwrap();
            assert!(j.failover.is_none() && j.blocked.contains("no synchronous standby"), "{j:?}");
        }
    }

    #[test]
    fn abandoned_attempts_are_retried_ever_more_slowly() {
        let mut s = state(&["ndc"]);
        let abandoned = |id: u64, at: u64, by: &str| Workflow {
            id,
            kind: "failover".into(),
            cluster: "customs".into(),
            from: "dc".into(),
            to: "ndc".into(),
            requested_by: by.into(),
            started_ms: at - 100,
            steps: vec![],
            finished: Some((at, "abandoned: dc is back as a running primary".into())),
        };
        let now = 10_000_000;
        assert_eq!(retry_after_abandoned(&s, "customs", now), None);
        s.workflows.insert(1, abandoned(1, now - 100, "controller-1"));
        assert_eq!(retry_after_abandoned(&s, "customs", now), Some(Duration::from_millis(150)));
        assert_eq!(retry_after_abandoned(&s, "customs", now + 150), None);
        // Two within the minute: 500 ms after the second; a manual one does not count.
        s.workflows.insert(2, abandoned(2, now, "controller-2"));
        s.workflows.insert(3, abandoned(3, now, "alice"));
        assert_eq!(retry_after_abandoned(&s, "customs", now + 100), Some(Duration::from_millis(400)));
        for id in 4..20 {
            s.workflows.insert(id, abandoned(id, now, "controller-1"));
        }
        assert_eq!(retry_after_abandoned(&s, "customs", now), Some(Duration::from_secs(8)));
        // A minute later they no longer count.
        assert_eq!(retry_after_abandoned(&s, "customs", now + 60_000), None);

        // The judge holds the failover back meanwhile, without calling it blocked.
        let t = Instant::now();
        let obs = HashMap::from([("ndc".to_string(), seen(t, standby("ndc", false)))]);
        let policy = FailoverPolicy::default();
        let mut down = HashMap::new();
        let j = judge(&s, &obs, &policy, Duration::from_secs(1), t, now + 1000, &mut down).remove("customs").unwrap();
        assert!(j.failover.is_none() && !j.blocked.contains("abandoned"), "{j:?}");
        let j = judge(&s, &obs, &policy, Duration::from_secs(1), t, now + 8000, &mut down).remove("customs").unwrap();
        assert!(j.failover.is_some(), "{j:?}");
    }

    #[test]
    fn a_primary_heard_recently_is_not_lost() {
        let now = Instant::now();
        let obs = HashMap::from([
            ("dc".to_string(), seen(now, DbStatus { up: true, role: "primary".into(), ..Default::default() })),
            ("ndc".to_string(), seen(now, standby("ndc", false))),
        ]);
        assert_eq!(judge_at(&state(&["ndc"]), &obs, now).failover, None);
    }
}
