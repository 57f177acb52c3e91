"""Event webhooks from the outside: the built binary, WebhookService through
grpcurl (server reflection only), and a receiver made of the standard
library's http.server that checks every delivery the way a customer would:
Standard Webhooks signatures with the PyPI `standardwebhooks` package, the
seed format (`X-Webhook-Signature: t=…,v1=…`) with `hmac`/`hashlib` alone.

The delivery worker runs on the real clock here: a first attempt is
immediate, a retry comes after 5 s (±10 %).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import Grpcurl, Latchkey
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SERVICE = "latchkey.v1.WebhookService"
WAIT = 30  # seconds for a delivery (a retry is due after 5 s)


class Hook:
    """One HTTP receiver on 127.0.0.1: records every POST (path, headers,
    raw body) and answers `status` (settable while it runs)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.status = 200
        self.arrived = threading.Condition()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status = hook.status
                reply = b"ok" if status < 300 else b"not now"
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)
                with hook.arrived:
                    hook.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    hook.arrived.notify_all()

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return self.origin + path

    def wait_for(self, what: str, pred, timeout: float = WAIT):
        """Waits until pred(requests) is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                got = pred(list(self.requests))
                if got:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"timed out waiting for {what}; received: {self.describe()}")
                self.arrived.wait(left)

    def of(self, path: str, event_type: str | None = None) -> list[tuple[dict[str, str], bytes]]:
        return [
            (h, b)
            for p, h, b in list(self.requests)
            if p == path and (event_type is None or json.loads(b)["type"] == event_type)
        ]

    def describe(self) -> str:
        return "; ".join(f"{p} {json.loads(b).get('type')} {h.get('webhook-id')}" for p, h, b in self.requests)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def hook():
    h = Hook()
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def insecure(latchkey_bin: Path, tmp_path: Path):
    """A server with `webhooks.allow_insecure_targets` (the receiver is plain
    http on loopback), stopped with SIGTERM afterwards."""
    config = tmp_path / "latchkey.toml"
    config.write_text("[webhooks]\nallow_insecure_targets = true\npoll_interval_ms = 100\n")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    lk = Latchkey(latchkey_bin, data_dir)
    lk.extra_args = ["--config", str(config)]
    lk.start()
    try:
        yield lk
    finally:
        status = lk.stop()
        print(lk.output())
    assert status == 0, f"after SIGTERM the server should exit 0; got {status}\n{lk.output()}"


@pytest.fixture
def rpc(grpcurl_exe: str, insecure: Latchkey) -> Grpcurl:
    return Grpcurl(grpcurl_exe, insecure)


def verify_standard(secret: str, headers: dict[str, str], body: bytes) -> dict:
    """The `standardwebhooks` library's check; raises WebhookVerificationError."""
    return Webhook(secret).verify(body, headers)


def verify_seed(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """`X-Webhook-Signature: t=<secs>,v1=<hex>[,v1=…]`: HMAC-SHA256 keyed with
    the whole `whsec_…` string over `"<t>.<body>"` (README "Signatures")."""
    parts = [p.split("=", 1) for p in headers["x-webhook-signature"].split(",")]
    t = next(v for k, v in parts if k == "t")
    expected = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(k == "v1" and hmac.compare_digest(v, expected) for k, v in parts)


def create_endpoint(rpc: Grpcurl, url: str, **fields) -> tuple[dict, str]:
    r = rpc.call(f"{SERVICE}/CreateEndpoint", {"url": url, **fields})
    assert r["secret"].startswith("whsec_"), r
    return r["endpoint"], r["secret"]


def create_key(rpc: Grpcurl) -> dict:
    account = rpc.call("latchkey.v1.AccountService/CreateAccount", {"name": "Hooked", "plan": "PRIME"})
    created = rpc.call(
        "latchkey.v1.KeyService/CreateKey",
        {
            "accountId": account["id"],
            "mode": "MODE_TEST",
            "kind": "KEY_KIND_SECRET",
            "name": "hooked",
            "scopes": ["feedback.read"],
        },
    )
    return created["key"]


def deliveries(rpc: Grpcurl, endpoint_id: str, **filters) -> list[dict]:
    return rpc.call(f"{SERVICE}/ListDeliveries", {"endpointId": endpoint_id, **filters}).get("deliveries", [])


def wait_deliveries(rpc: Grpcurl, endpoint_id: str, what: str, pred) -> list[dict]:
    deadline = time.monotonic() + WAIT
    while True:
        ds = deliveries(rpc, endpoint_id)
        if pred(ds):
            return ds
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}: {ds}")
        time.sleep(0.2)


