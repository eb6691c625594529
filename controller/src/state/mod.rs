//! The replicated state: typed tables that change only by applying a [`Command`] from the Raft log.
//!
//! Nothing here does I/O or reads a clock: timestamps and ids come inside the [`Proposal`], chosen
//! by whoever proposed it, so that every controller applying the same log reaches the same state.
//! The audit history is produced here (as [`AuditEntry`] values returned from `apply`) but kept on
//! disk by the state-machine store, so that memory stays bounded however long the history grows.

pub mod alerts;
mod apply;
mod approvals;
pub mod assets;
mod break_glass;
mod cities;
mod command;
pub mod drills;
mod kinds;
pub mod links;
mod named;
mod rejection;
pub mod services;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

pub use approvals::{is_open, Approval, APPROVER_ROLES, ROLLBACK_WAITING_STEP};
pub use break_glass::{BreakGlassOrder, BreakGlassRefusal, EPOCH_JUMP};
pub use cities::{crowded, voters_by_city, CityLoss, MAX_VOTERS_PER_CITY};
pub use command::{Actor, Command, Proposal, Response, Seed};
pub use kinds::{ApprovalAction, ApprovalState, BreakGlassState, UnknownName, WorkflowKind};
pub use rejection::Rejection;

/// What a caller may do. Client roles come from the certificate's OU, overridden by the `users`
/// table; `agent` and `peer` come only from certificates; `system` is the controller itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    Admin,
    Noc,
    Soc,
    Auditor,
    Agent,
    Peer,
    System,
    /// A user an admin has disabled: refused everything.
    Disabled,
}

impl Role {
    /// Every role, for help texts.
    pub const NAMES: &'static str = "admin, noc, soc, auditor, agent, peer";

    /// Parses a role name as written in certificates and on the command line.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "admin" => Role::Admin,
            "noc" => Role::Noc,
            "soc" => Role::Soc,
            "auditor" => Role::Auditor,
            "agent" => Role::Agent,
            "peer" => Role::Peer,
            "system" => Role::System,
            "disabled" => Role::Disabled,
            _ => return None,
        })
    }

    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Noc => "noc",
            Role::Soc => "soc",
            Role::Auditor => "auditor",
            Role::Agent => "agent",
            Role::Peer => "peer",
            Role::System => "system",
            Role::Disabled => "disabled",
        }
    }

    /// Roles a human user may be given in the `users` table.
    pub fn is_user_role(self) -> bool {
        matches!(self, Role::Admin | Role::Noc | Role::Soc | Role::Auditor | Role::Disabled)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A site of the deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Site {
    pub name: String,
    pub description: String,
    /// The city it is in: sites of one city can be lost together (DESIGN.md point 10).
    pub city: String,
}

/// A controller as recorded in the state (Raft membership itself lives in openraft).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControllerRecord {
    pub id: u64,
    pub site: String,
    pub grpc_addr: String,
    pub http_addr: String,
    /// False while it is a learner catching up.
    pub voter: bool,
}

/// A host's static facts, summarised from `sysinfo` by its agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    pub os: String,
    pub kernel: String,
    pub cpus: u32,
    pub memory_total_bytes: u64,
    pub disk_total_bytes: u64,
    /// Its IP addresses (loopback left out).
    #[serde(default)]
    pub addresses: Vec<String>,
}

/// A registered agent. Its heartbeats are soft state on the controllers; only registration and
/// up/down changes are recorded here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// The certificate's common name.
    pub name: String,
    pub site: String,
    pub host: String,
    pub facts: HostFacts,
    pub up: bool,
    /// When `up` last changed (proposer's clock, ms since the Unix epoch).
    pub since_ms: u64,
    pub registered_ms: u64,
}

/// A database cluster member as configured (roles and epochs come with the database issue).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbMember {
    pub name: String,
    pub site: String,
    pub agent: String,
    /// How clients and standbys reach it (the driver's connect string; PostgreSQL: libpq
    /// keywords), as its agent reports it. Opaque: handed back to agents, never parsed here.
    #[serde(default)]
    pub endpoint: String,
    /// Its identity as a replication source in its driver's canonical form (PostgreSQL
    /// `host:port`, Oracle `DB_UNIQUE_NAME`), as its agent reports it: what a standby's
    /// `upstream_id` is compared with when the primary cannot be asked (DESIGN.md point 6).
    #[serde(default)]
    pub endpoint_id: String,
}

