"""Envoy external authorization (`envoy.service.auth.v3.Authorization/Check`)
from the outside: the built binary, driven by grpcurl through server
reflection alone, with the CheckRequest Envoy would send.

grpcurl prints protobuf JSON: `CheckResponse.status.code` (google.rpc.Status,
an int32) is omitted when 0; `deniedResponse.status.code`
(envoy.type.v3.StatusCode, an enum) is printed by name (`Unauthorized`).
"""

from __future__ import annotations

import json
import shlex

import pytest
from conftest import Grpcurl, Latchkey

AUTHORIZATION = "envoy.service.auth.v3.Authorization"
CHECK = f"{AUTHORIZATION}/Check"

# google.rpc.Code values in CheckResponse.status.code
RPC_OK = 0
RPC_INVALID_ARGUMENT = 3
RPC_PERMISSION_DENIED = 7
RPC_UNAUTHENTICATED = 16

PRINCIPAL_HEADERS = [
    "x-latchkey-account-id",
    "x-latchkey-key-id",
    "x-latchkey-mode",
    "x-latchkey-scopes",
    "x-latchkey-plan",
]


def check_request(path: str, headers: dict[str, str] | None = None, method: str = "GET") -> dict:
    """The CheckRequest Envoy sends (only the attributes Latchkey reads)."""
    return {
        "attributes": {
            "source": {"address": {"socketAddress": {"address": "203.0.113.9", "portValue": 5000}}},
            "request": {
                "http": {
                    "method": method,
                    "path": path,
                    "host": "api.example",
                    "headers": headers or {},
                }
            },
        }
    }


