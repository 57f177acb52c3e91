//! The metrics listener and what the metrics read at scrape time.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use super::AppError;
use crate::domain::resolver::KeyResolver;
use crate::telemetry::metrics::metrics;

/// Binds the metrics listener when one is configured.
pub(super) async fn bind(addr: Option<SocketAddr>) -> Result<Option<TcpListener>, AppError> {
    match addr {
        Some(addr) => TcpListener::bind(addr)
            .await
            .map(Some)
            .map_err(|source| AppError::Bind { addr, source }),
        None => Ok(None),
    }
}

/// Serves `GET /metrics` on its own listener until `shutdown` completes.
pub(super) fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics listening");
    }
    metrics().switch_on();
    let server = axum::serve(
        listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        }),
        crate::http::metrics::router(),
    )
    .with_graceful_shutdown(shutdown);
    tokio::spawn(async move { server.await })
}

/// The key cache's size is read when scraped (the first server in a process
/// registers it).
pub(super) fn register(resolver: &Arc<KeyResolver>) {
    let resolver = Arc::downgrade(resolver);
    metrics().register_cache_size(Box::new(move || {
        resolver.upgrade().map_or(0, |r| r.cached_entries())
    }));
}
