//! One port, two protocols: each connection to the controller's HTTP port is looked at before it
//! is served; one that opens with a TLS handshake is served over TLS with the controller's
//! certificate (from the deployment's CA), any other as plain HTTP. Prometheus keeps scraping
//! `/metrics` as before, while alert sources reach `/ingest/...` over HTTPS on the same address.
//! The handlers learn which it was from the [`Conn`] extension.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// The first byte of a TLS record carrying a handshake.
const TLS_HANDSHAKE: u8 = 0x16;
/// How long a client may take to send its first byte, and to finish a TLS handshake.
const FIRST_BYTES: Duration = Duration::from_secs(10);

/// How a request reached us.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// Serves `app` on `listener` until `shutdown` resolves; each connection on its own task.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!("http: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (app, acceptor) = (app.clone(), acceptor.clone());
        tokio::spawn(async move {
            if let Err(why) = connection(stream, peer, app, acceptor).await {
                tracing::debug!(%peer, "http connection ended: {why}");
            }
        });
    }
}

/// How a connection ended early; logged at debug (a client's affair, not the controller's).
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("no request within {0:?}")]
    Idle(Duration),
    #[error("TLS handshake not finished within {0:?}")]
    SlowHandshake(Duration),
    #[error("reading: {0}")]
    Io(std::io::Error),
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    #[error("HTTP: {0}")]
    Http(Box<dyn std::error::Error + Send + Sync>),
}

async fn connection(stream: TcpStream, peer: SocketAddr, app: Router, acceptor: TlsAcceptor) -> Result<(), ConnError> {
    // Best effort: without it answers wait for Nagle, they are not lost.
    let _ = stream.set_nodelay(true);
    let mut first = [0u8; 1];
    let n = tokio::time::timeout(FIRST_BYTES, stream.peek(&mut first))
        .await
        .map_err(|_| ConnError::Idle(FIRST_BYTES))?
        .map_err(ConnError::Io)?;
    if n == 0 {
        return Ok(());
    }
    if first[0] == TLS_HANDSHAKE {
        let tls = tokio::time::timeout(FIRST_BYTES, acceptor.accept(stream))
            .await
            .map_err(|_| ConnError::SlowHandshake(FIRST_BYTES))?
            .map_err(ConnError::Tls)?;
        serve_one(tls, app, Conn { peer, tls: true }).await
    } else {
        serve_one(stream, app, Conn { peer, tls: false }).await
    }
}

async fn serve_one<S>(io: S, app: Router, conn: Conn) -> Result<(), ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app.layer(axum::Extension(conn)));
    Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(io), service).await.map_err(ConnError::Http)
}

/// The server side of TLS for the HTTP port: the controller's own certificate; no client
/// certificate asked for (alert sources authenticate with their token).
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> crate::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls_err = |what: &str, e: &dyn std::fmt::Display| crate::Error::Tls(format!("{what}: {e}"));
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert_pem).collect::<Result<_, _>>().map_err(|e| tls_err("tls.cert", &e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| tls_err("tls.key", &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("tls", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_err("tls.cert/tls.key", &e))?;
    let mut config = config;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
