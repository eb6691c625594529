//! `/ingest/alertmanager`, `/ingest/wazuh`, `/ingest/generic`: alerts over HTTP(S).
//!
//! In this order, each refusal counted in `triad_alerts_rejected_total` and nothing stored:
//! - a query other than `?wait=commit`: 400;
//! - a path other than the three: 404;
//! - plain HTTP, unless `alerts.ingest_plain_http` allows it: 403;
//! - no `Authorization: Bearer TOKEN`, or a token no source holds: 401;
//! - a source's token on another format's path: 403;
//! - a body over `alerts.max_body_bytes`: 413;
//! - a body its parser refuses: 400, naming what is wrong.
//!
//! Accepted alerts go to the intake (`api/intake/`): the answer, 202, comes once they are synced
//! to this controller's journal, and they reach the replicated log in a batch moments later.
//! With `?wait=commit` the answer waits for that commit: 200 with the batch's account (or 202
//! with `"committed": false` if the log has not taken it within ten seconds; it will). 503 (send
//! again) when the journal cannot be written or holds `alerts.intake_backlog` events already.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use ring::digest::{digest, SHA256};

use super::listener::Conn;
use crate::alerts::{self, ParseError, SourceKind};
use crate::api::intake::{Intake, Receipt};
use crate::context::{now_ms, Ctx};