/// A database cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbCluster {
    pub name: String,
    pub members: BTreeMap<String, DbMember>,
    /// The cluster's epoch (DESIGN.md, safety point 1): bumped and committed by every role change
    /// before any agent is told to act on it. 0 until Triad adopts the running cluster.
    pub epoch: u64,
    /// The log index of the entry that set `epoch`: agents order commands by (epoch, index).
    pub epoch_index: u64,
    /// The member that is primary at `epoch`.
    pub primary: Option<String>,
    /// Members known to hold every acknowledged commit (DESIGN.md, point 5): only these may be
    /// promoted automatically.
    pub synchronous: BTreeSet<String>,
    /// Members whose vouch lets the primary keep writing when the controllers are unreachable
    /// (DESIGN.md, point 3); normally the synchronous standby.
    pub vouch: BTreeSet<String>,
    /// The synchronous standbys the cluster should have: kept when a standby is dropped from
    /// `synchronous` because it was lost, so that it is made synchronous again when it returns.
    pub want_synchronous: BTreeSet<String>,
    /// `strict`: when the synchronous standby is lost, commits wait for it. Otherwise (default)
    /// it is dropped and the primary runs asynchronously until it returns.
    pub strict: bool,
    /// Maintenance mode: no automatic role changes while set.
    pub paused: bool,
    /// The workflow (switchover, failover, rejoin) under way, if any: one at a time.
    pub workflow: Option<u64>,
    /// Why automatic failover would not happen now, as the leader last judged it (empty: it
    /// would). Shown in status, so that nobody learns it only when the primary is lost.
    #[serde(default)]
    pub failover_blocked: String,
    /// The next role change takes the epoch to at least this (break-glass: far above anything the
    /// lost sites could have reached, so that a member returning from them fences itself).
    #[serde(default)]
    pub epoch_floor: u64,
    /// When the primary last changed and what the change cost: for status, metrics and the
    /// dashboards' annotations.
    #[serde(default)]
    pub role_changes: RoleChanges,
}

/// A cluster's role changes as recorded (times are the proposers' clocks, ms since the Unix epoch;
/// 0: none yet).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleChanges {
    /// When the current primary became primary (adoption, or the last role change).
    pub primary_since_ms: u64,
    /// When a switchover, and when a failover, last changed the primary.
    pub last_switchover_ms: u64,
    pub last_failover_ms: u64,
    /// The write outage of the last role change as the canary measured it (None: not measured,
    /// or not yet).
    pub last_write_outage_ms: Option<u64>,
}

/// One recorded step of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowStep {
    pub name: String,
    pub at_ms: u64,
    pub note: String,
}

/// A long operation on a database cluster. Every step is committed before and after it runs, so
/// that a new leader can see how far it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workflow {
    pub id: u64,
    pub kind: WorkflowKind,
    pub cluster: String,
    pub from: String,
    pub to: String,
    /// Who asked (certificate name, or the controller).
    pub requested_by: String,
    pub started_ms: u64,
    pub steps: Vec<WorkflowStep>,
    /// When it ended and how (`completed`, `rolled back: ...`, `failed: ...`).
    pub finished: Option<(u64, String)>,
    /// The write outage of its role change, as the canary measured it.
    #[serde(default)]
    pub write_outage_ms: Option<u64>,
    /// When the new primary's first canary row was written (ms since the Unix epoch).
    #[serde(default)]
    pub writes_resumed_ms: Option<u64>,
}

impl DbCluster {
    /// A cluster as configured, not yet adopted.
    pub fn new(name: &str, members: BTreeMap<String, DbMember>) -> Self {
        DbCluster {
            name: name.to_string(),
            members,
            epoch: 0,
            epoch_index: 0,
            primary: None,
            synchronous: BTreeSet::new(),
            vouch: BTreeSet::new(),
            want_synchronous: BTreeSet::new(),
            strict: false,
            paused: false,
            workflow: None,
            failover_blocked: String::new(),
            epoch_floor: 0,
            role_changes: RoleChanges::default(),
        }
    }

    /// The primary is lost and automatic failover cannot replace it (DESIGN.md point 5: "it does
    /// not fail over, raises a critical alert and says why"): the recorded verdict says so.
    pub fn primary_lost(&self) -> bool {
        self.failover_blocked.starts_with(PRIMARY_LOST)
    }
}

