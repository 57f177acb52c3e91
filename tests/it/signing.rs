//! HMAC signatures (issue 5): signing secrets, webhook headers, signed URLs,
//! signed requests through Check and ext_authz, one-time reveal links and
//! feed keys. Signatures are recomputed here from the written formats, and
//! the wire formats are also checked against vectors that a Python script
//! computed with nothing but `hmac` and `hashlib` (tests/vectors/).

use std::collections::HashMap;
use std::sync::Arc;

use latchkey::crypto::mac::hmac_sha256;
use latchkey::crypto::{hex, sha256};
use latchkey::domain::permissions::Scope;
use latchkey::domain::signing::formats as sigfmt;
use latchkey::pb;
use sea_orm::{ConnectionTrait, Database, Statement};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic::transport::Channel;

use crate::backend_tests;
use crate::common::{Backend, TestServer, bearer, key_request, reason};

type Signing = pb::signing_service_client::SigningServiceClient<Channel>;

fn signing(s: &TestServer) -> Signing {
    pb::signing_service_client::SigningServiceClient::new(s.channel.clone())
}

fn reveals(s: &TestServer) -> pb::reveal_service_client::RevealServiceClient<Channel> {
    pb::reveal_service_client::RevealServiceClient::new(s.channel.clone())
}

pub fn now_secs(s: &TestServer) -> i64 {
    use latchkey::ports::Clock;
    s.clock.now().div_euclid(1000)
}

fn mac_hex(key: &str, message: &[u8]) -> String {
    hex(&hmac_sha256(key.as_bytes(), &[message]))
}

/// A webhook header computed from the format alone.
fn webhook_header(keys: &[&str], t: i64, body: &[u8]) -> String {
    let mut h = format!("t={t}");
    for k in keys {
        let mut msg = format!("{t}.").into_bytes();
        msg.extend_from_slice(body);
        h.push_str(&format!(",v1={}", mac_hex(k, &msg)));
    }
    h
}

pub async fn new_secret(s: &TestServer, account_id: &str) -> (String, String) {
    new_secret_as(s, account_id, pb::SignedUrlForm::Unspecified).await
}

