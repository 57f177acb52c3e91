//! The public HTTP port's server loop, with its limits stated rather than
//! inherited, so that no client can hold the process's resources for as
//! long as it likes (issue 17 item 6):
//!
//! - HTTP/2 (RFC 9113 §6.5.2): at most [`MAX_STREAMS`] concurrent streams
//!   per connection, a 16 KiB header list, keep-alive pings that drop a
//!   connection whose peer stopped answering, and the "rapid reset" guards
//!   (CVE-2023-44487): a burst of client-reset streams, or of streams the
//!   server had to refuse, ends the connection with GOAWAY.
//! - Slow clients: a connection must complete its first request's headers
//!   within `header_timeout` (HTTP/1.1 every request's, through hyper's
//!   header-read timer), and a request body must arrive within
//!   `body_timeout` (408).
//! - Bodies: at most `max_body_bytes` (413), checked against
//!   `Content-Length` before reading and while reading otherwise.

use std::fmt::Debug;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody as _};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::sync::watch;
use tower::Service as _;

/// Concurrent requests per HTTP/2 connection (the spec's recommended floor
/// is 100; browsers and OAuth clients use a handful).
pub const MAX_STREAMS: u32 = 100;
/// The header list a request may send (HTTP/2's decoded size; HTTP/1.1's
/// read buffer is bounded alike).
pub const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams a client may open and reset before the server has accepted them.
const MAX_PENDING_RESETS: usize = 32;
/// Streams the server resets for a client's errors (refused over
/// [`MAX_STREAMS`], malformed) before it closes the connection.
const MAX_LOCAL_RESETS: usize = 64;

/// What a slow or greedy client is allowed (`[limits]` `http_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_body_bytes: 64 * 1024,
        }
    }
}

fn builder(limits: &HttpLimits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(2 * MAX_HEADER_LIST_BYTES as usize);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST_BYTES)
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(MAX_LOCAL_RESETS);
    builder
}

/// Serves `router` on `listener` under `limits` until `shutdown` completes,
/// then lets open connections finish their requests (as `axum::serve`'s
/// graceful shutdown does).
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: Debug,
{
    let router = router.layer(axum::middleware::from_fn_with_state(limits, bound_body));
    let builder = Arc::new(builder(&limits));
    // Dropping `draining` tells every connection to finish; each holds a
    // `closed` receiver, so `done.closed()` resolves when the last has ended.
    let (drain_tx, draining) = watch::channel(());
    let (done, closed) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            conn = listener.accept() => conn,
            () = &mut shutdown => break,
        };
        let router = router.clone();
        let builder = builder.clone();
        let drain_tx = drain_tx.clone();
        let closed = closed.clone();
        tokio::spawn(async move {
            connection(&builder, io, router, limits.header_timeout, drain_tx).await;
            tracing::trace!(?peer, "connection closed");
            drop(closed);
        });
    }
    drop(draining);
    drop(closed);
    drop(listener);
    done.closed().await;
    Ok(())
}

/// One connection: served until it ends, the drain begins, or (before its
/// first request's headers are complete) the header timeout passes, which
/// also covers a client that stalls before HTTP/1.1 or HTTP/2 is even known.
async fn connection<I>(
    builder: &Builder<TokioExecutor>,
    io: I,
    router: Router,
    header_timeout: Duration,
    drain: watch::Sender<()>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let started = Arc::new(AtomicBool::new(false));
    let service = {
        let started = started.clone();
        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            started.store(true, Ordering::Relaxed);
            let mut router = router.clone();
            async move { router.call(req.map(Body::new)).await }
        })
    };
    let mut conn = pin!(builder.serve_connection_with_upgrades(TokioIo::new(io), service));
    let mut draining = pin!(drain.closed());
    let mut drained = false;
    let mut first = pin!(tokio::time::sleep(header_timeout));
    let mut first_done = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::trace!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = &mut draining, if !drained => {
                drained = true;
                conn.as_mut().graceful_shutdown();
            }
            () = &mut first, if !first_done => {
                if !started.load(Ordering::Relaxed) {
                    tracing::debug!("client sent no complete request in time; closing");
                    return;
                }
                first_done = true;
            }
        }
    }
}

fn refusal(status: StatusCode, description: &'static str) -> Response {
    let mut response = (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        format!(r#"{{"error":"invalid_request","error_description":"{description}"}}"#),
    )
        .into_response();
    // The rest of an unread body is still on the wire: do not reuse it.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Caps the request body and bounds how long it may take to arrive; the
/// handlers then read it from memory (at most `max_body_bytes`: the OAuth
/// forms and consent posts are small).
async fn bound_body(State(limits): State<HttpLimits>, req: Request, next: Next) -> Response {
    let too_large = || {
        refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is larger than this server accepts",
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return too_large();
    }
    let (parts, body) = req.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let read = Limited::new(body, limits.max_body_bytes).collect();
    match tokio::time::timeout(limits.body_timeout, read).await {
        Err(_) => refusal(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
        ),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => too_large(),
        Ok(Err(_)) => refusal(
            StatusCode::BAD_REQUEST,
            "the request body could not be read",
        ),
        Ok(Ok(collected)) => {
            next.run(Request::from_parts(parts, Body::from(collected.to_bytes())))
                .await
        }
    }
}
