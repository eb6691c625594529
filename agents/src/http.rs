//! The agent's HTTP endpoints: `/metrics`, `/healthz`, and `/status` (its links, as JSON).
//! `/primary` and `/replica` join them with the database driver.

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
}

async fn metrics(State(s): State<HttpState>) -> ([(&'static str, &'static str); 1], String) {
    (
        [("content-type", "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

async fn status(
    State(s): State<HttpState>,
) -> Json<std::collections::BTreeMap<String, LinkStatus>> {
    Json(s.links.status.lock().expect("links lock poisoned").clone())
}

/// Serves until the process exits.
pub async fn serve(listener: TcpListener, state: HttpState) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/status", get(status))
        .with_state(state);
    axum::serve(listener, app).await
}
