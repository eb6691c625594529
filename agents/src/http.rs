//! The agent's HTTP endpoints: `/metrics`, `/healthz`, and `/status` (its links, as JSON).
//! On a database host, `/primary` and `/replica` answer 200 or 503 like HAProxy's health checks,
//! so an ordinary load balancer can send writes to the current primary.

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
}

/// 200 when the member was just observed in `role`; 503 otherwise (down, other role, no
/// database on this host, or no fresh observation).
fn role_check(s: &HttpState, role: &str) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    let db = s.db.read().expect("db lock poisoned").clone();
    match db {
        None => (StatusCode::SERVICE_UNAVAILABLE, "no database on this host\n".into()),
        Some(st) => {
            let age = crate::drivers::now_ms().saturating_sub(st.observed_ms);
            if st.up && st.role == role && age < 2_000 {
                (StatusCode::OK, format!("{} is {role}\n", st.member))
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, format!("{} is {} (observed {age} ms ago)\n", st.member, st.role))
            }
        }
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
