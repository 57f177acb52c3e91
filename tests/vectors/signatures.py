#!/usr/bin/env python3
"""Known-answer vectors for Latchkey's signature formats, computed from the
written formats (README "Signatures") with nothing but Python's `hmac` and
`hashlib`, independently of the Rust code. The Rust tests
(tests/it/signing.rs) check Latchkey against `signatures.json`; the pytest
suite checks that this script still produces that file.

    python3 tests/vectors/signatures.py > tests/vectors/signatures.json
"""

import hashlib
import hmac
import json


def mac(key: str, message: bytes) -> str:
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def pct(s: str) -> str:
    """Percent-encodes all but RFC 3986 unreserved characters (by hand, so
    the vectors depend on no URL library)."""
    safe = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    return "".join(chr(b) if b in safe else "%%%02X" % b for b in s.encode())


def webhook(key_list, t, body):
    header = "t=%d" % t + "".join(
        ",v1=" + mac(k, b"%d." % t + body) for k in key_list
    )
    return {"keys": key_list, "t": t, "body": body.decode(), "header": header}


def signed_url(key, base, params, timestamp, timestamp_millis):
    """`params` as the caller passes them (already in their URL); Latchkey
    adds `timestamp` and `signature`."""
    query = "&".join(pct(k) + "=" + pct(v) for k, v in params)
    unsigned = base + "?" + query
    all_params = dict(params)
    all_params["timestamp"] = timestamp
    canonical = "&".join(k + "=" + all_params[k] for k in sorted(all_params))
    signature = mac(key, canonical.encode())
    signed = unsigned + "&timestamp=" + pct(timestamp) + "&signature=" + signature
    return {
        "key": key,
        "unsigned_url": unsigned,
        "now_millis": timestamp_millis,
        "canonical": canonical,
        "signature": signature,
        "signed_url": signed,
    }


def signed_request(key, t, method, path, query_pairs, body):
    query = "&".join(k + "=" + v for k, v in query_pairs)
    path_and_query = path + ("?" + query if query else "")
    sorted_query = "&".join(k + "=" + v for k, v in sorted(query_pairs))
    canonical = "\n".join(
        [
            "LATCHKEY-HMAC-SHA256",
            method.upper(),
            path,
            sorted_query,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    header = "t=%d,v1=%s" % (t, mac(key, b"%d." % t + canonical.encode()))
    return {
        "key": key,
        "t": t,
        "method": method,
        "path_and_query": path_and_query,
        "body": body.decode(),
        "canonical": canonical,
        "header": header,
    }


def unpct(s: str) -> bytes:
    """Percent-decoding by hand (`+` stays `+`: this is for path segments)."""
    out, i, raw = bytearray(), 0, s.encode()
    while i < len(raw):
        if raw[i] == ord("%"):
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


def pct_bytes(b: bytes) -> str:
    safe = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    return "".join(chr(c) if c in safe else "%%%02X" % c for c in b)


def strict_canonical(base, params):
    """The strict form (README "Signed URLs, strict form"): scheme, host,
    path and query, every component decoded and re-encoded."""
    scheme, rest = base.split("://", 1)
    scheme = scheme.lower()
    default_port = {"https": 443, "http": 80}[scheme]
    i = rest.find("/")
    authority, path = (rest, "") if i < 0 else (rest[:i], rest[i:])
    if authority.startswith("["):
        inside, _, after = authority[1:].partition("]")
        host, port = "[" + inside.lower() + "]", (after[1:] if after else None)
    elif ":" in authority:
        host, port = authority.rsplit(":", 1)
        host = host.lower()
    else:
        host, port = authority.lower(), None
    if port is not None and int(port) != default_port:
        host += ":%d" % int(port)
    path = "/".join(pct_bytes(unpct(seg)) for seg in path.split("/")) if path else "/"
    pairs = sorted((pct(k), pct(v)) for k, v in params if k != "signature")
    query = "&".join(k + "=" + v for k, v in pairs)
    return "\n".join(["LATCHKEY-URL-V2", scheme, host, path, query])


def signed_url_strict(key, base, params, timestamp, timestamp_millis):
    query = "&".join(pct(k) + "=" + pct(v) for k, v in params)
    unsigned = base + "?" + query
    canonical = strict_canonical(base, list(params) + [("timestamp", timestamp)])
    signature = mac(key, canonical.encode())
    signed = unsigned + "&timestamp=" + pct(timestamp) + "&signature=" + signature
    return {
        "key": key,
        "unsigned_url": unsigned,
        "now_millis": timestamp_millis,
        "canonical": canonical,
        "signature": signature,
        "signed_url": signed,
    }


K1 = "whsec_7cS0dY1k3vJbq2q6m0n1nE3d0mJ5m8Q0k4uX2z9yT1w"
K2 = "whsec_Zr1cQk0bW2f3n4H5j6K7l8M9n0P1q2R3s4T5u6V7w8X"

VECTORS = {
    "webhook": [
        webhook([K1], 1700000000, b'{"event":"key.rotated","id":"evt_1"}'),
        # During a rotation: one v1 per active version, newest first.
        webhook([K2, K1], 1700000300, b'{"event":"key.created"}'),
        webhook([K1], 1, b""),
    ],
    "signed_url": [
        signed_url(
            K1,
            "https://consent.example.com/flow",
            [
                ("client_id", "cl_123"),
                # A value whose decoding holds `&` or `=` (a redirect URI
                # with a query) is refused in this form: it could move bytes
                # between parameters and still verify.
                ("redirect_uri", "https://app.example.com/callback"),
                ("state", "a b+c"),
                ("uid", "müller@example.com"),
                ("flow_config", "brand-blue"),
            ],
            "2024-01-15T10:30:00.000Z",
            1705314600000,
        ),
        signed_url(
            K2,
            "/consent",
            [("state", "s1"), ("client_id", "c")],
            "2026-11-26T06:07:08.009Z",
            1795673228009,
        ),
    ],
    "signed_url_strict": [
        signed_url_strict(
            K1,
            "https://consent.example.com/flow",
            [
                ("client_id", "cl_123"),
                # What the seed form must refuse is plain data here.
                ("redirect_uri", "https://app.example.com/callback?x=1&y=2"),
                ("state", "a b+c=d"),
                ("uid", "müller@example.com"),
            ],
            "2024-01-15T10:30:00.000Z",
            1705314600000,
        ),
        # Scheme and host in any case, a default port, an escaped `/` and
        # `~` in the path: all canonicalised.
        signed_url_strict(
            K2,
            "HTTPS://Consent.Example.COM:443/flow/a%2Fb/%7euser",
            [("state", "s1")],
            "2026-11-26T06:07:08.009Z",
            1795673228009,
        ),
        signed_url_strict(
            K1,
            "http://127.0.0.1:8080",
            [("b", "2"), ("a", "1")],
            "2024-01-15T10:30:00.000Z",
            1705314600000,
        ),
    ],
    "signed_request": [
        signed_request(
            K1,
            1700000000,
            "post",
            "/v2/responses",
            [("page", "2"), ("filter", "a%2Fb"), ("a_b", "1"), ("a", "")],
            b'{"rating":5}',
        ),
        signed_request(K2, 1700000001, "GET", "/v2/surveys", [], b""),
    ],
}

if __name__ == "__main__":
    print(json.dumps(VECTORS, indent=2, ensure_ascii=False))
