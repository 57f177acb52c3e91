"""Latchkey from the outside: the built binary, driven by grpcurl through
server reflection alone (no .proto files), as a platform team would use it.

Field names are protobuf JSON (lowerCamelCase); enums are their names;
int64 values come back as strings; false, zero and empty values are omitted.
"""

from __future__ import annotations

import h2c
import pytest
from conftest import Grpcurl, Latchkey

LATCHKEY_SERVICES = [
    "latchkey.v1.AccountService",
    "latchkey.v1.KeyService",
    "latchkey.v1.CheckService",
]
HEALTH = "grpc.health.v1.Health"
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
REFLECTION_V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"


def check(grpcurl: Grpcurl, credential: str, permission: str) -> dict:
    # CheckService needs no admin token (unless check.require_auth is set).
    return grpcurl.call(
        "latchkey.v1.CheckService/Check",
        {"credential": credential, "permission": permission},
        token=None,
    )


def create_account(grpcurl: Grpcurl, name: str = "Acme Feedback", plan: str = "PRIME") -> dict:
    account = grpcurl.call("latchkey.v1.AccountService/CreateAccount", {"name": name, "plan": plan})
    assert account.get("id"), account
    return account


# ---------------------------------------------------------------------------
# Reflection and health


def test_list_shows_services(grpcurl: Grpcurl):
    services = grpcurl.ok("list").stdout.split()
    for name in [*LATCHKEY_SERVICES, HEALTH]:
        assert name in services, f"{name} missing from `grpcurl list`: {services}"
    # grpcurl 1.8.6 asks grpc.reflection.v1alpha (later versions try v1 first);
    # what the list shows of reflection itself depends on which descriptor sets
    # the server registered with which version. Both versions are checked
    # directly in test_reflection_version_is_served.
    assert REFLECTION_V1 in services or REFLECTION_V1ALPHA in services, services


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_version_is_served(server: Latchkey, version: str):
    try:
        services = h2c.list_services(server.grpc_addr, version)
    except h2c.H2cError as e:
        pytest.fail(f"grpc.reflection.{version}.ServerReflection/ServerReflectionInfo: {e}")
    for name in [*LATCHKEY_SERVICES, HEALTH]:
        assert name in services, f"{name} missing from reflection {version} list_services: {services}"


def test_describe(grpcurl: Grpcurl):
    out = grpcurl.ok("describe", "latchkey.v1.KeyService").stdout
    assert "service KeyService" in out, out
    for rpc in ["CreateKey", "GetKey", "ListKeys", "RotateKey", "RevokeKey"]:
        assert f"rpc {rpc}" in out, out

    out = grpcurl.ok("describe", "latchkey.v1.CheckRequest").stdout
    assert "message CheckRequest" in out, out
    for field in ["credential", "permission", "mode", "context"]:
        assert field in out, out


def test_health_serving(grpcurl: Grpcurl):
    assert grpcurl.call("grpc.health.v1.Health/Check", {}, token=None) == {"status": "SERVING"}


# ---------------------------------------------------------------------------
# The walkthrough: account, key, check, rotate, revoke


def test_walkthrough(grpcurl: Grpcurl):
    account = create_account(grpcurl)
    account_id = account["id"]
    assert account.get("name") == "Acme Feedback", account
    assert account.get("plan") == "PRIME", account

    created = grpcurl.call(
        "latchkey.v1.KeyService/CreateKey",
        {
            "accountId": account_id,
            "mode": "MODE_TEST",
            "kind": "KEY_KIND_SECRET",
            "name": "feedback reader",
            "scopes": ["feedback.read"],
        },
    )
    key, secret = created.get("key", {}), created.get("secret", "")
    assert key.get("id"), created
    assert secret.startswith("lk_test_sk_"), created
    assert key.get("accountId") == account_id, created
    assert key.get("mode") == "MODE_TEST", created
    assert key.get("kind") == "KEY_KIND_SECRET", created
    assert key.get("scopes") == ["feedback.read"], created
    masked = key.get("masked", "")
    assert masked.endswith(secret[-4:]), f"masked {masked!r} should end with the secret's last 4 characters"
    assert secret not in masked, f"masked {masked!r} contains the secret"
    assert len(masked) < len(secret), f"masked {masked!r} is not shorter than the secret"

    allowed = check(grpcurl, secret, "feedback.read")
    assert allowed.get("allowed") is True, allowed
    assert allowed.get("reason") == "REASON_ALLOWED", allowed
    assert allowed.get("principal", {}).get("accountId") == account_id, allowed
    assert allowed.get("principal", {}).get("keyId") == key["id"], allowed

    denied = check(grpcurl, secret, "feedback.write")
    assert denied.get("allowed", False) is False, denied
    assert denied.get("reason") == "REASON_PERMISSION_DENIED", denied

    # Rotate with no overlap: the old secret stops at once. int64 in JSON
    # input: the canonical form is a string (a number is accepted too).
    rotated = grpcurl.call("latchkey.v1.KeyService/RotateKey", {"id": key["id"], "overlapSeconds": "0"})
    new_key, new_secret = rotated.get("key", {}), rotated.get("secret", "")
    assert new_key.get("id") and new_key["id"] != key["id"], rotated
    assert new_secret.startswith("lk_test_sk_") and new_secret != secret, rotated
    assert new_key.get("predecessorId") == key["id"], rotated
    assert rotated.get("previous", {}).get("successorId") == new_key["id"], rotated

    old = check(grpcurl, secret, "feedback.read")
    assert old.get("allowed", False) is False, old
    assert old.get("reason") == "REASON_KEY_ROTATED", old

    new = check(grpcurl, new_secret, "feedback.read")
    assert new.get("allowed") is True, new
    assert new.get("reason") == "REASON_ALLOWED", new
    assert new.get("principal", {}).get("keyId") == new_key["id"], new

    revoked_key = grpcurl.call("latchkey.v1.KeyService/RevokeKey", {"id": new_key["id"]})
    assert revoked_key.get("status") == "KEY_STATUS_REVOKED", revoked_key

    revoked = check(grpcurl, new_secret, "feedback.read")
    assert revoked.get("allowed", False) is False, revoked
    assert revoked.get("reason") == "REASON_KEY_REVOKED", revoked


