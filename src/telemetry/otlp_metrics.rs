//! OTLP metrics over gRPC: every `OTEL_METRIC_EXPORT_INTERVAL` (60 s by
//! default) the same snapshot Prometheus reads is sent to
//! `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` (or `OTEL_EXPORTER_OTLP_ENDPOINT`),
//! cumulative, and once more at shutdown. The message types and the client
//! are opentelemetry-proto's; the values come from `metrics.rs`, so the hot
//! path pays nothing more for OTLP than for Prometheus.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::sync::watch;

use super::metrics::{HistogramSnapshot, LimitMode, Snapshot, VERSION, metrics};

fn set(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The collector's address, when the environment asks for metric export.
pub(super) fn endpoint() -> Option<String> {
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || set("OTEL_METRICS_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
    {
        return None;
    }
    set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT").or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))
}

fn interval() -> Duration {
    set("OTEL_METRIC_EXPORT_INTERVAL")
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| *ms >= 10)
        .map_or(Duration::from_secs(60), Duration::from_millis)
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

/// `service.name` and the `OTEL_RESOURCE_ATTRIBUTES` pairs.
fn resource() -> Resource {
    let mut attributes = vec![text("service.version", VERSION)];
    let mut named = false;
    if let Some(list) = set("OTEL_RESOURCE_ATTRIBUTES") {
        for pair in list.split(',') {
            if let Some((k, v)) = pair.split_once('=') {
                named |= k.trim() == "service.name";
                attributes.push(text(k.trim(), v.trim()));
            }
        }
    }
    match set("OTEL_SERVICE_NAME") {
        Some(name) => {
            attributes.retain(|kv| kv.key != "service.name");
            attributes.push(text("service.name", &name));
        }
        None if !named => attributes.push(text("service.name", "latchkey")),
        None => {}
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

struct Clock {
    start: u64,
    now: u64,
}

/// The wall clock, in Unix nanoseconds, for the data points' timestamps.
/// Not `ports::Clock`: this leaf imports nothing of ours, and an export's
/// time stamps record when it happened, they decide nothing.
#[allow(clippy::disallowed_methods)]
fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn point(clock: &Clock, attributes: Vec<KeyValue>, value: i64) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: clock.start,
        time_unix_nano: clock.now,
        value: Some(number_data_point::Value::AsInt(value)),
        ..Default::default()
    }
}

fn counter(name: &str, help: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.to_owned(),
        description: help.to_owned(),
        unit: "1".to_owned(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

fn gauge(name: &str, help: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.to_owned(),
        description: help.to_owned(),
        unit: "1".to_owned(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    }
}

fn histogram(
    name: &str,
    help: &str,
    clock: &Clock,
    series: Vec<(Vec<KeyValue>, &HistogramSnapshot)>,
) -> Metric {
    let data_points = series
        .into_iter()
        .map(|(attributes, h)| HistogramDataPoint {
            attributes,
            start_time_unix_nano: clock.start,
            time_unix_nano: clock.now,
            count: h.count,
            sum: Some(h.sum_seconds),
            bucket_counts: h.per_bucket.clone(),
            explicit_bounds: h.bounds.clone(),
            ..Default::default()
        })
        .collect();
    Metric {
        name: name.to_owned(),
        description: help.to_owned(),
        unit: "s".to_owned(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    }
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The snapshot as OTLP metrics, named as on `/metrics`.
fn request(s: &Snapshot, clock: &Clock, resource: Resource) -> ExportMetricsServiceRequest {
    let metrics = vec![
        gauge(
            "latchkey_build_info",
            "The running build; always 1.",
            vec![point(clock, vec![text("version", VERSION)], 1)],
        ),
        counter(
            "latchkey_decisions_total",
            "Decisions by API and reason code.",
            s.decisions
                .iter()
                .map(|(api, reason, n)| {
                    point(
                        clock,
                        vec![text("api", api.label()), text("reason", reason)],
                        int(*n),
                    )
                })
                .collect(),
        ),
        histogram(
            "latchkey_decision_duration_seconds",
            "Time from a decision request's arrival to its answer, by API.",
            clock,
            s.decision_latency
                .iter()
                .map(|(api, h)| (vec![text("api", api.label())], h))
                .collect(),
        ),
        counter(
            "latchkey_rate_limited_total",
            "Requests refused by a rate limit, by the limit that refused them.",
            s.rate_limited
                .iter()
                .map(|(limit, n)| point(clock, vec![text("limit", limit.label())], int(*n)))
                .collect(),
        ),
        gauge(
            "latchkey_rate_limit_mode",
            "Where rate limits are counted: 1 for the current mode, 0 for the others.",
            LimitMode::ALL
                .iter()
                .map(|m| {
                    point(
                        clock,
                        vec![text("mode", m.label())],
                        int(u64::from(*m == s.rate_limit_mode)),
                    )
                })
                .collect(),
        ),
        counter(
            "latchkey_key_cache_hits_total",
            "Key lookups answered from memory.",
            vec![point(clock, vec![], int(s.cache_hits))],
        ),
        counter(
            "latchkey_key_cache_misses_total",
            "Key lookups that had to ask the store.",
            vec![point(clock, vec![], int(s.cache_misses))],
        ),
        gauge(
            "latchkey_key_cache_entries",
            "Keys held in the shared key cache.",
            vec![point(clock, vec![], int(s.cache_size))],
        ),
        histogram(
            "latchkey_store_call_duration_seconds",
            "Store calls by operation.",
            clock,
            s.store_latency
                .iter()
                .map(|(op, h)| (vec![text("op", op.label())], h))
                .collect(),
        ),
        counter(
            "latchkey_store_errors_total",
            "Store calls that failed, by operation.",
            s.store_errors
                .iter()
                .map(|(op, n)| point(clock, vec![text("op", op.label())], int(*n)))
                .collect(),
        ),
        counter(
            "latchkey_tokens_issued_total",
            "Access tokens issued, by grant.",
            s.tokens_issued
                .iter()
                .map(|(g, n)| point(clock, vec![text("grant", g.label())], int(*n)))
                .collect(),
        ),
        gauge(
            "latchkey_audit_buffer_depth",
            "Audit events waiting to be written.",
            vec![point(clock, vec![], s.audit_buffer_depth)],
        ),
        counter(
            "latchkey_audit_dropped_total",
            "Audit events dropped because the buffer was full.",
            vec![point(clock, vec![], int(s.audit_dropped))],
        ),
        gauge(
            "latchkey_webhook_outbox_backlog",
            "Webhook events not yet delivered.",
            vec![point(clock, vec![], s.webhook_backlog)],
        ),
        counter(
            "latchkey_webhook_deliveries_total",
            "Webhook delivery attempts by outcome.",
            s.webhook_deliveries
                .iter()
                .map(|(o, n)| point(clock, vec![text("outcome", o.label())], int(*n)))
                .collect(),
        ),
        histogram(
            "latchkey_notification_lag_seconds",
            "Time from a change's commit on any replica to its notice on this one.",
            clock,
            vec![(vec![], &s.notification_lag)],
        ),
        counter(
            "latchkey_notification_reconnects_total",
            "Times the store notification connection was lost and made again.",
            vec![point(clock, vec![], int(s.notification_reconnects))],
        ),
        counter(
            "latchkey_key_cache_drops_total",
            "Key caches dropped because notices may have been missed.",
            vec![point(
                clock,
                vec![],
                int(s.cache_drops_after_lost_notifications),
            )],
        ),
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "latchkey".to_owned(),
                    version: VERSION.to_owned(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Exports until `stop` flips, then once more. Must run in the runtime.
pub(super) fn spawn(
    endpoint: String,
    mut stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
        .map_err(|e| format!("OTLP metrics endpoint `{endpoint}`: {e}"))?
        .timeout(Duration::from_secs(10))
        .connect_lazy();
    metrics().switch_on();
    Ok(tokio::spawn(async move {
        let mut client = MetricsServiceClient::new(channel);
        let start = now_nanos();
        let resource = resource();
        let mut ticker = tokio::time::interval(interval());
        ticker.tick().await;
        let mut failing = false;
        loop {
            let last = tokio::select! {
                _ = ticker.tick() => false,
                _ = stop.wait_for(|s| *s) => true,
            };
            let clock = Clock {
                start,
                now: now_nanos(),
            };
            let req = request(&metrics().snapshot(), &clock, resource.clone());
            match client.export(req).await {
                Ok(_) => failing = false,
                Err(status) => {
                    // Once per outage, not once per interval.
                    if !failing {
                        tracing::warn!(code = ?status.code(), message = status.message(), "OTLP metrics export failed");
                    }
                    failing = true;
                }
            }
            if last {
                return;
            }
        }
    }))
}
