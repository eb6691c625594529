//! The probing side of one link: a UDP question every interval to the agent at the other end,
//! and a TCP echo every second on a kept connection, both into the link's view.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::wire::{Frame, Op, FRAME};
use super::{now_ns, LinkView};

/// The TCP echo's pace, and how long one connect or answer may take.
const TCP_EVERY: Duration = Duration::from_secs(1);
const TCP_TIMEOUT: Duration = Duration::from_secs(1);

/// Probes `peer` over UDP every `interval`, forever (the plan's owner aborts it).
pub async fn udp(peer: SocketAddr, interval: Duration, view: Arc<Mutex<LinkView>>) {
    let local = if peer.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
    let socket = match UdpSocket::bind(local).await {
        Ok(s) => s,
        Err(e) => {
            // Without a socket every probe counts as lost: the link shows silent, not healthy.
            tracing::error!(%peer, "link probe: no UDP socket: {e}");
            return;
        }
    };
    if let Err(e) = socket.connect(peer).await {
        tracing::warn!(%peer, "link probe: {e}");
    }
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    let mut buf = [0u8; 512];
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                seq += 1;
                let at = now_ns();
                lock(&view).window.sent(seq, at);
                if let Err(e) = socket.send(&Frame::ask(seq, at).encode()).await {
                    // No route while the link is down: counted as lost by the window.
                    tracing::trace!(%peer, "link probe: {e}");
                }
            }
            got = socket.recv(&mut buf) => {
                let now = now_ns();
                match got.map(|n| Frame::decode(&buf[..n])) {
                    Ok(Ok(f)) if f.op == Op::Answer => lock(&view).window.answered(f.seq, f.sent_ns, f.held_ns(), now),
                    Ok(_) => tracing::debug!(%peer, "link probe: a datagram that is not an answer, dropped"),
                    // ICMP unreachable from an earlier question: the answers simply do not come.
                    Err(e) => tracing::trace!(%peer, "link probe: {e}"),
                }
            }
        }
    }
}

fn lock(view: &Mutex<LinkView>) -> std::sync::MutexGuard<'_, LinkView> {
    view.lock().expect("link view lock poisoned")
}

/// Echoes a frame over TCP to `peer` every second on a kept connection, forever.
pub async fn tcp(peer: SocketAddr, view: Arc<Mutex<LinkView>>) {
    let mut conn: Option<TcpStream> = None;
    let mut seq = 0u64;
    loop {
        seq += 1;
        let started = now_ns();
        let result = tokio::time::timeout(TCP_TIMEOUT, echo_once(&mut conn, peer, seq)).await;
        {
            let mut v = lock(&view);
            match result {
                Ok(Ok(held_ns)) => {
                    v.tcp_ok = true;
                    v.tcp_rtt_ms = now_ns().saturating_sub(started).saturating_sub(held_ns) as f64 / 1e6;
                    v.tcp_error.clear();
                }
                Ok(Err(e)) => {
                    conn = None;
                    v.tcp_ok = false;
                    v.tcp_error = e.to_string();
                }
                Err(_) => {
                    conn = None;
                    v.tcp_ok = false;
                    v.tcp_error = format!("no answer within {} ms", TCP_TIMEOUT.as_millis());
                }
            }
        }
        tokio::time::sleep(TCP_EVERY).await;
    }
}

/// One question and answer on the connection (made first when there is none); the far host's
/// hold time.
async fn echo_once(conn: &mut Option<TcpStream>, peer: SocketAddr, seq: u64) -> std::io::Result<u64> {
    if conn.is_none() {
        let s = TcpStream::connect(peer).await?;
        let _ = s.set_nodelay(true);
        *conn = Some(s);
    }
    let stream = conn.as_mut().expect("made above");
    let sent = now_ns();
    stream.write_all(&Frame::ask(seq, sent).encode()).await?;
    let mut buf = [0u8; FRAME];
    stream.read_exact(&mut buf).await?;
    match Frame::decode(&buf) {
        Ok(f) if f.op == Op::Answer && f.seq == seq && f.sent_ns == sent => Ok(f.held_ns()),
        Ok(_) => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "an answer to another question")),
        Err(e) => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
    }
}
