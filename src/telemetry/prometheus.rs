//! The Prometheus text exposition format (version 0.0.4) of a metrics
//! snapshot, served by the internal metrics listener at `GET /metrics`.
//! Label values are fixed sets of our own codes, never caller input, so
//! nothing needs escaping beyond what `label` does.

use std::fmt::Write;

use super::metrics::{HistogramSnapshot, LimitMode, Snapshot, VERSION};

/// `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn float(v: f64) -> String {
    if v.is_infinite() {
        "+Inf".to_owned()
    } else {
        format!("{v}")
    }
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &HistogramSnapshot) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (bound, n) in h.bounds.iter().zip(&h.cumulative) {
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"{}\"}} {n}",
            float(*bound)
        );
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", h.count);
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", h.sum_seconds);
    let _ = writeln!(out, "{name}_count{braces} {}", h.count);
}

/// The whole exposition.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(16 * 1024);
    header(
        &mut out,
        "latchkey_build_info",
        "gauge",
        "The running build; always 1.",
    );
    let _ = writeln!(
        out,
        "latchkey_build_info{{version=\"{}\"}} 1",
        label(VERSION)
    );

    header(
        &mut out,
        "latchkey_decisions_total",
        "counter",
        "Decisions by API (check, ext_authz, rls, forward_auth) and reason code.",
    );
    for (api, reason, n) in &s.decisions {
        let _ = writeln!(
            out,
            "latchkey_decisions_total{{api=\"{}\",reason=\"{}\"}} {n}",
            api.label(),
            label(reason)
        );
    }

    header(
        &mut out,
        "latchkey_decision_duration_seconds",
        "histogram",
        "Time from a decision request's arrival to its answer, by API.",
    );
    for (api, h) in &s.decision_latency {
        histogram(
            &mut out,
            "latchkey_decision_duration_seconds",
            &format!("api=\"{}\"", api.label()),
            h,
        );
    }

    header(
        &mut out,
        "latchkey_rate_limited_total",
        "counter",
        "Requests refused by a rate limit, by the limit that refused them.",
    );
    for (limit, n) in &s.rate_limited {
        let _ = writeln!(
            out,
            "latchkey_rate_limited_total{{limit=\"{}\"}} {n}",
            limit.label()
        );
    }

    header(
        &mut out,
        "latchkey_rate_limit_mode",
        "gauge",
        "Where rate limits are counted: 1 for the current mode, 0 for the others.",
    );
    for mode in LimitMode::ALL {
        let _ = writeln!(
            out,
            "latchkey_rate_limit_mode{{mode=\"{}\"}} {}",
            mode.label(),
            u8::from(mode == s.rate_limit_mode)
        );
    }

    header(
        &mut out,
        "latchkey_key_cache_hits_total",
        "counter",
        "Key lookups answered from memory.",
    );
    let _ = writeln!(out, "latchkey_key_cache_hits_total {}", s.cache_hits);
    header(
        &mut out,
        "latchkey_key_cache_misses_total",
        "counter",
        "Key lookups that had to ask the store.",
    );
    let _ = writeln!(out, "latchkey_key_cache_misses_total {}", s.cache_misses);
    header(
        &mut out,
        "latchkey_key_cache_entries",
        "gauge",
        "Keys held in the shared key cache.",
    );
    let _ = writeln!(out, "latchkey_key_cache_entries {}", s.cache_size);

    header(
        &mut out,
        "latchkey_store_call_duration_seconds",
        "histogram",
        "Store calls by operation.",
    );
    for (op, h) in &s.store_latency {
        histogram(
            &mut out,
            "latchkey_store_call_duration_seconds",
            &format!("op=\"{}\"", op.label()),
            h,
        );
    }
    header(
        &mut out,
        "latchkey_store_errors_total",
        "counter",
        "Store calls that failed, by operation.",
    );
    for (op, n) in &s.store_errors {
        let _ = writeln!(
            out,
            "latchkey_store_errors_total{{op=\"{}\"}} {n}",
            op.label()
        );
    }

    header(
        &mut out,
        "latchkey_tokens_issued_total",
        "counter",
        "Access tokens issued, by grant.",
    );
    for (grant, n) in &s.tokens_issued {
        let _ = writeln!(
            out,
            "latchkey_tokens_issued_total{{grant=\"{}\"}} {n}",
            grant.label()
        );
    }

    header(
        &mut out,
        "latchkey_audit_buffer_depth",
        "gauge",
        "Audit events waiting to be written.",
    );
    let _ = writeln!(out, "latchkey_audit_buffer_depth {}", s.audit_buffer_depth);
    header(
        &mut out,
        "latchkey_audit_dropped_total",
        "counter",
        "Audit events dropped because the buffer was full.",
    );
    let _ = writeln!(out, "latchkey_audit_dropped_total {}", s.audit_dropped);

    header(
        &mut out,
        "latchkey_webhook_outbox_backlog",
        "gauge",
        "Webhook events not yet delivered.",
    );
    let _ = writeln!(out, "latchkey_webhook_outbox_backlog {}", s.webhook_backlog);
    header(
        &mut out,
        "latchkey_webhook_deliveries_total",
        "counter",
        "Webhook delivery attempts by outcome.",
    );
    for (outcome, n) in &s.webhook_deliveries {
        let _ = writeln!(
            out,
            "latchkey_webhook_deliveries_total{{outcome=\"{}\"}} {n}",
            outcome.label()
        );
    }

    header(
        &mut out,
        "latchkey_notification_lag_seconds",
        "histogram",
        "Time from a change's commit on any replica to its notice on this one.",
    );
    histogram(
        &mut out,
        "latchkey_notification_lag_seconds",
        "",
        &s.notification_lag,
    );
    header(
        &mut out,
        "latchkey_notification_reconnects_total",
        "counter",
        "Times the store notification connection was lost and made again.",
    );
    let _ = writeln!(
        out,
        "latchkey_notification_reconnects_total {}",
        s.notification_reconnects
    );
    header(
        &mut out,
        "latchkey_key_cache_drops_total",
        "counter",
        "Key caches dropped because notices may have been missed while the notification connection was down.",
    );
    let _ = writeln!(
        out,
        "latchkey_key_cache_drops_total {}",
        s.cache_drops_after_lost_notifications
    );
    out
}
