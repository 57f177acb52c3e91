"""The authorization-code flow in a real browser: Debian's Chromium, driven
by Playwright, opens the consent page as a signed-in user, clicks Allow or
Deny, and must arrive at the client's redirect URI (a small receiver on the
loopback interface, conftest.py) with the answer, with no Content Security
Policy violation on the way.

Chrome applies the consent page's `form-action` to the redirect that follows
the form's POST as well, so a policy of `form-action 'self'` alone makes
Allow (and Deny) do nothing there. A scripted HTTP client never notices;
only a browser does.

The signed-in user is the trusted `X-Forwarded-User` header, as oauth2-proxy
sets it; here the browser context sends it with every request.

A screenshot of each consent page is left in $LATCHKEY_ARTIFACTS (default
/tmp/latchkey-artifacts).
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import Grpcurl, Latchkey, Receiver
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from test_oauth import (
    CLIENT_NAME,
    CLIENT_SCOPES,
    USER_HEADER,
    OAuthServer,
    assert_token_response,
    verifier,
)

CALLBACK = "/callback"
STATE = "st/a+t=e&ü~% x"  # must come back byte for byte
ARRIVAL_TIMEOUT_MS = 15_000
# How the receiver's host is written: an IPv4 and an IPv6 loopback (RFC 8252 §7.3).
HOSTS = pytest.mark.parametrize("receiver", ["127.0.0.1", "::1"], indirect=True, ids=["ipv4", "ipv6"])


@pytest.fixture
def oauth(server: Latchkey, grpcurl: Grpcurl) -> OAuthServer:
    return OAuthServer(server, grpcurl)


def challenge(code_verifier: str) -> str:
    """RFC 7636 §4.2 S256."""
    digest = hashlib.sha256(code_verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Watched:
    """A page in a fresh browser context signed in as alice, with every
    console message, page error and CSP violation recorded."""

    def __init__(self, browser, user: str = "alice"):
        self.context = browser.new_context(extra_http_headers={USER_HEADER: user})
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"[{m.type}] {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"[pageerror] {e}"))
        # Chrome logs violations to the console; the DOM event is a second
        # witness. An init script comes from the browser, not the page, so
        # the page's own policy does not stop it.
        self.page.add_init_script(
            "document.addEventListener('securitypolicyviolation', e =>"
            " console.error('securitypolicyviolation: ' + e.effectiveDirective + ' blocked ' + e.blockedURI));"
        )

    def csp_violations(self) -> list[str]:
        return [m for m in self.console if re.search(r"content security policy|securitypolicyviolation", m, re.I)]

    def report(self) -> str:
        return f"page URL: {self.page.url}\nconsole:\n" + "\n".join(self.console or ["(nothing)"])

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def watched(chromium):
    w = Watched(chromium)
    try:
        yield w
    finally:
        w.close()


def open_consent(oauth: OAuthServer, w: Watched, redirect_uri: str, code_verifier: str, shot: Path):
    """Registers a client for `redirect_uri`, opens its consent page in the
    browser and checks what it shows and how it is protected; saves a
    screenshot. Returns the client (id, secret)."""
    client_id, secret = oauth.create_client(redirect_uris=[redirect_uri])
    url = oauth.authorize_url(
        client_id, redirect_uri=redirect_uri, state=STATE, code_challenge=challenge(code_verifier)
    )
    response = w.page.goto(url)
    assert response is not None and response.status == 200, (
        f"consent page: {response and response.status}\n{w.report()}"
    )

    # The protections stay whole: no framing, nothing runs, no referrer.
    headers = response.headers
    csp = [d.strip() for d in headers.get("content-security-policy", "").split(";")]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, f"consent page CSP: {csp}"
    assert not [d for d in csp if d.startswith("script-src")], f"the consent page runs no script: {csp}"
    assert headers.get("x-frame-options", "").upper() == "DENY", headers
    assert headers.get("referrer-policy") == "no-referrer", headers
    form_action = next((d for d in csp if d.startswith("form-action ")), "")
    assert "'self'" in form_action.split(), f"consent page CSP: {csp}"

    heading = w.page.get_by_role("heading", level=1).inner_text()
    assert CLIENT_NAME in heading, f"the consent page should name {CLIENT_NAME!r}: {heading!r}"
    items = w.page.locator("li").all_inner_texts()
    for scope in CLIENT_SCOPES:
        assert any(scope in item for item in items), f"the consent page should list {scope!r}: {items}"
    assert w.page.get_by_text("alice", exact=True).count() == 1, "the page should name the signed-in user"
    w.page.screenshot(path=shot, full_page=True)
    return client_id, secret


def click_and_arrive(w: Watched, receiver: Receiver, button: str, redirect_uri: str) -> dict[str, str]:
    """Clicks `button` and waits for the browser to land on `redirect_uri`;
    returns the query it arrived with (each parameter once)."""
    before = len(receiver.requests)
    w.page.get_by_role("button", name=button, exact=True).click()
    try:
        w.page.wait_for_url(lambda u: u.startswith(redirect_uri), timeout=ARRIVAL_TIMEOUT_MS)
    except PlaywrightTimeout:
        pytest.fail(
            f"after {button}, the browser never reached {redirect_uri}; "
            f"receiver saw {receiver.requests[before:]}\n{w.report()}"
        )
    query = parse_qs(urlsplit(w.page.url).query, keep_blank_values=True)
    assert all(len(v) == 1 for v in query.values()), f"a parameter is repeated: {w.page.url}"
    with receiver.arrived:
        receiver.arrived.wait_for(lambda: len(receiver.requests) > before, timeout=5)
        arrived = receiver.requests[before:]
    assert arrived == [(CALLBACK, query)], f"the receiver saw {arrived}, page is at {w.page.url}"
    return {k: v[0] for k, v in query.items()}


@HOSTS
def test_allow_in_chromium_arrives_with_a_code_that_works(
    oauth: OAuthServer, watched: Watched, receiver: Receiver, artifacts_dir: Path, request
):
    redirect_uri = receiver.url(CALLBACK)
    code_verifier = verifier()
    shot = artifacts_dir / f"consent-{request.node.name}.png".replace("[", "-").replace("]", "")
    client_id, secret = open_consent(oauth, watched, redirect_uri, code_verifier, shot)

    got = click_and_arrive(watched, receiver, "Allow", redirect_uri)
    assert got.get("state") == STATE, f"state must come back unchanged: {got}"
    assert got.get("code") and "error" not in got, got
    assert not watched.csp_violations(), f"CSP violations:\n{watched.report()}"

    # The code is real: the token endpoint trades it for alice's tokens.
    tokens = assert_token_response(
        oauth.token(
            {
                "grant_type": "authorization_code",
                "code": got["code"],
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
            },
            auth=(client_id, secret),
        ),
        CLIENT_SCOPES,
        refresh=True,
    )
    oauth.verify(tokens["access_token"], scopes=CLIENT_SCOPES, sub="alice", client_id=client_id)


@HOSTS
def test_deny_in_chromium_arrives_with_access_denied(
    oauth: OAuthServer, watched: Watched, receiver: Receiver, artifacts_dir: Path, request
):
    redirect_uri = receiver.url(CALLBACK)
    shot = artifacts_dir / f"consent-{request.node.name}.png".replace("[", "-").replace("]", "")
    open_consent(oauth, watched, redirect_uri, verifier(), shot)

    got = click_and_arrive(watched, receiver, "Deny", redirect_uri)
    assert got.get("error") == "access_denied", got
    assert got.get("state") == STATE, f"state must come back unchanged: {got}"
    assert "code" not in got, got
    assert not watched.csp_violations(), f"CSP violations:\n{watched.report()}"


def test_consent_page_refuses_to_be_framed_by_the_client(oauth: OAuthServer, watched: Watched, receiver: Receiver):
    """The origin the policy now lets forms go to gains nothing else: a
    page there still cannot frame the consent page (clickjacking)."""
    redirect_uri = receiver.url(CALLBACK)
    client_id, _ = oauth.create_client(redirect_uris=[redirect_uri])
    consent = oauth.authorize_url(client_id, redirect_uri=redirect_uri, state=STATE)
    watched.page.goto(receiver.url("/framer"))
    refused = re.compile(r"frame-ancestors|X-Frame-Options")
    with watched.page.expect_console_message(lambda m: bool(refused.search(m.text)), timeout=ARRIVAL_TIMEOUT_MS):
        watched.page.set_content(f'<iframe src="{consent}"></iframe>')
    frame = next((f for f in watched.page.frames if f.parent_frame is not None), None)
    assert frame is not None, f"no iframe\n{watched.report()}"
    assert frame.get_by_role("button", name="Allow").count() == 0, (
        f"the consent page rendered in a frame\n{watched.report()}"
    )


# ---------------------------------------------------------------------------
# Signed consent links (issue 12) in the browser: the page in German and in
# English as the browser's language asks, a screenshot of each, Allow and
# Deny completing, and an accessibility check with axe-core (vendored in
# tests/blackbox/vendor, from the npm registry's axe-core package).

AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
# axe-core's impact levels that fail the test.
AXE_FAILING = {"serious", "critical"}


def axe_violations(page) -> list[dict]:
    """Runs axe-core in the page (CDP evaluation: the page's CSP, which
    allows no script, does not apply to it) and returns its serious and
    critical violations."""
    page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    result = page.evaluate(
        "() => axe.run(document, {resultTypes: ['violations']}).then(r => r.violations.map(v => "
        "({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' '))})))"
    )
    return [v for v in result if v.get("impact") in AXE_FAILING]


@pytest.mark.parametrize(
    ("locale", "button", "words"),
    [
        ("de-DE", "Erlauben", ["Darf", "Angemeldet als", "Testmodus", "Ansehen", "Ändern"]),
        ("en-US", "Deny", ["Allow", "Signed in as", "Test mode", "See", "Change"]),
    ],
    ids=["de-allow", "en-deny"],
)
def test_signed_link_in_chromium_in_german_and_english(
    oauth: OAuthServer, chromium, receiver: Receiver, artifacts_dir: Path, locale: str, button: str, words: list[str]
):
    from test_consent_links import Integrator

    redirect_uri = receiver.url(CALLBACK)
    it = Integrator(oauth, redirect_uri=redirect_uri)
    code_verifier = verifier()
    url = it.link(code_verifier)

    # No login header: the signature vouches for the user.
    context = chromium.new_context(locale=locale)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(f"[{m.type}] {m.text}"))
    try:
        response = page.goto(url)
        assert response is not None and response.status == 200, page.content()
        lang = locale.split("-")[0]
        assert page.locator("html").get_attribute("lang") == lang
        text = page.locator("main").inner_text()
        for w in words + ["Schuhhaus Müller", "merchant-7", "surveys.read", "surveys.write"]:
            assert w in text, f"{w!r} not on the {locale} page:\n{text}"
        page.screenshot(path=str(artifacts_dir / f"consent-signed-link-{lang}.png"), full_page=True)

        serious = axe_violations(page)
        assert not serious, f"axe-core found serious violations on the {locale} consent page: {serious}"

        before = len(receiver.requests)
        page.get_by_role("button", name=button, exact=True).click()
        try:
            page.wait_for_url(lambda u: u.startswith(redirect_uri), timeout=ARRIVAL_TIMEOUT_MS)
        except PlaywrightTimeout:
            pytest.fail(f"after {button}, never reached {redirect_uri}: at {page.url}\n" + "\n".join(console))
        got = {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}
        assert got.get("state") == "st-42", got
        if button == "Deny":
            assert got.get("error") == "access_denied" and "code" not in got, got
        else:
            assert got.get("code") and "error" not in got, got
            tokens = oauth.token(
                {
                    "grant_type": "authorization_code",
                    "code": got["code"],
                    "redirect_uri": redirect_uri,
                    "code_verifier": code_verifier,
                },
                auth=(it.client_id, it.client_secret),
            )
            assert tokens.status_code == 200, tokens.text
        with receiver.arrived:
            receiver.arrived.wait_for(lambda: len(receiver.requests) > before, timeout=5)
        violations = [m for m in console if re.search(r"content security policy", m, re.I)]
        assert not violations, "\n".join(console)

        # Back to the link: already used, in the same language.
        page.goto(url)
        used = page.locator("#message").inner_text()
        assert ("bereits verwendet" if lang == "de" else "already used") in used, used
    finally:
        context.close()


def test_the_error_page_passes_axe_too(oauth: OAuthServer, chromium):
    context = chromium.new_context(locale="de-DE")
    page = context.new_page()
    try:
        response = page.goto(oauth.url("/oauth2/consent?client_id=cli_x&uid=a"))
        assert response is not None and response.status == 400
        assert "signiert" in page.locator("#message").inner_text()
        serious = axe_violations(page)
        assert not serious, serious
    finally:
        context.close()
