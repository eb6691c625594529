//! The controller's Prometheus metrics (`triad_*`, base units, bounded labels): their registry
//! here, the tasks that keep them current beside it (`follow`: Raft and alerts; `cluster`: the
//! database clusters; `process`: the controller's disk and certificates).

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

mod cluster;
mod drills;
mod follow;
mod process;
mod services;

pub use cluster::{export_assets, export_state, ClusterMetrics};
pub use drills::DrillMetrics;
pub use follow::{commit_index, follow_alerts, follow_raft};
pub use process::{follow_process, ProcessMetrics};
pub use services::{export_services, ServiceMetrics};

/// How a workflow can end, as `triad_workflows_total` counts it.
pub const WORKFLOW_OUTCOMES: [&str; 3] = ["completed", "rolled_back", "failed"];

/// Every metric the controller exports.
pub struct Metrics {
    registry: Registry,
    pub raft_term: IntGauge,
    pub raft_is_leader: IntGauge,
    pub raft_leader_id: IntGauge,
    pub raft_last_log_index: IntGauge,
    pub raft_commit_index: IntGauge,
    pub raft_applied_index: IntGauge,
    pub raft_voters: IntGauge,
    /// Times this controller saw the leader change (to another, or to none).
    pub raft_leader_changes: prometheus::IntCounter,
    /// Entries in the local log (from the first not purged to the last).
    pub raft_log_entries: IntGauge,
    /// The log index of the newest snapshot (0: none).
    pub raft_snapshot_index: IntGauge,
    /// Leader only (absent elsewhere): since a quorum last acknowledged it.
    pub raft_quorum_ack_age: prometheus::GaugeVec,
    /// Voting controllers per city, and whether losing every one of them leaves a majority.
    pub raft_city_voters: prometheus::IntGaugeVec,
    pub raft_survives_city_loss: prometheus::IntGaugeVec,
    /// From a proposal handed to Raft on this controller to its commit (forwarding included).
    pub commit_seconds: Histogram,
    pub apply_seconds: Histogram,
    pub agents_connected: IntGauge,
    pub agents_up: IntGauge,
    pub agents_down: IntGauge,
    pub grpc_requests: IntCounterVec,
    /// Per database cluster (label `cluster`, a configured and so bounded set).
    pub db_epoch: prometheus::IntGaugeVec,
    pub db_paused: prometheus::IntGaugeVec,
    pub db_failover_blocked: prometheus::IntGaugeVec,
    pub db_primary_lost: prometheus::IntGaugeVec,
    /// Workflows that ended, by kind (`switchover`...) and outcome (`completed`, `rolled_back`,
    /// `failed`), counted by this controller since it started.
    pub workflows: IntCounterVec,
    pub workflow_seconds: prometheus::HistogramVec,
    /// Alerts accepted (synced to the intake journal), by configured source (a bounded set).
    pub alerts_received: IntCounterVec,
    /// Alert events accepted by this controller and not yet in the replicated log.
    pub alerts_intake_backlog: IntGauge,
    /// Ingest requests refused, by source (`unknown` before authentication) and reason.
    pub alerts_rejected: IntCounterVec,
    /// Notifications delivered (`sent`) or given up (`failed`), by configured channel.
    pub notifications: IntCounterVec,
    /// Alert events by what deduplication made of them (from the replicated totals).
    pub alerts_ingested: IntCounterVec,
    /// Alerts open or acknowledged now, by severity and status.
    pub alerts_open: prometheus::IntGaugeVec,
    /// Notifications decided and not yet delivered, and given up.
    pub notifications_pending: IntGauge,
    pub notifications_failed: IntGauge,
    /// From an alert's opening to its acknowledgement, and to its closing.
    pub alerts_ack_seconds: Histogram,
    pub alerts_resolve_seconds: Histogram,
    /// Audited events not yet sent to the SIEM (leader), and failed attempts.
    pub siem_backlog: IntGauge,
    pub siem_failures: prometheus::IntCounter,
    /// Per link (label `link`: the links recorded, a bounded set): its recorded state (1 for
    /// the state it is in, 0 for the others), and the worse end's probe figures.
    pub link_state: prometheus::IntGaugeVec,
    pub link_rtt: prometheus::GaugeVec,
    pub link_loss: prometheus::GaugeVec,
    pub link_jitter: prometheus::GaugeVec,
    /// From SNMP where a device is polled: bytes/s by `direction` (`in`, `out`; base units, as
    /// Prometheus wants), utilisation of
    /// the busier direction, input errors per second.
    pub link_bytes: prometheus::GaugeVec,
    pub link_utilisation: prometheus::GaugeVec,
    pub link_errors: prometheus::GaugeVec,
    /// The asset register: assets by `site`, `kind` and `status` (sites are configured, kinds and
    /// statuses fixed: bounded), licence seats by `state` (`used`, `free`), and licences
    /// expiring within the longest warning lead time (or passed).
    pub assets: prometheus::IntGaugeVec,
    pub asset_seats: prometheus::IntGaugeVec,
    pub asset_licences_expiring: IntGauge,
    /// The database clusters' roles, role changes, lag and workflows.
    pub cluster: ClusterMetrics,
    /// The controller's data directory, its disk and its certificates.
    pub process: ProcessMetrics,
    /// The services that follow the clusters.
    pub services: ServiceMetrics,
    /// The drills: runs, last success, last outage and RTO.
    pub drills: DrillMetrics,
}

