"""Signed consent links (issue 12): an integrator signs
`GET /oauth2/consent?client_id=…&redirect_uri=…&state=…&timestamp=…&uid=…&flow_config=…&…&signature=…`
with the client's signing secret, using nothing but `hmac` and `hashlib`
(the seed's algorithm: every parameter but `signature`, sorted by key,
`key=value` joined by `&` with raw values, HMAC-SHA256, lowercase hex).
The signature stands in for the login header: no X-Forwarded-User here.

Also: flow configurations over gRPC (ConsentService), the pages in German
and English, and every bad link answered by a page that names the problem
and never by a redirect.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from conftest import Grpcurl, Latchkey
from test_oauth import REDIRECT_URI, OAuthServer, verifier
from test_signatures import vectors_module

SIGNING = "latchkey.v1.SigningService"
TOKENS = "latchkey.v1.TokenService"
CONSENT = "latchkey.v1.ConsentService"
SCOPES = "surveys.read surveys.write"
TIMEOUT = 15


def iso(t: datetime) -> str:
    """The seed's timestamp form, e.g. 2024-01-15T10:30:00.000Z."""
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def sign_consent_link(base: str, secret: str, params: dict[str, str]) -> str:
    """What the README shows: the link an integrator builds."""
    canonical = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    signature = hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()
    return f"{base}/oauth2/consent?" + urlencode({**params, "signature": signature})


def challenge(code_verifier: str) -> str:
    digest = hashlib.sha256(code_verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Integrator:
    """An account with a signing secret, a client linked to it and a flow
    configuration; makes signed links for `redirect_uri`."""

    def __init__(
        self,
        oauth: OAuthServer,
        redirect_uri: str = REDIRECT_URI,
        flow: dict | None = None,
        url_form: str = "SIGNED_URL_FORM_SEED",
    ):
        self.oauth = oauth
        g = oauth.grpcurl
        created = g.call(
            f"{SIGNING}/CreateSecret",
            {"accountId": oauth.account_id, "mode": "MODE_TEST", "name": "consent links", "urlForm": url_form},
        )
        self.secret_id, self.secret = created["secretId"], created["secret"]
        r = g.call(
            f"{TOKENS}/CreateClient",
            {
                "accountId": oauth.account_id,
                "mode": "MODE_TEST",
                "name": "FeedBackPro",
                "redirectUris": [redirect_uri],
                "grantTypes": ["authorization_code", "refresh_token"],
                "scopes": SCOPES.split(),
                "signingSecretId": self.secret_id,
            },
        )
        assert r["client"].get("signingSecretId") == self.secret_id, r
        self.client_id, self.client_secret = r["client"]["clientId"], r["clientSecret"]
        self.redirect_uri = redirect_uri
        self.flow = g.call(
            f"{CONSENT}/CreateFlowConfig",
            {
                "accountId": oauth.account_id,
                "name": "shop-de",
                "displayName": "Schuhhaus Müller",
                "primaryColor": "#0b6e4f",
                "supportUrl": "https://support.example/hilfe",
                "defaultLanguage": "de",
                **(flow or {}),
            },
        )

    def params(self, code_verifier: str, **over: str) -> dict[str, str]:
        p = {
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "state": "st-42",
            "timestamp": iso(datetime.now(timezone.utc)),
            "uid": "merchant-7",
            "flow_config": "shop-de",
            "scope": SCOPES,
            "code_challenge": challenge(code_verifier),
            "code_challenge_method": "S256",
        }
        p.update(over)
        return {k: v for k, v in p.items() if v is not None}

    def link(self, code_verifier: str, secret: str | None = None, **over: str) -> str:
        return sign_consent_link(self.oauth.base, secret or self.secret, self.params(code_verifier, **over))


@pytest.fixture
def oauth(server: Latchkey, grpcurl: Grpcurl) -> OAuthServer:
    return OAuthServer(server, grpcurl)


def form_fields(page: str) -> dict[str, str]:
    return {
        html.unescape(n): html.unescape(v)
        for n, v in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page)
    }


def get(url: str, lang: str | None = None) -> requests.Response:
    headers = {"Accept-Language": lang} if lang else {}
    return requests.get(url, headers=headers, allow_redirects=False, timeout=TIMEOUT)


def post(oauth: OAuthServer, data: dict[str, str], lang: str = "en") -> requests.Response:
    return requests.post(
        oauth.url("/oauth2/consent"),
        data=data,
        headers={"Accept-Language": lang},
        allow_redirects=False,
        timeout=TIMEOUT,
    )


