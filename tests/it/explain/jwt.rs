//! Explain of a bearer JWT: every token reason at the step that decides it,
//! and the token verified from the store as it is now (signing keys,
//! revocation, client), not from the verified-token, client or keyring
//! caches, which Explain reads only to say whether Check's answer differs.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use latchkey::pb;
use pb::Reason;

use super::{ask, decided, denied_at, explain, failed_step, store_sql};
use crate::backend_tests;
use crate::common::{Backend, TestServer};
use crate::tokens::{claims, client, forge, header, issue, jwks, server_eddsa_key, tokens};

/// The detail of the step named `name`.
fn detail(r: &pb::ExplainResponse, name: &str) -> String {
    r.steps
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step {name}: {r:#?}"))
        .detail
        .clone()
}

/// One test per token reason: each is decided at the `credential` step
/// (where a JWT is verified), with its own reason.
async fn explain_names_each_token_reason(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (c, secret) = client(&s).await;
    let issued = issue(&s, &c.client_id, &secret).await;
    let r = explain(&s, ask(&issued, "catalog.read")).await;
    assert_eq!(decided(&r), Reason::Allowed, "{r:#?}");
    assert!(failed_step(&r).is_none());
    let verified = detail(&r, "credential");
    assert!(
        verified.contains("read from the store, no cache"),
        "{verified}"
    );
    assert!(detail(&r, "lookup").contains(&c.client_id), "{r:#?}");
    assert!(
        !format!("{r:?}").contains(&issued),
        "the token is never shown"
    );

    let kid = header(&issued)["kid"].as_str().unwrap().to_owned();
    let body = claims(&issued);
    let json = |v: &serde_json::Value| B64.encode(v.to_string());
    let none = forge(serde_json::json!({"alg": "none", "kid": kid}), &body, b"");
    // HS256 keyed with the public key: the classic algorithm confusion.
    let public = jwks(&s).await["keys"][0].to_string();
    let hs_header = serde_json::json!({"alg": "HS256", "kid": kid});
    let signing_input = format!("{}.{}", json(&hs_header), json(&body));
    let mac = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, public.as_bytes()),
        signing_input.as_bytes(),
    );
    let hs256 = forge(hs_header, &body, mac.as_ref());
    // An unknown `kid`, and a widened payload under the real signature.
    let (head, rest) = issued.split_once('.').unwrap();
    let (payload, sig) = rest.split_once('.').unwrap();
    let unknown_kid = format!(
        "{}.{payload}.{sig}",
        json(&serde_json::json!({"alg": "RS256", "kid": "sk_nope"}))
    );
    let mut widened = body.clone();
    widened["scope"] = "*".into();
    let tampered = format!("{head}.{}.{sig}", json(&widened));
    for (token, want) in [
        (none, Reason::TokenUnsigned),
        (hs256, Reason::TokenAlgorithmMismatch),
        (unknown_kid, Reason::TokenKeyUnknown),
        (tampered, Reason::TokenSignatureInvalid),
    ] {
        let r = explain(&s, ask(&token, "catalog.read")).await;
        let why = denied_at(&r, want, "credential");
        assert!(why.contains("from the store"), "{want:?}: {why}");
        assert!(!why.contains(&token), "{want:?}: {why}");
    }

    // Revoked through the API.
    tokens(&s)
        .revoke_token(s.admin(pb::RevokeTokenRequest {
            token: issued.clone(),
        }))
        .await
        .unwrap();
    let why = denied_at(
        &explain(&s, ask(&issued, "catalog.read")).await,
        Reason::TokenRevoked,
        "credential",
    );
    assert!(why.contains("revoked"), "{why}");

    // Signed by the server's own key, but not an access token (`typ`).
    let (eddsa_kid, key) = server_eddsa_key(&s).await;
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    h.kid = Some(eddsa_kid);
    h.typ = Some("JWT".into());
    let not_access = jsonwebtoken::encode(&h, &body, &key).unwrap();
    denied_at(
        &explain(&s, ask(&not_access, "catalog.read")).await,
        Reason::TokenClaimsInvalid,
        "credential",
    );

    // Time: a clock two minutes behind the issuer's, then past `exp`.
    let fresh = issue(&s, &c.client_id, &secret).await;
    s.clock.advance_secs(-120);
    denied_at(
        &explain(&s, ask(&fresh, "catalog.read")).await,
        Reason::TokenNotYetValid,
        "credential",
    );
    s.clock.advance_secs(120 + 3600 + 31);
    denied_at(
        &explain(&s, ask(&fresh, "catalog.read")).await,
        Reason::TokenExpired,
        "credential",
    );
    s.stop().await;
}