def ext_check(grpcurl: Grpcurl, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> dict:
    # Envoy calls Check with no admin token.
    return grpcurl.call(CHECK, check_request(path, headers, method), token=None)


def rpc_code(response: dict) -> int:
    return int(response.get("status", {}).get("code", RPC_OK))


def ok_headers(response: dict) -> dict[str, dict]:
    """okResponse.headers as {key: {"value": ..., "appendAction": ...}}."""
    ok = response.get("okResponse")
    assert ok is not None, f"expected an okResponse: {response}"
    out = {}
    for option in ok.get("headers", []):
        h = option.get("header", {})
        out[h.get("key")] = {"value": h.get("value"), "appendAction": option.get("appendAction")}
    return out


def assert_denied(response: dict, http_status: str, rpc: int, reason: str) -> dict:
    """A deniedResponse with this HTTP status (enum name), gRPC code and
    JSON-body reason; returns the decoded body."""
    denied = response.get("deniedResponse")
    assert denied is not None, f"expected a deniedResponse: {response}"
    assert "okResponse" not in response, response
    assert denied.get("status", {}).get("code") == http_status, response
    assert rpc_code(response) == rpc, response
    headers = {o["header"]["key"]: o["header"].get("value", "") for o in denied.get("headers", [])}
    assert headers.get("content-type") == "application/json", response
    if http_status == "Unauthorized":
        assert headers.get("www-authenticate", "").startswith("Bearer "), response
    try:
        body = json.loads(denied.get("body", ""))
    except json.JSONDecodeError:
        pytest.fail(f"deniedResponse.body is not JSON: {response}")
    assert set(body) == {"error", "reason", "message"}, body
    assert body["reason"] == reason, body
    assert body["message"], body
    return body


@pytest.fixture
def principal(grpcurl: Grpcurl) -> dict:
    """An account (PRIME), a test key with scope surveys.read, and the rule
    GET /v2/surveys/{id} -> surveys.read."""
    account = grpcurl.call("latchkey.v1.AccountService/CreateAccount", {"name": "Acme Surveys", "plan": "PRIME"})
    assert account.get("id"), account
    created = grpcurl.call(
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
    rule = grpcurl.call(
        "latchkey.v1.RouteService/CreateRule",
        {"method": "GET", "path": "/v2/surveys/{id}", "permission": "surveys.read"},
    )
    assert rule.get("id"), rule
    assert rule.get("method") == "GET" and rule.get("path") == "/v2/surveys/{id}", rule
    assert rule.get("permission") == "surveys.read", rule
    return {
        "account_id": account["id"],
        "key_id": created["key"]["id"],
        "secret": created["secret"],
        "rule_id": rule["id"],
    }


# ---------------------------------------------------------------------------
# Reflection and health


def test_list_and_describe(grpcurl: Grpcurl):
    services = grpcurl.ok("list").stdout.split()
    assert AUTHORIZATION in services, services
    assert "latchkey.v1.RouteService" in services, services

    out = grpcurl.ok("describe", AUTHORIZATION).stdout
    assert "rpc Check" in out, out

    out = grpcurl.ok("describe", "envoy.service.auth.v3.CheckRequest").stdout
    assert "message CheckRequest" in out, out
    assert "attributes" in out, out


def test_health_of_authorization_service(grpcurl: Grpcurl):
    # What the example Envoy config's grpc_health_check asks for.
    status = grpcurl.call("grpc.health.v1.Health/Check", {"service": AUTHORIZATION}, token=None)
    assert status == {"status": "SERVING"}, status


# ---------------------------------------------------------------------------
# Route rules


def test_route_service_requires_admin_token(grpcurl: Grpcurl):
    grpcurl.fails(
        "latchkey.v1.RouteService/CreateRule",
        {"method": "GET", "path": "/v2/surveys/{id}", "permission": "surveys.read"},
        token=None,
        code="Unauthenticated",
    )
    grpcurl.fails("latchkey.v1.RouteService/ListRules", {}, token=None, code="Unauthenticated")


def test_rules_list_and_delete(grpcurl: Grpcurl, principal: dict):
    rules = grpcurl.call("latchkey.v1.RouteService/ListRules", {}).get("rules", [])
    assert [r.get("id") for r in rules] == [principal["rule_id"]], rules

    bearer = {"authorization": f"Bearer {principal['secret']}"}
    assert "okResponse" in ext_check(grpcurl, "/v2/surveys/42", bearer)

    grpcurl.call("latchkey.v1.RouteService/DeleteRule", {"id": principal["rule_id"]})
    assert grpcurl.call("latchkey.v1.RouteService/ListRules", {}).get("rules", []) == []
    assert_denied(
        ext_check(grpcurl, "/v2/surveys/42", bearer), "Forbidden", RPC_PERMISSION_DENIED, "ROUTE_NOT_ALLOWED"
    )


# ---------------------------------------------------------------------------
# Check


def test_allowed_with_bearer(grpcurl: Grpcurl, principal: dict):
    response = ext_check(
        grpcurl,
        "/v2/surveys/42",
        {
            "authorization": f"Bearer {principal['secret']}",
            # Forged by the client: must be overwritten or removed.
            "x-latchkey-account-id": "acct_forged",
            "x-latchkey-admin": "true",
        },
    )
    assert rpc_code(response) == RPC_OK, response
    assert "deniedResponse" not in response, response
    headers = ok_headers(response)
    assert set(PRINCIPAL_HEADERS) <= set(headers), response
    for name in PRINCIPAL_HEADERS:
        assert headers[name]["appendAction"] == "OVERWRITE_IF_EXISTS_OR_ADD", response
    assert headers["x-latchkey-account-id"]["value"] == principal["account_id"], response
    assert headers["x-latchkey-key-id"]["value"] == principal["key_id"], response
    assert headers["x-latchkey-mode"]["value"] == "test", response
    assert headers["x-latchkey-scopes"]["value"] == "surveys.read", response
    assert headers["x-latchkey-plan"]["value"] == "PRIME", response

    removed = response["okResponse"].get("headersToRemove", [])
    assert "x-latchkey-admin" in removed, response
    # Set (overwritten) rather than removed.
    assert "x-latchkey-account-id" not in removed, response

    metadata = response.get("dynamicMetadata", {})
    assert metadata.get("account_id") == principal["account_id"], response
    assert metadata.get("key_id") == principal["key_id"], response


def test_allowed_with_api_key_header(grpcurl: Grpcurl, principal: dict):
    response = ext_check(grpcurl, "/v2/surveys/7", {"x-api-key": principal["secret"]})
    assert rpc_code(response) == RPC_OK, response
    assert ok_headers(response)["x-latchkey-account-id"]["value"] == principal["account_id"], response


def test_query_parameter_is_ignored_by_default(grpcurl: Grpcurl, principal: dict):
    # ext_authz.query_param is unset: a key in the URL is not a credential.
    response = ext_check(grpcurl, f"/v2/surveys/7?api_key={principal['secret']}")
    assert_denied(response, "Unauthorized", RPC_UNAUTHENTICATED, "CREDENTIAL_MISSING")


def test_no_credential(grpcurl: Grpcurl, principal: dict):
    response = ext_check(grpcurl, "/v2/surveys/42")
    body = assert_denied(response, "Unauthorized", RPC_UNAUTHENTICATED, "CREDENTIAL_MISSING")
    assert body["error"] == "unauthorized", body


def test_unknown_key(grpcurl: Grpcurl, principal: dict):
    response = ext_check(grpcurl, "/v2/surveys/42", {"authorization": "Bearer lk_test_sk_" + "A" * 36})
    assert rpc_code(response) == RPC_UNAUTHENTICATED, response
    assert response["deniedResponse"]["status"]["code"] == "Unauthorized", response


def test_permission_denied(grpcurl: Grpcurl, principal: dict):
    grpcurl.call(
        "latchkey.v1.RouteService/CreateRule",
        {"method": "POST", "path": "/v2/surveys/**", "permission": "surveys.write"},
    )
    response = ext_check(
        grpcurl, "/v2/surveys/42/answers", {"authorization": f"Bearer {principal['secret']}"}, method="POST"
    )
    body = assert_denied(response, "Forbidden", RPC_PERMISSION_DENIED, "PERMISSION_DENIED")
    assert body["error"] == "forbidden", body


def test_revoked_key(grpcurl: Grpcurl, principal: dict):
    grpcurl.call("latchkey.v1.KeyService/RevokeKey", {"id": principal["key_id"]})
    response = ext_check(grpcurl, "/v2/surveys/42", {"authorization": f"Bearer {principal['secret']}"})
    assert_denied(response, "Unauthorized", RPC_UNAUTHENTICATED, "KEY_REVOKED")


@pytest.mark.parametrize(
    "path",
    ["/v2/public/../surveys/1", "/v2//surveys/1", "/v2/./surveys/%31", "/v2/surveys/1?expand=answers"],
    ids=["dot-dot", "double-slash", "dot-and-percent", "query"],
)
def test_path_is_normalised(grpcurl: Grpcurl, principal: dict, path: str):
    response = ext_check(grpcurl, path, {"authorization": f"Bearer {principal['secret']}"})
    assert rpc_code(response) == RPC_OK, response
    assert ok_headers(response)["x-latchkey-account-id"]["value"] == principal["account_id"], response


@pytest.mark.parametrize("path", ["/v2/surveys/a%2Fb", "/v2/surveys/a%2fb"])
def test_encoded_slash_is_refused(grpcurl: Grpcurl, principal: dict, path: str):
    response = ext_check(grpcurl, path, {"authorization": f"Bearer {principal['secret']}"})
    body = assert_denied(response, "BadRequest", RPC_INVALID_ARGUMENT, "PATH_INVALID")
    assert body["error"] == "bad_request", body


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v2/admin"), ("POST", "/v2/surveys/1"), ("GET", "/v2/surveys/1/answers")],
    ids=["other-path", "other-method", "deeper-path"],
)
def test_unmatched_route(grpcurl: Grpcurl, principal: dict, method: str, path: str):
    response = ext_check(grpcurl, path, {"authorization": f"Bearer {principal['secret']}"}, method=method)
    assert_denied(response, "Forbidden", RPC_PERMISSION_DENIED, "ROUTE_NOT_ALLOWED")
    # Without a credential too: no rule, no entry.
    assert_denied(ext_check(grpcurl, path, method=method), "Forbidden", RPC_PERMISSION_DENIED, "ROUTE_NOT_ALLOWED")


# ---------------------------------------------------------------------------
# With an [ext_authz] section in the configuration file


CONFIG = """\
[ext_authz]
public_routes = ["GET /v2/status"]
query_param = "api_key"
"""


@pytest.fixture
def configured_grpcurl(latchkey_bin, grpcurl_exe: str, tmp_path):
    """A server started with `--config` (the shared fixture passes none): the
    binary is wrapped by a script that adds the flag to `serve` and execs, so
    signals still reach latchkey itself."""
    config = tmp_path / "latchkey.toml"
    config.write_text(CONFIG)
    wrapper = tmp_path / "latchkey-with-config"
    bin_q, config_q = shlex.quote(str(latchkey_bin)), shlex.quote(str(config))
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = serve ]; then shift; exec {bin_q} serve --config {config_q} "$@"; fi\n'
        f'exec {bin_q} "$@"\n'
    )
    wrapper.chmod(0o755)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    lk = Latchkey(wrapper, data_dir)
    lk.start()
    try:
        yield Grpcurl(grpcurl_exe, lk)
    finally:
        status = lk.stop()
        print(lk.output())
    assert status == 0, f"after SIGTERM the server should exit 0; got {status}\n{lk.output()}"


