//! The `[alerts]` part of the controller's configuration: HTTP ingest limits, the syslog
//! listeners, and where notifications go.

use serde::{Deserialize, Serialize};

use super::{check_addr, check_name, key_err, ControllerConfig};
use crate::error::Result;
use crate::state::alerts::Severity;

/// A severity named by config key `key`.
fn severity(key: &str, value: &str) -> Result<Severity> {
    value.parse().map_err(|_| key_err(key, format!("`{value}`: one of {}", Severity::names())))
}

/// How this controller takes alerts in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Accept `/ingest/...` over plain HTTP as well as HTTPS (default false: a token sent in
    /// clear text can be replayed by anyone on the path).
    pub ingest_plain_http: bool,
    /// The largest request body `/ingest/...` reads, in bytes (default 4194304: 4 MiB). A larger
    /// one is refused with 413 and nothing of it is stored.
    pub max_body_bytes: usize,
    /// Alert events accepted (synced to this controller's intake journal) but not yet in the
    /// replicated log, past which senders are told 503 "busy, send again" rather than kept
    /// waiting without bound (default 200000). Reached only while there is no leader, or the
    /// log falls behind a storm.
    pub intake_backlog: u64,
    /// Syslog listeners (RFC 5424 and 3164, CEF payloads); none unless addresses are given.
    pub syslog: SyslogConfig,
    /// Where alerts are notified and escalated; nothing is sent unless channels and routes are
    /// given.
    pub notify: NotifyConfig,
    /// Triad's own events (every audited change) sent to the SIEM as syslog with CEF.
    pub siem: SiemConfig,
    /// How long closed alerts stay in memory before the on-disk history.
    pub retention: RetentionConfig,
}

/// Retention of closed alerts in memory (they stay queryable on disk afterwards).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// A resolved or false-positive alert leaves memory this long after it closed, in
    /// milliseconds (default 604800000: seven days).
    pub keep_closed_ms: u64,
    /// At most this many closed alerts stay in memory; the oldest go first (default 100000).
    pub max_closed_in_memory: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { keep_closed_ms: 7 * 86_400_000, max_closed_in_memory: 100_000 }
    }
}

/// The SIEM that receives Triad's own events.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiemConfig {
    /// `HOST:PORT` of its syslog receiver (default empty: nothing is sent).
    pub addr: String,
    /// `udp`, or `tcp` (RFC 6587 octet counting; default).
    pub protocol: String,
    /// The HOSTNAME field of the messages (default: `triad-` and the controller's site).
    pub hostname: String,
}

impl Default for SiemConfig {
    fn default() -> Self {
        SiemConfig { addr: String::new(), protocol: "tcp".into(), hostname: String::new() }
    }
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            ingest_plain_http: false,
            max_body_bytes: 4 << 20,
            intake_backlog: 200_000,
            syslog: SyslogConfig::default(),
            notify: NotifyConfig::default(),
            siem: SiemConfig::default(),
            retention: RetentionConfig::default(),
        }
    }
}

/// Where this controller takes syslog in, and from whom.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyslogConfig {
    /// UDP `IP:PORT` to listen on (default empty: no UDP listener).
    pub udp_addr: String,
    /// TCP `IP:PORT` (RFC 6587: octet counting or one message per line; default empty: none).
    pub tcp_addr: String,
    /// TCP with TLS `IP:PORT` (default empty: none). Senders present a certificate from the
    /// deployment's CA (`triadctl certs issue`); the allowlist does not apply to them.
    pub tls_addr: String,
    /// Senders admitted on UDP and plain TCP: IP addresses or networks (`10.1.0.0/16`). Empty
    /// (the default): nobody, so a listener opened by mistake takes nothing in.
    pub allow: Vec<String>,
    /// The source name syslog alerts are recorded under (default `syslog`).
    pub source: String,
    /// The lowest severity kept (default `low`: syslog `info` and `debug` lines are counted and
    /// dropped, not recorded as alerts).
    pub min_severity: String,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        SyslogConfig {
            udp_addr: String::new(),
            tcp_addr: String::new(),
            tls_addr: String::new(),
            allow: Vec::new(),
            source: "syslog".into(),
            min_severity: "low".into(),
        }
    }
}

