//! Triad's own events to the SIEM (leader only): every audited change (role changes, fences,
//! failovers, approvals, refusals, user changes, triage...) as one RFC 5424 syslog message with
//! a CEF payload, so the SOC sees the control plane act in the tool it already watches. Alert
//! ingest batches are not sent: the SIEM sent those alerts, and echoing them would loop.
//!
//! The audit log's seq sent so far is committed (`Command::SiemSent`, every two seconds at most),
//! so a new leader resumes where the last one stopped; what a dying leader sent but had not
//! committed is sent again (at least once), each message carrying its seq (`cn1`) for the SIEM
//! to drop a repeat. A SIEM that cannot be reached is retried every few seconds, with the backlog
//! and the failures in `triad_siem_backlog` and `triad_siem_send_failures_total`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

use crate::alerts::timestamp::format_ms;
use crate::context::Ctx;
use crate::raft::read_audit_after;
use crate::state::{Actor, AuditEntry, Command};

/// Entries sent per round.
const BATCH: usize = 500;
/// How often the cursor is committed at most.
const COMMIT_EVERY: Duration = Duration::from_secs(2);

/// The CEF signature id and severity (0-10) of an audited action.
fn classify(action: &str) -> (&'static str, u8) {
    let rejected = action.contains(": rejected");
    match action {
        a if a.starts_with("record break-glass") => ("break-glass", 10),
        a if a.starts_with("start failover") => ("failover", 9),
        a if a.starts_with("start restart") => ("fence", 8),
        a if a.starts_with("switch primary") || a.starts_with("adopt") => ("role-change", 8),
        a if a.starts_with("start switchover") => ("switchover", 6),
        a if a.starts_with("refused call") => ("refused", 5),
        _ if rejected => ("rejected", 4),
        a if a.starts_with("approve") || a.starts_with("request") => ("approval", 6),
        a if a.starts_with("mark agent") => ("agent", 5),
        a if a.starts_with("put user") || a.starts_with("delete user") => ("user", 6),
        _ => ("change", 3),
    }
}