# ---------------------------------------------------------------------------
# Authentication and input validation of the management API


@pytest.mark.parametrize(
    "token",
    [None, "Bearer not-a-latchkey-token", "not-even-bearer"],
    ids=["no-token", "wrong-format-token", "no-bearer-scheme"],
)
def test_management_requires_admin_token(grpcurl: Grpcurl, token):
    grpcurl.fails(
        "latchkey.v1.AccountService/CreateAccount",
        {"name": "Mallory", "plan": "PRIME"},
        token=token,
        code="Unauthenticated",
    )
    grpcurl.fails("latchkey.v1.KeyService/ListKeys", {}, token=token, code="Unauthenticated")


def test_invalid_scope_is_rejected(grpcurl: Grpcurl):
    account = create_account(grpcurl)
    _, message = grpcurl.fails(
        "latchkey.v1.KeyService/CreateKey",
        {
            "accountId": account["id"],
            "mode": "MODE_TEST",
            "kind": "KEY_KIND_SECRET",
            "name": "bad",
            "scopes": ["Not A Scope"],
        },
        code="InvalidArgument",
    )
    assert "scopes" in message, f"the InvalidArgument message should name `scopes`: {message!r}"


# ---------------------------------------------------------------------------
# CheckService/Explain: the decision step by step, through reflection alone

EXPLAIN_STEPS = [
    "failure_budget", "credential", "lookup", "status", "live_mode", "mode", "network",
    "origin", "store", "feed_path", "signature", "operator", "scopes", "plan", "rate_limit",
]


def test_explain_through_reflection(grpcurl: Grpcurl):
    out = grpcurl.ok("describe", "latchkey.v1.CheckService").stdout
    assert "rpc Explain" in out, out
    account = create_account(grpcurl)
    created = grpcurl.call(
        "latchkey.v1.KeyService/CreateKey",
        {"accountId": account["id"], "mode": "MODE_TEST", "kind": "KEY_KIND_SECRET",
         "name": "explained", "scopes": ["feedback.read"], "allowedCidrs": ["203.0.113.0/24"]},
    )
    key, secret = created["key"], created["secret"]
    request = {"credential": secret, "permission": "feedback.read", "context": {"clientIp": "203.0.113.7"}}

    allowed = grpcurl.call("latchkey.v1.CheckService/Explain", {"request": request})
    assert [s["name"] for s in allowed["steps"]] == EXPLAIN_STEPS, allowed
    assert allowed["decision"]["allowed"] is True, allowed
    assert allowed["decision"]["reason"] == "REASON_ALLOWED", allowed
    assert {s["outcome"] for s in allowed["steps"]} <= {"STEP_OUTCOME_PASSED", "STEP_OUTCOME_SKIPPED"}, allowed
    assert secret not in str(allowed), "the credential is shown masked only"
    lookup = next(s for s in allowed["steps"] if s["name"] == "lookup")
    assert key["id"] in lookup["detail"], lookup

    # What if the call came from elsewhere and asked for more?
    denied = grpcurl.call(
        "latchkey.v1.CheckService/Explain",
        {"request": request, "whatIf": {"clientIp": "198.51.100.1"}},
    )
    assert denied["decision"].get("allowed", False) is False, denied
    assert denied["decision"]["reason"] == "REASON_IP_NOT_ALLOWED", denied
    failed = [s for s in denied["steps"] if s["outcome"] == "STEP_OUTCOME_FAILED"]
    assert [s["name"] for s in failed] == ["network"], denied
    assert "198.51.100.1" in failed[0]["detail"], failed

    # Explain consumed and cached nothing: Check still allows from 203.0.113.7.
    assert check(grpcurl, secret, "feedback.read").get("allowed") is not True  # no clientIp: denied
    ok = grpcurl.call("latchkey.v1.CheckService/Check", dict(request), token=None)
    assert ok.get("allowed") is True, ok

    # Operators only, and the field is named on bad input.
    grpcurl.fails("latchkey.v1.CheckService/Explain", {"request": request}, token=None, code="Unauthenticated")
    _, message = grpcurl.fails(
        "latchkey.v1.CheckService/Explain",
        {"request": request, "whatIf": {"permissions": ["Not A Permission"]}},
        code="InvalidArgument",
    )
    assert "what_if.permissions" in message, message


# ---------------------------------------------------------------------------
# Shutdown (the server fixture checks this after every test as well)


def test_sigterm_exits_cleanly(server: Latchkey, grpcurl: Grpcurl):
    grpcurl.call("grpc.health.v1.Health/Check", {}, token=None)
    status = server.stop()
    assert status == 0, (
        f"after SIGTERM the server should exit 0 within 15s; got "
        f"{'no exit (killed)' if status is None else status}\n{server.output()}"
    )
