//! Sending one notification: the message built from the state, and the channel's transport
//! (HTTP with reqwest, SMTP with lettre). Every message carries the notification's id
//! (`Idempotency-Key` header, `id` field, e-mail `Message-ID`) so that a receiver can drop the
//! repeat a change of leader mid-delivery may cause.

use std::time::Duration;

use serde_json::json;

use crate::alerts::timestamp::format_ms;
use crate::config::{ChannelConfig, ChannelKind};
use crate::state::alerts::{Alert, Notification, Subject};
use crate::state::State;

/// Why a delivery failed: recorded with the notification (its text) and retried.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("its alert or incident is no longer in the state")]
    SubjectGone,
    #[error("{url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{url} answered {status}: {body}")]
    Refused { url: String, status: reqwest::StatusCode, body: String },
    #[error("the channel's {field} `{value}` is not usable: {why}")]
    Config { field: &'static str, value: String, why: String },
    #[error("building the e-mail: {0}")]
    Mail(#[from] lettre::error::Error),
    #[error("SMTP {addr}: {source}")]
    Smtp { addr: String, source: lettre::transport::smtp::Error },
}

/// What is sent, built while the state is read.
#[derive(Debug, Clone)]
pub struct Message {
    pub notification: u64,
    /// `[Triad CRITICAL] title` (e-mail subject, SMS text).
    pub headline: String,
    /// The JSON body (webhook, ticket).
    pub body: serde_json::Value,
    /// Plain text (e-mail body).
    pub text: String,
}

fn alert_json(a: &Alert, state: &State) -> serde_json::Value {
    let incident = a.incident.and_then(|i| state.incidents.incidents.get(&i));
    json!({
        "id": a.id,
        "title": a.title,
        "severity": a.severity.as_str(),
        "status": a.status.as_str(),
        "source": a.source,
        "site": a.place.site,
        "host": a.place.host,
        "address": a.place.address,
        "count": a.count,
        "first_seen": format_ms(a.first_seen_ms),
        "last_seen": format_ms(a.last_seen_ms),
        "escalation": a.escalation,
        "assignee": a.assignee,
        "incident": incident.map(|i| json!({"id": i.id, "title": i.title})),
        "labels": a.labels,
        "description": a.description,
    })
}

/// The message for notification `n`, or `None` when its subject is gone from the state.
pub fn message(n: &Notification, state: &State) -> Option<Message> {
    match n.subject {
        Subject::Alert { id, .. } => {
            let a = state.alerts.alerts.get(&id)?;
            let level = if n.level > 0 { format!(" (escalation level {})", n.level) } else { String::new() };
            let headline = format!("[Triad {}] {}{level}", a.severity.as_str().to_uppercase(), a.title);
            let text = format!(
                "{headline}\n\nalert {} from {}, seen {} times (first {}, last {})\nsite {} host {} address {}\n{}\n\ntriadctl alerts show {}\n",
                a.id,
                a.source,
                a.count,
                format_ms(a.first_seen_ms),
                format_ms(a.last_seen_ms),
                a.place.site,
                a.place.host,
                a.place.address,
                a.description,
                a.id
            );
            let body = json!({"triad": "alert", "notification": n.id, "level": n.level, "alert": alert_json(a, state)});
            Some(Message { notification: n.id, headline, body, text })
        }
        Subject::Incident { id } => {
            let i = state.incidents.incidents.get(&id)?;
            let alerts: Vec<_> =
                i.alerts.iter().filter_map(|a| state.alerts.alerts.get(a)).map(|a| alert_json(a, state)).collect();
            let headline = format!("[Triad incident {}] {}", i.id, i.title);
            let body = json!({
                "triad": "incident",
                "notification": n.id,
                "incident": {"id": i.id, "title": i.title, "opened": format_ms(i.opened_ms), "alerts": alerts, "more_alerts": i.more},
            });
            Some(Message { notification: n.id, text: headline.clone(), headline, body })
        }
    }
}

/// Sends `m` on channel `c`; the helpdesk's ticket id when it answers with one.
pub async fn send(http: &reqwest::Client, c: &ChannelConfig, m: &Message) -> Result<Option<String>, DeliveryError> {
    let timeout = Duration::from_millis(c.timeout_ms);
    match c.channel_kind() {
        ChannelKind::Email => email(c, m, timeout).await.map(|_| None),
        kind => {
            let body = match kind {
                ChannelKind::Sms => {
                    let text: String = m.headline.chars().take(160).collect();
                    json!({"id": format!("triad-{}", m.notification), "to": c.to, "text": text})
                }
                _ => m.body.clone(),
            };
            let mut req = http
                .post(&c.url)
                .timeout(timeout)
                .header("Content-Type", "application/json")
                .header("Idempotency-Key", format!("triad-notification-{}", m.notification))
                .body(body.to_string());
            if !c.token.is_empty() {
                req = req.bearer_auth(&c.token);
            }
            let resp = req.send().await.map_err(|source| DeliveryError::Http { url: c.url.clone(), source })?;
            let status = resp.status();
            // A body that cannot be read is an empty one: the status already says how it went.
            let text = resp.text().await.unwrap_or_default();
            if !status.is_success() {
                let body = text.chars().take(200).collect();
                return Err(DeliveryError::Refused { url: c.url.clone(), status, body });
            }
            Ok(if kind == ChannelKind::Ticket { ticket_id(&text) } else { None })
        }
    }
}

/// The ticket id in the helpdesk's answer: `{"ticket": "INC-1"}` or `{"id": ...}`.
fn ticket_id(answer: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(answer).ok()?;
    let id = v.get("ticket").or_else(|| v.get("id"))?;
    let id = match id {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Some(id.chars().take(100).collect())
}

async fn email(c: &ChannelConfig, m: &Message, timeout: Duration) -> Result<(), DeliveryError> {
    use lettre::message::header::ContentType;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message as Mail, Tokio1Executor};
    let config = |field, value: &str, why: String| DeliveryError::Config { field, value: value.to_string(), why };
    let (host, port) =
        c.smtp_addr.rsplit_once(':').ok_or_else(|| config("smtp_addr", &c.smtp_addr, "not HOST:PORT".into()))?;
    let port: u16 = port.parse().map_err(|_| config("smtp_addr", &c.smtp_addr, "the port is not a number".into()))?;
    let mut builder = Mail::builder()
        .from(c.from.parse().map_err(|e| config("from", &c.from, format!("{e}")))?)
        .subject(m.headline.clone())
        .message_id(Some(format!("<triad-notification-{}@triad>", m.notification)))
        .header(ContentType::TEXT_PLAIN);
    for to in &c.to {
        builder = builder.to(to.parse().map_err(|e| config("to", to, format!("{e}")))?);
    }
    let mail = builder.body(m.text.clone())?;
    // No TLS: the administration's relay (Postmaster) is reached over its internal network;
    // STARTTLS can be added with lettre's TLS features when a relay needs it.
    let transport =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(port).timeout(Some(timeout)).build();
    transport.send(mail).await.map(|_| ()).map_err(|source| DeliveryError::Smtp { addr: c.smtp_addr.clone(), source })
}

#[cfg(test)]
mod tests {
    #[test]
    fn ticket_ids_are_read_from_either_field() {
        assert_eq!(super::ticket_id(r#"{"ticket":"INC-42"}"#).as_deref(), Some("INC-42"));
        assert_eq!(super::ticket_id(r#"{"id":1234}"#).as_deref(), Some("1234"));
        assert_eq!(super::ticket_id("created"), None);
    }
}
