"""OAuth2 and JWT access tokens from the outside, checked by clients other
people wrote: PyJWT (`PyJWKClient` against /.well-known/jwks.json) verifies
every token Latchkey issues, and authlib's `OAuth2Session` (on requests)
drives the grants, as an outside developer's code would.

The server is a fresh `latchkey serve` per test (conftest.py); the admin side
(accounts, OAuth2 clients, signing-key rotation, revocation, Check) is driven
with grpcurl through reflection, the public side over plain HTTP on
`server.http_addr`. The resource owner on /oauth2/authorize comes from the
trusted `X-Forwarded-User` header, as oauth2-proxy sets it.

Standards: RFC 6749 (OAuth 2.0), 6750, 7009 (revocation), 7517 (JWK),
7519 (JWT), 7636 (PKCE), 7662 (introspection), 8414 (metadata), and
RFC 9068 §2.2 for the claims of an access token.
"""

from __future__ import annotations

import json
import secrets
import time
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urljoin, urlparse

import jwt
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from conftest import Grpcurl, Latchkey

AUDIENCE = "latchkey"  # tokens.audience, default
ACCESS_TTL = 3600  # access tokens live 1 hour by default
USER_HEADER = "X-Forwarded-User"
REDIRECT_URI = "https://client.example/callback"
OTHER_REDIRECT_URI = "https://client.example/other-callback"
CLIENT_NAME = "Survey Dashboard"
CLIENT_SCOPES = ["surveys.read", "surveys.write"]
ALL_GRANTS = ["client_credentials", "authorization_code", "refresh_token"]
HTTP_TIMEOUT = 15
# Members of a private JWK (RFC 7518 §6.2.2, §6.3.2; RFC 8037 §2): never in a JWKS.
PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
TOKEN_CLAIMS = ["iss", "aud", "sub", "scope", "exp", "iat", "jti"]


# ---------------------------------------------------------------------------
# Describing HTTP exchanges on failure (secrets in requests are masked)


def describe(resp: requests.Response) -> str:
    req = resp.request
    headers = {k: ("<redacted>" if k.lower() in ("authorization", "cookie") else v) for k, v in req.headers.items()}
    body = req.body
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if body:
        fields = parse_qs(body, keep_blank_values=True)
        for secret in ("client_secret", "code_verifier", "refresh_token"):
            if secret in fields:
                fields[secret] = ["<redacted>"]
        body = urlencode(fields, doseq=True)
    text = resp.text
    if len(text) > 3000:
        text = text[:3000] + "...(cut)"
    chain = "".join(f"(after redirect: {r.status_code} {r.url})\n" for r in resp.history)
    return (
        f"{chain}> {req.method} {req.url}\n"
        f"> headers: {headers}\n"
        f"> body: {body or ''}\n"
        f"< {resp.status_code} {resp.reason}\n"
        f"< headers: {dict(resp.headers)}\n"
        f"< body: {text}"
    )


def json_body(resp: requests.Response) -> dict:
    try:
        body = resp.json()
    except ValueError:
        pytest.fail(f"expected a JSON body:\n{describe(resp)}")
    assert isinstance(body, dict), f"expected a JSON object:\n{describe(resp)}"
    return body


def assert_no_store(resp: requests.Response) -> None:
    """RFC 6749 §5.1: token responses carry `Cache-Control: no-store`."""
    directives = [d.strip().lower() for d in resp.headers.get("Cache-Control", "").split(",")]
    assert "no-store" in directives, f"token response without Cache-Control: no-store:\n{describe(resp)}"


def assert_token_error(resp: requests.Response, status: int, error: str) -> dict:
    """An RFC 6749 §5.2 error: this status, a JSON object whose `error` is
    this code, Cache-Control: no-store."""
    assert resp.status_code == status and resp.headers.get("Content-Type", "").startswith("application/json"), (
        f"expected {status} application/json with error={error}:\n{describe(resp)}"
    )
    body = json_body(resp)
    assert body.get("error") == error, f"expected error={error}:\n{describe(resp)}"
    if "error_description" in body:
        assert isinstance(body["error_description"], str), describe(resp)
    assert_no_store(resp)
    return body


def unverified(token: str) -> str:
    """A token's header and claims, for failure messages (no signature check)."""
    try:
        return (
            f"header={jwt.get_unverified_header(token)} claims={jwt.decode(token, options={'verify_signature': False})}"
        )
    except jwt.PyJWTError as e:
        return f"(not a decodable JWT: {e}) {token[:80]}..."


# ---------------------------------------------------------------------------
# The consent page


class Page(HTMLParser):
    """The forms of an HTML page (their inputs and submit buttons) and its
    visible text."""

    def __init__(self, source: str):
        super().__init__(convert_charrefs=True)
        self.forms: list[dict] = []
        self.text_parts: list[str] = []
        self._form: dict | None = None
        self._skip = 0
        self.feed(source)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = {k.lower(): (v if v is not None else "") for k, v in attrs}
        if tag in ("script", "style", "title"):
            self._skip += 1
        elif tag == "form":
            self._form = {"attrs": a, "inputs": [], "buttons": []}
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None:
            kind = a.get("type", "text").lower()
            (self._form["buttons"] if kind in ("submit", "image") else self._form["inputs"]).append(a)
        elif tag == "button" and self._form is not None:
            if a.get("type", "submit").lower() == "submit":
                self._form["buttons"].append(a)

    def handle_endtag(self, tag):
        if tag in ("script", "style", "title"):
            self._skip = max(0, self._skip - 1)
        elif tag == "form":
            self._form = None

    def handle_data(self, data):
        if not self._skip:
            self.text_parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.text_parts).split())


def hidden_inputs(form: dict) -> dict[str, str]:
    out: dict[str, str] = {}
    for i in form["inputs"]:
        if i.get("type", "").lower() == "hidden" and i.get("name"):
            assert i["name"] not in out, f"hidden input {i['name']!r} appears twice: {form}"
            out[i["name"]] = i.get("value", "")
    return out


def consent_form(resp: requests.Response) -> dict:
    """The one POST form of a consent page; fails with the page otherwise."""
    assert resp.status_code == 200, f"expected the consent page (200):\n{describe(resp)}"
    assert resp.headers.get("Content-Type", "").startswith("text/html"), f"consent page is not HTML:\n{describe(resp)}"
    page = Page(resp.text)
    forms = [f for f in page.forms if f["attrs"].get("method", "get").lower() == "post"]
    assert len(forms) == 1, f'expected one <form method="post">, found {page.forms}:\n{describe(resp)}'
    form = forms[0]
    form["page"] = page
    form["url"] = urljoin(resp.url, form["attrs"].get("action", ""))
    return form