def assert_page(resp: requests.Response, status: int, *words: str) -> str:
    assert resp.status_code == status, f"{resp.status_code}: {resp.text[:2000]}"
    assert "Location" not in resp.headers, f"a bad link must not redirect: {resp.headers}"
    assert resp.headers.get("Content-Type", "").startswith("text/html"), resp.headers
    assert resp.headers.get("Cache-Control") == "no-store", resp.headers
    text = html.unescape(resp.text)
    for w in words:
        assert w in text, f"{w!r} not on the page:\n{text[:3000]}"
    return text


def test_a_link_signed_with_hmac_and_hashlib_consents_once_and_its_code_works(oauth: OAuthServer):
    it = Integrator(oauth)
    code_verifier = verifier()
    url = it.link(code_verifier)

    # The flow config's default language (German), its name and colour; the signed-in user is `uid`.
    page = get(url)
    text = assert_page(page, 200, "Schuhhaus Müller", "merchant-7", "Erlauben", "Ablehnen", "Testmodus")
    assert '<html lang="de">' in page.text
    assert "--primary: #0b6e4f" in page.text
    assert "https://support.example/hilfe" in text
    # English when the browser asks for it.
    assert_page(get(url, "en-GB,en;q=0.9"), 200, "Allow", "Deny", "merchant-7")

    fields = form_fields(page.text)
    assert set(fields) == {"link", "csrf_token"}, fields
    posted = post(oauth, {**fields, "decision": "allow"})
    assert posted.status_code == 302, f"{posted.status_code}: {posted.text[:2000]}"
    location = posted.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    got = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert got.get("state") == "st-42" and got.get("code"), got

    tokens = oauth.token(
        {
            "grant_type": "authorization_code",
            "code": got["code"],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": code_verifier,
        },
        auth=(it.client_id, it.client_secret),
    )
    assert tokens.status_code == 200, tokens.text
    oauth.verify(tokens.json()["access_token"], scopes=SCOPES.split(), sub="merchant-7", client_id=it.client_id)

    # The same link again: "already used", whether opened or posted; no redirect.
    assert_page(get(url, "en"), 410, "already used")
    assert_page(get(url, "de"), 410, "bereits verwendet")
    again = post(oauth, {**fields, "decision": "allow"})
    assert_page(again, 410, "already used")


