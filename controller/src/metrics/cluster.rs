//! The metrics of the replicated state (database clusters, workflows, agents, cities, assets),
//! exported alike by every controller, and those of the agents' reports, exported by the leader
//! only: a follower's copy of them would be stale the moment it stops leading.

use std::collections::HashSet;

use prometheus::{GaugeVec, IntGaugeVec, Registry};

use super::{float_gauge_vec, gauge_vec, WORKFLOW_OUTCOMES};
use crate::brain::observations::AgentObservation;
use crate::context::Ctx;
use crate::state::{DbCluster, State, WorkflowKind};

/// What a member is, as `triad_db_member_role` labels it.
pub const MEMBER_ROLES: [&str; 3] = ["primary", "synchronous", "asynchronous"];

/// The database clusters' metrics (label `cluster`: configured, so bounded).
pub struct ClusterMetrics {
    /// 1 for the role the state records for a member, 0 for the others.
    pub member_role: IntGaugeVec,
    pub synchronous_members: IntGaugeVec,
    /// Unix seconds of the last role change by kind (`switchover`, `failover`): the dashboards
    /// draw them as annotations.
    pub last_role_change: GaugeVec,
    /// When the current primary became primary, Unix seconds.
    pub primary_since: GaugeVec,
    /// The last role change's write outage as the canary measured it (-1: not measured).
    pub last_write_outage: GaugeVec,
    pub lag_bound_bytes: GaugeVec,
    pub lag_bound_seconds: GaugeVec,
    /// 1 while a workflow of that kind runs on the cluster.
    pub workflow_running: IntGaugeVec,
    /// Leader only, from the primary's report: what each standby has not flushed or replayed.
    pub standby_lag_bytes: GaugeVec,
    pub standby_lag_seconds: GaugeVec,
    pub standby_sync: IntGaugeVec,
    /// Leader only: the newest canary row's age as each member reads it.
    pub canary_age: GaugeVec,
    pub canary_delay: GaugeVec,
}

impl ClusterMetrics {
    pub fn new(r: &Registry) -> Self {
        let cm = &["cluster", "member"];
        ClusterMetrics {
            member_role: gauge_vec(
                r,
                "triad_db_member_role",
                "1 for the role the state records for the member (primary, synchronous, asynchronous), 0 for the others",
                &["cluster", "member", "site", "role"],
            ),
            synchronous_members: gauge_vec(
                r,
                "triad_db_synchronous_members",
                "Members recorded as holding every commit (0: none; automatic failover is off)",
                &["cluster"],
            ),
            last_role_change: float_gauge_vec(
                r,
                "triad_db_last_role_change_timestamp_seconds",
                "When a role change of this kind (switchover, failover) last changed the primary (0: never)",
                &["cluster", "kind"],
            ),
            primary_since: float_gauge_vec(
                r,
                "triad_db_primary_since_timestamp_seconds",
                "When the current primary became primary (adoption or the last role change; 0: not adopted)",
                &["cluster"],
            ),
            last_write_outage: float_gauge_vec(
                r,
                "triad_db_last_write_outage_seconds",
                "Write outage of the last role change, from the old primary's last canary row to the new one's first (-1: not measured)",
                &["cluster"],
            ),
            lag_bound_bytes: float_gauge_vec(
                r,
                "triad_db_lag_bound_bytes",
                "Configured replay lag past which the NOC is told, by mode (synchronous, asynchronous)",
                &["cluster", "mode"],
            ),
            lag_bound_seconds: float_gauge_vec(
                r,
                "triad_db_lag_bound_seconds",
                "Configured replay delay past which the NOC is told, by mode (synchronous, asynchronous)",
                &["cluster", "mode"],
            ),
            workflow_running: gauge_vec(
                r,
                "triad_workflow_running",
                "1 while a workflow of this kind runs on the cluster",
                &["cluster", "kind"],
            ),
            standby_lag_bytes: float_gauge_vec(
                r,
                "triad_db_standby_lag_bytes",
                "Leader only: bytes the standby has not flushed or replayed (kind), from the primary's report",
                &["cluster", "member", "kind"],
            ),
            standby_lag_seconds: float_gauge_vec(
                r,
                "triad_db_standby_lag_seconds",
                "Leader only: the standby's replay lag in time, from the primary's report",
                cm,
            ),
            standby_sync: gauge_vec(
                r,
                "triad_db_standby_sync",
                "Leader only: 1 if the primary reports the standby synchronous",
                cm,
            ),
            canary_age: float_gauge_vec(
                r,
                "triad_db_canary_age_seconds",
                "Leader only: age of the newest canary row the member reads (the primary writes one every 100 ms)",
                cm,
            ),
            canary_delay: float_gauge_vec(
                r,
                "triad_canary_replication_delay_seconds",
                "Leader only: how far the member's newest canary row trails the primary's, in canary rows times \
                 their 100 ms interval (no clock compared); from reports up to one observation apart",
                cm,
            ),
        }
    }