def submit(
    browser: requests.Session, form: dict, decision: str, user: str | None = "alice", **changes
) -> requests.Response:
    """POSTs a consent form back as a browser would: its hidden inputs plus
    the chosen button. `changes` replaces inputs (None drops one)."""
    data = hidden_inputs(form)
    data["decision"] = decision
    for k, v in changes.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    headers = {USER_HEADER: user} if user is not None else {}
    return browser.post(form["url"], data=data, headers=headers, allow_redirects=False, timeout=HTTP_TIMEOUT)


def redirect_params(resp: requests.Response, redirect_uri: str = REDIRECT_URI) -> dict[str, str]:
    """The query of a 302/303 to `redirect_uri` (which may carry its own query)."""
    assert resp.status_code in (302, 303), f"expected a 302/303 redirect to {redirect_uri}:\n{describe(resp)}"
    location = resp.headers.get("Location", "")
    got, want = urlparse(location), urlparse(redirect_uri)
    assert (got.scheme, got.netloc, got.path) == (want.scheme, want.netloc, want.path), (
        f"redirect to {location!r}, not to the registered {redirect_uri!r}:\n{describe(resp)}"
    )
    assert not got.fragment, f"the code flow answers in the query, not the fragment: {location!r}"
    params = parse_qs(got.query, keep_blank_values=True)
    for k, v in params.items():
        assert len(v) == 1, f"parameter {k!r} repeated in {location!r}"
    return {k: v[0] for k, v in params.items()}


def assert_not_redirected(resp: requests.Response, status: int) -> None:
    """An error shown on the page itself, never sent to a redirect URI."""
    assert resp.status_code == status, f"expected {status} on the page, not a redirect:\n{describe(resp)}"
    assert "Location" not in resp.headers, f"must not redirect:\n{describe(resp)}"


# ---------------------------------------------------------------------------
# The fixture: a server with one PRIME account, and helpers around it