def test_key_events_are_delivered_and_verified(rpc: Grpcurl, hook: Hook):
    standard, standard_secret = create_endpoint(
        rpc, hook.url("/standard"), eventTypes=["key.created", "key.revoked"], description="standard"
    )
    seed, seed_secret = create_endpoint(
        rpc, hook.url("/seed"), eventTypes=["key.revoked"], signatureFormat="SIGNATURE_FORMAT_SEED"
    )
    assert seed["signatureFormat"] == "SIGNATURE_FORMAT_SEED", seed
    key = create_key(rpc)
    rpc.call("latchkey.v1.KeyService/RevokeKey", {"id": key["id"]})

    hook.wait_for(
        "key.created and key.revoked at /standard, key.revoked at /seed",
        lambda _: hook.of("/standard", "key.created")
        and hook.of("/standard", "key.revoked")
        and hook.of("/seed", "key.revoked"),
    )
    for event_type in ["key.created", "key.revoked"]:
        [(headers, body)] = hook.of("/standard", event_type)
        payload = verify_standard(standard_secret, headers, body)
        assert payload["type"] == event_type, payload
        assert payload["data"]["id"] == key["id"], payload
        assert payload["id"] == headers["webhook-id"], (payload, headers)
        with pytest.raises(WebhookVerificationError):
            verify_standard(seed_secret, headers, body)
        with pytest.raises(WebhookVerificationError):
            verify_standard(standard_secret, headers, body.replace(b"key.", b"kex."))
    # The seed-format endpoint got only what it subscribed to.
    assert not hook.of("/seed", "key.created"), hook.describe()
    [(headers, body)] = hook.of("/seed", "key.revoked")
    assert "webhook-signature" not in headers, headers
    assert verify_seed(seed_secret, headers, body), headers
    assert not verify_seed(standard_secret, headers, body)
    assert json.loads(body)["data"]["id"] == key["id"]

    ds = wait_deliveries(
        rpc, standard["id"], "two succeeded deliveries", lambda ds: sum(d.get("status") == "DELIVERY_STATUS_SUCCEEDED" for d in ds) == 2
    )
    by_type = {d["eventType"]: d for d in ds}
    assert set(by_type) == {"key.created", "key.revoked"}, ds
    for event_type, d in by_type.items():
        [(headers, _)] = hook.of("/standard", event_type)
        assert d["eventId"] == headers["webhook-id"], (d, headers)
        assert d["attempts"] == "1", d
        assert d["lastHttpStatus"] == 200, d
        assert d["responseBody"] == "ok", d


