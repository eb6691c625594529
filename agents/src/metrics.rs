//! The agent's Prometheus metrics: its links to the controllers and its host.

use prometheus::{
    Encoder, Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric the agent exports.
pub struct AgentMetrics {
    registry: Registry,
    /// Label `controller`: one per configured controller address (a bounded set).
    pub connected: IntGaugeVec,
    pub leader_id: IntGauge,
    pub heartbeats: IntCounter,
    pub acks: IntCounter,
    pub reconnects: IntCounter,
    pub cpu_ratio: Gauge,
    pub memory_used: IntGauge,
    pub memory_total: IntGauge,
    pub disk_used: IntGauge,
    pub load1: Gauge,
    /// Database member metrics, labelled `cluster` and `member` (one member per agent).
    pub db_up: IntGaugeVec,
    pub db_is_primary: IntGaugeVec,
    pub db_timeline: IntGaugeVec,
    pub db_wal_position: IntGaugeVec,
    pub db_replay_delay: prometheus::GaugeVec,
    /// On a primary, per standby (`replica`: the standby's name, a bounded set).
    pub db_replica_lag: IntGaugeVec,
    pub db_replica_sync: IntGaugeVec,
    /// The primary's lease: seconds left (-0.001 when none is held).
    pub lease_remaining: Gauge,
    /// Fences, by reason (`lease`, `stale_epoch`, `epoch_unknown`, `clock`, `late_tick`,
    /// `watchdog`: a bounded set).
    pub fences: IntCounterVec,
    /// Unix seconds of the last fence (0: none since the agent started).
    pub last_fence: Gauge,
    /// notAfter of the certificates the agent uses, by `certificate` (`ca`, `node`) and subject.
    pub cert_expiry: GaugeVec,
    /// Whether each certificate file could be read (1) or not (0).
    pub cert_readable: IntGaugeVec,
    /// Vouches this agent was asked for, by `result` (`given`, `refused`).
    pub vouches: IntCounterVec,
    /// Failsafe rounds of the primary's agent, by `result` (`vouched`, `refused`, `unreachable`).
    pub failsafe_rounds: IntCounterVec,
    /// 1 while the primary's lease comes from its vouch set rather than the controllers.
    pub lease_failsafe: IntGauge,
    /// Link probes from this end, labelled `link` (the links the leader's plan names: bounded).
    pub link_rtt: GaugeVec,
    pub link_loss: GaugeVec,
    pub link_jitter: GaugeVec,
    pub link_silence: GaugeVec,
    pub link_tcp_up: IntGaugeVec,
    /// Probe questions this agent answered, by `proto` (`udp`, `tcp`).
    pub probe_echoes: IntCounterVec,
    /// Datagrams and frames at the probe port that were not probe questions.
    pub probe_bad_frames: IntCounter,
}

macro_rules! reg {
    ($r:expr, $m:expr) => {{
        let m = $m.expect("valid metric");
        $r.register(Box::new(m.clone())).expect("metric registered once");
        m
    }};
}

impl AgentMetrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let r = Registry::new();
        AgentMetrics {
            connected: reg!(
                r,
                IntGaugeVec::new(
                    Opts::new("triad_agent_controller_connected", "1 while the stream to this controller is open"),
                    &["controller"]
                )
            ),
            leader_id: reg!(
                r,
                IntGauge::new("triad_agent_leader_id", "The leader the controllers last reported, 0 if none")
            ),
            heartbeats: reg!(
                r,
                IntCounter::new("triad_agent_heartbeats_sent_total", "Heartbeats sent, over all streams")
            ),
            acks: reg!(r, IntCounter::new("triad_agent_heartbeat_acks_total", "Heartbeat acknowledgements received")),
            reconnects: reg!(r, IntCounter::new("triad_agent_reconnects_total", "Streams that ended and were retried")),
            cpu_ratio: reg!(r, Gauge::new("triad_host_cpu_usage_ratio", "Host CPU usage, 0 to 1")),
            memory_used: reg!(r, IntGauge::new("triad_host_memory_used_bytes", "Host memory in use")),
            memory_total: reg!(r, IntGauge::new("triad_host_memory_total_bytes", "Host memory")),
            disk_used: reg!(r, IntGauge::new("triad_host_disk_used_bytes", "Disk space in use over all disks")),
            load1: reg!(r, Gauge::new("triad_host_load1", "One-minute load average")),
            db_up: reg!(
                r,
                IntGaugeVec::new(Opts::new("triad_db_up", "1 if the database member answers"), &["cluster", "member"])
            ),
            db_is_primary: reg!(
                r,
                IntGaugeVec::new(
                    Opts::new("triad_db_is_primary", "1 if the member is a primary, 0 if a standby or down"),
                    &["cluster", "member"]
                )
            ),
            db_timeline: reg!(
                r,
                IntGaugeVec::new(Opts::new("triad_db_timeline", "The member's timeline"), &["cluster", "member"])
            ),
            db_wal_position: reg!(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "triad_db_wal_position_bytes",
                        "Primary: current WAL position; standby: max of received and replayed"
                    ),
                    &["cluster", "member"]
                )
            ),
            db_replay_delay: reg!(
                r,
                prometheus::GaugeVec::new(
                    Opts::new(
                        "triad_db_replay_delay_seconds",
                        "Standby: age of the last replayed transaction (-1 unknown)"
                    ),
                    &["cluster", "member"]
                )
            ),
            db_replica_lag: reg!(
                r,
                IntGaugeVec::new(
                    Opts::new("triad_db_replica_replay_lag_bytes", "Primary: bytes a standby has not replayed"),
                    &["cluster", "member", "replica"]
                )
            ),
            db_replica_sync: reg!(
                r,
                IntGaugeVec::new(
                    Opts::new("triad_db_replica_sync", "Primary: 1 if the standby is synchronous"),
                    &["cluster", "member", "replica"]
                )
            ),
            lease_remaining: reg!(
                r,
                Gauge::new(
                    "triad_agent_lease_remaining_seconds",
                    "Seconds left of the primary's lease (negative: none)"
                )
            ),
            fences: reg!(
                r,
                IntCounterVec::new(
                    Opts::new("triad_agent_fences_total", "Times the agent stopped its primary to honour the lease"),
                    &["reason"]
                )
            ),
            last_fence: reg!(
                r,
                Gauge::new(
                    "triad_agent_last_fence_timestamp_seconds",
                    "When the agent last stopped its primary to honour the lease, Unix seconds (0: not since it started)"
                )
            ),
            cert_expiry: reg!(
                r,
                GaugeVec::new(
                    Opts::new(
                        "triad_tls_certificate_expiry_timestamp_seconds",
                        "When a certificate this process uses expires (notAfter), by certificate (ca, node) and subject"
                    ),
                    &["certificate", "subject"]
                )
            ),
            cert_readable: reg!(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "triad_tls_certificate_readable",
                        "Whether a certificate file this process uses could be read and parsed (1) or not (0), by certificate (ca, node)"
                    ),
                    &["certificate"]
                )
            ),
            vouches: reg!(
                r,
                IntCounterVec::new(
                    Opts::new("triad_agent_vouches_total", "Vouch requests from a primary's agent, by answer"),
                    &["result"]
                )
            ),
            failsafe_rounds: reg!(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "triad_agent_failsafe_rounds_total",
                        "Rounds in which the primary's agent asked its vouch set to vouch, by outcome"
                    ),
                    &["result"]
                )
            ),
            lease_failsafe: reg!(
                r,
                IntGauge::new(
                    "triad_agent_lease_failsafe",
                    "1 while the primary's lease comes from its vouch set (controllers unreachable)"
                )
            ),
            link_rtt: reg!(
                r,
                GaugeVec::new(
                    Opts::new("triad_link_probe_rtt_seconds", "Mean probe round trip over the window, from this end"),
                    &["link"]
                )
            ),
            link_loss: reg!(
                r,
                GaugeVec::new(
                    Opts::new("triad_link_probe_loss_ratio", "Probes lost over the window, from this end, 0 to 1"),
                    &["link"]
                )
            ),
            link_jitter: reg!(
                r,
                GaugeVec::new(
                    Opts::new(
                        "triad_link_probe_jitter_seconds",
                        "Mean difference between successive probe round trips, from this end"
                    ),
                    &["link"]
                )
            ),
            link_silence: reg!(
                r,
                GaugeVec::new(
                    Opts::new("triad_link_probe_silence_seconds", "Since the last probe answer, from this end"),
                    &["link"]
                )
            ),
            link_tcp_up: reg!(
                r,
                IntGaugeVec::new(
                    Opts::new("triad_link_probe_tcp_up", "1 if the last TCP echo was answered"),
                    &["link"]
                )
            ),
            probe_echoes: reg!(
                r,
                IntCounterVec::new(
                    Opts::new("triad_link_probe_echoes_total", "Probe questions this agent answered"),
                    &["proto"]
                )
            ),
            probe_bad_frames: reg!(
                r,
                IntCounter::new(
                    "triad_link_probe_bad_frames_total",
                    "Datagrams and frames at the probe port that were not probe questions"
                )
            ),
            registry: r,
        }
    }

    /// Exports what this end measured of `link`.
    pub fn observe_link(&self, link: &str, f: &crate::probes::window::Figures, tcp_ok: bool) {
        self.link_rtt.with_label_values(&[link]).set(f.rtt_ms / 1e3);
        self.link_loss.with_label_values(&[link]).set(f.loss_percent() / 100.0);
        self.link_jitter.with_label_values(&[link]).set(f.jitter_ms / 1e3);
        self.link_silence.with_label_values(&[link]).set(f.silent_ms as f64 / 1e3);
        self.link_tcp_up.with_label_values(&[link]).set(tcp_ok as i64);
    }

    /// A link left the plan: its series go.
    pub fn forget_link(&self, link: &str) {
        let _ = self.link_rtt.remove_label_values(&[link]);
        let _ = self.link_loss.remove_label_values(&[link]);
        let _ = self.link_jitter.remove_label_values(&[link]);
        let _ = self.link_silence.remove_label_values(&[link]);
        let _ = self.link_tcp_up.remove_label_values(&[link]);
    }

    /// Exports one database observation.
    pub fn observe_db(&self, st: &triad_proto::v1::DbStatus) {
        let l = [st.cluster.as_str(), st.member.as_str()];
        self.db_up.with_label_values(&l).set(st.up as i64);
        self.db_is_primary.with_label_values(&l).set((st.role == "primary") as i64);
        self.db_timeline.with_label_values(&l).set(st.timeline as i64);
        self.db_wal_position.with_label_values(&l).set(st.position as i64);
        self.db_replay_delay.with_label_values(&l).set(st.replay_delay_seconds);
        for r in &st.replicas {
            let l = [st.cluster.as_str(), st.member.as_str(), r.name.as_str()];
            self.db_replica_lag.with_label_values(&l).set(r.replay_lag_bytes);
            self.db_replica_sync.with_label_values(&l).set(r.synchronous as i64);
        }
    }

    /// The text exposition.
    /// Sets the certificates' expiry from the PEM files given; a file that cannot be read is
    /// logged, its series dropped rather than left stale, and `triad_tls_certificate_readable`
    /// set to 0 for it (the expiry alerts would otherwise go quiet).
    pub fn export_certificates(&self, files: &[(&str, &std::path::Path)]) {
        self.cert_expiry.reset();
        for (name, path) in files {
            match triad_proto::tls::certificate_expiries(path) {
                Ok(certs) => {
                    for c in certs {
                        self.cert_expiry.with_label_values(&[name, &c.subject]).set(c.not_after as f64);
                    }
                    self.cert_readable.with_label_values(&[name]).set(1);
                }
                Err(e) => {
                    tracing::warn!("certificate expiry not exported: {e}");
                    self.cert_readable.with_label_values(&[name]).set(0);
                }
            }
        }
    }

    /// Creates the counters whose labels are known ahead at 0, so that a rate over them is 0
    /// rather than no data before the first event.
    pub fn init_counters(&self) {
        for class in crate::safety::guard::FENCE_CLASSES {
            self.fences.with_label_values(&[class]);
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}
