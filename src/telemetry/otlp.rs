//! OTLP trace export over gRPC (tonic), configured only by the standard
//! `OTEL_*` variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) switches it on; `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES` are read by the SDK, `OTEL_TRACES_SAMPLER` and
//! `_ARG` by the head sampler (`sampling`). `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` keep it
//! off. Off, nothing is built: no exporter, no span, no thread.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

fn set(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Whether the environment asks for trace export.
pub fn traces_requested() -> bool {
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return false;
    }
    if set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none")) {
        return false;
    }
    set("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
}

/// The service's resource: `service.name` defaults to `latchkey` unless
/// `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` says otherwise.
fn resource() -> Resource {
    let builder = Resource::builder();
    let named = set("OTEL_SERVICE_NAME").is_some()
        || set("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name="));
    let builder = if named {
        builder
    } else {
        builder.with_service_name("latchkey")
    };
    builder
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}

/// Builds the exporter and provider; must run inside the Tokio runtime
/// (tonic's channel lives there). The W3C trace-context propagator is
/// installed for incoming `traceparent`/`tracestate`.
pub(super) fn tracer_provider() -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| format!("OTLP span exporter: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_resource(resource())
        // OTEL_TRACES_SAMPLER is applied by the request layers' head sampler
        // (`sampling`) before a span exists; what reaches the SDK is sampled.
        .with_sampler(Sampler::AlwaysOn)
        .with_batch_exporter(exporter)
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    Ok(provider)
}

pub(super) fn tracer(provider: &SdkTracerProvider) -> opentelemetry_sdk::trace::Tracer {
    provider.tracer("latchkey")
}
