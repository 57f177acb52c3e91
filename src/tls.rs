//! TLS for both listeners (a leaf: it imports nothing of ours), with rustls
//! on aws-lc-rs: the certificate and key files are re-read when they change
//! (Kubernetes rotates a mounted Secret in place) and new handshakes use the
//! new pair while established connections keep theirs; when a client CA is
//! configured, clients must present a certificate it signed (mTLS).
//!
//! Handshakes run in tasks of their own behind the accept loop, bounded by a
//! timeout, so a client that stalls its handshake holds nothing but itself.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use rustls::RootCertStore;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take over its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The lowest protocol version offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinVersion {
    Tls12,
    Tls13,
}

/// Validated `[tls]` settings.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Clients must present a certificate this CA signed (gRPC port only).
    pub client_ca_file: Option<PathBuf>,
    pub min_version: MinVersion,
    /// How often the files are checked for a change.
    pub reload_every: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{field}: {path}: {message}")]
    File {
        field: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("tls: {0}")]
    Rustls(String),
}

fn file_error(field: &'static str, path: &Path, message: impl fmt::Display) -> TlsError {
    TlsError::File {
        field,
        path: path.to_owned(),
        message: message.to_string(),
    }
}

fn load_pair(settings: &TlsSettings) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&settings.cert_file)
        .map_err(|e| file_error("tls.cert_file", &settings.cert_file, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error("tls.cert_file", &settings.cert_file, e))?;
    if certs.is_empty() {
        return Err(file_error(
            "tls.cert_file",
            &settings.cert_file,
            "holds no PEM certificate",
        ));
    }
    // The key's bytes are never part of an error message.
    let key = PrivateKeyDer::from_pem_file(&settings.key_file).map_err(|_| {
        file_error(
            "tls.key_file",
            &settings.key_file,
            "holds no readable PEM private key",
        )
    })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let pair = CertifiedKey::from_der(certs, key, &provider)
        .map_err(|e| file_error("tls.key_file", &settings.key_file, e))?;
    Ok(Arc::new(pair))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The certificate in use, swapped when the files change.
pub struct Certificates {
    settings: TlsSettings,
    current: RwLock<Arc<CertifiedKey>>,
    stamps: RwLock<(Option<SystemTime>, Option<SystemTime>)>,
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates")
            .field("cert_file", &self.settings.cert_file)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

impl Certificates {
    pub fn load(settings: &TlsSettings) -> Result<Arc<Self>, TlsError> {
        let pair = load_pair(settings)?;
        Ok(Arc::new(Self {
            stamps: RwLock::new((modified(&settings.cert_file), modified(&settings.key_file))),
            settings: settings.clone(),
            current: RwLock::new(pair),
        }))
    }

    /// Re-reads the pair if either file changed. A pair that does not load
    /// (a half-written rotation) keeps the previous one in use.
    pub fn reload_if_changed(&self) {
        let stamps = (
            modified(&self.settings.cert_file),
            modified(&self.settings.key_file),
        );
        let unchanged = *self
            .stamps
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            == stamps;
        if unchanged {
            return;
        }
        match load_pair(&self.settings) {
            Ok(pair) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = pair;
                *self
                    .stamps
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = stamps;
                tracing::info!(cert_file = %self.settings.cert_file.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS certificate files changed but do not load; keeping the previous pair");
            }
        }
    }

    /// Checks the files every `reload_every` until `stop` completes.
    pub async fn watch(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        let mut ticker = tokio::time::interval(self.settings.reload_every);
        ticker.tick().await;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.reload_if_changed(),
                () = &mut stop => return,
            }
        }
    }
}

/// A rustls acceptor offering `alpn`, with client certificates required
/// when `with_client_ca` and a CA is configured.
pub fn acceptor(
    settings: &TlsSettings,
    certificates: Arc<Certificates>,
    alpn: &[&[u8]],
    with_client_ca: bool,
) -> Result<TlsAcceptor, TlsError> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match settings.min_version {
        MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match (&settings.client_ca_file, with_client_ca) {
        (Some(path), true) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| file_error("tls.client_ca_file", path, e))?
            {
                let cert = cert.map_err(|e| file_error("tls.client_ca_file", path, e))?;
                roots
                    .add(cert)
                    .map_err(|e| file_error("tls.client_ca_file", path, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| file_error("tls.client_ca_file", path, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(certificates);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A TCP connection, in the clear or inside TLS.
pub enum MaybeTls {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl MaybeTls {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            MaybeTls::Plain(t) => t,
            MaybeTls::Tls(t) => t.get_ref().0,
        }
    }
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(t) => Pin::new(t).poll_read(cx, buf),
            MaybeTls::Tls(t) => Pin::new(t.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(t) => Pin::new(t).poll_write(cx, buf),
            MaybeTls::Tls(t) => Pin::new(t.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(t) => Pin::new(t).poll_flush(cx),
            MaybeTls::Tls(t) => Pin::new(t.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(t) => Pin::new(t).poll_shutdown(cx),
            MaybeTls::Tls(t) => Pin::new(t.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Accepts on `listener`, handshakes (when `tls` is set) in a task per
/// connection, and hands over the connections that completed. A failed or
/// stalled handshake is logged at debug level and dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
) -> mpsc::Receiver<(MaybeTls, SocketAddr)> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors, usually: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            if tx.is_closed() {
                return;
            }
            match &tls {
                None => {
                    if tx.send((MaybeTls::Plain(tcp), peer)).await.is_err() {
                        return;
                    }
                }
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => {
                                let _ = tx.send((MaybeTls::Tls(Box::new(stream)), peer)).await;
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    });
                }
            }
        }
    });
    rx
}

/// [`incoming`] as an axum listener, for the HTTP side.
pub struct Incoming {
    rx: mpsc::Receiver<(MaybeTls, SocketAddr)>,
    local: SocketAddr,
}

impl Incoming {
    pub fn new(listener: TcpListener, tls: Option<TlsAcceptor>) -> io::Result<Self> {
        let local = listener.local_addr()?;
        Ok(Self {
            rx: incoming(listener, tls),
            local,
        })
    }
}

impl axum::serve::Listener for Incoming {
    type Io = MaybeTls;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept loop only ends with the listener; nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}