def test_a_strict_form_secret_signs_the_absolute_link_and_its_code_works(oauth: OAuthServer):
    """A strict-form secret (`LATCHKEY-URL-V2`) signs scheme, host and path
    too: the link is signed as `<issuer>/oauth2/consent?…`, the issuer
    being the base the OAuth2 metadata names. Signed here with the stdlib
    reference of the strict form (tests/vectors/signatures.py)."""
    vectors = vectors_module()
    it = Integrator(oauth, url_form="SIGNED_URL_FORM_STRICT")
    code_verifier = verifier()

    def strict_link(base: str, path: str = "/oauth2/consent", **over: str) -> str:
        params = list(it.params(code_verifier, **over).items())
        canonical = vectors.strict_canonical(base + path, params)
        signature = hmac.new(it.secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()
        query = "&".join(vectors.pct(k) + "=" + vectors.pct(v) for k, v in params)
        return oauth.url("/oauth2/consent?") + query + "&signature=" + signature

    issuer = oauth.issuer
    # `&` and `=` in a value: the strict form signs them unambiguously.
    url = strict_link(issuer, state="st-42&next=/home")

    # Signed for another host (the same server under another name), another
    # path, changed after signing, or in the seed form: refused, no redirect.
    other_host = issuer.replace("127.0.0.1", "localhost")
    assert other_host != issuer, issuer
    assert_page(get(strict_link(other_host), "en"), 403, "changed after it was signed")
    assert_page(get(strict_link(issuer, "/oauth2/authorize"), "en"), 403, "changed after it was signed")
    assert_page(get(url.replace("uid=merchant-7", "uid=admin"), "en"), 403, "changed after it was signed")
    assert_page(get(it.link(code_verifier), "en"), 403, "changed after it was signed")

    page = get(url, "en")
    assert_page(page, 200, "Allow", "merchant-7")
    posted = post(oauth, {**form_fields(page.text), "decision": "allow"})
    assert posted.status_code == 302, f"{posted.status_code}: {posted.text[:2000]}"
    got = {k: v[0] for k, v in parse_qs(urlsplit(posted.headers["Location"]).query).items()}
    assert got.get("state") == "st-42&next=/home" and got.get("code"), got
    tokens = oauth.token(
        {
            "grant_type": "authorization_code",
            "code": got["code"],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": code_verifier,
        },
        auth=(it.client_id, it.client_secret),
    )
    assert tokens.status_code == 200, tokens.text
    oauth.verify(tokens.json()["access_token"], scopes=SCOPES.split(), sub="merchant-7", client_id=it.client_id)
    assert_page(get(url, "en"), 410, "already used")


def test_deny_on_a_signed_link_redirects_with_access_denied(oauth: OAuthServer):
    it = Integrator(oauth)
    page = get(it.link(verifier()), "en")
    assert_page(page, 200, "Deny")
    fields = form_fields(page.text)
    posted = post(oauth, {**fields, "decision": "deny"})
    assert posted.status_code == 302, posted.text
    got = parse_qs(urlsplit(posted.headers["Location"]).query)
    assert got["error"] == ["access_denied"] and got["state"] == ["st-42"] and "code" not in got, got


def test_the_signed_link_form_keeps_its_csrf_protection(oauth: OAuthServer):
    it = Integrator(oauth)
    page = get(it.link(verifier()), "en")
    fields = form_fields(page.text)
    for bad in ("", "1.x", fields["csrf_token"] + "x"):
        posted = post(oauth, {"link": fields["link"], "csrf_token": bad, "decision": "allow"})
        assert_page(posted, 403, "expired or did not come from this page")
    # The refused posts used nothing up.
    assert_page(get(it.link(verifier()), "en"), 200, "Allow")


def test_tampered_expired_unsigned_and_foreign_links_get_a_page_not_a_redirect(oauth: OAuthServer):
    it = Integrator(oauth)
    v = verifier()
    url = it.link(v)

    # Tampered after signing: another user, wider scopes, another registered-looking URI.
    for name, value in [("uid", "admin"), ("scope", "surveys.read surveys.write admin.all"), ("state", "x")]:
        tampered = re.sub(rf"([?&]{name}=)[^&]*", lambda m: m.group(1) + requests.utils.quote(value), url)
        assert tampered != url
        assert_page(get(tampered, "en"), 403, "changed after it was signed")
    assert_page(get(url.replace("shop-de", "shop-at"), "de"), 403, "verändert")

    # Signed with another secret.
    assert_page(get(it.link(v, secret="whsec_not-the-secret"), "de-CH"), 403, "verändert")
    # Unsigned.
    unsigned = oauth.url("/oauth2/consent?") + urlencode(it.params(v))
    assert_page(get(unsigned, "en"), 400, "not signed")
    # Older than 30 days, and from the future.
    old = iso(datetime.now(timezone.utc) - timedelta(days=31))
    assert_page(get(it.link(v, timestamp=old), "en"), 410, "expired")
    soon = iso(datetime.now(timezone.utc) + timedelta(hours=2))
    assert_page(get(it.link(v, timestamp=soon), "en"), 403, "future")
    # A bad timestamp, a missing uid: named.
    assert_page(get(it.link(v, timestamp="yesterday"), "en"), 403, "timestamp")
    assert_page(get(it.link(v, uid=None), "en"), 400, "uid")
    # An unregistered redirect URI, even correctly signed, is never redirected to.
    assert_page(get(it.link(v, redirect_uri="https://evil.example/cb"), "en"), 400, "redirect_uri")
    # An unknown flow configuration.
    assert_page(get(it.link(v, flow_config="nope"), "en"), 400, "nope", "flow_config")
    # A parameter given twice.
    assert_page(get(url + "&uid=eve", "en"), 400, "uid", "more than once")
    # A client without a signing secret cannot be started by a link.
    plain_id, _ = oauth.create_client(redirect_uris=[REDIRECT_URI])
    assert_page(get(it.link(v, client_id=plain_id), "en"), 400, "no signing secret")
    assert_page(get(it.link(v, client_id="cli_nope"), "en"), 400, "Unknown client")


def test_links_survive_a_rotation_of_their_secret_for_their_validity(oauth: OAuthServer):
    it = Integrator(oauth)
    v = verifier()
    before = it.link(v)
    rotated = oauth.grpcurl.call(f"{SIGNING}/RotateSecret", {"secretId": it.secret_id, "overlapSeconds": 0})
    new = rotated["secret"]
    assert new != it.secret
    # Signed before the rotation with the old version: still good.
    assert_page(get(before, "en"), 200, "Allow")
    # The old version cannot sign new links; the new one can.
    later = iso(datetime.now(timezone.utc) + timedelta(seconds=2))
    assert_page(get(it.link(v, timestamp=later), "en"), 403, "changed after it was signed")
    assert_page(get(it.link(v, secret=new), "en"), 200, "Allow")
    # Revoked: nothing verifies.
    oauth.grpcurl.call(f"{SIGNING}/RevokeSecret", {"secretId": it.secret_id})
    assert_page(get(it.link(v, secret=new), "en"), 403, "revoked")


def test_flow_configs_are_managed_over_grpc_and_checked(oauth: OAuthServer, grpcurl: Grpcurl):
    it = Integrator(oauth, flow={"logoUrl": "https://cdn.example/logo.png"})
    fc = it.flow
    assert fc["id"].startswith("fc_") and fc["defaultLanguage"] == "de", fc
    assert grpcurl.call(f"{CONSENT}/GetFlowConfig", {"id": fc["id"]})["name"] == "shop-de"
    listed = grpcurl.call(f"{CONSENT}/ListFlowConfigs", {"accountId": oauth.account_id})
    assert [f["id"] for f in listed["flowConfigs"]] == [fc["id"]], listed

    # The logo's host, and only it, may serve images to the page.
    page = get(it.link(verifier()), "en")
    csp = page.headers["Content-Security-Policy"]
    assert "img-src https://cdn.example" in csp and "default-src 'none'" in csp, csp
    assert 'src="https://cdn.example/logo.png"' in html.unescape(page.text)

    updated = grpcurl.call(
        f"{CONSENT}/UpdateFlowConfig", {"id": fc["id"], "displayName": "Schuhhaus Meyer", "logoUrl": ""}
    )
    assert updated["displayName"] == "Schuhhaus Meyer" and not updated.get("logoUrl"), updated
    assert updated["primaryColor"] == "#0b6e4f", "an absent field is kept"
    page = get(it.link(verifier()), "en")
    assert "img-src" not in page.headers["Content-Security-Policy"]

    for field, value, named in [
        ("logoUrl", "http://cdn.example/logo.png", "logo_url"),
        ("logoUrl", "javascript:alert(1)", "logo_url"),
        ("primaryColor", "red;}", "primary_color"),
        ("supportUrl", "ftp://x.example", "support_url"),
        ("defaultLanguage", "fr", "default_language"),
        ("displayName", "", "display_name"),
    ]:
        _, message = grpcurl.fails(f"{CONSENT}/UpdateFlowConfig", {"id": fc["id"], field: value}, code="InvalidArgument")
        assert named in message, message
    _, message = grpcurl.fails(
        f"{CONSENT}/CreateFlowConfig",
        {"accountId": oauth.account_id, "name": "shop-de", "displayName": "again"},
        code="InvalidArgument",
    )
    assert "name" in message, message
    _, message = grpcurl.fails(
        f"{CONSENT}/CreateFlowConfig",
        {"accountId": oauth.account_id, "name": "a b", "displayName": "x"},
        code="InvalidArgument",
    )
    assert "name" in message, message

    grpcurl.call(f"{CONSENT}/DeleteFlowConfig", {"id": fc["id"]})
    grpcurl.fails(f"{CONSENT}/GetFlowConfig", {"id": fc["id"]}, code="NotFound")
    assert_page(get(it.link(verifier()), "en"), 400, "shop-de")


def test_the_client_signing_secret_must_be_the_accounts_own(oauth: OAuthServer, grpcurl: Grpcurl):
    other = grpcurl.call("latchkey.v1.AccountService/CreateAccount", {"name": "Other", "plan": "PRIME"})
    foreign = grpcurl.call(f"{SIGNING}/CreateSecret", {"accountId": other["id"], "mode": "MODE_TEST", "name": "x"})
    base = {
        "accountId": oauth.account_id,
        "mode": "MODE_TEST",
        "name": "App",
        "redirectUris": [REDIRECT_URI],
        "grantTypes": ["authorization_code"],
        "scopes": ["surveys.read"],
    }
    before = grpcurl.call(f"{TOKENS}/ListClients", {"accountId": oauth.account_id}).get("clients", [])
    for bad in (foreign["secretId"], "sig_nope"):
        _, message = grpcurl.fails(f"{TOKENS}/CreateClient", {**base, "signingSecretId": bad}, code="InvalidArgument")
        assert "signing_secret_id" in message, message
    after = grpcurl.call(f"{TOKENS}/ListClients", {"accountId": oauth.account_id}).get("clients", [])
    assert len(after) == len(before), "a refused CreateClient changes nothing"

    # UpdateClient links and unlinks.
    client_id, _ = oauth.create_client()
    own = grpcurl.call(f"{SIGNING}/CreateSecret", {"accountId": oauth.account_id, "mode": "MODE_TEST", "name": "y"})
    linked = grpcurl.call(f"{TOKENS}/UpdateClient", {"clientId": client_id, "signingSecretId": own["secretId"]})
    assert linked["signingSecretId"] == own["secretId"], linked
    assert grpcurl.call(f"{TOKENS}/GetClient", {"clientId": client_id})["signingSecretId"] == own["secretId"]
    grpcurl.fails(f"{TOKENS}/UpdateClient", {"clientId": client_id, "signingSecretId": foreign["secretId"]}, code="InvalidArgument")
    unlinked = grpcurl.call(f"{TOKENS}/UpdateClient", {"clientId": client_id, "signingSecretId": ""})
    assert not unlinked.get("signingSecretId"), unlinked
