//! Syslog listeners: UDP, TCP (RFC 6587 framings) and TCP with TLS. A UDP or TCP sender must be
//! on `alerts.syslog.allow`; a TLS sender must present a certificate from the deployment's CA.
//! Each message is parsed (`alerts/syslog`), placed under the configured source, and handed to
//! the intake; a line that cannot be parsed, a sender not admitted, or a severity below
//! `alerts.syslog.min_severity` is counted in `triad_alerts_rejected_total` and goes no further.
//! Syslog has no acknowledgement: once read, a line is the controller's to keep or lose, so the
//! listeners never wait on a commit (a UDP storm beyond what the log takes is dropped and
//! counted as `overloaded`; a TCP sender is slowed instead).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::intake::Intake;
use crate::alerts::syslog::{self, framing, MAX_MESSAGE};
use crate::context::{now_ms, Ctx};
use crate::error::{Error, Result};
use crate::state::alerts::{IncomingAlert, Severity};

/// Why a network in `alerts.syslog.allow` is not one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NetError {
    #[error("`{0}` is not an address or a network")]
    NotAnAddress(String),
    #[error("`{net}`: the prefix length must be 0 to {max}")]
    Prefix { net: String, max: u8 },
}

/// An IP network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `10.1.0.0/16`, `::1/128` or a bare address (a network of one).
    pub fn parse(s: &str) -> std::result::Result<IpNet, NetError> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| NetError::NotAnAddress(s.to_string()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| NetError::Prefix { net: s.to_string(), max })?,
        };
        Ok(IpNet { addr, prefix })
    }

    /// Whether `ip` is in the network (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let bits = |a: IpAddr| -> u128 {
            match a {
                IpAddr::V4(v4) => u32::from(v4) as u128,
                IpAddr::V6(v6) => u128::from(v6),
            }
        };
        if self.addr.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        let width = if ip.is_ipv4() { 32 } else { 128 };
        let shift = width - self.prefix as u32;
        let mask = if shift >= 128 { 0 } else { u128::MAX << shift };
        bits(self.addr) & mask == bits(ip) & mask
    }
}

/// What every listener shares.
struct Shared {
    ctx: Arc<Ctx>,
    source: String,
    allow: Vec<IpNet>,
    min: Severity,
    tx: mpsc::Sender<IncomingAlert>,
}

impl Shared {
    fn reject(&self, reason: &str) {
        self.ctx.metrics.alerts_rejected.with_label_values(&[&self.source, reason]).inc();
    }

    fn admitted(&self, ip: IpAddr) -> bool {
        let ok = self.allow.iter().any(|n| n.contains(ip));
        if !ok {
            self.reject("not_allowed");
        }
        ok
    }

    /// Parses one message; `None` when it goes no further (counted).
    fn take(&self, line: &str, sender: IpAddr) -> Option<IncomingAlert> {
        match syslog::to_alert(line, sender, now_ms()) {
            Err(e) => {
                tracing::debug!(%sender, "syslog line refused: {e}");
                self.reject(e.reason());
                None
            }
            Ok(a) if !syslog::passes(a.severity, self.min) => {
                self.reject("below_min_severity");
                None
            }
            Ok(a) => Some(a),
        }
    }
}

/// The bound listeners, to start once the controller is up.
pub struct SyslogListeners {
    udp: Option<UdpSocket>,
    tcp: Option<TcpListener>,
    tls: Option<(TcpListener, TlsAcceptor)>,
}

impl SyslogListeners {
    /// Binds what `alerts.syslog` asks for (before anything else starts, so that a port in use
    /// is reported cleanly).
    pub async fn bind(ctx_cfg: &crate::config::ControllerConfig, tls: &crate::tls::TlsFiles) -> Result<Self> {
        let s = &ctx_cfg.alerts.syslog;
        let bind_err = |key: &str, addr: &str, e| Error::io(format!("alerts.syslog.{key} {addr}"), e);
        let udp = match s.udp_addr.as_str() {
            "" => None,
            a => Some(UdpSocket::bind(a).await.map_err(|e| bind_err("udp_addr", a, e))?),
        };
        let tcp = match s.tcp_addr.as_str() {
            "" => None,
            a => Some(TcpListener::bind(a).await.map_err(|e| bind_err("tcp_addr", a, e))?),
        };
        let tls = match s.tls_addr.as_str() {
            "" => None,
            a => {
                let listener = TcpListener::bind(a).await.map_err(|e| bind_err("tls_addr", a, e))?;
                Some((listener, TlsAcceptor::from(mutual_tls(&tls.ca, &tls.cert, &tls.key)?)))
            }
        };
        Ok(SyslogListeners { udp, tcp, tls })
    }