class OAuthServer:
    def __init__(self, server: Latchkey, grpcurl: Grpcurl):
        self.server = server
        self.grpcurl = grpcurl
        self.base = f"http://{server.http_addr}"
        self.http = requests.Session()
        account = grpcurl.call("latchkey.v1.AccountService/CreateAccount", {"name": "Acme Surveys", "plan": "PRIME"})
        assert account.get("id"), account
        self.account_id = account["id"]
        self._metadata: dict | None = None

    def url(self, path: str) -> str:
        return self.base + path

    # -- documents

    @property
    def metadata(self) -> dict:
        if self._metadata is None:
            resp = self.http.get(self.url("/.well-known/oauth-authorization-server"), timeout=HTTP_TIMEOUT)
            assert resp.status_code == 200, describe(resp)
            assert resp.headers.get("Content-Type", "").startswith("application/json"), describe(resp)
            self._metadata = json_body(resp)
        return self._metadata

    @property
    def issuer(self) -> str:
        issuer = self.metadata.get("issuer")
        assert isinstance(issuer, str) and issuer, f"metadata without issuer: {self.metadata}"
        return issuer

    def jwks(self) -> dict:
        resp = self.http.get(self.url("/.well-known/jwks.json"), timeout=HTTP_TIMEOUT)
        assert resp.status_code == 200, describe(resp)
        assert resp.headers.get("Content-Type", "").startswith(("application/json", "application/jwk-set+json")), (
            describe(resp)
        )
        body = json_body(resp)
        assert isinstance(body.get("keys"), list) and body["keys"], f"JWKS without keys:\n{describe(resp)}"
        return body

    # -- admin side

    def create_client(
        self,
        name: str = CLIENT_NAME,
        grant_types: list[str] | None = None,
        scopes: list[str] | None = None,
        redirect_uris: list[str] | None = None,
    ) -> tuple[str, str]:
        """A new OAuth2 client; returns (client_id, client_secret)."""
        request = {
            "accountId": self.account_id,
            "mode": "MODE_TEST",
            "name": name,
            "redirectUris": [REDIRECT_URI] if redirect_uris is None else redirect_uris,
            "grantTypes": ALL_GRANTS if grant_types is None else grant_types,
            "scopes": CLIENT_SCOPES if scopes is None else scopes,
        }
        created = self.grpcurl.call("latchkey.v1.TokenService/CreateClient", request)
        client = created.get("client", {})
        client_id, secret = client.get("clientId", ""), created.get("clientSecret", "")
        shown = {**created, "clientSecret": "<redacted>" if secret else ""}
        assert client_id and secret, f"CreateClient should return client.clientId and clientSecret: {shown}"
        assert client.get("accountId") == self.account_id, shown
        assert client.get("name") == name, shown
        assert sorted(client.get("scopes", [])) == sorted(request["scopes"]), shown
        assert sorted(client.get("grantTypes", [])) == sorted(request["grantTypes"]), shown
        assert client.get("redirectUris", []) == request["redirectUris"], shown
        assert secret not in json.dumps(client), "the client record must not carry its secret"
        return client_id, secret

    def check(self, credential: str, permission: str) -> dict:
        return self.grpcurl.call(
            "latchkey.v1.CheckService/Check", {"credential": credential, "permission": permission}, token=None
        )

    # -- public side

    def token(self, data: dict, auth: tuple[str, str] | None = None) -> requests.Response:
        return self.http.post(
            self.url("/oauth2/token"), data=data, auth=auth, allow_redirects=False, timeout=HTTP_TIMEOUT
        )

    def client_credentials(self, client_id: str, secret: str, scopes: list[str]) -> dict:
        """The client-credentials grant with client_secret_basic; returns the
        token response after checking its RFC 6749 §5.1 shape."""
        resp = self.token({"grant_type": "client_credentials", "scope": " ".join(scopes)}, auth=(client_id, secret))
        return assert_token_response(resp, scopes)

    def verify(
        self,
        token: str,
        *,
        scopes: list[str],
        sub: str | None,
        client_id: str | None = None,
        alg: str = "RS256",
        ttl: int | None = ACCESS_TTL,
    ) -> tuple[dict, dict]:
        """Verifies an access token with PyJWT against the JWKS served now
        (a fresh PyJWKClient, no cache) and checks its claims; returns
        (header, claims)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            pytest.fail(f"not a JWT ({e}): {token[:80]}...")
        assert isinstance(header.get("kid"), str) and header["kid"], f"no kid in the JWT header: {header}"
        assert header.get("alg") == alg, f"expected alg {alg}: {header}"
        client = jwt.PyJWKClient(self.url("/.well-known/jwks.json"), cache_jwk_set=False, timeout=HTTP_TIMEOUT)
        try:
            signing_key = client.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key=signing_key.key,
                algorithms=[alg],
                audience=AUDIENCE,
                issuer=self.issuer,
                options={"require": TOKEN_CLAIMS},
            )
        except jwt.PyJWTError as e:
            pytest.fail(
                f"PyJWT rejected the token: {type(e).__name__}: {e}\n{unverified(token)}\n"
                f"issuer={self.issuer!r} audience={AUDIENCE!r}\njwks={self.jwks()}"
            )
        now = time.time()
        if sub is not None:
            assert claims["sub"] == sub, f"sub should be {sub!r}: {claims}"
        else:
            assert isinstance(claims["sub"], str) and claims["sub"], claims
        assert isinstance(claims["scope"], str), f"scope is a space-separated string (RFC 9068 §2.2.3): {claims}"
        assert sorted(claims["scope"].split(" ")) == sorted(scopes), f"scope should be {scopes}: {claims}"
        assert isinstance(claims["iat"], int) and isinstance(claims["exp"], int), claims
        assert abs(claims["iat"] - now) < 120, f"iat {claims['iat']} is not now ({int(now)}): {claims}"
        if ttl is not None:
            assert claims["exp"] - claims["iat"] == ttl, f"exp - iat should be {ttl}s: {claims}"
        else:
            assert claims["exp"] > now, claims
        assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16, f"jti should be a unique id: {claims}"
        if client_id is not None:
            assert claims.get("client_id") == client_id, (
                f"client_id claim (RFC 9068 §2.2) should be {client_id!r}: {claims}"
            )
        return header, claims

    # -- authorization endpoint

    def authorize_url(self, client_id: str, *, scopes: list[str] | None = None, state: str = "st-123", **params) -> str:
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": " ".join(CLIENT_SCOPES if scopes is None else scopes),
            "state": state,
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",  # RFC 7636 Appendix B
            "code_challenge_method": "S256",
        }
        for k, v in params.items():
            if v is None:
                query.pop(k, None)
            else:
                query[k] = v
        return self.url("/oauth2/authorize") + "?" + urlencode(query)

    def session(self, client_id: str, secret: str, **kw) -> OAuth2Session:
        """authlib's requests client for this client; every token-endpoint
        response it sees is kept in `.responses` (to check headers)."""
        s = OAuth2Session(
            client_id,
            secret,
            scope=" ".join(CLIENT_SCOPES),
            redirect_uri=REDIRECT_URI,
            code_challenge_method="S256",
            default_timeout=HTTP_TIMEOUT,
            **kw,
        )
        s.responses = []

        def keep(resp):
            s.responses.append(resp)
            return resp

        s.register_compliance_hook("access_token_response", keep)
        s.register_compliance_hook("refresh_token_response", keep)
        return s

    def consent(self, browser: requests.Session, url: str, user: str = "alice") -> dict:
        resp = browser.get(url, headers={USER_HEADER: user}, allow_redirects=False, timeout=HTTP_TIMEOUT)
        return consent_form(resp)

    def code(self, client_id: str, verifier: str, state: str = "st-123", redirect_uri: str = REDIRECT_URI) -> str:
        """An authorization code for alice through the consent page."""
        s = OAuth2Session(
            client_id, scope=" ".join(CLIENT_SCOPES), redirect_uri=redirect_uri, code_challenge_method="S256"
        )
        url, _ = s.create_authorization_url(self.url("/oauth2/authorize"), state=state, code_verifier=verifier)
        browser = requests.Session()
        form = self.consent(browser, url)
        params = redirect_params(submit(browser, form, "allow"), redirect_uri)
        assert params.get("state") == state and params.get("code"), params
        return params["code"]

    def code_tokens(self, client_id: str, secret: str) -> dict:
        """Consent as alice, then trade the code (client_secret_basic): the token response."""
        code_verifier = verifier()
        code = self.code(client_id, code_verifier)
        return assert_token_response(
            self.token(
                {
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": REDIRECT_URI,
                    "code_verifier": code_verifier,
                },
                auth=(client_id, secret),
            ),
            CLIENT_SCOPES,
            refresh=True,
        )


def assert_token_response(resp: requests.Response, scopes: list[str], refresh: bool | None = None) -> dict:
    """RFC 6749 §5.1: 200, JSON, Bearer, expires_in, no-store."""
    assert resp.status_code == 200, f"token request failed:\n{describe(resp)}"
    assert resp.headers.get("Content-Type", "").startswith("application/json"), describe(resp)
    assert_no_store(resp)
    body = json_body(resp)
    assert isinstance(body.get("access_token"), str) and body["access_token"], describe(resp)
    assert str(body.get("token_type", "")).lower() == "bearer", describe(resp)
    assert isinstance(body.get("expires_in"), int) and body["expires_in"] > 0, describe(resp)
    if "scope" in body:
        assert sorted(body["scope"].split()) == sorted(scopes), f"scope should be {scopes}:\n{describe(resp)}"
    if refresh is not None:
        assert bool(body.get("refresh_token")) == refresh, (
            f"refresh_token {'missing' if refresh else 'unexpected'}:\n{describe(resp)}"
        )
    return body


@pytest.fixture
def oauth(server: Latchkey, grpcurl: Grpcurl) -> OAuthServer:
    return OAuthServer(server, grpcurl)


def verifier() -> str:
    """An RFC 7636 §4.1 code_verifier: 43-128 unreserved characters."""
    return secrets.token_urlsafe(48)


# ---------------------------------------------------------------------------
# Discovery: RFC 8414 metadata and the JWKS


def test_metadata_lists_endpoints_and_s256(oauth: OAuthServer):
    md = oauth.metadata
    issuer = urlparse(oauth.issuer)
    # RFC 8414 §2: a URL without query or fragment; §3: the well-known
    # document sits at the issuer's root, so the issuer has no path.
    assert issuer.scheme in ("http", "https") and issuer.netloc, f"issuer is not a URL: {md}"
    assert not issuer.query and not issuer.fragment and issuer.path in ("", "/"), f"issuer: {md}"
    paths = {
        "authorization_endpoint": "/oauth2/authorize",
        "token_endpoint": "/oauth2/token",
        "jwks_uri": "/.well-known/jwks.json",
        "revocation_endpoint": "/oauth2/revoke",
        "introspection_endpoint": "/oauth2/introspect",
    }
    for field, path in paths.items():
        value = md.get(field)
        assert isinstance(value, str) and urlparse(value).scheme in ("http", "https"), (
            f"{field} missing or not absolute: {md}"
        )
        assert urlparse(value).path == path, f"{field} should end in {path}: {md}"
    assert "S256" in md.get("code_challenge_methods_supported", []), md
    assert "plain" not in md.get("code_challenge_methods_supported", []), f"PKCE is S256 only: {md}"
    assert "code" in md.get("response_types_supported", []), md
    assert set(ALL_GRANTS) <= set(md.get("grant_types_supported", [])), md
    assert {"client_secret_basic", "client_secret_post"} <= set(md.get("token_endpoint_auth_methods_supported", [])), md


def test_jwks_holds_public_keys_only_and_matches_grpc(oauth: OAuthServer, grpcurl: Grpcurl):
    jwks = oauth.jwks()
    kids = [k.get("kid") for k in jwks["keys"]]
    assert all(kids) and len(set(kids)) == len(kids), f"every key needs a distinct kid: {jwks}"
    for key in jwks["keys"]:
        assert not PRIVATE_JWK_MEMBERS & set(key), f"private key material in the JWKS: {sorted(key)}"
        assert key.get("use", "sig") == "sig", key
        # PyJWKSet silently skips keys it cannot use; parse each one directly.
        try:
            parsed = jwt.PyJWK(key)
        except jwt.PyJWTError as e:
            pytest.fail(f"PyJWT cannot use JWK {key}: {e}")
        assert parsed.key_id == key["kid"], key
    assert any(k.get("kty") == "RSA" and k.get("alg", "RS256") == "RS256" for k in jwks["keys"]), (
        f"the first signing key is RS256 by default: {jwks}"
    )
    from_grpc = grpcurl.call("latchkey.v1.TokenService/GetJwks", {})
    assert json.loads(from_grpc.get("jwksJson", "{}")) == jwks, (
        f"GetJwks differs from /.well-known/jwks.json: {from_grpc}"
    )


# ---------------------------------------------------------------------------
# Tokens verified by PyJWT's PyJWKClient


def test_client_credentials_basic_token_verifies_with_pyjwt(oauth: OAuthServer):
    client_id, secret = oauth.create_client(grant_types=["client_credentials"])
    body = oauth.client_credentials(client_id, secret, ["surveys.read"])
    assert body["expires_in"] == ACCESS_TTL, body
    header, claims = oauth.verify(body["access_token"], scopes=["surveys.read"], sub=client_id, client_id=client_id)
    assert header["kid"] in {k["kid"] for k in oauth.jwks()["keys"]}, header

    # Each token is its own: a second one has another jti.
    again = oauth.client_credentials(client_id, secret, ["surveys.read", "surveys.write"])
    _, claims2 = oauth.verify(again["access_token"], scopes=["surveys.read", "surveys.write"], sub=client_id)
    assert claims2["jti"] != claims["jti"], (claims, claims2)


def test_rotated_signing_keys_es256_eddsa_old_tokens_still_verify(oauth: OAuthServer, grpcurl: Grpcurl):
    client_id, secret = oauth.create_client(grant_types=["client_credentials"])
    scopes = ["surveys.read"]
    tokens = []  # (token, alg, kid)

    body = oauth.client_credentials(client_id, secret, scopes)
    header, _ = oauth.verify(body["access_token"], scopes=scopes, sub=client_id, alg="RS256")
    tokens.append((body["access_token"], "RS256", header["kid"]))

    for alg, kty in [("ES256", "EC"), ("EdDSA", "OKP")]:
        rotated = grpcurl.call("latchkey.v1.TokenService/RotateSigningKey", {"algorithm": alg})
        assert rotated.get("algorithm") == alg and rotated.get("kid"), rotated
        assert rotated["kid"] not in {t[2] for t in tokens}, f"a rotation must make a new kid: {rotated} {tokens}"

        body = oauth.client_credentials(client_id, secret, scopes)
        header, _ = oauth.verify(body["access_token"], scopes=scopes, sub=client_id, alg=alg)
        assert header["kid"] == rotated["kid"], f"new tokens should be signed by the new key {rotated}: {header}"
        tokens.append((body["access_token"], alg, header["kid"]))

        jwks = oauth.jwks()
        by_kid = {k["kid"]: k for k in jwks["keys"]}
        assert by_kid.get(rotated["kid"], {}).get("kty") == kty, f"{alg} key should be kty {kty}: {jwks}"
        for key in jwks["keys"]:
            assert not PRIVATE_JWK_MEMBERS & set(key), f"private key material in the JWKS: {sorted(key)}"
        # Tokens signed before the rotation still verify: the old public keys stay.
        for token, old_alg, kid in tokens:
            assert kid in by_kid, f"the key {kid} ({old_alg}) of a live token left the JWKS: {jwks}"
            oauth.verify(token, scopes=scopes, sub=client_id, alg=old_alg)


def test_grpc_issue_token_and_exchange_secret_verify_with_pyjwt(oauth: OAuthServer, grpcurl: Grpcurl):
    client_id, secret = oauth.create_client(grant_types=["client_credentials"])
    # IssueToken and ExchangeSecret authenticate with what they carry, no admin token.
    issued = grpcurl.call(
        "latchkey.v1.TokenService/IssueToken",
        {"clientId": client_id, "clientSecret": secret, "scopes": ["surveys.read"]},
        token=None,
    )
    assert issued.get("tokenType", "").lower() == "bearer", issued
    oauth.verify(issued.get("accessToken", ""), scopes=["surveys.read"], sub=client_id, client_id=client_id)

    created = grpcurl.call(
        "latchkey.v1.KeyService/CreateKey",
        {
            "accountId": oauth.account_id,
            "mode": "MODE_TEST",
            "kind": "KEY_KIND_SECRET",
            "name": "exchanger",
            "scopes": ["surveys.read", "surveys.write"],
        },
    )
    key_id, api_key = created["key"]["id"], created["secret"]
    exchanged = grpcurl.call(
        "latchkey.v1.TokenService/ExchangeSecret", {"apiKey": api_key, "scopes": ["surveys.read"]}, token=None
    )
    access = exchanged.get("accessToken", "")
    assert exchanged.get("refreshToken"), f"ExchangeSecret returns a refresh token too: {exchanged}"
    assert 0 < int(exchanged.get("expiresIn", 0)) <= ACCESS_TTL, f"a short-lived token: {exchanged}"
    assert api_key not in access, "the API key must not appear in the token"
    oauth.verify(access, scopes=["surveys.read"], sub=None, ttl=None)

    allowed = oauth.check(access, "surveys.read")
    assert allowed.get("allowed") is True, allowed
    assert allowed.get("principal", {}).get("accountId") == oauth.account_id, allowed
    # The exchanged token dies with its key.
    grpcurl.call("latchkey.v1.KeyService/RevokeKey", {"id": key_id})
    denied = oauth.check(access, "surveys.read")
    assert denied.get("allowed", False) is False, f"a token from a revoked key must be denied: {denied}"
    assert denied.get("reason") == "REASON_KEY_REVOKED", denied


# ---------------------------------------------------------------------------
# authlib's OAuth2 client


def test_client_credentials_post_with_authlib(oauth: OAuthServer):
    client_id, secret = oauth.create_client(grant_types=["client_credentials"])
    s = oauth.session(client_id, secret, token_endpoint_auth_method="client_secret_post")
    s.scope = "surveys.read"
    token = s.fetch_token(oauth.url("/oauth2/token"), grant_type="client_credentials")
    (resp,) = s.responses
    assert "Authorization" not in resp.request.headers, "client_secret_post sends no Authorization header"
    assert f"client_id={client_id}" in (resp.request.body or ""), describe(resp)
    assert_token_response(resp, ["surveys.read"])
    assert token["token_type"].lower() == "bearer", token
    oauth.verify(token["access_token"], scopes=["surveys.read"], sub=client_id, client_id=client_id)


def test_authorization_code_pkce_refresh_flow_with_authlib(oauth: OAuthServer):
    client_id, secret = oauth.create_client(grant_types=["authorization_code", "refresh_token"])
    s = oauth.session(client_id, secret)  # client_secret_basic, authlib's default
    s.metadata["token_endpoint"] = oauth.url("/oauth2/token")
    code_verifier = verifier()
    url, state = s.create_authorization_url(oauth.url("/oauth2/authorize"), code_verifier=code_verifier)
    query = {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}
    assert query.get("code_challenge_method") == "S256" and query.get("code_challenge"), url

    # The browser, with the identity oauth2-proxy puts in front of it.
    browser = requests.Session()
    page = browser.get(url, headers={USER_HEADER: "alice"}, allow_redirects=False, timeout=HTTP_TIMEOUT)
    form = consent_form(page)
    text = form["page"].text
    assert CLIENT_NAME in text, f"the consent page should name the client {CLIENT_NAME!r}: {text!r}"
    for scope in CLIENT_SCOPES:
        # The scope in plain words or as is: each of its parts shows.
        words = [w[:-1] if w.endswith("s") else w for w in scope.split(".")]
        assert scope in text or all(w.lower() in text.lower() for w in words), (
            f"the consent page should list scope {scope!r}: {text!r}"
        )
    assert urlparse(form["url"]).path == "/oauth2/authorize", f"form action: {form['attrs']}"
    # RFC 6749 §10.13: the consent page may not be framed (clickjacking).
    csp = page.headers.get("Content-Security-Policy", "")
    assert page.headers.get("X-Frame-Options", "").upper() in ("DENY", "SAMEORIGIN") or "frame-ancestors" in csp, (
        f"the consent page must forbid framing:\n{describe(page)}"
    )
    hidden = hidden_inputs(form)
    expected = {
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "state": state,
        "code_challenge": query["code_challenge"],
        "code_challenge_method": "S256",
        "response_type": "code",
    }
    for name, value in expected.items():
        assert hidden.get(name) == value, f"hidden input {name} should be {value!r}: {hidden}"
    assert sorted(hidden.get("scope", "").split()) == sorted(CLIENT_SCOPES), hidden
    assert hidden.get("csrf_token"), f"the form needs a csrf_token: {hidden}"
    decisions = {(b.get("name"), b.get("value")) for b in form["buttons"]}
    assert {("decision", "allow"), ("decision", "deny")} <= decisions, f"buttons: {form['buttons']}"

    answer = submit(browser, form, "allow")
    params = redirect_params(answer)
    assert params.get("state") == state, f"state must come back unchanged: {params}"
    assert params.get("code") and "error" not in params, params

    token = s.fetch_token(
        oauth.url("/oauth2/token"),
        authorization_response=answer.headers["Location"],
        code_verifier=code_verifier,
        state=state,
    )
    first = assert_token_response(s.responses[-1], CLIENT_SCOPES, refresh=True)
    assert "Authorization" in s.responses[-1].request.headers, "authlib should have used client_secret_basic"
    assert token["access_token"] == first["access_token"], token
    _, claims1 = oauth.verify(token["access_token"], scopes=CLIENT_SCOPES, sub="alice", client_id=client_id)
    refresh1 = token["refresh_token"]

    refreshed = s.refresh_token(oauth.url("/oauth2/token"), refresh_token=refresh1)
    assert_token_response(s.responses[-1], CLIENT_SCOPES, refresh=True)
    refresh2 = refreshed["refresh_token"]
    assert refresh2 != refresh1, "refresh tokens rotate on every use"
    _, claims2 = oauth.verify(refreshed["access_token"], scopes=CLIENT_SCOPES, sub="alice", client_id=client_id)
    assert claims2["jti"] != claims1["jti"], (claims1, claims2)

    # The rotated-out refresh token again: refused, and its family revoked.
    refused(s, refresh1, "a rotated-out refresh token must be refused")
    refused(s, refresh2, "reusing a rotated-out refresh token must revoke its family, the newest one too")

    # None of the secrets of this flow reached the server's log.
    log = oauth.server.output(tail=100_000)
    for name, value in [
        ("client secret", secret),
        ("authorization code", params["code"]),
        ("code verifier", code_verifier),
        ("access token", token["access_token"]),
        ("refreshed access token", refreshed["access_token"]),
        ("refresh token", refresh1),
        ("rotated refresh token", refresh2),
    ]:
        assert value not in log, f"the {name} reached the server log"


def refused(s: OAuth2Session, refresh_token: str, why: str) -> None:
    """authlib's refresh fails with invalid_grant (400, RFC 6749 §5.2)."""
    try:
        s.refresh_token(s.metadata.get("token_endpoint"), refresh_token=refresh_token)
    except OAuthError as e:
        assert e.error == "invalid_grant", f"{why}: expected invalid_grant, got {e!r}\n{describe(s.responses[-1])}"
        assert_token_error(s.responses[-1], 400, "invalid_grant")
        return
    pytest.fail(f"{why}; the refresh succeeded:\n{describe(s.responses[-1])}")


