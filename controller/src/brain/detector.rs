//! The failure detector: is a cluster's primary lost, and may it be failed over now? Pure: it
//! reads `State` and the agents' latest reports and returns a [`Judgement`] per cluster, which
//! `failover::tick` records and acts on.
//!
//! - *When is a primary lost* (DESIGN.md point 6): its agent has been silent, or has reported the
//!   server stopped, for `failover.primary_lost_after_ms`; **and** no standby reports a WAL
//!   receiver that still streams (a standby streams only from a running primary). A primary that
//!   serves but lost its path to the controllers is therefore not failed over.
//! - *Who may replace it* (point 5): a healthy member of the committed synchronous set, or, when
//!   none can, a standby proven to hold the stopped primary's final position
//!   (`final_position.rs`); never while no member is recorded synchronous.
//! - *Anti-flapping* (point 9): not while the cluster is paused, not within
//!   `failover.min_interval_ms` of the last automatic failover, and attempts abandoned before
//!   they changed anything are retried ever more slowly.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use triad_proto::replica;
use triad_proto::v1::DbStatus;

use super::final_position;
use super::observations::AgentObservation;
use crate::config::FailoverPolicy;
use crate::state::WorkflowKind;
use crate::state::{DbCluster, State, Workflow, PRIMARY_LOST};

/// What the detector concluded for one cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    /// Why automatic failover could not happen now (empty: it could).
    pub blocked: String,
    /// The primary is lost and `to` should take over; `why` says how it was judged lost.
    pub failover: Option<(String, String)>,
}

