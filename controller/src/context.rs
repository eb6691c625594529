//! The running controller's shared parts, handed to every edge and to the brain.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::ServerState;
use rocksdb::DB;

use crate::brain::{CommandBus, Leases, Observations};
use crate::config::ControllerConfig;
use crate::metrics::Metrics;
use crate::raft::{PeerNetwork, Proposer, Raft, SharedState};
use crate::state::{Actor, Command, Proposal};

/// Everything a request handler or the brain needs.
pub struct Ctx {
    pub id: u64,
    pub cfg: ControllerConfig,
    pub raft: Raft,
    /// The applied state (read side).
    pub state: SharedState,
    /// The database, for reads of on-disk history (audit).
    pub db: Arc<DB>,
    /// The write side: every change goes through here into the log.
    pub proposer: Proposer,
    pub net: PeerNetwork,
    /// Soft state: what agents reported to this controller.
    pub obs: Observations,
    /// Commands to agents and their results (used on the leader).
    pub bus: CommandBus,
    /// Where applications find the primary besides the balancers (Kubernetes), told by the
    /// recovery plan of every role change; `None` when none is configured.
    pub router: Option<Arc<dyn crate::brain::router::Router>>,
    /// Clusters whose workflow a task on this controller is running, so recovery leaves them alone.
    pub running: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The leases this controller granted while leading (soft state).
    pub leases: Leases,
    pub metrics: Arc<Metrics>,
    /// Set to ask the process to stop and run again (an approved break-glass order).
    pub restart: tokio::sync::watch::Sender<bool>,
    /// Since when this controller has known no leader (`None` while it knows one).
    pub leaderless_since: std::sync::Mutex<Option<std::time::Instant>>,
    /// The budget of refused calls recorded in the audit log (`api/auth.rs`).
    pub refusals: crate::api::auth::RefusalAudit,
    /// Whether this leader's quorum is trusted to grant leases and change roles
    /// (`brain/continuity.rs`).
    pub continuity: crate::brain::continuity::Continuity,
}

/// Wall-clock milliseconds since the Unix epoch, for timestamps carried in proposals.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Ctx {
    /// Wraps `command` with its author and the current time.
    pub fn proposal(&self, actor: Actor, command: Command) -> Proposal {
        Proposal { at_ms: now_ms(), actor, command }
    }

    /// True while this controller is the Raft leader.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// The leader this controller knows of: its id and gRPC address.
    pub fn leader(&self) -> (Option<u64>, Option<String>) {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader;
        let addr =
            id.and_then(|id| m.membership_config.nodes().find(|(n, _)| **n == id).map(|(_, node)| node.addr.clone()));
        (id, addr)
    }
}

#[cfg(test)]
impl Ctx {
    /// A controller for unit tests, after kube-rs's `Context::test()`: the deployment of
    /// `deploy/controller.example.toml` (sites `dc`, `ndc`, `dr`; cluster `customs`; no links) with this
    /// controller as its only voter, so that it leads at once. Its Raft log and state machine are
    /// the real ones, on RocksDB in a temporary directory (kept alive by the returned guard);
    /// nothing listens on the network. `tune` adjusts the configuration first. The brain is not
    /// started: `brain::sim::SimCluster` starts it beside simulated agents.
    pub(crate) async fn test(tune: impl FnOnce(&mut ControllerConfig)) -> (std::sync::Arc<Ctx>, tempfile::TempDir) {
        Ctx::test_routed(tune, None).await
    }

    /// [`Ctx::test`] with `router` told of role changes (a fake, in the brain's tests).
    pub(crate) async fn test_routed(
        tune: impl FnOnce(&mut ControllerConfig),
        router: Option<Arc<dyn crate::brain::router::Router>>,
    ) -> (std::sync::Arc<Ctx>, tempfile::TempDir) {
        use std::collections::BTreeMap;
        use std::time::Duration;

        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut cfg: ControllerConfig =
            toml::from_str(include_str!("../../deploy/controller.example.toml")).expect("the example configuration");
        cfg.data_dir = dir.path().to_path_buf();
        // Never dialled: a single voter has no peer to reach.
        cfg.grpc_addr = "127.0.0.1:1".into();
        cfg.peers.truncate(1);
        cfg.peers[0].grpc_addr = cfg.grpc_addr.clone();
        // Simulated agents do not probe: links would stay unknown and refuse every switchover
        // (`brain/links.rs` has its own unit tests).
        cfg.links.clear();
        // The example's services and balancers live on hosts whose agents are not simulated: a
        // role change could check none of them and would end "completed with errors". The tests
        // of the recovery plan set their own (`brain/sim/recovery_tests.rs`).
        cfg.services.clear();
        cfg.balancers.clear();
        tune(&mut cfg);

        let db = crate::raft::open_db(&cfg.data_dir.join("raft")).expect("the store");
        let metrics = Arc::new(Metrics::new());
        let log_store = crate::raft::LogStore::new(db.clone());
        let sm = crate::raft::StateMachineStore::open(
            db.clone(),
            &cfg.data_dir.join("snapshots"),
            metrics.apply_seconds.clone(),
        )
        .expect("the state machine");
        let state = sm.shared();
        let net = PeerNetwork::new(tonic::transport::ClientTlsConfig::new());
        let raft_config = crate::raft_config(&cfg).expect("the Raft configuration");
        let raft = Raft::new(cfg.id, Arc::new(raft_config), net.clone(), log_store, sm).await.expect("Raft");
        let members = BTreeMap::from([(cfg.id, openraft::BasicNode::new(&cfg.grpc_addr))]);
        raft.initialize(members).await.expect("initialising a single-voter cluster");
        raft.wait(Some(Duration::from_secs(10)))
            .state(ServerState::Leader, "the only voter leads")
            .await
            .expect("the only voter leads");
        let proposer = Proposer::start(cfg.id, raft.clone(), net.clone(), metrics.commit_seconds.clone());
        let (restart, _) = tokio::sync::watch::channel(false);
        let ctx = Ctx {
            id: cfg.id,
            cfg,
            raft,
            state,
            db,
            proposer,
            net,
            obs: Default::default(),
            bus: Default::default(),
            router,
            running: Default::default(),
            leases: Default::default(),
            metrics,
            restart,
            leaderless_since: Default::default(),
            refusals: Default::default(),
            continuity: crate::brain::continuity::Continuity::new(None),
        };
        (Arc::new(ctx), dir)
    }
}
