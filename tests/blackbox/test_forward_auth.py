"""Forward auth behind real proxies: Debian's nginx and caddy, started with
the example configurations in deploy/ (rendered to temp dirs and free ports
on 127.0.0.1), in front of an upstream that echoes what it received, driven
with a plain HTTP client. Traefik and ingress-nginx have no Debian package:
their header sets are sent to the endpoint directly, as they send them.

What is proven:
- an allowed request reaches the upstream with the principal headers, and a
  client's own X-Latchkey-* headers never do;
- a denied request never reaches it, and the client gets 401/403 with the
  JSON body ext_authz sends;
- path tricks are judged on the normalised form of the path the upstream
  receives;
- a Latchkey that is down makes the proxy deny, never allow.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from conftest import Grpcurl, Latchkey, run
from proxies import Proxy, ScriptedAuthorizer, Upstream, request, start_caddy, start_nginx

PRINCIPAL_HEADERS = [
    "x-latchkey-account-id",
    "x-latchkey-key-id",
    "x-latchkey-mode",
    "x-latchkey-scopes",
    "x-latchkey-plan",
]

FORWARD_AUTH_LINE = re.compile(r"^latchkey listening forward-auth=(127\.0\.0\.1:\d+)$")


def config(flavor: str) -> str:
    return f"""\
[ext_authz]
public_routes = ["GET /v2/public/**"]

