"""Real reverse proxies for the forward-auth tests: Debian's nginx and caddy
started with the example configurations in deploy/, rendered into a temp
directory with the test's ports on 127.0.0.1, in front of an upstream that
echoes what it received.

Rendering replaces exact strings of the example files and fails if one is
not found the expected number of times, so an edit to an example either
keeps it testable or breaks this loudly; nothing else of the file changes.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

START_TIMEOUT = 20  # seconds until a proxy accepts connections
STOP_TIMEOUT = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render(text: str, replacements: list[tuple[str, str, int]]) -> str:
    """`text` with each (old, new, count): `old` must occur exactly `count` times."""
    for old, new, count in replacements:
        found = text.count(old)
        if found != count:
            pytest.fail(f"the example configuration should contain {old!r} {count} time(s), found {found}")
        text = text.replace(old, new)
    return text


# ---------------------------------------------------------------------------
# The upstream


@dataclass
class Received:
    """One request as the upstream received it."""

    method: str
    target: str  # the request target, exactly as on the request line
    headers: list[tuple[str, str]]
    body: bytes

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def value(self, name: str) -> str | None:
        values = self.values(name)
        assert len(values) <= 1, f"{name} arrived {len(values)} times: {self.headers}"
        return values[0] if values else None

    def names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}


class Upstream:
    """The protected application: answers every request 200 with a JSON echo
    of it, and records it."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def handle_one(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                got = Received(self.command, self.path, list(self.headers.items()), body)
                with upstream.lock:
                    upstream.received.append(got)
                out = json.dumps({"upstream": "echo", "target": self.path}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_one

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.addr = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def take(self) -> list[Received]:
        """The requests received since the last call."""
        with self.lock:
            got, self.received = self.received, []
        return got

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


# ---------------------------------------------------------------------------
# A plain HTTP client


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(values) <= 1, f"{name} appears {len(values)} times: {self.headers}"
        return values[0] if values else None

    def json(self) -> dict:
        try:
            return json.loads(self.body)
        except json.JSONDecodeError:
            pytest.fail(f"the body is not JSON: {self.describe()}")

    def describe(self) -> str:
        head = "\n".join(f"{k}: {v}" for k, v in self.headers)
        return f"HTTP {self.status}\n{head}\n\n{self.body[:2000].decode(errors='replace')}"


def request(
    addr: str,
    target: str,
    method: str = "GET",
    headers: list[tuple[str, str]] | dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10,
) -> Response:
    """One request with `target` sent exactly as given (no normalising)."""
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        if not any(k.lower() == "host" for k, _ in items):
            conn.putheader("Host", "api.shop.example")
        for k, v in items:
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# The proxies


def wait_for_port(addr: str, proc: subprocess.Popen, log: Path, what: str) -> None:
    host, port = addr.rsplit(":", 1)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with status {proc.returncode}:\n{tail(log)}")
        try:
            with socket.create_connection((host, int(port)), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"{what} did not listen on {addr} within {START_TIMEOUT}s:\n{tail(log)}")


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Proxy:
    name: str
    addr: str
    proc: subprocess.Popen
    log: Path
    config: Path
    notes: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.proc.poll() is None:
            # nginx: SIGTERM is a fast shutdown of master and workers; caddy: a graceful stop.
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def output(self) -> str:
        return f"--- {self.name} log ({self.log}) ---\n{tail(self.log)}"


def nginx_exe() -> str:
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if not exe:
        pytest.fail("nginx is missing: apt-get install nginx (scripts/test.sh does)")
    return exe


def caddy_exe() -> str:
    exe = shutil.which("caddy")
    if not exe:
        pytest.fail("caddy is missing: apt-get install caddy (scripts/test.sh does)")
    return exe


def start_nginx(workdir: Path, forward_auth: str, upstream: str, example: Path | None = None) -> Proxy:
    """deploy/nginx/nginx.conf with Latchkey's forward-auth address, the
    upstream, a free port on 127.0.0.1, and its files under `workdir`."""
    example = example or DEPLOY / "nginx" / "nginx.conf"
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    temp = "\n".join(
        f"    {d} {workdir / n};"
        for d, n in [
            ("client_body_temp_path", "body"),
            ("proxy_temp_path", "proxy"),
            ("fastcgi_temp_path", "fastcgi"),
            ("uwsgi_temp_path", "uwsgi"),
            ("scgi_temp_path", "scgi"),
        ]
    )
    text = render(
        example.read_text(),
        [
            ("worker_processes auto;", "worker_processes 1;", 1),
            ("http {\n", f"http {{\n    access_log {workdir / 'access.log'};\n{temp}\n", 1),
            ("server 127.0.0.1:8081;", f"server {forward_auth};", 1),
            ("server 127.0.0.1:3000;", f"server {upstream};", 1),
            ("listen 8000;", f"listen 127.0.0.1:{port};", 1),
        ],
    )
    config = workdir / "nginx.conf"
    config.write_text(text)
    log = workdir / "error.log"
    args = [
        nginx_exe(),
        "-p",
        str(workdir),
        "-c",
        str(config),
        "-e",
        str(log),
        "-g",
        f"daemon off; pid {workdir / 'nginx.pid'}; error_log {log} info;",
    ]
    with open(workdir / "nginx.stderr", "wb") as err:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    proxy = Proxy("nginx", f"127.0.0.1:{port}", proc, log, config)
    wait_for_port(proxy.addr, proc, workdir / "nginx.stderr", "nginx")
    return proxy


def start_caddy(workdir: Path, forward_auth: str, upstream: str) -> Proxy:
    """deploy/caddy/Caddyfile with Latchkey's forward-auth address, the
    upstream, and a free port bound to 127.0.0.1; Caddy's own state under
    `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    text = render(
        (DEPLOY / "caddy" / "Caddyfile").read_text(),
        [
            ("forward_auth 127.0.0.1:8081 {", f"forward_auth {forward_auth} {{", 1),
            ("reverse_proxy 127.0.0.1:3000\n", f"reverse_proxy {upstream}\n", 1),
            ("\n:8000 {\n", f"\n:{port} {{\n\tbind 127.0.0.1\n", 1),
        ],
    )
    config = workdir / "Caddyfile"
    config.write_text(text)
    log = workdir / "caddy.log"
    env = {
        **os.environ,
        "HOME": str(workdir),
        "XDG_CONFIG_HOME": str(workdir / "config"),
        "XDG_DATA_HOME": str(workdir / "data"),
    }
    args = [caddy_exe(), "run", "--config", str(config), "--adapter", "caddyfile"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, cwd=workdir)
    proxy = Proxy("caddy", f"127.0.0.1:{port}", proc, log, config)
    wait_for_port(proxy.addr, proc, log, "caddy")
    return proxy


# ---------------------------------------------------------------------------
# A scripted authorizer, for what the nginx example must do with answers
# that Latchkey's configuration cannot be made to give on demand.


class ScriptedAuthorizer:
    """Answers every forward-auth request with `self.answer`: (status,
    headers, body)."""

    def __init__(self) -> None:
        self.answer: tuple[int, list[tuple[str, str]], bytes] = (200, [], b"")
        authorizer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                status, headers, body = authorizer.answer
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.addr = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
