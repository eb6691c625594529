//! Triad's per-host agent: keeps a stream to every controller, reports the host's facts and
//! heartbeats, and (with the database work) runs drivers on the controllers' behalf.
#![forbid(unsafe_code)]
// tonic::Status (176 bytes) is the error type at every gRPC edge, and our Error wraps it; boxing
// it everywhere would buy nothing on paths that are not hot.
#![allow(clippy::result_large_err)]

pub mod actions;
pub mod config;
pub mod drivers;
mod error;
pub mod facts;
pub mod http;
pub mod link;
pub mod metrics;
pub mod probes;
pub mod safety;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

pub use error::{Error, Result};

use crate::config::AgentConfig;
use crate::drivers::DriverError;
use crate::link::{LinkParams, Links};
use crate::metrics::AgentMetrics;
use crate::safety::{boot, guard, handover, lease, opening, target, vouch, watchdog};

/// The deployment's CA, and this agent's certificate and key, as PEM.
struct Pem {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

/// What the agent's parts share about its database member.
struct Member {
    target: Arc<target::Target>,
    lease: Arc<lease::Lease>,
    db: Arc<RwLock<Option<drivers::DbStatus>>>,
    metrics: Arc<AgentMetrics>,
    watchdog: watchdog::SharedWatchdog,
}

/// Runs the agent until SIGINT or SIGTERM (a primary stopped first) or SIGUSR2 (a primary handed
/// over to the next agent: a restart in place, `safety/handover.rs`).
pub async fn run(cfg: AgentConfig) -> Result<()> {
    let read = |key: &str, p: &std::path::Path| {
        triad_proto::files::read_bounded(p, triad_proto::files::CONFIG_LIMIT)
            .map_err(|e| Error::ConfigKey { key: key.into(), msg: format!("{}: {e}", p.display()) })
    };
    let pem = Pem {
        ca: read("tls.ca", &cfg.tls.ca)?,
        cert: read("tls.cert", &cfg.tls.cert)?,
        key: read("tls.key", &cfg.tls.key)?,
    };
    let tls = triad_proto::tls::client_tls(&pem.ca, &pem.cert, &pem.key);
    let listener = tokio::net::TcpListener::bind(&cfg.http_addr)
        .await
        .map_err(|e| Error::Io { context: format!("http_addr {}", cfg.http_addr), source: e })?;
    let metrics = Arc::new(AgentMetrics::new());
    metrics.init_counters();
    let facts = facts::host_facts();
    metrics.memory_total.set(facts.memory_total_bytes as i64);
    let load = Arc::new(RwLock::new(Default::default()));
    tokio::spawn(facts::sample_load(load.clone(), Duration::from_secs(1)));
    tokio::spawn(export_load(load.clone(), metrics.clone()));
    tokio::spawn(export_certificates(cfg.tls.ca.clone(), cfg.tls.cert.clone(), metrics.clone()));
    let target = Arc::new(
        target::Target::open(&cfg.state_dir, cfg.hooks.on_role_change.clone())
            .map_err(|e| Error::Io { context: format!("state_dir {}", cfg.state_dir.display()), source: e })?,
    );
    // An agent that has persisted an epoch (or cannot read it) is under lease from the start.
    let lease = Arc::new(lease::Lease::open(&cfg.state_dir, target.epoch() != Some(0)));
    let member = Member {
        target: target.clone(),
        lease: lease.clone(),
        db: Arc::new(RwLock::new(None)),
        metrics: metrics.clone(),
        watchdog: watchdog::Watchdog::shared(&cfg.lease),
    };
    let vouches = Arc::new(vouch::Vouches::new());
    if !cfg.vouch_addr.is_empty() {
        serve_vouches(&cfg.vouch_addr, &pem, &member, vouches.clone()).await?;
    }
    if !cfg.probe_addr.is_empty() {
        probes::serve_echo(&cfg.probe_addr, metrics.clone()).await?;
    }
    let probes = probes::Probes::new(metrics.clone(), &cfg.snmp);
    let driver = cfg.database.as_ref().map(|dbc| watch_database(&cfg, dbc, &pem, &member));
    if driver.is_some() {
        // This agent's guard runs (over the lease restored from the state directory): a primary
        // the previous agent left running (`handover.rs`) is now guarded by it.
        handover::take_over(&cfg.state_dir);
    }
    let Member { db, watchdog, .. } = member;
    let links = Arc::new(Links { status: Mutex::new(BTreeMap::new()) });
    let (commands, queued) = link::command_queue();
    let params = Arc::new(LinkParams {
        commands,
        side: link::SideCommands::start(cfg.hooks.dir.clone()),
        driver: driver.clone(),
        target: target.clone(),
        lease: lease.clone(),
        vouches,
        db: db.clone(),
        renew: tokio::sync::Notify::new(),
        followed: Mutex::default(),
        cfg: cfg.clone(),
        tls,
        facts,
        load,
        links: links.clone(),
        metrics: metrics.clone(),
        watchdog: watchdog.clone(),
        probes,
    });
    tokio::spawn(link::run_commands(params.clone(), queued));
    for addr in &cfg.controllers {
        link::ensure_following(&params, addr);
    }
    tracing::info!(name = %cfg.name, site = %cfg.site, http = %cfg.http_addr, "agent running");
    let http = tokio::spawn(http::serve(
        listener,
        http::HttpState { links, metrics, db: db.clone(), target: target.clone(), lease: lease.clone() },
    ));
    let stop = tokio::select! {
        stop = shutdown_signal() => stop,
        r = http => {
            if let Ok(Err(e)) = r {
                return Err(Error::Io { context: "http server".into(), source: e });
            }
            Stop::Clean
        }
    };
    tracing::info!("shutting down ({stop:?})");
    if let Some(d) = &driver {
        if stop == Stop::Handover && hand_over(&cfg, &db, &lease, &target).await {
            return Ok(());
        }
        stop_cleanly(d.as_ref(), &db, &lease, &watchdog).await;
    }
    Ok(())
}

/// How the agent was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGTERM or SIGINT: a primary is stopped first (`stop_cleanly`).
    Clean,
    /// SIGUSR2: restarted in place, a primary handed over to the next agent (`handover.rs`).
    Handover,
}