/// Notification channels, the routes that pick them, and escalation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// `[[alerts.notify.channels]]`: where notifications can go.
    pub channels: Vec<ChannelConfig>,
    /// `[[alerts.notify.routes]]`: which alerts go to which channel. An alert goes to every
    /// route it matches.
    pub routes: Vec<RouteConfig>,
    /// When an unacknowledged alert is escalated.
    pub escalation: EscalationConfig,
}

/// One way of telling someone.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Its name, used by routes and shown in the alert's history.
    pub name: String,
    /// `webhook` (JSON POST), `email` (SMTP), `sms` (the SMS gateway's HTTP API) or `ticket`
    /// (the helpdesk's e-ticket webhook: incidents, the ticket id read back). The bodies are in
    /// runbooks/soc-triage.md.
    pub kind: String,
    /// `http://` or `https://` URL (webhook, sms, ticket).
    #[serde(default)]
    pub url: String,
    /// Sent as `Authorization: Bearer TOKEN` (webhook, sms, ticket; optional).
    #[serde(default)]
    pub token: String,
    /// The SMTP server, `HOST:PORT` (email).
    #[serde(default)]
    pub smtp_addr: String,
    /// The sender's address (email).
    #[serde(default)]
    pub from: String,
    /// Recipients: e-mail addresses (email) or phone numbers (sms).
    #[serde(default)]
    pub to: Vec<String>,
    /// How long one delivery may take, in milliseconds (default 10000).
    #[serde(default = "default_delivery_timeout")]
    pub timeout_ms: u64,
}

fn default_delivery_timeout() -> u64 {
    10_000
}

/// Which alerts a channel is told about.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The channel's name.
    pub channel: String,
    /// The lowest severity routed (default `high`).
    #[serde(default = "default_route_severity")]
    pub min_severity: String,
    /// Only alerts at these sites (default: any, and alerts placed nowhere).
    #[serde(default)]
    pub sites: Vec<String>,
    /// Only alerts from these sources (default: any).
    #[serde(default)]
    pub sources: Vec<String>,
    /// The escalation level it serves (default 0: when the alert opens; 1: its first
    /// escalation, and so on).
    #[serde(default)]
    pub level: u32,
    /// Route incidents (the first alert of each) instead of alerts: the helpdesk export
    /// (default false).
    #[serde(default)]
    pub incidents: bool,
}

fn default_route_severity() -> String {
    "high".into()
}

/// Escalation: an alert at or above `min_severity` left open (not acknowledged) for
/// `after_ms` is raised one level, and again after each further `after_ms`, up to `max_level`;
/// each level notifies the routes of that level. The timer is the alert's own times in the
/// replicated state, so a new leader keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EscalationConfig {
    /// Default 900000 (15 minutes).
    pub after_ms: u64,
    /// Default `critical`.
    pub min_severity: String,
    /// Default 2.
    pub max_level: u32,
}

impl Default for EscalationConfig {
    fn default() -> Self {
        EscalationConfig { after_ms: 900_000, min_severity: "critical".into(), max_level: 2 }
    }
}

crate::named_enum! {
    /// A channel's kind.
    pub enum ChannelKind: "channel kind" {
        Webhook = "webhook",
        Email = "email",
        Sms = "sms",
        Ticket = "ticket",
    }
}

impl ChannelConfig {
    /// Its kind (checked when the config loads).
    pub fn channel_kind(&self) -> ChannelKind {
        self.kind.parse().unwrap_or(ChannelKind::Webhook)
    }

    fn validate(&self, key: &str) -> Result<()> {
        check_name(&format!("{key}.name"), &self.name)?;
        let kind: ChannelKind = self
            .kind
            .parse()
            .map_err(|_| key_err(format!("{key}.kind"), format!("`{}`: one of {}", self.kind, ChannelKind::names())))?;
        if kind == ChannelKind::Email {
            check_host_port(&format!("{key}.smtp_addr"), &self.smtp_addr)?;
            if !self.from.contains('@') {
                return Err(key_err(format!("{key}.from"), format!("`{}` is not an e-mail address", self.from)));
            }
            if let Some(bad) = self.to.iter().find(|t| !t.contains('@')) {
                return Err(key_err(format!("{key}.to"), format!("`{bad}` is not an e-mail address")));
            }
        } else if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(key_err(format!("{key}.url"), format!("`{}` is not an http:// or https:// URL", self.url)));
        }
        if matches!(kind, ChannelKind::Email | ChannelKind::Sms) && self.to.is_empty() {
            return Err(key_err(format!("{key}.to"), "name at least one recipient"));
        }
        if !(100..=120_000).contains(&self.timeout_ms) {
            return Err(key_err(format!("{key}.timeout_ms"), "must be between 100 and 120000"));
        }
        Ok(())
    }
}