def test_rotation_overlap_both_secrets_verify(rpc: Grpcurl, hook: Hook):
    endpoint, old = create_endpoint(rpc, hook.url("/hook"))
    rotated = rpc.call(f"{SERVICE}/RotateEndpointSecret", {"id": endpoint["id"], "overlapSeconds": 3600})
    new = rotated["secret"]
    assert new.startswith("whsec_") and new != old, rotated
    versions = rotated["endpoint"]["secretVersions"]
    assert [v["version"] for v in versions] == ["2", "1"], versions
    assert "expiresAt" in versions[1] and "expiresAt" not in versions[0], versions

    key = create_key(rpc)
    [(headers, body)] = hook.wait_for("key.created", lambda _: hook.of("/hook", "key.created"))
    assert len(headers["webhook-signature"].split(" ")) == 2, headers
    # During the overlap a receiver holding either secret accepts the delivery.
    assert verify_standard(old, headers, body)["data"]["id"] == key["id"]
    assert verify_standard(new, headers, body)["data"]["id"] == key["id"]
    with pytest.raises(WebhookVerificationError):
        verify_standard("whsec_" + "A" * 43 + "=", headers, body)

    # With no overlap, the old secrets stop signing at once.
    latest = rpc.call(f"{SERVICE}/RotateEndpointSecret", {"id": endpoint["id"], "overlapSeconds": 0})["secret"]
    rpc.call("latchkey.v1.KeyService/RevokeKey", {"id": key["id"]})
    [(headers, body)] = hook.wait_for("key.revoked", lambda _: hook.of("/hook", "key.revoked"))
    assert len(headers["webhook-signature"].split(" ")) == 1, headers
    verify_standard(latest, headers, body)
    for stale in (old, new):
        with pytest.raises(WebhookVerificationError):
            verify_standard(stale, headers, body)


def test_send_test_event(rpc: Grpcurl, hook: Hook):
    target, secret = create_endpoint(rpc, hook.url("/target"))
    bystander, _ = create_endpoint(rpc, hook.url("/bystander"))
    sent = rpc.call(f"{SERVICE}/SendTestEvent", {"endpointId": target["id"]})
    assert sent["eventId"].startswith("msg_"), sent
    assert sent["delivery"]["eventType"] == "webhook.test", sent

    [(headers, body)] = hook.wait_for("the test event", lambda _: hook.of("/target", "webhook.test"))
    assert headers["webhook-id"] == sent["eventId"], headers
    payload = verify_standard(secret, headers, body)
    assert payload["data"]["endpoint_id"] == target["id"], payload
    ds = wait_deliveries(
        rpc, target["id"], "the succeeded test delivery", lambda ds: ds and ds[0].get("status") == "DELIVERY_STATUS_SUCCEEDED"
    )
    assert ds[0]["id"] == sent["delivery"]["id"], ds
    assert ds[0]["eventId"] == sent["eventId"], ds
    # Only the endpoint asked for.
    assert not hook.of("/bystander"), hook.describe()
    assert deliveries(rpc, bystander["id"]) == []

    # Disabled endpoints get no test event; re-enabled ones do.
    rpc.call(f"{SERVICE}/UpdateEndpoint", {"id": target["id"], "enabled": False})
    code, msg = rpc.fails(f"{SERVICE}/SendTestEvent", {"endpointId": target["id"]}, code="FailedPrecondition")
    assert "disabled" in msg, msg
    updated = rpc.call(f"{SERVICE}/UpdateEndpoint", {"id": target["id"], "enabled": True})
    assert updated["enabled"] is True, updated
    again = rpc.call(f"{SERVICE}/SendTestEvent", {"endpointId": target["id"]})
    hook.wait_for("the second test event", lambda _: len(hook.of("/target", "webhook.test")) == 2)
    assert hook.of("/target", "webhook.test")[1][0]["webhook-id"] == again["eventId"]