def test_refresh_with_narrower_scope_keeps_the_granted_scope(oauth: OAuthServer):
    client_id, secret = oauth.create_client(grant_types=["authorization_code", "refresh_token"])
    granted = oauth.code_tokens(client_id, secret)
    # RFC 6749 §6: a refresh may ask for less than was granted...
    narrowed = assert_token_response(
        oauth.token(
            {"grant_type": "refresh_token", "refresh_token": granted["refresh_token"], "scope": "surveys.read"},
            auth=(client_id, secret),
        ),
        ["surveys.read"],
        refresh=True,
    )
    oauth.verify(narrowed["access_token"], scopes=["surveys.read"], sub="alice", client_id=client_id)
    # ...but "if a new refresh token is issued, the refresh token scope MUST be
    # identical to that of the refresh token included by the client in the
    # request": the next refresh, scope omitted ("treated as equal to the scope
    # originally granted"), brings back the whole grant.
    resp = oauth.token(
        {"grant_type": "refresh_token", "refresh_token": narrowed["refresh_token"]}, auth=(client_id, secret)
    )
    assert resp.status_code == 200 and sorted(json_body(resp).get("scope", "").split()) == sorted(CLIENT_SCOPES), (
        f"the refresh token issued by a narrowed refresh must keep the granted scope {CLIENT_SCOPES} (RFC 6749 §6):\n"
        f"{describe(resp)}"
    )
    full = assert_token_response(resp, CLIENT_SCOPES, refresh=True)
    oauth.verify(full["access_token"], scopes=CLIENT_SCOPES, sub="alice", client_id=client_id)


