"""Fixtures for the black-box tests: a freshly started `latchkey serve` per
test (own temp data dir, SQLite, ports picked by the OS) and a grpcurl
runner bound to it.

For the real-browser tests: a Chromium driven by Playwright (one per
session) and a small HTTP receiver on the loopback interface that stands in
for an OAuth2 client's redirect URI.

Environment:
  LATCHKEY_BIN        the built binary (scripts/test.sh sets it)
  GRPCURL             the grpcurl binary; default: `grpcurl` on PATH
  LATCHKEY_ARTIFACTS  where tests leave artifacts such as screenshots;
                      default /tmp/latchkey-artifacts
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

START_TIMEOUT = 30  # seconds until the "listening" line
STOP_TIMEOUT = 15  # seconds from SIGTERM to exit
CALL_TIMEOUT = 30  # seconds per grpcurl / CLI call

LISTENING = re.compile(r"^latchkey listening grpc=(127\.0\.0\.1:\d+) http=(127\.0\.0\.1:\d+)$")


# ---------------------------------------------------------------------------
# Tools


@pytest.fixture(scope="session")
def latchkey_bin() -> Path:
    value = os.environ.get("LATCHKEY_BIN")
    if not value:
        pytest.fail("LATCHKEY_BIN is not set: run scripts/test.sh, or point it at a built latchkey")
    path = Path(value)
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"LATCHKEY_BIN={value} is not an executable file (cargo build --bin latchkey?)")
    return path


@pytest.fixture(scope="session")
def grpcurl_exe() -> str:
    exe = os.environ.get("GRPCURL") or shutil.which("grpcurl")
    if not exe:
        pytest.fail("grpcurl not found: set GRPCURL or put grpcurl on PATH (scripts/test.sh does)")
    return exe


def child_env() -> dict[str, str]:
    """The environment for latchkey itself: the quickstart's, i.e. without the
    test suite's DATABASE_URL / REDIS_URL or any LATCHKEY_* override, so the
    server runs on SQLite in its data dir with its defaults."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LATCHKEY_") and k not in ("DATABASE_URL", "REDIS_URL")
    }


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (
            f"$ {shlex.join(self.args)}\n"
            f"exit status: {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}"
            f"--- stderr ---\n{self.stderr}"
        )


def run(args: list[str], timeout: float = CALL_TIMEOUT, env: dict[str, str] | None = None) -> Result:
    args = [str(a) for a in args]
    try:
        p = subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        pytest.fail(f"timed out after {timeout}s:\n{Result(args, -1, out, err).describe()}")
    return Result(args, p.returncode, p.stdout, p.stderr)


# ---------------------------------------------------------------------------
# The server


class Latchkey:
    def __init__(self, exe: Path, data_dir: Path):
        self.exe = exe
        self.data_dir = data_dir
        self.log_path = data_dir.parent / "latchkey.stderr.log"
        self.stdout_lines: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.grpc_addr = ""
        self.http_addr = ""
        self.token = ""
        self.stopped = False
        # Set before start(): more `serve` flags, more environment.
        self.extra_args: list[str] = []
        self.extra_env: dict[str, str] = {}
        self.metrics_addr = ""

    def create_token(self) -> str:
        r = run([self.exe, "admin", "create-token", "--data-dir", self.data_dir], env=child_env())
        assert r.returncode == 0, f"admin create-token failed:\n{r.describe()}"
        token = r.stdout.strip()
        assert token, f"admin create-token printed no token:\n{r.describe()}"
        assert len(r.stdout.strip().splitlines()) == 1 and not re.search(r"\s", token), (
            f"admin create-token should print the token alone on stdout:\n{r.describe()}"
        )
        return token

    def start(self) -> None:
        self.token = self.create_token()
        args = [
            str(self.exe),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            *self.extra_args,
        ]
        self.args = args
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env={**child_env(), **self.extra_env},
                text=True,
            )
        listening = threading.Event()

        # Keeps draining stdout for the server's whole life, so a chatty
        # server never blocks on a full pipe.
        def reader() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                line = line.rstrip("\n")
                self.stdout_lines.append(line)
                if line.startswith("latchkey listening metrics="):
                    self.metrics_addr = line.split("=", 1)[1]
                m = LISTENING.match(line)
                if m and not listening.is_set():
                    self.grpc_addr, self.http_addr = m.group(1), m.group(2)
                    listening.set()
            listening.set()  # EOF: the process is gone

        threading.Thread(target=reader, daemon=True).start()
        listening.wait(START_TIMEOUT)
        if not self.grpc_addr:
            exited = self.proc.poll()
            if exited is None:
                self.proc.kill()
                self.proc.wait(5)
            pytest.fail(
                f"no 'latchkey listening grpc=... http=...' line on stdout within {START_TIMEOUT}s "
                f"(exit status: {exited}):\n$ {shlex.join(args)}\n{self.output()}"
            )

    def stop(self) -> int | None:
        """SIGTERM, then the exit status (None if it had to be killed)."""
        assert self.proc is not None
        self.stopped = True
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None

    def output(self, tail: int = 60) -> str:
        try:
            err = self.log_path.read_text(errors="replace").splitlines()[-tail:]
        except OSError:
            err = []
        return (
            "--- server stdout ---\n" + "\n".join(self.stdout_lines[-tail:]) + "\n"
            "--- server stderr (tail) ---\n" + "\n".join(err) + "\n"
        )


