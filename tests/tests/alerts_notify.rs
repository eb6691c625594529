//! Notifications and escalation on real controllers (issue 17): a critical alert reaches a local
//! HTTP sink and a local SMTP sink exactly once; its escalation timer, started by one leader,
//! fires on the next after the first is killed; a silence keeps another quiet.

use std::time::Duration;

use anyhow::{ensure, Result};
use triad_controller::config::{ChannelConfig, RouteConfig};
use triad_tests::alerts::{curl_post, Post, Sink};
use triad_tests::{wait_for, Deployment};

const WAIT: Duration = Duration::from_secs(30);

fn channel(name: &str, kind: &str, url: String) -> ChannelConfig {
    ChannelConfig {
        name: name.into(),
        kind: kind.into(),
        url,
        token: "sink-token".into(),
        smtp_addr: String::new(),
        from: String::new(),
        to: vec![],
        timeout_ms: 5_000,
    }
}

fn route(channel: &str, level: u32) -> RouteConfig {
    RouteConfig {
        channel: channel.into(),
        min_severity: "critical".into(),
        sites: vec![],
        sources: vec![],
        level,
        incidents: false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_critical_alert_is_notified_once_and_escalates_across_a_leader_change() -> Result<()> {
    let mut d = Deployment::new()?;
    let (http, smtp) = (Sink::http(&d)?, Sink::smtp(&d)?);
    let (hp, sp) = (http.port, smtp.port);
    d.tune_controllers(|c| {
        let n = &mut c.alerts.notify;
        n.channels = vec![
            channel("soc-webhook", "webhook", format!("http://127.0.0.1:{hp}/hook")),
            ChannelConfig {
                smtp_addr: format!("127.0.0.1:{sp}"),
                from: "triad@customs.local".into(),
                to: vec!["soc@customs.local".into()],
                ..channel("soc-mail", "email", String::new())
            },
            ChannelConfig {
                to: vec!["+15550100".into()],
                ..channel("duty-sms", "sms", format!("http://127.0.0.1:{hp}/sms"))
            },
        ];
        n.routes = vec![route("soc-webhook", 0), route("soc-mail", 0), route("duty-sms", 1)];
        n.escalation.after_ms = 5_000;
    })?;
    d.start_controllers()?;
    let leader = d.wait_leader(&d.founders(), WAIT).await?;
    let token = d.add_alert_source("siem", "generic")?;
    let body = d.dir().join("alert.json");
    std::fs::write(
        &body,
        r#"{"title":"Ransomware beacon from the customs declaration server","severity":"critical","host":"decl-1"}"#,
    )?;
    let quiet = d.dir().join("quiet.json");
    std::fs::write(&quiet, r#"{"title":"Scheduled scan","severity":"critical","host":"scanner-1"}"#)?;
    let silence = d.triadctl(&[
        "alerts",
        "silence",
        "add",
        "--match",
        "host=scanner-1",
        "--for",
        "1h",
        "--reason",
        "weekly scan",
    ])?;
    ensure!(silence.status.success(), "{}", String::from_utf8_lossy(&silence.stderr));

    let post = |b| {
        curl_post(
            &d,
            &d.http_addr(leader),
            &Post { path: "/ingest/generic?wait=commit", token: Some(&token), body: b, tls: true },
        )
    };
    let (code, answer) = post(&body)?;
    ensure!(code == 200, "{code} {answer}");
    let (code, answer) = post(&quiet)?;
    ensure!(code == 200, "{code} {answer}");

    // Delivered (and recorded) on both level-0 channels.
    wait_for("both level-0 deliveries recorded", WAIT, || async {
        let alerts = d.alerts_of(leader).await?;
        let a = alerts.iter().find(|a| a.title.starts_with("Ransomware"))?;
        let mut c = d.alerts_on(leader).await.ok()?;
        let full = c.get(triad_proto::v1::GetAlertRequest { id: a.id }).await.ok()?.into_inner();
        let delivered = full.history.iter().filter(|n| n.text.starts_with("delivered to soc-")).count();
        (delivered == 2).then_some(())
    })
    .await?;
    let hooks = http.posts("/hook");
    ensure!(hooks.len() == 1, "one webhook: {hooks:?}");
    ensure!(hooks[0]["body"]["alert"]["title"] == "Ransomware beacon from the customs declaration server", "{hooks:?}");
    ensure!(
        hooks[0]["auth"] == "Bearer sink-token"
            && hooks[0]["key"].as_str().is_some_and(|k| k.starts_with("triad-notification-")),
        "{hooks:?}"
    );
    let mails = smtp.mails();
    ensure!(mails.len() == 1 && mails[0].contains("[Triad CRITICAL] Ransomware beacon"), "one e-mail: {mails:?}");

    // The leader dies before the 5 s escalation timer; the next leader escalates on time.
    d.kill(&format!("controller-{leader}"))?;
    let others: Vec<u64> = d.founders().into_iter().filter(|id| *id != leader).collect();
    let next = d.wait_leader(&others, WAIT).await?;
    let sms = wait_for("the escalation's SMS", WAIT, || async {
        let sms = http.posts("/sms");
        (!sms.is_empty()).then_some(sms)
    })
    .await?;
    ensure!(sms[0]["body"]["text"].as_str().is_some_and(|t| t.contains("escalation level 1")), "{sms:?}");
    ensure!(sms[0]["body"]["to"][0] == "+15550100", "{sms:?}");
    let alerts = d.alerts_of(next).await.unwrap_or_default();
    let escalated = alerts.iter().find(|a| a.title.starts_with("Ransomware")).map(|a| a.escalation);
    ensure!(escalated == Some(1), "escalated to level 1 by the new leader: {escalated:?}");

    // Nothing twice, and nothing about the silenced alert: give any repeat two seconds to show.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        ensure!(http.posts("/hook").len() == 1 && http.posts("/sms").len() == 1 && smtp.mails().len() == 1, "a repeat");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(http.posts("/").iter().all(|p| !p.to_string().contains("Scheduled scan")), "the silenced alert was sent");
    ensure!(smtp.mails().iter().all(|m| !m.contains("Scheduled scan")), "the silenced alert was mailed");
    Ok(())
}
