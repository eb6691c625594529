//! Commands: the only way the replicated state changes. A [`Proposal`] wraps a command with who
//! asked and when, both fixed by the proposer so that applying it is deterministic.

use serde::{Deserialize, Serialize};

use super::{BreakGlassOrder, ControllerRecord, DbCluster, HostFacts, Role, Site};

/// Who asked for a change, as the edge that received the request authenticated them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Actor {
    /// Certificate common name, or `controller-N` for the controller's own decisions.
    pub name: String,
    pub role: Role,
    /// Peer address the request came from, or `brain` for the leader's own decisions.
    pub origin: String,
}

impl Actor {
    /// The controller itself, deciding on its own (liveness, seeding).
    pub fn system(controller_id: u64) -> Actor {
        Actor { name: format!("controller-{controller_id}"), role: Role::System, origin: "brain".into() }
    }
}

/// A command with its provenance: the unit written to the Raft log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// Proposer's wall clock, ms since the Unix epoch.
    pub at_ms: u64,
    pub actor: Actor,
    pub command: Command,
}

/// What the first leader writes from its configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seed {
    pub sites: Vec<Site>,
    pub controllers: Vec<ControllerRecord>,
    pub clusters: Vec<DbCluster>,
    /// The links between the sites (`[[links]]`).
    #[serde(default)]
    pub links: Vec<super::links::LinkSpec>,
    /// The services that follow the clusters (`[[services]]`).
    #[serde(default)]
    pub services: Vec<super::services::ServiceSpec>,
    /// The drill plans (`[[drills]]`).
    #[serde(default)]
    pub drills: Vec<super::drills::DrillPlan>,
}

