//! A real Prometheus (Debian's `prometheus`) for the dashboard tests: started on a loopback port
//! with a configuration the test wrote, queried over its HTTP API, stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// One series of a query's result: its labels and its (time, value) points, NaN kept as NaN.
#[derive(Debug, Clone)]
pub struct Series {
    pub labels: serde_json::Map<String, Value>,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// Its points that are numbers (not NaN, not infinite).
    pub fn numbers(&self) -> impl Iterator<Item = &(f64, f64)> {
        self.points.iter().filter(|(_, v)| v.is_finite())
    }
}

/// A running Prometheus.
pub struct Prometheus {
    child: Child,
    pub addr: String,
    pub dir: PathBuf,
    http: reqwest::Client,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus with `config` (its rule files named by absolute path), its data under
    /// `dir`, and waits until it is ready.
    pub async fn start(dir: &Path, config: &Path) -> Result<Prometheus> {
        std::fs::create_dir_all(dir.join("data"))?;
        let port = triad_controller::ctl::local::free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting prometheus (Debian's prometheus package; scripts/prereqs.sh installs it)")?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        let p = Prometheus { child, addr, dir: dir.to_path_buf(), http };
        let ready = format!("http://{}/-/ready", p.addr);
        crate::wait_for("Prometheus to be ready", Duration::from_secs(30), || async {
            p.http.get(&ready).send().await.ok().filter(|r| r.status().is_success()).map(|_| ())
        })
        .await
        .with_context(|| std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default())?;
        Ok(p)
    }

    async fn api(&self, path: &str, form: &[(&str, String)]) -> Result<Value> {
        let url = format!("http://{}/api/v1/{path}", self.addr);
        let body: Value = serde_json::from_str(&self.http.post(url).form(form).send().await?.text().await?)?;
        if body["status"] != "success" {
            bail!("Prometheus refused the query: {}", body);
        }
        Ok(body["data"].clone())
    }

    /// A range query from `start` to `end` (Unix seconds) every `step` seconds.
    pub async fn query_range(&self, expr: &str, start: f64, end: f64, step: f64) -> Result<Vec<Series>> {
        let form = [
            ("query", expr.to_string()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", format!("{step}")),
        ];
        let data = self.api("query_range", &form).await.with_context(|| format!("query {expr}"))?;
        Ok(series(&data["result"], "values"))
    }

    /// An instant query now.
    pub async fn query(&self, expr: &str) -> Result<Vec<Series>> {
        let data = self.api("query", &[("query", expr.to_string())]).await.with_context(|| format!("query {expr}"))?;
        Ok(series(&data["result"], "value"))
    }

    /// The alerts its rules hold (pending or firing), by name and state.
    pub async fn alerts(&self) -> Result<Vec<(String, String)>> {
        let url = format!("http://{}/api/v1/alerts", self.addr);
        let body: Value = serde_json::from_str(&self.http.get(url).send().await?.text().await?)?;
        Ok(body["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                let name = a["labels"]["alertname"].as_str().unwrap_or("").to_string();
                (name, a["state"].as_str().unwrap_or("").to_string())
            })
            .collect())
    }
}

fn number(v: &Value) -> Option<f64> {
    v.as_str().and_then(|s| s.parse::<f64>().ok()).or_else(|| v.as_f64())
}

/// A result's series: `values` (a range) or `value` (an instant) of each, as (time, value).
fn series(result: &Value, key: &str) -> Vec<Series> {
    let point = |p: &Value| Some((p.get(0).and_then(Value::as_f64)?, number(p.get(1)?)?));
    result
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| Series {
            labels: s["metric"].as_object().cloned().unwrap_or_default(),
            points: match key {
                "values" => s["values"].as_array().into_iter().flatten().filter_map(point).collect(),
                _ => point(&s["value"]).into_iter().collect(),
            },
        })
        .collect()
}
