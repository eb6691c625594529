//! Links: each link's state over time, its probes from both ends, and its interface counters
//! where SNMP is polled.

use super::{link_state, link_state_mappings};
use crate::builder::{timeline, timeseries, Board};
use crate::model::Dashboard;

pub fn dashboard() -> Dashboard {
    let mut b = Board::new(
        "triad-links",
        "Triad / Links",
        "The links between the sites: state over time, round trip, loss and jitter from both ends, and traffic, \
         utilisation and errors where the devices are polled over SNMP (runbooks/link-down.md).",
    )
    .variable("link", "Link", "triad_link_state", true);
    b.row("State");
    b.add(
        link_state_mappings(
            timeline("Link state", "Each link's recorded state: worse after 1 s, better after 5 s.", "none")
                .q(&link_state(r#"link=~"$link""#), "{{link}}"),
        )
        .size(24, 6),
    );
    b.row("Probes (the worse end)");
    b.add(
        timeseries("Round trip", "Mean probe round trip over 10 s.", "s")
            .q(r#"max by (link) (triad_link_rtt_seconds{link=~"$link"})"#, "{{link}}")
            .size(8, 8),
    );
    b.add(
        timeseries("Loss", "Probes lost over 10 s.", "percentunit")
            .q(r#"max by (link) (triad_link_loss_ratio{link=~"$link"})"#, "{{link}}")
            .size(8, 8),
    );
    b.add(
        timeseries("Jitter", "Mean difference between successive round trips.", "s")
            .q(r#"max by (link) (triad_link_jitter_seconds{link=~"$link"})"#, "{{link}}")
            .size(8, 8),
    );
    b.row("Probes from each end");
    b.add(
        timeseries("Round trip from each end", "Each agent's own view of the link.", "s")
            .q(r#"max by (link, site) (triad_link_probe_rtt_seconds{link=~"$link"})"#, "{{link}} from {{site}}")
            .size(8, 8),
    );
    b.add(
        timeseries("Since the last answer", "Since each end last heard the other: a cut link grows here first.", "s")
            .q(r#"max by (link, site) (triad_link_probe_silence_seconds{link=~"$link"})"#, "{{link}} from {{site}}")
            .size(8, 8),
    );
    b.add(
        timeline(
            "TCP echo",
            "Whether each end's last TCP echo was answered (a firewall may pass UDP and not TCP).",
            "none",
        )
        .q(r#"min by (link, site) (triad_link_probe_tcp_up{link=~"$link"})"#, "{{link}} from {{site}}")
        .map("1", "answered", "green")
        .map("0", "no answer", "red")
        .size(8, 8),
    );
    b.row("Interfaces (SNMP)");
    b.add(
        timeseries("Traffic", "Bytes per second on the link's interface, busier end, by direction.", "Bps")
            .q(r#"max by (link, direction) (triad_link_bytes_per_second{link=~"$link"})"#, "{{link}} {{direction}}")
            .size(8, 8),
    );
    b.add(
        timeseries(
            "Utilisation",
            "Busier direction against the interface speed or the link's capacity.",
            "percentunit",
        )
        .q(r#"max by (link) (triad_link_utilisation_ratio{link=~"$link"})"#, "{{link}}")
        .size(8, 8),
    );
    b.add(
        timeseries("Input errors", "Input errors per second on the link's interface, worse end.", "cps")
            .q(r#"max by (link) (triad_link_errors_per_second{link=~"$link"})"#, "{{link}}")
            .size(8, 8),
    );
    b.finish()
}