def test_authorization_code_is_single_use(oauth: OAuthServer):
    client_id, secret = oauth.create_client(grant_types=["authorization_code", "refresh_token"])
    code_verifier = verifier()
    code = oauth.code(client_id, code_verifier)
    redeem = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": code_verifier,
    }
    first = assert_token_response(oauth.token(redeem, auth=(client_id, secret)), CLIENT_SCOPES, refresh=True)
    oauth.verify(first["access_token"], scopes=CLIENT_SCOPES, sub="alice", client_id=client_id)

    assert_token_error(oauth.token(redeem, auth=(client_id, secret)), 400, "invalid_grant")
    # A second use revokes what the first issued (RFC 6749 §4.1.2, §10.5).
    introspected = json_body(
        oauth.http.post(
            oauth.url("/oauth2/introspect"),
            data={"token": first["access_token"]},
            auth=(client_id, secret),
            timeout=HTTP_TIMEOUT,
        )
    )
    assert introspected.get("active") is False, f"the first access token should be revoked: {introspected}"
    assert_token_error(
        oauth.token({"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, auth=(client_id, secret)),
        400,
        "invalid_grant",
    )


def test_pkce_wrong_verifier_is_invalid_grant(oauth: OAuthServer):
    client_id, secret = oauth.create_client(grant_types=["authorization_code"])
    code_verifier = verifier()
    code = oauth.code(client_id, code_verifier)
    base = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    # RFC 7636 §4.6: the verifier must hash to the challenge.
    assert_token_error(
        oauth.token({**base, "code_verifier": verifier()}, auth=(client_id, secret)), 400, "invalid_grant"
    )
    code = oauth.code(client_id, code_verifier)
    resp = oauth.token(
        {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}, auth=(client_id, secret)
    )
    assert resp.status_code == 400 and json_body(resp).get("error") in ("invalid_request", "invalid_grant"), (
        f"a code redeemed without code_verifier must fail:\n{describe(resp)}"
    )


def test_token_redirect_uri_must_match_the_authorization(oauth: OAuthServer):
    client_id, secret = oauth.create_client(redirect_uris=[REDIRECT_URI, OTHER_REDIRECT_URI])
    code_verifier = verifier()
    code = oauth.code(client_id, code_verifier)
    resp = oauth.token(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": OTHER_REDIRECT_URI,
            "code_verifier": code_verifier,
        },
        auth=(client_id, secret),
    )
    assert_token_error(resp, 400, "invalid_grant")  # RFC 6749 §4.1.3


def test_authorization_code_from_another_client_is_invalid_grant(oauth: OAuthServer):
    client_id, _ = oauth.create_client()
    other_id, other_secret = oauth.create_client(name="Other App")
    code_verifier = verifier()
    code = oauth.code(client_id, code_verifier)
    resp = oauth.token(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": code_verifier,
        },
        auth=(other_id, other_secret),
    )
    assert_token_error(resp, 400, "invalid_grant")  # RFC 6749 §4.1.3: issued to another client