@pytest.fixture
def server(latchkey_bin: Path, tmp_path: Path):
    """A started server; stopped with SIGTERM afterwards, which must end it
    with exit status 0 within STOP_TIMEOUT seconds (graceful shutdown)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    lk = Latchkey(latchkey_bin, data_dir)
    lk.start()
    try:
        yield lk
    finally:
        stopped_by_test = lk.stopped
        already = lk.proc is not None and lk.proc.poll() is not None
        status = lk.stop()
        # Shown by pytest only when the test fails.
        print(lk.output())
    if stopped_by_test:
        return
    if already:
        pytest.fail(f"the server exited during the test with status {status}:\n{lk.output()}")
    assert status == 0, (
        f"after SIGTERM the server should exit 0 within {STOP_TIMEOUT}s; got "
        f"{'no exit (killed)' if status is None else status}\n{lk.output()}"
    )


# ---------------------------------------------------------------------------
# grpcurl

_ADMIN = object()  # "use the server's admin token"


class Grpcurl:
    """grpcurl against one server, through server reflection only."""

    def __init__(self, exe: str, server: Latchkey):
        self.exe = exe
        self.server = server

    def run(self, *verb: str, data: object = None, token: object = None, headers: tuple[str, ...] = ()) -> Result:
        args = [self.exe, "-plaintext", "-connect-timeout", "10", "-max-time", "20"]
        if token is _ADMIN:
            token = f"Bearer {self.server.token}"
        if token is not None:
            args += ["-H", f"authorization: {token}"]
        for h in headers:
            args += ["-H", h]
        if data is not None:
            args += ["-d", json.dumps(data)]
        args += [self.server.grpc_addr, *verb]
        return run(args)

    def ok(self, *verb: str, **kw) -> Result:
        r = self.run(*verb, **kw)
        if r.returncode != 0:
            pytest.fail(f"grpcurl failed:\n{r.describe()}\n{self.server.output()}")
        return r

    def call(self, method: str, data: object = None, token: object = _ADMIN) -> dict:
        """A unary call that must succeed; returns the response as JSON."""
        r = self.ok(method, data={} if data is None else data, token=token)
        try:
            return json.loads(r.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"grpcurl printed no single JSON object:\n{r.describe()}")

    def fails(self, method: str, data: object = None, token: object = _ADMIN, code: str = "") -> tuple[str, str]:
        """A call that must fail with gRPC status `code`; returns (code, message)."""
        r = self.run(method, data={} if data is None else data, token=token)
        text = r.stdout + r.stderr
        got_code = m.group(1) if (m := re.search(r"Code: (\w+)", text)) else ""
        got_msg = m.group(1) if (m := re.search(r"Message: (.*)", text)) else ""
        if r.returncode == 0 or (code and got_code != code):
            pytest.fail(f"expected grpcurl to fail with {code or 'an error'}, got {got_code or 'success'}:\n{r.describe()}")
        return got_code, got_msg


@pytest.fixture
def grpcurl(grpcurl_exe: str, server: Latchkey) -> Grpcurl:
    return Grpcurl(grpcurl_exe, server)


# ---------------------------------------------------------------------------
# Real browsers

# Debian's chromium (scripts/test.sh installs it with apt-get); Playwright's
# own browser download (`playwright install`) is not used.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    path = Path(os.environ.get("LATCHKEY_ARTIFACTS") or "/tmp/latchkey-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium (Playwright's sync API) for the whole session;
    each test opens its own context in it."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test.sh does)")
    # Imported here so that the other black-box tests run without Playwright.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


class Receiver:
    """A one-purpose HTTP server on a loopback address: it records every
    GET (path and query; not the browser's favicon fetch) and answers 200
    with a small page. It stands in for an OAuth2 client's redirect URI."""

    def __init__(self, host: str):
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/favicon.ico":  # the browser's own, not the test's
                    self.send_error(404)
                    return
                body = (
                    b'<!doctype html><title>client</title><link rel="icon" href="data:,">'
                    b"<p>The client received the answer.</p>"
                )
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                with receiver.arrived:
                    receiver.requests.append((parts.path, parse_qs(parts.query, keep_blank_values=True)))
                    receiver.arrived.notify_all()

        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Server(ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

        self.httpd = Server((host, 0), Handler)
        port = self.httpd.server_address[1]
        self.origin = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return self.origin + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver(request):
    """A Receiver on 127.0.0.1, or on the address given with indirect
    parametrization (`"::1"`: skipped where the host has no IPv6 loopback)."""
    host = getattr(request, "param", "127.0.0.1")
    try:
        r = Receiver(host)
    except OSError as e:
        if ":" in host:
            pytest.skip(f"no IPv6 loopback here: {e}")
        raise
    try:
        yield r
    finally:
        r.close()
