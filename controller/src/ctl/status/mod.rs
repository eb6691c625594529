//! `triadctl status`: controllers, agents and database clusters, as a table or as JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use triad_proto::replica;
use triad_proto::v1 as pb;

use super::client::Client;
use crate::error::Result;
use crate::state::{voters_by_city, CityLoss};

/// One controller, as it answered for itself (or did not).
#[derive(Debug, Clone, Serialize)]
pub struct ControllerView {
    pub id: u64,
    pub site: String,
    /// The site's city (DESIGN.md point 10).
    pub city: String,
    /// True when no database member runs at its site: it only votes.
    pub witness: bool,
    pub grpc_addr: String,
    pub voter: bool,
    pub reachable: bool,
    /// `leader`, `follower`, `candidate`, `learner`, or `unreachable`.
    pub role: String,
    pub term: u64,
    pub last_log_index: u64,
    pub last_applied: u64,
    pub commit_index: u64,
    pub leader_id: u64,
    pub connected_agents: u32,
    /// The break-glass order on this controller's disk (empty: none).
    pub break_glass: String,
    /// Why this leader grants no lease and changes no role (empty: it does not hold).
    pub quorum_hold: String,
}

/// One agent.
#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    pub name: String,
    pub site: String,
    pub host: String,
    pub up: bool,
    pub since_ms: u64,
    pub last_seen_ms: u64,
    pub os: String,
    pub cpus: u32,
    pub memory_total_bytes: u64,
}

/// One database cluster member (roles and epochs arrive with the database work).
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub name: String,
    pub site: String,
    pub agent: String,
    pub agent_up: bool,
    /// As its agent last observed it (soft state): `primary`, `standby`, `down`, or `unknown`
    /// when no fresh observation reached the answering controller.
    pub role: String,
    pub healthy: bool,
    pub timeline: u32,
    /// Its position (primary: current; standby: received or replayed), comparable within a
    /// lineage; the unit is its driver's.
    pub position: u64,
    /// [`MemberView::position`] as its database writes it (`16/B374D848`, `SCN 12345678901`).
    pub written_position: String,
    /// Bytes behind the primary's current position (standbys; 0 on the primary); `None` when
    /// unknown, or when the driver's positions are not bytes.
    pub lag_bytes: Option<u64>,
    /// Standby: seconds its receipt trails the primary, as the primary reports it; `None` unknown.
    pub lag_seconds: Option<f64>,
    /// Standby: seconds since the last replayed transaction was committed (-1 unknown).
    pub replay_delay_seconds: f64,
    /// As the primary reports this standby: `sync`, `async`, `potential`...
    pub sync_state: String,
    pub driver: String,
    pub error: String,
    /// The epoch the member's agent has persisted; `None` when its epoch file is unreadable
    /// (the agent is fenced).
    pub agent_epoch: Option<u64>,
    /// The canary as read on this member: sequence and age in seconds (-1: none read).
    pub canary_seq: u64,
    pub canary_age_seconds: f64,
    /// The agent's lease on this member: milliseconds left (-1: none held).
    pub lease_remaining_ms: i64,
    /// The members that vouch for it while the controllers cannot renew its lease (failsafe,
    /// DESIGN.md point 3); empty when the controllers renew it.
    pub vouched_by: Vec<String>,
    /// Why and when (ms since the Unix epoch) its agent last fenced it; empty/0: never.
    pub fenced_reason: String,
    pub fenced_ms: u64,
    /// `available`, `unguarded` or `off`.
    pub watchdog: String,
}

/// A database cluster's committed topology.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    /// 0 until Triad adopts the running cluster.
    pub epoch: u64,
    pub primary: String,
    pub synchronous: Vec<String>,
    pub vouch: Vec<String>,
    pub paused: bool,
    /// The synchronous standbys it should have; one missing from `synchronous` was lost.
    pub want_synchronous: Vec<String>,
    pub strict: bool,
    /// Why automatic failover would not happen now (empty: it would).
    pub failover_blocked: String,
}