async fn new_secret_as(
    s: &TestServer,
    account_id: &str,
    url_form: pb::SignedUrlForm,
) -> (String, String) {
    let r = signing(s)
        .create_secret(s.admin(pb::CreateSecretRequest {
            account_id: account_id.into(),
            mode: pb::Mode::Test.into(),
            name: "webhooks".into(),
            url_form: url_form.into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(r.secret.starts_with("whsec_"), "{}", r.secret.len());
    (r.secret_id, r.secret)
}

async fn rotate(s: &TestServer, id: &str, overlap: Option<i64>) -> String {
    signing(s)
        .rotate_secret(s.admin(pb::RotateSecretRequest {
            secret_id: id.into(),
            overlap_seconds: overlap,
            reveal_link: false,
        }))
        .await
        .unwrap()
        .into_inner()
        .secret
}

async fn verify(s: &TestServer, id: &str, payload: &[u8], header: &str) -> pb::VerifyResponse {
    signing(s)
        .verify(s.admin(pb::VerifyRequest {
            secret_id: id.into(),
            payload: payload.to_vec(),
            header: header.into(),
        }))
        .await
        .unwrap()
        .into_inner()
}

async fn sign(s: &TestServer, id: &str, payload: &[u8]) -> String {
    signing(s)
        .sign(s.admin(pb::SignRequest {
            secret_id: id.into(),
            payload: payload.to_vec(),
        }))
        .await
        .unwrap()
        .into_inner()
        .header
}

async fn sign_url(s: &TestServer, id: &str, url: &str) -> String {
    signing(s)
        .sign_url(s.admin(pb::SignUrlRequest {
            secret_id: id.into(),
            url: url.into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .url
}

async fn verify_url(s: &TestServer, id: &str, url: &str) -> pb::VerifyResponse {
    signing(s)
        .verify_url(s.admin(pb::VerifyUrlRequest {
            secret_id: id.into(),
            url: url.into(),
        }))
        .await
        .unwrap()
        .into_inner()
}

fn assert_verdict(r: &pb::VerifyResponse, reason: &str, version: i64) {
    assert_eq!((r.reason.as_str(), r.version), (reason, version), "{r:?}");
    assert_eq!(r.valid, reason == "VALID");
}

// ---------------------------------------------------------------------------
// Known answers from tests/vectors/signatures.py (Python hmac + hashlib only)

#[test]
fn known_answer_vectors_from_python() {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("../vectors/signatures.json")).unwrap();
    let s = |v: &serde_json::Value| v.as_str().unwrap().to_owned();
    for w in v["webhook"].as_array().unwrap() {
        let keys: Vec<String> = w["keys"].as_array().unwrap().iter().map(s).collect();
        let key_bytes: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let body = s(&w["body"]);
        let header = sigfmt::sign_header(w["t"].as_i64().unwrap(), &key_bytes, body.as_bytes());
        assert_eq!(header, s(&w["header"]));
        let parsed = sigfmt::parse_header(&header).unwrap();
        for (i, k) in key_bytes.iter().enumerate() {
            assert_eq!(
                sigfmt::match_header(&parsed, &[k], body.as_bytes()),
                Some(0),
                "key {i}"
            );
        }
        assert_eq!(
            sigfmt::match_header(&parsed, &[b"other"], body.as_bytes()),
            None
        );
    }
    for u in v["signed_url"].as_array().unwrap() {
        let signed = sigfmt::sign_url(
            &s(&u["unsigned_url"]),
            s(&u["key"]).as_bytes(),
            u["now_millis"].as_i64().unwrap(),
        )
        .unwrap();
        assert_eq!(signed, s(&u["signed_url"]));
        let parsed = sigfmt::url_signature(&signed).unwrap();
        assert_eq!(parsed.canonical, s(&u["canonical"]));
        assert_eq!(hex(&parsed.signature), s(&u["signature"]));
        assert_eq!(parsed.timestamp, u["now_millis"].as_i64().unwrap());
    }
    for u in v["signed_url_strict"].as_array().unwrap() {
        let form = sigfmt::UrlForm::Strict;
        let signed = sigfmt::sign_url_as(
            form,
            &s(&u["unsigned_url"]),
            s(&u["key"]).as_bytes(),
            u["now_millis"].as_i64().unwrap(),
        )
        .unwrap();
        assert_eq!(signed, s(&u["signed_url"]));
        let parsed = sigfmt::url_signature_as(form, &signed).unwrap();
        assert_eq!(parsed.canonical, s(&u["canonical"]));
        assert_eq!(hex(&parsed.signature), s(&u["signature"]));
        assert_eq!(parsed.timestamp, u["now_millis"].as_i64().unwrap());
    }
    for r in v["signed_request"].as_array().unwrap() {
        let body = s(&r["body"]);
        let canonical = sigfmt::canonical_request(
            &s(&r["method"]),
            &s(&r["path_and_query"]),
            &sha256(body.as_bytes()),
        );
        assert_eq!(canonical, s(&r["canonical"]));
        let key = s(&r["key"]);
        let header = sigfmt::sign_header(
            r["t"].as_i64().unwrap(),
            &[key.as_bytes()],
            canonical.as_bytes(),
        );
        assert_eq!(header, s(&r["header"]));
    }
}

// ---------------------------------------------------------------------------
// Webhook signatures

async fn webhook_signatures_and_tolerance(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let (id, secret) = new_secret(&s, &account.id).await;
    let body = br#"{"event":"key.rotated","id":"evt_1"}"#;

    let t0 = now_secs(&s);
    let header = sign(&s, &id, body).await;
    // What a receiver with only an HMAC function computes.
    assert_eq!(header, webhook_header(&[&secret], t0, body));
    assert_verdict(&verify(&s, &id, body, &header).await, "VALID", 1);
    assert_verdict(
        &verify(&s, &id, b"{}", &header).await,
        "SIGNATURE_INVALID",
        0,
    );
    let other = webhook_header(&["whsec_someone_else"], t0, body);
    assert_verdict(&verify(&s, &id, body, &other).await, "SIGNATURE_INVALID", 0);

    // Replay window: 300 s either side, inclusive.
    s.clock.advance_secs(300);
    assert_verdict(&verify(&s, &id, body, &header).await, "VALID", 1);
    s.clock.advance_secs(1);
    assert_verdict(
        &verify(&s, &id, body, &header).await,
        "SIGNATURE_EXPIRED",
        0,
    );
    let future = webhook_header(&[&secret], now_secs(&s) + 301, body);
    assert_verdict(
        &verify(&s, &id, body, &future).await,
        "SIGNATURE_EXPIRED",
        0,
    );
    let edge = webhook_header(&[&secret], now_secs(&s) + 300, body);
    assert_verdict(&verify(&s, &id, body, &edge).await, "VALID", 1);

    assert_verdict(&verify(&s, &id, body, "").await, "SIGNATURE_MISSING", 0);
    let bad = verify(&s, &id, body, "t=abc,v1=00").await;
    assert_verdict(&bad, "SIGNATURE_MALFORMED", 0);
    assert!(bad.message.contains("unix seconds"), "{}", bad.message);
    s.stop().await;
}

async fn webhook_rotation_overlap(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let (id, old) = new_secret(&s, &account.id).await;
    let body = b"payload";
    let new = rotate(&s, &id, None).await;
    assert_ne!(new, old);

    // During the overlap (default 24 h) both versions are active: one v1 each, newest first.
    let t = now_secs(&s);
    assert_eq!(
        sign(&s, &id, body).await,
        webhook_header(&[&new, &old], t, body)
    );
    assert_verdict(
        &verify(&s, &id, body, &webhook_header(&[&old], t, body)).await,
        "VALID",
        1,
    );
    assert_verdict(
        &verify(&s, &id, body, &webhook_header(&[&new], t, body)).await,
        "VALID",
        2,
    );

    // After it, the old version neither signs nor verifies webhooks.
    s.clock.advance_secs(24 * 3600);
    let t = now_secs(&s);
    assert_eq!(sign(&s, &id, body).await, webhook_header(&[&new], t, body));
    let stale = verify(&s, &id, body, &webhook_header(&[&old], t, body)).await;
    assert_verdict(&stale, "SIGNATURE_INVALID", 0);
    assert_verdict(
        &verify(&s, &id, body, &webhook_header(&[&new], t, body)).await,
        "VALID",
        2,
    );

    // overlap 0: the previous version stops at once.
    let newest = rotate(&s, &id, Some(0)).await;
    assert_eq!(
        sign(&s, &id, body).await,
        webhook_header(&[&newest], t, body)
    );
    let listed = signing(&s)
        .list_secrets(s.admin(pb::ListSecretsRequest {
            account_id: account.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.secrets.len(), 1);
    assert_eq!(listed.secrets[0].current_version, 3);
    s.stop().await;
}

async fn concurrent_rotations_make_one_version(backend: Backend) {
    let s = Arc::new(TestServer::start(backend).await);
    let account = s.account("PRIME").await;
    let (id, _) = new_secret(&s, &account.id).await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let s = s.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            signing(&s)
                .rotate_secret(s.admin(pb::RotateSecretRequest {
                    secret_id: id,
                    ..Default::default()
                }))
                .await
                .map(|r| r.into_inner().secret)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(secret) => winners.push(secret),
            Err(e) => assert_eq!(e.code(), Code::Aborted, "{e:?}"),
        }
    }
    assert!(!winners.is_empty());
    // Every success made its own version, and the newest one signs.
    let listed = signing(&s)
        .list_secrets(s.admin(pb::ListSecretsRequest {
            account_id: account.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.secrets[0].current_version, 1 + winners.len() as i64);
    let t = now_secs(&s);
    let header = sign(&s, &id, b"x").await;
    assert!(
        winners
            .iter()
            .any(|w| header.starts_with(&webhook_header(&[w], t, b"x"))),
        "{header}"
    );
    Arc::try_unwrap(s).ok().unwrap().stop().await;
}

async fn inbound_webhooks(backend: Backend) {
    let s = TestServer::start_with(backend, |c| {
        c.signing.webhook_secret_header = Some("X-Webhook-Secret".into());
    })
    .await;
    let account = s.account("PRIME").await;
    let (id, secret) = new_secret(&s, &account.id).await;
    let body = br#"{"customer":42}"#.to_vec();
    let call = |headers: Vec<(&str, String)>, body: Vec<u8>| {
        let mut client = signing(&s);
        let req = s.admin(pb::VerifyWebhookRequest {
            secret_id: id.clone(),
            body,
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        });
        async move { client.verify_webhook(req).await.unwrap().into_inner() }
    };
    let t = now_secs(&s);
    let sig = webhook_header(&[&secret], t, &body);
    assert_verdict(
        &call(vec![("X-Webhook-Signature", sig.clone())], body.clone()).await,
        "VALID",
        1,
    );
    assert_verdict(
        &call(vec![("x-latchkey-signature", sig.clone())], body.clone()).await,
        "VALID",
        1,
    );
    assert_verdict(
        &call(
            vec![("x-webhook-signature", sig)],
            b"{\"customer\":43}".to_vec(),
        )
        .await,
        "SIGNATURE_INVALID",
        0,
    );
    // e-conomic style: the secret itself in a header, compared in constant time.
    assert_verdict(
        &call(vec![("x-webhook-secret", secret.clone())], body.clone()).await,
        "VALID",
        1,
    );
    assert_verdict(
        &call(
            vec![("x-webhook-secret", format!("{secret}x"))],
            body.clone(),
        )
        .await,
        "SIGNATURE_INVALID",
        0,
    );
    assert_verdict(
        &call(vec![("content-type", "application/json".into())], body).await,
        "SIGNATURE_MISSING",
        0,
    );
    s.stop().await;
}

// ---------------------------------------------------------------------------
// Signed URLs

async fn signed_urls_and_rotation(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let (id, old) = new_secret(&s, &account.id).await;
    let unsigned = "https://consent.example.com/flow?client_id=cl_1&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&state=xyz";
    let url = sign_url(&s, &id, unsigned).await;
    // Recompute from the consent-flow description: decoded values, sorted, joined.
    use latchkey::ports::Clock;
    let ts = sigfmt::format_iso8601(s.clock.now());
    let canonical =
        format!("client_id=cl_1&redirect_uri=https://app.example.com/cb&state=xyz&timestamp={ts}");
    assert!(
        url.ends_with(&format!(
            "&signature={}",
            mac_hex(&old, canonical.as_bytes())
        )),
        "{url}"
    );
    assert_verdict(&verify_url(&s, &id, &url).await, "VALID", 1);
    let tampered = url.replace("state=xyz", "state=xyZ");
    assert_verdict(
        &verify_url(&s, &id, &tampered).await,
        "SIGNATURE_INVALID",
        0,
    );
    let unsigned_only = verify_url(&s, &id, unsigned).await;
    assert_verdict(&unsigned_only, "SIGNATURE_MISSING", 0);

    // Rotation: links signed before it stay valid for their own 30 days.
    s.clock.advance_secs(3600);
    let new = rotate(&s, &id, Some(0)).await;
    assert_verdict(&verify_url(&s, &id, &url).await, "VALID", 1);
    let fresh = sign_url(&s, &id, unsigned).await;
    assert_verdict(&verify_url(&s, &id, &fresh).await, "VALID", 2);
    // A link made after the rotation with the old secret (a leaked one) is refused.
    s.clock.advance_secs(1);
    let forged_ts = sigfmt::format_iso8601(s.clock.now());
    let forged_canonical = format!(
        "client_id=cl_1&redirect_uri=https://app.example.com/cb&state=xyz&timestamp={forged_ts}"
    );
    let forged = format!(
        "{unsigned}&timestamp={}&signature={}",
        sigfmt::form_encode(&forged_ts),
        mac_hex(&old, forged_canonical.as_bytes())
    );
    assert_verdict(&verify_url(&s, &id, &forged).await, "SIGNATURE_INVALID", 0);
    let honest = forged.replace(
        &mac_hex(&old, forged_canonical.as_bytes()),
        &mac_hex(&new, forged_canonical.as_bytes()),
    );
    assert_verdict(&verify_url(&s, &id, &honest).await, "VALID", 2);

    // Validity: exactly 30 days after its timestamp is the last valid instant.
    s.clock.advance_secs(30 * 86_400 - 3601);
    assert_verdict(&verify_url(&s, &id, &url).await, "VALID", 1);
    s.clock.advance_secs(1);
    assert_verdict(&verify_url(&s, &id, &url).await, "SIGNATURE_EXPIRED", 0);
    assert_verdict(&verify_url(&s, &id, &fresh).await, "VALID", 2);

    // Bad input is refused, naming the problem.
    for (bad, needle) in [
        (url.as_str(), "timestamp"),
        ("https://x.example/flow?a=1#frag", "fragment"),
        ("https://x.example/flow?a=1&a=2", "more than once"),
        // A value that decodes to `&` or `=` could move bytes between
        // parameters under the seed's canonical form.
        ("https://x.example/flow?a=1%26b%3D2", "`&` or `=`"),
        ("https://x.example/flow?next=%2Fcb%3Fx%3D1", "`&` or `=`"),
    ] {
        let e = signing(&s)
            .sign_url(s.admin(pb::SignUrlRequest {
                secret_id: id.clone(),
                url: bad.into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}");
        assert!(e.message().contains(needle), "{bad}: {}", e.message());
    }
    // A bare link gets a query, and verifies.
    let bare = signing(&s)
        .sign_url(s.admin(pb::SignUrlRequest {
            secret_id: id.clone(),
            url: "https://x.example/flow".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .url;
    assert!(
        bare.starts_with("https://x.example/flow?timestamp="),
        "{bare}"
    );
    assert_verdict(&verify_url(&s, &id, &bare).await, "VALID", 2);
    // `a=1%26b%3D2` canonicalises as `a=1&b=2` would: never verified.
    let split = bare.replacen("?", "?a=1&b=2&", 1);
    let merged = bare.replacen("?", "?a=1%26b%3D2&", 1);
    assert_verdict(&verify_url(&s, &id, &split).await, "SIGNATURE_INVALID", 0);
    assert_verdict(
        &verify_url(&s, &id, &merged).await,
        "SIGNATURE_MALFORMED",
        0,
    );
    s.stop().await;
}

// ---------------------------------------------------------------------------
// The signed-URL form, chosen per secret (issue 10 item 5)

async fn update_form(
    s: &TestServer,
    id: &str,
    url_form: i32,
) -> Result<pb::SigningSecret, tonic::Status> {
    signing(s)
        .update_secret(s.admin(pb::UpdateSecretRequest {
            secret_id: id.into(),
            url_form,
        }))
        .await
        .map(tonic::Response::into_inner)
}

async fn listed_form(s: &TestServer, account_id: &str, id: &str) -> i32 {
    signing(s)
        .list_secrets(s.admin(pb::ListSecretsRequest {
            account_id: account_id.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .secrets
        .into_iter()
        .find(|x| x.id == id)
        .unwrap()
        .url_form
}

async fn strict_signed_urls_per_secret(backend: Backend) {
    use latchkey::ports::Clock;
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let strict_form = i32::from(pb::SignedUrlForm::Strict);
    let seed_form = i32::from(pb::SignedUrlForm::Seed);
    let (strict, strict_key) = new_secret_as(&s, &account.id, pb::SignedUrlForm::Strict).await;
    let (seed, _) = new_secret(&s, &account.id).await;
    // Unspecified at creation is the seed's form; the store keeps each.
    assert_eq!(listed_form(&s, &account.id, &strict).await, strict_form);
    assert_eq!(listed_form(&s, &account.id, &seed).await, seed_form);

    // A strict secret signs the strict form: recomputed from its description,
    // and a value holding `&` or `=` (refused by the seed form) is signed.
    let unsigned = "https://files.example.com/reports/q3.pdf?user=u1&next=%2Fcb%3Fx%3D1";
    let url = sign_url(&s, &strict, unsigned).await;
    let ts = sigfmt::format_iso8601(s.clock.now());
    let canonical = format!(
        "LATCHKEY-URL-V2\nhttps\nfiles.example.com\n/reports/q3.pdf\nnext=%2Fcb%3Fx%3D1&timestamp={}&user=u1",
        sigfmt::form_encode(&ts)
    );
    assert!(
        url.ends_with(&format!(
            "&signature={}",
            mac_hex(&strict_key, canonical.as_bytes())
        )),
        "{url}"
    );
    assert_verdict(&verify_url(&s, &strict, &url).await, "VALID", 1);
    // Moved to another host, path or scheme: refused under strict.
    for moved in [
        url.replace("files.example.com", "evil.example.com"),
        url.replace("/reports/q3.pdf", "/reports/q4.pdf"),
        url.replace("https://", "http://"),
        url.replace("user=u1", "user=u2"),
    ] {
        assert_verdict(
            &verify_url(&s, &strict, &moved).await,
            "SIGNATURE_INVALID",
            0,
        );
    }
    // A relative URL cannot be signed in the strict form.
    let e = signing(&s)
        .sign_url(s.admin(pb::SignUrlRequest {
            secret_id: strict.clone(),
            url: "/reports/q3.pdf?user=u1".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("url") && e.message().contains("absolute"),
        "{}",
        e.message()
    );

    // The same move passes under the seed's form, which signs the query only.
    let seed_url = sign_url(
        &s,
        &seed,
        "https://files.example.com/reports/q3.pdf?user=u1",
    )
    .await;
    assert_verdict(&verify_url(&s, &seed, &seed_url).await, "VALID", 1);
    for moved in [
        seed_url.replace("files.example.com", "evil.example.com"),
        seed_url.replace("/reports/q3.pdf", "/reports/q4.pdf"),
    ] {
        assert_verdict(&verify_url(&s, &seed, &moved).await, "VALID", 1);
    }

    // Switching the form: links of the other form are refused, saying why.
    let switched = update_form(&s, &seed, strict_form).await.unwrap();
    assert_eq!(switched.url_form, strict_form);
    assert_eq!(listed_form(&s, &account.id, &seed).await, strict_form);
    let r = verify_url(&s, &seed, &seed_url).await;
    assert_verdict(&r, "SIGNATURE_INVALID", 0);
    assert!(
        r.message.contains("seed form") && r.message.contains("strict form"),
        "{r:?}"
    );
    let strict_url = sign_url(
        &s,
        &seed,
        "https://files.example.com/reports/q3.pdf?user=u1",
    )
    .await;
    assert!(strict_url.contains("&signature="), "{strict_url}");
    assert_ne!(strict_url, seed_url);
    assert_verdict(&verify_url(&s, &seed, &strict_url).await, "VALID", 1);
    assert_verdict(
        &verify_url(
            &s,
            &seed,
            &strict_url.replace("files.example.com", "evil.example.com"),
        )
        .await,
        "SIGNATURE_INVALID",
        0,
    );
    // All versions share the form: rotation keeps it, old links still verify.
    s.clock.advance_secs(60);
    rotate(&s, &seed, Some(0)).await;
    assert_eq!(listed_form(&s, &account.id, &seed).await, strict_form);
    assert_verdict(&verify_url(&s, &seed, &strict_url).await, "VALID", 1);
    let v2 = sign_url(&s, &seed, "https://files.example.com/a?b=c%26d").await;
    assert_verdict(&verify_url(&s, &seed, &v2).await, "VALID", 2);
    // And back: the strict link is refused under the seed form, naming both.
    let back = update_form(&s, &seed, seed_form).await.unwrap();
    assert_eq!(back.url_form, seed_form);
    assert_verdict(&verify_url(&s, &seed, &seed_url).await, "VALID", 1);
    let r = verify_url(&s, &seed, &strict_url).await;
    assert_verdict(&r, "SIGNATURE_INVALID", 0);
    assert!(
        r.message.contains("strict form") && r.message.contains("seed form"),
        "{r:?}"
    );
    // The `&`-holding strict link fails to parse under seed, but is still named.
    let r = verify_url(&s, &seed, &v2).await;
    assert!(!r.valid && r.message.contains("strict form"), "{r:?}");

    // Bad input names the field and changes nothing.
    for bad in [0, 7] {
        let e = update_form(&s, &strict, bad).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}");
        assert!(e.message().starts_with("url_form"), "{}", e.message());
    }
    assert_eq!(listed_form(&s, &account.id, &strict).await, strict_form);
    let e = signing(&s)
        .create_secret(s.admin(pb::CreateSecretRequest {
            account_id: account.id.clone(),
            mode: pb::Mode::Test.into(),
            name: "n".into(),
            url_form: 9,
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("url_form"), "{}", e.message());
    let e = update_form(&s, "nope", strict_form).await.unwrap_err();
    assert!(e.message().starts_with("secret_id"), "{}", e.message());
    let e = update_form(&s, "sig_0123456789abcdef0123456789abcdef", strict_form)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{}", e.message());
    signing(&s)
        .revoke_secret(s.admin(pb::RevokeSecretRequest {
            secret_id: strict.clone(),
        }))
        .await
        .unwrap();
    let e = update_form(&s, &strict, seed_form).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
    // Unauthenticated callers change nothing.
    let e = signing(&s)
        .update_secret(pb::UpdateSecretRequest {
            secret_id: seed.clone(),
            url_form: strict_form,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert_eq!(listed_form(&s, &account.id, &seed).await, seed_form);
    s.stop().await;
}

async fn revoked_secrets_verify_nothing(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let (id, _) = new_secret(&s, &account.id).await;
    let header = sign(&s, &id, b"x").await;
    let url = sign_url(&s, &id, "/c?a=1").await;
    let revoked = signing(&s)
        .revoke_secret(s.admin(pb::RevokeSecretRequest {
            secret_id: id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.status, pb::SecretStatus::Revoked as i32);
    assert_verdict(&verify(&s, &id, b"x", &header).await, "SECRET_REVOKED", 0);
    assert_verdict(&verify_url(&s, &id, &url).await, "SECRET_REVOKED", 0);
    let e = signing(&s)
        .sign(s.admin(pb::SignRequest {
            secret_id: id.clone(),
            payload: b"x".to_vec(),
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = signing(&s)
        .rotate_secret(s.admin(pb::RotateSecretRequest {
            secret_id: id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    s.stop().await;
}

// ---------------------------------------------------------------------------
// Storage, admin permissions, bad input

async fn secrets_are_sealed_at_rest(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let (id, first) = new_secret(&s, &account.id).await;
    let second = rotate(&s, &id, None).await;
    let revealed = signing(&s)
        .rotate_secret(s.admin(pb::RotateSecretRequest {
            secret_id: id.clone(),
            reveal_link: true,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let token = revealed.reveal.unwrap().token;
    let db = Database::connect(&s.db.url).await.unwrap();
    let mut stored = Vec::new();
    for sql in [
        "SELECT sealed FROM signing_secret_versions",
        "SELECT sealed FROM reveals",
        "SELECT token_hash FROM reveals",
    ] {
        let rows = db
            .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap();
        for row in rows {
            let value: Vec<u8> = row
                .try_get_by_index::<Vec<u8>>(0)
                .or_else(|_| row.try_get_by_index::<String>(0).map(String::into_bytes))
                .unwrap();
            stored.push(value);
        }
    }
    assert_eq!(stored.len(), 3 + 1 + 1);
    for plain in [&first, &second, &token] {
        let needle = &plain.as_bytes()[6..20];
        assert!(
            !stored
                .iter()
                .any(|v| v.windows(needle.len()).any(|w| w == needle)),
            "plaintext found in the database"
        );
    }
    db.close().await.unwrap();
    s.stop().await;
}

async fn signing_admin_permissions_and_bad_input(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let (id, _) = new_secret(&s, &account.id).await;
    let verifier = s
        .running()
        .services
        .keys
        .create_operator_key(
            "verifier",
            vec![Scope::parse("admin.signing.verify").unwrap()],
            None,
        )
        .await
        .unwrap();
    let token = verifier.secret.expose().clone();
    let e = signing(&s)
        .sign(bearer(
            &token,
            pb::SignRequest {
                secret_id: id.clone(),
                payload: vec![],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("admin.signing.sign"));
    let header = sign(&s, &id, b"").await;
    let ok = signing(&s)
        .verify(bearer(
            &token,
            pb::VerifyRequest {
                secret_id: id.clone(),
                payload: vec![],
                header,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(ok.valid);
    let e = signing(&s)
        .list_secrets(pb::ListSecretsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    let create = |account_id: &str, mode: pb::Mode, name: &str| {
        let mut client = signing(&s);
        let req = s.admin(pb::CreateSecretRequest {
            account_id: account_id.into(),
            mode: mode.into(),
            name: name.into(),
            url_form: 0,
        });
        async move { client.create_secret(req).await.unwrap_err() }
    };
    let e = create("nope", pb::Mode::Test, "n").await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("account_id"), "{}", e.message());
    let e = create(&account.id, pb::Mode::Unspecified, "n").await;
    assert!(e.message().starts_with("mode"), "{}", e.message());
    let e = create(&account.id, pb::Mode::Test, " ").await;
    assert!(e.message().starts_with("name"), "{}", e.message());
    let e = create("acct_0123456789abcdef0123456789abcdef", pb::Mode::Test, "n").await;
    assert_eq!(e.code(), Code::NotFound);
    let e = create(&account.id, pb::Mode::Live, "n").await;
    assert_eq!(
        e.code(),
        Code::FailedPrecondition,
        "live mode is not active"
    );

    let e = signing(&s)
        .sign(s.admin(pb::SignRequest {
            secret_id: "key_0123".into(),
            payload: vec![],
        }))
        .await
        .unwrap_err();
    assert!(e.message().starts_with("secret_id"), "{}", e.message());
    let e = signing(&s)
        .rotate_secret(s.admin(pb::RotateSecretRequest {
            secret_id: id.clone(),
            overlap_seconds: Some(-1),
            reveal_link: false,
        }))
        .await
        .unwrap_err();
    assert!(
        e.message().starts_with("overlap_seconds"),
        "{}",
        e.message()
    );
    // Nothing changed: still version 1, still signing.
    assert_verdict(
        &verify(&s, &id, b"", &sign(&s, &id, b"").await).await,
        "VALID",
        1,
    );
    s.stop().await;
}

// ---------------------------------------------------------------------------
// One-time reveal

/// A bare HTTP/1.1 GET returning (status, head, body).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    http_call(addr, "GET", path, "*/*").await
}

async fn http_post(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    http_call(addr, "POST", path, "application/json").await
}

async fn http_call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    accept: &str,
) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    stream.read_to_string(&mut buf).await.unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

async fn reveal_links_redeem_once(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let (id, _) = new_secret(&s, &account.id).await;
    let rotate_with_link = || {
        let mut client = signing(&s);
        let req = s.admin(pb::RotateSecretRequest {
            secret_id: id.clone(),
            overlap_seconds: Some(0),
            reveal_link: true,
        });
        async move { client.rotate_secret(req).await.unwrap().into_inner() }
    };
    let r = rotate_with_link().await;
    assert!(r.secret.is_empty(), "no plaintext beside a reveal link");
    let link = r.reveal.unwrap();
    assert!(link.token.starts_with("lkrv_"));
    assert_eq!(link.url, format!("/reveal/{}", link.token));
    let expires = link.expires_at.unwrap().seconds;
    assert_eq!(expires, now_secs(&s) + 3600);

    let revealed = reveals(&s)
        .reveal_secret(pb::RevealSecretRequest {
            token: link.token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (revealed.kind.as_str(), revealed.subject_id.as_str()),
        ("signing_secret", id.as_str())
    );
    // The revealed secret is the new current version.
    let t = now_secs(&s);
    assert_eq!(
        sign(&s, &id, b"b").await,
        webhook_header(&[&revealed.secret], t, b"b")
    );
    let again = reveals(&s)
        .reveal_secret(pb::RevealSecretRequest { token: link.token })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);

    // Over HTTP: a GET (a link scanner, a chat preview) only shows the
    // confirmation page and redeems nothing; a POST redeems, once.
    let link = rotate_with_link().await.reveal.unwrap();
    let http = s.running().http_addr;
    for _ in 0..2 {
        let (status, head, body) = http_get(http, &link.url).await;
        assert_eq!(status, 200, "{body}");
        assert!(head.contains("cache-control: no-store"), "{head}");
        assert!(head.contains("content-type: text/html"), "{head}");
        assert!(body.contains("<form method=\"post\">"), "{body}");
        assert!(!body.contains("whsec_"), "{body}");
    }
    let (status, head, body) = http_post(http, &link.url).await;
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("cache-control: no-store"), "{head}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(json["secret"].as_str().unwrap().starts_with("whsec_"));
    let (status, head, _) = http_post(http, &link.url).await;
    assert_eq!(status, 404);
    assert!(head.contains("cache-control: no-store"), "{head}");
    // A browser gets the secret as a page.
    let link = rotate_with_link().await.reveal.unwrap();
    let (status, head, body) = http_call(http, "POST", &link.url, "text/html").await;
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("cache-control: no-store"), "{head}");
    assert!(body.contains("<pre id=\"secret\">whsec_"), "{body}");
    let (status, _, body) = http_post(http, "/reveal/lkrv_short").await;
    assert_eq!(status, 400);
    assert!(body.contains("not a reveal token"), "{body}");
    let e = reveals(&s)
        .reveal_secret(pb::RevealSecretRequest {
            token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::InvalidArgument, "token: is required")
    );

    // 60 minutes, then gone.
    let link = rotate_with_link().await.reveal.unwrap();
    s.clock.advance_secs(3600);
    assert_eq!(http_post(http, &link.url).await.0, 404);
    s.stop().await;
}

async fn concurrent_redemptions_have_one_winner(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (key, _) = s.simple_key("PRIME", &[]).await;
    let rotated = s
        .keys()
        .rotate_key(s.admin(pb::RotateKeyRequest {
            id: key.id.clone(),
            overlap_seconds: Some(0),
            reveal_link: true,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(rotated.secret.is_empty());
    let token = rotated.reveal.unwrap().token;
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = s.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                reveals(&s)
                    .reveal_secret(pb::RevealSecretRequest { token })
                    .await
                    .map(|r| r.into_inner().secret)
                    .map_err(|e| e.code())
            } else {
                let (status, _, body) =
                    http_post(s.running().http_addr, &format!("/reveal/{token}")).await;
                match status {
                    200 => Ok(
                        serde_json::from_str::<serde_json::Value>(&body).unwrap()["secret"]
                            .as_str()
                            .unwrap()
                            .to_owned(),
                    ),
                    404 => Err(Code::NotFound),
                    other => panic!("unexpected HTTP {other}: {body}"),
                }
            }
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(secret) => winners.push(secret),
            Err(code) => assert_eq!(code, Code::NotFound),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one redemption wins");
    // The winner got the successor key, and it works.
    let check = s.check_perm(&winners[0], "").await;
    assert!(check.allowed, "{check:?}");
    assert_eq!(check.principal.unwrap().key_id, rotated.key.unwrap().id);
    Arc::try_unwrap(s).ok().unwrap().stop().await;
}

// ---------------------------------------------------------------------------
// Signed requests through Check and ext_authz

pub fn request_header(key: &str, t: i64, method: &str, path: &str, body: &[u8]) -> String {
    let (p, q) = path.split_once('?').unwrap_or((path, ""));
    let mut pairs: Vec<(&str, &str)> = q
        .split('&')
        .filter(|x| !x.is_empty())
        .map(|x| x.split_once('=').unwrap_or((x, "")))
        .collect();
    pairs.sort();
    let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let canonical = format!(
        "LATCHKEY-HMAC-SHA256\n{}\n{p}\n{}\n{}",
        method.to_uppercase(),
        query.join("&"),
        hex(&sha256(body))
    );
    webhook_header(&[key], t, canonical.as_bytes())
}

fn signed_check(
    credential: &str,
    method: &str,
    path: &str,
    body: &[u8],
    sig: Option<String>,
) -> pb::CheckRequest {
    pb::CheckRequest {
        credential: credential.into(),
        permission: "feedback.write".into(),
        context: Some(pb::RequestContext {
            method: method.into(),
            path: path.into(),
            body_sha256: hex(&sha256(body)),
            headers: sig
                .map(|v| ("x-latchkey-signature".to_owned(), v))
                .into_iter()
                .collect::<HashMap<_, _>>(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub async fn set_key_signing(
    s: &TestServer,
    key_id: &str,
    secret_id: &str,
) -> Result<pb::SetKeySigningResponse, tonic::Status> {
    signing(s)
        .set_key_signing(s.admin(pb::SetKeySigningRequest {
            key_id: key_id.into(),
            secret_id: secret_id.into(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

async fn signed_requests_through_check(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let (key, credential) = s
        .create_key(key_request(&account.id, &["feedback.*"]))
        .await;
    let (sid, secret) = new_secret(&s, &account.id).await;
    let body = br#"{"rating":5}"#;
    let path = "/v2/responses?page=2&filter=a%2Fb";
    // Before the mark, no signature is needed.
    assert!(
        s.check(signed_check(&credential, "POST", path, body, None))
            .await
            .allowed
    );
    let marked = set_key_signing(&s, &key.id, &sid).await.unwrap();
    assert_eq!(marked.signing_secret_id, sid);
    let shown = s
        .keys()
        .get_key(s.admin(pb::GetKeyRequest { id: key.id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.signing_secret_id, sid);

    let r = s
        .check(signed_check(&credential, "POST", path, body, None))
        .await;
    assert_eq!(reason(&r), pb::Reason::SignatureMissing, "{r:?}");
    let t = now_secs(&s);
    let good = request_header(&secret, t, "POST", path, body);
    let r = s
        .check(signed_check(
            &credential,
            "POST",
            path,
            body,
            Some(good.clone()),
        ))
        .await;
    assert!(r.allowed, "{r:?}");
    // Query order does not matter; method, path, query and body do.
    let reordered = "/v2/responses?filter=a%2Fb&page=2";
    assert!(
        s.check(signed_check(
            &credential,
            "POST",
            reordered,
            body,
            Some(good.clone())
        ))
        .await
        .allowed
    );
    for (method, p, b) in [
        ("PUT", path, &body[..]),
        ("POST", "/v2/responses?page=3&filter=a%2Fb", &body[..]),
        ("POST", "/v2/other?page=2&filter=a%2Fb", &body[..]),
        ("POST", path, &b"{\"rating\":1}"[..]),
    ] {
        let r = s
            .check(signed_check(&credential, method, p, b, Some(good.clone())))
            .await;
        assert_eq!(reason(&r), pb::Reason::SignatureInvalid, "{method} {p}");
    }
    let r = s
        .check(signed_check(
            &credential,
            "POST",
            path,
            body,
            Some("v1=zz".into()),
        ))
        .await;
    assert_eq!(reason(&r), pb::Reason::SignatureInvalid);
    // Replay window.
    s.clock.advance_secs(301);
    let r = s
        .check(signed_check(&credential, "POST", path, body, Some(good)))
        .await;
    assert_eq!(reason(&r), pb::Reason::SignatureExpired, "{r:?}");
    // No request details at all: cannot be verified, so denied.
    let r = s.check_perm(&credential, "feedback.write").await;
    assert_eq!(reason(&r), pb::Reason::SignatureMissing);

    // Rotation: the old secret keeps working through the overlap, then stops.
    let new = rotate(&s, &sid, Some(600)).await;
    let t = now_secs(&s);
    for k in [&secret, &new] {
        let h = request_header(k, t, "POST", path, body);
        assert!(
            s.check(signed_check(&credential, "POST", path, body, Some(h)))
                .await
                .allowed
        );
    }
    s.clock.advance_secs(600);
    let t = now_secs(&s);
    let old_sig = request_header(&secret, t, "POST", path, body);
    let r = s
        .check(signed_check(&credential, "POST", path, body, Some(old_sig)))
        .await;
    assert_eq!(reason(&r), pb::Reason::SignatureInvalid);
    let new_sig = request_header(&new, t, "POST", path, body);
    assert!(
        s.check(signed_check(
            &credential,
            "POST",
            path,
            body,
            Some(new_sig.clone())
        ))
        .await
        .allowed
    );

    // Revoking the secret denies at once on this replica.
    signing(&s)
        .revoke_secret(s.admin(pb::RevokeSecretRequest {
            secret_id: sid.clone(),
        }))
        .await
        .unwrap();
    let r = s
        .check(signed_check(&credential, "POST", path, body, Some(new_sig)))
        .await;
    assert_eq!(reason(&r), pb::Reason::SignatureInvalid);

    // The secret must be the key's account's and mode's; clearing the mark works.
    let other = s.account("PRIME").await;
    let (foreign, _) = new_secret(&s, &other.id).await;
    let e = set_key_signing(&s, &key.id, &foreign).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("secret_id"));
    set_key_signing(&s, &key.id, "").await.unwrap();
    let r = s
        .check(signed_check(&credential, "POST", path, body, None))
        .await;
    assert!(r.allowed, "{r:?}");
    s.stop().await;
}

async fn signed_requests_through_ext_authz(backend: Backend) {
    use envoy_types::ext_authz::v3::pb::{CheckRequest, HttpResponse};
    use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;

    let s = TestServer::start(backend).await;
    pb::route_service_client::RouteServiceClient::new(s.channel.clone())
        .create_rule(s.admin(pb::CreateRuleRequest {
            host: String::new(),
            method: "POST".into(),
            path: "/v2/responses".into(),
            permission: "feedback.write".into(),
            case_insensitive: false,
        }))
        .await
        .unwrap();
    let account = s.account("PRIME").await;
    let (key, credential) = s
        .create_key(key_request(&account.id, &["feedback.*"]))
        .await;
    let (sid, secret) = new_secret(&s, &account.id).await;
    set_key_signing(&s, &key.id, &sid).await.unwrap();
    let body = br#"{"rating":5}"#;
    let envoy = |sig: Option<String>, body: &[u8]| {
        let mut headers =
            HashMap::from([("authorization".to_owned(), format!("Bearer {credential}"))]);
        if let Some(sig) = sig {
            headers.insert("x-latchkey-signature".to_owned(), sig);
        }
        CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(Request {
                    http: Some(HttpRequest {
                        method: "POST".into(),
                        path: "/v2/responses?b=1".into(),
                        host: "api.example".into(),
                        headers,
                        raw_body: body.to_vec(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    };
    let call = |req: CheckRequest| {
        let mut client = AuthorizationClient::new(s.channel.clone());
        async move { client.check(req).await.unwrap().into_inner() }
    };
    let denied_code =
        |r: &envoy_types::ext_authz::v3::pb::CheckResponse| match r.http_response.as_ref().unwrap()
        {
            HttpResponse::DeniedResponse(d) => {
                let json: serde_json::Value = serde_json::from_str(&d.body).unwrap();
                (
                    d.status.as_ref().unwrap().code,
                    json["reason"].as_str().unwrap_or_default().to_owned(),
                    d.body.clone(),
                )
            }
            other => panic!("expected a denial, got {other:?}"),
        };
    let (status, _, body_json) = denied_code(&call(envoy(None, body)).await);
    assert_eq!(status, 401);
    assert!(body_json.contains("SIGNATURE_MISSING"), "{body_json}");
    let sig = request_header(&secret, now_secs(&s), "POST", "/v2/responses?b=1", body);
    let ok = call(envoy(Some(sig.clone()), body)).await;
    assert!(
        matches!(ok.http_response, Some(HttpResponse::OkResponse(_))),
        "{ok:?}"
    );
    let (status, _, body_json) = denied_code(&call(envoy(Some(sig), b"{\"rating\":1}")).await);
    assert_eq!(status, 401);
    assert!(body_json.contains("SIGNATURE_INVALID"), "{body_json}");
    s.stop().await;
}

// ---------------------------------------------------------------------------
// Feed keys

fn feed_check(credential: &str, path: Option<&str>) -> pb::CheckRequest {
    pb::CheckRequest {
        credential: credential.into(),
        context: path.map(|p| pb::RequestContext {
            method: "GET".into(),
            path: p.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn feed_keys_only_under_their_prefix(backend: Backend) {
    let s = TestServer::start_with(backend, |c| {
        c.signing.feed_path_prefix = Some("/feeds/".into());
    })
    .await;
    let account = s.account("PRIME").await;
    let (key, feed) = s
        .create_key(pb::CreateKeyRequest {
            kind: pb::KeyKind::Feed.into(),
            ..key_request(&account.id, &[])
        })
        .await;
    assert_eq!(key.kind, pb::KeyKind::Feed as i32);
    assert!(feed.starts_with("lk_test_fk_"), "{feed}");
    let r = s
        .check(feed_check(&feed, Some("/feeds/products.xml?lang=de")))
        .await;
    assert!(r.allowed, "{r:?}");
    for path in [
        Some("/v2/responses"),
        Some("/feeds"),
        Some("/feeds/../v2/responses"),
        Some("/x/feeds/a"),
        None,
    ] {
        let r = s.check(feed_check(&feed, path)).await;
        assert_eq!(reason(&r), pb::Reason::PathNotAllowed, "{path:?}");
    }
    // A secret key is not confined.
    let (_, sk) = s.create_key(key_request(&account.id, &[])).await;
    assert!(
        s.check(feed_check(&sk, Some("/v2/responses")))
            .await
            .allowed
    );
    s.stop().await;

    // Without a configured prefix, feed keys are accepted nowhere.
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let (_, feed) = s
        .create_key(pb::CreateKeyRequest {
            kind: pb::KeyKind::Feed.into(),
            ..key_request(&account.id, &[])
        })
        .await;
    let r = s
        .check(feed_check(&feed, Some("/feeds/products.xml")))
        .await;
    assert_eq!(reason(&r), pb::Reason::PathNotAllowed);
    s.stop().await;
}

backend_tests!(
    webhook_signatures_and_tolerance,
    webhook_rotation_overlap,
    concurrent_rotations_make_one_version,
    inbound_webhooks,
    signed_urls_and_rotation,
    strict_signed_urls_per_secret,
    revoked_secrets_verify_nothing,
    secrets_are_sealed_at_rest,
    signing_admin_permissions_and_bad_input,
    reveal_links_redeem_once,
    concurrent_redemptions_have_one_winner,
    signed_requests_through_check,
    signed_requests_through_ext_authz,
    feed_keys_only_under_their_prefix,
);
