//! The NOC's dashboards and alerting rules against real peers: a running `triadctl demo` (real
//! PostgreSQL), Debian's Prometheus scraping it with the configuration `triadctl prometheus
//! scrape-config` generates and the shipped rules, and Debian's Alertmanager with the shipped
//! configuration pointed at the demo. Every query of every committed dashboard must return data;
//! a switchover must show in the role-change annotation's source; a rule's alert must reach
//! Triad's own queue through Alertmanager; `promtool check metrics` must pass on every endpoint.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use triad_tests::prometheus::Prometheus;
use triad_tests::running_demo::RunningDemo;
use triad_tests::{bin, wait_for};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The shipped Alertmanager example, pointed at the demo: its three controller URLs, the token
/// file and the CA replaced; everything else (routes, grouping, TLS name) as shipped.
fn alertmanager_config(demo: &RunningDemo, token_file: &Path) -> Result<String> {
    let mut text = std::fs::read_to_string(repo().join("deploy/alertmanager/alertmanager.yml"))?;
    let controllers = demo.doc["controllers"].as_array().context("controllers")?;
    for (placeholder, c) in ["10.1.0.11:7401", "10.2.0.11:7401", "10.3.0.11:7401"].iter().zip(controllers) {
        ensure!(text.contains(placeholder), "the shipped config no longer names {placeholder}");
        text = text.replace(placeholder, c["http_addr"].as_str().context("http_addr")?);
    }
    let ca = demo.doc["ingest_ca"].as_str().context("ingest_ca")?;
    for (from, to) in
        [("/etc/alertmanager/triad-ingest.token", token_file.to_str().context("path")?), ("/etc/triad/ca.pem", ca)]
    {
        ensure!(text.contains(from), "the shipped config no longer names {from}");
        text = text.replace(from, to);
    }
    Ok(text)
}

struct Alertmanager(std::process::Child, String);

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_alertmanager(dir: &Path, config: &str) -> Result<Alertmanager> {
    std::fs::create_dir_all(dir.join("data"))?;
    std::fs::write(dir.join("alertmanager.yml"), config)?;
    let check = std::process::Command::new("amtool").arg("check-config").arg(dir.join("alertmanager.yml")).output()?;
    ensure!(check.status.success(), "amtool check-config: {}", String::from_utf8_lossy(&check.stdout));
    let addr = format!("127.0.0.1:{}", triad_controller::ctl::local::free_port()?);
    let log = std::fs::File::create(dir.join("alertmanager.log"))?;
    let child = std::process::Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", dir.join("alertmanager.yml").display()))
        .arg(format!("--storage.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--cluster.listen-address=")
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting prometheus-alertmanager")?;
    Ok(Alertmanager(child, addr))
}

/// The NOC's and SOC's everyday events, so that every panel has something to draw: a switchover
/// (role change, workflow, write outage), a refused one (a gRPC error), alerts accepted and
/// refused (a bad token), a critical one paged, acknowledged and resolved.
async fn make_activity(demo: &RunningDemo) -> Result<()> {
    demo.ctl_ok(&["switchover", "--cluster", "customs", "--to", "ndc"])?;
    let refused = demo.ctl(&["switchover", "--cluster", "customs", "--to", "nowhere"])?;
    ensure!(!refused.status.success(), "a switchover to a member that does not exist is refused");
    let url = demo.doc["ingest"][0]["generic"].as_str().context("generic ingest url")?;
    let token = demo.doc["ingest_tokens"]["generic"].as_str().context("generic token")?;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(demo.doc["ingest_ca"].as_str().context("ca")?)?)?;
    let host = url.trim_start_matches("https://").split('/').next().context("host")?;
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .resolve(triad_proto::tls::CONTROLLER_SAN, host.parse()?)
        .build()?;
    let url = url.replace(host.split(':').next().unwrap_or(""), triad_proto::tls::CONTROLLER_SAN);
    let post = |token: String, body: &'static str| {
        let (http, url) = (http.clone(), url.clone());
        async move { Ok::<_, anyhow::Error>(http.post(url).bearer_auth(token).body(body).send().await?.status().as_u16()) }
    };
    let bad = post("not-the-token".into(), "[]").await?;
    ensure!(bad == 401, "a bad token is refused: {bad}");
    let body = r#"[{"title":"dashboards test: firewall denies","severity":"critical","fingerprint":"dash-crit","site":"dc"},
                   {"title":"dashboards test: disk warning","severity":"medium","fingerprint":"dash-med","site":"dr"}]"#;
    let ok = post(token.to_string(), body).await?;
    ensure!(ok == 202 || ok == 200, "alerts accepted: {ok}");
    let ids: Vec<String> = wait_for("the two alerts in the queue", Duration::from_secs(30), || async {
        let list: Value = serde_json::from_slice(&demo.ctl(&["alerts", "list", "-o", "json"]).ok()?.stdout).ok()?;
        let ids: Vec<String> = list
            .as_array()?
            .iter()
            .filter(|a| a["title"].as_str().is_some_and(|t| t.starts_with("dashboards test")))
            .filter_map(|a| a["id"].as_u64().map(|i| i.to_string()))
            .collect();
        (ids.len() == 2).then_some(ids)
    })
    .await?;
    demo.ctl_ok(&["alerts", "ack", &ids[0]])?;
    demo.ctl_ok(&["alerts", "resolve", &ids[1], "--reason", "the dashboards test resolved it"])?;
    Ok(())
}