/// A refusal: its status, its reason for the metric, and words for the sender.
struct Refusal(StatusCode, &'static str, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(serde_json::json!({ "error": self.2 }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// SHA-256 of a token, lower-case hex: what the state stores.
pub fn token_digest(token: &str) -> String {
    // Every request hashes its token: built by hand, not by a `format!` per byte, which cost
    // more than parsing the alert.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let d = digest(&SHA256, token.as_bytes());
    let mut out = String::with_capacity(64);
    for b in d.as_ref() {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

/// The handler of `/ingest/{kind}`.
pub async fn ingest(
    State(ctx): State<Arc<Ctx>>,
    Extension(conn): Extension<Conn>,
    Extension(intake): Extension<Intake>,
    Path(kind): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match accept(&ctx, &intake, conn, (&kind, &headers, body), query.as_deref()).await {
        Ok((code, answer)) => (code, Json(answer)).into_response(),
        Err((source, refusal)) => {
            ctx.metrics.alerts_rejected.with_label_values(&[&source, refusal.1]).inc();
            if refusal.0.is_server_error() {
                tracing::warn!(%source, peer = %conn.peer, "alert ingest failed: {}", refusal.2);
            } else {
                tracing::info!(%source, peer = %conn.peer, "alert ingest refused: {}", refusal.2);
            }
            refusal.into_response()
        }
    }
}

async fn accept(
    ctx: &Arc<Ctx>,
    intake: &Intake,
    conn: Conn,
    (kind, headers, body): (&str, &HeaderMap, Body),
    query: Option<&str>,
) -> Result<(StatusCode, serde_json::Value), (String, Refusal)> {
    // Before the source is known, refusals are counted under `unknown`: a bounded label.
    let unknown = |r: Refusal| ("unknown".to_string(), r);
    // Read (bounded) before any answer: a refusal sent while the client is still sending makes
    // an HTTP/2 stream reset, which some clients (curl 7.88) report instead of the answer.
    let read = read_bounded(body, ctx.cfg.alerts.max_body_bytes).await;
    let wait_commit = match query {
        None | Some("") => false,
        Some("wait=commit") => true,
        Some(q) => {
            let why = format!("unknown query `{q}`: the one option is `?wait=commit`");
            return Err(unknown(Refusal(StatusCode::BAD_REQUEST, "bad_query", why)));
        }
    };
    let kind: SourceKind = match kind.parse() {
        Ok(k) if !matches!(k, SourceKind::Syslog | SourceKind::Triad) => k,
        _ => {
            let why = format!("no ingest path /ingest/{kind}; use alertmanager, wazuh or generic");
            return Err(unknown(Refusal(StatusCode::NOT_FOUND, "unknown_path", why)));
        }
    };
    if !conn.tls && !ctx.cfg.alerts.ingest_plain_http {
        let why = "alerts are accepted over HTTPS only (alerts.ingest_plain_http is off)".to_string();
        return Err(unknown(Refusal(StatusCode::FORBIDDEN, "plain_http", why)));
    }
    let source = authenticate(ctx, headers).map_err(unknown)?;
    let named = |r: Refusal| (source.0.clone(), r);
    if source.1 != kind {
        let why = format!("source `{}` sends {}, not {kind}: use /ingest/{}", source.0, source.1, source.1);
        return Err(named(Refusal(StatusCode::FORBIDDEN, "wrong_format", why)));
    }
    let bytes = read.map_err(|e| {
        let (code, reason) = match e {
            BodyError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            BodyError::Read(_) => (StatusCode::BAD_REQUEST, "connection_error"),
        };
        named(Refusal(code, reason, e.to_string()))
    })?;
    let now = now_ms();
    let parsed = match kind {
        SourceKind::Alertmanager => alerts::alertmanager::parse(&bytes, now),
        SourceKind::Wazuh => alerts::wazuh::parse(&bytes, now),
        _ => alerts::generic::parse(&bytes, now),
    };
    let events = parsed.map_err(|e: ParseError| named(Refusal(StatusCode::BAD_REQUEST, e.reason(), e.to_string())))?;
    let received = events.len();
    let receipt = intake.offer(&source.0, &conn.peer.to_string(), events, wait_commit).await.map_err(|e| {
        named(Refusal(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("not recorded, send again: {e}")))
    })?;
    ctx.metrics.alerts_received.with_label_values(&[&source.0]).inc_by(received as u64);
    let answer = |seq: u64| serde_json::json!({ "source": source.0, "received": received, "journal_seq": seq });
    Ok(match receipt {
        Receipt::Journaled { seq } => (StatusCode::ACCEPTED, answer(seq)),
        Receipt::Committed { seq, outcome } => {
            let mut a = answer(seq);
            a["committed"] = true.into();
            // The account of the whole batch these alerts were committed in (concurrent
            // requests share one).
            a["batch"] = outcome.into();
            (StatusCode::OK, a)
        }
        Receipt::NotYetCommitted { seq } => {
            let mut a = answer(seq);
            a["committed"] = false.into();
            (StatusCode::ACCEPTED, a)
        }
    })
}

/// Past this many bytes a refused body is no longer read to its end: the connection is cut.
const DRAIN_CAP: usize = 64 << 20;

/// The body if it is at most `limit` bytes; otherwise why not, once the rest has been read and
/// dropped (up to [`DRAIN_CAP`]).
async fn read_bounded(body: Body, limit: usize) -> Result<axum::body::Bytes, BodyError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(BodyError::Read)?;
        seen += chunk.len();
        if seen <= limit {
            buf.extend_from_slice(&chunk);
        } else if seen > DRAIN_CAP {
            break;
        }
    }
    if seen > limit {
        return Err(BodyError::TooLarge(limit));
    }
    Ok(buf.into())
}

/// Why a request's body was not taken.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("the body could not be read: {0}")]
    Read(axum::Error),
    #[error("the body is over {0} bytes")]
    TooLarge(usize),
}

/// The source whose token the request carries: its name and format.
fn authenticate(ctx: &Ctx, headers: &HeaderMap) -> Result<(String, SourceKind), Refusal> {
    let missing =
        || Refusal(StatusCode::UNAUTHORIZED, "no_token", "an `Authorization: Bearer TOKEN` header is required".into());
    let value = headers.get(header::AUTHORIZATION).ok_or_else(missing)?;
    let token = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim).ok_or_else(missing)?;
    let sha = token_digest(token);
    let state = ctx.state.read().expect("state lock poisoned");
    match state.state.source_for_token(&sha, now_ms()) {
        Some(s) => Ok((s.name.clone(), s.kind)),
        None => Err(Refusal(
            StatusCode::UNAUTHORIZED,
            "bad_token",
            "the token is not one of any alert source's (or it has expired)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_token_digest_is_lower_case_hex_sha256() {
        // SHA-256("abc"), from FIPS 180-2's examples.
        assert_eq!(super::token_digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
