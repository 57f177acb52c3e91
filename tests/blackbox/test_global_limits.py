"""Rate limits shared across replicas through Redis, from the outside: two
built binaries on one Redis hold one descriptor limit; a Redis stopped
mid-run makes each replica enforce its share (limit ÷ replicas), /readyz
says so while gRPC health stays SERVING, and the limits are global again
once Redis is back.

The two-replica test uses REDIS_URL when set (scripts/test.sh sets it), else
a throwaway redis-server; the outage test always runs its own throwaway
redis-server on a free port (the shared one is never stopped). Without a
Redis or the redis-server binary the tests are skipped, saying why.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest
from conftest import Grpcurl, Latchkey

RLS = "envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
BURST = 20
WAIT = 20  # seconds a state change may take to show (a poll, not a timing claim)


def config(redis_url: str, strict: bool = False) -> str:
    return f"""\
[rate_limits]
redis_url = "{redis_url}"
replicas = 2
sync_interval_ms = 100
strict = {"true" if strict else "false"}

[[rate_limits.descriptors]]
domain = "api"
entries = [{{ key = "remote_address" }}]
requests = {BURST}
per_seconds = 3600
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayRedis:
    def __init__(self, tmp_path):
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip("no redis-server binary: cannot start a throwaway Redis")
        self.exe = exe
        self.dir = tmp_path
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"throwaway redis-server on port {self.port} did not answer")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def throwaway_redis(tmp_path):
    r = ThrowawayRedis(tmp_path)
    try:
        yield r
    finally:
        r.stop()


def start_replica(latchkey_bin, tmp_path, name: str, redis_url: str, strict: bool) -> Latchkey:
    base = tmp_path / name
    base.mkdir()
    cfg = base / "latchkey.toml"
    cfg.write_text(config(redis_url, strict))
    wrapper = base / "latchkey-with-config"
    bin_q, cfg_q = shlex.quote(str(latchkey_bin)), shlex.quote(str(cfg))
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = serve ]; then shift; exec {bin_q} serve --config {cfg_q} "$@"; fi\n'
        f'exec {bin_q} "$@"\n'
    )
    wrapper.chmod(0o755)
    data = base / "data"
    data.mkdir()
    lk = Latchkey(wrapper, data)
    lk.start()
    return lk


@pytest.fixture
def replicas(latchkey_bin, grpcurl_exe, tmp_path, request):
    started: list[Latchkey] = []

    def make(redis_url: str, strict: bool = False) -> list[Grpcurl]:
        for name in ("a", "b"):
            started.append(start_replica(latchkey_bin, tmp_path, name, redis_url, strict))
        return [Grpcurl(grpcurl_exe, lk) for lk in started]

    try:
        yield make
    finally:
        for lk in started:
            status = lk.stop()
            print(lk.output())
            assert status == 0, f"after SIGTERM the server should exit 0; got {status}\n{lk.output()}"


def readyz(g: Grpcurl) -> dict:
    with urllib.request.urlopen(f"http://{g.server.http_addr}/readyz", timeout=5) as r:
        return json.loads(r.read())


def wait_mode(g: Grpcurl, mode: str) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if readyz(g).get("rate_limits") == mode:
            return
        time.sleep(0.1)
    pytest.fail(f"/readyz never said rate_limits={mode!r}: {readyz(g)}\n{g.server.output()}")


def ask(g: Grpcurl, address: str) -> dict:
    return g.call(
        RLS,
        {"domain": "api", "descriptors": [{"entries": [{"key": "remote_address", "value": address}]}]},
        token=None,
    )


def allowed(g: Grpcurl, address: str, n: int) -> int:
    return sum(ask(g, address)["overallCode"] == "OK" for _ in range(n))


def fresh_address() -> str:
    # Unique per run: a shared Redis keeps counters between runs.
    return f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(256)}-{secrets.token_hex(4)}"


@pytest.fixture
def redis_url(tmp_path):
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    r = ThrowawayRedis(tmp_path / "redis-data")
    try:
        yield r.url
    finally:
        r.stop()


def test_two_replicas_hold_one_global_limit(replicas, redis_url, tmp_path):
    a, b = replicas(redis_url)
    wait_mode(a, "global")
    wait_mode(b, "global")
    addr = fresh_address()
    # A spends the whole burst; it answers from local state, so all of it.
    assert allowed(a, addr, BURST) == BURST
    # B learns of it within one reconciliation: at most the one request it
    # counts before its first batch (the stated bound: (replicas − 1) ×
    # what one replica counts between two reconciliations), never the
    # BURST a replica on its own would allow.
    b_allowed = 0
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        r = ask(b, addr)
        if r["overallCode"] == "OVER_LIMIT":
            break
        b_allowed += 1
    else:
        pytest.fail("B never saw the limit A spent")
    # (A grpcurl call takes tens of milliseconds, so one interval holds a few.)
    assert b_allowed <= 5, f"B allowed {b_allowed} past a spent global limit of {BURST}"


def test_redis_outage_falls_back_per_replica_and_recovers(replicas, throwaway_redis, tmp_path):
    a, b = replicas(throwaway_redis.url)
    wait_mode(a, "global")
    throwaway_redis.stop()
    wait_mode(a, "per_replica")
    # gRPC health stays SERVING: limits still hold, only per replica.
    assert a.call("grpc.health.v1.Health/Check", {}, token=None)["status"] == "SERVING"
    addr = fresh_address()
    share = BURST // 2
    # Never unlimited, never deny-all: exactly this replica's share.
    assert allowed(a, addr, share) == share
    r = ask(a, addr)
    assert r["overallCode"] == "OVER_LIMIT", r
    headers = {h["key"]: h["value"] for h in r["responseHeadersToAdd"]}
    assert headers["x-ratelimit-limit"] == str(share), headers
    assert "redis unreachable" in a.server.output(200), a.server.output()
    # Redis back (a fresh, empty one on the same port): global again.
    throwaway_redis.start()
    wait_mode(a, "global")
    wait_mode(b, "global")
    addr = fresh_address()
    assert allowed(a, addr, BURST) == BURST
    assert ask(a, addr)["overallCode"] == "OVER_LIMIT"
    assert "redis reachable" in a.server.output(200)


def test_strict_mode_asks_redis_on_every_request(replicas, redis_url):
    a, b = replicas(redis_url, strict=True)
    wait_mode(a, "global")
    wait_mode(b, "global")
    addr = fresh_address()
    assert allowed(a, addr, BURST) == BURST
    # No reconciliation to wait for: B's very first request sees A's.
    r = ask(b, addr)
    assert r["overallCode"] == "OVER_LIMIT", r
    headers = {h["key"]: h["value"] for h in r["responseHeadersToAdd"]}
    assert headers["x-ratelimit-limit"] == str(BURST), headers
    assert ask(a, addr)["overallCode"] == "OVER_LIMIT"
