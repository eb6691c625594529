//! The agent's HTTP endpoints: `/metrics`, `/healthz`, and `/status` (its links, as JSON).
//! On a database host, `/primary` and `/replica` answer 200 or 503 like HAProxy's health checks,
//! so an ordinary load balancer can send writes to the current primary. `/primary` says 200 only
//! for the primary the controllers name: observed running as a primary, the accepted target state
//! making it the primary at the persisted epoch, and a lease held at that epoch; so a server that
//! is about to be fenced, or one left over from an older epoch, never draws writes.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;

use crate::link::{LinkStatus, Links};
use crate::metrics::AgentMetrics;

/// What the handlers share.
#[derive(Clone)]
pub struct HttpState {
    pub links: Arc<Links>,
    pub metrics: Arc<AgentMetrics>,
    pub db: Arc<std::sync::RwLock<Option<triad_proto::v1::DbStatus>>>,
    pub target: Arc<crate::safety::target::Target>,
    pub lease: Arc<crate::safety::lease::Lease>,
}

/// An observation older than this is no answer.
const FRESH_MS: u64 = 2_000;

/// `/primary`'s verdict from the observation, the accepted target state, the persisted epoch and
/// the lease (milliseconds left at that epoch): `Ok` with the body for a 200, `Err` with the
/// reason for a 503. A 200 needs the controllers' word at a persisted epoch: a member the agent
/// knows nothing about (a cluster not adopted yet, a state directory lost) draws no writes.
fn primary_verdict(
    db: &triad_proto::v1::DbStatus,
    now_ms: u64,
    target: Option<&triad_proto::v1::Assignment>,
    epoch: Option<u64>,
    lease_left_ms: i64,
) -> Result<String, String> {
    let (member, age) = (&db.member, now_ms.saturating_sub(db.observed_ms));
    if !(db.up && db.role == "primary" && age < FRESH_MS) {
        return Err(format!("{member} is {} (observed {age} ms ago)", db.role));
    }
    let Some(epoch) = epoch else {
        return Err(format!("{member}: its epoch file is unreadable (fenced)"));
    };
    match target {
        Some(t) if t.role == "primary" && t.epoch == epoch => {}
        Some(t) => {
            return Err(format!("{member} runs as a primary but epoch {} makes `{}` the primary", t.epoch, t.primary))
        }
        None => {
            return Err(format!(
                "{member} runs as a primary, but the controllers have named no primary to this agent \
                 (not adopted yet, or no target state received)"
            ))
        }
    }
    if lease_left_ms <= 0 {
        return Err(format!("{member} holds no lease at epoch {epoch}: it is being fenced"));
    }
    Ok(format!("{member} is primary at epoch {epoch} (lease {lease_left_ms} ms left)"))
}

/// 200 when the member was just observed in `role` (and, for `primary`, is the one the
/// controllers name, under lease); 503 otherwise (down, other role, no database on this host, no
/// fresh observation, another primary named, no lease).
fn role_check(s: &HttpState, role: &str) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    let db = s.db.read().expect("db lock poisoned").clone();
    let Some(st) = db else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no database on this host\n".into());
    };
    let now = crate::drivers::now_ms();
    let verdict = if role == "primary" {
        let epoch = s.target.epoch();
        let lease = s.lease.snapshot();
        let left = epoch.map(|e| lease.remaining_ms(e, crate::safety::lease::boot_ms())).unwrap_or(-1);
        primary_verdict(&st, now, s.target.current().as_ref(), epoch, left)
    } else {
        let age = now.saturating_sub(st.observed_ms);
        if st.up && st.role == role && age < FRESH_MS {
            Ok(format!("{} is {role}", st.member))
        } else {
            Err(format!("{} is {} (observed {age} ms ago)", st.member, st.role))
        }
    };
    match verdict {
        Ok(body) => (StatusCode::OK, format!("{body}\n")),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

async fn metrics(State(s): State<HttpState>) -> ([(&'static str, &'static str); 1], String) {
    ([("content-type", "text/plain; version=0.0.4")], s.metrics.render())
}

async fn status(State(s): State<HttpState>) -> Json<std::collections::BTreeMap<String, LinkStatus>> {
    Json(s.links.status.lock().expect("links lock poisoned").clone())
}

/// Serves until the process exits.
pub async fn serve(listener: TcpListener, state: HttpState) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/status", get(status))
        .route("/primary", get(|State(s): State<HttpState>| async move { role_check(&s, "primary") }))
        .route("/replica", get(|State(s): State<HttpState>| async move { role_check(&s, "standby") }))
        .with_state(state);
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use triad_proto::v1::{Assignment, DbStatus};

    fn observed(role: &str, at: u64) -> DbStatus {
        DbStatus { member: "dc".into(), up: true, role: role.into(), observed_ms: at, ..Default::default() }
    }

    fn named(role: &str, primary: &str, epoch: u64) -> Assignment {
        Assignment { role: role.into(), primary: primary.into(), epoch, member: "dc".into(), ..Default::default() }
    }

    #[test]
    fn only_the_named_primary_under_lease_draws_writes() {
        let p = named("primary", "dc", 3);
        let ok = primary_verdict(&observed("primary", 10_000), 10_100, Some(&p), Some(3), 900);
        assert!(ok.is_ok_and(|b| b.contains("epoch 3")));
        // Not adopted yet (or the agent's state lost): the server's own word is not enough.
        let why = primary_verdict(&observed("primary", 10_000), 10_100, None, Some(0), -1).expect_err("a 503");
        assert!(why.contains("named no primary"), "{why}");
    }

    #[test]
    fn every_reason_for_a_503() {
        let p = named("primary", "dc", 3);
        let why = |r: Result<String, String>| r.expect_err("a 503");
        assert!(
            why(primary_verdict(&observed("standby", 10_000), 10_100, Some(&p), Some(3), 900)).contains("is standby")
        );
        assert!(why(primary_verdict(&observed("primary", 7_000), 10_100, Some(&p), Some(3), 900)).contains("ms ago"));
        assert!(why(primary_verdict(&observed("primary", 10_000), 10_100, Some(&p), None, 900)).contains("unreadable"));
        let stale = named("standby", "ndc", 4);
        assert!(why(primary_verdict(&observed("primary", 10_000), 10_100, Some(&stale), Some(4), 900))
            .contains("makes `ndc` the primary"));
        assert!(
            why(primary_verdict(&observed("primary", 10_000), 10_100, None, Some(3), 900)).contains("named no primary")
        );
        assert!(why(primary_verdict(&observed("primary", 10_000), 10_100, Some(&p), Some(3), -1)).contains("no lease"));
    }
}
