//! Link probes (issue 18): this agent answers probes from the agents at the other ends of its
//! site's links (`echo.rs`), and probes the links the leader's plan gives it (`prober.rs`): a
//! UDP question every few hundred milliseconds and a TCP echo every second, timestamps on both
//! ends. What it measured over the window (`window.rs`) goes to the controllers with every
//! heartbeat; the leader judges each link's state from both ends' reports.

mod echo;
mod prober;
pub mod services;
pub mod snmp;
pub mod window;
pub mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::task::AbortHandle;
use triad_proto::v1::{LinkProbeReport, ProbePlan, ProbeTarget};

pub use echo::serve as serve_echo;

use crate::metrics::AgentMetrics;

/// Most links one agent probes; a longer plan is cut (and said so).
pub const MAX_TARGETS: usize = 256;
/// The probe interval is kept within these bounds, whatever the plan says.
const INTERVAL: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(60));

/// Nanoseconds on this process's monotonic clock: probe stamps, compared only with each other.
pub fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// What this end knows of one link.
#[derive(Debug)]
pub struct LinkView {
    pub peer: String,
    pub window: window::Window,
    pub tcp_ok: bool,
    pub tcp_rtt_ms: f64,
    pub tcp_error: String,
}

struct Running {
    target: ProbeTarget,
    view: Arc<Mutex<LinkView>>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The links this agent probes, as the leader's latest plan says, and the devices it polls.
pub struct Probes {
    running: Mutex<BTreeMap<String, Running>>,
    metrics: Arc<AgentMetrics>,
    snmp: Arc<snmp::Polls>,
    /// The service checks the leader's plan gives this agent.
    pub checks: services::Checks,
}

impl Probes {
    /// Starts polling `devices` (the config's `[[snmp]]`); probing waits for the leader's plan.
    pub fn new(metrics: Arc<AgentMetrics>, devices: &[crate::config::SnmpDevice]) -> Arc<Probes> {
        Arc::new(Probes {
            running: Mutex::new(BTreeMap::new()),
            metrics,
            snmp: snmp::Polls::start(devices),
            checks: services::Checks::default(),
        })
    }

    /// The latest SNMP reports, for the next heartbeat.
    pub fn snmp_reports(&self) -> Vec<triad_proto::v1::SnmpReport> {
        self.snmp.reports()
    }

    /// Replaces the plan: probing of links no longer in it stops, new ones start, changed ones
    /// start afresh; unchanged ones go on with their window.
    pub fn set_plan(&self, plan: ProbePlan) {
        let mut targets = plan.targets;
        if targets.len() > MAX_TARGETS {
            tracing::warn!("link probes: the plan names {} links; probing the first {MAX_TARGETS}", targets.len());
            targets.truncate(MAX_TARGETS);
        }
        let mut running = self.running.lock().expect("probes lock poisoned");
        let wanted: BTreeMap<String, ProbeTarget> = targets.into_iter().map(|t| (t.link.clone(), t)).collect();
        running.retain(|link, r| {
            let keep = wanted.get(link) == Some(&r.target);
            if !keep {
                self.metrics.forget_link(link);
            }
            keep
        });
        for (link, target) in wanted {
            if running.contains_key(&link) {
                continue;
            }
            let view = Arc::new(Mutex::new(LinkView {
                peer: target.peer_agent.clone(),
                window: window::Window::new(now_ns()),
                tcp_ok: false,
                tcp_rtt_ms: 0.0,
                tcp_error: triad_proto::words::PROBE_TCP_NOT_TRIED.into(),
            }));
            let tasks = match target.peer_addr.parse::<SocketAddr>() {
                Ok(peer) => {
                    let interval = Duration::from_millis(u64::from(target.interval_ms)).clamp(INTERVAL.0, INTERVAL.1);
                    tracing::info!(%link, peer = %target.peer_agent, %peer, ?interval, "probing link");
                    vec![
                        tokio::spawn(prober::udp(peer, interval, view.clone())).abort_handle(),
                        tokio::spawn(prober::tcp(peer, view.clone())).abort_handle(),
                    ]
                }
                Err(_) => {
                    // Reported as silent with the reason, rather than left out: the leader must
                    // not take a link nobody can probe for a healthy one.
                    let why = format!("the plan's peer address `{}` is not IP:PORT", target.peer_addr);
                    tracing::warn!(%link, "link probes: {why}");
                    view.lock().expect("link view lock poisoned").tcp_error = why;
                    Vec::new()
                }
            };
            running.insert(link, Running { target, view, tasks });
        }
    }

    /// What each probed link looks like from here now, for the next heartbeat (and the
    /// agent's own metrics).
    pub fn reports(&self) -> Vec<LinkProbeReport> {
        let now = now_ns();
        let running = self.running.lock().expect("probes lock poisoned");
        running
            .iter()
            .map(|(link, r)| {
                let v = r.view.lock().expect("link view lock poisoned");
                let f = v.window.figures(now);
                self.metrics.observe_link(link, &f, v.tcp_ok);
                LinkProbeReport {
                    link: link.clone(),
                    peer: v.peer.clone(),
                    window_ms: f.window_ms,
                    sent: f.sent,
                    answered: f.answered,
                    rtt_ms: f.rtt_ms,
                    jitter_ms: f.jitter_ms,
                    silent_ms: f.silent_ms,
                    tcp_ok: v.tcp_ok,
                    tcp_rtt_ms: v.tcp_rtt_ms,
                    tcp_error: v.tcp_error.clone(),
                }
            })
            .collect()
    }
}
