"""Signatures from the outside: what Latchkey signs must verify with nothing
but Python's standard `hmac` and `hashlib`, and what a stdlib signer makes
must verify in Latchkey (README "Signatures"). Driven by grpcurl through
server reflection, plus plain HTTP for reveal links.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from conftest import Grpcurl, Latchkey

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
SIGNING = "latchkey.v1.SigningService"


def mac(key: str, message: bytes) -> str:
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def new_secret(grpcurl: Grpcurl) -> tuple[str, str, str]:
    account = grpcurl.call("latchkey.v1.AccountService/CreateAccount", {"name": "Indexed PIM", "plan": "PRIME"})
    r = grpcurl.call(
        f"{SIGNING}/CreateSecret",
        {"accountId": account["id"], "mode": "MODE_TEST", "name": "outbound webhooks"},
    )
    assert r["secret"].startswith("whsec_"), r
    return account["id"], r["secretId"], r["secret"]


def verify_webhook_header(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """A receiver written from the README with the standard library only."""
    parts = [p.split("=", 1) for p in header.split(",")]
    t = next(v for k, v in parts if k == "t")
    if abs(time.time() - int(t)) > tolerance:
        return False
    expected = mac(secret, t.encode() + b"." + body)
    return any(hmac.compare_digest(expected, v) for k, v in parts if k == "v1")


def verify_signed_url(secret: str, url: str, max_age_days: int = 30) -> bool:
    """The consent-flow algorithm: all parameters but `signature`, sorted by
    key, `key=value` with raw values, joined by `&`, HMAC-SHA256, hex."""
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True))
    signature = params.pop("signature")
    message = "&".join(f"{k}={params[k]}" for k in sorted(params))
    stamp = datetime.fromisoformat(params["timestamp"].replace("Z", "+00:00"))
    fresh = (datetime.now(timezone.utc) - stamp).total_seconds() <= max_age_days * 86400
    return fresh and hmac.compare_digest(mac(secret, message.encode()), signature)


def test_vectors_file_is_what_the_script_computes():
    r = subprocess.run([sys.executable, str(VECTORS / "signatures.py")], capture_output=True, text=True, check=True)
    assert json.loads(r.stdout) == json.loads((VECTORS / "signatures.json").read_text()), (
        "tests/vectors/signatures.json is stale: regenerate it with tests/vectors/signatures.py"
    )


def test_webhook_signatures_verify_with_stdlib_hmac(grpcurl: Grpcurl, server: Latchkey):
    _, secret_id, secret = new_secret(grpcurl)
    body = b'{"event":"product.updated","id":"p_1","name":"M\xc3\xbcsli"}'
    header = grpcurl.call(f"{SIGNING}/Sign", {"secretId": secret_id, "payload": b64(body)})["header"]
    assert verify_webhook_header(secret, header, body), header
    assert not verify_webhook_header(secret, header, body + b" ")

    # The other way round: a stdlib signer, Latchkey verifying (an inbound callback).
    t = str(int(time.time()))
    mine = f"t={t},v1={mac(secret, t.encode() + b'.' + body)}"
    r = grpcurl.call(
        f"{SIGNING}/VerifyWebhook",
        {"secretId": secret_id, "body": b64(body), "headers": {"X-Webhook-Signature": mine}},
    )
    assert r.get("valid") is True and r["reason"] == "VALID" and r["version"] == "1", r
    stale = str(int(time.time()) - 301)
    replayed = f"t={stale},v1={mac(secret, stale.encode() + b'.' + body)}"
    r = grpcurl.call(f"{SIGNING}/Verify", {"secretId": secret_id, "payload": b64(body), "header": replayed})
    assert not r.get("valid") and r["reason"] == "SIGNATURE_EXPIRED", r

    # No secret reached the server's log.
    assert secret not in server.output(tail=10_000)


def test_signed_urls_verify_with_stdlib_hmac(grpcurl: Grpcurl):
    _, secret_id, secret = new_secret(grpcurl)
    query = urllib.parse.urlencode(
        {"client_id": "cl_42", "redirect_uri": "https://app.example.com/callback", "state": "x y", "uid": "müller"}
    )
    url = grpcurl.call(f"{SIGNING}/SignUrl", {"secretId": secret_id, "url": f"https://consent.example.com/flow?{query}"})[
        "url"
    ]
    assert verify_signed_url(secret, url), url
    assert not verify_signed_url(secret, url.replace("cl_42", "cl_43"))

    # A URL signed by a stdlib signer verifies in Latchkey.
    params = {"client_id": "cl_7", "state": "s", "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")}
    params["signature"] = mac(secret, "&".join(f"{k}={params[k]}" for k in sorted(params)).encode())
    mine = "https://consent.example.com/flow?" + urllib.parse.urlencode(params)
    r = grpcurl.call(f"{SIGNING}/VerifyUrl", {"secretId": secret_id, "url": mine})
    assert r.get("valid") is True, r


def vectors_module():
    """tests/vectors/signatures.py, whose strict canonical form is written
    with the standard library only, independently of the Rust code."""
    spec = importlib.util.spec_from_file_location("signature_vectors", VECTORS / "signatures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_strict_signed_urls_per_secret(grpcurl: Grpcurl):
    vectors = vectors_module()
    account = grpcurl.call("latchkey.v1.AccountService/CreateAccount", {"name": "Strict Links", "plan": "PRIME"})
    r = grpcurl.call(
        f"{SIGNING}/CreateSecret",
        {"accountId": account["id"], "mode": "MODE_TEST", "name": "links", "urlForm": "SIGNED_URL_FORM_STRICT"},
    )
    secret_id, secret = r["secretId"], r["secret"]
    assert r["signingSecret"]["urlForm"] == "SIGNED_URL_FORM_STRICT", r

    # A stdlib signer builds a strict-form URL; Latchkey verifies it.
    base = "https://Files.Example.com/reports/q3%2Fq4.pdf"
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    params = [("user", "u1"), ("next", "/cb?x=1&y=2")]
    canonical = vectors.strict_canonical(base, params + [("timestamp", stamp)])
    query = "&".join(vectors.pct(k) + "=" + vectors.pct(v) for k, v in params + [("timestamp", stamp)])
    mine = f"{base}?{query}&signature={mac(secret, canonical.encode())}"
    r = grpcurl.call(f"{SIGNING}/VerifyUrl", {"secretId": secret_id, "url": mine})
    assert r.get("valid") is True and r["reason"] == "VALID", (r, mine)
    for moved in (mine.replace("Files.Example.com", "evil.example.com"), mine.replace("q3%2Fq4", "q3/q4")):
        r = grpcurl.call(f"{SIGNING}/VerifyUrl", {"secretId": secret_id, "url": moved})
        assert not r.get("valid") and r["reason"] == "SIGNATURE_INVALID", (r, moved)

    # What Latchkey signs in the strict form verifies with the stdlib.
    unsigned = "https://files.example.com/dl?user=u1&next=%2Fcb%3Fx%3D1"
    url = grpcurl.call(f"{SIGNING}/SignUrl", {"secretId": secret_id, "url": unsigned})["url"]
    split = urllib.parse.urlsplit(url)
    pairs = urllib.parse.parse_qsl(split.query, keep_blank_values=True)
    signature = dict(pairs)["signature"]
    expected = mac(secret, vectors.strict_canonical(f"{split.scheme}://{split.netloc}{split.path}", pairs).encode())
    assert hmac.compare_digest(expected, signature), url

    # Switched to the seed form, the strict link is refused, saying why.
    r = grpcurl.call(f"{SIGNING}/UpdateSecret", {"secretId": secret_id, "urlForm": "SIGNED_URL_FORM_SEED"})
    assert r["urlForm"] == "SIGNED_URL_FORM_SEED", r
    r = grpcurl.call(f"{SIGNING}/VerifyUrl", {"secretId": secret_id, "url": mine})
    assert not r.get("valid") and "strict form" in r["message"], r
    _, message = grpcurl.fails(f"{SIGNING}/UpdateSecret", {"secretId": secret_id}, code="InvalidArgument")
    assert message.startswith("url_form"), message


def test_reveal_link_redeems_once_over_http(grpcurl: Grpcurl, server: Latchkey):
    _, secret_id, old = new_secret(grpcurl)
    r = grpcurl.call(f"{SIGNING}/RotateSecret", {"secretId": secret_id, "revealLink": True})
    assert not r.get("secret"), "a reveal link replaces the plaintext"
    link = r["reveal"]
    url = f"http://{server.http_addr}{link['url']}"
    # A GET (what a link scanner does) shows a confirmation page and redeems nothing.
    for _ in range(2):
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200
            assert resp.headers["Cache-Control"] == "no-store"
            assert "whsec_" not in resp.read().decode()
    post = lambda: urllib.request.Request(url, data=b"", method="POST", headers={"Accept": "application/json"})
    with urllib.request.urlopen(post(), timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-store"
        revealed = json.loads(resp.read())
    new = revealed["secret"]
    assert new.startswith("whsec_") and new != old
    try:
        urllib.request.urlopen(post(), timeout=10)
        raise AssertionError("a reveal link must work once")
    except urllib.error.HTTPError as e:
        assert e.code == 404
        assert e.headers["Cache-Control"] == "no-store"
    # During the overlap both versions sign: one v1 each, newest first.
    header = grpcurl.call(f"{SIGNING}/Sign", {"secretId": secret_id, "payload": b64(b"x")})["header"]
    v1s = [v for k, v in (p.split("=", 1) for p in header.split(",")) if k == "v1"]
    t = header.split(",")[0][2:]
    assert v1s == [mac(new, f"{t}.x".encode()), mac(old, f"{t}.x".encode())], header
    code, message = grpcurl.fails(
        "latchkey.v1.RevealService/RevealSecret", {"token": link["token"]}, token=None, code="NotFound"
    )
    assert "reveal link" in message
    log = server.output(tail=10_000)
    for secret in (old, new, link["token"]):
        assert secret not in log, "a secret or reveal token reached the server log"


def test_signed_requests_through_check(grpcurl: Grpcurl):
    account_id, secret_id, secret = new_secret(grpcurl)
    key = grpcurl.call(
        "latchkey.v1.KeyService/CreateKey",
        {"accountId": account_id, "mode": "MODE_TEST", "kind": "KEY_KIND_SECRET", "name": "signed"},
    )
    grpcurl.call(f"{SIGNING}/SetKeySigning", {"keyId": key["key"]["id"], "secretId": secret_id})
    body = b'{"rating":5}'
    body_hash = hashlib.sha256(body).hexdigest()
    t = str(int(time.time()))
    canonical = "\n".join(["LATCHKEY-HMAC-SHA256", "POST", "/v2/responses", "a=1&b=2", body_hash])
    signature = f"t={t},v1={mac(secret, f'{t}.{canonical}'.encode())}"

    def check(headers: dict) -> dict:
        return grpcurl.call(
            "latchkey.v1.CheckService/Check",
            {
                "credential": key["secret"],
                "context": {"method": "POST", "path": "/v2/responses?b=2&a=1", "bodySha256": body_hash, "headers": headers},
            },
            token=None,
        )

    assert check({"x-latchkey-signature": signature}).get("allowed") is True
    assert check({})["reason"] == "REASON_SIGNATURE_MISSING"
    forged = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    assert check({"x-latchkey-signature": forged})["reason"] == "REASON_SIGNATURE_INVALID"
