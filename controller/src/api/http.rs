//! The controller's plain HTTP endpoints: `/metrics` for Prometheus, `/healthz` (the process is
//! serving) and `/readyz` (a leader is known, so writes can be made).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::context::Ctx;
use crate::error::{Error, Result};

async fn metrics(State(ctx): State<Arc<Ctx>>) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    (StatusCode::OK, [("content-type", "text/plain; version=0.0.4")], ctx.metrics.render())
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(ctx): State<Arc<Ctx>>) -> (StatusCode, String) {
    match ctx.leader() {
        (Some(id), _) => (StatusCode::OK, format!("ready: leader is controller {id}\n")),
        (None, _) => (StatusCode::SERVICE_UNAVAILABLE, "not ready: no leader known\n".into()),
    }
}

/// Serves HTTP on `listener` until `shutdown` resolves.
pub async fn serve(
    ctx: Arc<Ctx>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(ctx);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await.map_err(|e| Error::io("http server", e))
}
