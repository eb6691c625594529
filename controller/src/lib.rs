//! Triad's replicated controller: a Raft group (openraft, RocksDB) with one controller per site,
//! which keeps the deployment's state, watches agents, and serves operators.
//!
//! Data flows one way: the edges (`api`) authenticate and validate requests and turn them into
//! commands; the `raft` proposer writes them to the log; `state` applies them deterministically on
//! every controller; reads come from the applied state. The `brain` runs on the leader, reads the
//! state and the agents' reports, and proposes commands like any other client.
#![forbid(unsafe_code)]
// tonic::Status (176 bytes) is the error type at every gRPC edge, and our Error wraps it; boxing
// it everywhere would buy nothing on paths that are not hot.
#![allow(clippy::result_large_err)]

pub mod alerts;
pub mod api;
pub mod brain;
pub mod config;
pub mod context;
pub mod ctl;
mod error;
pub mod inventory;
pub mod kubernetes;
pub mod metrics;
pub mod raft;
pub mod state;
pub mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use error::{Error, Result};

use crate::config::ControllerConfig;
use crate::context::Ctx;
use crate::raft::{open_db, LogStore, PeerNetwork, Proposer, Raft, StateMachineStore};

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// SIGINT or SIGTERM: the process ends.
    Stopped,
    /// A break-glass order was approved: run again, so that the store is rewritten before
    /// openraft opens it (see `raft::break_glass`).
    Restart,
}

/// Runs a controller until SIGINT or SIGTERM, or until a break-glass order asks for a restart.
pub async fn run(cfg: ControllerConfig) -> Result<Exit> {
    let tls = tls::TlsFiles::load(&cfg.tls)?;
    tls.check_own_identity(cfg.id)?;
    // Bind before touching the data directory, so that a port in use is reported cleanly.
    let grpc_listener =
        TcpListener::bind(&cfg.grpc_addr).await.map_err(|e| Error::io(format!("grpc_addr {}", cfg.grpc_addr), e))?;
    let http_listener =
        TcpListener::bind(&cfg.http_addr).await.map_err(|e| Error::io(format!("http_addr {}", cfg.http_addr), e))?;
    let syslog = api::SyslogListeners::bind(&cfg, &tls).await?;
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| Error::io(format!("data_dir {}", cfg.data_dir.display()), e))?;
    let db = open_store(&cfg.data_dir.join("raft")).await?;
    raft::break_glass::reseed(&db, cfg.id, &cfg.grpc_addr)?;

    let metrics = Arc::new(metrics::Metrics::new());
    let log_store = LogStore::new(db.clone());
    let sm = StateMachineStore::open(db.clone(), &cfg.data_dir.join("snapshots"), metrics.apply_seconds.clone())?;
    let state = sm.shared();
    let net = PeerNetwork::new(tls.client());
    let raft_config = raft_config(&cfg)?;
    let raft = Raft::new(cfg.id, Arc::new(raft_config), net.clone(), log_store, sm)
        .await
        .map_err(|e| Error::Raft(e.to_string()))?;

    let initialized = raft.is_initialized().await.map_err(|e| Error::Raft(e.to_string()))?;
    if !initialized && !cfg.join {
        // Every founding controller initialises with the same membership: openraft documents this
        // as safe, and it means the cluster forms whichever of them starts first.
        let members: BTreeMap<u64, BasicNode> =
            cfg.peers.iter().map(|p| (p.id, BasicNode::new(&p.grpc_addr))).collect();
        match raft.initialize(members).await {
            Ok(()) => tracing::info!("initialised a new cluster of {} controllers", cfg.peers.len()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(e) => return Err(Error::Raft(format!("initialising the cluster: {e}"))),
        }
    }

    let proposer = Proposer::start(cfg.id, raft.clone(), net.clone(), metrics.commit_seconds.clone());
    let last_contact = raft::contact::load(&db)?;
    let (restart_tx, mut restart_rx) = watch::channel(false);
    let router = kubernetes::router(&cfg).await?;
    let ctx = Arc::new(Ctx {
        id: cfg.id,
        cfg: cfg.clone(),
        raft: raft.clone(),
        state,
        db,
        proposer,
        net,
        obs: Default::default(),
        bus: Default::default(),
        router,
        running: Default::default(),
        leases: Default::default(),
        metrics: metrics.clone(),
        restart: restart_tx,
        leaderless_since: Default::default(),
        refusals: Default::default(),
        continuity: brain::continuity::Continuity::new(last_contact),
    });
    tokio::spawn(api::track_leaderless(ctx.clone()));
    tokio::spawn(metrics::follow_raft(raft.clone(), metrics));
    tokio::spawn(metrics::follow_alerts(ctx.clone()));
    tokio::spawn(metrics::follow_process(ctx.clone()));
    tokio::spawn(brain::run(ctx.clone()));
    let intake = api::intake::Intake::start(ctx.clone(), &cfg.data_dir.join("intake"))?;
    syslog.start(ctx.clone(), intake.clone());

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    tracing::info!(id = cfg.id, site = %cfg.site, grpc = %cfg.grpc_addr, http = %cfg.http_addr, "controller serving");
    let grpc = tokio::spawn(api::serve_grpc(ctx.clone(), grpc_listener, tls.server(), stopped(stop_rx.clone())));
    let http_tls = api::http_tls_config(&tls.cert, &tls.key)?;
    let http = tokio::spawn(async move {
        api::serve_http(ctx.clone(), http_listener, http_tls, intake, stopped(stop_rx)).await;
        Ok::<(), Error>(())
    });

    let exit = tokio::select! {
        _ = shutdown_signal() => Exit::Stopped,
        _ = restart_rx.wait_for(|r| *r) => Exit::Restart,
    };
    tracing::info!("shutting down{}", if exit == Exit::Restart { " to restart (break-glass)" } else { "" });
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(3), raft.shutdown()).await;
    for task in [grpc, http] {
        match tokio::time::timeout(Duration::from_secs(3), task).await {
            Ok(Ok(Err(e))) => tracing::warn!("server stopped with an error: {e}"),
            Ok(_) => {}
            Err(_) => tracing::warn!("a server did not stop within 3 s"),
        }
    }
    Ok(exit)
}