/// The healthy synchronous standbys, best position first, or why there is none. `lapsing`:
/// the database stops waiting for its synchronous standbys by itself (Oracle's Maximum
/// Availability), so the committed set alone proves nothing; a member counts only if the
/// primary's last report, however old, showed the database waiting for it (B6 of
/// docs/oracle-data-guard.md). With no such report, none counts: without knowledge, no failover
/// by the synchronous set (a proven final position may still qualify one).
fn candidates(
    c: &DbCluster,
    report: &dyn Fn(&str) -> Option<DbStatus>,
    lapsing: Option<Option<&DbStatus>>,
) -> Result<Vec<(String, u64)>, String> {
    if c.synchronous.is_empty() {
        return Err("no synchronous standby is recorded: a failover could lose acknowledged commits".into());
    }
    let held = |m: &str| match lapsing {
        None => true,
        Some(last) => last.is_some_and(|d| d.replicas.iter().any(|r| r.name == m && replica::synchronous(r))),
    };
    let mut problems = Vec::new();
    let mut ok = Vec::new();
    for m in &c.synchronous {
        let Some(member) = c.members.get(m) else { continue };
        if !held(m) {
            problems.push(format!(
                "the primary's last report does not show `{m}` synchronized, and its database stops waiting by itself"
            ));
            continue;
        }
        match report(&member.agent) {
            None => problems.push(format!("`{m}`'s agent is silent")),
            Some(d) if d.epoch_unknown => problems.push(format!("`{m}`'s agent is fenced (epoch unknown)")),
            Some(d) if !(d.up && d.role == "standby") => problems.push(format!("`{m}` is not a running standby")),
            Some(d) if d.agent_epoch != c.epoch => {
                problems.push(format!("`{m}`'s agent is at epoch {}, not {}", d.agent_epoch, c.epoch))
            }
            Some(d) => ok.push((m.clone(), d.position)),
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
        let mut blocked = policy_blocks(state, c, policy, now_ms);
        let retry_in = retry_after_abandoned(state, &c.name, now_ms);
        let last_primary = obs.get(&pm.agent).and_then(|o| o.db.as_ref()).filter(|d| d.member == primary);
        let lapses = last_primary.is_some_and(|d| d.sync_may_lapse)
            || c.members.values().any(|m| report(&m.agent).is_some_and(|d| d.sync_may_lapse));
        let found = match candidates(c, &report, lapses.then_some(last_primary)) {
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
        let silent = obs.get(&pm.agent).map(|o| now.saturating_duration_since(o.last_seen)).unwrap_or(Duration::MAX);
        let gone = gone(c, &primary, silent, report(&pm.agent).as_ref(), policy, now, down_since);
        let streaming = streaming_from_primary(c, &primary, &pm.endpoint_id, &report);
        let lost = gone.filter(|_| streaming.is_empty());
        let failover = match (&lost, found) {
            (Some((_, why)), Ok(cands)) if blocked.is_empty() && c.workflow.is_none() && retry_in.is_none() => {
                Some((cands[0].0.clone(), format!("{why}; no standby streams from it")))
            }
            _ => None,
        };
        let mut blocked = blocked.join("; ");
        // Lost with nothing to replace it: the verdict says so first (status, the
        // triad_db_primary_lost metric, an ERROR in the log).
        if let Some((why, _)) = lost.filter(|_| !blocked.is_empty()) {
            blocked = format!("{PRIMARY_LOST} ({why}; no standby streams from it) and is not failed over: {blocked}");
        }
        out.insert(c.name.clone(), Judgement { blocked, failover });
    }
    out
}

/// What the policy says against an automatic failover of `c` now: switched off, paused, or
/// within `failover.min_interval_ms` of the last one (point 9).
pub(crate) fn policy_blocks(state: &State, c: &DbCluster, policy: &FailoverPolicy, now_ms: u64) -> Vec<String> {
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
        // The start time, not the age: the verdict must stay the same from tick to tick.
        blocked.push(format!(
            "the last automatic failover started at {}, less than failover.min_interval_ms ({} s) ago",
            triad_proto::words::format_utc(last),
            policy.min_interval_ms / 1000
        ));
    }
    blocked
}

/// Point 6, first half: the primary's agent silent (for `silent`), or reporting the server
/// stopped (`report`), for `failover.primary_lost_after_ms`. Two wordings: the verdict recorded
/// in State must not change from tick to tick (each change is a Raft write and an ERROR line),
/// so it names the threshold; the failover's "detected" step records what was measured.
fn gone(
    c: &DbCluster,
    primary: &str,
    silent: Duration,
    report: Option<&DbStatus>,
    policy: &FailoverPolicy,
    now: Instant,
    down_since: &mut HashMap<String, Instant>,
) -> Option<(String, String)> {
    let lost_after = Duration::from_millis(policy.primary_lost_after_ms);
    // Counted from the first report of the server stopped, and reset only by one of it up: a
    // restart that fails (its reports in between neither up nor stopped) does not start the
    // count again, so a primary that cannot start is judged lost all the same.
    let stopped = report.is_some_and(|d| !d.up && d.stopped);
    if stopped {
        down_since.entry(c.name.clone()).or_insert(now);
    } else if report.is_none_or(|d| d.up) {
        down_since.remove(&c.name);
    }
    let stopped_for = down_since.get(&c.name).map(|t| now.saturating_duration_since(*t)).unwrap_or_default();
    let over = lost_after.as_millis();
    if silent >= lost_after {
        let measured =
            if silent == Duration::MAX { "never heard".to_string() } else { format!("{} ms", silent.as_millis()) };
        Some((
            format!("`{primary}`'s agent silent for over {over} ms"),
            format!("`{primary}`'s agent silent ({measured})"),
        ))
    } else if stopped && stopped_for >= lost_after {
        Some((
            format!("`{primary}` reported stopped for over {over} ms"),
            format!("`{primary}` reported stopped for {} ms", stopped_for.as_millis()),
        ))
    } else {
        None
    }
}

/// Point 6, second half: the standbys that still stream from the primary, from *it* and not from
/// another standby (issue 16, item 8: dr, left streaming from the old primary after a
/// switchover, "reached the database" after the new one died). The driver names a standby's
/// upstream and the primary's identity in one canonical form (`upstream_id`, `endpoint_id`),
/// compared here for equality alone (B1 of docs/oracle-data-guard.md: a connection string read
/// by the controller made an Oracle upstream look like another server, and a primary that had
/// only lost its controllers be failed over). An upstream its agent cannot name, or a primary
/// whose identity is not recorded, counts as the primary: without knowledge, no failover.
fn streaming_from_primary<'a>(
    c: &'a DbCluster,
    primary: &str,
    primary_id: &str,
    report: &dyn Fn(&str) -> Option<DbStatus>,
) -> Vec<&'a str> {
    let from_primary = |d: &DbStatus| d.upstream_id.is_empty() || primary_id.is_empty() || d.upstream_id == primary_id;
    c.members
        .values()
        .filter(|m| m.name != primary)
        .filter(|m| report(&m.agent).is_some_and(|d| d.up && d.receiver_streaming && from_primary(&d)))
        .map(|m| m.name.as_str())
        .collect()
}

