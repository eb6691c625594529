//! Helpers for the alert tests: sources made with `triadctl`, HTTPS posts with curl (a client no
//! one here wrote), the Alerts service of each controller, and a real Alertmanager.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use triad_proto::v1 as pb;
use triad_proto::v1::alerts_client::AlertsClient;

use crate::Deployment;

/// The repository's `tests/data/alerts/FILE`.
pub fn data(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/alerts").join(file)
}

impl Deployment {
    /// `triadctl alerts sources add NAME --kind KIND`; returns the token it printed.
    pub fn add_alert_source(&self, name: &str, kind: &str) -> Result<String> {
        let out = self.triadctl(&["alerts", "sources", "add", name, "--kind", kind])?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        ensure!(out.status.success(), "sources add: {text}{}", String::from_utf8_lossy(&out.stderr));
        let token = text.lines().last().unwrap_or_default().trim().to_string();
        ensure!(token.starts_with("triad_"), "no token in: {text}");
        Ok(token)
    }

    /// The HTTP address of controller `id`.
    pub fn http_addr(&self, id: u64) -> String {
        self.plan.controllers.iter().find(|c| c.id == id).map(|c| c.http_addr.clone()).unwrap_or_default()
    }

    /// An Alerts client on controller `id`, as the deployment's admin.
    pub async fn alerts_on(&self, id: u64) -> Result<AlertsClient<Channel>> {
        let certs = self.plan.certs_dir();
        let read = |f: &str| std::fs::read(certs.join(f)).with_context(|| format!("reading {f}"));
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read("ca.pem")?))
            .identity(Identity::from_pem(read("admin.pem")?, read("admin.key")?))
            .domain_name(triad_proto::tls::CONTROLLER_SAN);
        let ch = Endpoint::from_shared(format!("https://{}", self.addr(id)))?
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .connect_lazy();
        Ok(AlertsClient::new(ch))
    }

    /// Every alert controller `id` has applied (up to 10000), or `None` when it does not answer.
    pub async fn alerts_of(&self, id: u64) -> Option<Vec<pb::AlertRecord>> {
        let mut c = self.alerts_on(id).await.ok()?;
        let req = pb::ListAlertsRequest { limit: 10_000, ..Default::default() };
        Some(c.list(req).await.ok()?.into_inner().alerts)
    }
}

/// A request as curl sends it.
pub struct Post<'a> {
    pub path: &'a str,
    pub token: Option<&'a str>,
    pub body: &'a Path,
    pub tls: bool,
}

/// POSTs with curl to controller HTTP address `addr`; returns the status code and body.
pub fn curl_post(d: &Deployment, addr: &str, p: &Post) -> Result<(u16, String)> {
    let port = addr.rsplit_once(':').map(|(_, p)| p).unwrap_or_default();
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or_default();
    let san = triad_proto::tls::CONTROLLER_SAN;
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}", "-X", "POST"]);
    cmd.args(["-H", "Content-Type: application/json", "--data-binary"]).arg(format!("@{}", p.body.display()));
    if let Some(t) = p.token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if p.tls {
        cmd.arg("--cacert").arg(d.plan.certs_dir().join("ca.pem"));
        cmd.args(["--resolve", &format!("{san}:{port}:{host}")]);
        cmd.arg(format!("https://{san}:{port}{}", p.path));
    } else {
        cmd.arg(format!("http://{addr}{}", p.path));
    }
    let out = cmd.output().context("running curl")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    ensure!(out.status.success(), "curl failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    Ok((code.trim().parse().unwrap_or(0), body.to_string()))
}

/// A running `prometheus-alertmanager` (Debian's), stopped on drop.
pub struct Alertmanager {
    child: Child,
    pub addr: String,
}

impl Alertmanager {
    /// Starts Alertmanager with Triad's `/ingest/alertmanager` on controller address
    /// `triad_http` as its webhook receiver (HTTPS, the deployment's CA, `token`), grouping
    /// nothing and notifying at once.
    pub fn start(d: &Deployment, triad_http: &str, token: &str) -> Result<Alertmanager> {
        // The URL names the controller by address; `server_name` is the name its certificate
        // carries.
        let ip_url = format!("https://{triad_http}/ingest/alertmanager");
        let config = format!(
            "route:\n  receiver: triad\n  group_by: ['...']\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: triad\n    webhook_configs:\n      - url: '{ip_url}'\n        send_resolved: true\n\
             \x20       http_config:\n          authorization:\n            credentials: '{token}'\n\
             \x20         tls_config:\n            ca_file: '{ca}'\n            server_name: '{san}'\n",
            ca = d.plan.certs_dir().join("ca.pem").display(),
            san = triad_proto::tls::CONTROLLER_SAN,
        );
        Self::spawn(d, &config, None)
    }

