//! A simulated cluster for the brain's unit tests, after kube-rs's `Context::test()`: the real
//! brain on a controller that is its own single voter (`Ctx::test`: the real Raft log and state
//! machine on RocksDB), and beside it one simulated agent per member of `customs`. Each agent
//! opens a stream on the command bus, carries out the commands it is sent as `triad-agent` does
//! (epoch-checked, idempotent; `agent.rs`) and reports its member every tick as a heartbeat does.
//! Replication is instantaneous: a running standby whose upstream runs holds what it holds.
//!
//! The members speak as one of two drivers ([`Flavour`]): PostgreSQL's, or an Oracle Data
//! Guard driver's as docs/oracle-data-guard.md maps it (SCN positions, no byte lags, connect
//! descriptors and `DB_UNIQUE_NAME`s), so that the brain is shown to hold no PostgreSQL-only
//! assumption: the same workflows pass against both.
//!
//! A test sets faults on the members (an agent cut off, a server crashed, a start that fails, a
//! command refused) and waits, with a deadline, for what the brain should make of them. The
//! workflows run unchanged, with their real step timeouts, so a test lasts seconds, not minutes.

mod agent;
mod data_guard_tests;
mod drill_tests;
mod recovery_tests;
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use triad_proto::v1::{DbStatus, PositionUnit, ReplicaState, ReplicaStatus};

use crate::config::ControllerConfig;
use crate::context::{now_ms, Ctx};
use crate::state::DbCluster;

/// The simulated cluster's name, as in the example configuration.
pub(crate) const CLUSTER: &str = "customs";

/// How often the simulated servers replicate and the agents report.
const TICK: Duration = Duration::from_millis(50);

/// Whose words the simulated agents report in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Flavour {
    /// PostgreSQL streaming replication: byte positions (LSNs), libpq connect strings, lags in
    /// bytes, `pg_stat_replication`'s words; the primary waits for its synchronous standbys until
    /// reconfigured.
    #[default]
    Postgres,
    /// Oracle Data Guard as docs/oracle-data-guard.md maps it: positions are SCNs (compared, never
    /// subtracted into bytes), a member is reached by a connect descriptor no libpq parser reads
    /// and known by its `DB_UNIQUE_NAME`, lags are only in seconds, the display words are Data
    /// Guard's, and the primary (Maximum Availability) stops waiting for a standby by itself.
    DataGuard,
}

impl Flavour {
    /// Where member `name` listens for replication: the driver's connect string.
    pub(crate) fn endpoint(self, name: &str) -> String {
        match self {
            Flavour::Postgres => format!("host=sim-{name} port=5432"),
            Flavour::DataGuard => format!(
                "(DESCRIPTION=(ADDRESS=(PROTOCOL=TCP)(HOST=sim-{name})(PORT=1521))\
                 (CONNECT_DATA=(SERVICE_NAME=customs_{name}_DGMGRL)))"
            ),
        }
    }

    /// Member `name`'s identity as a replication source, in the driver's canonical form.
    fn endpoint_id(self, name: &str) -> String {
        match self {
            Flavour::Postgres => format!("sim-{name}:5432"),
            Flavour::DataGuard => format!("CUSTOMS_{}", name.to_uppercase()),
        }
    }

    /// Where positions start: an LSN of a young cluster, or an SCN of a database in service for
    /// years (beyond 2^32, so that a 32-bit slip would show).
    fn first_position(self) -> u64 {
        match self {
            Flavour::Postgres => 0x0100_0000,
            Flavour::DataGuard => 12_345_678_901,
        }
    }
}

/// What a simulated server runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SimRole {
    Primary,
    Standby,
}

/// One member: its server and what its agent knows.
#[derive(Debug, Clone)]
pub(crate) struct SimMember {
    pub name: String,
    pub agent: String,
    /// How the other members reach it for replication.
    pub endpoint: String,
    pub running: bool,
    pub role: SimRole,
    /// Its WAL position.
    pub lsn: u64,
    /// A standby's `primary_conninfo`.
    pub upstream: String,
    /// A standby's WAL receiver streams from a running upstream.
    pub streaming: bool,
    /// A primary's `synchronous_standby_names`.
    pub synchronous: Vec<String>,
    /// Data Guard: the primary stopped waiting for this standby by itself (Maximum
    /// Availability, `NetTimeout` passed), though it still streams.
    pub lapsed: bool,
    /// The highest epoch its agent persisted.
    pub epoch: u64,
    /// Its agent has a stream to the controller and reports.
    pub linked: bool,
    /// The newest canary row this member holds: (sequence, epoch, member that wrote it).
    pub canary: (u64, u64, String),
    /// Why its agent's fence stopped it, while it has not run since.
    pub fenced: Option<String>,
    /// When its agent last fenced it, by the agent's clock (a count will do).
    pub fenced_ms: u64,
    /// How many of its next restarts its fence stops again at once (a lease that cannot be
    /// renewed while the fault lasts).
    pub fenced_again: u32,
    /// Starting its server (restart, rejoin) fails, as with a broken configuration.
    pub cannot_start: bool,
    /// Its driver cannot rejoin it in place (Oracle: no flashback log reaches back far enough):
    /// an operator must re-create it as a standby.
    pub needs_recreation: bool,
    /// Command kinds its agent answers with a failure.
    pub refuses: HashSet<&'static str>,
    /// Every command kind its agent was sent, in order.
    pub received: Vec<&'static str>,
}

