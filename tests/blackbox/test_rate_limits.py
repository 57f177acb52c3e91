"""Rate limits from the outside: the built binary with a configuration
file, driven by grpcurl through server reflection alone. Envoy's rate-limit
service is asked as Envoy's filter would (grpcurl speaks the envoy-types
protobuf here, not ours), and a key's limit shows on Check.
"""

from __future__ import annotations

import shlex

import pytest
from conftest import Grpcurl, Latchkey

RLS = "envoy.service.ratelimit.v3.RateLimitService"

# The descriptor shape of the issue, verbatim.
CONFIG = """\
[rate_limits]
default = "1200/min"

[[rate_limits.descriptors]]
domain = "api"                                   # Envoy's rate-limit domain
entries = [{ key = "remote_address" }, { key = "path", value = "/login" }]  # no value: counted per distinct value
requests = 3
per_seconds = 60
"""


@pytest.fixture
def limited(latchkey_bin, grpcurl_exe: str, tmp_path):
    """A server started with `--config` (the wrapper adds the flag to `serve`)."""
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


def login(address: str) -> dict:
    return {
        "domain": "api",
        "descriptors": [
            {"entries": [{"key": "remote_address", "value": address}, {"key": "path", "value": "/login"}]}
        ],
    }


def test_reflection_lists_the_rate_limit_service(grpcurl: Grpcurl):
    assert RLS in grpcurl.ok("list").stdout.split()
    described = grpcurl.ok("describe", f"{RLS}.ShouldRateLimit").stdout
    assert "RateLimitRequest" in described and "RateLimitResponse" in described, described


def test_should_rate_limit_counts_per_address(limited: Grpcurl):
    for remaining in [2, 1]:
        r = limited.call(f"{RLS}/ShouldRateLimit", login("10.0.0.7"), token=None)
        assert r["overallCode"] == "OK", r
        assert r["statuses"][0]["limitRemaining"] == remaining, r
        assert r["statuses"][0]["currentLimit"] == {"requestsPerUnit": 3, "unit": "MINUTE"}, r
    r = limited.call(f"{RLS}/ShouldRateLimit", login("10.0.0.7"), token=None)
    assert r["overallCode"] == "OK" and "limitRemaining" not in r["statuses"][0], r
    r = limited.call(f"{RLS}/ShouldRateLimit", login("10.0.0.7"), token=None)
    assert r["overallCode"] == "OVER_LIMIT", r
    headers = {h["key"]: h["value"] for h in r["responseHeadersToAdd"]}
    assert headers["retry-after"] == "20", headers
    assert headers["x-ratelimit-limit"] == "3", headers
    assert headers["ratelimit-policy"] == '"descriptor";q=3;w=60', headers
    # Another address is counted on its own; another path not at all.
    assert limited.call(f"{RLS}/ShouldRateLimit", login("10.0.0.8"), token=None)["overallCode"] == "OK"
    other = login("10.0.0.7")
    other["descriptors"][0]["entries"][1]["value"] = "/search"
    r = limited.call(f"{RLS}/ShouldRateLimit", other, token=None)
    assert r["overallCode"] == "OK" and "responseHeadersToAdd" not in r, r


def test_a_keys_limit_shows_on_check(limited: Grpcurl):
    account = limited.call("latchkey.v1.AccountService/CreateAccount", {"name": "Acme", "plan": "PRIME"})
    created = limited.call(
        "latchkey.v1.KeyService/CreateKey",
        {
            "accountId": account["id"],
            "mode": "MODE_TEST",
            "kind": "KEY_KIND_SECRET",
            "name": "limited",
            "scopes": ["feedback.read"],
            "rateLimit": {"requests": "2", "perSeconds": "3600"},
        },
    )
    assert created["key"]["rateLimit"] == {"requests": "2", "perSeconds": "3600"}, created
    secret = created["secret"]
    ask = {"credential": secret, "permission": "feedback.read"}
    r = limited.call("latchkey.v1.CheckService/Check", ask, token=None)
    assert r["allowed"] is True and r["rateLimit"]["remaining"] == "1", r
    limited.call("latchkey.v1.CheckService/Check", ask, token=None)
    r = limited.call("latchkey.v1.CheckService/Check", ask, token=None)
    assert r["reason"] == "REASON_RATE_LIMITED", r
    assert r["rateLimit"]["limit"] == "2" and int(r["rateLimit"]["retryAfterSeconds"]) > 0, r
    # A bad policy is refused, naming the field.
    _, message = limited.fails(
        "latchkey.v1.KeyService/UpdateKey",
        {"id": created["key"]["id"], "rateLimit": {"requests": "5", "perSeconds": "0"}},
        code="InvalidArgument",
    )
    assert "rate_limit" in message, message


def test_a_limit_that_cannot_be_parsed_stops_the_start(latchkey_bin, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[rate_limits]\ndefault = "lots"\n')
    import subprocess

    r = subprocess.run(
        [str(latchkey_bin), "config", "check", str(config)], capture_output=True, text=True, timeout=30
    )
    assert r.returncode != 0, r
    assert "rate_limits.default" in r.stdout + r.stderr, r
