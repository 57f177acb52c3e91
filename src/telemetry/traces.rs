//! Spans for every gRPC call and HTTP request, named and attributed by the
//! OpenTelemetry semantic conventions (`rpc.*` for gRPC, `http.*` for HTTP),
//! continuing the caller's W3C trace (`traceparent`, `tracestate`).
//!
//! The layers are inert unless tracing was switched on at start-up
//! (`otlp::init` found an OTLP endpoint): then a call costs one branch and
//! no span is made. Switched on, the head sampler (`sampling`) decides
//! first, from the `traceparent` header and the configured ratio; a call it
//! does not sample costs a header lookup and makes no span either. Attribute values come from the request line, our own
//! reason codes and identifiers, never from a credential or its header.

use std::future::Future;
use std::marker::PhantomData;
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

use super::sampling;

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

/// What one protocol's span looks like: made from the request, completed
/// from the response.
pub trait Convention {
    fn span<B>(req: &Request<B>) -> tracing::Span;
    fn record<R>(span: &tracing::Span, response: &Response<R>);
}

/// `rpc.system=grpc`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Grpc;

/// `http.request.method`, `http.route` (the matched template, never the raw
/// path with its tokens), `http.response.status_code`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Http;

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

impl Convention for Grpc {
    fn span<B>(req: &Request<B>) -> tracing::Span {
        let path = req.uri().path();
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((path, ""));
        tracing::info_span!(
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
        )
    }

    fn record<R>(span: &tracing::Span, response: &Response<R>) {
        let code = grpc_status(response);
        span.record("rpc.grpc.status_code", code);
        if code != 0 {
            span.record("otel.status_code", "ERROR");
        }
    }
}

impl Convention for Http {
    fn span<B>(req: &Request<B>) -> tracing::Span {
        let method = req.method().as_str();
        let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str());
        let name = match route {
            Some(r) => format!("{method} {r}"),
            None => method.to_owned(),
        };
        tracing::info_span!(
            target: "latchkey::trace",
            "http",
            otel.name = %name,
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = method,
            http.route = route,
            http.response.status_code = Empty,
            latchkey.reason = Empty,
            latchkey.account_id = Empty,
            latchkey.key_id = Empty,
        )
    }

    fn record<R>(span: &tracing::Span, response: &Response<R>) {
        let status = i64::from(response.status().as_u16());
        span.record("http.response.status_code", status);
        if status >= 500 {
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// A span per gRPC call ([`Grpc`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcTraceLayer;

impl<S> tower::Layer<S> for GrpcTraceLayer {
    type Service = Trace<S, Grpc>;

    fn layer(&self, inner: S) -> Self::Service {
        Trace::new(inner)
    }
}

/// A span per HTTP request ([`Http`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpTraceLayer;

impl<S> tower::Layer<S> for HttpTraceLayer {
    type Service = Trace<S, Http>;

    fn layer(&self, inner: S) -> Self::Service {
        Trace::new(inner)
    }
}

/// The tracing service both layers make: sample first, then (for a sampled
/// call only) a span in the convention `C`, continuing the caller's trace.
#[derive(Debug)]
pub struct Trace<S, C> {
    inner: S,
    convention: PhantomData<fn() -> C>,
}

impl<S, C> Trace<S, C> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            convention: PhantomData,
        }
    }
}

impl<S: Clone, C> Clone for Trace<S, C> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone())
    }
}

/// Whether this request gets a span: tracing on, and the head sampler says so.
fn sampled(headers: &HeaderMap) -> bool {
    enabled() && sampling::installed().sample(headers.get("traceparent").map(|v| v.as_bytes()))
}

impl<S, C, B, R> tower::Service<Request<B>> for Trace<S, C>
where
    S: tower::Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    C: Convention,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Boxed<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if !sampled(req.headers()) {
            return Either::Left(self.inner.call(req));
        }
        let span = C::span(&req);
        continue_trace(&span, req.headers());
        let future = self.inner.call(req).instrument(span.clone());
        Either::Right(Box::pin(async move {
            let result = future.await;
            match &result {
                Ok(response) => C::record(&span, response),
                Err(_) => {
                    span.record("otel.status_code", "ERROR");
                }
            }
            result
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use tower::{Layer, Service, ServiceExt};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::telemetry::sampling::HeadSampler;

    /// Counts the spans made.
    struct Count(Arc<AtomicUsize>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Count {
        fn on_new_span(
            &self,
            _: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// At ratio 0 an unsampled call makes no span at all (not one the SDK
    /// drops later); a caller's sampled `traceparent` still gets one.
    #[tokio::test]
    async fn unsampled_calls_make_no_span() {
        let made = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry().with(Count(made.clone()));
        let _guard = tracing::subscriber::set_default(subscriber);
        enable();
        sampling::install(HeadSampler::from_env_values(
            Some("parentbased_traceidratio"),
            Some("0"),
        ));
        let inner = tower::service_fn(|_req: Request<()>| async {
            Ok::<_, std::convert::Infallible>(Response::new(()))
        });
        let mut grpc = GrpcTraceLayer.layer(inner);
        let mut http = HttpTraceLayer.layer(inner);
        let plain = || {
            Request::builder()
                .uri("/latchkey.v1.CheckService/Check")
                .body(())
                .unwrap()
        };
        let traced = |flags: &str| {
            Request::builder()
                .uri("/latchkey.v1.CheckService/Check")
                .header(
                    "traceparent",
                    format!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{flags}"),
                )
                .body(())
                .unwrap()
        };
        for _ in 0..100 {
            grpc.ready().await.unwrap().call(plain()).await.unwrap();
            http.ready().await.unwrap().call(plain()).await.unwrap();
            grpc.ready()
                .await
                .unwrap()
                .call(traced("00"))
                .await
                .unwrap();
        }
        assert_eq!(
            made.load(Ordering::Relaxed),
            0,
            "unsampled calls made spans"
        );
        grpc.call(traced("01")).await.unwrap();
        http.call(traced("01")).await.unwrap();
        assert_eq!(made.load(Ordering::Relaxed), 2);
    }
}