/// The lease timing the controllers enforce.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LeaseView {
    pub period_ms: u64,
    pub clock_drift: f64,
    pub margin_ms: u64,
}

/// The whole picture.
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    pub answered_by: u64,
    pub stale: bool,
    pub leader_id: u64,
    pub controllers: Vec<ControllerView>,
    pub agents: Vec<AgentView>,
    pub clusters: BTreeMap<String, Vec<MemberView>>,
    /// Each cluster's committed epoch, primary, synchronous set and maintenance mode.
    pub cluster_state: BTreeMap<String, ClusterView>,
    /// Role overrides of the `users` table.
    pub users: BTreeMap<String, String>,
    /// Site name → description.
    pub sites: BTreeMap<String, String>,
    pub lease: LeaseView,
    /// Manual failover requests, newest last.
    pub approvals: Vec<ApprovalView>,
    /// Whether losing any one city leaves the controllers a quorum (DESIGN.md point 10).
    pub city_loss: String,
    /// The links between the sites (`triadctl links` shows more of each).
    pub links: Vec<super::links::LinkLine>,
    /// Why the links could not be read, when they could not.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub links_error: String,
    /// The services that follow the clusters (`triadctl services` shows more of each).
    pub services: Vec<super::services::ServiceLine>,
    /// Why the services could not be read, when they could not.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub services_error: String,
}

/// A manual failover request and where it stands.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalView {
    pub id: u64,
    /// `failover` or `pause`.
    pub action: String,
    pub cluster: String,
    pub to: String,
    pub reason: String,
    pub accept_data_loss: bool,
    pub attested_dead: Vec<String>,
    pub requested_by: String,
    pub requested_ms: u64,
    pub expires_ms: u64,
    pub approved_by: String,
    /// `pending`, `approved`, `started`, `cancelled`, `expired`, or the outcome.
    pub state: String,
}

/// Gathers status from the controllers.
pub async fn gather(client: &Client) -> Result<StatusView> {
    let mut any = client.reader().await?;
    let mut state = any.state(pb::StateRequest {}).await?.into_inner();
    let mut addrs: BTreeMap<String, Option<&pb::ControllerRecord>> =
        client.cfg.controllers.iter().map(|a| (a.clone(), None)).collect();
    for c in &state.controllers {
        addrs.insert(c.grpc_addr.clone(), Some(c));
    }
    let mut controllers = Vec::new();
    for (addr, rec) in addrs {
        let answer = async {
            let mut c = client.control(&addr).await?;
            Ok::<_, crate::Error>(c.node_status(pb::NodeStatusRequest {}).await?.into_inner())
        };
        let node = tokio::time::timeout(Duration::from_secs(3), answer).await.ok().and_then(|r| r.ok());
        controllers.push(match node {
            Some(n) => ControllerView::answered(addr, n),
            None => ControllerView::unreachable(addr, rec),
        });
    }
    controllers.sort_by_key(|c| (c.id == 0, c.id));
    // The leader's state is the one that counts (and only it has every agent's reports); a
    // controller that knows no leader may be one a break-glass order cut off, with an old state.
    if let Some(leader) = controllers.iter().find(|c| c.role == "leader" && c.id != state.answered_by) {
        let mut c = client.control(&leader.grpc_addr).await?;
        state = c.state(pb::StateRequest {}).await?.into_inner();
    }
    let city_of = |site: &str| -> String {
        let recorded = state.sites.iter().find(|s| s.name == site).map(|s| s.city.clone()).unwrap_or_default();
        if recorded.is_empty() {
            site.to_string()
        } else {
            recorded
        }
    };
    let db_sites: std::collections::BTreeSet<&str> =
        state.clusters.iter().flat_map(|c| c.members.iter().map(|m| m.site.as_str())).collect();
    for c in &mut controllers {
        c.city = city_of(&c.site);
        c.witness = !db_sites.contains(c.site.as_str());
    }
    let city_loss = CityLoss::judge(&voters_by_city(
        state.controllers.iter().filter(|c| c.voter).map(|c| (c.id, city_of(&c.site))),
    ))
    .describe();
    let leader_id = controllers.iter().find(|c| c.role == "leader").map(|c| c.id).unwrap_or(0);
    let (links, links_error) = match super::links::list(client).await {
        Ok((l, _)) => (l, String::new()),
        Err(e) => (Vec::new(), e.to_string()),
    };
    let (services, services_error) = match super::services::list(client).await {
        Ok((s, _)) => (s, String::new()),
        Err(e) => (Vec::new(), e.to_string()),
    };
    let up: BTreeMap<&str, bool> = state.agents.iter().map(|a| (a.name.as_str(), a.up)).collect();
    let clusters = state
        .clusters
        .iter()
        .map(|c| {
            let members = c
                .members
                .iter()
                .map(|m| member_view(&state.db, c, m, up.get(m.agent.as_str()).copied().unwrap_or(false)))
                .collect();
            (c.name.clone(), members)
        })
        .collect();
    Ok(StatusView {
        answered_by: state.answered_by,
        stale: state.stale,
        leader_id,
        controllers,
        city_loss,
        agents: state.agents.iter().map(AgentView::from).collect(),
        clusters,
        cluster_state: state.clusters.iter().map(|c| (c.name.clone(), ClusterView::from(c))).collect(),
        sites: state.sites.iter().map(|x| (x.name.clone(), x.description.clone())).collect(),
        users: state.users.iter().map(|u| (u.name.clone(), u.role.clone())).collect(),
        lease: state
            .lease
            .map(|l| LeaseView { period_ms: l.period_ms, clock_drift: l.clock_drift, margin_ms: l.margin_ms })
            .unwrap_or_default(),
        approvals: state.approvals.iter().map(ApprovalView::from).collect(),
        links,
        links_error,
        services,
        services_error,
    })
}