def test_public_route_needs_no_credential(configured_grpcurl: Grpcurl):
    response = ext_check(configured_grpcurl, "/v2/status", {"x-latchkey-account-id": "acct_forged"})
    assert rpc_code(response) == RPC_OK, response
    ok = response.get("okResponse", {})
    # No principal: nothing is set, and the forged header is removed.
    assert not ok.get("headers"), response
    assert "x-latchkey-account-id" in ok.get("headersToRemove", []), response

    # Only the listed method and path.
    assert_denied(
        ext_check(configured_grpcurl, "/v2/status", method="POST"),
        "Forbidden",
        RPC_PERMISSION_DENIED,
        "ROUTE_NOT_ALLOWED",
    )
    assert_denied(
        ext_check(configured_grpcurl, "/v2/status/x"), "Forbidden", RPC_PERMISSION_DENIED, "ROUTE_NOT_ALLOWED"
    )


def test_query_param_when_configured(configured_grpcurl: Grpcurl):
    grpcurl = configured_grpcurl
    account = grpcurl.call("latchkey.v1.AccountService/CreateAccount", {"name": "Acme", "plan": "PRIME"})
    created = grpcurl.call(
        "latchkey.v1.KeyService/CreateKey",
        {
            "accountId": account["id"],
            "mode": "MODE_TEST",
            "kind": "KEY_KIND_SECRET",
            "name": "reader",
            "scopes": ["surveys.read"],
        },
    )
    grpcurl.call(
        "latchkey.v1.RouteService/CreateRule",
        {"method": "GET", "path": "/v2/surveys/{id}", "permission": "surveys.read"},
    )
    response = ext_check(grpcurl, f"/v2/surveys/7?api_key={created['secret']}")
    assert rpc_code(response) == RPC_OK, response
    assert ok_headers(response)["x-latchkey-account-id"]["value"] == account["id"], response