    /// Serves the listeners for the life of the process.
    pub fn start(self, ctx: Arc<Ctx>, intake: Intake) {
        if self.udp.is_none() && self.tcp.is_none() && self.tls.is_none() {
            return;
        }
        let s = &ctx.cfg.alerts.syslog;
        let (tx, rx) = mpsc::channel(16_384);
        let shared = Arc::new(Shared {
            source: s.source.clone(),
            allow: s.allow.iter().filter_map(|n| IpNet::parse(n).ok()).collect(),
            min: s.min_severity.parse().unwrap_or(Severity::Low),
            tx,
            ctx: ctx.clone(),
        });
        tokio::spawn(forward(ctx.clone(), intake, shared.source.clone(), rx));
        if let Some(udp) = self.udp {
            tokio::spawn(serve_udp(udp, shared.clone()));
        }
        if let Some(tcp) = self.tcp {
            tokio::spawn(serve_tcp(tcp, None, shared.clone()));
        }
        if let Some((tls, acceptor)) = self.tls {
            tokio::spawn(serve_tcp(tls, Some(acceptor), shared));
        }
    }
}

/// TLS for the syslog port: our certificate, and a client certificate from the CA required.
fn mutual_tls(ca: &[u8], cert: &[u8], key: &[u8]) -> Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls = |e: &dyn std::fmt::Display| Error::Tls(format!("syslog TLS: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca) {
        roots.add(c.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| tls(&e))?;
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert).collect::<std::result::Result<_, _>>().map_err(|e| tls(&e))?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| tls(&e))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| tls(&e))?;
    Ok(Arc::new(config))
}

async fn serve_udp(socket: UdpSocket, shared: Arc<Shared>) {
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("syslog UDP: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !shared.admitted(from.ip()) {
            continue;
        }
        let line = String::from_utf8_lossy(&buf[..n]);
        if let Some(alert) = shared.take(&line, from.ip()) {
            if shared.tx.try_send(alert).is_err() {
                shared.reject("overloaded");
            }
        }
    }
}

async fn serve_tcp(listener: TcpListener, tls: Option<TlsAcceptor>, shared: Arc<Shared>) {
    // Bounded: a flood of connections cannot take every descriptor.
    let slots = Arc::new(Semaphore::new(1024));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("syslog TCP: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (shared, tls) = (shared.clone(), tls.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None if !shared.admitted(peer.ip()) => {}
                None => read_frames(BufReader::new(stream), peer, &shared).await,
                Some(acceptor) => match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                    Ok(Ok(s)) => read_frames(BufReader::new(s), peer, &shared).await,
                    _ => shared.reject("tls_refused"),
                },
            }
        });
    }
}

async fn read_frames<R: AsyncRead + AsyncWrite + Unpin>(mut r: BufReader<R>, peer: SocketAddr, shared: &Shared) {
    loop {
        match framing::next_frame(&mut r).await {
            Ok(None) => {
                // The sender is done: end our side too (over TLS, a close_notify of our own).
                let _ = tokio::time::timeout(Duration::from_secs(2), r.into_inner().shutdown()).await;
                return;
            }
            Ok(Some(line)) => {
                if let Some(alert) = shared.take(&line, peer.ip()) {
                    // A TCP sender waits while the queue is full: back-pressure, not loss.
                    if shared.tx.send(alert).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::info!(%peer, "syslog TCP connection closed: {e}");
                let reason = if matches!(e, framing::FramingError::Io(_)) { "connection_error" } else { "bad_framing" };
                shared.reject(reason);
                return;
            }
        }
    }
}

/// Gathers parsed alerts and offers them to the intake, a few batches in flight at once.
async fn forward(ctx: Arc<Ctx>, intake: Intake, source: String, mut rx: mpsc::Receiver<IncomingAlert>) {
    let in_flight = Arc::new(Semaphore::new(4));
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 5_000 {
            match rx.try_recv() {
                Ok(a) => batch.push(a),
                Err(_) => break,
            }
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let (ctx, intake, source) = (ctx.clone(), intake.clone(), source.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let n = batch.len() as u64;
            match intake.offer(&source, "syslog", batch, false).await {
                Ok(_) => ctx.metrics.alerts_received.with_label_values(&[&source]).inc_by(n),
                Err(e) => {
                    tracing::warn!("{n} syslog alerts not recorded: {e}");
                    ctx.metrics.alerts_rejected.with_label_values(&[&source, "unavailable"]).inc_by(n);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_and_match() {
        let n = IpNet::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()), "IPv4-mapped");
        assert!(IpNet::parse("127.0.0.1").unwrap().contains("127.0.0.1".parse().unwrap()));
        assert!(!IpNet::parse("127.0.0.1").unwrap().contains("127.0.0.2".parse().unwrap()));
        assert!(IpNet::parse("0.0.0.0/0").unwrap().contains("192.0.2.1".parse().unwrap()));
        assert!(IpNet::parse("::/0").unwrap().contains("2001:db8::1".parse().unwrap()));
        assert!(IpNet::parse("10.0.0.0/33").unwrap_err().to_string().contains("0 to 32"));
        assert!(IpNet::parse("host").is_err());
    }
}