/// SIGUSR2 on the host of a primary: leaves it running for the next agent, under the guard
/// process, when the lease allows (`handover.rs`). False: nothing was handed over (no primary
/// here is also false: the clean stop then leaves a standby running, as always).
async fn hand_over(
    cfg: &AgentConfig,
    db: &RwLock<Option<drivers::DbStatus>>,
    lease: &lease::Lease,
    target: &target::Target,
) -> bool {
    let obs = db.read().expect("db lock poisoned").clone();
    // No start or promote half done while this looks (the opening's start gate).
    let _gate = lease.start_gate().lock().await;
    let opening = obs.as_ref().is_some_and(|o| lease.snapshot().opening_covers(o.observed_ms));
    if !guard::may_be_primary(obs.as_ref(), "") || opening {
        return false;
    }
    let Some(epoch) = target.epoch() else {
        tracing::warn!("the epoch file is unreadable: no handover, stopping the server");
        return false;
    };
    match handover::leave(&cfg.state_dir, lease, epoch, cfg.lease.fence_lead_ms) {
        Ok(h) => match handover::spawn_guard() {
            Ok(()) => {
                tracing::warn!(
                    epoch,
                    fence_at_boot_ms = h.fence_at_boot_ms,
                    "restarting in place: the primary serves on, guarded until the next agent takes it over"
                );
                true
            }
            Err(e) => {
                tracing::warn!("the handover guard could not be started ({e}): stopping the server");
                handover::take_over(&cfg.state_dir);
                false
            }
        },
        Err(e) => {
            tracing::warn!("no handover: {e}");
            false
        }
    }
}

/// The handover guard process (`triad-agent --handover-guard`): fences the member's server
/// unless the next agent takes it over before its lease runs out (`safety/handover.rs`).
pub async fn handover_guard(cfg: AgentConfig) -> Result<()> {
    let Some(dbc) = cfg.database.as_ref() else { return Ok(()) };
    let driver = make_driver(dbc);
    match handover::guard(&cfg.state_dir, driver.as_ref()).await {
        Ok(done) => {
            tracing::info!("handover guard: {done:?}");
            Ok(())
        }
        Err(e) => {
            Err(Error::Io { context: "handover guard: fencing".into(), source: std::io::Error::other(e.to_string()) })
        }
    }
}