[forward_auth]
enabled = true
addr = "127.0.0.1:0"
flavor = "{flavor}"
trusted_proxies = ["127.0.0.1/32"]
"""


class ForwardAuthServer:
    """A `latchkey serve` with forward auth on, and grpcurl bound to it."""

    def __init__(self, latchkey_bin: Path, grpcurl_exe: str, tmp_path: Path, flavor: str):
        path = tmp_path / f"latchkey-{flavor}.toml"
        path.write_text(config(flavor))
        # The shared fixture passes no --config: wrap the binary, exec'ing so
        # that signals reach latchkey itself.
        wrapper = tmp_path / "latchkey-with-config"
        bin_q, config_q = shlex.quote(str(latchkey_bin)), shlex.quote(str(path))
        wrapper.write_text(
            "#!/bin/sh\n"
            f'if [ "$1" = serve ]; then shift; exec {bin_q} serve --config {config_q} "$@"; fi\n'
            f'exec {bin_q} "$@"\n'
        )
        wrapper.chmod(0o755)
        data_dir = tmp_path / "data"
        data_dir.mkdir()
        self.lk = Latchkey(wrapper, data_dir)
        self.lk.start()
        found = [m.group(1) for line in self.lk.stdout_lines if (m := FORWARD_AUTH_LINE.match(line))]
        if len(found) != 1:
            self.lk.stop()
            pytest.fail(f"expected one 'latchkey listening forward-auth=...' line:\n{self.lk.output()}")
        self.addr = found[0]
        self.grpcurl = Grpcurl(grpcurl_exe, self.lk)

    def principal(self) -> dict:
        """An account (PRIME), a test key with scope surveys.read, and the
        rules GET /v2/surveys/{id} -> surveys.read, POST /v2/surveys/** ->
        surveys.write."""
        g = self.grpcurl
        account = g.call("latchkey.v1.AccountService/CreateAccount", {"name": "Acme Surveys", "plan": "PRIME"})
        created = g.call(
            "latchkey.v1.KeyService/CreateKey",
            {
                "accountId": account["id"],
                "mode": "MODE_TEST",
                "kind": "KEY_KIND_SECRET",
                "name": "survey reader",
                "scopes": ["surveys.read"],
            },
        )
        assert created.get("secret", "").startswith("lk_test_sk_"), created
        for method, path, permission in [
            ("GET", "/v2/surveys/{id}", "surveys.read"),
            ("POST", "/v2/surveys/**", "surveys.write"),
        ]:
            g.call("latchkey.v1.RouteService/CreateRule", {"method": method, "path": path, "permission": permission})
        return {"account_id": account["id"], "key_id": created["key"]["id"], "secret": created["secret"]}


@pytest.fixture
def upstream():
    u = Upstream()
    try:
        yield u
    finally:
        u.close()


PROXIES = {"nginx": start_nginx, "caddy": start_caddy}


@pytest.fixture(params=sorted(PROXIES))
def stack(request, latchkey_bin, grpcurl_exe, tmp_path, upstream):
    """(proxy, latchkey, principal): a real proxy from its example
    configuration, in front of `upstream`, asking a Latchkey whose
    forward_auth.flavor is the proxy's."""
    name = request.param
    server = ForwardAuthServer(latchkey_bin, grpcurl_exe, tmp_path, name)
    proxy: Proxy | None = None
    try:
        principal = server.principal()
        proxy = PROXIES[name](tmp_path / name, server.addr, upstream.addr)
        yield proxy, server, principal
    finally:
        if proxy is not None:
            proxy.stop()
            print(proxy.output())
        server.lk.stop()
        print(server.lk.output())


def bearer(principal: dict) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {principal['secret']}")]


def assert_denied(r, status: int, reason: str) -> dict:
    assert r.status == status, r.describe()
    assert (r.header("content-type") or "").startswith("application/json"), r.describe()
    body = r.json()
    assert set(body) == {"error", "reason", "message"}, body
    assert body["reason"] == reason, body
    assert body["error"] == {400: "bad_request", 401: "unauthorized", 403: "forbidden"}[status], body
    assert body["message"], body
    if status == 401:
        challenge = r.header("www-authenticate") or ""
        assert challenge.startswith('Bearer realm="latchkey"'), r.describe()
    # The headers that carry a denial through nginx stay between nginx and Latchkey.
    assert r.header("x-latchkey-denial") is None and r.header("x-latchkey-status") is None, r.describe()
    return body


# ---------------------------------------------------------------------------
# Allowed


def test_allowed_request_reaches_the_upstream_with_the_principal(stack, upstream):
    proxy, _, principal = stack
    r = request(proxy.addr, "/v2/surveys/42?expand=answers", headers=bearer(principal))
    assert r.status == 200, r.describe()
    assert r.json() == {"upstream": "echo", "target": "/v2/surveys/42?expand=answers"}
    [got] = upstream.take()
    assert got.method == "GET" and got.target == "/v2/surveys/42?expand=answers", got
    assert got.value("x-latchkey-account-id") == principal["account_id"], got.headers
    assert got.value("x-latchkey-key-id") == principal["key_id"], got.headers
    assert got.value("x-latchkey-mode") == "test", got.headers
    assert got.value("x-latchkey-scopes") == "surveys.read", got.headers
    assert got.value("x-latchkey-plan") == "PRIME", got.headers


def test_api_key_header_is_a_credential_too(stack, upstream):
    proxy, _, principal = stack
    r = request(proxy.addr, "/v2/surveys/7", headers=[("X-Api-Key", principal["secret"])])
    assert r.status == 200, r.describe()
    [got] = upstream.take()
    assert got.value("x-latchkey-account-id") == principal["account_id"], got.headers


def test_public_route_reaches_the_upstream_without_a_principal(stack, upstream):
    proxy, _, _ = stack
    r = request(proxy.addr, "/v2/public/status")
    assert r.status == 200, r.describe()
    [got] = upstream.take()
    assert not {n for n in got.names() if n.startswith(("x-latchkey", "x_latchkey"))}, got.headers


FORGED = [
    ("X-Latchkey-Account-Id", "acct_forged"),
    ("X-Latchkey-Key-Id", "key_forged"),
    ("X-Latchkey-Mode", "live"),
    ("X-Latchkey-Scopes", "*"),
    ("X-Latchkey-Plan", "PRIME"),
]


@pytest.mark.parametrize("path", ["/v2/surveys/42", "/v2/public/status"], ids=["with-key", "public"])
def test_forged_principal_headers_never_reach_the_upstream(stack, upstream, path):
    proxy, _, principal = stack
    headers = bearer(principal) + FORGED + [("X-Latchkey-Admin", "true")]
    r = request(proxy.addr, path, headers=headers)
    got = upstream.take()
    if proxy.name == "nginx":
        # nginx cannot remove headers by pattern: Latchkey refuses the request.
        assert_denied(r, 400, "REQUEST_INVALID")
        assert got == [], got
        return
    assert r.status == 200, r.describe()
    [got] = got
    ours = {n: got.values(n) for n in got.names() if n.startswith("x-latchkey")}
    if path == "/v2/public/status":
        assert ours == {}, got.headers
    else:
        assert ours == {
            "x-latchkey-account-id": [principal["account_id"]],
            "x-latchkey-key-id": [principal["key_id"]],
            "x-latchkey-mode": ["test"],
            "x-latchkey-scopes": ["surveys.read"],
            "x-latchkey-plan": ["PRIME"],
        }, got.headers


def test_underscore_spellings_never_reach_the_upstream(stack, upstream):
    """Many frameworks read x_latchkey_account_id as x-latchkey-account-id."""
    proxy, _, principal = stack
    headers = bearer(principal) + [("X_Latchkey_Account_Id", "acct_forged"), ("x_latchkey_plan", "PRIME")]
    r = request(proxy.addr, "/v2/public/status", headers=headers)
    assert r.status == 200, r.describe()
    [got] = upstream.take()
    assert not {n for n in got.names() if n.startswith(("x-latchkey", "x_latchkey"))}, got.headers


# ---------------------------------------------------------------------------
# Denied: the upstream sees nothing


def test_no_credential_is_401(stack, upstream):
    proxy, _, _ = stack
    r = request(proxy.addr, "/v2/surveys/42")
    assert_denied(r, 401, "CREDENTIAL_MISSING")
    assert r.header("www-authenticate") == 'Bearer realm="latchkey"', r.describe()
    assert upstream.take() == []


@pytest.mark.parametrize(
    ("credential", "reason"),
    [("unknown", "CREDENTIAL_UNKNOWN"), ("lk_test_sk_" + "A" * 36, "CREDENTIAL_MALFORMED")],
    ids=["unknown", "malformed"],
)
def test_bad_credential_is_401(stack, upstream, latchkey_bin, credential, reason):
    proxy, _, _ = stack
    if credential == "unknown":
        # Well-formed (its checksum holds), never stored.
        made = run([latchkey_bin, "admin", "generate-token"])
        assert made.returncode == 0, made.describe()
        credential = made.stdout.strip()
    r = request(proxy.addr, "/v2/surveys/42", headers=[("Authorization", f"Bearer {credential}")])
    assert_denied(r, 401, reason)
    assert f'error_description="{reason}"' in (r.header("www-authenticate") or ""), r.describe()
    assert upstream.take() == []


def test_revoked_key_is_401(stack, upstream):
    proxy, server, principal = stack
    server.grpcurl.call("latchkey.v1.KeyService/RevokeKey", {"id": principal["key_id"]})
    r = request(proxy.addr, "/v2/surveys/42", headers=bearer(principal))
    assert_denied(r, 401, "KEY_REVOKED")
    assert upstream.take() == []


def test_not_permitted_is_403(stack, upstream):
    proxy, _, principal = stack
    r = request(proxy.addr, "/v2/surveys/42/answers", method="POST", headers=bearer(principal), body=b"{}")
    assert_denied(r, 403, "PERMISSION_DENIED")
    r = request(proxy.addr, "/v2/admin", headers=bearer(principal))
    assert_denied(r, 403, "ROUTE_NOT_ALLOWED")
    assert upstream.take() == []


# ---------------------------------------------------------------------------
# Path tricks: judged on the path the upstream receives, normalised


@pytest.mark.parametrize(
    "target",
    ["/v2/public/../admin", "/v2/public/%2e%2e/admin", "/v2/public/./../admin", "/v2/public/..%2F..%2Fadmin"],
    ids=["dot-dot", "encoded-dots", "dot-then-dot-dot", "encoded-slashes"],
)
def test_a_public_prefix_does_not_make_another_path_public(stack, upstream, target):
    proxy, _, _ = stack
    r = request(proxy.addr, target)
    if "%2F" in target:
        assert_denied(r, 400, "PATH_INVALID")
    else:
        assert_denied(r, 403, "ROUTE_NOT_ALLOWED")
    assert upstream.take() == []


@pytest.mark.parametrize(
    "target",
    ["/v2/public/../surveys/1", "/v2//surveys//1", "/v2/./surveys/%31"],
    ids=["dot-dot", "double-slash", "dot-and-percent"],
)
def test_the_upstream_receives_the_path_that_was_judged(stack, upstream, target):
    proxy, _, principal = stack
    r = request(proxy.addr, target, headers=bearer(principal))
    assert r.status == 200, r.describe()
    [got] = upstream.take()
    # The proxy passes the target on as sent; its normal form is the
    # /v2/surveys/{id} that Latchkey allowed.
    assert got.target == target, got
    assert got.value("x-latchkey-account-id") == principal["account_id"], got.headers


@pytest.mark.parametrize("target", ["/v2/surveys/a%2Fb", "/v2/surveys/a%2fb", "/v2/surveys/a%5Cb"])
def test_encoded_separators_are_refused(stack, upstream, target):
    proxy, _, principal = stack
    r = request(proxy.addr, target, headers=bearer(principal))
    assert_denied(r, 400, "PATH_INVALID")
    assert upstream.take() == []


# ---------------------------------------------------------------------------
# Latchkey down: the proxy denies


def test_latchkey_down_means_denied(stack, upstream):
    proxy, server, principal = stack
    assert request(proxy.addr, "/v2/surveys/42", headers=bearer(principal)).status == 200
    upstream.take()
    assert server.lk.stop() == 0
    for target in ["/v2/surveys/42", "/v2/public/status"]:
        r = request(proxy.addr, target, headers=bearer(principal))
        assert r.status in (502, 503), r.describe()
        assert upstream.take() == []
    if proxy.name == "nginx":
        body = r.json()
        assert body["error"] == "unavailable", body


# ---------------------------------------------------------------------------
# nginx's error_page mapping, with answers scripted (the status and body
# headers auth_request needs for anything but 401 and 403)


@pytest.fixture
def scripted_nginx(tmp_path, upstream):
    authorizer = ScriptedAuthorizer()
    proxy = start_nginx(tmp_path / "nginx", authorizer.addr, upstream.addr)
    try:
        yield proxy, authorizer
    finally:
        proxy.stop()
        print(proxy.output())
        authorizer.close()


def test_nginx_maps_429_with_retry_after_and_rate_limit_headers(scripted_nginx, upstream):
    proxy, authorizer = scripted_nginx
    body = b'{"error":"rate_limited","message":"slow down","reason":"RATE_LIMITED"}'
    authorizer.answer = (
        403,
        [
            ("Content-Type", "application/json"),
            ("X-Latchkey-Status", "429"),
            ("X-Latchkey-Denial", body.decode()),
            ("Retry-After", "7"),
            ("X-RateLimit-Limit", "1200"),
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", "7"),
        ],
        body,
    )
    r = request(proxy.addr, "/v2/surveys/42")
    assert r.status == 429, r.describe()
    assert r.body == body, r.describe()
    assert r.header("content-type") == "application/json", r.describe()
    assert (r.header("retry-after"), r.header("x-ratelimit-limit")) == ("7", "1200"), r.describe()
    assert (r.header("x-ratelimit-remaining"), r.header("x-ratelimit-reset")) == ("0", "7"), r.describe()
    assert upstream.take() == []


def test_nginx_passes_a_503_answer_on_and_never_allows(scripted_nginx, upstream):
    proxy, authorizer = scripted_nginx
    body = b'{"error":"unavailable","message":"the decision could not be made","reason":"INTERNAL_ERROR"}'
    authorizer.answer = (503, [("X-Latchkey-Status", "503"), ("X-Latchkey-Denial", body.decode())], body)
    r = request(proxy.addr, "/v2/surveys/42")
    assert r.status == 503 and r.body == body, r.describe()
    # A 2xx without a principal (a public route) passes, and only that.
    authorizer.answer = (200, [], b"")
    assert request(proxy.addr, "/v2/public/x").status == 200
    assert [g.target for g in upstream.take()] == ["/v2/public/x"]


# ---------------------------------------------------------------------------
# The endpoint itself, with the header sets of proxies that have no Debian
# package


@pytest.fixture
def direct(latchkey_bin, grpcurl_exe, tmp_path, request):
    server = ForwardAuthServer(latchkey_bin, grpcurl_exe, tmp_path, request.param)
    try:
        yield server, server.principal()
    finally:
        server.lk.stop()
        print(server.lk.output())


def traefik_headers(method: str, uri: str, extra: list[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """What Traefik's ForwardAuth sends (trustForwardHeader: false): the
    client's headers, and X-Forwarded-* written by Traefik; Host is the
    authorizer's."""
    return [
        ("Host", "latchkey-forward-auth:8081"),
        *extra,
        ("X-Forwarded-Method", method),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "api.shop.example"),
        ("X-Forwarded-Uri", uri),
        ("X-Forwarded-For", "203.0.113.9"),
    ]


@pytest.mark.parametrize("direct", ["traefik"], indirect=True)
def test_traefik_header_set(direct):
    server, principal = direct
    auth = [("Authorization", f"Bearer {principal['secret']}")]
    r = request(server.addr, "/forward-auth", headers=traefik_headers("GET", "/v2/surveys/42?x=1", auth))
    assert r.status == 200, r.describe()
    assert r.header("x-latchkey-account-id") == principal["account_id"], r.describe()
    assert r.header("x-latchkey-key-id") == principal["key_id"], r.describe()
    assert (r.header("x-latchkey-mode"), r.header("x-latchkey-scopes")) == ("test", "surveys.read"), r.describe()
    assert r.header("x-latchkey-plan") == "PRIME", r.describe()

    # Traefik returns a denial to the client as it is: the real status and body.
    assert_denied(request(server.addr, "/forward-auth", headers=traefik_headers("GET", "/v2/surveys/42")), 401, "CREDENTIAL_MISSING")
    r = request(server.addr, "/forward-auth", headers=traefik_headers("POST", "/v2/surveys/42", auth))
    assert_denied(r, 403, "PERMISSION_DENIED")
    r = request(server.addr, "/forward-auth", headers=traefik_headers("GET", "/v2/public/../admin"))
    assert_denied(r, 403, "ROUTE_NOT_ALLOWED")
    r = request(server.addr, "/forward-auth", headers=traefik_headers("GET", "/v2/surveys/a%2Fb", auth))
    assert_denied(r, 400, "PATH_INVALID")
    # Public, without a principal: the five headers are there and empty.
    r = request(server.addr, "/forward-auth", headers=traefik_headers("GET", "/v2/public/x"))
    assert r.status == 200, r.describe()
    assert [r.header(h) for h in PRINCIPAL_HEADERS] == [""] * 5, r.describe()


@pytest.mark.parametrize("direct", ["nginx"], indirect=True)
def test_ingress_nginx_header_set(direct):
    """What ingress-nginx's auth-url subrequest sends: X-Original-URL (an
    absolute URL), X-Original-Method, X-Forwarded-For and the client's headers."""
    server, principal = direct

    def ingress(method: str, url: str, extra: list[tuple[str, str]] = ()) -> list[tuple[str, str]]:
        return [
            ("Host", "latchkey-forward-auth.latchkey.svc.cluster.local:8081"),
            *extra,
            ("X-Request-ID", "0123456789abcdef"),
            ("X-Original-URL", url),
            ("X-Original-Method", method),
            ("X-Sent-From", "nginx-ingress-controller"),
            ("X-Real-IP", "203.0.113.9"),
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Auth-Request-Redirect", "/v2/surveys/42"),
        ]

    auth = [("Authorization", f"Bearer {principal['secret']}")]
    r = request(server.addr, "/forward-auth", headers=ingress("GET", "https://api.shop.example/v2/surveys/42", auth))
    assert r.status == 200, r.describe()
    assert r.header("x-latchkey-account-id") == principal["account_id"], r.describe()
    # auth_request passes only 401 and 403: other statuses travel in headers.
    r = request(server.addr, "/forward-auth", headers=ingress("GET", "https://api.shop.example/v2/surveys/a%2Fb", auth))
    assert r.status == 403, r.describe()
    assert r.header("x-latchkey-status") == "400", r.describe()
    denial = r.header("x-latchkey-denial") or ""
    assert denial == r.body.decode(), r.describe()
    assert '"reason":"PATH_INVALID"' in denial, r.describe()
