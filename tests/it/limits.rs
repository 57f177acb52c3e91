//! Rate limits end to end: Check's last step and its `rate_limit`, plans,
//! modes and per-key overrides, ext_authz's 429 and headers, the
//! per-address failure budget, and Envoy's rate-limit service. The test
//! server's clock stands still unless a test moves it, so counts are exact.

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::HttpResponse;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code as RlsCode;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use latchkey::config::{Config, DescriptorConfig, EntryConfig};
use latchkey::pb;
use pb::Reason;
use tonic::Code;

use crate::backend_tests;
use crate::common::{Backend, TestServer, key_request, reason};
use crate::ext_authz::{Http, denial, ext_check, rule};

fn policy(requests: u64, per_seconds: u64, burst: u64) -> Option<pb::RateLimitPolicy> {
    Some(pb::RateLimitPolicy {
        requests,
        per_seconds,
        burst,
    })
}

/// A test-mode key on PRIME with its own limit.
async fn limited_key(s: &TestServer, limit: Option<pb::RateLimitPolicy>) -> (pb::Key, String) {
    let account = s.account("PRIME").await;
    s.create_key(pb::CreateKeyRequest {
        rate_limit: limit,
        ..key_request(&account.id, &["feedback.read"])
    })
    .await
}

fn limit(r: &pb::CheckResponse) -> (u64, u64, u64, u64) {
    let l = r
        .rate_limit
        .as_ref()
        .unwrap_or_else(|| panic!("no rate_limit: {r:?}"));
    (l.limit, l.remaining, l.reset_seconds, l.retry_after_seconds)
}

async fn check_counts_down_and_refuses_last(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (key, secret) = limited_key(&s, policy(3, 60, 0)).await;
    assert_eq!(key.rate_limit, policy(3, 60, 0), "the key says its limit");
    for remaining in [2, 1, 0] {
        let r = s.check_perm(&secret, "feedback.read").await;
        assert!(r.allowed, "{r:?}");
        assert_eq!(limit(&r).0, 3);
        assert_eq!(limit(&r).1, remaining);
    }
    let r = s.check_perm(&secret, "feedback.read").await;
    assert_eq!(reason(&r), Reason::RateLimited);
    assert!(!r.allowed);
    assert_eq!(r.principal.as_ref().unwrap().key_id, key.id);
    // GCRA: one request's worth (20 s) must drain; the whole limit in 60 s.
    assert_eq!(limit(&r), (3, 0, 60, 20));
    s.clock.advance_secs(19);
    assert_eq!(
        reason(&s.check_perm(&secret, "feedback.read").await),
        Reason::RateLimited
    );
    s.clock.advance_secs(1);
    assert!(s.check_perm(&secret, "feedback.read").await.allowed);
    assert_eq!(
        reason(&s.check_perm(&secret, "feedback.read").await),
        Reason::RateLimited
    );
    s.stop().await;
}

/// Rate limiting runs after every other step: a request denied for another
/// reason consumes nothing, yet its answer says where the limit stands.
async fn other_denials_consume_nothing(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, secret) = limited_key(&s, policy(2, 60, 0)).await;
    for _ in 0..5 {
        let r = s.check_perm(&secret, "webhooks.manage").await;
        assert_eq!(reason(&r), Reason::PermissionDenied);
        assert_eq!(limit(&r), (2, 2, 0, 0));
    }
    assert!(s.check_perm(&secret, "feedback.read").await.allowed);
    assert!(s.check_perm(&secret, "feedback.read").await.allowed);
    let r = s.check_perm(&secret, "feedback.read").await;
    assert_eq!(reason(&r), Reason::RateLimited);
    s.stop().await;
}