/// Exports the host's load, as sampled, every second.
async fn export_load(load: Arc<RwLock<triad_proto::v1::HostLoad>>, metrics: Arc<AgentMetrics>) {
    loop {
        let l: triad_proto::v1::HostLoad = *load.read().expect("load lock poisoned");
        metrics.cpu_ratio.set(l.cpu_percent as f64 / 100.0);
        metrics.memory_used.set(l.memory_used_bytes as i64);
        metrics.disk_used.set(l.disk_used_bytes as i64);
        metrics.load1.set(l.load_1m);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Exports the expiry of the agent's CA and own certificate, every minute (they are replaced on
/// disk when renewed, so they are read again rather than once).
async fn export_certificates(ca: std::path::PathBuf, cert: std::path::PathBuf, metrics: Arc<AgentMetrics>) {
    loop {
        metrics.export_certificates(&[("ca", ca.as_path()), ("node", cert.as_path())]);
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

/// Serves the failsafe's `Vouch` service at `addr` (DESIGN.md point 3), over mTLS.
async fn serve_vouches(addr: &str, pem: &Pem, m: &Member, vouches: Arc<vouch::Vouches>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Io { context: format!("vouch_addr {addr}"), source: e })?;
    let service =
        vouch::VouchService { target: m.target.clone(), db: m.db.clone(), vouches, metrics: m.metrics.clone() };
    let server = tonic::transport::Server::builder()
        .tls_config(triad_proto::tls::server_tls(&pem.ca, &pem.cert, &pem.key))?
        .add_service(triad_proto::v1::vouch_server::VouchServer::new(service));
    tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        if let Err(e) = server.serve_with_incoming(incoming).await {
            tracing::error!("the failsafe service stopped: {e}");
        }
    });
    tracing::info!(addr = %addr, "failsafe service listening");
    Ok(())
}

/// Starts the database driver `dbc` names and everything that watches and guards its member:
/// the observer, the lease guard (point 2), the start at boot (point 8), the failsafe (point 3)
/// and the canary. Returns the driver, for the leader's commands.
fn watch_database(
    cfg: &AgentConfig,
    dbc: &config::DatabaseConfig,
    pem: &Pem,
    m: &Member,
) -> Arc<dyn drivers::DatabaseDriver> {
    let d = make_driver(dbc);
    tracing::info!(cluster = %dbc.cluster, member = %dbc.member, driver = d.kind(), "watching the database member");
    tokio::spawn(observe_db(
        d.clone(),
        m.db.clone(),
        m.target.clone(),
        m.lease.clone(),
        m.metrics.clone(),
        Duration::from_millis(dbc.observe_interval_ms),
        (dbc.endpoint.clone(), watchdog::describe(&cfg.lease)),
    ));
    let guard = guard::Guard {
        lease: m.lease.clone(),
        target: m.target.clone(),
        db: m.db.clone(),
        driver: d.clone(),
        metrics: m.metrics.clone(),
        cfg: cfg.lease.clone(),
        watchdog: m.watchdog.clone(),
    };
    tokio::spawn(guard.run());
    let opener = opening::Opener {
        driver: d.clone(),
        target: m.target.clone(),
        lease: m.lease.clone(),
        watchdog: m.watchdog.clone(),
        fence_lead_ms: cfg.lease.fence_lead_ms,
    };
    let boot = boot::BootStart { opener };
    tokio::spawn(boot.run());
    let failsafe = vouch::Failsafe {
        lease: m.lease.clone(),
        target: m.target.clone(),
        tls: triad_proto::tls::agent_client_tls(&pem.ca, &pem.cert, &pem.key),
        metrics: m.metrics.clone(),
        heartbeat: Duration::from_millis(cfg.heartbeat_interval_ms),
        check: Duration::from_millis(cfg.lease.check_interval_ms),
        fence_lead_ms: cfg.lease.fence_lead_ms,
    };
    tokio::spawn(failsafe.run());
    tokio::spawn(write_canary(d.clone(), m.db.clone(), m.target.clone()));
    d
}

/// The driver `dbc` names.
fn make_driver(dbc: &config::DatabaseConfig) -> Arc<dyn drivers::DatabaseDriver> {
    match dbc.driver.as_str() {
        "simulated" => {
            Arc::new(drivers::SimulatedDriver::new(&dbc.cluster, &dbc.member, dbc.simulated_role == "primary"))
        }
        _ => {
            let local = (!dbc.data_dir.as_os_str().is_empty()).then(|| drivers::PgLocal {
                data_dir: dbc.data_dir.clone(),
                bin_dir: if dbc.bin_dir.as_os_str().is_empty() {
                    drivers::default_bin_dir().unwrap_or_default()
                } else {
                    dbc.bin_dir.clone()
                },
                os_user: dbc.os_user.clone(),
                log_file: if dbc.log_file.as_os_str().is_empty() {
                    dbc.data_dir.with_file_name("postgres.log")
                } else {
                    dbc.log_file.clone()
                },
            });
            Arc::new(drivers::PostgresDriver::new(&dbc.cluster, &dbc.member, &dbc.conninfo, local))
        }
    }
}

/// How long a clean stop gives the primary's fast shutdown before it fences it instead.
const STOP_PRIMARY_TIMEOUT: Duration = Duration::from_secs(20);

/// A clean stop of the agent (SIGTERM, SIGINT) on a host that may run a primary: once this agent
/// exits, nothing fences that primary when its lease ends, and the watchdog, if left armed,
/// resets the host. So the agent stops the server first (a fast shutdown, which hands every
/// record to the connected standbys; an immediate stop if that fails or takes too long), then
/// disarms the watchdog on purpose: nothing is left for it to guard. If the server cannot be
/// stopped, the watchdog is left armed, and says why: a primary without its guard is the one
/// thing that must not outlive the agent. The leader then fails over (the primary is down and
/// its agent silent); to keep the database serving, switch over before stopping the agent of the
/// primary, or restart it in place with SIGUSR2 (runbooks/upgrade.md). A standby's server is left running.
async fn stop_cleanly(
    driver: &dyn drivers::DatabaseDriver,
    db: &RwLock<Option<drivers::DbStatus>>,
    lease: &lease::Lease,
    watchdog: &watchdog::SharedWatchdog,
) {
    let obs = db.read().expect("db lock poisoned").clone();
    // The opening's start gate: no start or promote is half done while this looks and stops.
    let _gate = lease.start_gate().lock().await;
    let opening = obs.as_ref().is_some_and(|o| lease.snapshot().opening_covers(o.observed_ms));
    let primary = guard::may_be_primary(obs.as_ref(), "") || opening;
    if !primary {
        watchdog.lock().expect("watchdog lock poisoned").retire("the agent stops; its server is no primary");
        return;
    }
    tracing::warn!(
        "the agent stops on a host that may run the primary: stopping the server first (to restart the agent with the primary serving on, send SIGUSR2 instead: runbooks/upgrade.md)"
    );
    let stopped = match tokio::time::timeout(STOP_PRIMARY_TIMEOUT, driver.stop_primary()).await {
        Ok(Ok(lsn)) => {
            tracing::info!(lsn, "the server is stopped (a clean shutdown)");
            Ok(())
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(DriverError::Timeout(format!("no clean shutdown within {} s", STOP_PRIMARY_TIMEOUT.as_secs()))),
    };
    let stopped = match stopped {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::warn!("{e}: stopping it at once");
            driver.fence().await
        }
    };
    let mut wd = watchdog.lock().expect("watchdog lock poisoned");
    match stopped {
        Ok(()) => wd.retire("the agent stops, and it stopped its server first"),
        Err(e) if wd.armed() => {
            tracing::error!("the server could not be stopped ({e}): the watchdog stays armed and will reset the host")
        }
        Err(e) => tracing::error!("the server could not be stopped ({e}), and no watchdog is armed: it runs unguarded"),
    }
}

/// How long one observation may take before the member counts as not answering.
const OBSERVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Observes the database member forever, keeping the latest observation for heartbeats, metrics
/// and the health endpoints.
async fn observe_db(
    driver: Arc<dyn drivers::DatabaseDriver>,
    out: Arc<RwLock<Option<drivers::DbStatus>>>,
    target: Arc<target::Target>,
    lease: Arc<lease::Lease>,
    metrics: Arc<AgentMetrics>,
    every: Duration,
    (endpoint, watchdog): (String, &'static str),
) {
    let mut last_role = String::new();
    let endpoint_id = driver.endpoint_id(&endpoint);
    loop {
        // Read before observing: a report at epoch e describes the member as it was with e
        // already persisted (the leader relies on that to trust a stopped primary's final
        // position, DESIGN.md point 5).
        let epoch = target.epoch();
        // Bounded whatever the driver does: the guard must learn that it cannot see its server
        // (it then assumes a primary, DESIGN.md point 1) rather than keep an old observation.
        let mut st = match tokio::time::timeout(OBSERVE_TIMEOUT, driver.observe()).await {
            Ok(st) => st,
            Err(_) => {
                let last = out.read().expect("db lock poisoned").clone().unwrap_or_default();
                drivers::DbStatus {
                    cluster: last.cluster,
                    member: last.member,
                    driver: driver.kind().into(),
                    role: "down".into(),
                    error: format!("no observation within {} ms", OBSERVE_TIMEOUT.as_millis()),
                    configured_standby: last.configured_standby,
                    replay_delay_seconds: -1.0,
                    canary_age_seconds: -1.0,
                    observed_ms: drivers::now_ms(),
                    ..Default::default()
                }
            }
        };
        st.endpoint = endpoint.clone();
        st.endpoint_id = endpoint_id.clone();
        if st.up {
            lease.seen_running(st.observed_ms);
        }
        let l = lease.snapshot();
        st.stopped_by_fence = l.stopped_by_fence && st.stopped && !st.up;
        st.lease_armed = l.armed;
        st.lease_remaining_ms = l.remaining_ms(l.epoch, lease::boot_ms());
        st.fenced_reason = l.fenced_reason;
        st.fenced_ms = l.fenced_ms;
        st.lease_failsafe = l.failsafe && st.lease_remaining_ms > 0;
        st.vouched_by = if st.lease_failsafe { l.vouched_by } else { Vec::new() };
        metrics.lease_failsafe.set(st.lease_failsafe as i64);
        st.watchdog = watchdog.into();
        match epoch {
            Some(e) => st.agent_epoch = e,
            None => st.epoch_unknown = true,
        }
        if st.role != last_role {
            tracing::info!(member = %st.member, role = %st.role, error = %st.error, "database member observed");
            last_role = st.role.clone();
        }
        metrics.observe_db(&st);
        *out.write().expect("db lock poisoned") = Some(st);
        tokio::time::sleep(every).await;
    }
}

/// Writes the canary every 100 ms while this member is the primary both by the accepted target
/// state and by observation, stamped with the accepted epoch.
async fn write_canary(
    driver: Arc<dyn drivers::DatabaseDriver>,
    db: Arc<RwLock<Option<drivers::DbStatus>>>,
    target: Arc<target::Target>,
) {
    let mut seq = 0u64;
    let mut failing = false;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (Some(t), Some(epoch)) = (target.current(), target.epoch()) else {
            continue;
        };
        let observed = db.read().expect("db lock poisoned").clone();
        let Some(obs) = observed else { continue };
        if t.role != "primary" || t.epoch != epoch || obs.role != "primary" {
            continue;
        }
        seq = seq.max(obs.canary_seq) + 1;
        // Bounded: a commit waiting for a lost synchronous standby must not stall the loop.
        let r = tokio::time::timeout(Duration::from_secs(1), driver.write_canary(seq, epoch, &t.member)).await;
        match r {
            Ok(Ok(())) => {
                if failing {
                    tracing::info!("canary writes succeed again");
                }
                failing = false;
            }
            Ok(Err(e)) if !failing => {
                tracing::warn!("canary write failed: {e}");
                failing = true;
            }
            Err(_) if !failing => {
                tracing::warn!("canary write did not commit within 1 s");
                failing = true;
            }
            _ => {}
        }
    }
}

async fn shutdown_signal() -> Stop {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::user_defined2())) {
        (Ok(mut term), Ok(mut usr2)) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => Stop::Clean,
                _ = term.recv() => Stop::Clean,
                _ = usr2.recv() => Stop::Handover,
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            Stop::Clean
        }
    }
}

/// Sets up `tracing` output: human-readable, or JSON lines.
pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
