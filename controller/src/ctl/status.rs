//! `triadctl status`: controllers, agents and database clusters, as a table or as JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use triad_proto::v1 as pb;
use triad_proto::words::format_lsn;

use super::client::Client;
use crate::context::now_ms;
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
    pub wal_lsn: u64,
    /// Bytes behind the primary's current position (standbys; 0 on the primary).
    pub lag_bytes: Option<u64>,
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
        wal_lsn: obs.map(|o| o.wal_lsn).unwrap_or(0),
        lag_bytes: match (obs, primary) {
            (Some(o), Some(p)) if o.up => Some(p.wal_lsn.saturating_sub(o.wal_lsn)),
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

fn ago(ms: u64) -> String {
    if ms == 0 {
        return "never".into();
    }
    let d = now_ms().saturating_sub(ms);
    if d < 10_000 {
        format!("{:.1}s ago", d as f64 / 1000.0)
    } else if d < 120_000 {
        format!("{}s ago", d / 1000)
    } else {
        format!("{}m ago", d / 60_000)
    }
}

/// Renders the view as the table operators read.
pub fn render(v: &StatusView) -> String {
    let mut out = String::new();
    render_controllers(&mut out, v);
    render_agents(&mut out, v);
    render_clusters(&mut out, v);
    render_approvals(&mut out, v);
    render_users(&mut out, v);
    out
}

/// The controllers, the break-glass and quorum holds, what losing a city would do, the sites.
fn render_controllers(out: &mut String, v: &StatusView) {
    out.push_str(&format!(
        "CONTROLLERS (leader: {}; state from controller {}{})\n",
        if v.leader_id == 0 { "none".to_string() } else { v.leader_id.to_string() },
        v.answered_by,
        if v.stale { ", a follower: may lag slightly" } else { "" }
    ));
    out.push_str(&format!(
        "  {:<4} {:<6} {:<10} {:<22} {:<10} {:<12} {:<7} {:>6} {:>12} {:>12} {:>7}\n",
        "ID", "SITE", "CITY", "ADDRESS", "REACHABLE", "ROLE", "VOTER", "TERM", "LAST APPLIED", "COMMIT", "AGENTS"
    ));
    for c in &v.controllers {
        out.push_str(&format!(
            "  {:<4} {:<6} {:<10} {:<22} {:<10} {:<12} {:<7} {:>6} {:>12} {:>12} {:>7}\n",
            c.id,
            c.site,
            c.city,
            c.grpc_addr,
            if c.reachable { "yes" } else { "NO" },
            c.role,
            match (c.voter, c.witness) {
                (true, true) => "witness",
                (true, false) => "yes",
                (false, _) => "no",
            },
            c.term,
            c.last_applied,
            c.commit_index,
            c.connected_agents
        ));
    }
    for c in v.controllers.iter().filter(|c| !c.break_glass.is_empty()) {
        out.push_str(&format!("  BREAK-GLASS on controller {}: {}\n", c.id, c.break_glass));
    }
    for c in v.controllers.iter().filter(|c| !c.quorum_hold.is_empty()) {
        out.push_str(&format!("  !! QUORUM HELD by leader {}: {}\n", c.id, c.quorum_hold));
    }
    out.push_str(&format!("  city loss: {}\n", v.city_loss));
    if !v.sites.is_empty() {
        let sites: Vec<String> = v.sites.iter().map(|(n, d)| format!("{n} ({d})")).collect();
        out.push_str(&format!("\nSITES  {}\n", sites.join(", ")));
    }
}

/// The agents with their hosts.
fn render_agents(out: &mut String, v: &StatusView) {
    out.push_str("\nAGENTS\n");
    if v.agents.is_empty() {
        out.push_str("  (none registered yet)\n");
    } else {
        out.push_str(&format!(
            "  {:<16} {:<6} {:<20} {:<6} {:<12} {:<12} {}\n",
            "NAME", "SITE", "HOST", "STATE", "SINCE", "LAST SEEN", "HOST FACTS"
        ));
        for a in &v.agents {
            out.push_str(&format!(
                "  {:<16} {:<6} {:<20} {:<6} {:<12} {:<12} {}, {} cpus, {:.1} GiB\n",
                a.name,
                a.site,
                a.host,
                if a.up { "up" } else { "DOWN" },
                ago(a.since_ms),
                ago(a.last_seen_ms),
                a.os,
                a.cpus,
                a.memory_total_bytes as f64 / (1u64 << 30) as f64
            ));
        }
    }
}

/// Each database cluster: its epoch and sets, what blocks automatic failover, its members.
fn render_clusters(out: &mut String, v: &StatusView) {
    out.push_str(&format!(
        "\nDATABASE CLUSTERS (lease P {} ms, clock drift rho {}, margin m {} ms)\n",
        v.lease.period_ms, v.lease.clock_drift, v.lease.margin_ms
    ));
    if v.clusters.is_empty() {
        out.push_str("  (none configured)\n");
    }
    for (name, members) in &v.clusters {
        match v.cluster_state.get(name) {
            Some(c) if c.epoch > 0 => out.push_str(&format!(
                "  {name}  epoch {}  primary {}  synchronous [{}]  vouchers [{}]{}\n",
                c.epoch,
                c.primary,
                c.synchronous.join(", "),
                c.vouch.join(", "),
                if c.paused { "  PAUSED (maintenance)" } else { "" }
            )),
            Some(c) => out.push_str(&format!(
                "  {name}  not adopted yet (waiting to observe exactly one primary){}\n",
                if c.paused { "  PAUSED (maintenance)" } else { "" }
            )),
            None => out.push_str(&format!("  {name}\n")),
        }
        out.push_str(&format!(
            "    {:<8} {:<6} {:<10} {:<9} {:<6} {:>4} {:>14} {:>12} {:>10} {:>8} {:>7}  {}\n",
            "MEMBER",
            "SITE",
            "ROLE",
            "HEALTH",
            "SYNC",
            "TL",
            "WAL POSITION",
            "LAG BYTES",
            "DELAY",
            "CANARY",
            "EPOCH",
            "AGENT"
        ));
        if let Some(c) = v.cluster_state.get(name).filter(|c| c.epoch > 0) {
            if c.failover_blocked.is_empty() {
                out.push_str("  automatic failover: ready\n");
            } else if c.failover_blocked.starts_with(crate::state::PRIMARY_LOST) {
                out.push_str(&format!("  !! {}\n", c.failover_blocked));
            } else {
                out.push_str(&format!("  !! automatic failover blocked: {}\n", c.failover_blocked));
            }
            if c.vouch.is_empty() {
                out.push_str(
                    "  !! failsafe off: no standby streams from the primary, so none vouches for it; losing the \
                     controllers' quorum fences it\n",
                );
            }
        }
        if let Some(c) = v.cluster_state.get(name) {
            let lost: Vec<&String> = c.want_synchronous.iter().filter(|m| !c.synchronous.contains(m)).collect();
            if !lost.is_empty() {
                let why: Vec<String> = lost.iter().map(|m| lost_behind(v, members, c, m)).collect();
                out.push_str(&format!(
                    "  !! synchronous standby lost: {} ({})\n",
                    why.join(", "),
                    if c.strict {
                        "strict: commits wait for it"
                    } else {
                        "relaxed: the primary commits asynchronously until it returns"
                    }
                ));
            }
        }
        render_cluster_links(out, v, name);
        for m in members {
            render_member(out, m);
        }
    }
}

/// The links carrying `cluster`'s replication, next to it: one line each, loud when not up.
fn render_cluster_links(out: &mut String, v: &StatusView, cluster: &str) {
    if !v.links_error.is_empty() {
        out.push_str(&format!("  links: could not be read ({})\n", v.links_error));
    }
    for l in v.links.iter().filter(|l| l.carries.iter().any(|c| c == cluster)) {
        let line = format!("link {} ({} {}–{}) {} since {}", l.name, l.kind, l.a, l.b, l.state, l.since);
        if l.state == "up" {
            out.push_str(&format!("  {line}\n"));
        } else {
            out.push_str(&format!("  !! {line}: {}; no switchover across it until it is up\n", l.reason));
        }
    }
}

/// A lost synchronous standby, with the link that explains it when one does.
fn lost_behind(v: &StatusView, members: &[MemberView], c: &ClusterView, lost: &str) -> String {
    let site = |m: &str| members.iter().find(|x| x.name == m).map(|x| x.site.clone()).unwrap_or_default();
    let (from, to) = (site(&c.primary), site(lost));
    let joins = |l: &&super::links::LinkLine| (l.a == from && l.b == to) || (l.a == to && l.b == from);
    match v.links.iter().filter(joins).find(|l| l.state != "up") {
        Some(l) => format!("{lost}, behind link {} which is {}", l.name, l.state),
        None => lost.to_string(),
    }
}

/// One member's line, and what is wrong with it or guards it.
fn render_member(out: &mut String, m: &MemberView) {
    let lag = m.lag_bytes.map(|l| l.to_string()).unwrap_or_else(|| "-".into());
    let delay = if m.replay_delay_seconds < 0.0 { "-".to_string() } else { format!("{:.1}s", m.replay_delay_seconds) };
    let health = if m.healthy {
        "ok"
    } else if m.role == "unknown" {
        "unknown"
    } else {
        "DOWN"
    };
    let canary = if m.canary_age_seconds < 0.0 { "-".to_string() } else { format!("{:.2}s", m.canary_age_seconds) };
    let epoch = match m.agent_epoch {
        Some(e) => e.to_string(),
        None if m.role == "unknown" => "-".to_string(),
        None => "FENCED".to_string(),
    };
    out.push_str(&format!(
        "    {:<8} {:<6} {:<10} {:<9} {:<6} {:>4} {:>14} {:>12} {:>10} {:>8} {:>7}  {} ({})\n",
        m.name,
        m.site,
        m.role,
        health,
        if m.sync_state.is_empty() { "-" } else { m.sync_state.as_str() },
        m.timeline,
        format_lsn(m.wal_lsn),
        lag,
        delay,
        canary,
        epoch,
        m.agent,
        if m.agent_up { "up" } else { "down" }
    ));
    if !m.error.is_empty() {
        out.push_str(&format!("      {}: {}\n", m.name, m.error));
    }
    if m.role == "primary" {
        let lease = if m.lease_remaining_ms < 0 {
            "NO LEASE".to_string()
        } else {
            format!("{:.1}s left", m.lease_remaining_ms as f64 / 1000.0)
        };
        let lease = if m.vouched_by.is_empty() {
            lease
        } else {
            format!("{lease} (FAILSAFE: vouched by {}, the controllers do not renew it)", m.vouched_by.join(", "))
        };
        out.push_str(&format!("      {}: lease {lease}; watchdog {}\n", m.name, m.watchdog));
    }
    if m.fenced_ms > 0 {
        out.push_str(&format!("      {}: FENCED {}: {}\n", m.name, ago(m.fenced_ms), m.fenced_reason));
    }
}

/// The requests a second person may approve.
fn render_approvals(out: &mut String, v: &StatusView) {
    let now = crate::context::now_ms();
    let open: Vec<&ApprovalView> = v
        .approvals
        .iter()
        .filter(|a| matches!(a.state.as_str(), "approved" | "started") || (a.state == "pending" && now < a.expires_ms))
        .collect();
    if !open.is_empty() {
        out.push_str("\nREQUESTS TO APPROVE (a second person approves: triadctl approve ID)\n");
        for a in open {
            if a.action == "pause" {
                out.push_str(&format!(
                    "  {}  pause {} (automatic failover off): requested by {} {}: \"{}\"; pending, lapses in {} s\n",
                    a.id,
                    a.cluster,
                    a.requested_by,
                    ago(a.requested_ms),
                    a.reason,
                    a.expires_ms.saturating_sub(now) / 1000
                ));
                continue;
            }
            let loss = if a.accept_data_loss { ", ACCEPTS DATA LOSS" } else { "" };
            let dead = if a.attested_dead.is_empty() {
                String::new()
            } else {
                format!(", attests dead: {}", a.attested_dead.join(", "))
            };
            let when = if a.state == "pending" {
                format!("pending, lapses in {} s", a.expires_ms.saturating_sub(now) / 1000)
            } else {
                format!("{} (approved by {})", a.state, a.approved_by)
            };
            out.push_str(&format!(
                "  {}  failover {} to {}{loss}{dead}: requested by {} {}: \"{}\"; {when}\n",
                a.id,
                a.cluster,
                a.to,
                a.requested_by,
                ago(a.requested_ms),
                a.reason
            ));
        }
    }
}

/// Role overrides.
fn render_users(out: &mut String, v: &StatusView) {
    if !v.users.is_empty() {
        out.push_str("\nUSERS (role overrides)\n");
        for (name, role) in &v.users {
            out.push_str(&format!("  {name:<16} {role}\n"));
        }
    }
}