impl SimMember {
    fn new(flavour: Flavour, name: &str, role: SimRole, upstream: &str) -> Self {
        SimMember {
            name: name.into(),
            agent: format!("agent-{name}"),
            endpoint: flavour.endpoint(name),
            running: true,
            role,
            lsn: flavour.first_position(),
            upstream: upstream.into(),
            streaming: role == SimRole::Standby,
            synchronous: Vec::new(),
            lapsed: false,
            epoch: 0,
            linked: true,
            canary: (0, 0, String::new()),
            fenced: None,
            fenced_ms: 0,
            fenced_again: 0,
            cannot_start: false,
            needs_recreation: false,
            refuses: HashSet::new(),
            received: Vec::new(),
        }
    }

    /// True while it accepts writes.
    pub fn writable(&self) -> bool {
        self.running && self.role == SimRole::Primary
    }

    /// True while it is a running standby streaming from `primary`'s server.
    pub fn streams_from(&self, primary: &SimMember) -> bool {
        self.running && self.role == SimRole::Standby && self.streaming && self.upstream == primary.endpoint
    }
}

/// The three members' servers.
#[derive(Debug, Default)]
pub(crate) struct World {
    pub flavour: Flavour,
    pub members: BTreeMap<String, SimMember>,
    /// Every tick at which more than one member accepted writes, as the names of those members.
    pub split_brains: Vec<Vec<String>>,
    /// Every hook, check and balancer update the agents ran, in order, as `<action>@<member>
    /// e<epoch>` (see `agent::side_action` for the action's name).
    pub actions: Vec<String>,
    /// The actions the agents answer with a failure.
    pub failing_actions: HashSet<String>,
}

impl World {
    /// The demo's topology: `dc` primary with `ndc` synchronous, `dr` asynchronous.
    fn demo(flavour: Flavour) -> Self {
        let mut dc = SimMember::new(flavour, "dc", SimRole::Primary, "");
        dc.synchronous = vec!["ndc".into()];
        let members = [
            dc,
            SimMember::new(flavour, "ndc", SimRole::Standby, &flavour.endpoint("dc")),
            SimMember::new(flavour, "dr", SimRole::Standby, &flavour.endpoint("dc")),
        ];
        World { flavour, members: members.into_iter().map(|m| (m.name.clone(), m)).collect(), ..World::default() }
    }

    /// One tick of writes and replication: every running primary writes (its canary among
    /// them); a running standby takes what its upstream holds, when that runs and is not behind
    /// it (a standby ahead of its upstream has diverged and cannot stream from it). Twice, so
    /// that a cascaded standby keeps up within a tick.
    fn replicate(&mut self) {
        let writable: Vec<String> = self.members.values().filter(|m| m.writable()).map(|m| m.name.clone()).collect();
        if writable.len() > 1 {
            self.split_brains.push(writable);
        }
        for m in self.members.values_mut().filter(|m| m.running) {
            m.fenced = None;
        }
        for m in self.members.values_mut().filter(|m| m.writable()) {
            m.lsn += if self.flavour == Flavour::DataGuard { 37 } else { 0x100 };
            m.canary = (m.canary.0 + 1, m.epoch, m.name.clone());
        }
        for _ in 0..2 {
            let servers: Vec<SimMember> = self.members.values().cloned().collect();
            for m in self.members.values_mut().filter(|m| m.running && m.role == SimRole::Standby) {
                let up = servers.iter().find(|u| u.running && u.name != m.name && m.upstream == u.endpoint);
                m.streaming = up.is_some_and(|u| u.lsn >= m.lsn);
                if let Some(u) = up.filter(|_| m.streaming) {
                    (m.lsn, m.canary) = (u.lsn, u.canary.clone());
                }
            }
        }
    }

