//! Replication: how far behind each standby is against its bound, the WAL rate, timelines, the
//! canary, and the role changes and fences over time.

use crate::builder::{stat, timeline, timeseries, Board, PanelSpec};
use crate::model::Dashboard;

/// `panel` with the synchronous and asynchronous bounds of `metric` drawn beside the lag.
fn with_bounds(panel: PanelSpec, metric: &str) -> PanelSpec {
    panel
        .q(&format!(r#"max({metric}{{cluster="$cluster",mode="synchronous"}})"#), "synchronous bound")
        .q(&format!(r#"max({metric}{{cluster="$cluster",mode="asynchronous"}})"#), "asynchronous bound")
}

pub fn dashboard() -> Dashboard {
    let mut b = Board::new(
        "triad-replication",
        "Triad / Replication",
        "Is every standby close enough to take over? Lag per standby against the synchronous and asynchronous \
         bounds (clusters.lag_bounds), the primary's WAL rate, timelines, the canary, role changes and fences.",
    )
    .variable("cluster", "Cluster", "triad_db_epoch", false);
    b.row("Lag per standby");
    b.add(with_bounds(
        timeseries(
            "Flush lag",
            "WAL each standby has not yet flushed to its disk, from the primary's report.",
            "bytes",
        )
        .q(r#"max by (member) (triad_db_standby_lag_bytes{cluster="$cluster",kind="flush"})"#, "{{member}}"),
        "triad_db_lag_bound_bytes",
    ));
    b.add(with_bounds(
        timeseries(
            "Replay lag",
            "WAL each standby has not yet replayed: what a promotion must replay first, from the primary's report.",
            "bytes",
        )
        .q(r#"max by (member) (triad_db_standby_lag_bytes{cluster="$cluster",kind="replay"})"#, "{{member}}"),
        "triad_db_lag_bound_bytes",
    ));
    b.add(with_bounds(
        timeseries("Replay lag in time", "Each standby's replay lag in time, from the primary's report.", "s")
            .q(r#"max by (member) (triad_db_standby_lag_seconds{cluster="$cluster"})"#, "{{member}}"),
        "triad_db_lag_bound_seconds",
    ));
    b.add(
        timeseries(
            "Replay delay, as each standby sees it",
            "Age of the last transaction each standby replayed, from its own agent (idle primaries make it grow).",
            "s",
        )
        .q(r#"max by (member) (triad_db_replay_delay_seconds{cluster="$cluster"} >= 0)"#, "{{member}}"),
    );
    b.row("WAL, timelines, canary");
    b.add(
        timeseries("WAL rate", "WAL written per second on the primary: how fast the standbys must follow.", "Bps").q(
            r#"max by (member) (rate(triad_db_wal_position_bytes{cluster="$cluster"}[$__rate_interval]) and on (cluster, member) (triad_db_is_primary == 1))"#,
            "{{member}}",
        ),
    );
    b.add(
        timeseries("Timeline", "Each member's timeline: a promotion starts a new one.", "none")
            .q(r#"max by (member) (triad_db_timeline{cluster="$cluster"})"#, "{{member}}"),
    );
    b.add(
        timeseries("Canary delay", "Age of the newest canary row each member reads.", "s")
            .q(r#"max by (member) (triad_db_canary_age_seconds{cluster="$cluster"})"#, "{{member}}"),
    );
    b.add(
        timeline("Synchronous standbys", "How many members hold every commit (0: automatic failover is off).", "none")
            .q(r#"max(triad_db_synchronous_members{cluster="$cluster"})"#, "synchronous")
            .map("0", "none", "red")
            .map("1", "one", "green"),
    );
    b.row("Role changes and fences");
    b.add(timeseries("Role changes in the last hour", "Switchovers and failovers that ended, by outcome.", "none").q(
        r#"max by (kind, outcome) (increase(triad_workflows_total{kind=~"switchover|failover"}[1h]))"#,
        "{{kind}} {{outcome}}",
    ));
    b.add(
        timeseries(
            "Fences in the last hour",
            "Times an agent stopped its primary to honour the lease, by reason.",
            "none",
        )
        .q("sum by (site, reason) (increase(triad_agent_fences_total[1h]))", "{{site}} {{reason}}"),
    );
    b.add(
        stat("Last switchover", "When a switchover last changed the primary.", "dateTimeFromNow")
            .q(
                r#"max(triad_db_last_role_change_timestamp_seconds{cluster="$cluster",kind="switchover"}) * 1000"#,
                "switchover",
            )
            .map("0", "never", "text")
            .size(6, 4),
    );
    b.add(
        stat("Last failover", "When a failover last changed the primary.", "dateTimeFromNow")
            .q(
                r#"max(triad_db_last_role_change_timestamp_seconds{cluster="$cluster",kind="failover"}) * 1000"#,
                "failover",
            )
            .map("0", "never", "text")
            .size(6, 4),
    );
    b.finish()
}
