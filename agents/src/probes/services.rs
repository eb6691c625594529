//! Service checks (issue 20): the checks the leader's `CheckPlan` gives this agent, each run every
//! interval under its timeout, HTTP, TCP or SQL; the latest result of each, with how many in a
//! row came out the same, goes to the controllers with every heartbeat.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::AbortHandle;
use triad_proto::v1::{CheckPlan, ServiceCheck, ServiceCheckReport};

/// Most checks one agent runs; a longer plan is cut (and said so).
pub const MAX_CHECKS: usize = 512;

/// The latest outcome of one check.
#[derive(Debug, Clone)]
struct Outcome {
    ok: bool,
    latency_ms: f64,
    error: String,
    at: Instant,
    streak: u32,
}

struct Running {
    check: ServiceCheck,
    task: AbortHandle,
    latest: Arc<Mutex<Option<Outcome>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The checks this agent runs, as the leader's latest plan says.
#[derive(Default)]
pub struct Checks {
    running: Mutex<BTreeMap<(String, String), Running>>,
}

impl Checks {
    /// Replaces the plan: checks no longer in it stop, new or changed ones start afresh,
    /// unchanged ones go on.
    pub fn set_plan(&self, plan: CheckPlan) {
        let mut checks = plan.checks;
        if checks.len() > MAX_CHECKS {
            tracing::warn!("service checks: the plan names {}; running the first {MAX_CHECKS}", checks.len());
            checks.truncate(MAX_CHECKS);
        }
        let wanted: BTreeMap<(String, String), ServiceCheck> =
            checks.into_iter().map(|c| ((c.service.clone(), c.target.clone()), c)).collect();
        let mut running = self.running.lock().expect("checks lock poisoned");
        running.retain(|key, r| wanted.get(key) == Some(&r.check));
        for (key, check) in wanted {
            if running.contains_key(&key) {
                continue;
            }
            tracing::info!(service = %check.service, kind = %check.kind, target = %check.target, "checking service");
            let latest = Arc::new(Mutex::new(None));
            let task = tokio::spawn(check_forever(check.clone(), latest.clone())).abort_handle();
            running.insert(key, Running { check, task, latest });
        }
    }

    /// The latest result of every check that has run once, for the next heartbeat.
    pub fn reports(&self) -> Vec<ServiceCheckReport> {
        let running = self.running.lock().expect("checks lock poisoned");
        running
            .values()
            .filter_map(|r| {
                let o = r.latest.lock().expect("check lock poisoned").clone()?;
                Some(ServiceCheckReport {
                    service: r.check.service.clone(),
                    target: r.check.target.clone(),
                    ok: o.ok,
                    latency_ms: o.latency_ms,
                    error: o.error,
                    age_ms: o.at.elapsed().as_millis() as u64,
                    streak: o.streak,
                })
            })
            .collect()
    }
}

/// Runs `check` every interval until aborted, keeping its latest outcome in `latest`.
async fn check_forever(check: ServiceCheck, latest: Arc<Mutex<Option<Outcome>>>) {
    let interval = Duration::from_millis(u64::from(check.interval_ms.clamp(500, 600_000)));
    let timeout = Duration::from_millis(u64::from(check.timeout_ms.clamp(100, 60_000)));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let started = Instant::now();
        let result = match tokio::time::timeout(timeout, run(&check)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        };
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let mut slot = latest.lock().expect("check lock poisoned");
        let ok = result.is_ok();
        let streak = match slot.as_ref() {
            Some(prev) if prev.ok == ok => prev.streak.saturating_add(1),
            _ => 1,
        };
        if !ok && streak == 1 {
            tracing::warn!(service = %check.service, target = %check.target, "service check failed: {}", result.as_ref().err().map(String::as_str).unwrap_or(""));
        }
        *slot = Some(Outcome { ok, latency_ms, error: result.err().unwrap_or_default(), at: started, streak });
    }
}

/// One check: Ok when the service answered as a healthy one does, else why not.
pub async fn run(check: &ServiceCheck) -> Result<(), String> {
    match check.kind.as_str() {
        "http" => http(&check.target).await,
        "tcp" => tokio::net::TcpStream::connect(&check.target).await.map(drop).map_err(|e| format!("connect: {e}")),
        "sql" => sql(&check.target, &check.query, &check.expect).await,
        other => Err(format!("unknown check kind `{other}`")),
    }
}

async fn http(url: &str) -> Result<(), String> {
    // No redirects followed: a 3xx is an answer, and following one could leave the host checked.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("http client: {e}"))?;
    let status = client.get(url).send().await.map_err(|e| format!("GET {url}: {e}"))?.status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(format!("GET {url}: {status}"))
    }
}

async fn sql(conninfo: &str, query: &str, expect: &str) -> Result<(), String> {
    let (client, conn) =
        tokio_postgres::connect(conninfo, tokio_postgres::NoTls).await.map_err(|e| format!("connect: {e}"))?;
    let conn = tokio::spawn(conn);
    let result = client.simple_query(query).await.map_err(|e| format!("query: {e}"));
    drop(client);
    conn.abort();
    let first = result?.into_iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_string()),
        _ => None,
    });
    match first {
        Some(v) if v == expect => Ok(()),
        Some(v) => Err(format!("the query answered `{v}`, not `{expect}`")),
        None => Err("the query returned no row".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: &str, target: &str) -> ServiceCheck {
        ServiceCheck { service: "s".into(), kind: kind.into(), target: target.into(), ..Default::default() }
    }

    #[tokio::test]
    async fn tcp_checks_tell_a_listener_from_a_closed_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().to_string();
        assert_eq!(run(&check("tcp", &open)).await, Ok(()));
        drop(listener);
        let err = run(&check("tcp", &open)).await.unwrap_err();
        assert!(err.starts_with("connect:"), "{err}");
        assert!(run(&check("ftp", &open)).await.unwrap_err().contains("unknown check kind"));
    }

    #[tokio::test]
    async fn http_checks_want_a_2xx_or_3xx() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/ok", axum::routing::get(|| async { "fine" }))
            .route("/moved", axum::routing::get(|| async { axum::response::Redirect::temporary("/elsewhere") }))
            .route("/sick", axum::routing::get(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "no") }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        assert_eq!(run(&check("http", &format!("http://{addr}/ok"))).await, Ok(()));
        assert_eq!(run(&check("http", &format!("http://{addr}/moved"))).await, Ok(()));
        let err = run(&check("http", &format!("http://{addr}/sick"))).await.unwrap_err();
        assert!(err.contains("503"), "{err}");
    }

    #[tokio::test]
    async fn a_plan_starts_and_stops_checks_and_counts_streaks() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let checks = Checks::default();
        let mut c = check("tcp", &addr);
        (c.interval_ms, c.timeout_ms) = (500, 200);
        checks.set_plan(CheckPlan { checks: vec![c] });
        let deadline = Instant::now() + Duration::from_secs(5);
        let report = loop {
            if let Some(r) = checks.reports().into_iter().find(|r| r.streak >= 2) {
                break r;
            }
            assert!(Instant::now() < deadline, "two checks within 5 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(report.ok && report.error.is_empty(), "{report:?}");
        checks.set_plan(CheckPlan::default());
        assert!(checks.reports().is_empty(), "a check no longer planned is not reported");
    }
}