    /// A cluster's figures from the replicated state.
    fn export_cluster(&self, c: &DbCluster, bounds: Option<&crate::config::LagBounds>) {
        let n = c.name.as_str();
        for m in c.members.values() {
            let role = match () {
                _ if c.epoch == 0 => None,
                _ if c.primary.as_deref() == Some(m.name.as_str()) => Some("primary"),
                _ if c.synchronous.contains(&m.name) => Some("synchronous"),
                _ => Some("asynchronous"),
            };
            for r in MEMBER_ROLES {
                self.member_role.with_label_values(&[n, &m.name, &m.site, r]).set((role == Some(r)) as i64);
            }
        }
        self.synchronous_members.with_label_values(&[n]).set(c.synchronous.len() as i64);
        let rc = &c.role_changes;
        let secs = |ms: u64| ms as f64 / 1000.0;
        self.last_role_change.with_label_values(&[n, "switchover"]).set(secs(rc.last_switchover_ms));
        self.last_role_change.with_label_values(&[n, "failover"]).set(secs(rc.last_failover_ms));
        self.primary_since.with_label_values(&[n]).set(secs(rc.primary_since_ms));
        self.last_write_outage.with_label_values(&[n]).set(rc.last_write_outage_ms.map(secs).unwrap_or(-1.0));
        if let Some(b) = bounds {
            self.lag_bound_bytes.with_label_values(&[n, "synchronous"]).set(b.synchronous_bytes as f64);
            self.lag_bound_bytes.with_label_values(&[n, "asynchronous"]).set(b.asynchronous_bytes as f64);
            self.lag_bound_seconds.with_label_values(&[n, "synchronous"]).set(b.synchronous_seconds);
            self.lag_bound_seconds.with_label_values(&[n, "asynchronous"]).set(b.asynchronous_seconds);
        }
    }

    /// Leader only: the standbys' lag as the primary reports it and each member's canary age,
    /// from reports no older than `fresh_ms`; everything else is dropped, so that a silent
    /// agent's last figures are not shown as current.
    fn export_observed(
        &self,
        state: &State,
        obs: &std::collections::HashMap<String, AgentObservation>,
        now_ms: u64,
        fresh_ms: u64,
    ) {
        self.standby_lag_bytes.reset();
        self.standby_lag_seconds.reset();
        self.standby_sync.reset();
        self.canary_age.reset();
        self.canary_delay.reset();
        let fresh = |agent: &str| {
            obs.get(agent).filter(|o| now_ms.saturating_sub(o.last_seen_ms) <= fresh_ms).and_then(|o| o.db.as_ref())
        };
        for c in state.clusters.values() {
            let n = c.name.as_str();
            for m in c.members.values() {
                let Some(d) = fresh(&m.agent) else { continue };
                if d.canary_seq > 0 && d.canary_age_seconds >= 0.0 {
                    // The report's age, plus how long ago the report was made.
                    let since = now_ms.saturating_sub(d.observed_ms) as f64 / 1000.0;
                    self.canary_age.with_label_values(&[n, &m.name]).set(d.canary_age_seconds + since);
                }
            }
            let Some(primary) = c.primary.as_ref().and_then(|p| c.members.get(p)) else { continue };
            let Some(d) = fresh(&primary.agent).filter(|d| d.role == "primary") else { continue };
            // Replication delay measured inside the database: the rows of the canary the
            // primary wrote that a running member has not replayed yet. The sequence runs on
            // across epochs (a new primary continues from the highest row it holds).
            for m in c.members.values() {
                let Some(md) = fresh(&m.agent).filter(|md| md.up) else { continue };
                if md.canary_seq > 0 && d.canary_seq > 0 {
                    let rows = d.canary_seq.saturating_sub(md.canary_seq);
                    self.canary_delay.with_label_values(&[n, &m.name]).set(rows as f64 * CANARY_INTERVAL_SECONDS);
                }
            }
            for r in d.replicas.iter().filter(|r| c.members.contains_key(&r.name)) {
                let l = [n, r.name.as_str()];
                if r.flush_lag_bytes >= 0 {
                    self.standby_lag_bytes.with_label_values(&[n, &r.name, "flush"]).set(r.flush_lag_bytes as f64);
                }
                if r.replay_lag_bytes >= 0 {
                    self.standby_lag_bytes.with_label_values(&[n, &r.name, "replay"]).set(r.replay_lag_bytes as f64);
                }
                if r.replay_lag_seconds >= 0.0 {
                    self.standby_lag_seconds.with_label_values(&l).set(r.replay_lag_seconds);
                }
                self.standby_sync.with_label_values(&l).set(triad_proto::replica::synchronous(r) as i64);
            }
        }
    }
}

