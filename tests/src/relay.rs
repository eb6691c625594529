//! A userspace relay that stands in a link's probe path and makes it slow or lossy (this kernel
//! has no `netem`): UDP datagrams are delayed and dropped at random, TCP bytes delayed, in both
//! directions, by whatever the test sets at the time. Runs in the test process on loopback or on
//! an address of a namespace the test made; stops when dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// What the relay does to traffic now (each way).
#[derive(Debug, Clone, Copy, Default)]
pub struct Impairment {
    /// Added to every datagram and every TCP read, each way (so a round trip gains twice this).
    pub delay: Duration,
    /// Each UDP datagram is dropped with this probability, each way.
    pub loss: f64,
}

/// A running relay: listens on `addr`, forwards to the target given at start.
pub struct Relay {
    pub addr: SocketAddr,
    setting: Arc<Mutex<Impairment>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Relay {
    /// Binds UDP and TCP on `listen` (port 0: any free one, the same for both) and relays to
    /// `target`.
    pub async fn start(listen: SocketAddr, target: SocketAddr) -> Result<Relay> {
        let tcp = TcpListener::bind(listen).await.with_context(|| format!("relay: binding TCP {listen}"))?;
        let addr = tcp.local_addr()?;
        let udp = UdpSocket::bind(addr).await.with_context(|| format!("relay: binding UDP {addr}"))?;
        let setting = Arc::new(Mutex::new(Impairment::default()));
        let tasks = vec![
            tokio::spawn(relay_udp(Arc::new(udp), target, setting.clone())),
            tokio::spawn(relay_tcp(tcp, target, setting.clone())),
        ];
        Ok(Relay { addr, setting, tasks })
    }

    /// Changes what the relay does from now on.
    pub fn set(&self, i: Impairment) {
        *self.setting.lock().expect("relay setting lock") = i;
    }
}

fn now(setting: &Mutex<Impairment>) -> Impairment {
    *setting.lock().expect("relay setting lock")
}

/// Sends `bytes` on `socket` (to `to`, or connected) after the delay, unless lost.
fn forward(socket: Arc<UdpSocket>, to: Option<SocketAddr>, bytes: Vec<u8>, i: Impairment) {
    if rand::random::<f64>() < i.loss {
        return;
    }
    tokio::spawn(async move {
        tokio::time::sleep(i.delay).await;
        let _ = match to {
            Some(to) => socket.send_to(&bytes, to).await,
            None => socket.send(&bytes).await,
        };
    });
}

async fn relay_udp(front: Arc<UdpSocket>, target: SocketAddr, setting: Arc<Mutex<Impairment>>) {
    // One upstream socket per client, so that answers find their way back.
    let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, client)) = front.recv_from(&mut buf).await else { continue };
        let up = match upstreams.get(&client) {
            Some(u) => u.clone(),
            None => {
                let local = if target.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
                let Ok(u) = UdpSocket::bind(local).await else { continue };
                if u.connect(target).await.is_err() {
                    continue;
                }
                let u = Arc::new(u);
                upstreams.insert(client, u.clone());
                let (back, front, setting) = (u.clone(), front.clone(), setting.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65_536];
                    while let Ok(n) = back.recv(&mut buf).await {
                        forward(front.clone(), Some(client), buf[..n].to_vec(), now(&setting));
                    }
                });
                u
            }
        };
        forward(up, None, buf[..n].to_vec(), now(&setting));
    }
}

async fn relay_tcp(listener: TcpListener, target: SocketAddr, setting: Arc<Mutex<Impairment>>) {
    while let Ok((client, _)) = listener.accept().await {
        let setting = setting.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(target).await else { return };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::join!(pipe(cr, sw, setting.clone()), pipe(sr, cw, setting));
        });
    }
}

/// Copies `from` to `to`, each chunk delivered after the delay in force when it was read, in
/// order.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    setting: Arc<Mutex<Impairment>>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 16_384];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let at = tokio::time::Instant::now() + now(&setting).delay;
        if tx.send((at, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}