pub(crate) fn float_gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::GaugeVec {
    let g = prometheus::GaugeVec::new(Opts::new(name, help), labels).expect("valid metric name");
    registry.register(Box::new(g.clone())).expect("metric registered once");
    g
}

pub(crate) fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric name");
    registry.register(Box::new(g.clone())).expect("metric registered once");
    g
}

fn histogram(registry: &Registry, name: &str, help: &str) -> Histogram {
    let buckets = vec![10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 86400.0];
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid histogram");
    registry.register(Box::new(h.clone())).expect("metric registered once");
    h
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric name");
    registry.register(Box::new(c.clone())).expect("metric registered once");
    c
}

pub(crate) fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::IntGaugeVec {
    let g = prometheus::IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric name");
    registry.register(Box::new(g.clone())).expect("metric registered once");
    g
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        // Names and label sets below are constants; registration fails only on a programming
        // error (a duplicate), which the unit test catches.
        let registry = Registry::new();
        let apply_seconds = Histogram::with_opts(
            HistogramOpts::new("triad_raft_apply_duration_seconds", "Time to apply one batch of committed entries")
                .buckets(vec![0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5]),
        )
        .expect("valid histogram");
        registry.register(Box::new(apply_seconds.clone())).expect("metric registered once");
        let grpc_requests = IntCounterVec::new(
            Opts::new("triad_grpc_requests_total", "gRPC requests served, by method and status code"),
            &["method", "code"],
        )
        .expect("valid counter");
        registry.register(Box::new(grpc_requests.clone())).expect("metric registered once");
        let commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "triad_raft_commit_duration_seconds",
                "From a proposal handed to Raft on this controller to its commit (forwarding to the leader included)",
            )
            .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0]),
        )
        .expect("valid histogram");
        registry.register(Box::new(commit_seconds.clone())).expect("metric registered once");
        let raft_leader_changes = prometheus::IntCounter::new(
            "triad_raft_leader_changes_total",
            "Times this controller saw the leader change (to another controller, or to none)",
        )
        .expect("valid counter");
        registry.register(Box::new(raft_leader_changes.clone())).expect("metric registered once");
        Metrics {
            raft_leader_changes,
            raft_log_entries: gauge(&registry, "triad_raft_log_entries", "Entries in the local log, not yet purged"),
            raft_snapshot_index: gauge(
                &registry,
                "triad_raft_snapshot_index",
                "Log index of the newest snapshot of the state (0: none)",
            ),
            raft_quorum_ack_age: float_gauge_vec(
                &registry,
                "triad_raft_quorum_ack_age_seconds",
                "Leader only: since a quorum of voters last acknowledged it",
                &[],
            ),
            raft_city_voters: gauge_vec(
                &registry,
                "triad_raft_city_voters",
                "Voting controllers recorded in each city",
                &["city"],
            ),
            raft_survives_city_loss: gauge_vec(
                &registry,
                "triad_raft_quorum_survives_city_loss",
                "1 if losing every voter of the city still leaves a majority of voters (DESIGN.md point 10)",
                &["city"],
            ),
            commit_seconds,
            cluster: ClusterMetrics::new(&registry),
            process: ProcessMetrics::new(&registry),
            services: ServiceMetrics::new(&registry),
            drills: DrillMetrics::new(&registry),
            raft_term: gauge(&registry, "triad_raft_term", "Current Raft term"),
            raft_is_leader: gauge(&registry, "triad_raft_is_leader", "1 if this controller is the Raft leader"),
            raft_leader_id: gauge(
                &registry,
                "triad_raft_leader_id",
                "Id of the leader this controller knows, 0 if none",
            ),
            raft_last_log_index: gauge(
                &registry,
                "triad_raft_last_log_index",
                "Index of the last entry in the local log",
            ),
            raft_commit_index: gauge(
                &registry,
                "triad_raft_commit_index",
                "Highest index a quorum holds (computed on the leader; followers report their applied index)",
            ),
            raft_applied_index: gauge(&registry, "triad_raft_applied_index", "Index of the last applied entry"),
            raft_voters: gauge(&registry, "triad_raft_voters", "Voters in the current membership"),
            apply_seconds,
            agents_connected: gauge(
                &registry,
                "triad_agents_connected",
                "Agents with a live stream to this controller",
            ),
            agents_up: gauge(&registry, "triad_agents_up", "Registered agents recorded as up"),
            agents_down: gauge(&registry, "triad_agents_down", "Registered agents recorded as down"),
            grpc_requests,
            db_epoch: gauge_vec(
                &registry,
                "triad_db_epoch",
                "The cluster's committed epoch (0: not adopted yet)",
                &["cluster"],
            ),
            db_paused: gauge_vec(
                &registry,
                "triad_db_paused",
                "1 while the cluster is in maintenance mode",
                &["cluster"],
            ),
            db_failover_blocked: gauge_vec(
                &registry,
                "triad_db_failover_blocked",
                "1 while automatic failover could not happen (the reason is in triadctl status)",
                &["cluster"],
            ),
            db_primary_lost: gauge_vec(
                &registry,
                "triad_db_primary_lost",
                "1 while the primary is lost and automatic failover cannot replace it: page someone",
                &["cluster"],
            ),
            workflows: {
                let c = IntCounterVec::new(
                    Opts::new("triad_workflows_total", "Workflows ended, by kind and outcome"),
                    &["kind", "outcome"],
                )
                .expect("valid counter");
                registry.register(Box::new(c.clone())).expect("metric registered once");
                c
            },
            workflow_seconds: {
                let h = prometheus::HistogramVec::new(
                    HistogramOpts::new("triad_workflow_duration_seconds", "Duration of ended workflows, by kind")
                        .buckets(vec![0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
                    &["kind"],
                )
                .expect("valid histogram");
                registry.register(Box::new(h.clone())).expect("metric registered once");
                h
            },
            alerts_received: counter_vec(
                &registry,
                "triad_alerts_received_total",
                "Alert events accepted (synced to the controller's intake journal), by configured source",
                &["source"],
            ),
            alerts_intake_backlog: gauge(
                &registry,
                "triad_alerts_intake_backlog",
                "Alert events this controller accepted that are not yet in the replicated log",
            ),
            alerts_rejected: counter_vec(
                &registry,
                "triad_alerts_rejected_total",
                "Alert ingest requests refused (nothing stored), by source (`unknown` before authentication) and reason",
                &["source", "reason"],
            ),
            alerts_ingested: counter_vec(
                &registry,
                "triad_alerts_ingested_total",
                "Alert events by what deduplication made of them: new, repeated (deduplicated), reopened, resolved, ignored, silenced",
                &["outcome"],
            ),
            alerts_open: gauge_vec(
                &registry,
                "triad_alerts_open",
                "Alerts not closed, by severity, status (open, acknowledged) and site (`none`: not known, `other`: not a recorded site)",
                &["severity", "status", "site"],
            ),
            notifications_pending: gauge(&registry, "triad_alerts_notifications_pending", "Notifications decided, not yet delivered"),
            notifications_failed: gauge(
                &registry,
                "triad_alerts_notifications_given_up",
                "Notifications whose every delivery attempt failed (kept in the state)",
            ),
            alerts_ack_seconds: histogram(
                &registry,
                "triad_alerts_time_to_acknowledge_seconds",
                "From an alert's opening to its acknowledgement",
            ),
            alerts_resolve_seconds: histogram(
                &registry,
                "triad_alerts_time_to_resolve_seconds",
                "From an alert's opening to its resolution or false-positive mark",
            ),
            siem_backlog: gauge(&registry, "triad_siem_backlog", "Audited events not yet sent to the SIEM (on the leader)"),
            link_state: gauge_vec(
                &registry,
                "triad_link_state",
                "1 for the state a link is recorded in (up, degraded, down, unknown), 0 for the others",
                &["link", "state"],
            ),
            link_rtt: float_gauge_vec(&registry, "triad_link_rtt_seconds", "Mean probe round trip, worse end", &["link"]),
            link_loss: float_gauge_vec(&registry, "triad_link_loss_ratio", "Probes lost over the window, worse end, 0 to 1", &["link"]),
            link_jitter: float_gauge_vec(
                &registry,
                "triad_link_jitter_seconds",
                "Mean difference between successive probe round trips, worse end",
                &["link"],
            ),
            link_bytes: float_gauge_vec(
                &registry,
                "triad_link_bytes_per_second",
                "Traffic on the link's interface (SNMP ifHCInOctets/ifHCOutOctets), busier end",
                &["link", "direction"],
            ),
            link_utilisation: float_gauge_vec(
                &registry,
                "triad_link_utilisation_ratio",
                "Busier direction against the interface speed or the link's capacity (SNMP), 0 to 1",
                &["link"],
            ),
            link_errors: float_gauge_vec(
                &registry,
                "triad_link_errors_per_second",
                "Input errors on the link's interface (SNMP ifInErrors), worse end",
                &["link"],
            ),
            assets: gauge_vec(&registry, "triad_asset_records", "Assets in the register, by site, kind and status", &["site", "kind", "status"]),
            asset_seats: gauge_vec(&registry, "triad_asset_licence_seats", "Licence seats over every licence, by state (used, free)", &["state"]),
            asset_licences_expiring: gauge(
                &registry,
                "triad_asset_licences_expiring",
                "Licences expiring within the longest warning lead time (inventory.warn_days), or expired",
            ),
            siem_failures: {
                let c = prometheus::IntCounter::new("triad_siem_send_failures_total", "Failed attempts to reach or write to the SIEM")
                    .expect("valid counter");
                registry.register(Box::new(c.clone())).expect("metric registered once");
                c
            },
            notifications: counter_vec(
                &registry,
                "triad_alerts_notifications_total",
                "Notifications delivered (outcome sent) or given up after every retry (outcome failed), by channel",
                &["channel", "outcome"],
            ),
            registry,
        }
    }

    /// Counts one gRPC request.
    pub fn rpc<T>(&self, method: &str, result: &Result<T, tonic::Status>) {
        let code = match result {
            Ok(_) => "Ok".to_string(),
            Err(s) => format!("{:?}", s.code()),
        };
        self.grpc_requests.with_label_values(&[method, &code]).inc();
    }

    /// Creates the counters whose label values are known ahead at 0 (every workflow kind and
    /// outcome, the configured alert sources and notification channels), so that a rate over
    /// them is 0 rather than no data before the first event.
    pub fn init_counters(&self, sources: &[&str], channels: &[&str]) {
        for kind in crate::state::WorkflowKind::ALL {
            for outcome in WORKFLOW_OUTCOMES {
                self.workflows.with_label_values(&[kind.as_str(), outcome]);
            }
        }
        for source in sources {
            self.alerts_received.with_label_values(&[source]);
        }
        for channel in channels {
            for outcome in ["sent", "failed"] {
                self.notifications.with_label_values(&[channel, outcome]);
            }
        }
        self.raft_leader_changes.inc_by(0);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn metrics_register_and_render() {
        let m = super::Metrics::new();
        m.raft_term.set(3);
        m.init_counters(&["wazuh"], &["sms"]);
        m.rpc::<()>("Control/State", &Ok(()));
        let text = m.render();
        assert!(text.contains("triad_raft_term 3"));
        assert!(text.contains("triad_grpc_requests_total{code=\"Ok\",method=\"Control/State\"} 1"));
        // Counters whose labels are known ahead exist before the first event, so a dashboard's
        // query returns a zero rather than nothing.
        assert!(text.contains("triad_workflows_total{kind=\"failover\",outcome=\"failed\"} 0"), "{text}");
        assert!(text.contains("triad_alerts_received_total{source=\"wazuh\"} 0"));
        assert!(text.contains("triad_alerts_notifications_total{channel=\"sms\",outcome=\"sent\"} 0"));
    }
}
