//! Controller health: leadership and elections, commit and apply latency, the log and its
//! snapshots, the agents and the API, the disk and the certificates.

use crate::builder::{bars, timeline, timeseries, Board};
use crate::model::Dashboard;

/// The median and 99th percentile of a histogram, per controller.
fn latency(title: &str, description: &str, histogram: &str) -> crate::builder::PanelSpec {
    let q = |p: f64| format!("histogram_quantile({p}, sum by (le, name) (rate({histogram}_bucket[$__rate_interval])))");
    timeseries(title, description, "s").q(&q(0.5), "{{name}} median").q(&q(0.99), "{{name}} 99th percentile")
}

pub fn dashboard() -> Dashboard {
    let mut b = Board::new(
        "triad-controller-health",
        "Triad / Controller health",
        "The controllers themselves: who leads and how often that changes, how long a write takes to commit and \
         apply, the log and its snapshots, the agents and the API, the disk and the certificates.",
    );
    b.row("Raft");
    b.add(
        timeline("Leader", "Which controller leads over time.", "none")
            .q("max by (name) (triad_raft_is_leader)", "{{name}}")
            .map("1", "leader", "blue")
            .map("0", "follower", "transparent"),
    );
    b.add(
        timeseries("Term", "Each controller's Raft term: it rises at every election.", "none")
            .q("max by (name) (triad_raft_term)", "{{name}}"),
    );
    b.add(
        timeseries(
            "Leader changes in the last hour",
            "Times each controller saw the leader change: more than a few is flapping.",
            "none",
        )
        .q("sum by (name) (increase(triad_raft_leader_changes_total[1h]))", "{{name}}"),
    );
    b.add(
        timeseries("Quorum acknowledged", "Since a quorum last acknowledged the leader.", "s")
            .q("max by (name) (triad_raft_quorum_ack_age_seconds)", "{{name}}"),
    );
    b.add(latency(
        "Commit latency",
        "From a proposal handed to Raft to its commit (a synced append on a majority).",
        "triad_raft_commit_duration_seconds",
    ));
    b.add(latency(
        "Apply latency",
        "Time to apply one batch of committed entries to the state.",
        "triad_raft_apply_duration_seconds",
    ));
    b.add(
        timeseries("Log entries", "Entries in each controller's log not yet purged behind a snapshot.", "none")
            .q("max by (name) (triad_raft_log_entries)", "{{name}}"),
    );
    b.add(
        timeseries("Applied per second", "Log entries applied per second.", "cps")
            .q("max by (name) (rate(triad_raft_applied_index[$__rate_interval]))", "{{name}}"),
    );
    b.add(
        timeseries("Snapshot index", "The log index of each controller's newest snapshot.", "none")
            .q("max by (name) (triad_raft_snapshot_index)", "{{name}}"),
    );
    b.row("Agents and API");
    b.add(
        timeseries("Agents connected", "Agents with a live stream to each controller.", "none")
            .q("max by (name) (triad_agents_connected)", "{{name}}"),
    );
    b.add(
        timeseries("Agents up and down", "Registered agents recorded up and down.", "none")
            .q("max(triad_agents_up)", "up")
            .q("max(triad_agents_down)", "down"),
    );
    b.add(
        timeseries("gRPC requests by code", "Requests served by every controller, by status code.", "reqps")
            .q("sum by (code) (rate(triad_grpc_requests_total[$__rate_interval]))", "{{code}}"),
    );
    b.add(timeseries("gRPC errors", "Requests answered with an error, by controller, method and code.", "reqps").q(
        r#"sum by (name, method, code) (rate(triad_grpc_requests_total{code!="Ok"}[$__rate_interval]))"#,
        "{{name}} {{method}} {{code}}",
    ));
    b.row("Disk and certificates");
    b.add(
        timeseries("Store size", "Bytes in each controller's data directory (log, state, snapshots).", "bytes")
            .q("max by (name) (triad_controller_store_bytes)", "{{name}}")
            .size(8, 8),
    );
    b.add(
        timeseries(
            "Disk free",
            "Free space on the filesystem holding each controller's data directory.",
            "percentunit",
        )
        .q("max by (name) (triad_controller_disk_free_bytes / triad_controller_disk_size_bytes)", "{{name}}")
        .range(0.0, 1.0)
        .size(8, 8),
    );
    b.add(
        bars("Certificates expire in", "Time left on every certificate the controllers and agents use.", "s")
            .q(
                "min by (job, name, certificate) (triad_tls_certificate_expiry_timestamp_seconds) - time()",
                "{{name}} {{certificate}}",
            )
            .base("red")
            .threshold(7.0 * 86400.0, "orange")
            .threshold(30.0 * 86400.0, "green")
            .size(8, 8),
    );
    b.finish()
}