def test_redirect_uri_query_is_kept(oauth: OAuthServer):
    with_query = "https://client.example/cb?tenant=7"
    client_id, _ = oauth.create_client(redirect_uris=[with_query])
    browser = requests.Session()
    form = oauth.consent(browser, oauth.authorize_url(client_id, redirect_uri=with_query))
    params = redirect_params(submit(browser, form, "allow"), with_query)
    # RFC 6749 §3.1.2: the registered query component is retained.
    assert params.get("tenant") == "7" and params.get("code") and params.get("state") == "st-123", params


# ---------------------------------------------------------------------------
# Introspection (RFC 7662) and revocation (RFC 7009)


def test_introspect_then_revoke(oauth: OAuthServer):
    client_id, secret = oauth.create_client(grant_types=["client_credentials"])
    access = oauth.client_credentials(client_id, secret, ["surveys.read"])["access_token"]
    _, claims = oauth.verify(access, scopes=["surveys.read"], sub=client_id)

    def introspect(auth=(client_id, secret)) -> requests.Response:
        return oauth.http.post(oauth.url("/oauth2/introspect"), data={"token": access}, auth=auth, timeout=HTTP_TIMEOUT)

    # The caller must authenticate (RFC 7662 §2.1).
    unauthenticated = introspect(auth=None)
    assert unauthenticated.status_code == 401, f"introspection without credentials:\n{describe(unauthenticated)}"
    assert introspect(auth=(client_id, "wrong-" + secret)).status_code == 401, "introspection with a wrong secret"

    resp = introspect()
    assert resp.status_code == 200 and resp.headers.get("Content-Type", "").startswith("application/json"), describe(
        resp
    )
    body = json_body(resp)
    assert body.get("active") is True, describe(resp)
    assert body.get("client_id") == client_id, describe(resp)
    assert body.get("scope", "").split() == ["surveys.read"], describe(resp)
    assert body.get("sub") == claims["sub"] and body.get("jti", claims["jti"]) == claims["jti"], describe(resp)
    assert body.get("exp") == claims["exp"] and body.get("iss", claims["iss"]) == claims["iss"], describe(resp)

    revoke = oauth.http.post(
        oauth.url("/oauth2/revoke"),
        data={"token": access, "token_type_hint": "access_token"},
        auth=(client_id, secret),
        timeout=HTTP_TIMEOUT,
    )
    assert revoke.status_code == 200, f"RFC 7009 §2.2: 200 on revocation:\n{describe(revoke)}"

    body = json_body(introspect())
    assert body.get("active") is False, f"a revoked token is inactive: {body}"

    # RFC 7009 §2.2: an unknown token is no error.
    unknown = oauth.http.post(
        oauth.url("/oauth2/revoke"), data={"token": "not-a-token"}, auth=(client_id, secret), timeout=HTTP_TIMEOUT
    )
    assert unknown.status_code == 200, describe(unknown)
    # ...but the client must authenticate (RFC 7009 §2.1).
    anonymous = oauth.http.post(oauth.url("/oauth2/revoke"), data={"token": access}, timeout=HTTP_TIMEOUT)
    assert anonymous.status_code == 401, describe(anonymous)


