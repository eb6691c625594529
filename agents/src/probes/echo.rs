//! The answering side of link probes: a UDP socket and a TCP listener on one address. Each
//! frame is stamped and sent back; anything that is not a probe question is dropped and counted.
//! An answer is never larger than its question, so the echo cannot amplify a spoofed flood.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;

use super::now_ns;
use super::wire::{Frame, Op, FRAME};
use crate::error::{Error, Result};
use crate::metrics::AgentMetrics;

/// Most TCP probe connections served at once; more are closed on arrival.
const MAX_TCP: usize = 64;
/// A TCP probe connection that sends nothing for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(30);

/// Binds `addr` (UDP and TCP) and answers probes there until the process ends.
pub async fn serve(addr: &str, metrics: Arc<AgentMetrics>) -> Result<()> {
    let io = |e| Error::Io { context: format!("probe_addr {addr}"), source: e };
    let udp = UdpSocket::bind(addr).await.map_err(io)?;
    let tcp = TcpListener::bind(addr).await.map_err(io)?;
    tokio::spawn(answer_udp(udp, metrics.clone()));
    tokio::spawn(answer_tcp(tcp, metrics));
    Ok(())
}

async fn answer_udp(socket: UdpSocket, metrics: Arc<AgentMetrics>) {
    let mut buf = [0u8; 512];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors from earlier answers surface here on Linux: not fatal.
                tracing::debug!("probe echo (udp): {e}");
                continue;
            }
        };
        let received = now_ns();
        match Frame::decode(&buf[..n]) {
            Ok(f) if f.op == Op::Ask => {
                let answer = f.answer(received, now_ns()).encode();
                if let Err(e) = socket.send_to(&answer, from).await {
                    tracing::debug!(%from, "probe echo (udp): {e}");
                }
                metrics.probe_echoes.with_label_values(&["udp"]).inc();
            }
            _ => metrics.probe_bad_frames.inc(),
        }
    }
}

async fn answer_tcp(listener: TcpListener, metrics: Arc<AgentMetrics>) {
    let slots = Arc::new(Semaphore::new(MAX_TCP));
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("probe echo (tcp): accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%from, "probe echo (tcp): {MAX_TCP} connections open already; closing this one");
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = echo_connection(stream, &metrics).await {
                tracing::debug!(%from, "probe echo (tcp) closed: {e}");
            }
            drop(slot);
        });
    }
}

async fn echo_connection(mut stream: TcpStream, metrics: &AgentMetrics) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf = [0u8; FRAME];
    loop {
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut buf)).await {
            Err(_) => return Ok(()),
            Ok(r) => r?,
        };
        let received = now_ns();
        match Frame::decode(&buf) {
            Ok(f) if f.op == Op::Ask => {
                stream.write_all(&f.answer(received, now_ns()).encode()).await?;
                metrics.probe_echoes.with_label_values(&["tcp"]).inc();
            }
            _ => {
                metrics.probe_bad_frames.inc();
                return Ok(());
            }
        }
    }
}
