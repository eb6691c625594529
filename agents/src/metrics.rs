//! The agent's Prometheus metrics: its links to the controllers and its host.

use prometheus::{Encoder, Gauge, IntCounter, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

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
}

macro_rules! reg {
    ($r:expr, $m:expr) => {{
        let m = $m.expect("valid metric");
        $r.register(Box::new(m.clone()))
            .expect("metric registered once");
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
                    Opts::new(
                        "triad_agent_controller_connected",
                        "1 while the stream to this controller is open"
                    ),
                    &["controller"]
                )
            ),
            leader_id: reg!(
                r,
                IntGauge::new(
                    "triad_agent_leader_id",
                    "The leader the controllers last reported, 0 if none"
                )
            ),
            heartbeats: reg!(
                r,
                IntCounter::new(
                    "triad_agent_heartbeats_sent_total",
                    "Heartbeats sent, over all streams"
                )
            ),
            acks: reg!(
                r,
                IntCounter::new(
                    "triad_agent_heartbeat_acks_total",
                    "Heartbeat acknowledgements received"
                )
            ),
            reconnects: reg!(
                r,
                IntCounter::new(
                    "triad_agent_reconnects_total",
                    "Streams that ended and were retried"
                )
            ),
            cpu_ratio: reg!(
                r,
                Gauge::new("triad_host_cpu_usage_ratio", "Host CPU usage, 0 to 1")
            ),
            memory_used: reg!(
                r,
                IntGauge::new("triad_host_memory_used_bytes", "Host memory in use")
            ),
            memory_total: reg!(
                r,
                IntGauge::new("triad_host_memory_total_bytes", "Host memory")
            ),
            disk_used: reg!(
                r,
                IntGauge::new(
                    "triad_host_disk_used_bytes",
                    "Disk space in use over all disks"
                )
            ),
            load1: reg!(r, Gauge::new("triad_host_load1", "One-minute load average")),
            registry: r,
        }
    }

    /// The text exposition.
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
