//! Syslog into alerts on real controllers (issue 17): `logger` over UDP and TCP in both RFC
//! formats, a CEF line, rsyslog forwarding over TCP, and the lines that must go no further (a
//! sender not admitted, a malformed line, a severity below the floor), each counted.

use std::time::Duration;

use anyhow::{ensure, Result};
use triad_tests::alerts::{logger, Rsyslog};
use triad_tests::{wait_for, Deployment};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread")]
async fn logger_and_rsyslog_lines_become_alerts_and_bad_ones_are_counted() -> Result<()> {
    let mut d = Deployment::new()?;
    let (udp, tcp) = (triad_controller::ctl::local::free_port()?, triad_controller::ctl::local::free_port()?);
    d.tune_controllers(|c| {
        if c.id == 1 {
            c.alerts.syslog.udp_addr = format!("127.0.0.1:{udp}");
            c.alerts.syslog.tcp_addr = format!("127.0.0.1:{tcp}");
            c.alerts.syslog.allow = vec!["127.0.0.1".into()];
        }
    })?;
    d.start_controllers()?;
    d.wait_leader(&d.founders(), WAIT).await?;

    logger(
        udp,
        &["--udp", "--rfc5424", "-p", "auth.crit", "-t", "sshd", "--msgid", "AUTH"],
        "Failed password for root from 203.0.113.9",
    )?;
    logger(udp, &["--udp", "--rfc3164", "-p", "daemon.err", "-t", "named"], "zone customs.local: transfer refused")?;
    logger(
        tcp,
        &["--tcp", "--octet-count", "-p", "local0.warning", "-t", "fw"],
        "CEF:0|Fortinet|FortiGate|7.2|13056|SYN flood|7|src=203.0.113.9 dst=10.1.0.11 dvchost=edge-fw-1",
    )?;
    logger(
        tcp,
        &["--tcp", "--rfc3164", "-p", "local1.alert", "-t", "pam"],
        "privileged session opened outside the change window",
    )?;
    // Below the floor (info): counted, not recorded.
    logger(udp, &["--udp", "-p", "user.info", "-t", "cron"], "job done")?;
    // A sender not on the allowlist, and a line that is not syslog.
    let stranger = std::net::UdpSocket::bind("127.0.0.2:0")?;
    stranger.send_to(b"<10>1 - intruder x - - - let me in", ("127.0.0.1", udp))?;
    let us = std::net::UdpSocket::bind("127.0.0.1:0")?;
    us.send_to(b"this is not syslog", ("127.0.0.1", udp))?;

    let titles = [
        "sshd: Failed password for root from 203.0.113.9",
        "named: zone customs.local: transfer refused",
        "SYN flood",
        "pam: privileged session opened outside the change window",
    ];
    for id in d.founders() {
        wait_for(&format!("the four syslog alerts on controller {id}"), WAIT, || async {
            let alerts = d.alerts_of(id).await?;
            titles.iter().all(|t| alerts.iter().any(|a| a.title == *t)).then_some(())
        })
        .await?;
    }
    let alerts = d.alerts_of(1).await.unwrap_or_default();
    ensure!(alerts.len() == 4, "nothing else recorded: {:?}", alerts.iter().map(|a| &a.title).collect::<Vec<_>>());
    let get = |t: &str| alerts.iter().find(|a| a.title == t).expect("recorded");
    let sshd = get(titles[0]);
    ensure!(sshd.severity == "critical" && sshd.source == "syslog" && sshd.labels["msgid"] == "AUTH", "{sshd:?}");
    let cef = get("SYN flood");
    ensure!(cef.severity == "high" && cef.host == "edge-fw-1" && cef.labels["src"] == "203.0.113.9", "{cef:?}");
    ensure!(get(titles[3]).severity == "critical", "alert (1) maps to critical");
    for (reason, n) in [("not_allowed", 1.0), ("below_min_severity", 1.0), ("invalid_field", 1.0)] {
        let series = format!("triad_alerts_rejected_total{{reason=\"{reason}\",source=\"syslog\"}}");
        let got = d.controller_metric(1, &series).await;
        ensure!(got == Some(n), "{series}: {got:?}");
    }

    // rsyslog, configured as a site's relay would be, forwards over TCP (RFC 5424, octet counted).
    let rsyslog = Rsyslog::start(&d, tcp)?;
    wait_for("rsyslog to forward a line", WAIT, || async {
        logger(
            rsyslog.udp_port,
            &["--udp", "--rfc3164", "-p", "authpriv.err", "-t", "sudo"],
            "alice : 3 incorrect password attempts",
        )
        .ok()?;
        let alerts = d.alerts_of(1).await?;
        alerts
            .iter()
            .any(|a| a.title == "sudo: alice : 3 incorrect password attempts" && a.severity == "high")
            .then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn syslog_over_tls_takes_senders_with_a_certificate_from_the_ca_only() -> Result<()> {
    let mut d = Deployment::new()?;
    let tls = triad_controller::ctl::local::free_port()?;
    d.tune_controllers(|c| {
        if c.id == 1 {
            c.alerts.syslog.tls_addr = format!("127.0.0.1:{tls}");
        }
    })?;
    d.start_controllers()?;
    d.wait_leader(&d.founders(), WAIT).await?;
    let certs = d.plan.certs_dir();
    triad_controller::ctl::certs::issue(&certs, &certs, "agent", "siem-forwarder", &[])?;
    // Python's ssl module (OpenSSL) as the sender: one RFC 5424 line, octet counted, over TLS,
    // with and without a client certificate from the deployment's CA.
    let send = |with_cert: bool| -> Result<std::process::Output> {
        let line = if with_cert { "root login over TLS syslog" } else { "a stranger over TLS syslog" };
        let msg = format!("<81>1 - relay pam - - - {line}");
        let cert = if with_cert {
            format!(
                "ctx.load_cert_chain('{}', '{}')",
                certs.join("siem-forwarder.pem").display(),
                certs.join("siem-forwarder.key").display()
            )
        } else {
            "pass".to_string()
        };
        let script = format!(
            "import socket, ssl\n\
             ctx = ssl.create_default_context(cafile='{ca}')\n\
             {cert}\n\
             s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', {tls}), timeout=10), server_hostname='controller.triad')\n\
             s.sendall(b'{len} {msg}')\n\
             s.unwrap().close()\n",
            ca = certs.join("ca.pem").display(),
            len = msg.len(),
        );
        Ok(std::process::Command::new("python3").arg("-c").arg(script).output()?)
    };
    // With TLS 1.3 the stranger learns of its refusal only after sending: it is judged below by
    // what was recorded and counted, not by its exit status.
    send(false)?;
    let forwarder = send(true)?;
    ensure!(forwarder.status.success(), "the certified sender: {}", String::from_utf8_lossy(&forwarder.stderr));
    let got = wait_for("the certified sender's alert", WAIT, || async {
        let alerts = d.alerts_of(1).await?;
        alerts.iter().any(|a| a.title == "pam: root login over TLS syslog").then_some(())
    })
    .await;
    if let Err(e) = got {
        let (_, metrics) = Deployment::http_get(&d.http_addr(1), "/metrics").await?;
        let rejected: Vec<&str> = metrics.lines().filter(|l| l.starts_with("triad_alerts_rejected_total")).collect();
        return Err(e.context(format!("refusals: {rejected:?}")));
    }
    let alerts = d.alerts_of(1).await.unwrap_or_default();
    ensure!(alerts.iter().all(|a| !a.title.contains("stranger")), "a sender without a certificate got in");
    let refused = d.controller_metric(1, "triad_alerts_rejected_total{reason=\"tls_refused\",source=\"syslog\"}").await;
    ensure!(refused == Some(1.0), "the stranger counted: {refused:?}");
    Ok(())
}