def test_revoke_by_another_client_leaves_the_token_alone(oauth: OAuthServer):
    client_id, secret = oauth.create_client(grant_types=["client_credentials"])
    other_id, other_secret = oauth.create_client(name="Other App", grant_types=["client_credentials"])
    access = oauth.client_credentials(client_id, secret, ["surveys.read"])["access_token"]
    # RFC 7009 §2.1: the server verifies the token was issued to the client
    # asking; another client (even of the same account) cannot revoke it.
    resp = oauth.http.post(
        oauth.url("/oauth2/revoke"), data={"token": access}, auth=(other_id, other_secret), timeout=HTTP_TIMEOUT
    )
    assert resp.status_code in (200, 400, 401, 403), describe(resp)
    body = json_body(
        oauth.http.post(
            oauth.url("/oauth2/introspect"), data={"token": access}, auth=(client_id, secret), timeout=HTTP_TIMEOUT
        )
    )
    assert body.get("active") is True, f"another client revoked this client's token: {body}"


def test_revoked_refresh_token_is_invalid_grant(oauth: OAuthServer):
    client_id, secret = oauth.create_client()
    tokens = oauth.code_tokens(client_id, secret)
    revoke = oauth.http.post(
        oauth.url("/oauth2/revoke"),
        data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
        auth=(client_id, secret),
        timeout=HTTP_TIMEOUT,
    )
    assert revoke.status_code == 200, describe(revoke)
    assert_token_error(
        oauth.token(
            {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, auth=(client_id, secret)
        ),
        400,
        "invalid_grant",
    )


# ---------------------------------------------------------------------------
# Token endpoint errors (RFC 6749 §5.2)


def test_wrong_client_secret_is_401_invalid_client(oauth: OAuthServer):
    client_id, secret = oauth.create_client(grant_types=["client_credentials"])
    for auth in [(client_id, "wrong-" + secret), ("client_unknown", secret)]:
        resp = oauth.token({"grant_type": "client_credentials"}, auth=auth)
        assert_token_error(resp, 401, "invalid_client")
        challenge = resp.headers.get("WWW-Authenticate", "")
        assert challenge.lower().startswith("basic"), (
            f"401 for basic auth needs WWW-Authenticate: Basic:\n{describe(resp)}"
        )
    # client_secret_post with a wrong secret is refused the same way (400 or 401).
    resp = oauth.token({"grant_type": "client_credentials", "client_id": client_id, "client_secret": "wrong-" + secret})
    assert resp.status_code in (400, 401) and json_body(resp).get("error") == "invalid_client", describe(resp)
    # No client authentication at all.
    resp = oauth.token({"grant_type": "client_credentials"})
    assert resp.status_code in (400, 401) and json_body(resp).get("error") == "invalid_client", describe(resp)


@pytest.mark.parametrize("grant", ["password", "urn:example:not-a-grant"])
def test_unknown_grant_is_unsupported_grant_type(oauth: OAuthServer, grant: str):
    client_id, secret = oauth.create_client()
    resp = oauth.token({"grant_type": grant, "username": "alice", "password": "x"}, auth=(client_id, secret))
    assert_token_error(resp, 400, "unsupported_grant_type")


def test_grant_not_allowed_for_client_is_unauthorized_client(oauth: OAuthServer):
    client_id, secret = oauth.create_client(grant_types=["authorization_code", "refresh_token"])
    resp = oauth.token({"grant_type": "client_credentials", "scope": "surveys.read"}, auth=(client_id, secret))
    assert_token_error(resp, 400, "unauthorized_client")


def test_scope_beyond_client_is_invalid_scope(oauth: OAuthServer):
    client_id, secret = oauth.create_client(grant_types=["client_credentials"], scopes=["surveys.read"])
    for scope in ["surveys.write", "surveys.read surveys.write", "surveys.*"]:
        resp = oauth.token({"grant_type": "client_credentials", "scope": scope}, auth=(client_id, secret))
        assert_token_error(resp, 400, "invalid_scope")


def test_missing_grant_type_is_invalid_request(oauth: OAuthServer):
    client_id, secret = oauth.create_client()
    assert_token_error(oauth.token({"scope": "surveys.read"}, auth=(client_id, secret)), 400, "invalid_request")


# ---------------------------------------------------------------------------
# Authorization endpoint errors (RFC 6749 §4.1.2.1)


def test_authorize_without_forwarded_user_is_401(oauth: OAuthServer):
    client_id, _ = oauth.create_client()
    url = oauth.authorize_url(client_id)
    resp = requests.get(url, allow_redirects=False, timeout=HTTP_TIMEOUT)
    assert_not_redirected(resp, 401)
    # The POST needs the user as well.
    browser = requests.Session()
    form = oauth.consent(browser, url)
    assert_not_redirected(submit(browser, form, "allow", user=None), 401)


@pytest.mark.parametrize(
    "params",
    [
        {"redirect_uri": "https://evil.example/callback"},
        {"redirect_uri": REDIRECT_URI + "/more"},  # exact match, no prefix
        {"redirect_uri": REDIRECT_URI + "?x=1"},
        {"client_id": "client_unknown"},
    ],
    ids=["foreign-redirect", "prefix-redirect", "extra-query-redirect", "unknown-client"],
)
def test_authorize_bad_redirect_or_client_is_shown_not_redirected(oauth: OAuthServer, params: dict):
    client_id, _ = oauth.create_client()
    params = dict(params)
    url = oauth.authorize_url(params.pop("client_id", client_id), **params)
    resp = requests.get(url, headers={USER_HEADER: "alice"}, allow_redirects=False, timeout=HTTP_TIMEOUT)
    assert_not_redirected(resp, 400)
    assert resp.headers.get("Content-Type", "").startswith("text/html"), (
        f"the error is shown as a page:\n{describe(resp)}"
    )
    assert not Page(resp.text).forms, f"no consent form for a bad client or redirect URI:\n{describe(resp)}"


def test_authorize_deny_redirects_access_denied_with_state(oauth: OAuthServer):
    client_id, _ = oauth.create_client()
    state = "s t/a+t=e&ü~%"  # must come back byte for byte
    browser = requests.Session()
    form = oauth.consent(browser, oauth.authorize_url(client_id, state=state))
    assert hidden_inputs(form).get("state") == state, hidden_inputs(form)
    params = redirect_params(submit(browser, form, "deny"))
    assert params.get("error") == "access_denied", params
    assert params.get("state") == state, f"state must come back unchanged: {params}"
    assert "code" not in params, params


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"code_challenge": "abc" * 15, "code_challenge_method": "plain"}, "invalid_request"),
        ({"scope": "surveys.read billing.write"}, "invalid_scope"),
        ({"response_type": "not-a-type"}, "unsupported_response_type"),
    ],
    ids=["no-pkce", "no-method", "pkce-plain", "scope-beyond-client", "unknown-response-type"],
)
def test_authorize_errors_go_back_to_the_client(oauth: OAuthServer, params: dict, error: str):
    client_id, _ = oauth.create_client()
    state = "xyz/é+ &="
    url = oauth.authorize_url(client_id, state=state, **params)
    resp = requests.get(url, headers={USER_HEADER: "alice"}, allow_redirects=False, timeout=HTTP_TIMEOUT)
    got = redirect_params(resp)
    assert got.get("error") == error, f"expected error={error}: {got}\n{describe(resp)}"
    assert got.get("state") == state, f"state must come back unchanged: {got}"
    assert "code" not in got, got