def test_kill_9_between_commit_and_delivery(rpc: Grpcurl, insecure: Latchkey, hook: Hook):
    """The receiver refuses first, so the event is committed but not
    delivered; `kill -9`; a new process on the same SQLite file delivers it
    once the receiver accepts, and every attempt carries the one webhook-id."""
    endpoint, secret = create_endpoint(rpc, hook.url("/hook"))
    hook.status = 503
    key = create_key(rpc)
    rpc.call("latchkey.v1.KeyService/SuspendKey", {"id": key["id"]})
    hook.wait_for("both first attempts", lambda _: len(hook.of("/hook")) >= 2)
    # Both attempts recorded (so no lease of the dead process is left to run out).
    wait_deliveries(
        rpc,
        endpoint["id"],
        "two failed attempts recorded",
        lambda ds: len(ds) == 2 and all(d.get("attempts") == "1" and d.get("lastHttpStatus") == 503 for d in ds),
    )

    assert insecure.proc is not None
    insecure.proc.send_signal(signal.SIGKILL)
    insecure.proc.wait(10)
    assert insecure.proc.returncode == -signal.SIGKILL
    hook.status = 200
    insecure.grpc_addr = insecure.http_addr = ""
    insecure.start()  # same data dir, same SQLite file

    ds = wait_deliveries(
        rpc,
        endpoint["id"],
        "both deliveries succeeded",
        lambda ds: len(ds) == 2 and all(d.get("status") == "DELIVERY_STATUS_SUCCEEDED" for d in ds),
    )
    ids_per_event: dict[str, set[str]] = {}
    for headers, body in hook.of("/hook"):
        payload = verify_standard(secret, headers, body)
        ids_per_event.setdefault(payload["type"], set()).add(headers["webhook-id"])
    assert set(ids_per_event) == {"key.created", "key.suspended"}, ids_per_event
    for event_type, ids in ids_per_event.items():
        assert len(ids) == 1, f"{event_type} arrived with several webhook-ids: {ids}"
    assert {d["eventId"] for d in ds} == {next(iter(i)) for i in ids_per_event.values()}, ds
    # Delivered after the restart: at least one refused attempt, then the accepted one.
    assert all(int(d["attempts"]) >= 2 for d in ds), ds


def test_loopback_target_refused_without_allow_insecure(grpcurl: Grpcurl, hook: Hook):
    services = grpcurl.ok("list").stdout.split()
    assert SERVICE in services, services
    out = grpcurl.ok("describe", SERVICE).stdout
    for name in [
        "CreateEndpoint",
        "GetEndpoint",
        "ListEndpoints",
        "UpdateEndpoint",
        "DeleteEndpoint",
        "RotateEndpointSecret",
        "ListDeliveries",
        "RetryDelivery",
        "SendTestEvent",
    ]:
        assert f"rpc {name}" in out, out

    port = hook.httpd.server_address[1]
    for url in [f"https://127.0.0.1:{port}/hook", f"https://localhost:{port}/hook", hook.url("/hook")]:
        code, msg = grpcurl.fails(f"{SERVICE}/CreateEndpoint", {"url": url}, code="InvalidArgument")
        assert msg.startswith("url:"), (url, msg)
    assert grpcurl.call(f"{SERVICE}/ListEndpoints").get("endpoints", []) == []
    assert hook.requests == []


def test_bad_endpoints_are_refused_with_the_field_named(rpc: Grpcurl, hook: Hook):
    url = hook.url("/hook")
    code, msg = rpc.fails(f"{SERVICE}/CreateEndpoint", {"url": url, "eventTypes": ["key.nope"]}, code="InvalidArgument")
    assert msg.startswith("event_types:"), msg
    code, msg = rpc.fails(
        f"{SERVICE}/CreateEndpoint", {"url": url, "accountId": "acct_0190a1b2c3d4e5f60718293a4b5c6d7e"}, code="NotFound"
    )
    assert "account" in msg, msg
    code, msg = rpc.fails(f"{SERVICE}/CreateEndpoint", {"url": "ftp://127.0.0.1/x"}, code="InvalidArgument")
    assert msg.startswith("url:"), msg
    code, msg = rpc.fails(f"{SERVICE}/GetEndpoint", {"id": "whe_" + "0" * 32}, code="NotFound")
    code, msg = rpc.fails(f"{SERVICE}/SendTestEvent", {"endpointId": "nope"}, code="InvalidArgument")
    assert msg.startswith("endpoint_id:"), msg
    assert rpc.call(f"{SERVICE}/ListEndpoints").get("endpoints", []) == []