/// A revocation, a deleted client and a removed signing key, each written
/// behind the caches' backs: Check still allows from its caches, Explain
/// reads the store, denies, and says the cached answer differs.
async fn explain_verifies_tokens_from_the_store(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (c, secret) = client(&s).await;
    let token = issue(&s, &c.client_id, &secret).await;
    // Never checked: nothing cached, and explaining caches nothing either.
    for _ in 0..2 {
        let r = explain(&s, ask(&token, "catalog.read")).await;
        assert_eq!(decided(&r), Reason::Allowed, "{r:#?}");
        let cache = r.cache.unwrap();
        assert!(!cache.cached && !cache.differs, "{cache:?}");
    }
    assert!(s.check_perm(&token, "catalog.read").await.allowed);
    let cache = explain(&s, ask(&token, "catalog.read"))
        .await
        .cache
        .unwrap();
    assert!(cache.cached && cache.allowed && !cache.differs, "{cache:?}");

    // Revoked behind the cache's back.
    let jti = claims(&token)["jti"].as_str().unwrap().to_owned();
    let exp = claims(&token)["exp"].as_i64().unwrap() * 1000;
    store_sql(
        &s,
        &format!("INSERT INTO revoked_tokens (jti, expires_at) VALUES ('{jti}', {exp})"),
    )
    .await;
    assert!(
        s.check_perm(&token, "catalog.read").await.allowed,
        "the verified-token cache has not heard of it"
    );
    let r = explain(&s, ask(&token, "catalog.read")).await;
    denied_at(&r, Reason::TokenRevoked, "credential");
    let cache = r.cache.unwrap();
    assert!(cache.cached && cache.allowed && cache.differs, "{cache:?}");
    assert_eq!(cache.reason, Reason::Allowed as i32);

    // The client deleted behind the caches' backs.
    let (other, other_secret) = client(&s).await;
    let orphan = issue(&s, &other.client_id, &other_secret).await;
    assert!(s.check_perm(&orphan, "catalog.read").await.allowed);
    store_sql(
        &s,
        &format!(
            "DELETE FROM oauth_clients WHERE client_id = '{}'",
            other.client_id
        ),
    )
    .await;
    assert!(s.check_perm(&orphan, "catalog.read").await.allowed);
    let r = explain(&s, ask(&orphan, "catalog.read")).await;
    let why = denied_at(&r, Reason::TokenRevoked, "credential");
    assert!(why.contains("client was deleted"), "{why}");
    assert!(r.cache.unwrap().differs);

    // The signing key removed from the store (after a rotation, so that
    // the server still has one to sign with): the replica's keyring still
    // verifies the token, the store's keys do not.
    let (c3, secret3) = client(&s).await;
    let old = issue(&s, &c3.client_id, &secret3).await;
    assert!(s.check_perm(&old, "catalog.read").await.allowed);
    let old_kid = header(&old)["kid"].as_str().unwrap().to_owned();
    tokens(&s)
        .rotate_signing_key(s.admin(pb::RotateSigningKeyRequest {
            algorithm: String::new(),
        }))
        .await
        .unwrap();
    store_sql(
        &s,
        &format!("DELETE FROM signing_keys WHERE kid = '{old_kid}'"),
    )
    .await;
    let r = explain(&s, ask(&old, "catalog.read")).await;
    denied_at(&r, Reason::TokenKeyUnknown, "credential");
    let cache = r.cache.unwrap();
    assert!(
        cache.cached && cache.allowed && cache.differs,
        "this replica still trusts the token: {cache:?}"
    );
    assert!(s.check_perm(&old, "catalog.read").await.allowed);
    s.stop().await;
}

backend_tests!(
    explain_names_each_token_reason,
    explain_verifies_tokens_from_the_store,
);