    fn spawn(d: &Deployment, config: &str, web_config: Option<&Path>) -> Result<Alertmanager> {
        let dir = d.dir().join(if web_config.is_some() { "alertmanager-tls" } else { "alertmanager" });
        std::fs::create_dir_all(dir.join("data"))?;
        let port = triad_controller::ctl::local::free_port()?;
        let config_path = dir.join("alertmanager.yml");
        std::fs::write(&config_path, config)?;
        let log_name = if web_config.is_some() { "logs/alertmanager-tls.log" } else { "logs/alertmanager.log" };
        let log = std::fs::File::create(d.dir().join(log_name))?;
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new("prometheus-alertmanager");
        if let Some(web) = web_config {
            cmd.arg(format!("--web.config.file={}", web.display()));
        }
        let child = cmd
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting prometheus-alertmanager (Debian's prometheus-alertmanager package)")?;
        Ok(Alertmanager { child, addr })
    }

    /// Starts Alertmanager with a receiver that sends nothing: for measuring its ingest alone.
    pub fn start_plain(d: &Deployment) -> Result<Alertmanager> {
        let config = "route:\n  receiver: nowhere\nreceivers:\n  - name: nowhere\n";
        Self::spawn(d, config, None)
    }

    /// Like [`Alertmanager::start_plain`], serving HTTPS only with the certificate and key
    /// files given (its web config's `tls_server_config`).
    pub fn start_tls(d: &Deployment, cert: &Path, key: &Path) -> Result<Alertmanager> {
        let web = d.dir().join("alertmanager-web.yml");
        let web_config =
            format!("tls_server_config:\n  cert_file: '{}'\n  key_file: '{}'\n", cert.display(), key.display());
        std::fs::write(&web, web_config)?;
        let config = "route:\n  receiver: nowhere\nreceivers:\n  - name: nowhere\n";
        Self::spawn(d, config, Some(&web))
    }

    /// Posts alerts (Alertmanager's API v2 JSON array) to Alertmanager, as Prometheus does.
    pub fn post(&self, alerts_json: &str) -> Result<()> {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
            .args(["-H", "Content-Type: application/json", "--data", alerts_json])
            .arg(format!("http://{}/api/v2/alerts", self.addr))
            .output()?;
        let code = String::from_utf8_lossy(&out.stdout).to_string();
        if code.trim() != "200" {
            bail!("Alertmanager answered {code}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `logger` (util-linux) against a syslog address with `args` and `message`.
pub fn logger(port: u16, args: &[&str], message: &str) -> Result<()> {
    let out = Command::new("logger")
        .args(["--server", "127.0.0.1", "--port", &port.to_string()])
        .args(args)
        .arg(message)
        .output()
        .context("running logger (util-linux)")?;
    ensure!(out.status.success(), "logger failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// A running `rsyslogd` that takes syslog on a UDP port and forwards everything to a TCP
/// address in RFC 5424 with octet counting; stopped on drop.
pub struct Rsyslog {
    child: Child,
    pub udp_port: u16,
}

impl Rsyslog {
    pub fn start(d: &Deployment, forward_to_tcp: u16) -> Result<Rsyslog> {
        let dir = d.dir().join("rsyslog");
        std::fs::create_dir_all(&dir)?;
        let udp_port = triad_controller::ctl::local::free_port()?;
        let conf = format!(
            "global(workDirectory=\"{work}\")\n\
             module(load=\"imudp\")\n\
             input(type=\"imudp\" address=\"127.0.0.1\" port=\"{udp_port}\")\n\
             *.* action(type=\"omfwd\" target=\"127.0.0.1\" port=\"{forward_to_tcp}\" protocol=\"tcp\"\n\
             \x20         template=\"RSYSLOG_SyslogProtocol23Format\" TCP_Framing=\"octet-counted\")\n",
            work = dir.display()
        );
        let child = spawn_rsyslogd(d, &dir, &conf, "rsyslog")?;
        Ok(Rsyslog { child, udp_port })
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A local sink: an HTTP one (`tests/support/http_sink.py`) or Python's SMTP debugging server,
/// writing what it receives to a file; stopped on drop.
pub struct Sink {
    child: Child,
    pub port: u16,
    pub file: PathBuf,
}

impl Sink {
    /// The HTTP sink: every POST one JSON line in its file.
    pub fn http(d: &Deployment) -> Result<Sink> {
        let port = triad_controller::ctl::local::free_port()?;
        let file = d.dir().join(format!("http-sink-{port}.jsonl"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/http_sink.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(&file)
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(d.dir().join("logs/http-sink.log"))?)
            .spawn()
            .context("starting the HTTP sink (python3)")?;
        Ok(Sink { child, port, file })
    }

    /// Python's SMTP server that prints every message it takes (its output is the file).
    pub fn smtp(d: &Deployment) -> Result<Sink> {
        let port = triad_controller::ctl::local::free_port()?;
        let file = d.dir().join(format!("smtp-sink-{port}.txt"));
        let out = std::fs::File::create(&file)?;
        let child = Command::new("python3")
            .args(["-u", "-W", "ignore", "-m", "smtpd", "-n", "-c", "DebuggingServer"])
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting the SMTP sink (python3 -m smtpd)")?;
        Ok(Sink { child, port, file })
    }

    /// The HTTP sink's requests to paths starting with `prefix`.
    pub fn posts(&self, prefix: &str) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.file).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["path"].as_str().is_some_and(|p| p.starts_with(prefix)))
            .collect()
    }

    /// The SMTP sink's messages (their text).
    pub fn mails(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.file).unwrap_or_default();
        text.split("---------- MESSAGE FOLLOWS ----------").skip(1).map(String::from).collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTPS client for the controllers' ingest: trusts the deployment's CA and reaches each
/// controller by the name its certificate carries.
pub struct Ingest {
    http: reqwest::Client,
    ports: Vec<(u64, String)>,
}

impl Ingest {
    pub fn new(d: &Deployment) -> Result<Ingest> {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(d.plan.certs_dir().join("ca.pem"))?)?;
        let http = reqwest::Client::builder()
            .add_root_certificate(ca)
            // The port comes from the URL; only the address is taken from here.
            .resolve(triad_proto::tls::CONTROLLER_SAN, "127.0.0.1:0".parse()?)
            .timeout(Duration::from_secs(15))
            .pool_max_idle_per_host(64)
            .build()?;
        let ports = d
            .founders()
            .into_iter()
            .map(|id| (id, d.http_addr(id).rsplit_once(':').map(|(_, p)| p.to_string()).unwrap_or_default()))
            .collect();
        Ok(Ingest { http, ports })
    }

    /// POSTs `body` to `/ingest/generic` on controller `id` with `token`; the status code.
    pub async fn post(&self, id: u64, token: &str, body: String) -> Result<u16> {
        let port = self.ports.iter().find(|(i, _)| *i == id).map(|(_, p)| p.clone()).unwrap_or_default();
        let url = format!("https://{}:{port}/ingest/generic", triad_proto::tls::CONTROLLER_SAN);
        let r = self.http.post(url).bearer_auth(token).body(body).send().await?;
        Ok(r.status().as_u16())
    }
}

/// The generic form of `n` alerts: alert `first + i` is fingerprint `fp-{(first + i) % distinct}`.
pub fn generic_batch(first: usize, n: usize, distinct: usize) -> String {
    let alerts: Vec<String> = (first..first + n)
        .map(|i| {
            let k = i % distinct;
            format!(r#"{{"title":"storm alert {k}","severity":"medium","fingerprint":"fp-{k}","host":"h{}"}}"#, k % 50)
        })
        .collect();
    format!("[{}]", alerts.join(","))
}

impl Rsyslog {
    /// rsyslog as a SIEM's syslog receiver: TCP (octet counting or lines) into a file.
    pub fn receiver(d: &Deployment) -> Result<(Rsyslog, u16, PathBuf)> {
        let dir = d.dir().join("rsyslog-siem");
        std::fs::create_dir_all(&dir)?;
        let tcp_port = triad_controller::ctl::local::free_port()?;
        let out = dir.join("siem.log");
        let conf = format!(
            "global(workDirectory=\"{work}\")\n\
             module(load=\"imtcp\")\n\
             template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{tcp_port}\")\n\
             *.* action(type=\"omfile\" file=\"{file}\" template=\"raw\")\n",
            work = dir.display(),
            file = out.display()
        );
        let child = spawn_rsyslogd(d, &dir, &conf, "rsyslog-siem")?;
        Ok((Rsyslog { child, udp_port: 0 }, tcp_port, out))
    }
}

/// Starts `rsyslogd` in the foreground with configuration `conf` (written in `dir`), its output in
/// the deployment's `logs/NAME.log`.
fn spawn_rsyslogd(d: &Deployment, dir: &Path, conf: &str, name: &str) -> Result<Child> {
    let conf_path = dir.join("rsyslog.conf");
    std::fs::write(&conf_path, conf)?;
    let log = std::fs::File::create(d.dir().join(format!("logs/{name}.log")))?;
    Command::new("rsyslogd")
        .arg("-n")
        .arg("-f")
        .arg(&conf_path)
        .arg("-i")
        .arg(dir.join("rsyslogd.pid"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting rsyslogd (Debian's rsyslog package)")
}
