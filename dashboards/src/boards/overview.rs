//! The NOC overview: the controllers and their quorum, the cluster's roles, lag and last role
//! change, the links between the sites and the open alerts, on one screen.

use super::{link_state, link_state_mappings, OPEN_ALERTS};
use crate::builder::{bars, stat, timeline, timeseries, Board};
use crate::model::Dashboard;

pub fn dashboard() -> Dashboard {
    let mut b = Board::new(
        "triad-noc-overview",
        "Triad / NOC overview",
        "The three sites at a glance: who leads the controllers, which member of the cluster is primary and since \
         when, how far behind the standbys are, the links between the sites and the open alerts.",
    )
    .variable("cluster", "Cluster", "triad_db_epoch", false);
    controllers(&mut b);
    cluster(&mut b);
    links(&mut b);
    alerts(&mut b);
    b.finish()
}

fn controllers(b: &mut Board) {
    b.row("Controllers");
    b.add(
        stat(
            "Leader",
            "The controller leading the Raft group (scrape target name and site). No value: no quorum, so no \
             role can change and no lease is granted.",
            "none",
        )
        .q("max by (name, site) (triad_raft_is_leader) == 1", "{{name}} ({{site}})")
        .show_name(),
    );
    b.add(stat("Raft term", "The Raft term; it rises at every election.", "none").q("max(triad_raft_term)", "term"));
    b.add(
        stat("Voters", "Voting controllers in the membership.", "none")
            .q("max(triad_raft_voters)", "voters")
            .base("red")
            .threshold(3.0, "green"),
    );
    b.add(
        stat(
            "Quorum acknowledged",
            "Since a quorum of voters last acknowledged the leader. Over a few seconds the leader is cut off from \
             its quorum and will step down.",
            "s",
        )
        .q("max(triad_raft_quorum_ack_age_seconds)", "leader")
        .threshold(2.0, "orange")
        .threshold(5.0, "red"),
    );
    b.add(
        stat(
            "Quorum if a city is lost",
            "For each city: would the controllers left after losing all of it still hold a majority? `no quorum`: \
             losing that city needs break-glass to fail over (runbooks/break-glass.md); add a witness elsewhere.",
            "none",
        )
        .q("min by (city) (triad_raft_quorum_survives_city_loss)", "{{city}}")
        .map("1", "survives", "green")
        .map("0", "no quorum", "red")
        .text_mode("value_and_name")
        .size(8, 4),
    );
}