/// While the leader restarts a primary its own fence stopped (`restart.rs`), the detector holds:
/// no automatic failover starts, and status says why. The restarts are bounded, so the hold is.
pub fn hold(judgements: &mut HashMap<String, Judgement>, holds: &HashMap<String, String>) {
    for (cluster, why) in holds {
        if let Some(j) = judgements.get_mut(cluster) {
            j.failover = None;
            j.blocked = if j.blocked.is_empty() { why.clone() } else { format!("{why}; {}", j.blocked) };
        }
    }
}

/// The failovers of `cluster` a controller decided on (a manual one is asked by a person).
fn automatic_failovers<'a>(state: &'a State, cluster: &'a str) -> impl Iterator<Item = &'a Workflow> {
    state.workflows.values().filter(move |w| {
        w.cluster == cluster && w.kind == WorkflowKind::Failover && w.requested_by.starts_with("controller-")
    })
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

#[cfg(test)]
mod tests {

    use super::*;

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
    fn a_primary_that_cannot_start_is_judged_lost_through_failed_restarts_unless_held() {
        let s = state(&["ndc"]);
        let policy = FailoverPolicy::default();
        let (t0, mut down) = (Instant::now(), HashMap::new());
        let dc = |d: DbStatus, at: Instant| {
            HashMap::from([
                ("dc".to_string(), seen(at, DbStatus { agent_epoch: 1, ..d })),
                ("ndc".to_string(), seen(at, standby("ndc", false))),
            ])
        };
        let stopped = DbStatus { stopped: true, stopped_by_fence: true, role: "down".into(), ..Default::default() };
        let starting = DbStatus { role: "down".into(), ..Default::default() };
        let mut at = |d: DbStatus, ms: u64| {
            let now = t0 + Duration::from_millis(ms);
            judge(&s, &dc(d, now), &policy, Duration::from_secs(1), now, 10_000_000, &mut down).remove("customs")
        };
        at(stopped.clone(), 0);
        // A restart attempt in between (neither up nor stopped) does not start the count again.
        at(starting, 300);
        let j = at(stopped.clone(), policy.primary_lost_after_ms + 10).unwrap();
        assert_eq!(j.failover.as_ref().map(|f| f.0.as_str()), Some("ndc"), "{j:?}");
        // While the leader restarts it, the detector holds and says why.
        let mut all = HashMap::from([("customs".to_string(), j)]);
        hold(&mut all, &HashMap::from([("customs".to_string(), "the leader restarts `dc`".to_string())]));
        assert_eq!(all["customs"].failover, None);
        assert_eq!(all["customs"].blocked, "the leader restarts `dc`");
        // Seen up, the count starts again.
        at(DbStatus { up: true, role: "primary".into(), ..Default::default() }, 700);
        assert_eq!(at(stopped, 800).unwrap().failover, None);
    }

    #[test]
    fn the_verdict_on_a_lost_primary_stays_the_same_from_tick_to_tick() {
        // Each change of the verdict is a Raft write and an ERROR line: it named the silence
        // in milliseconds once, and so changed (and was logged) on every 100 ms tick.
        let t0 = Instant::now();
        let mut s = state(&[]);
        let recent = Workflow {
            id: 1,
            kind: WorkflowKind::Failover,
            cluster: "customs".into(),
            from: "ndc".into(),
            to: "dc".into(),
            requested_by: "controller-1".into(),
            started_ms: 9_990_000,
            steps: Vec::new(),
            finished: Some((9_995_000, "completed".into())),
            write_outage_ms: None,
            writes_resumed_ms: None,
        };
        s.workflows.insert(1, recent);
        let obs = |now: Instant| {
            HashMap::from([
                ("dc".to_string(), seen(t0, DbStatus { up: true, role: "primary".into(), ..Default::default() })),
                ("ndc".to_string(), seen(now, standby("ndc", false))),
            ])
        };
        let policy = FailoverPolicy::default();
        let mut verdicts = Vec::new();
        for tick in 0..3u64 {
            let now = t0 + Duration::from_secs(5) + Duration::from_millis(100 * tick);
            let now_ms = 10_000_000 + 1_000 * tick;
            let j = judge(&s, &obs(now), &policy, Duration::from_secs(1), now, now_ms, &mut HashMap::new());
            verdicts.push(j["customs"].blocked.clone());
        }
        assert!(verdicts[0].starts_with(PRIMARY_LOST) && verdicts[0].contains("min_interval_ms"), "{verdicts:?}");
        assert!(verdicts.iter().all(|v| *v == verdicts[0]), "{verdicts:#?}");
    }

    #[test]
    fn only_a_standby_streaming_from_the_primary_itself_shows_it_runs() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(5);
        let mut s = state(&["ndc"]);
        // Oracle-shaped identities: DB_UNIQUE_NAMEs, which no connection-string parser reads.
        s.clusters.get_mut("customs").unwrap().members.get_mut("dc").unwrap().endpoint_id = "customs_dc".into();
        let dr = |upstream: &str| DbStatus { upstream_id: upstream.into(), ..standby("dr", true) };
        let obs = |d: DbStatus| {
            HashMap::from([
                ("dc".to_string(), seen(t0, DbStatus { up: true, role: "primary".into(), ..Default::default() })),
                ("ndc".to_string(), seen(now, standby("ndc", false))),
                ("dr".to_string(), seen(now, d)),
            ])
        };
        // dr streams from another server (a standby that was the primary once): dc is lost.
        let j = judge_at(&s, &obs(dr("customs_ndc")), now);
        assert_eq!(j.failover.map(|f| f.0), Some("ndc".to_string()));
        // From dc itself, or from an upstream its agent cannot name: dc runs.
        assert_eq!(judge_at(&s, &obs(dr("customs_dc")), now).failover, None);
        assert_eq!(judge_at(&s, &obs(dr("")), now).failover, None);
        // dc's identity not recorded (an agent older than `endpoint_id`): no failover either.
        s.clusters.get_mut("customs").unwrap().members.get_mut("dc").unwrap().endpoint_id.clear();
        assert_eq!(judge_at(&s, &obs(dr("customs_ndc")), now).failover, None);
    }

    #[test]
    fn where_the_database_stops_waiting_by_itself_only_a_member_it_waited_for_is_loss_free() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(5);
        let s = state(&["ndc"]);
        let primary = |synchronized: bool| DbStatus {
            member: "dc".into(),
            up: true,
            role: "primary".into(),
            sync_may_lapse: true,
            replicas: vec![triad_proto::v1::ReplicaStatus {
                name: "ndc".into(),
                synchronous: synchronized,
                ..Default::default()
            }],
            ..Default::default()
        };
        let obs = |dc: DbStatus| {
            HashMap::from([
                ("dc".to_string(), seen(t0, dc)),
                ("ndc".to_string(), seen(now, DbStatus { sync_may_lapse: true, ..standby("ndc", false) })),
            ])
        };
        // dc's last word before it went silent: it waited for ndc.
        assert_eq!(judge_at(&s, &obs(primary(true)), now).failover.map(|f| f.0), Some("ndc".to_string()));
        // Its last word: it had stopped waiting (NetTimeout): ndc may lack acknowledged commits.
        let j = judge_at(&s, &obs(primary(false)), now);
        assert!(j.failover.is_none() && j.blocked.contains("does not show `ndc` synchronized"), "{j:?}");
        // Never heard from dc under this leader: no knowledge, no failover by the set.
        let unheard =
            HashMap::from([("ndc".to_string(), seen(now, DbStatus { sync_may_lapse: true, ..standby("ndc", false) }))]);
        assert!(judge_at(&s, &unheard, now).failover.is_none());
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
            DbStatus { stopped: true, final_position: 1000, agent_epoch: 1, role: "down".into(), ..Default::default() };
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
                    ("dr".to_string(), seen(now, DbStatus { position: dr_at, ..standby("dr", false) })),
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
            DbStatus { stopped: true, final_position: 1000, agent_epoch: 1, role: "down".into(), ..Default::default() };
        let policy = FailoverPolicy::default();
        for now in [t0, t0 + Duration::from_secs(5)] {
            let obs = HashMap::from([
                ("dc".to_string(), seen(now, stopped.clone())),
                ("dr".to_string(), seen(now, DbStatus { position: 2000, ..standby("dr", false) })),
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
            kind: WorkflowKind::Failover,
            cluster: "customs".into(),
            from: "dc".into(),
            to: "ndc".into(),
            requested_by: by.into(),
            started_ms: at - 100,
            steps: vec![],
            finished: Some((at, "abandoned: dc is back as a running primary".into())),
            write_outage_ms: None,
            writes_resumed_ms: None,
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