/// The primary's agent writes a canary row this often (`agents/src/lib.rs`, `write_canary`).
const CANARY_INTERVAL_SECONDS: f64 = 0.1;

/// Every figure of the replicated state, on every controller (each applies the same log), and
/// the agents' reports `obs` on the leader. `counted`: the workflows already counted as ended.
pub fn export_state(
    ctx: &Ctx,
    counted: &mut HashSet<u64>,
    obs: &std::collections::HashMap<String, crate::brain::observations::AgentObservation>,
) {
    let g = ctx.state.read().expect("state lock poisoned");
    let state = &g.state;
    let m = &ctx.metrics;
    for w in state.workflows.values() {
        let Some((finished_ms, outcome)) = &w.finished else { continue };
        if !counted.insert(w.id) {
            continue;
        }
        let class = if outcome.starts_with("completed") {
            WORKFLOW_OUTCOMES[0]
        } else if outcome.starts_with("rolled back") {
            WORKFLOW_OUTCOMES[1]
        } else {
            WORKFLOW_OUTCOMES[2]
        };
        m.workflows.with_label_values(&[w.kind.as_str(), class]).inc();
        let secs = finished_ms.saturating_sub(w.started_ms) as f64 / 1000.0;
        m.workflow_seconds.with_label_values(&[w.kind.as_str()]).observe(secs);
    }
    let up = state.agents.values().filter(|a| a.up).count();
    m.agents_up.set(up as i64);
    m.agents_down.set((state.agents.len() - up) as i64);
    m.agents_connected.set(ctx.obs.connected_count() as i64);
    for c in state.clusters.values() {
        m.db_epoch.with_label_values(&[&c.name]).set(c.epoch as i64);
        m.db_paused.with_label_values(&[&c.name]).set(c.paused as i64);
        let blocked = c.epoch > 0 && !c.failover_blocked.is_empty();
        m.db_failover_blocked.with_label_values(&[&c.name]).set(blocked as i64);
        m.db_primary_lost.with_label_values(&[&c.name]).set(c.primary_lost() as i64);
        let bounds = ctx.cfg.clusters.iter().find(|cc| cc.name == c.name).map(|cc| &cc.lag_bounds);
        m.cluster.export_cluster(c, bounds);
        let running = c.workflow.and_then(|id| state.workflows.get(&id)).map(|w| w.kind);
        for kind in WorkflowKind::ALL {
            m.cluster.workflow_running.with_label_values(&[&c.name, kind.as_str()]).set((running == Some(kind)) as i64);
        }
    }
    export_cities(m, state);
    if ctx.is_leader() {
        let fresh_ms = ctx.cfg.agents.down_after_ms;
        m.cluster.export_observed(state, obs, crate::context::now_ms(), fresh_ms);
    } else {
        m.cluster.export_observed(state, &Default::default(), 0, 0);
    }
}

/// Voters per city, and whether each city's loss leaves a majority (DESIGN.md point 10).
fn export_cities(m: &super::Metrics, state: &State) {
    let by_city = state.voters_by_city();
    let total: usize = by_city.values().map(Vec::len).sum();
    m.raft_city_voters.reset();
    m.raft_survives_city_loss.reset();
    for (city, ids) in &by_city {
        m.raft_city_voters.with_label_values(&[city]).set(ids.len() as i64);
        let survives = total - ids.len() > total / 2;
        m.raft_survives_city_loss.with_label_values(&[city]).set(survives as i64);
    }
}