async fn test_mode_is_unlimited_and_live_mode_has_the_plans_limit(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, test) = s.simple_key("PRIME", &["feedback.read"]).await;
    for _ in 0..30 {
        let r = s.check_perm(&test, "feedback.read").await;
        assert!(r.allowed);
        assert!(r.rate_limit.is_none(), "test mode is unlimited: {r:?}");
    }
    let live = s.live_account("PRIME").await;
    let (_, secret) = s
        .create_key(pb::CreateKeyRequest {
            mode: pb::Mode::Live.into(),
            ..key_request(&live.id, &["feedback.read"])
        })
        .await;
    let r = s.check_perm(&secret, "feedback.read").await;
    assert!(r.allowed);
    assert_eq!(limit(&r).0, 6000, "PRIME's live limit: 6000/min");
    assert_eq!(limit(&r).1, 5999);
    s.stop().await;
}

async fn configured_plans_and_the_default_apply(backend: Backend) {
    let s = TestServer::start_with(backend, |c: &mut Config| {
        c.rate_limits.default = "2/min".into();
        let mut plans = latchkey::domain::permissions::default_plans();
        for p in &mut plans {
            p.test_rate_limit = (p.name == "GO").then(|| "1/h".to_owned());
            if p.name == "GROW" {
                p.rate_limit = None;
            }
        }
        c.plans = Some(plans);
    })
    .await;
    let (_, go) = s.simple_key("GO", &["offers.read"]).await;
    assert!(s.check_perm(&go, "offers.read").await.allowed);
    let r = s.check_perm(&go, "offers.read").await;
    assert_eq!(reason(&r), Reason::RateLimited);
    assert_eq!(limit(&r).3, 3600);
    let live = s.live_account("GROW").await;
    let (_, grow) = s
        .create_key(pb::CreateKeyRequest {
            mode: pb::Mode::Live.into(),
            ..key_request(&live.id, &["offers.read"])
        })
        .await;
    assert_eq!(
        limit(&s.check_perm(&grow, "offers.read").await).0,
        2,
        "the default"
    );
    s.stop().await;
}