@pytest.mark.parametrize("attack", ["missing", "tampered", "other-user"])
def test_consent_form_is_csrf_protected(oauth: OAuthServer, attack: str):
    client_id, _ = oauth.create_client()
    url = oauth.authorize_url(client_id)
    browser = requests.Session()
    form = oauth.consent(browser, url)
    token = hidden_inputs(form).get("csrf_token", "")
    assert token, f"the form needs a csrf_token: {hidden_inputs(form)}"
    if attack == "missing":
        resp = submit(browser, form, "allow", csrf_token=None)
    elif attack == "tampered":
        flipped = ("B" if token[0] == "A" else "A") + token[1:]
        resp = submit(browser, form, "allow", csrf_token=flipped)
    else:
        # mallory's browser (another user, none of alice's cookies) posts the
        # form alice's page carried.
        resp = submit(requests.Session(), form, "allow", user="mallory")
    if resp.status_code in (302, 303):
        got = redirect_params(resp)
        assert "code" not in got and got.get("error"), f"CSRF ({attack}) must not yield a code:\n{describe(resp)}"
    else:
        assert 400 <= resp.status_code < 500, f"CSRF ({attack}) must be refused:\n{describe(resp)}"

    # The genuine form still works (the refusal was the CSRF check's).
    fresh = requests.Session()
    good = redirect_params(submit(fresh, oauth.consent(fresh, url), "allow"))
    assert good.get("code") and good.get("state") == "st-123", good


def test_consent_page_escapes_the_client_name(oauth: OAuthServer, grpcurl: Grpcurl):
    name = 'Evil <script>alert("x")</script> & Co'
    r = grpcurl.run(
        "latchkey.v1.TokenService/CreateClient",
        data={
            "accountId": oauth.account_id,
            "mode": "MODE_TEST",
            "name": name,
            "redirectUris": [REDIRECT_URI],
            "grantTypes": ALL_GRANTS,
            "scopes": CLIENT_SCOPES,
        },
        token=f"Bearer {oauth.server.token}",
    )
    if r.returncode != 0:
        # Refusing such a name is as good as escaping it.
        assert "InvalidArgument" in r.stdout + r.stderr, r.describe()
        return
    client_id = json.loads(r.stdout)["client"]["clientId"]
    resp = requests.get(
        oauth.authorize_url(client_id), headers={USER_HEADER: "alice"}, allow_redirects=False, timeout=HTTP_TIMEOUT
    )
    assert resp.status_code == 200, describe(resp)
    assert "<script>alert" not in resp.text, f"the client name must be HTML-escaped:\n{describe(resp)}"
    assert name in Page(resp.text).text, f"the page should still show the name: {Page(resp.text).text!r}"


# ---------------------------------------------------------------------------
# Check accepts the JWTs it issued


def test_check_accepts_issued_jwt_until_revoked(oauth: OAuthServer, grpcurl: Grpcurl):
    client_id, secret = oauth.create_client(grant_types=["client_credentials"])
    access = oauth.client_credentials(client_id, secret, ["surveys.read"])["access_token"]
    oauth.verify(access, scopes=["surveys.read"], sub=client_id)

    allowed = oauth.check(access, "surveys.read")
    assert allowed.get("allowed") is True, allowed
    assert allowed.get("reason") == "REASON_ALLOWED", allowed
    assert allowed.get("principal", {}).get("accountId") == oauth.account_id, allowed
    assert allowed.get("principal", {}).get("mode") == "MODE_TEST", allowed

    denied = oauth.check(access, "surveys.write")
    assert denied.get("allowed", False) is False and denied.get("reason") == "REASON_PERMISSION_DENIED", denied

    grpcurl.call("latchkey.v1.TokenService/RevokeToken", {"token": access})
    revoked = oauth.check(access, "surveys.read")
    assert revoked.get("allowed", False) is False, f"a revoked token must be denied: {revoked}"
    assert revoked.get("reason") == "REASON_TOKEN_REVOKED", revoked  # check.proto: a revoked JWT
    introspected = grpcurl.call("latchkey.v1.TokenService/Introspect", {"token": access})
    assert not introspected.get("active", False), introspected


def test_check_accepts_authorization_code_token(oauth: OAuthServer):
    client_id, secret = oauth.create_client()
    tokens = oauth.code_tokens(client_id, secret)
    allowed = oauth.check(tokens["access_token"], "surveys.write")
    assert allowed.get("allowed") is True, allowed
    assert allowed.get("principal", {}).get("accountId") == oauth.account_id, allowed