fn cluster(b: &mut Board) {
    b.row("Cluster $cluster");
    b.add(
        stat("Primary", "The member the replicated state records as primary, and its site.", "none")
            .q(
                r#"max by (member, site) (triad_db_member_role{cluster="$cluster",role="primary"}) == 1"#,
                "{{member}} ({{site}})",
            )
            .show_name(),
    );
    b.add(
        stat(
            "Primary since",
            "When the current primary became primary (adoption or the last role change).",
            "dateTimeFromNow",
        )
        .q(r#"max(triad_db_primary_since_timestamp_seconds{cluster="$cluster"}) * 1000"#, "since"),
    );
    b.add(
        stat("Epoch", "The cluster's epoch: every role change raises it.", "none")
            .q(r#"max(triad_db_epoch{cluster="$cluster"})"#, "epoch"),
    );
    b.add(
        stat(
            "Write outage, last role change",
            "From the old primary's last canary row to the new primary's first: what writers saw.",
            "s",
        )
        .q(r#"max(triad_db_last_write_outage_seconds{cluster="$cluster"})"#, "outage")
        .map("-1", "not measured", "text")
        .threshold(5.0, "orange")
        .threshold(30.0, "red"),
    );
    b.add(
        stat(
            "Synchronous standbys",
            "Members recorded as holding every commit. 0: a failover could lose commits, so automatic failover is off.",
            "none",
        )
        .q(r#"max(triad_db_synchronous_members{cluster="$cluster"})"#, "synchronous")
        .map("0", "none", "red"),
    );
    b.add(
        stat(
            "Automatic failover",
            "Primary lost (nothing safe can replace it: page), blocked (the reason is in triadctl status), paused \
             (maintenance mode).",
            "none",
        )
        .q(r#"max(triad_db_primary_lost{cluster="$cluster"})"#, "primary lost")
        .q(r#"max(triad_db_failover_blocked{cluster="$cluster"})"#, "blocked")
        .q(r#"max(triad_db_paused{cluster="$cluster"})"#, "paused")
        .map("0", "no", "green")
        .map("1", "YES", "red")
        .text_mode("value_and_name"),
    );
    b.add(
        timeline("Member roles", "Each member's recorded role over time: a role change shows as a swap.", "none")
            .q(
                r#"max by (member) (2 * triad_db_member_role{cluster="$cluster",role="primary"} + ignoring(role) triad_db_member_role{cluster="$cluster",role="synchronous"})"#,
                "{{member}}",
            )
            .map("2", "primary", "blue")
            .map("1", "synchronous", "green")
            .map("0", "asynchronous", "yellow"),
    );
    b.add(
        timeline("Workflow running", "The role change, rejoin or restart under way on the cluster, if any.", "none")
            .q(r#"max by (kind) (triad_workflow_running{cluster="$cluster"})"#, "{{kind}}")
            .map("1", "running", "blue")
            .map("0", "idle", "transparent"),
    );
    b.add(
        timeseries(
            "Standby lag (bytes)",
            "WAL each standby has not flushed or replayed, from the primary's report.",
            "bytes",
        )
        .q(r#"max by (member, kind) (triad_db_standby_lag_bytes{cluster="$cluster"})"#, "{{member}} {{kind}}"),
    );
    b.add(
        timeseries("Standby lag (time)", "Each standby's replay lag in time, from the primary's report.", "s")
            .q(r#"max by (member) (triad_db_standby_lag_seconds{cluster="$cluster"})"#, "{{member}}"),
    );
    b.add(
        timeseries(
            "Canary age",
            "Age of the newest canary row each member reads (the primary writes one every 100 ms): on the primary, \
             writes are not landing when it grows; on a standby it is the data's age there.",
            "s",
        )
        .q(r#"max by (member) (triad_db_canary_age_seconds{cluster="$cluster"})"#, "{{member}}"),
    );
    b.add(
        timeline("Synchronous state", "Whether the primary reports each standby synchronous.", "none")
            .q(r#"max by (member) (triad_db_standby_sync{cluster="$cluster"})"#, "{{member}}")
            .map("1", "sync", "green")
            .map("0", "async", "yellow"),
    );
}

fn links(b: &mut Board) {
    b.row("Links between the sites");
    b.add(
        link_state_mappings(
            timeline("Link state", "Each link's recorded state (runbooks/link-down.md).", "none")
                .q(&link_state(""), "{{link}}"),
        )
        .size(8, 8),
    );
    b.add(
        timeseries("Link round trip", "Mean probe round trip over 10 s, the worse end.", "s")
            .q("max by (link) (triad_link_rtt_seconds)", "{{link}}")
            .size(8, 8),
    );
    b.add(
        timeseries("Link loss", "Probes lost over 10 s, the worse end.", "percentunit")
            .q("max by (link) (triad_link_loss_ratio)", "{{link}}")
            .size(8, 8),
    );
}

fn alerts(b: &mut Board) {
    b.row("Alerts");
    b.add(
        bars("Open alerts by severity", "Alerts not closed (open or acknowledged), by severity.", "none")
            .q(&format!("sum by (severity) ({OPEN_ALERTS})"), "{{severity}}"),
    );
    b.add(
        bars("Open alerts by site", "Alerts not closed, by the site they concern (`none`: not placed).", "none")
            .q(&format!("sum by (site) ({OPEN_ALERTS})"), "{{site}}"),
    );
    b.add(
        bars("Critical alerts by site", "Critical alerts not closed, by site.", "none")
            .q(
                r#"sum by (site) (max by (severity, status, site) (triad_alerts_open{severity="critical"}))"#,
                "{{site}}",
            )
            .threshold(1.0, "red"),
    );
    b.add(
        stat("Critical alerts not acknowledged", "Critical alerts nobody has acknowledged yet: they escalate.", "none")
            .q(
                r#"sum(max by (severity, status, site) (triad_alerts_open{severity="critical",status="open"}))"#,
                "unacknowledged",
            )
            .threshold(1.0, "red")
            .size(6, 6),
    );
}