/// How a failover verdict begins when the primary is lost and nothing can take over.
pub const PRIMARY_LOST: &str = "CRITICAL: the primary is lost";

#[cfg(test)]
impl DbCluster {
    /// A cluster `customs` for unit tests, its members named after their sites, each one's agent
    /// named `agent_prefix` + the member's name; not adopted.
    pub(crate) fn for_test(members: &[&str], agent_prefix: &str) -> DbCluster {
        let members = members
            .iter()
            .map(|m| {
                let site = m.to_string();
                let agent = format!("{agent_prefix}{m}");
                (
                    site.clone(),
                    DbMember { name: site.clone(), site, agent, endpoint: String::new(), endpoint_id: String::new() },
                )
            })
            .collect();
        DbCluster::new("customs", members)
    }
}

/// One line of the audit log: who did what, as what, from where, when, and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Dense, starting at 1, in log order.
    pub seq: u64,
    /// The Raft log index of the entry that carried it.
    pub log_index: u64,
    pub at_ms: u64,
    pub actor: String,
    pub role: Role,
    pub origin: String,
    /// What was asked and its outcome, e.g. `put user alice role=noc: ok`.
    pub action: String,
}

/// The whole replicated state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// True once the first leader seeded sites, controllers and clusters from its config.
    pub seeded: bool,
    pub sites: BTreeMap<String, Site>,
    pub controllers: BTreeMap<u64, ControllerRecord>,
    pub agents: BTreeMap<String, AgentRecord>,
    pub clusters: BTreeMap<String, DbCluster>,
    /// Role overrides for client identities (certificate common names).
    pub users: BTreeMap<String, Role>,
    /// The seq of the last audit entry written.
    pub audit_seq: u64,
    /// Workflows, by id (bounded: finished ones beyond the newest 1000 are dropped).
    pub workflows: BTreeMap<u64, Workflow>,
    pub last_workflow_id: u64,
    /// Operations waiting for (or carried out after) a second approver, by id (the newest 200).
    #[serde(default)]
    pub approvals: BTreeMap<u64, Approval>,
    #[serde(default)]
    pub last_approval_id: u64,
    /// Break-glass orders carried out (DESIGN.md point 10), by id.
    #[serde(default)]
    pub break_glass: BTreeMap<u64, BreakGlassOrder>,
    /// Controllers a break-glass order cut off: their Raft messages are refused until one is
    /// recorded again (`triadctl cluster add`, with a wiped store).
    #[serde(default)]
    pub cut_off: BTreeSet<u64>,
    /// The newest Raft term whose leader an operator confirmed after its quorum re-formed with a
    /// voter still silent (`brain/continuity.rs`): that leader's hold is lifted.
    #[serde(default)]
    pub quorum_confirmed_term: u64,
    /// Security alerts, their triage and silences.
    #[serde(default)]
    pub alerts: alerts::AlertBook,
    /// Infrastructure events and the incidents that group alerts with them.
    #[serde(default)]
    pub incidents: alerts::Incidents,
    /// The network links between the sites, with their state.
    #[serde(default)]
    pub links: links::Links,
    /// The IT asset register.
    #[serde(default)]
    pub assets: assets::AssetBook,
    /// The services that follow the database clusters, with their health.
    #[serde(default)]
    pub services: services::Services,
    /// The drill plans, by name.
    #[serde(default)]
    pub drill_plans: std::collections::BTreeMap<String, drills::DrillPlan>,
    /// Drill runs and their reports, by id (the newest [`drills::run::MAX_RUNS`]).
    #[serde(default)]
    pub drill_runs: BTreeMap<u64, drills::DrillRun>,
    #[serde(default)]
    pub last_drill_id: u64,
    /// The audit log's seq sent to the SIEM so far.
    #[serde(default)]
    pub siem_sent_seq: u64,
}

impl State {
    /// The role a client certificate's identity has: the `users` table wins over the certificate,
    /// so that an admin can demote or disable a person without reissuing certificates. Machine
    /// roles (`agent`, `peer`) are taken from the certificate only.
    pub fn effective_role(&self, name: &str, cert_role: Role) -> Role {
        if matches!(cert_role, Role::Agent | Role::Peer) {
            return cert_role;
        }
        self.users.get(name).copied().unwrap_or(cert_role)
    }
}
