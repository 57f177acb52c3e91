"""One-time reveal links in a real browser (Debian's Chromium through
Playwright, as test_browser_consent.py does).

Mail gateways and chat previews fetch every link they see. So opening
`/reveal/<token>` shows a confirmation page and redeems nothing; the secret
is shown only after the page's button POSTs back, and the page that shows
it is never cached. A link a scanner opened first still works for the
person it was meant for, once.

A screenshot of each page is left in $LATCHKEY_ARTIFACTS (default
/tmp/latchkey-artifacts).
"""

from __future__ import annotations

import re
import urllib.request

from conftest import Grpcurl, Latchkey
from test_signatures import SIGNING, new_secret


def test_reveal_link_survives_a_scanner_and_reveals_once_in_a_browser(
    grpcurl: Grpcurl, server: Latchkey, chromium, artifacts_dir
):
    _, secret_id, old = new_secret(grpcurl)
    link = grpcurl.call(f"{SIGNING}/RotateSecret", {"secretId": secret_id, "revealLink": True})["reveal"]
    url = f"http://{server.http_addr}{link['url']}"

    # A link scanner: a plain GET, as often as it likes.
    for _ in range(2):
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200
            assert resp.headers["Cache-Control"] == "no-store"
            assert "whsec_" not in resp.read().decode()

    context = chromium.new_context()
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(f"[{m.type}] {m.text}"))
    try:
        confirm = page.goto(url)
        assert confirm is not None and confirm.status == 200
        assert confirm.headers["cache-control"] == "no-store"
        assert "whsec_" not in page.content(), "the GET revealed the secret"
        page.screenshot(path=str(artifacts_dir / "reveal-confirm.png"), full_page=True)

        with page.expect_navigation():
            page.get_by_role("button", name=re.compile("reveal", re.I)).click()
        shown = page.locator("#secret").inner_text().strip()
        assert shown.startswith("whsec_") and shown != old, page.content()
        page.screenshot(path=str(artifacts_dir / "reveal-shown.png"), full_page=True)
        violations = [m for m in console if re.search(r"content security policy", m, re.I)]
        assert not violations, "\n".join(console)

        # Once only: a second press (or a reload) gets the not-valid page.
        page.goto(url)
        with page.expect_navigation():
            page.get_by_role("button", name=re.compile("reveal", re.I)).click()
        assert "not valid" in page.content(), page.content()
        assert "whsec_" not in page.content()
    finally:
        context.close()

    # The secret revealed is the one that now signs.
    r = grpcurl.call(f"{SIGNING}/Sign", {"secretId": secret_id, "payload": "eA=="})
    assert r["header"], r
    log = server.output(tail=10_000)
    assert shown not in log and link["token"] not in log
