//! Spans for every gRPC call and HTTP request, named and attributed by the
//! OpenTelemetry semantic conventions (`rpc.*` for gRPC, `http.*` for HTTP),
//! continuing the caller's W3C trace (`traceparent`, `tracestate`).
//!
//! The layers are inert unless tracing was switched on at start-up
//! (`otlp::init` found an OTLP endpoint): then a call costs one branch and
//! no span is made. Attribute values come from the request line, our own
//! reason codes and identifiers, never from a credential or its header.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::extract::MatchedPath;
use axum::http::{HeaderMap, Request, Response};
use futures::future::Either;
use opentelemetry::propagation::Extractor;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are being made (set once by `otlp::init`).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

pub(super) fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Reads W3C trace context out of request headers (gRPC metadata is headers).
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
    // A span the subscriber does not track (filtered out) cannot take a parent.
    let _ = span.set_parent(parent);
}

/// The decision on the current request's span: why, for whom. Identifiers
/// only (`acct_…`, `key_…`), never the credential.
pub fn record_decision(reason: &'static str, account_id: Option<&str>, key_id: Option<&str>) {
    if !enabled() {
        return;
    }
    let span = tracing::Span::current();
    span.record("latchkey.reason", reason);
    if let Some(a) = account_id {
        span.record("latchkey.account_id", a);
    }
    if let Some(k) = key_id {
        span.record("latchkey.key_id", k);
    }
}

type Boxed<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

/// A span per gRPC call: `rpc.system=grpc`, `rpc.service`, `rpc.method`,
/// `rpc.grpc.status_code`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcTraceLayer;

impl<S> tower::Layer<S> for GrpcTraceLayer {
    type Service = GrpcTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTrace { inner }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcTrace<S> {
    inner: S,
}

/// `grpc-status` of a response whose headers carry it (a trailers-only
/// error); a response that carries a body ends with its status in the
/// trailers, which for the unary calls served here is OK when the headers
/// did not already say otherwise.
fn grpc_status<B>(response: &Response<B>) -> i64 {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

impl<S, B, R> tower::Service<Request<B>> for GrpcTrace<S>
where
    S: tower::Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Boxed<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if !enabled() {
            return Either::Left(self.inner.call(req));
        }
        let path = req.uri().path();
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((path, ""));
        let span = tracing::info_span!(
            target: "latchkey::trace",
            "grpc",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            rpc.grpc.status_code = Empty,
            latchkey.reason = Empty,
            latchkey.account_id = Empty,
            latchkey.key_id = Empty,
        );
        continue_trace(&span, req.headers());
        let future = self.inner.call(req).instrument(span.clone());
        Either::Right(Box::pin(async move {
            let result = future.await;
            match &result {
                Ok(response) => {
                    let code = grpc_status(response);
                    span.record("rpc.grpc.status_code", code);
                    if code != 0 {
                        span.record("otel.status_code", "ERROR");
                    }
                }
                Err(_) => {
                    span.record("otel.status_code", "ERROR");
                }
            }
            result
        }))
    }
}

/// A span per HTTP request: `http.request.method`, `http.route` (the
/// matched template, never the raw path with its tokens),
/// `http.response.status_code`.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpTraceLayer;

impl<S> tower::Layer<S> for HttpTraceLayer {
    type Service = HttpTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpTrace { inner }
    }
}

#[derive(Debug, Clone)]
pub struct HttpTrace<S> {
    inner: S,
}

impl<S, B, R> tower::Service<Request<B>> for HttpTrace<S>
where
    S: tower::Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Boxed<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if !enabled() {
            return Either::Left(self.inner.call(req));
        }
        let method = req.method().as_str().to_owned();
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_owned());
        let name = match &route {
            Some(r) => format!("{method} {r}"),
            None => method.clone(),
        };
        let span = tracing::info_span!(
            target: "latchkey::trace",
            "http",
            otel.name = %name,
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = %method,
            http.route = route.as_deref(),
            http.response.status_code = Empty,
            latchkey.reason = Empty,
            latchkey.account_id = Empty,
            latchkey.key_id = Empty,
        );
        continue_trace(&span, req.headers());
        let future = self.inner.call(req).instrument(span.clone());
        Either::Right(Box::pin(async move {
            let result = future.await;
            match &result {
                Ok(response) => {
                    let status = i64::from(response.status().as_u16());
                    span.record("http.response.status_code", status);
                    if status >= 500 {
                        span.record("otel.status_code", "ERROR");
                    }
                }
                Err(_) => {
                    span.record("otel.status_code", "ERROR");
                }
            }
            result
        }))
    }
}
