"""The integration vault from the outside, through grpcurl and server
reflection: the JSON mapping of credential maps, masked hints only, the
outbound safety rule, and credentials that never come back except through
UseCredentials (README "Integration vault").
"""

from __future__ import annotations

import json

from conftest import Grpcurl

VAULT = "latchkey.v1.IntegrationService"
CK = "ck_blackbox_5d1b1f4c0e2a4b7e4f2a"
CS = "cs_blackbox_9a8b7c6d5e4f3a2b91be"


def test_woocommerce_credentials_are_sealed_and_masked(grpcurl: Grpcurl):
    account = grpcurl.call("latchkey.v1.AccountService/CreateAccount", {"name": "Kaffeehaus", "plan": "PRIME"})
    created = grpcurl.call(
        f"{VAULT}/CreateIntegration",
        {
            "accountId": account["id"],
            "mode": "MODE_LIVE",
            "kind": "woocommerce",
            "name": "Berlin shop",
            "baseUrl": "https://shop.kaffeehaus.example/",
            "credentials": {"consumer_key": CK, "consumer_secret": CS},
        },
    )
    assert created["id"].startswith("int_")
    assert created["baseUrl"] == "https://shop.kaffeehaus.example"
    assert created["credentialHints"] == {"consumer_key": "ck_…4f2a", "consumer_secret": "cs_…91be"}
    listed = grpcurl.call(f"{VAULT}/ListIntegrations", {"accountId": account["id"], "kind": "woocommerce"})
    for text in (json.dumps(created), json.dumps(listed)):
        assert CK not in text and CS not in text
    plain = grpcurl.call(f"{VAULT}/UseCredentials", {"id": created["id"]})
    assert plain["credentials"] == {"consumer_key": CK, "consumer_secret": CS}


def test_bad_integrations_are_refused_with_the_field_named(grpcurl: Grpcurl):
    account = grpcurl.call("latchkey.v1.AccountService/CreateAccount", {"name": "Shop", "plan": "PRIME"})
    base = {
        "accountId": account["id"],
        "mode": "MODE_TEST",
        "kind": "economic",
        "name": "books",
        "baseUrl": "https://restapi.e-conomic.example",
        "credentials": {"app_secret_token": "secret-app-token-1", "agreement_grant_token": "secret-grant-1"},
    }
    for change, field in [
        ({"kind": "sftp"}, "kind"),
        ({"baseUrl": "http://restapi.e-conomic.example"}, "base_url"),
        ({"baseUrl": "https://169.254.169.254"}, "base_url"),
        ({"credentials": {"app_secret_token": "secret-app-token-1"}}, "credentials"),
    ]:
        _, message = grpcurl.fails(f"{VAULT}/CreateIntegration", {**base, **change}, code="InvalidArgument")
        assert message.startswith(field), message
        assert "secret-app-token-1" not in message
    assert grpcurl.call(f"{VAULT}/ListIntegrations", {"accountId": account["id"]}).get("integrations", []) == []
