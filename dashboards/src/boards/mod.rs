//! Triad's five dashboards, one file each: what each answers is in `runbooks/noc-dashboards.md`.
//!
//! Series that every controller exports alike (from the replicated state) are taken with `max by`
//! so that three controllers show as one; counters a controller counts for itself are summed.

mod health;
mod links;
mod overview;
mod replication;
mod soc;

use crate::model::Dashboard;

/// Every dashboard, each with the file name it is written to.
pub fn all() -> Vec<(&'static str, Dashboard)> {
    vec![
        ("noc-overview.json", overview::dashboard()),
        ("replication.json", replication::dashboard()),
        ("links.json", links::dashboard()),
        ("soc-alerts.json", soc::dashboard()),
        ("controller-health.json", health::dashboard()),
    ]
}

/// One series per link whose value is its recorded state: 0 up, 1 degraded, 2 down, 3 unknown
/// (the controllers export one 0/1 series per state). `selector` narrows the links.
fn link_state(selector: &str) -> String {
    let s = |state: &str| {
        let sel =
            if selector.is_empty() { format!("state=\"{state}\"") } else { format!("{selector},state=\"{state}\"") };
        format!("triad_link_state{{{sel}}}")
    };
    format!(
        "max by (link) ({} + ignoring(state) (2 * {}) + ignoring(state) (3 * {}))",
        s("degraded"),
        s("down"),
        s("unknown")
    )
}

/// The value mappings of [`link_state`].
fn link_state_mappings(p: crate::builder::PanelSpec) -> crate::builder::PanelSpec {
    p.map("0", "up", "green").map("1", "degraded", "orange").map("2", "down", "red").map("3", "unknown", "purple")
}

/// The open alerts (not closed) as one set, whichever controller is asked.
const OPEN_ALERTS: &str = "max by (severity, status, site) (triad_alerts_open)";