/// The key's own policy beats the plan's; an empty policy clears it; a bad
/// one is refused with the field named and changes nothing.
async fn key_override_is_managed_and_validated(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (key, secret) = limited_key(&s, None).await;
    assert!(key.rate_limit.is_none());
    let mut keys = s.keys();
    let update = |limit| pb::UpdateKeyRequest {
        id: key.id.clone(),
        rate_limit: limit,
        ..Default::default()
    };
    let k = keys
        .update_key(s.admin(update(policy(1, 3600, 0))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(k.rate_limit, policy(1, 3600, 0));
    assert!(s.check_perm(&secret, "feedback.read").await.allowed);
    assert_eq!(
        reason(&s.check_perm(&secret, "feedback.read").await),
        Reason::RateLimited
    );
    for (bad, what) in [
        (policy(0, 60, 0), "requests"),
        (policy(10, 0, 0), "per_seconds"),
        (policy(10, 60 * 86_400, 0), "per_seconds"),
        (policy(2_000_000_000, 60, 0), "requests"),
        (policy(10, 60, 2_000_000_000), "burst"),
    ] {
        let err = keys.update_key(s.admin(update(bad))).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}");
        assert!(err.message().contains("rate_limit"), "{}", err.message());
        assert!(err.message().contains(what), "{}", err.message());
        let account = s.account("PRIME").await;
        let err = keys
            .create_key(s.admin(pb::CreateKeyRequest {
                rate_limit: bad,
                ..key_request(&account.id, &["feedback.read"])
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}");
    }
    let unchanged = keys
        .get_key(s.admin(pb::GetKeyRequest { id: key.id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        unchanged.rate_limit,
        policy(1, 3600, 0),
        "nothing half-applied"
    );
    // Unset leaves it; empty clears it (test mode: unlimited again).
    let k = keys
        .update_key(s.admin(update(None)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(k.rate_limit, policy(1, 3600, 0));
    let k = keys
        .update_key(s.admin(update(Some(pb::RateLimitPolicy::default()))))
        .await
        .unwrap()
        .into_inner();
    assert!(k.rate_limit.is_none());
    let r = s.check_perm(&secret, "feedback.read").await;
    assert!(r.allowed, "{r:?}");
    assert!(r.rate_limit.is_none());
    s.stop().await;
}

/// A token exchanged for a key counts against the key's limit: minting
/// fresh tokens never escapes it.
async fn exchanged_tokens_share_their_keys_limit(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, secret) = limited_key(&s, policy(3, 60, 0)).await;
    let tokens = pb::token_service_client::TokenServiceClient::new(s.channel.clone());
    let token = || {
        let secret = secret.clone();
        let mut tokens = tokens.clone();
        async move {
            tokens
                .exchange_secret(pb::ExchangeSecretRequest {
                    api_key: secret,
                    scopes: vec!["feedback.read".into()],
                })
                .await
                .unwrap()
                .into_inner()
                .access_token
        }
    };
    assert!(s.check_perm(&secret, "feedback.read").await.allowed);
    let first = token().await;
    assert!(s.check_perm(&first, "feedback.read").await.allowed);
    let second = token().await;
    assert!(s.check_perm(&second, "feedback.read").await.allowed);
    let third = token().await;
    let r = s.check_perm(&third, "feedback.read").await;
    assert_eq!(reason(&r), Reason::RateLimited, "{r:?}");
    assert_eq!(
        reason(&s.check_perm(&secret, "feedback.read").await),
        Reason::RateLimited
    );
    s.stop().await;
}

/// A client's tokens count against one limit, the client's (under its
/// plan): issuing fresh tokens never escapes it.
async fn client_tokens_share_their_clients_limit(backend: Backend) {
    let s = TestServer::start_with(backend, |c: &mut Config| {
        let mut plans = latchkey::domain::permissions::default_plans();
        for p in &mut plans {
            p.test_rate_limit = Some("2/h".to_owned());
        }
        c.plans = Some(plans);
    })
    .await;
    let account = s.account("PRIME").await;
    let tokens = pb::token_service_client::TokenServiceClient::new(s.channel.clone());
    let client = tokens
        .clone()
        .create_client(s.admin(pb::CreateClientRequest {
            account_id: account.id.clone(),
            mode: pb::Mode::Test.into(),
            name: "dashboard".into(),
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["catalog.read".into()],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let issue = || {
        let mut tokens = tokens.clone();
        let req = pb::IssueTokenRequest {
            client_id: client.client.as_ref().unwrap().client_id.clone(),
            client_secret: client.client_secret.clone(),
            scopes: vec![],
        };
        async move {
            tokens
                .issue_token(req)
                .await
                .unwrap()
                .into_inner()
                .access_token
        }
    };
    let first = issue().await;
    let r = s.check_perm(&first, "catalog.read").await;
    assert!(r.allowed, "{r:?}");
    assert_eq!(limit(&r).0, 2);
    assert!(s.check_perm(&issue().await, "catalog.read").await.allowed);
    let r = s.check_perm(&issue().await, "catalog.read").await;
    assert_eq!(reason(&r), Reason::RateLimited, "a fresh token: {r:?}");
    s.stop().await;
}

fn headers_of(h: &HashMap<String, String>, name: &str) -> String {
    h.get(name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name}: {h:?}"))
}

async fn ext_authz_answers_429_with_both_header_conventions(backend: Backend) {
    let s = TestServer::start(backend).await;
    rule(&s, "", "GET", "/v2/feedback", "feedback.read").await;
    let (_, secret) = limited_key(&s, policy(2, 60, 0)).await;
    let req = Http::get("/v2/feedback").bearer(&secret);
    for remaining in ["1", "0"] {
        let r = ext_check(&s, &req).await;
        let Some(HttpResponse::OkResponse(ok)) = &r.http_response else {
            panic!("expected an allow: {r:?}");
        };
        // On the downstream response, so clients can slow down in time.
        let add: HashMap<String, String> = ok
            .response_headers_to_add
            .iter()
            .map(|h| {
                let h = h.header.as_ref().unwrap();
                (h.key.clone(), h.value.clone())
            })
            .collect();
        assert_eq!(headers_of(&add, "x-ratelimit-limit"), "2");
        assert_eq!(headers_of(&add, "x-ratelimit-remaining"), remaining);
        assert_eq!(headers_of(&add, "ratelimit-policy"), "\"key\";q=2;w=60");
        assert!(headers_of(&add, "ratelimit").starts_with(&format!("\"key\";r={remaining};t=")));
        assert!(!add.contains_key("retry-after"));
    }
    let r = ext_check(&s, &req).await;
    let (status, body, headers) = denial(&r);
    assert_eq!(status, 429);
    assert_eq!(body["reason"], "RATE_LIMITED");
    assert_eq!(body["error"], "too_many_requests");
    assert_eq!(r.status.as_ref().unwrap().code, 8, "RESOURCE_EXHAUSTED");
    assert_eq!(headers_of(&headers, "retry-after"), "30");
    assert_eq!(headers_of(&headers, "x-ratelimit-limit"), "2");
    assert_eq!(headers_of(&headers, "x-ratelimit-remaining"), "0");
    assert_eq!(headers_of(&headers, "x-ratelimit-reset"), "60");
    assert_eq!(headers_of(&headers, "ratelimit-policy"), "\"key\";q=2;w=60");
    assert_eq!(headers_of(&headers, "ratelimit"), "\"key\";r=0;t=60");
    // An unlimited key's answers carry none of it.
    let (_, free) = limited_key(&s, None).await;
    let r = ext_check(&s, &Http::get("/v2/feedback").bearer(&free)).await;
    let Some(HttpResponse::OkResponse(ok)) = &r.http_response else {
        panic!("expected an allow: {r:?}");
    };
    assert!(ok.response_headers_to_add.is_empty());
    s.stop().await;
}

fn from(ip: &str) -> Option<pb::RequestContext> {
    Some(pb::RequestContext {
        client_ip: ip.into(),
        ..Default::default()
    })
}

/// Failed authentications are budgeted per client address: past it, that
/// address is refused before any lookup — even with a valid key — while the
/// key's owner, elsewhere, is never locked out.
async fn failures_cool_down_the_address_and_only_it(backend: Backend) {
    let s = TestServer::start_with(backend, |c: &mut Config| {
        c.rate_limits.failed_auth = "5/min".into();
        c.rate_limits.failed_auth_cooldown_seconds = 120;
    })
    .await;
    let (_, secret) = limited_key(&s, None).await;
    let stranger = latchkey::crypto::keyfmt::generate("lk", "test", "sk")
        .unwrap()
        .expose()
        .clone();
    let attempt = |credential: &str, ip: &str| pb::CheckRequest {
        credential: credential.into(),
        permission: "feedback.read".into(),
        context: from(ip),
        ..Default::default()
    };
    for bad in [
        stranger.as_str(),
        "lk_test_sk_garbage",
        stranger.as_str(),
        "x",
        stranger.as_str(),
    ] {
        let r = s.check(attempt(bad, "192.0.2.66")).await;
        assert!(
            matches!(
                reason(&r),
                Reason::CredentialUnknown | Reason::CredentialMalformed
            ),
            "{r:?}"
        );
    }
    let r = s.check(attempt(&secret, "192.0.2.66")).await;
    assert_eq!(reason(&r), Reason::TooManyFailures, "{r:?}");
    assert!(r.principal.is_none(), "no lookup was made");
    assert!(limit(&r).3 > 120);
    // The owner, from their own address, is unaffected.
    assert!(s.check(attempt(&secret, "198.51.100.7")).await.allowed);
    // An allowed request never counts; nor does a refusal for a known key.
    for _ in 0..10 {
        assert_eq!(
            reason(&s.check(attempt(&secret, "198.51.100.8")).await),
            Reason::Allowed
        );
    }
    s.clock.advance_secs(119);
    assert_eq!(
        reason(&s.check(attempt(&secret, "192.0.2.66")).await),
        Reason::TooManyFailures
    );
    s.clock.advance_secs(13);
    assert!(
        s.check(attempt(&secret, "192.0.2.66")).await.allowed,
        "cool-down over"
    );
    // ext_authz: the same budget, a 429.
    rule(&s, "", "GET", "/v2/feedback", "feedback.read").await;
    let mut r = None;
    for _ in 0..6 {
        r = Some(ext_check(&s, &Http::get("/v2/feedback").bearer(&stranger)).await);
    }
    let (status, body, headers) = denial(r.as_ref().unwrap());
    assert_eq!(
        (status, body["reason"].as_str()),
        (429, Some("TOO_MANY_FAILURES"))
    );
    assert!(headers.contains_key("retry-after"));
    assert_eq!(
        headers_of(&headers, "ratelimit-policy"),
        "\"failed_auth\";q=5;w=60"
    );
    s.stop().await;
}

fn descriptor(entries: &[(&str, &str)]) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(k, v)| Entry {
                key: (*k).into(),
                value: (*v).into(),
            })
            .collect(),
        ..Default::default()
    }
}

async fn should_rate_limit(
    s: &TestServer,
    domain: &str,
    d: Vec<RateLimitDescriptor>,
) -> RateLimitResponse {
    RateLimitServiceClient::new(s.channel.clone())
        .should_rate_limit(RateLimitRequest {
            domain: domain.into(),
            descriptors: d,
            hits_addend: 0,
        })
        .await
        .unwrap()
        .into_inner()
}

fn login_limits(c: &mut Config) {
    c.rate_limits.descriptors = vec![DescriptorConfig {
        domain: "api".into(),
        entries: vec![
            EntryConfig {
                key: "remote_address".into(),
                value: None,
            },
            EntryConfig {
                key: "path".into(),
                value: Some("/login".into()),
            },
        ],
        requests: 3,
        per_seconds: 60,
        burst: 0,
    }];
}

/// Envoy's rate-limit service, asked through the envoy-types client as the
/// `ratelimit` filter asks: per distinct value, OVER_LIMIT with the headers.
async fn should_rate_limit_counts_descriptors(backend: Backend) {
    let s = TestServer::start_with(backend, login_limits).await;
    let login = |ip: &str| descriptor(&[("remote_address", ip), ("path", "/login")]);
    for remaining in [2, 1, 0] {
        let r = should_rate_limit(&s, "api", vec![login("10.0.0.7")]).await;
        assert_eq!(r.overall_code, RlsCode::Ok as i32, "{r:?}");
        assert_eq!(r.statuses[0].limit_remaining, remaining);
        assert_eq!(
            r.statuses[0]
                .current_limit
                .as_ref()
                .unwrap()
                .requests_per_unit,
            3
        );
    }
    let r = should_rate_limit(&s, "api", vec![login("10.0.0.7")]).await;
    assert_eq!(r.overall_code, RlsCode::OverLimit as i32);
    assert_eq!(r.statuses[0].code, RlsCode::OverLimit as i32);
    let h: HashMap<_, _> = r
        .response_headers_to_add
        .iter()
        .map(|h| (h.key.as_str(), h.value.as_str()))
        .collect();
    assert_eq!(h.get("retry-after"), Some(&"20"), "{h:?}");
    assert_eq!(h.get("x-ratelimit-remaining"), Some(&"0"));
    assert_eq!(h.get("ratelimit-policy"), Some(&"\"descriptor\";q=3;w=60"));
    // Another address has its own count; other paths and domains none.
    let r = should_rate_limit(&s, "api", vec![login("10.0.0.8")]).await;
    assert_eq!(r.overall_code, RlsCode::Ok as i32);
    let other = descriptor(&[("remote_address", "10.0.0.7"), ("path", "/search")]);
    let r = should_rate_limit(&s, "api", vec![other.clone()]).await;
    assert_eq!(r.overall_code, RlsCode::Ok as i32);
    assert!(r.response_headers_to_add.is_empty());
    let r = should_rate_limit(&s, "web", vec![login("10.0.0.7")]).await;
    assert_eq!(r.overall_code, RlsCode::Ok as i32);
    // Any descriptor over its limit makes the whole answer OVER_LIMIT.
    let r = should_rate_limit(&s, "api", vec![other, login("10.0.0.7")]).await;
    assert_eq!(r.overall_code, RlsCode::OverLimit as i32);
    assert_eq!(r.statuses[0].code, RlsCode::Ok as i32);
    s.clock.advance_secs(20);
    let r = should_rate_limit(&s, "api", vec![login("10.0.0.7")]).await;
    assert_eq!(r.overall_code, RlsCode::Ok as i32, "refilled");
    let err = RateLimitServiceClient::new(s.channel.clone())
        .should_rate_limit(RateLimitRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("domain"));
    s.stop().await;
}

fn signed(credential: &str, ip: &str, signature: Option<String>) -> pb::CheckRequest {
    pb::CheckRequest {
        credential: credential.into(),
        permission: "feedback.read".into(),
        context: Some(pb::RequestContext {
            client_ip: ip.into(),
            method: "POST".into(),
            path: "/v2/feedback".into(),
            headers: signature
                .map(|v| ("x-latchkey-signature".to_owned(), v))
                .into_iter()
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn key_status(s: &TestServer, id: &str) -> pb::Key {
    s.keys()
        .get_key(s.admin(pb::GetKeyRequest { id: id.into() }))
        .await
        .unwrap()
        .into_inner()
}

/// A valid key that keeps arriving with bad signatures has leaked without
/// its signing secret: it is suspended, with the cause shown, until its
/// owner resumes it. Failures of strangers never suspend anything.
async fn bad_signatures_suspend_the_key_not_failures_from_an_address(backend: Backend) {
    let s = TestServer::start_with(backend, |c: &mut Config| {
        c.rate_limits.bad_signatures = "3/h".into();
        c.rate_limits.failed_auth = "1000/min".into();
    })
    .await;
    let (key, secret) = limited_key(&s, None).await;
    let (sid, signing_secret) = crate::signing::new_secret(&s, &key.account_id).await;
    crate::signing::set_key_signing(&s, &key.id, &sid)
        .await
        .unwrap();
    let good = |s: &TestServer| {
        let t = crate::signing::now_secs(s);
        crate::signing::request_header(&signing_secret, t, "POST", "/v2/feedback", b"")
    };
    assert!(
        s.check(signed(&secret, "192.0.2.1", Some(good(&s))))
            .await
            .allowed
    );
    // Strangers' failures, however many, from anywhere: the key is untouched.
    let stranger = latchkey::crypto::keyfmt::generate("lk", "test", "sk")
        .unwrap()
        .expose()
        .clone();
    for i in 0..20 {
        let r = s
            .check(signed(&stranger, &format!("192.0.2.{i}"), None))
            .await;
        assert_eq!(reason(&r), Reason::CredentialUnknown);
    }
    assert_eq!(
        key_status(&s, &key.id).await.status,
        pb::KeyStatus::Active as i32
    );
    // Two bad signatures: still active.
    let forged = Some("t=1,v1=00".to_owned());
    assert_eq!(
        reason(&s.check(signed(&secret, "192.0.2.50", None)).await),
        Reason::SignatureMissing
    );
    assert_eq!(
        reason(&s.check(signed(&secret, "192.0.2.51", forged.clone())).await),
        Reason::SignatureInvalid
    );
    assert!(
        s.check(signed(&secret, "192.0.2.1", Some(good(&s))))
            .await
            .allowed
    );
    // The third, from yet another address: the key is suspended.
    s.check(signed(&secret, "192.0.2.52", forged)).await;
    let suspended = crate::common::eventually("the key is suspended", || async {
        let k = key_status(&s, &key.id).await;
        (k.status == pb::KeyStatus::Suspended as i32).then_some(k)
    })
    .await;
    assert_eq!(suspended.suspension_cause, "auto_suspended_brute_force");
    let r = s.check(signed(&secret, "192.0.2.1", Some(good(&s)))).await;
    assert_eq!(reason(&r), Reason::KeySuspended);
    // The owner resumes it; the cause goes with the suspension.
    let resumed = s
        .keys()
        .resume_key(s.admin(pb::ResumeKeyRequest { id: key.id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resumed.status, pb::KeyStatus::Active as i32);
    assert_eq!(resumed.suspension_cause, "");
    assert!(
        s.check(signed(&secret, "192.0.2.1", Some(good(&s))))
            .await
            .allowed
    );
    s.stop().await;
}

backend_tests!(
    bad_signatures_suspend_the_key_not_failures_from_an_address,
    check_counts_down_and_refuses_last,
    other_denials_consume_nothing,
    test_mode_is_unlimited_and_live_mode_has_the_plans_limit,
    configured_plans_and_the_default_apply,
    key_override_is_managed_and_validated,
    exchanged_tokens_share_their_keys_limit,
    client_tokens_share_their_clients_limit,
    ext_authz_answers_429_with_both_header_conventions,
    failures_cool_down_the_address_and_only_it,
    should_rate_limit_counts_descriptors,
);

/// Limits that cannot be parsed stop the start, naming the field.
#[test]
fn bad_limits_are_refused_at_start_up() {
    let bad = |tweak: &dyn Fn(&mut Config), field: &str| {
        let mut c = Config::default();
        tweak(&mut c);
        let err = c.validate().unwrap_err().to_string();
        assert!(err.starts_with(field), "{field}: {err}");
    };
    bad(
        &|c| c.rate_limits.default = "fast".into(),
        "rate_limits.default",
    );
    bad(
        &|c| c.rate_limits.default = "0/min".into(),
        "rate_limits.default",
    );
    bad(
        &|c| c.rate_limits.failed_auth = "10/week".into(),
        "rate_limits.failed_auth",
    );
    bad(
        &|c| c.rate_limits.failed_auth_cooldown_seconds = 0,
        "rate_limits.failed_auth_cooldown_seconds",
    );
    bad(
        &|c| {
            let mut plans = latchkey::domain::permissions::default_plans();
            plans[0].rate_limit = Some("1200 per minute".into());
            c.plans = Some(plans);
        },
        "plans.rate_limit",
    );
    bad(
        &|c| {
            let mut plans = latchkey::domain::permissions::default_plans();
            plans[1].test_rate_limit = Some("-5/s".into());
            c.plans = Some(plans);
        },
        "plans.test_rate_limit",
    );
    bad(
        &|c| {
            login_limits(c);
            c.rate_limits.descriptors[0].per_seconds = 0;
        },
        "rate_limits.descriptors",
    );
    bad(
        &|c| {
            login_limits(c);
            c.rate_limits.descriptors[0].entries.clear();
        },
        "rate_limits.descriptors.entries",
    );
    // And the file form, exactly as the issue writes it, parses.
    let c: Config = toml::from_str(
        r#"
        [rate_limits]
        default = "1200/min"
        [[rate_limits.descriptors]]
        domain = "api"
        entries = [{ key = "remote_address" }, { key = "path", value = "/login" }]
        requests = 3
        per_seconds = 60
        [[plans]]
        name = "basic"
        permissions = ["feedback.read"]
        rate_limit = "20/s"
        test_rate_limit = "unlimited"
        "#,
    )
    .unwrap();
    c.validate().unwrap();
}
