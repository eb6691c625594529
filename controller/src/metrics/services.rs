//! The services' metrics: the recorded health of each (every controller, from the state) and,
//! on the leader, whether each instance answers its checks and how fast.

use std::collections::BTreeMap;

use prometheus::{GaugeVec, IntGaugeVec, Registry};

use super::{float_gauge_vec, gauge_vec};
use crate::brain::services::Assessment;
use crate::context::Ctx;
use crate::state::services::ServiceHealth;

pub struct ServiceMetrics {
    /// 1 for the health a service is recorded in, 0 for the others.
    pub health: IntGaugeVec,
    /// Leader only: 1 while an instance answers its checks.
    pub instance_up: IntGaugeVec,
    /// Leader only: the latest check's duration.
    pub check_seconds: GaugeVec,
}

impl ServiceMetrics {
    pub fn new(r: &Registry) -> Self {
        ServiceMetrics {
            health: gauge_vec(
                r,
                "triad_service_health",
                "1 for the health a service is recorded in (up, degraded, down, unknown), 0 for the others",
                &["service", "cluster", "health"],
            ),
            instance_up: gauge_vec(
                r,
                "triad_service_instance_up",
                "Leader only: 1 while the service's instance at the site answers its checks",
                &["service", "site"],
            ),
            check_seconds: float_gauge_vec(
                r,
                "triad_service_check_duration_seconds",
                "Leader only: how long the instance's latest check took",
                &["service", "site"],
            ),
        }
    }
}

/// Every service's recorded health, and on the leader its instances as `assessed` found them.
pub fn export_services(ctx: &Ctx, assessed: &BTreeMap<String, Assessment>) {
    let m = &ctx.metrics.services;
    m.health.reset();
    m.instance_up.reset();
    m.check_seconds.reset();
    {
        let g = ctx.state.read().expect("state lock poisoned");
        for (name, s) in &g.state.services {
            for h in ServiceHealth::ALL {
                m.health.with_label_values(&[name, &s.spec.cluster, h.as_str()]).set((s.health == *h) as i64);
            }
        }
    }
    if !ctx.is_leader() {
        return;
    }
    for (name, a) in assessed {
        for i in &a.instances {
            m.instance_up.with_label_values(&[name, &i.site]).set((i.answering == Some(true)) as i64);
            if let Some(ms) = i.latency_ms {
                m.check_seconds.with_label_values(&[name, &i.site]).set(ms / 1000.0);
            }
        }
    }
}