    /// What `name`'s agent reports in its heartbeat, in its flavour's words.
    fn report(&self, name: &str) -> DbStatus {
        let m = &self.members[name];
        let oracle = self.flavour == Flavour::DataGuard;
        let replicas = self
            .members
            .values()
            .filter(|r| m.writable() && r.streams_from(m))
            .map(|r| {
                let synchronous = m.synchronous.contains(&r.name) && !r.lapsed;
                let behind = m.lsn.saturating_sub(r.lsn) as i64;
                ReplicaStatus {
                    name: r.name.clone(),
                    state: if oracle { "VALID" } else { "streaming" }.into(),
                    sync_state: match (oracle, synchronous) {
                        (false, true) => "sync",
                        (false, false) => "async",
                        (true, true) => "SYNC",
                        (true, false) => "ASYNC",
                    }
                    .into(),
                    flush_lag_bytes: if oracle { -1 } else { behind },
                    replay_lag_bytes: if oracle { -1 } else { behind },
                    replay_lag_seconds: 0.0,
                    replica_state: ReplicaState::Streaming as i32,
                    synchronous,
                    caught_up: behind == 0,
                    flush_lag_seconds: 0.0,
                }
            })
            .collect();
        let role = match (m.running, m.role) {
            (false, _) => "down",
            (true, SimRole::Primary) => "primary",
            (true, SimRole::Standby) => "standby",
        };
        let upstream_of = |endpoint: &str| self.members.values().find(|u| u.endpoint == endpoint);
        let upstream_id = match upstream_of(&m.upstream) {
            Some(u) if m.role == SimRole::Standby => self.flavour.endpoint_id(&u.name),
            _ => String::new(),
        };
        DbStatus {
            cluster: CLUSTER.into(),
            member: m.name.clone(),
            driver: if oracle { "oracle" } else { "simulated" }.into(),
            up: m.running,
            role: role.into(),
            timeline: 1,
            position: m.lsn,
            received_position: m.lsn,
            applied_position: m.lsn,
            replay_delay_seconds: 0.0,
            replicas,
            observed_ms: now_ms(),
            agent_epoch: m.epoch,
            canary_seq: m.canary.0,
            canary_epoch: m.canary.1,
            canary_origin: m.canary.2.clone(),
            canary_age_seconds: if m.canary.0 > 0 { 0.0 } else { -1.0 },
            endpoint: m.endpoint.clone(),
            endpoint_id: self.flavour.endpoint_id(&m.name),
            upstream: if m.role == SimRole::Standby { m.upstream.clone() } else { String::new() },
            upstream_id,
            receiver_streaming: m.running && m.role == SimRole::Standby && m.streaming,
            stopped: !m.running,
            stopped_by_fence: !m.running && m.fenced.is_some(),
            fenced_reason: m.fenced.clone().unwrap_or_default(),
            fenced_ms: m.fenced_ms,
            final_position: if !m.running && m.role == SimRole::Primary { m.lsn } else { 0 },
            configured_standby: m.role == SimRole::Standby,
            lease_remaining_ms: -1,
            position_unit: if oracle { PositionUnit::Scn } else { PositionUnit::Bytes } as i32,
            replay_remaining_seconds: 0.0,
            sync_may_lapse: oracle,
            ..Default::default()
        }
    }
}