/// openraft's configuration from the controller's.
pub(crate) fn raft_config(cfg: &ControllerConfig) -> Result<openraft::Config> {
    openraft::Config {
        cluster_name: "triad".into(),
        heartbeat_interval: cfg.raft.heartbeat_interval_ms,
        election_timeout_min: cfg.raft.election_timeout_min_ms,
        election_timeout_max: cfg.raft.election_timeout_max_ms,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.raft.snapshot_every_entries),
        // Keep some log behind each snapshot so a briefly lagging follower catches up from the log.
        max_in_snapshot_log_to_keep: cfg.raft.snapshot_every_entries.min(1000),
        max_payload_entries: 16,
        ..Default::default()
    }
    .validate()
    .map_err(|e| Error::Raft(e.to_string()))
}

/// Opens the store, waiting a little for a lock a previous run in this process (a restart for a
/// break-glass order) may still hold while its last blocking task ends.
async fn open_store(dir: &std::path::Path) -> Result<Arc<rocksdb::DB>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match open_db(dir) {
            Err(Error::Storage(e)) if e.contains("lock") && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            other => return other,
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Sets up `tracing` output: human-readable, or JSON lines.
pub fn init_logging(format: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let quiet = tracing_subscriber::filter::filter_fn(|m| !is_lease_round_noise(m));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    // The level filter is global, not per layer: so it also tells `tracing` the most verbose
    // level anything wants, and the many debug and trace spans in openraft, hyper and h2 are
    // skipped at their call sites rather than built and dropped on every request.
    let registry = tracing_subscriber::registry().with(filter);
    if format == "json" {
        registry.with(layer.json().with_filter(quiet)).init();
    } else {
        registry.with(layer.with_filter(quiet)).init();
    }
}

/// openraft's ERROR for each voter that did not answer one `ensure_linearizable` round ("timeout
/// while confirming leadership for read request"). Every lease grant runs such a round, so with
/// one voter down it would log several times a second though the quorum answered; the voter's
/// absence is shown by status and the Raft metrics instead. Matched by call site in the openraft
/// version the workspace pins (0.9.25): after an upgrade it may match nothing, and the lines
/// return, which is harmless.
fn is_lease_round_noise(m: &tracing::Metadata<'_>) -> bool {
    m.is_event()
        && *m.level() == tracing::Level::ERROR
        && m.target().starts_with("openraft")
        && m.file().is_some_and(|f| f.ends_with("core/raft_core.rs"))
        && m.line() == Some(383)
}
