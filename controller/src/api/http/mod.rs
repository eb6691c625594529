//! The controller's HTTP port: `/metrics` for Prometheus, `/healthz` (the process is serving),
//! `/readyz` (a leader is known, so writes can be made), and alert ingest (`ingest.rs`). Plain
//! HTTP and HTTPS on the one port (`listener.rs`).

mod ingest;
mod listener;

pub use ingest::token_digest;
pub use listener::server_config as tls_config;

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;

use crate::context::Ctx;

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

/// Serves HTTP and HTTPS (with `tls`) on `listener` until `shutdown` resolves.
pub async fn serve(
    ctx: Arc<Ctx>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    intake: crate::api::intake::Intake,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/ingest/:kind", post(ingest::ingest))
        // The ingest handler bounds its body itself, after authentication.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::Extension(intake))
        .with_state(ctx);
    listener::serve(listener, app, tls, shutdown).await
}
