//! Explain of signed requests (the signing secret's versions read from the
//! store, not from the Check path's secret cache), of a store that fails
//! (denied, naming the step), and what Explain of a JWT or a signed request
//! leaves untouched: usage, rate limits, failure budgets, bad-signature
//! counts, last-used times.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use latchkey::pb;
use pb::{Reason, StepOutcome};

use super::{ask, decided, denied_at, explain, outcome, store_sql, with_context};
use crate::backend_tests;
use crate::common::{Backend, TestServer, eventually, key_request, reason};
use crate::signing::{new_secret, now_secs, request_header, set_key_signing};
use crate::tokens::{claims, client, issue, tokens};

const PATH: &str = "/v2/responses";

/// A POST to `PATH` with an empty body, signed with `signature` if given.
fn signed(credential: &str, signature: Option<String>) -> pb::CheckRequest {
    pb::CheckRequest {
        credential: credential.into(),
        permission: "feedback.write".into(),
        context: Some(pb::RequestContext {
            method: "POST".into(),
            path: PATH.into(),
            headers: signature
                .map(|v| ("x-latchkey-signature".to_owned(), v))
                .into_iter()
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn explained(request: pb::CheckRequest) -> pb::ExplainRequest {
    pb::ExplainRequest {
        request: Some(request),
        what_if: None,
    }
}

/// A key of `account` whose requests must be signed, with its signing secret.
async fn signing_key(s: &TestServer, account: &str) -> (pb::Key, String, String, String) {
    let (key, credential) = s.create_key(key_request(account, &["feedback.*"])).await;
    let (sid, secret) = new_secret(s, account).await;
    set_key_signing(s, &key.id, &sid).await.unwrap();
    (key, credential, sid, secret)
}

/// A secret revoked, and a version's overlap ended, behind the secret
/// cache's back: Check still verifies with the cached versions, Explain
/// reads the store, denies, and says the cached answer differs. A replayed
/// signature is SIGNATURE_EXPIRED at the same step.
async fn explain_reads_signing_secrets_from_the_store(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let (_, credential, sid, secret) = signing_key(&s, &account.id).await;
    let good = request_header(&secret, now_secs(&s), "POST", PATH, b"");
    // A Check caches what it loaded unless an invalidation ran meanwhile
    // (such as PostgreSQL's notices of the writes just made): checked again
    // until one has.
    let r = eventually("a Check's answer cached", || async {
        assert!(
            s.check(signed(&credential, Some(good.clone())))
                .await
                .allowed
        );
        let r = explain(&s, explained(signed(&credential, Some(good.clone())))).await;
        r.cache.as_ref().is_some_and(|c| c.cached).then_some(r)
    })
    .await;
    assert_eq!(decided(&r), Reason::Allowed, "{r:#?}");
    let step = r.steps.iter().find(|s| s.name == "signature").unwrap();
    assert_eq!(outcome(step), StepOutcome::Passed);
    assert!(
        step.detail.contains("version 1") && step.detail.contains("read from the store"),
        "{}",
        step.detail
    );
    assert!(!step.detail.contains(&good), "{}", step.detail);
    let cache = r.cache.unwrap();
    assert!(cache.cached && !cache.differs, "{cache:?}");

    store_sql(
        &s,
        &format!("UPDATE signing_secrets SET status = 'revoked' WHERE id = '{sid}'"),
    )
    .await;
    assert!(
        s.check(signed(&credential, Some(good.clone())))
            .await
            .allowed,
        "the secret cache has not heard of it"
    );
    let r = explain(&s, explained(signed(&credential, Some(good.clone())))).await;
    let why = denied_at(&r, Reason::SignatureInvalid, "signature");
    assert!(why.contains("revoked") && why.contains(&sid), "{why}");
    let cache = r.cache.unwrap();
    assert!(cache.cached && cache.allowed && cache.differs, "{cache:?}");

    // Rotated out behind the cache's back (what a rotation with no overlap
    // on another replica does to version 1).
    let (_, credential, sid, secret) = signing_key(&s, &account.id).await;
    let good = request_header(&secret, now_secs(&s), "POST", PATH, b"");
    assert!(
        s.check(signed(&credential, Some(good.clone())))
            .await
            .allowed
    );
    // A replayed signature first: out of the tolerance, from the store too.
    s.clock.advance_secs(301);
    let why = denied_at(
        &explain(&s, explained(signed(&credential, Some(good)))).await,
        Reason::SignatureExpired,
        "signature",
    );
    assert!(why.contains("300 seconds"), "{why}");
    let good = request_header(&secret, now_secs(&s), "POST", PATH, b"");
    assert!(
        s.check(signed(&credential, Some(good.clone())))
            .await
            .allowed
    );
    {
        use latchkey::ports::Clock;
        store_sql(
            &s,
            &format!(
                "UPDATE signing_secret_versions SET overlap_ends_at = {} WHERE secret_id = '{sid}'",
                s.clock.now()
            ),
        )
        .await;
    }
    assert!(
        s.check(signed(&credential, Some(good.clone())))
            .await
            .allowed
    );
    let r = explain(&s, explained(signed(&credential, Some(good)))).await;
    let why = denied_at(&r, Reason::SignatureInvalid, "signature");
    assert!(why.contains("active version"), "{why}");
    assert!(r.cache.unwrap().differs);
    s.stop().await;
}

/// `ALTER TABLE … RENAME`: the next read of that table fails on either
/// backend, as a store that has lost it would.
async fn rename(s: &TestServer, from: &str, to: &str) {
    store_sql(s, &format!("ALTER TABLE {from} RENAME TO {to}")).await;
}

/// A store that fails: Explain denies (INTERNAL_ERROR), never allows, and
/// names the step that could not read it, for keys, tokens and secrets.
async fn explain_denies_and_names_the_step_when_the_store_fails(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let (_, credential, _, secret) = signing_key(&s, &account.id).await;
    let (c, client_secret) = client(&s).await;
    let token = issue(&s, &c.client_id, &client_secret).await;
    let (_, plain) = s.simple_key("PRIME", &["feedback.read"]).await;
    let good = request_header(&secret, now_secs(&s), "POST", PATH, b"");
    // Each allowed while the store answers (this also caches the admin
    // token, so that the calls below are let in).
    let request = explained(signed(&credential, Some(good)));
    assert_eq!(
        decided(&explain(&s, request.clone()).await),
        Reason::Allowed
    );
    assert_eq!(
        decided(&explain(&s, ask(&token, "catalog.read")).await),
        Reason::Allowed
    );
    assert_eq!(
        decided(&explain(&s, ask(&plain, "feedback.read")).await),
        Reason::Allowed
    );

    rename(&s, "signing_secret_versions", "versions_away").await;
    let r = explain(&s, request).await;
    assert!(!r.decision.as_ref().unwrap().allowed);
    let why = denied_at(&r, Reason::InternalError, "signature");
    assert!(why.contains("could not be read"), "{why}");
    rename(&s, "versions_away", "signing_secret_versions").await;

    rename(&s, "revoked_tokens", "revoked_away").await;
    let r = explain(&s, ask(&token, "catalog.read")).await;
    denied_at(&r, Reason::InternalError, "credential");
    rename(&s, "revoked_away", "revoked_tokens").await;

    rename(&s, "signing_keys", "signing_keys_away").await;
    let r = explain(&s, ask(&token, "catalog.read")).await;
    let why = denied_at(&r, Reason::InternalError, "credential");
    assert!(why.contains("signing keys could not be read"), "{why}");
    rename(&s, "signing_keys_away", "signing_keys").await;

    rename(&s, "api_keys", "api_keys_away").await;
    let r = explain(&s, ask(&plain, "feedback.read")).await;
    let why = denied_at(&r, Reason::InternalError, "lookup");
    assert!(why.contains("could not be read"), "{why}");
    rename(&s, "api_keys_away", "api_keys").await;
    assert_eq!(
        decided(&explain(&s, ask(&plain, "feedback.read")).await),
        Reason::Allowed
    );
    s.stop().await;
}

/// Explain of a JWT and of signed requests writes and consumes nothing: no
/// rate limit, no usage or last-used time, no failed-authentication count,
/// no bad-signature count (so no automatic suspension).
async fn explain_of_tokens_and_signed_requests_writes_nothing(backend: Backend) {
    let s = TestServer::start_with(backend, |c| {
        c.rate_limits.failed_auth = "3/min".into();
        c.rate_limits.failed_auth_cooldown_seconds = 120;
        c.rate_limits.bad_signatures = "3/h".into();
    })
    .await;
    let account = s.account("PRIME").await;
    let mut req = key_request(&account.id, &["feedback.read"]);
    req.rate_limit = Some(pb::RateLimitPolicy {
        requests: 2,
        per_seconds: 3600,
        burst: 2,
    });
    let (key, api_key) = s.create_key(req).await;
    let exchanged = tokens(&s)
        .exchange_secret(pb::ExchangeSecretRequest {
            api_key,
            scopes: vec![],
        })
        .await
        .unwrap()
        .into_inner()
        .access_token;
    for _ in 0..5 {
        let r = explain(&s, ask(&exchanged, "feedback.read")).await;
        assert_eq!(decided(&r), Reason::Allowed, "{r:#?}");
        let limit = r.decision.unwrap().rate_limit.unwrap();
        assert_eq!((limit.limit, limit.remaining), (2, 2));
    }
    // Usage: once a later use is flushed, the key behind the explained
    // token still has no last-used time; Check then consumes and notes one.
    let (witness, witness_secret) = s
        .create_key(key_request(&account.id, &["feedback.read"]))
        .await;
    assert!(s.check_perm(&witness_secret, "feedback.read").await.allowed);
    let last_used = |id: String| {
        let s = &s;
        async move {
            s.keys()
                .get_key(s.admin(pb::GetKeyRequest { id }))
                .await
                .unwrap()
                .into_inner()
                .last_used_at
        }
    };
    eventually("the witness's last use is flushed", || {
        last_used(witness.id.clone())
    })
    .await;
    assert_eq!(last_used(key.id.clone()).await, None, "Explain noted a use");
    let r = s.check_perm(&exchanged, "feedback.read").await;
    assert_eq!(r.rate_limit.unwrap().remaining, 1, "Check consumes");
    eventually("Check's use is flushed", || last_used(key.id.clone())).await;

    // Failed authentications: forged tokens explained from an address
    // spend none of its budget; checked, they do.
    // A widened payload under the real signature.
    let mut widened = claims(&exchanged);
    widened["scope"] = "*".into();
    let (head, rest) = exchanged.split_once('.').unwrap();
    let sig = rest.rsplit_once('.').unwrap().1;
    let forged = format!("{head}.{}.{sig}", B64.encode(widened.to_string()));
    let from = |credential: &str| {
        with_context(
            ask(credential, "feedback.read"),
            pb::RequestContext {
                client_ip: "198.51.100.9".into(),
                ..Default::default()
            },
        )
    };
    for _ in 0..6 {
        let r = explain(&s, from(&forged)).await;
        denied_at(&r, Reason::TokenSignatureInvalid, "credential");
    }
    let r = explain(&s, from(&exchanged)).await;
    assert_eq!(
        (r.steps[0].name.as_str(), outcome(&r.steps[0])),
        ("failure_budget", StepOutcome::Passed),
        "{r:#?}"
    );
    for _ in 0..3 {
        s.check(from(&forged).request.unwrap()).await;
    }
    denied_at(
        &explain(&s, from(&exchanged)).await,
        Reason::TooManyFailures,
        "failure_budget",
    );

    // Bad signatures: explained, they count nothing towards suspension;
    // three checked ones suspend the key.
    let (signer, credential, _, secret) = signing_key(&s, &account.id).await;
    let status = |id: String| {
        let s = &s;
        async move {
            s.keys()
                .get_key(s.admin(pb::GetKeyRequest { id }))
                .await
                .unwrap()
                .into_inner()
                .status
        }
    };
    let bad = || Some(format!("t={},v1={}", now_secs(&s), "0".repeat(64)));
    for _ in 0..5 {
        let r = explain(&s, explained(signed(&credential, bad()))).await;
        denied_at(&r, Reason::SignatureInvalid, "signature");
    }
    for _ in 0..2 {
        assert_eq!(
            reason(&s.check(signed(&credential, bad())).await),
            Reason::SignatureInvalid
        );
    }
    let good = request_header(&secret, now_secs(&s), "POST", PATH, b"");
    assert!(
        s.check(signed(&credential, Some(good))).await.allowed,
        "Explain counted bad signatures"
    );
    assert_eq!(
        status(signer.id.clone()).await,
        pb::KeyStatus::Active as i32
    );
    s.check(signed(&credential, bad())).await;
    eventually("the third checked bad signature suspends the key", || {
        let status = status(signer.id.clone());
        async move { (status.await == pb::KeyStatus::Suspended as i32).then_some(()) }
    })
    .await;
    s.stop().await;
}

backend_tests!(
    explain_reads_signing_secrets_from_the_store,
    explain_denies_and_names_the_step_when_the_store_fails,
    explain_of_tokens_and_signed_requests_writes_nothing,
);