/// The simulated cluster and the brain leading it. Dropping it stops its tasks.
pub(crate) struct SimCluster {
    pub ctx: Arc<Ctx>,
    world: Arc<Mutex<World>>,
    tasks: Vec<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for SimCluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl SimCluster {
    /// The demo's topology with the brain leading it; `tune` adjusts the controller's
    /// configuration. Returns once the brain adopted the cluster at epoch 1 with `dc` primary.
    pub async fn start(tune: impl FnOnce(&mut ControllerConfig)) -> Self {
        Self::start_as(Flavour::Postgres, tune, None).await
    }

    /// [`SimCluster::start`] with the agents speaking as `flavour`'s driver.
    pub async fn start_flavoured(flavour: Flavour, tune: impl FnOnce(&mut ControllerConfig)) -> Self {
        Self::start_as(flavour, tune, None).await
    }

    /// [`SimCluster::start`] with `router` told of role changes.
    pub async fn start_routed(
        tune: impl FnOnce(&mut ControllerConfig),
        router: Option<Arc<dyn crate::brain::router::Router>>,
    ) -> Self {
        Self::start_as(Flavour::Postgres, tune, router).await
    }

    async fn start_as(
        flavour: Flavour,
        tune: impl FnOnce(&mut ControllerConfig),
        router: Option<Arc<dyn crate::brain::router::Router>>,
    ) -> Self {
        let (ctx, dir) = match router {
            None => Ctx::test(tune).await,
            router => Ctx::test_routed(tune, router).await,
        };
        let world = Arc::new(Mutex::new(World::demo(flavour)));
        let mut tasks = Vec::new();
        let members: Vec<String> = world.lock().expect("world lock").members.keys().cloned().collect();
        for name in members {
            tasks.push(tokio::spawn(agent::run(ctx.clone(), world.clone(), name)));
        }
        tasks.push(tokio::spawn(report(ctx.clone(), world.clone())));
        tasks.push(tokio::spawn(super::run(ctx.clone())));
        let sim = SimCluster { ctx, world, tasks, _dir: dir };
        sim.wait_until(
            "the cluster is adopted at epoch 1 with dc primary and ndc synchronous",
            Duration::from_secs(20),
            |c, _| c.epoch == 1 && c.primary.as_deref() == Some("dc") && names(&c.synchronous) == ["ndc"],
        )
        .await;
        sim
    }

    /// A copy of member `name`.
    pub fn member(&self, name: &str) -> SimMember {
        self.world.lock().expect("world lock").members[name].clone()
    }

    /// Changes member `name` (a fault, or a repair).
    pub fn set(&self, name: &str, change: impl FnOnce(&mut SimMember)) {
        change(self.world.lock().expect("world lock").members.get_mut(name).expect("a member of the simulation"))
    }

    /// The members that accept writes.
    pub fn writable(&self) -> Vec<String> {
        self.world
            .lock()
            .expect("world lock")
            .members
            .values()
            .filter(|m| m.writable())
            .map(|m| m.name.clone())
            .collect()
    }

    /// Panics if two members ever accepted writes at the same tick.
    pub fn assert_never_two_writable(&self) {
        let seen = self.world.lock().expect("world lock").split_brains.clone();
        assert!(seen.is_empty(), "two members accepted writes at once: {seen:?}");
    }

    /// The cluster as the replicated state has it.
    pub fn cluster(&self) -> DbCluster {
        self.seeded_cluster().expect("the state is seeded")
    }

    /// The cluster, once the brain has seeded the state.
    fn seeded_cluster(&self) -> Option<DbCluster> {
        self.ctx.state.read().expect("state lock").state.clusters.get(CLUSTER).cloned()
    }

    /// The outcomes of the cluster's finished workflows, oldest first, as `kind: outcome`.
    pub fn outcomes(&self) -> Vec<String> {
        let g = self.ctx.state.read().expect("state lock");
        g.state
            .workflows
            .values()
            .filter_map(|w| w.finished.as_ref().map(|(_, o)| format!("{}: {o}", w.kind.as_str())))
            .collect()
    }

    /// Waits up to `within` until `done` holds of the replicated cluster and the servers; panics
    /// with `what`, the cluster and the workflows' outcomes when it does not.
    pub async fn wait_until(&self, what: &str, within: Duration, done: impl Fn(&DbCluster, &World) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            let c = self.seeded_cluster();
            if c.as_ref().is_some_and(|c| done(c, &self.world.lock().expect("world lock"))) {
                return;
            }
            if Instant::now() >= deadline {
                // Formatted before panicking, so that the world's lock is not poisoned for the
                // simulated agents still running.
                let servers = format!("{:#?}", self.world.lock().expect("world lock").members);
                panic!(
                    "not within {within:?}: {what}\ncluster: {c:#?}\nworkflows: {:#?}\nservers: {servers}",
                    self.outcomes()
                );
            }
            tokio::time::sleep(TICK).await;
        }
    }
}

/// The names in a set of members, for comparisons.
pub(crate) fn names(set: &std::collections::BTreeSet<String>) -> Vec<&str> {
    set.iter().map(String::as_str).collect()
}

/// Replicates and reports every tick, for every member whose agent is linked. A linked agent
/// persists the epoch of its target state, as the real one does on the leader's word.
async fn report(ctx: Arc<Ctx>, world: Arc<Mutex<World>>) {
    let mut ticker = tokio::time::interval(TICK);
    loop {
        ticker.tick().await;
        let epoch = ctx.state.read().expect("state lock").state.clusters.get(CLUSTER).map_or(0, |c| c.epoch);
        let reports: Vec<(String, DbStatus)> = {
            let mut w = world.lock().expect("world lock");
            w.replicate();
            for m in w.members.values_mut().filter(|m| m.linked) {
                m.epoch = m.epoch.max(epoch);
            }
            w.members.values().filter(|m| m.linked).map(|m| (m.agent.clone(), w.report(&m.name))).collect()
        };
        for (agent, db) in reports {
            let hb = triad_proto::v1::AgentHeartbeat { db: Some(db), ..Default::default() };
            ctx.obs.heartbeat(&agent, now_ms(), hb);
        }
    }
}