fn check_host_port(key: &str, value: &str) -> Result<()> {
    match value.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(key_err(key, format!("`{value}` is not HOST:PORT"))),
    }
}

impl NotifyConfig {
    fn validate(&self) -> Result<()> {
        let mut names = std::collections::BTreeSet::new();
        for (i, c) in self.channels.iter().enumerate() {
            let key = format!("alerts.notify.channels[{i}]");
            c.validate(&key)?;
            if !names.insert(c.name.as_str()) {
                return Err(key_err(format!("{key}.name"), format!("`{}` is named twice", c.name)));
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            let key = format!("alerts.notify.routes[{i}]");
            if !names.contains(r.channel.as_str()) {
                return Err(key_err(format!("{key}.channel"), format!("no channel named `{}`", r.channel)));
            }
            severity(&format!("{key}.min_severity"), &r.min_severity)?;
            if r.level > self.escalation.max_level {
                return Err(key_err(
                    format!("{key}.level"),
                    format!("above alerts.notify.escalation.max_level ({})", self.escalation.max_level),
                ));
            }
        }
        let e = &self.escalation;
        severity("alerts.notify.escalation.min_severity", &e.min_severity)?;
        if !(1_000..=7 * 86_400_000).contains(&e.after_ms) {
            return Err(key_err(
                "alerts.notify.escalation.after_ms",
                "must be between 1000 (1 s) and 604800000 (7 days)",
            ));
        }
        if e.max_level > 10 {
            return Err(key_err("alerts.notify.escalation.max_level", "at most 10"));
        }
        Ok(())
    }
}

impl ControllerConfig {
    /// The alert ingest limits, the syslog listeners and the notifications.
    pub(super) fn validate_alerts(&self) -> Result<()> {
        let backlog = self.alerts.intake_backlog;
        if !(1_000..=10_000_000).contains(&backlog) {
            return Err(key_err("alerts.intake_backlog", format!("{backlog}: must be between 1000 and 10000000")));
        }
        let max = self.alerts.max_body_bytes;
        if !(1024..=256 << 20).contains(&max) {
            return Err(key_err(
                "alerts.max_body_bytes",
                format!("{max}: must be between 1024 and 268435456 (256 MiB)"),
            ));
        }
        let s = &self.alerts.syslog;
        for (key, addr) in [("udp_addr", &s.udp_addr), ("tcp_addr", &s.tcp_addr), ("tls_addr", &s.tls_addr)] {
            if !addr.is_empty() {
                check_addr(&format!("alerts.syslog.{key}"), addr)?;
            }
        }
        for (i, net) in s.allow.iter().enumerate() {
            crate::api::IpNet::parse(net)
                .map_err(|why| key_err(format!("alerts.syslog.allow[{i}]"), why.to_string()))?;
        }
        check_name("alerts.syslog.source", &s.source)?;
        severity("alerts.syslog.min_severity", &s.min_severity)?;
        let siem = &self.alerts.siem;
        if !siem.addr.is_empty() {
            check_host_port("alerts.siem.addr", &siem.addr)?;
        }
        if siem.protocol != "udp" && siem.protocol != "tcp" {
            return Err(key_err("alerts.siem.protocol", format!("`{}`: udp or tcp", siem.protocol)));
        }
        let r = &self.alerts.retention;
        if !(1_000..=3650 * 86_400_000).contains(&r.keep_closed_ms) {
            return Err(key_err("alerts.retention.keep_closed_ms", "must be between 1000 (1 s) and ten years"));
        }
        if !(100..=10_000_000).contains(&r.max_closed_in_memory) {
            return Err(key_err("alerts.retention.max_closed_in_memory", "must be between 100 and 10000000"));
        }
        self.alerts.notify.validate()
    }
}
