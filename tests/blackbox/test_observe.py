"""Observability from the outside: spans received by a real OTLP/gRPC
receiver (grpcio with the OpenTelemetry protos), and the Prometheus
exposition read by prometheus-client's own parser.

- a gRPC call and an HTTP request each make one server span with the
  semantic-convention attributes and the decision's;
- the caller's `traceparent` is continued (same trace id, its span as parent);
- no credential, secret or token appears in any attribute;
- spans still buffered at SIGTERM are exported before the process exits;
- /metrics is on the metrics listener only, and parses.
"""

from __future__ import annotations

import json
import secrets
import threading
import urllib.error
import urllib.request
from concurrent import futures

import grpc
import pytest
from conftest import Grpcurl, Latchkey
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace collector that keeps what it is sent."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.lock = threading.Lock()

    def Export(self, request, context):  # noqa: N802 (the proto's name)
        with self.lock:
            self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[tuple[dict, object]]:
        """(resource attributes, span) for every span received."""
        out = []
        with self.lock:
            for req in self.requests:
                for rs in req.resource_spans:
                    resource = attributes(rs.resource.attributes)
                    for ss in rs.scope_spans:
                        out.extend((resource, span) for span in ss.spans)
        return out


class MetricsReceiver(metrics_service_pb2_grpc.MetricsServiceServicer):
    """An OTLP metrics collector that keeps what it is sent."""

    def __init__(self) -> None:
        self.requests: list = []
        self.lock = threading.Lock()

    def Export(self, request, context):  # noqa: N802
        with self.lock:
            self.requests.append(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()

    def latest(self) -> tuple[dict, dict]:
        """(resource attributes, metrics by name) of the last export."""
        with self.lock:
            req = self.requests[-1]
        rm = req.resource_metrics[0]
        return attributes(rm.resource.attributes), {m.name: m for sm in rm.scope_metrics for m in sm.metrics}


def value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def attributes(kvs) -> dict:
    return {kv.key: value(kv.value) for kv in kvs}


@pytest.fixture
def receiver():
    r = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(r, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    r.endpoint = f"http://127.0.0.1:{port}"
    try:
        yield r
    finally:
        server.stop(grace=None)


@pytest.fixture
def metrics_receiver():
    r = MetricsReceiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(r, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    r.endpoint = f"http://127.0.0.1:{port}"
    try:
        yield r
    finally:
        server.stop(grace=None)


def start(latchkey_bin, tmp_path, args=(), env=None) -> Latchkey:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    lk = Latchkey(latchkey_bin, data_dir)
    lk.extra_args = list(args)
    lk.extra_env = dict(env or {})
    lk.start()
    return lk


def http_get(url: str, headers: dict | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def make_key(grpcurl: Grpcurl) -> tuple[dict, str]:
    account = grpcurl.call("latchkey.v1.AccountService/CreateAccount", {"name": "Traced", "plan": "PRIME"})
    created = grpcurl.call(
        "latchkey.v1.KeyService/CreateKey",
        {
            "accountId": account["id"],
            "mode": "MODE_TEST",
            "kind": "KEY_KIND_SECRET",
            "name": "traced",
            "scopes": ["feedback.read"],
        },
    )
    return created["key"], created["secret"]


def test_spans_follow_the_conventions_continue_the_trace_and_flush_at_exit(
    latchkey_bin, grpcurl_exe, tmp_path, receiver
):
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_SERVICE_NAME": "latchkey-blackbox",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        # Nothing is exported on a timer during the test: every span below
        # arrives through the flush at shutdown.
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
    }
    lk = start(latchkey_bin, tmp_path, env=env)
    try:
        grpcurl = Grpcurl(grpcurl_exe, lk)
        key, secret = make_key(grpcurl)
        trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
        traceparent = f"00-{trace_id}-{parent_id}-01"
        r = grpcurl.ok(
            "latchkey.v1.CheckService/Check",
            data={"credential": secret, "permission": "feedback.read"},
            headers=(f"traceparent: {traceparent}", "tracestate: vendor=x"),
        )
        assert json.loads(r.stdout).get("allowed") is True, r.stdout
        http_trace, http_parent = secrets.token_hex(16), secrets.token_hex(8)
        status, _ = http_get(
            f"http://{lk.http_addr}/.well-known/jwks.json",
            {"traceparent": f"00-{http_trace}-{http_parent}-01"},
        )
        assert status == 200
        assert not receiver.spans(), "spans were exported before shutdown; the test would not see the flush"
    finally:
        status = lk.stop()
    assert status == 0, lk.output()

    spans = receiver.spans()
    assert spans, f"no span reached the receiver\n{lk.output()}"
    resource = spans[0][0]
    assert resource.get("service.name") == "latchkey-blackbox", resource
    assert resource.get("deployment.environment") == "test", resource

    # grpcurl sends the same metadata on its reflection calls.
    checks = [s for _, s in spans if s.trace_id.hex() == trace_id and s.name.endswith("/Check")]
    assert len(checks) == 1, [s.name for _, s in spans]
    span = checks[0]
    attrs = attributes(span.attributes)
    assert span.parent_span_id.hex() == parent_id, "the caller's traceparent is continued"
    assert span.kind == span.SPAN_KIND_SERVER
    assert span.name == "latchkey.v1.CheckService/Check"
    assert attrs["rpc.system"] == "grpc"
    assert attrs["rpc.service"] == "latchkey.v1.CheckService"
    assert attrs["rpc.method"] == "Check"
    assert attrs["rpc.grpc.status_code"] == 0
    assert attrs["latchkey.reason"] == "ALLOWED"
    assert attrs["latchkey.key_id"] == key["id"]
    assert attrs["latchkey.account_id"] == key["accountId"]
    assert span.trace_state == "vendor=x"

    (web,) = [s for _, s in spans if s.trace_id.hex() == http_trace]
    attrs = attributes(web.attributes)
    assert web.parent_span_id.hex() == http_parent
    assert web.name == "GET /.well-known/jwks.json"
    assert attrs["http.request.method"] == "GET"
    assert attrs["http.route"] == "/.well-known/jwks.json"
    assert attrs["http.response.status_code"] == 200

    # No credential anywhere: not the key's secret, not the admin token.
    for _, s in spans:
        blob = s.SerializeToString()
        for secret_value in (secret, lk.token):
            assert secret_value.encode() not in blob, f"a secret is in span {s.name}"


def test_a_denied_grpc_call_carries_its_status_and_reason(latchkey_bin, grpcurl_exe, tmp_path, receiver):
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "600000"}
    lk = start(latchkey_bin, tmp_path, env=env)
    try:
        grpcurl = Grpcurl(grpcurl_exe, lk)
        _, secret = make_key(grpcurl)
        denied = grpcurl.call(
            "latchkey.v1.CheckService/Check", {"credential": secret, "permission": "webhooks.manage"}, token=None
        )
        assert denied.get("allowed", False) is False
        grpcurl.fails("latchkey.v1.KeyService/ListKeys", {"accountId": "acct_x"}, token=None, code="Unauthenticated")
    finally:
        assert lk.stop() == 0, lk.output()
    by_name: dict[str, list] = {}
    for resource, s in receiver.spans():
        by_name.setdefault(s.name, []).append(attributes(s.attributes))
        assert resource.get("service.name") == "latchkey", resource
    (check,) = by_name["latchkey.v1.CheckService/Check"]
    assert check["latchkey.reason"] == "PERMISSION_DENIED", check
    (listed,) = by_name["latchkey.v1.KeyService/ListKeys"]
    assert listed["rpc.grpc.status_code"] == 16, listed  # UNAUTHENTICATED


def test_metrics_listener_serves_prometheus_text(latchkey_bin, grpcurl_exe, tmp_path):
    lk = start(latchkey_bin, tmp_path, args=["--metrics-addr", "127.0.0.1:0"])
    try:
        assert lk.metrics_addr, lk.output()
        grpcurl = Grpcurl(grpcurl_exe, lk)
        _, secret = make_key(grpcurl)
        for permission in ("feedback.read", "feedback.read", "webhooks.manage"):
            grpcurl.call("latchkey.v1.CheckService/Check", {"credential": secret, "permission": permission}, token=None)
        status, text = http_get(f"http://{lk.metrics_addr}/metrics")
        assert status == 200
        # Never on the public port.
        assert http_get(f"http://{lk.http_addr}/metrics")[0] == 404
    finally:
        assert lk.stop() == 0, lk.output()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    decisions = {
        (s.labels["api"], s.labels["reason"]): s.value
        for s in families["latchkey_decisions"].samples
        if s.name == "latchkey_decisions_total"
    }
    assert decisions[("check", "ALLOWED")] == 2, decisions
    assert decisions[("check", "PERMISSION_DENIED")] == 1, decisions
    latency = families["latchkey_decision_duration_seconds"]
    assert latency.type == "histogram"
    count = [s for s in latency.samples if s.name.endswith("_count") and s.labels == {"api": "check"}]
    assert count[0].value == 3
    assert families["latchkey_key_cache_misses"].samples[0].value >= 1
    assert families["latchkey_key_cache_hits"].samples[0].value >= 2
    assert families["latchkey_key_cache_entries"].samples[0].value >= 1
    (build,) = families["latchkey_build_info"].samples
    assert build.labels["version"] and build.value == 1
    for name in (
        "latchkey_store_call_duration_seconds", "latchkey_store_errors", "latchkey_tokens_issued",
        "latchkey_rate_limited", "latchkey_audit_buffer_depth", "latchkey_audit_dropped",
        "latchkey_webhook_outbox_backlog", "latchkey_webhook_deliveries",
        "latchkey_notification_lag_seconds", "latchkey_key_cache_drops",
    ):
        assert name in families, f"{name} missing from /metrics"
    assert secret not in text


def test_metrics_are_exported_over_otlp_and_flushed_at_exit(latchkey_bin, grpcurl_exe, tmp_path, metrics_receiver):
    env = {
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": metrics_receiver.endpoint,
        "OTEL_SERVICE_NAME": "latchkey-metrics",
        # No export on a timer during the test: the last one is the flush at exit.
        "OTEL_METRIC_EXPORT_INTERVAL": "600000",
    }
    lk = start(latchkey_bin, tmp_path, env=env)
    try:
        grpcurl = Grpcurl(grpcurl_exe, lk)
        _, secret = make_key(grpcurl)
        for permission in ("feedback.read", "webhooks.manage"):
            grpcurl.call("latchkey.v1.CheckService/Check", {"credential": secret, "permission": permission}, token=None)
        assert not metrics_receiver.requests
    finally:
        assert lk.stop() == 0, lk.output()
    resource, metrics = metrics_receiver.latest()
    assert resource["service.name"] == "latchkey-metrics"
    decisions = metrics["latchkey_decisions_total"].sum
    assert decisions.is_monotonic
    seen = {
        (attributes(p.attributes)["api"], attributes(p.attributes)["reason"]): p.as_int for p in decisions.data_points
    }
    assert seen[("check", "ALLOWED")] == 1 and seen[("check", "PERMISSION_DENIED")] == 1, seen
    (check,) = [
        p for p in metrics["latchkey_decision_duration_seconds"].histogram.data_points
        if attributes(p.attributes) == {"api": "check"}
    ]
    assert check.count == 2 and sum(check.bucket_counts) == 2
    assert len(check.bucket_counts) == len(check.explicit_bounds) + 1
    assert metrics["latchkey_key_cache_misses_total"].sum.data_points[0].as_int >= 1


def test_head_sampling_at_ratio_zero_exports_only_what_the_caller_sampled(
    latchkey_bin, grpcurl_exe, tmp_path, receiver
):
    """`parentbased_traceidratio` at 0: calls without a `traceparent` make no
    span (the request layers decide before one exists); a caller's sampled
    `traceparent` is followed, on gRPC and HTTP alike."""
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0",
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
    }
    lk = start(latchkey_bin, tmp_path, env=env)
    try:
        grpcurl = Grpcurl(grpcurl_exe, lk)
        _, secret = make_key(grpcurl)
        for _ in range(5):
            grpcurl.call("latchkey.v1.CheckService/Check", {"credential": secret, "permission": "feedback.read"})
            assert http_get(f"http://{lk.http_addr}/.well-known/jwks.json")[0] == 200
        unsampled = secrets.token_hex(16)
        grpcurl.ok(
            "latchkey.v1.CheckService/Check",
            data={"credential": secret, "permission": "feedback.read"},
            headers=(f"traceparent: 00-{unsampled}-{secrets.token_hex(8)}-00",),
        )
        grpc_trace, http_trace = secrets.token_hex(16), secrets.token_hex(16)
        grpcurl.ok(
            "latchkey.v1.CheckService/Check",
            data={"credential": secret, "permission": "feedback.read"},
            headers=(f"traceparent: 00-{grpc_trace}-{secrets.token_hex(8)}-01",),
        )
        status, _ = http_get(
            f"http://{lk.http_addr}/.well-known/jwks.json",
            {"traceparent": f"00-{http_trace}-{secrets.token_hex(8)}-01"},
        )
        assert status == 200
    finally:
        assert lk.stop() == 0, lk.output()
    spans = [s for _, s in receiver.spans()]
    traces = {s.trace_id.hex() for s in spans}
    # grpcurl sends the same metadata on its reflection calls, hence a subset.
    assert traces == {grpc_trace, http_trace}, [(s.name, s.trace_id.hex()) for s in spans]
    assert any(s.name == "latchkey.v1.CheckService/Check" for s in spans if s.trace_id.hex() == grpc_trace)
    assert [s.name for s in spans if s.trace_id.hex() == http_trace] == ["GET /.well-known/jwks.json"]