fn cef_header(s: &str) -> String {
    s.replace('\\', "\\\\").replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn cef_value(s: &str) -> String {
    s.replace('\\', "\\\\").replace('=', "\\=").replace('\n', "\\n").replace('\r', "\\r")
}

/// One audit entry as an RFC 5424 message with a CEF payload.
pub fn message(e: &AuditEntry, hostname: &str) -> String {
    let (signature, severity) = classify(&e.action);
    // Facility 13 (log audit); severity notice, or warning for the severe ones.
    let pri = 13 * 8 + if severity >= 8 { 4 } else { 5 };
    let outcome = if e.action.contains(": rejected") { "rejected" } else { "ok" };
    let src = e.origin.parse::<std::net::SocketAddr>().map(|a| format!(" src={}", a.ip())).unwrap_or_default();
    format!(
        "<{pri}>1 {ts} {host} triad - AUDIT - CEF:0|Triad|Triad control plane|1|{signature}|{name}|{severity}|rt={rt} suser={user} cs1Label=role cs1={role}{src} act={act} outcome={outcome} cn1Label=seq cn1={seq} cn2Label=logIndex cn2={index}",
        ts = format_ms(e.at_ms),
        host = if hostname.is_empty() { "-" } else { hostname },
        name = cef_header(&e.action.chars().take(200).collect::<String>()),
        rt = e.at_ms,
        user = cef_value(&e.actor),
        role = e.role,
        act = cef_value(&e.action),
        seq = e.seq,
        index = e.log_index,
    )
}

/// Whether an entry goes to the SIEM.
fn forwarded(e: &AuditEntry) -> bool {
    !e.action.starts_with("ingest ")
}

enum Link {
    Tcp(TcpStream),
    Udp(UdpSocket),
}

async fn connect(addr: &str, protocol: &str) -> std::io::Result<Link> {
    let t = Duration::from_secs(5);
    let timed = |e: tokio::time::error::Elapsed| std::io::Error::new(std::io::ErrorKind::TimedOut, e);
    if protocol == "udp" {
        let s = UdpSocket::bind(if addr.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" }).await?;
        tokio::time::timeout(t, s.connect(addr)).await.map_err(timed)??;
        Ok(Link::Udp(s))
    } else {
        Ok(Link::Tcp(tokio::time::timeout(t, TcpStream::connect(addr)).await.map_err(timed)??))
    }
}

async fn send(link: &mut Link, msg: &str) -> std::io::Result<()> {
    let t = Duration::from_secs(5);
    let timed = |e: tokio::time::error::Elapsed| std::io::Error::new(std::io::ErrorKind::TimedOut, e);
    match link {
        Link::Udp(s) => tokio::time::timeout(t, s.send(msg.as_bytes())).await.map_err(timed)?.map(|_| ()),
        Link::Tcp(s) => {
            let frame = format!("{} {msg}", msg.len());
            tokio::time::timeout(t, s.write_all(frame.as_bytes())).await.map_err(timed)?
        }
    }
}

/// Runs for the life of the process; sends only while this controller leads.
pub async fn run(ctx: Arc<Ctx>) {
    let cfg = ctx.cfg.alerts.siem.clone();
    if cfg.addr.is_empty() {
        return;
    }
    let hostname = if cfg.hostname.is_empty() { format!("triad-{}", ctx.cfg.site) } else { cfg.hostname.clone() };
    let mut link: Option<Link> = None;
    let mut sent = 0u64;
    let mut committed_at = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if !ctx.is_leader() {
            (link, sent) = (None, 0);
            continue;
        }
        let (cursor, newest) = {
            let g = ctx.state.read().expect("state lock poisoned");
            (g.state.siem_sent_seq, g.state.audit_seq)
        };
        sent = sent.max(cursor);
        ctx.metrics.siem_backlog.set(newest.saturating_sub(sent) as i64);
        let entries = match read_audit_after(&ctx.db, sent, BATCH) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("SIEM: reading the audit log: {e}");
                continue;
            }
        };
        for e in &entries {
            if forwarded(e) {
                if link.is_none() {
                    match connect(&cfg.addr, &cfg.protocol).await {
                        Ok(l) => link = Some(l),
                        Err(err) => {
                            ctx.metrics.siem_failures.inc();
                            tracing::warn!(addr = %cfg.addr, "SIEM unreachable ({err}); {} entries waiting", newest - sent);
                            tokio::time::sleep(Duration::from_secs(3)).await;
                            break;
                        }
                    }
                }
                let msg = message(e, &hostname);
                if let Err(err) = send(link.as_mut().expect("connected above"), &msg).await {
                    ctx.metrics.siem_failures.inc();
                    tracing::warn!(addr = %cfg.addr, "SIEM send failed ({err}); reconnecting");
                    link = None;
                    break;
                }
            }
            sent = e.seq;
        }
        if sent > cursor && (committed_at.elapsed() >= COMMIT_EVERY || entries.len() == BATCH) {
            let proposal = ctx.proposal(Actor::system(ctx.id), Command::SiemSent { seq: sent });
            if ctx.proposer.propose(proposal).await.is_ok() {
                committed_at = Instant::now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Role;

    #[test]
    fn an_audit_entry_is_rfc5424_with_cef_that_triads_own_parser_reads() {
        let e = AuditEntry {
            seq: 42,
            log_index: 7,
            at_ms: 1_796_565_731_000,
            actor: "controller-1".into(),
            role: Role::System,
            origin: "127.0.0.1:5000".into(),
            action: "start failover of customs from dc to ndc (a|b=c): ok".into(),
        };
        let line = message(&e, "triad-dc");
        let a = crate::alerts::syslog::to_alert(&line, "127.0.0.1".parse().unwrap(), 0).expect(&line);
        assert_eq!(a.title, "start failover of customs from dc to ndc (a|b=c): ok");
        assert_eq!(a.labels["act"], "start failover of customs from dc to ndc (a|b=c): ok");
        assert_eq!(
            (a.labels["cn1"].as_str(), a.labels["cs1"].as_str(), a.labels["cef_signature_id"].as_str()),
            ("42", "system", "failover")
        );
        assert_eq!(a.severity, crate::state::alerts::Severity::Critical);
        assert_eq!(a.at_ms, 1_796_565_731_000);
        assert!(!forwarded(&AuditEntry { action: "ingest 3 alert events from siem: ok".into(), ..e }));
    }
}