impl ControllerView {
    /// A controller that answered `NodeStatus` at `addr`.
    fn answered(grpc_addr: String, n: pb::NodeStatusReply) -> Self {
        ControllerView {
            id: n.id,
            site: n.site,
            city: String::new(),
            witness: false,
            grpc_addr,
            voter: n.voters.contains(&n.id),
            reachable: true,
            role: n.raft_role,
            term: n.term,
            last_log_index: n.last_log_index,
            last_applied: n.last_applied,
            commit_index: n.commit_index,
            leader_id: n.leader_id,
            connected_agents: n.connected_agents,
            break_glass: n.break_glass,
            quorum_hold: n.quorum_hold,
        }
    }

    /// A controller at `addr` that did not answer, as the state records it (if it does).
    fn unreachable(grpc_addr: String, rec: Option<&pb::ControllerRecord>) -> Self {
        ControllerView {
            id: rec.map(|r| r.id).unwrap_or(0),
            site: rec.map(|r| r.site.clone()).unwrap_or_default(),
            city: String::new(),
            witness: false,
            grpc_addr,
            voter: rec.map(|r| r.voter).unwrap_or(false),
            reachable: false,
            role: "unreachable".into(),
            term: 0,
            last_log_index: 0,
            last_applied: 0,
            commit_index: 0,
            leader_id: 0,
            connected_agents: 0,
            break_glass: String::new(),
            quorum_hold: String::new(),
        }
    }
}

