//! SOC alerts: what comes in and what is refused, the queue by severity and site, how fast it is
//! acknowledged and resolved, and the notifications.

use super::OPEN_ALERTS;
use crate::builder::{bars, timeseries, Board};
use crate::model::Dashboard;

/// The median and 90th percentile of a histogram over the last hour (alerts are few: a shorter
/// window would be empty most of the time).
fn quantiles(panel: crate::builder::PanelSpec, histogram: &str) -> crate::builder::PanelSpec {
    let q = |p: f64| format!("histogram_quantile({p}, max by (le) (rate({histogram}_bucket[1h])))");
    panel.q(&q(0.5), "median").q(&q(0.9), "90th percentile")
}

pub fn dashboard() -> Dashboard {
    let mut b = Board::new(
        "triad-soc-alerts",
        "Triad / SOC alerts",
        "The alert queue: what each source sends and what is refused, what is open by severity and site, how fast \
         alerts are acknowledged and resolved, and the notifications sent (runbooks/soc-triage.md).",
    );
    b.row("Intake");
    b.add(
        timeseries("Received by source", "Alert events accepted, by configured source, over every controller.", "cps")
            .q("sum by (source) (rate(triad_alerts_received_total[$__rate_interval]))", "{{source}}"),
    );
    b.add(
        timeseries(
            "Rejected by source and reason",
            "Ingest requests refused (nothing stored): a bad token, a bad payload, a full backlog.",
            "cps",
        )
        .q("sum by (source, reason) (rate(triad_alerts_rejected_total[$__rate_interval]))", "{{source}}: {{reason}}"),
    );
    b.add(
        timeseries(
            "Deduplication",
            "What deduplication made of the events: new alerts, repeats, reopened, resolved, silenced.",
            "cps",
        )
        .q("max by (outcome) (rate(triad_alerts_ingested_total[$__rate_interval]))", "{{outcome}}"),
    );
    b.add(
        timeseries("Intake backlog", "Events a controller accepted that are not yet in the replicated log.", "none")
            .q("max by (name) (triad_alerts_intake_backlog)", "{{name}}"),
    );
    b.row("Queue");
    b.add(
        bars("Open by severity", "Alerts not closed, by severity.", "none")
            .q(&format!("sum by (severity) ({OPEN_ALERTS})"), "{{severity}}"),
    );
    b.add(
        bars("Open by site", "Alerts not closed, by site (`none`: not placed; `other`: a site not recorded).", "none")
            .q(&format!("sum by (site) ({OPEN_ALERTS})"), "{{site}}"),
    );
    b.add(
        timeseries(
            "Open and acknowledged",
            "Alerts waiting for someone (open) and being worked on (acknowledged).",
            "none",
        )
        .q(&format!("sum by (status) ({OPEN_ALERTS})"), "{{status}}"),
    );
    b.add(quantiles(
        timeseries("Time to acknowledge", "From an alert's opening to its acknowledgement, over the last hour.", "s"),
        "triad_alerts_time_to_acknowledge_seconds",
    ));
    b.add(quantiles(
        timeseries(
            "Time to resolve",
            "From an alert's opening to its resolution or false-positive mark, over the last hour.",
            "s",
        ),
        "triad_alerts_time_to_resolve_seconds",
    ));
    b.row("Notifications");
    b.add(
        timeseries(
            "Notifications sent and failed",
            "Notifications delivered, and given up after every retry, by channel.",
            "cps",
        )
        .q(
            "sum by (channel, outcome) (rate(triad_alerts_notifications_total[$__rate_interval]))",
            "{{channel}} {{outcome}}",
        ),
    );
    b.add(
        timeseries("Notifications waiting", "Decided and not yet delivered, and given up (kept in the state).", "none")
            .q("max(triad_alerts_notifications_pending)", "pending")
            .q("max(triad_alerts_notifications_given_up)", "given up"),
    );
    b.finish()
}