/// The asset register's gauges, recomputed (a group emptied disappears).
pub fn export_assets(ctx: &Ctx, state: &State) {
    use crate::state::assets::{AssetKind, Day};
    let m = &ctx.metrics;
    m.assets.reset();
    for g in crate::inventory::report::groups(&state.assets) {
        let site = if g.site.is_empty() { "none" } else { g.site.as_str() };
        m.assets.with_label_values(&[site, g.kind.as_str(), g.status.as_str()]).add(g.count as i64);
    }
    let licences = state.assets.assets.values().filter(|a| a.spec.kind == AssetKind::Licence);
    let (used, free) = licences
        .clone()
        .fold((0i64, 0i64), |(u, f), a| (u + a.seat_holders.len() as i64, f + i64::from(a.free_seats())));
    m.asset_seats.with_label_values(&["used"]).set(used);
    m.asset_seats.with_label_values(&["free"]).set(free);
    let today = Day::from_ms(crate::context::now_ms());
    let lead = i64::from(ctx.cfg.inventory.warn_days.iter().copied().max().unwrap_or(0));
    let expiring = licences.filter(|a| a.spec.expires.is_some_and(|d| today.days_until(d) <= lead)).count();
    m.asset_licences_expiring.set(expiring as i64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ControllerRecord, Site};

    fn state_with_voters(sites: &[(&str, &str)]) -> State {
        let mut s = State::default();
        for (i, (site, city)) in sites.iter().enumerate() {
            let site_rec = Site { name: site.to_string(), description: String::new(), city: city.to_string() };
            s.sites.insert(site.to_string(), site_rec);
            let id = i as u64 + 1;
            let rec = ControllerRecord {
                id,
                site: site.to_string(),
                grpc_addr: String::new(),
                http_addr: String::new(),
                voter: true,
            };
            s.controllers.insert(id, rec);
        }
        s
    }

    fn value(text: &str, series: &str) -> Option<String> {
        text.lines().find_map(|l| l.strip_prefix(series)).map(|v| v.trim().to_string())
    }

    #[test]
    fn a_city_holding_two_of_three_voters_leaves_no_quorum_when_lost() {
        let m = super::super::Metrics::new();
        export_cities(&m, &state_with_voters(&[("dc", "dhaka"), ("ndc", "dhaka"), ("dr", "sylhet")]));
        let text = m.render();
        assert_eq!(value(&text, "triad_raft_quorum_survives_city_loss{city=\"dhaka\"}").as_deref(), Some("0"));
        assert_eq!(value(&text, "triad_raft_quorum_survives_city_loss{city=\"sylhet\"}").as_deref(), Some("1"));
        assert_eq!(value(&text, "triad_raft_city_voters{city=\"dhaka\"}").as_deref(), Some("2"));
        // Two witnesses elsewhere: five voters, at most two per city, any city may go.
        let five = [("dc", "dhaka"), ("ndc", "dhaka"), ("dr", "sylhet"), ("w1", "ctg"), ("w2", "ctg")];
        export_cities(&m, &state_with_voters(&five));
        let text = m.render();
        assert_eq!(value(&text, "triad_raft_quorum_survives_city_loss{city=\"dhaka\"}").as_deref(), Some("1"));
    }

    #[test]
    fn roles_and_role_changes_come_from_the_state() {
        let m = super::super::Metrics::new();
        let mut c = DbCluster::for_test(&["dc", "ndc", "dr"], "agent-");
        m.cluster.export_cluster(&c, None);
        let text = m.render();
        let role = |member: &str, role: &str| {
            format!("triad_db_member_role{{cluster=\"customs\",member=\"{member}\",role=\"{role}\",site=\"{member}\"}}")
        };
        assert_eq!(value(&text, &role("dc", "primary")).as_deref(), Some("0"), "not adopted: no role");
        (c.epoch, c.primary) = (2, Some("ndc".into()));
        c.synchronous.insert("dc".into());
        c.role_changes.last_switchover_ms = 1_700_000_000_500;
        c.role_changes.last_write_outage_ms = Some(280);
        m.cluster.export_cluster(&c, Some(&Default::default()));
        let text = m.render();
        assert_eq!(value(&text, &role("ndc", "primary")).as_deref(), Some("1"));
        assert_eq!(value(&text, &role("dc", "synchronous")).as_deref(), Some("1"));
        assert_eq!(value(&text, &role("dc", "primary")).as_deref(), Some("0"));
        assert_eq!(value(&text, &role("dr", "asynchronous")).as_deref(), Some("1"));
        let at = "triad_db_last_role_change_timestamp_seconds{cluster=\"customs\",kind=\"switchover\"}";
        assert_eq!(value(&text, at).as_deref(), Some("1700000000.5"));
        assert_eq!(value(&text, "triad_db_last_write_outage_seconds{cluster=\"customs\"}").as_deref(), Some("0.28"));
        let bound = "triad_db_lag_bound_bytes{cluster=\"customs\",mode=\"synchronous\"}";
        assert_eq!(value(&text, bound).as_deref(), Some("16777216"));
    }
}