/// Member `m` of cluster `c` as the agents' reports `db` show it.
fn member_view(db: &[pb::DbStatus], c: &pb::DbClusterRecord, m: &pb::DbMemberRecord, agent_up: bool) -> MemberView {
    let obs = db.iter().find(|d| d.cluster == c.name && d.member == m.name);
    let primary = db.iter().find(|d| d.cluster == c.name && d.role == "primary");
    let replica = primary.and_then(|p| p.replicas.iter().find(|r| r.name == m.name));
    MemberView {
        name: m.name.clone(),
        site: m.site.clone(),
        agent: m.agent.clone(),
        agent_up,
        role: obs.map(|o| o.role.clone()).unwrap_or_else(|| "unknown".into()),
        healthy: obs.is_some_and(|o| o.up && o.error.is_empty()),
        timeline: obs.map(|o| o.timeline).unwrap_or(0),
        position: obs.map(|o| o.position).unwrap_or(0),
        written_position: obs.map(|o| replica::format_position_of(o, o.position)).unwrap_or_default(),
        lag_bytes: match (obs, primary) {
            (Some(o), Some(p)) if o.up && replica::positions_are_bytes(o) && replica::positions_are_bytes(p) => {
                Some(p.position.saturating_sub(o.position))
            }
            _ => None,
        },
        lag_seconds: match (obs, replica) {
            (Some(o), _) if o.up && o.role == "primary" => Some(0.0),
            (Some(o), Some(r)) if o.up && r.flush_lag_seconds >= 0.0 => Some(r.flush_lag_seconds),
            (Some(o), Some(r)) if o.up && replica::caught_up(r) => Some(0.0),
            _ => None,
        },
        replay_delay_seconds: obs.map(|o| o.replay_delay_seconds).unwrap_or(-1.0),
        sync_state: replica.map(|r| r.sync_state.clone()).unwrap_or_default(),
        driver: obs.map(|o| o.driver.clone()).unwrap_or_default(),
        error: obs.map(|o| o.error.clone()).unwrap_or_default(),
        agent_epoch: obs.filter(|o| !o.epoch_unknown).map(|o| o.agent_epoch),
        canary_seq: obs.map(|o| o.canary_seq).unwrap_or(0),
        canary_age_seconds: obs.map(|o| o.canary_age_seconds).unwrap_or(-1.0),
        lease_remaining_ms: obs.map(|o| o.lease_remaining_ms).unwrap_or(-1),
        vouched_by: obs.filter(|o| o.lease_failsafe).map(|o| o.vouched_by.clone()).unwrap_or_default(),
        fenced_reason: obs.map(|o| o.fenced_reason.clone()).unwrap_or_default(),
        fenced_ms: obs.map(|o| o.fenced_ms).unwrap_or(0),
        watchdog: obs.map(|o| o.watchdog.clone()).unwrap_or_default(),
    }
}

impl From<&pb::AgentRecord> for AgentView {
    fn from(a: &pb::AgentRecord) -> Self {
        let f = a.facts.clone().unwrap_or_default();
        AgentView {
            name: a.name.clone(),
            site: a.site.clone(),
            host: a.host.clone(),
            up: a.up,
            since_ms: a.since_ms,
            last_seen_ms: a.last_seen_ms,
            os: f.os,
            cpus: f.cpus,
            memory_total_bytes: f.memory_total_bytes,
        }
    }
}

impl From<&pb::DbClusterRecord> for ClusterView {
    fn from(c: &pb::DbClusterRecord) -> Self {
        ClusterView {
            epoch: c.epoch,
            primary: c.primary.clone(),
            synchronous: c.synchronous.clone(),
            vouch: c.vouch.clone(),
            paused: c.paused,
            want_synchronous: c.want_synchronous.clone(),
            strict: c.strict,
            failover_blocked: c.failover_blocked.clone(),
        }
    }
}

impl From<&pb::ApprovalRecord> for ApprovalView {
    fn from(a: &pb::ApprovalRecord) -> Self {
        ApprovalView {
            id: a.id,
            action: a.action.clone(),
            cluster: a.cluster.clone(),
            to: a.to.clone(),
            reason: a.reason.clone(),
            accept_data_loss: a.accept_data_loss,
            attested_dead: a.attested_dead.clone(),
            requested_by: a.requested_by.clone(),
            requested_ms: a.requested_ms,
            expires_ms: a.expires_ms,
            approved_by: a.approved_by.clone(),
            state: a.state.clone(),
        }
    }
}

mod render;

pub use render::render;
