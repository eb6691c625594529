//! The drills' metrics (issue 21), from the replicated state on every controller: runs by plan and
//! result, the last success (what `TriadDrillOverdue` in deploy/prometheus/rules.yml compares with
//! the plan's interval), and the last finished run's outage and RTO.

use std::collections::BTreeMap;

use prometheus::{GaugeVec, IntGaugeVec, Registry};

use super::{float_gauge_vec, gauge_vec};
use crate::state::drills::DrillRun;
use crate::state::State;

pub struct DrillMetrics {
    /// Recorded runs (the state keeps the newest 1000) by plan and result (`running` included).
    pub runs: IntGaugeVec,
    /// When the plan's newest passed run ended.
    pub last_success: GaugeVec,
    /// The plan's `required_every_days`, in seconds (plans that require none: absent).
    pub interval: GaugeVec,
    /// The newest finished run's write outage and RTO (-1: not measured).
    pub last_write_outage: GaugeVec,
    pub last_rto: GaugeVec,
}

impl DrillMetrics {
    pub fn new(r: &Registry) -> Self {
        let labels = &["plan", "cluster"];
        DrillMetrics {
            runs: gauge_vec(
                r,
                "triad_drill_runs",
                "Drill runs recorded (the newest 1000 are kept) by plan and result: passed, failed, aborted, running",
                &["plan", "cluster", "kind", "result"],
            ),
            last_success: float_gauge_vec(
                r,
                "triad_drill_last_success_timestamp_seconds",
                "When the plan's newest passed drill ended (absent: none passed)",
                labels,
            ),
            interval: float_gauge_vec(
                r,
                "triad_drill_interval_seconds",
                "How often the plan must pass (its required_every_days; absent: not required)",
                labels,
            ),
            last_write_outage: float_gauge_vec(
                r,
                "triad_drill_last_write_outage_seconds",
                "The newest finished drill's write outage, as the canary measured it (-1: not measured)",
                labels,
            ),
            last_rto: float_gauge_vec(
                r,
                "triad_drill_last_rto_seconds",
                "The newest finished drill's recovery time (a dr-test: until its copy took a write; -1: not measured)",
                labels,
            ),
        }
    }

    /// Sets every series from `state` (a plan or result gone disappears).
    pub fn export(&self, state: &State) {
        for m in [&self.last_success, &self.interval, &self.last_write_outage, &self.last_rto] {
            m.reset();
        }
        self.runs.reset();
        let mut counts: BTreeMap<(String, String, String, String), i64> = BTreeMap::new();
        let mut newest_finished: BTreeMap<&str, &DrillRun> = BTreeMap::new();
        for run in state.drill_runs.values() {
            let p = &run.plan;
            let result = run.end.as_ref().map_or("running", |e| e.result.as_str());
            *counts.entry((p.name.clone(), p.cluster.clone(), p.kind.to_string(), result.to_string())).or_default() +=
                1;
            if let Some(end) = &run.end {
                newest_finished.insert(&p.name, run);
                if end.result == crate::state::drills::DrillResult::Passed {
                    self.last_success.with_label_values(&[&p.name, &p.cluster]).set(end.at_ms as f64 / 1000.0);
                }
            }
        }
        for ((plan, cluster, kind, result), n) in counts {
            self.runs.with_label_values(&[&plan, &cluster, &kind, &result]).set(n);
        }
        let secs = |v: Option<u64>| v.map_or(-1.0, |ms| ms as f64 / 1000.0);
        for (plan, run) in newest_finished {
            let labels = [plan, run.plan.cluster.as_str()];
            self.last_write_outage.with_label_values(&labels).set(secs(run.write_outage_ms()));
            self.last_rto.with_label_values(&labels).set(secs(run.rto_ms()));
        }
        for p in state.drill_plans.values().filter(|p| p.required_every_days > 0) {
            self.interval.with_label_values(&[&p.name, &p.cluster]).set(f64::from(p.required_every_days) * 86_400.0);
        }
    }
}
