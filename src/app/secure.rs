//! TLS for both ports from `[tls]`: one certificate store, re-read when its
//! files change, behind two acceptors. gRPC offers ALPN `h2` only and asks
//! for client certificates when a client CA is configured (internal callers
//! prove who they are); the public HTTP port offers `h2` and `http/1.1` and
//! asks browsers for nothing.

use std::future::Future;

use tokio_rustls::TlsAcceptor;

use super::AppError;
use crate::tls::{Certificates, TlsSettings, acceptor};

pub(super) struct Acceptors {
    pub grpc: TlsAcceptor,
    pub http: TlsAcceptor,
}

/// Loads the certificate, builds both acceptors, and watches the files
/// until `stop` completes.
pub(super) fn acceptors(
    settings: &TlsSettings,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<Acceptors, AppError> {
    let fail = |e: crate::tls::TlsError| AppError::Server(e.to_string());
    let certificates = Certificates::load(settings).map_err(fail)?;
    let grpc = acceptor(settings, certificates.clone(), &[b"h2"], true).map_err(fail)?;
    let http =
        acceptor(settings, certificates.clone(), &[b"h2", b"http/1.1"], false).map_err(fail)?;
    tokio::spawn(certificates.watch(stop));
    tracing::info!(
        mtls = settings.client_ca_file.is_some(),
        "TLS on the gRPC and HTTP ports"
    );
    Ok(Acceptors { grpc, http })
}