/// Every query of every committed dashboard, run as a range query over the test's span: the
/// queries with no series, or only NaN, after up to `within`.
async fn queries_without_data(
    prom: &Prometheus,
    boards: &[PathBuf],
    start: f64,
    within: Duration,
) -> Result<Vec<String>> {
    let mut queries = Vec::new();
    for path in boards {
        let board = triad_dashboards::read(path)?;
        let problems = triad_dashboards::lint::check(&board);
        ensure!(problems.is_empty(), "{}: {problems:?}", path.display());
        queries.extend(triad_dashboards::queries::of(&board));
    }
    let deadline = std::time::Instant::now() + within;
    loop {
        let mut empty = Vec::new();
        for q in &queries {
            let expr = q.expand(&[("cluster", "customs"), ("link", ".*")], "15s", "1h");
            let series = prom.query_range(&expr, start, now(), 2.0).await?;
            // The fence annotation shows fences; this run has none (a switchover stops the old
            // primary itself), and its query was checked to be valid above.
            if series.iter().all(|s| s.numbers().next().is_none()) && q.panel != "annotation Fences" {
                empty.push(format!("{} / {} / {}: {expr}", q.dashboard, q.panel, q.ref_id));
            }
        }
        if empty.is_empty() || std::time::Instant::now() >= deadline {
            return Ok(empty);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Each dashboard's panels plotted from the data Prometheus returns for them, one PNG per
/// dashboard in `out`; also into `runbooks/img/` when TRIAD_UPDATE_SCREENSHOTS is set.
async fn screenshots(prom: &Prometheus, start: f64, out: &Path) -> Result<Vec<PathBuf>> {
    use triad_tests::plot::{self, PanelData};
    let mut written = Vec::new();
    for (path, _) in triad_dashboards::check_dir(&repo().join("dashboards/grafana"))? {
        let board = triad_dashboards::read(&path)?;
        let title = board["title"].as_str().unwrap_or("").to_string();
        let mut panels: Vec<PanelData> = Vec::new();
        for q in triad_dashboards::queries::of(&board).iter().filter(|q| !q.panel.starts_with("annotation")) {
            let expr = q.expand(&[("cluster", "customs"), ("link", ".*")], "15s", "1h");
            let result = prom.query_range(&expr, start, now(), 2.0).await?;
            let series = result
                .iter()
                .map(|s| (plot::legend(&q.legend, &s.labels), s.numbers().copied().collect::<Vec<_>>()))
                .collect::<Vec<_>>();
            match panels.last_mut() {
                Some(p) if p.title == q.panel => p.series.extend(series),
                _ => panels.push(PanelData { title: q.panel.clone(), unit: q.unit.clone(), series }),
            }
        }
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("dashboard").to_string();
        let png = out.join(format!("{name}.png"));
        plot::dashboard(&title, &panels, &png)?;
        if std::env::var_os("TRIAD_UPDATE_SCREENSHOTS").is_some() {
            let img = repo().join("runbooks/img");
            std::fs::create_dir_all(&img)?;
            std::fs::copy(&png, img.join(format!("{name}.png")))?;
        }
        written.push(png);
    }
    Ok(written)
}

/// `promtool check metrics` on every controller's and agent's /metrics.
async fn promtool_checks_every_endpoint(demo: &RunningDemo) -> Result<()> {
    let addrs: Vec<String> = ["controllers", "agents"]
        .iter()
        .flat_map(|l| demo.doc[*l].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["http_addr"].as_str().map(String::from))
        .collect();
    ensure!(addrs.len() == 6, "{addrs:?}");
    for addr in addrs {
        let text = reqwest::get(format!("http://{addr}/metrics")).await?.text().await?;
        let mut check = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        std::io::Write::write_all(check.stdin.as_mut().context("stdin")?, text.as_bytes())?;
        let out = check.wait_with_output()?;
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        ensure!(out.status.success() && said.trim().is_empty(), "promtool check metrics on {addr}: {said}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_query_returns_data_from_prometheus_scraping_the_demo() -> Result<()> {
    let tmp = tempfile::Builder::new().prefix("triad-test-dashboards-").tempdir()?;
    let mut demo = RunningDemo::start(&tmp.path().join("demo")).await?;
    let start = now();
    ensure!(demo.doc["snmp"]["addr"].is_string(), "the demo runs snmpd (scripts/prereqs.sh installs it)");

    let token_file = tmp.path().join("triad-ingest.token");
    std::fs::write(&token_file, demo.doc["ingest_tokens"]["alertmanager"].as_str().context("token")?)?;
    let am = start_alertmanager(&tmp.path().join("alertmanager"), &alertmanager_config(&demo, &token_file)?)?;
    let prom_config = tmp.path().join("prometheus.yml");
    let rules = repo().join("deploy/prometheus/rules.yml").canonicalize()?;
    let out = std::process::Command::new(bin("triadctl"))
        .args(["prometheus", "scrape-config", "--scrape-interval-ms", "1000", "--alertmanager", &am.1, "--demo"])
        .arg(demo.dir.join("demo.json"))
        .arg("--rules")
        .arg(&rules)
        .arg("--out")
        .arg(&prom_config)
        .output()?;
    ensure!(out.status.success(), "scrape-config: {}", String::from_utf8_lossy(&out.stderr));
    let prom = Prometheus::start(&tmp.path().join("prometheus"), &prom_config).await?;
    wait_for("Prometheus to scrape all six targets", Duration::from_secs(30), || async {
        let up = prom.query(r#"up{job=~"triad-.*"} == 1"#).await.ok()?;
        (up.len() == 6).then_some(())
    })
    .await?;

    // Before the switchover no role change is recorded (the annotation's query has no data).
    let before = prom.query(triad_dashboards::queries::ROLE_CHANGE_ANNOTATION).await?;
    ensure!(before.is_empty(), "no role change yet: {before:?}");
    let switched_after = now();
    make_activity(&demo).await?;

    // The role change as the annotation draws it: a time (ms) after the switchover began.
    let marks = wait_for("the switchover in the annotation's source", Duration::from_secs(30), || async {
        let s = prom.query(triad_dashboards::queries::ROLE_CHANGE_ANNOTATION).await.ok()?;
        (!s.is_empty()).then_some(s)
    })
    .await?;
    let at_ms = marks[0].points[0].1;
    ensure!(marks[0].labels["kind"] == "switchover" && marks[0].labels["cluster"] == "customs", "{marks:?}");
    ensure!(at_ms / 1000.0 >= switched_after - 1.0 && at_ms / 1000.0 <= now(), "role change at {at_ms} ms");
    // And in the overview's panels: ndc is now the primary, once Prometheus scraped both agents
    // since (the annotation comes from a controller, which may be scraped before dc's agent).
    let query = r#"max by (member) (triad_db_member_role{cluster="customs",role="primary"}) == 1"#;
    let primary = wait_for("ndc alone the primary in Prometheus", Duration::from_secs(30), || async {
        let p = prom.query(query).await.ok()?;
        (p.len() == 1).then_some(p)
    })
    .await?;
    ensure!(primary[0].labels["member"] == "ndc", "{primary:?}");

    let boards: Vec<PathBuf> =
        triad_dashboards::check_dir(&repo().join("dashboards/grafana"))?.into_iter().map(|(p, _)| p).collect();
    ensure!(boards.len() == 5, "{boards:?}");
    let empty = queries_without_data(&prom, &boards, start, Duration::from_secs(90)).await?;
    ensure!(empty.is_empty(), "dashboard queries with no data after 90 s:\n{}", empty.join("\n"));
    // The check itself fails on a query with no data: a fixture's, against the same Prometheus.
    let fixture = repo().join("dashboards/tests/fixtures/no-data.json");
    let empty = queries_without_data(&prom, &[fixture], start, Duration::ZERO).await?;
    ensure!(empty.len() == 1 && empty[0].contains("Nothing here"), "the fixture's query has no data: {empty:?}");
    promtool_checks_every_endpoint(&demo).await?;

    // A NOC alert through Alertmanager into Triad's queue: dr's agent stops answering, so its
    // links go down (TriadLinkDown after 30 s) and the rule's alert arrives as an alertmanager one.
    let dr_agent = demo.pid_of("agents", "site", "dr").context("dr's agent pid")?;
    kill(Pid::from_raw(dr_agent), Signal::SIGSTOP)?;
    let arrived = wait_for("TriadLinkDown in Triad's queue from Alertmanager", Duration::from_secs(150), || async {
        let list: Value = serde_json::from_slice(
            &demo.ctl(&["alerts", "list", "--source", "alertmanager", "-o", "json"]).ok()?.stdout,
        )
        .ok()?;
        list.as_array()?.iter().find(|a| a["title"].as_str().is_some_and(|t| t.contains("is down"))).cloned()
    })
    .await;
    kill(Pid::from_raw(dr_agent), Signal::SIGCONT)?;
    let alert = match arrived {
        Ok(a) => a,
        Err(e) => bail!("{e}; Prometheus holds {:?}", prom.alerts().await.unwrap_or_default()),
    };
    ensure!(alert["severity"] == "critical", "TriadLinkDown is critical: {alert}");

    // The runbook's pictures, once the links are back up: the whole run, the cut included.
    wait_for("the links up again for 4 s", Duration::from_secs(60), || async {
        let up = prom.query(r#"max by (link) (max_over_time(triad_link_state{state!="up"}[4s])) == 0"#).await.ok()?;
        (up.len() == 3).then_some(())
    })
    .await?;
    let pictures = screenshots(&prom, start, &tmp.path().join("screenshots")).await?;
    ensure!(pictures.len() == 5, "a picture of each dashboard: {pictures:?}");
    demo.stop()?;
    Ok(())
}