/// Every change the state knows how to make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Initial sites, controllers and clusters; applied once, refused afterwards.
    Seed(Seed),
    /// An agent introduced itself (or its host facts changed); it is up from now.
    RegisterAgent { name: String, site: String, host: String, facts: HostFacts },
    /// The leader judged an agent up or down.
    SetAgentUp { name: String, up: bool, reason: String },
    /// A call refused at the edge because its caller's role lacks the right: changes nothing
    /// but the audit log (DESIGN.md, "Security": every mutating call is checked and recorded).
    RecordRefusal { what: String, why: String },
    /// Give a client identity a role (or `disabled`).
    PutUser { name: String, role: Role },
    /// Remove a client identity's override; its certificate's role applies again.
    DeleteUser { name: String },
    /// Record a site (e.g. a witness controller's); refused if it exists in another city.
    PutSite(Site),
    /// Record a controller (a learner until `SetControllerVoter`).
    PutController(ControllerRecord),
    /// A controller became a voter, or stopped being one.
    SetControllerVoter { id: u64, voter: bool },
    /// A controller left the cluster.
    DeleteController { id: u64 },
    /// Adopt a running database cluster: record its primary and synchronous standbys at epoch 1.
    /// Refused once the cluster has an epoch.
    AdoptCluster { cluster: String, primary: String, synchronous: Vec<String> },
    /// A member's agent reports a new endpoint (its connect string, opaque) or endpoint identity
    /// (the driver's canonical name of it as a replication source).
    SetMemberEndpoint { cluster: String, member: String, endpoint: String, endpoint_id: String },
    /// Maintenance mode on or off for a cluster. Turning it on turns automatic failover off, so a
    /// person does that through [`Command::RequestPause`] and a second person's approval; only
    /// resuming is taken directly.
    SetPaused { cluster: String, paused: bool, reason: String },
    /// Start a workflow on a cluster; refused while another runs, while paused, or before adoption.
    StartWorkflow { cluster: String, kind: super::WorkflowKind, from: String, to: String },
    /// Record a workflow step (started or finished).
    RecordStep { workflow: u64, name: String, note: String },
    /// The role change itself: epoch + 1 (or the cluster's epoch floor, after a break-glass),
    /// `primary` becomes primary. The synchronous set and the
    /// vouchers are emptied (removing members is recorded first, DESIGN.md point 5); they are
    /// recorded again once the new primary confirms a synchronous standby.
    SwitchPrimary { cluster: String, workflow: u64, primary: String },
    /// Record the synchronous set after the primary confirmed it (adding: reconfigure, confirm,
    /// record).
    SetSynchronous { cluster: String, members: Vec<String> },
    /// The vouch set while no member is synchronous (DESIGN.md point 3; issue 16, item 5): the
    /// standbys streaming from the primary, so that it keeps the failsafe after a failover that
    /// left it without a synchronous standby. Refused while a synchronous set is recorded (the
    /// vouch set is that set then).
    SetVouch { cluster: String, members: Vec<String> },
    /// A synchronous standby was lost (relaxed mode): record first that it no longer holds every
    /// commit, then the primary is reconfigured. It stays wanted, to be restored when it returns.
    DropSynchronous { cluster: String, member: String, reason: String },
    /// The leader's judgement of whether automatic failover could happen now (empty: it could),
    /// recorded when it changes.
    SetFailoverBlocked { cluster: String, reason: String },
    /// Ask for a manual failover of `cluster` to `to`; it waits for a second person's approval.
    RequestFailover {
        cluster: String,
        to: String,
        reason: String,
        accept_data_loss: bool,
        attested_dead: Vec<String>,
        ttl_ms: u64,
    },
    /// Ask to pause a cluster (maintenance mode, automatic failover off); a second person's
    /// approval makes it so.
    RequestPause { cluster: String, reason: String, ttl_ms: u64 },
    /// A second person approves request `id`.
    Approve { id: u64 },
    /// A request cancelled, claimed by the leader (`started`), or ended with its outcome.
    SetApprovalState { id: u64, state: super::ApprovalState },
    /// The one controller left carried out a break-glass order on its store and leads again:
    /// record it (cut the others off, raise the epoch floor, approve the failover it orders).
    RecordBreakGlass(BreakGlassOrder),
    /// End a workflow with its outcome.
    FinishWorkflow { workflow: u64, outcome: String },
    /// The write outage of a workflow's role change, as the canary measured it.
    RecordWriteOutage { workflow: u64, outage_ms: u64 },
    /// Define a service that follows a cluster, or change one (its recorded health stays).
    PutService(super::services::ServiceSpec),
    /// Remove a service.
    DeleteService { name: String },
    /// The leader judged a service's health from its agents' checks.
    SetServiceHealth { service: String, health: super::services::ServiceHealth, reason: String },
    /// A role change's step for a service or a balancer (`subject`) at `site`: recorded in
    /// workflow `workflow`; one that failed raises the subject's role-change alert, and the
    /// workflow can then only finish "completed with errors".
    RecordRecoveryStep {
        workflow: u64,
        phase: super::services::RecoveryPhase,
        subject: String,
        site: String,
        ok: bool,
        note: String,
    },
    /// A leader whose quorum re-formed after an absence asks every voter to acknowledge this
    /// entry before it grants a lease or changes a role (`brain/continuity.rs`). Changes nothing.
    QuorumCheck { term: u64 },
    /// An operator lifts the quorum hold of the leader at `term`: the voters still silent did not
    /// break the glass (`triadctl cluster confirm-quorum`).
    ConfirmQuorum { term: u64, reason: String },
    /// Alerts received from one configured source, parsed and normalised by the edge: each is
    /// deduplicated by fingerprint against what is recorded (`state/alerts`).
    IngestAlerts { source: String, events: Vec<super::alerts::IncomingAlert> },
    /// The alerts one controller's intake journal accepted with sequence numbers `first` to
    /// `last`, grouped by source. Applied at most once per journal: a batch whose `last` the
    /// state has already recorded for `journal` is a repeat (a retry, or a replay after a
    /// restart) and changes nothing.
    IngestJournaled { journal: u64, first: u64, last: u64, sources: Vec<super::alerts::SourceAlerts> },
    /// A triage action on one or more alerts; all or nothing.
    TriageAlerts { ids: Vec<u64>, action: super::alerts::TriageAction },
    /// Mute alerts that match every matcher between two times.
    PutSilence { matchers: Vec<super::alerts::Matcher>, starts_ms: u64, ends_ms: u64, reason: String },
    /// End a silence now.
    ExpireSilence { id: u64 },
    /// Record an alert source with the digest of its token, or give it a new token (its older
    /// ones stay valid `grace_ms` more). Admins only.
    PutIngestSource { name: String, kind: super::alerts::SourceKind, token_sha256: String, grace_ms: u64 },
    /// Remove an alert source: its tokens are refused from then on.
    DeleteIngestSource { name: String },
    /// The leader decided to notify `channel` of `subject` at escalation `level`: refused when
    /// that was decided already, so it is sent once whichever leader decides it.
    Notify { subject: super::alerts::Subject, channel: String, level: u32 },
    /// How a delivery attempt of notification `id` went.
    RecordDelivery { id: u64, outcome: super::alerts::Delivery },
    /// Move closed alerts out of memory to the on-disk history: those closed before
    /// `closed_before_ms`, and the oldest closed beyond `keep_at_most` (`state/alerts/archive.rs`).
    ArchiveAlerts { closed_before_ms: u64, keep_at_most: u64 },
    /// The audit log has been sent to the SIEM up to `seq` (`brain/siem.rs`). Bookkeeping, not
    /// a change anyone made: it is the one command that writes no audit entry, or each would
    /// be sent and recorded again without end.
    SiemSent { seq: u64 },
    /// Define a link between two sites, or change a recorded one's definition (its state stays).
    PutLink(super::links::LinkSpec),
    /// Remove a link.
    DeleteLink { name: String },
    /// The leader judged a link's state from its probes (`brain/links.rs`): recorded with why,
    /// raising or resolving the link's alert.
    SetLinkState { link: String, state: super::links::LinkState, reason: String },
    /// Record an asset, or change the named fields of a recorded one; the fields become the
    /// operator's (discovery leaves them alone). Roles admin and noc.
    PutAsset { spec: super::assets::AssetSpec, fields: std::collections::BTreeSet<super::assets::AssetField> },
    /// A CSV import's good rows, each recorded whole (its given fields the operator's); all
    /// refused if any one is.
    ImportAssets { rows: Vec<super::assets::AssetSpec> },
    /// Remove an asset from the register.
    DeleteAsset { tag: String },
    /// The leader records what an agent reported of its host: the host's asset follows it.
    DiscoverHost { agent: String, host: String, site: String, facts: HostFacts },
    /// A host takes (`hold`) or gives back a seat of a licence.
    SeatLicence { tag: String, host: String, hold: bool },
    /// An entry in an asset's issue log.
    AssetIssue { tag: String, action: super::assets::IssueAction },
    /// The leader raises a warning about an asset: once per kind, lead time and date.
    WarnAsset { tag: String, kind: super::assets::WarningKind, lead_days: u32, date: super::assets::Day },
    /// Several proposals committed as one log entry (group commit); each is applied and audited
    /// as if it had its own entry.
    Batch(Vec<Proposal>),
    // New variants go last: bincode writes a variant as its index, so one inserted before
    // others would make a log written by an older build decode as different commands.
    /// Define a drill plan, or change one.
    PutDrillPlan(super::drills::DrillPlan),
    /// Remove a drill plan.
    DeleteDrillPlan { name: String },
    /// What the canary measured of a workflow's role change: the write outage, and when the new
    /// primary's first write committed (ms since the Unix epoch, as the database recorded it).
    RecordCanaryMeasure { workflow: u64, outage_ms: Option<u64>, resumed_ms: Option<u64> },
    /// Start a run of drill plan `plan` on its pre-checks' verdicts (every one must pass); the
    /// cluster's primary now is where a roundtrip returns.
    StartDrill { plan: String, prechecks: Vec<super::drills::Check> },
    /// A drill run begins its next step.
    BeginDrillStep { drill: u64, kind: super::drills::DrillStepKind, note: String },
    /// A drill run's step under way ends.
    EndDrillStep { drill: u64, ok: bool, note: String },
    /// A move of a drill run, as measured.
    RecordDrillLeg { drill: u64, leg: super::drills::DrillLeg },
    /// Services' checks of a drill run.
    RecordDrillChecks { drill: u64, checks: Vec<super::drills::ServiceCheck> },
    /// Ask a drill run to stop (after the role change under way, if one is, finishes or rolls back).
    AbortDrill { drill: u64, reason: String },
    /// A drill run ends; the state judges it (`DrillRun::judge`) from what was recorded.
    FinishDrill { drill: u64, failure: Option<String>, anomalies: Vec<super::drills::Anomaly>, primary: String },
    /// A dr-test's isolated copy, as made and measured.
    RecordDrillCopy { drill: u64, copy: super::drills::DrCopy },
}

/// The outcome of applying one proposal.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Blank and membership entries.
    #[default]
    None,
    /// Applied; a short description of what changed.
    Ok(String),
    /// Refused by the state machine; nothing changed.
    Rejected(super::Rejection),
    /// One response per proposal of a [`Command::Batch`], in order.
    Batch(Vec<Response>),
}
