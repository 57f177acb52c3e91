//! CheckService/Explain (issue 14 item 3): every step of the decision, read
//! from the store as it is now, writing nothing, and whether the cached
//! answer differs; the admin permission; bad input; the `latchkey explain` CLI.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Output, Stdio};

use latchkey::crypto::keyfmt;
use latchkey::domain::permissions::Scope;
use latchkey::pb;
use latchkey::ports::Clock;
use pb::{Reason, StepOutcome};
use sea_orm::{ConnectionTrait, Database};
use tonic::Code;

use crate::backend_tests;
use crate::common::{Backend, TestServer, bearer, eventually, key_request, reason};
use crate::signing::{new_secret, set_key_signing};

mod jwt;
mod signed;

// Every reason a CheckRequest can reach has an Explain test that asserts
// the reason and the step that decided it: here (`explain_names_the_step_
// behind_each_denial`: the credential, key status, mode, network, Origin,
// store, feed path, signature, operator, scope, plan and rate-limit
// reasons; `explain_writes_and_consumes_nothing`: TOO_MANY_FAILURES), in
// `jwt` (every TOKEN_* reason) and in `signed` (SIGNATURE_EXPIRED, and
// INTERNAL_ERROR at the lookup, credential and signature steps).
//
// Not reachable through Explain, so not tested here:
// - REQUEST_INVALID, PATH_INVALID, ROUTE_NOT_ALLOWED: decided by the route
//   gate of ext_authz and forward auth (`domain::gate`) before the Check
//   pipeline runs: a request without HTTP attributes, a path that cannot
//   be normalised, no route rule covering it. CheckService takes the
//   permission itself, not a route, and has no code for them
//   (`pb::Reason` maps them to UNSPECIFIED).
// - PROXY_NOT_TRUSTED: forward auth refuses an asker outside
//   `forward_auth.trusted_proxies` before building a CheckInput.
// - BODY_UNAVAILABLE: only forward auth, which never sees the body, marks
//   it withheld; a CheckRequest's context carries `body_sha256`, so its
//   signature can always be checked.

/// The step names, in the order the pipeline runs them.
const STEPS: [&str; 15] = [
    "failure_budget",
    "credential",
    "lookup",
    "status",
    "live_mode",
    "mode",
    "network",
    "origin",
    "store",
    "feed_path",
    "signature",
    "operator",
    "scopes",
    "plan",
    "rate_limit",
];

fn ask(credential: &str, permission: &str) -> pb::ExplainRequest {
    pb::ExplainRequest {
        request: Some(pb::CheckRequest {
            credential: credential.into(),
            permission: permission.into(),
            ..Default::default()
        }),
        what_if: None,
    }
}

fn with_context(mut req: pb::ExplainRequest, ctx: pb::RequestContext) -> pb::ExplainRequest {
    if let Some(r) = &mut req.request {
        r.context = Some(ctx);
    }
    req
}

async fn explain(s: &TestServer, req: pb::ExplainRequest) -> pb::ExplainResponse {
    s.checks().explain(s.admin(req)).await.unwrap().into_inner()
}

fn decided(r: &pb::ExplainResponse) -> Reason {
    reason(r.decision.as_ref().unwrap())
}

fn outcome(s: &pb::ExplainStep) -> StepOutcome {
    StepOutcome::try_from(s.outcome).unwrap()
}

/// Checks the shape every answer has and returns the failed step, if any.
fn failed_step(r: &pb::ExplainResponse) -> Option<&pb::ExplainStep> {
    let mut names: Vec<&str> = Vec::new();
    for s in &r.steps {
        if !names.contains(&s.name.as_str()) {
            names.push(&s.name);
        }
    }
    assert_eq!(names, STEPS, "every step, in order: {r:#?}");
    let failed: Vec<_> = r
        .steps
        .iter()
        .filter(|s| outcome(s) == StepOutcome::Failed)
        .collect();
    assert!(failed.len() <= 1, "one step decides: {r:#?}");
    if let Some(f) = failed.first() {
        let at = r.steps.iter().position(|s| std::ptr::eq(s, *f)).unwrap();
        for later in &r.steps[at + 1..] {
            assert_eq!(outcome(later), StepOutcome::Skipped, "{later:?}");
            assert!(later.detail.starts_with("not reached"), "{later:?}");
        }
    }
    failed.first().copied()
}

/// Asserts that `step` failed with `want`, and returns its detail.
fn denied_at(r: &pb::ExplainResponse, want: Reason, step: &str) -> String {
    assert_eq!(decided(r), want, "{r:#?}");
    assert!(!r.decision.as_ref().unwrap().allowed);
    let failed = failed_step(r).unwrap_or_else(|| panic!("no step failed: {r:#?}"));
    assert_eq!(failed.name, step, "{want:?}: {r:#?}");
    failed.detail.clone()
}

async fn revoke(s: &TestServer, id: &str) {
    s.keys()
        .revoke_key(s.admin(pb::RevokeKeyRequest { id: id.into() }))
        .await
        .unwrap();
}

async fn explain_names_the_step_behind_each_denial(backend: Backend) {
    let s = TestServer::start_with(backend, |c| {
        c.check.store_header = Some("x-store".into());
        c.signing.feed_path_prefix = Some("/feeds/".into());
    })
    .await;
    // Allowed: every step passed or did not apply.
    let (key, secret) = s.simple_key("PRIME", &["feedback.read"]).await;
    let r = explain(&s, ask(&secret, "feedback.read")).await;
    assert_eq!(decided(&r), Reason::Allowed, "{r:#?}");
    assert!(failed_step(&r).is_none());
    let detail = |name: &str| {
        r.steps
            .iter()
            .find(|s| s.name == name)
            .unwrap()
            .detail
            .clone()
    };
    // The credential is shown masked, never whole.
    assert!(
        detail("credential").contains("…"),
        "{}",
        detail("credential")
    );
    assert!(detail("lookup").contains(&key.id), "{}", detail("lookup"));
    assert!(detail("lookup").contains("the store (no cache)"));
    for step in &r.steps {
        assert!(!step.detail.contains(&secret), "{step:?}");
    }
    assert!(!format!("{r:?}").contains(&secret));

    assert_eq!(
        denied_at(
            &explain(&s, ask("", "x.read")).await,
            Reason::CredentialMissing,
            "credential"
        ),
        "no credential was presented"
    );
    denied_at(
        &explain(&s, ask("not-a-key", "x.read")).await,
        Reason::CredentialMalformed,
        "credential",
    );
    let stranger = keyfmt::generate("lk", "test", "sk").unwrap();
    denied_at(
        &explain(&s, ask(stranger.expose(), "x.read")).await,
        Reason::CredentialUnknown,
        "lookup",
    );
    // alg none: a token reason, decided while verifying the credential.
    let unsigned = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.";
    denied_at(
        &explain(&s, ask(unsigned, "x.read")).await,
        Reason::TokenUnsigned,
        "credential",
    );

    let (revoked, revoked_secret) = s.simple_key("PRIME", &["*"]).await;
    revoke(&s, &revoked.id).await;
    let detail = denied_at(
        &explain(&s, ask(&revoked_secret, "")).await,
        Reason::KeyRevoked,
        "status",
    );
    assert!(detail.contains("revoked"), "{detail}");
    let (suspended, suspended_secret) = s.simple_key("PRIME", &["*"]).await;
    s.keys()
        .suspend_key(s.admin(pb::SuspendKeyRequest {
            id: suspended.id.clone(),
        }))
        .await
        .unwrap();
    denied_at(
        &explain(&s, ask(&suspended_secret, "")).await,
        Reason::KeySuspended,
        "status",
    );
    let (rotated, rotated_secret) = s.simple_key("PRIME", &["*"]).await;
    s.keys()
        .rotate_key(s.admin(pb::RotateKeyRequest {
            id: rotated.id.clone(),
            overlap_seconds: Some(0),
            reveal_link: false,
        }))
        .await
        .unwrap();
    denied_at(
        &explain(&s, ask(&rotated_secret, "")).await,
        Reason::KeyRotated,
        "status",
    );

    // What-if mode: the request asked for none, the what-if for live.
    let r = explain(
        &s,
        pb::ExplainRequest {
            what_if: Some(pb::WhatIf {
                mode: pb::Mode::Live.into(),
                ..Default::default()
            }),
            ..ask(&secret, "feedback.read")
        },
    )
    .await;
    denied_at(&r, Reason::ModeMismatch, "mode");

    // Live mode withdrawn behind everyone's back: Explain reads the store.
    let live = s.live_account("PRIME").await;
    let mut live_req = key_request(&live.id, &["*"]);
    live_req.mode = pb::Mode::Live.into();
    let (_, live_secret) = s.create_key(live_req).await;
    assert!(s.check_perm(&live_secret, "feedback.read").await.allowed);
    store_sql(
        &s,
        &format!(
            "UPDATE accounts SET live_status = 'rejected' WHERE id = '{}'",
            live.id
        ),
    )
    .await;
    let r = explain(&s, ask(&live_secret, "feedback.read")).await;
    denied_at(&r, Reason::LiveModeInactive, "live_mode");
    assert!(r.cache.as_ref().unwrap().differs, "{r:#?}");

    let account = s.account("PRIME").await;
    let mut req = key_request(&account.id, &["feedback.read"]);
    req.allowed_cidrs = vec!["203.0.113.0/24".into()];
    let (_, cidr_secret) = s.create_key(req).await;
    let inside = with_context(
        ask(&cidr_secret, "feedback.read"),
        pb::RequestContext {
            client_ip: "203.0.113.7".into(),
            ..Default::default()
        },
    );
    assert_eq!(decided(&explain(&s, inside.clone()).await), Reason::Allowed);
    // What-if client address: overrides the request's.
    let outside = pb::ExplainRequest {
        what_if: Some(pb::WhatIf {
            client_ip: "198.51.100.1".into(),
            ..Default::default()
        }),
        ..inside
    };
    let detail = denied_at(&explain(&s, outside).await, Reason::IpNotAllowed, "network");
    assert!(
        detail.contains("198.51.100.1") && detail.contains("203.0.113.0/24"),
        "{detail}"
    );

    let mut req = key_request(&account.id, &["products.read"]);
    req.kind = pb::KeyKind::Publishable.into();
    req.allowed_origins = vec!["https://shop.example.com".into()];
    let (_, pk) = s.create_key(req).await;
    let from_shop = with_context(
        ask(&pk, "products.read"),
        pb::RequestContext {
            origin: "https://shop.example.com".into(),
            ..Default::default()
        },
    );
    assert_eq!(
        decided(&explain(&s, from_shop.clone()).await),
        Reason::Allowed
    );
    let r = explain(
        &s,
        pb::ExplainRequest {
            what_if: Some(pb::WhatIf {
                origin: "https://evil.example".into(),
                ..Default::default()
            }),
            ..from_shop
        },
    )
    .await;
    denied_at(&r, Reason::OriginNotAllowed, "origin");

    let r = explain(
        &s,
        with_context(
            ask(&secret, "feedback.read"),
            pb::RequestContext {
                headers: HashMap::from([("x-store".into(), "store-9".into())]),
                ..Default::default()
            },
        ),
    )
    .await;
    denied_at(&r, Reason::StoreNotAllowed, "store");

    let (_, feed) = s
        .create_key(pb::CreateKeyRequest {
            kind: pb::KeyKind::Feed.into(),
            ..key_request(&account.id, &[])
        })
        .await;
    let r = explain(
        &s,
        with_context(
            ask(&feed, ""),
            pb::RequestContext {
                method: "GET".into(),
                path: "/v2/responses?token=hidden".into(),
                ..Default::default()
            },
        ),
    )
    .await;
    let detail = denied_at(&r, Reason::PathNotAllowed, "feed_path");
    assert!(
        !detail.contains("hidden"),
        "queries are never shown: {detail}"
    );

    let (signed, signed_secret) = s
        .create_key(key_request(&account.id, &["feedback.*"]))
        .await;
    let (sid, _) = new_secret(&s, &account.id).await;
    set_key_signing(&s, &signed.id, &sid).await.unwrap();
    let r = explain(
        &s,
        with_context(
            ask(&signed_secret, "feedback.write"),
            pb::RequestContext {
                method: "POST".into(),
                path: "/v2/responses".into(),
                ..Default::default()
            },
        ),
    )
    .await;
    let detail = denied_at(&r, Reason::SignatureMissing, "signature");
    assert!(detail.contains(&sid), "{detail}");
    let forged = format!("t={},v1={}", s.clock.now() / 1000, "0".repeat(64));
    let r = explain(
        &s,
        with_context(
            ask(&signed_secret, "feedback.write"),
            pb::RequestContext {
                method: "POST".into(),
                path: "/v2/responses".into(),
                headers: HashMap::from([("x-latchkey-signature".into(), forged.clone())]),
                ..Default::default()
            },
        ),
    )
    .await;
    let detail = denied_at(&r, Reason::SignatureInvalid, "signature");
    assert!(
        !detail.contains(&forged),
        "signatures are never shown: {detail}"
    );

    let (_, narrow) = s.simple_key("PRIME", &["products.read"]).await;
    let detail = denied_at(
        &explain(&s, ask(&narrow, "products.write")).await,
        Reason::PermissionDenied,
        "scopes",
    );
    assert!(detail.contains("products.read"), "{detail}");
    denied_at(
        &explain(&s, ask(&s.admin_token, "products.read")).await,
        Reason::PermissionDenied,
        "operator",
    );
    let (_, discover) = s.simple_key("DISCOVER", &[]).await;
    let detail = denied_at(
        &explain(&s, ask(&discover, "offers.create")).await,
        Reason::PlanNotEntitled,
        "plan",
    );
    assert!(detail.contains("DISCOVER"), "{detail}");

    // What-if permissions: every one must be granted; each is reported.
    let r = explain(
        &s,
        pb::ExplainRequest {
            what_if: Some(pb::WhatIf {
                permissions: vec!["feedback.read".into(), "webhooks.manage".into()],
                ..Default::default()
            }),
            ..ask(&secret, "")
        },
    )
    .await;
    denied_at(&r, Reason::PermissionDenied, "scopes");
    let asked: Vec<_> = r
        .steps
        .iter()
        .filter(|s| s.name == "scopes" || s.name == "plan")
        .map(|s| {
            (
                s.name.as_str(),
                outcome(s),
                s.detail.contains("webhooks.manage"),
            )
        })
        .collect();
    assert_eq!(
        asked,
        [
            ("scopes", StepOutcome::Passed, false),
            ("plan", StepOutcome::Passed, false),
            ("scopes", StepOutcome::Failed, true),
        ]
    );

    let mut req = key_request(&account.id, &["feedback.read"]);
    req.rate_limit = Some(pb::RateLimitPolicy {
        requests: 1,
        per_seconds: 3600,
        burst: 1,
    });
    let (_, limited) = s.create_key(req).await;
    assert!(s.check_perm(&limited, "feedback.read").await.allowed);
    denied_at(
        &explain(&s, ask(&limited, "feedback.read")).await,
        Reason::RateLimited,
        "rate_limit",
    );

    // Time passes: the key expires (last, since the clock is shared).
    let (_, short) = s
        .create_key(pb::CreateKeyRequest {
            expires_in_seconds: Some(60),
            ..key_request(&account.id, &["*"])
        })
        .await;
    s.clock.advance_secs(120);
    denied_at(
        &explain(&s, ask(&short, "")).await,
        Reason::KeyExpired,
        "status",
    );
    s.stop().await;
}

/// Writes the store directly: no notification, no cache invalidation.
async fn store_sql(s: &TestServer, sql: &str) {
    let db = Database::connect(&s.db.url).await.unwrap();
    db.execute_unprepared(sql).await.unwrap();
    db.close().await.unwrap();
}

/// A key revoked behind the cache's back: Check still allows it from the
/// cache, Explain reads the store, denies, and says the cache would allow.
async fn explain_says_when_the_cache_is_stale(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (key, secret) = s.simple_key("PRIME", &["feedback.read"]).await;
    // Never checked: nothing cached.
    let r = explain(&s, ask(&secret, "feedback.read")).await;
    let cache = r.cache.unwrap();
    assert!(!cache.cached && !cache.differs, "{cache:?}");
    // A Check caches what it loaded unless an invalidation ran meanwhile
    // (such as PostgreSQL's notices of the writes just made): checked again
    // until one has.
    let r = eventually("a Check's answer cached", || async {
        assert!(s.check_perm(&secret, "feedback.read").await.allowed);
        let r = explain(&s, ask(&secret, "feedback.read")).await;
        r.cache.as_ref().is_some_and(|c| c.cached).then_some(r)
    })
    .await;
    let cache = r.cache.unwrap();
    assert!(cache.cached && cache.allowed && !cache.differs, "{cache:?}");

    store_sql(
        &s,
        &format!(
            "UPDATE api_keys SET status = 'revoked' WHERE id = '{}'",
            key.id
        ),
    )
    .await;
    assert!(
        s.check_perm(&secret, "feedback.read").await.allowed,
        "the cache has not heard of it"
    );
    let r = explain(&s, ask(&secret, "feedback.read")).await;
    denied_at(&r, Reason::KeyRevoked, "status");
    let cache = r.cache.unwrap();
    assert!(cache.cached && cache.allowed && cache.differs, "{cache:?}");
    assert_eq!(cache.reason, Reason::Allowed as i32);
    assert!(cache.detail.contains("stale"), "{}", cache.detail);
    // Explain fixed nothing either: it only looks.
    assert!(s.check_perm(&secret, "feedback.read").await.allowed);
    // What an operator then does -- revoke it again through the API --
    // repairs the stale entry, although the stored key is revoked already.
    revoke(&s, &key.id).await;
    assert!(
        !s.check_perm(&secret, "feedback.read").await.allowed,
        "a repeated revocation must drop the cached key"
    );

    // A revocation through the API invalidates the cache: no difference.
    let (other, other_secret) = s.simple_key("PRIME", &["feedback.read"]).await;
    assert!(s.check_perm(&other_secret, "feedback.read").await.allowed);
    revoke(&s, &other.id).await;
    let r = explain(&s, ask(&other_secret, "feedback.read")).await;
    denied_at(&r, Reason::KeyRevoked, "status");
    assert!(!r.cache.unwrap().differs);
    s.stop().await;
}

/// No usage, no rate-limit consumption, no failed-authentication count.
async fn explain_writes_and_consumes_nothing(backend: Backend) {
    let s = TestServer::start_with(backend, |c| {
        c.rate_limits.failed_auth = "3/min".into();
        c.rate_limits.failed_auth_cooldown_seconds = 120;
    })
    .await;
    let account = s.account("PRIME").await;
    let mut req = key_request(&account.id, &["feedback.read"]);
    req.rate_limit = Some(pb::RateLimitPolicy {
        requests: 2,
        per_seconds: 3600,
        burst: 2,
    });
    let (key, secret) = s.create_key(req).await;
    for _ in 0..5 {
        let r = explain(&s, ask(&secret, "feedback.read")).await;
        assert_eq!(decided(&r), Reason::Allowed, "{r:#?}");
        let limit = r.decision.unwrap().rate_limit.unwrap();
        assert_eq!((limit.limit, limit.remaining), (2, 2));
        let step = r.steps.iter().find(|s| s.name == "rate_limit").unwrap();
        assert_eq!(outcome(step), StepOutcome::Passed);
        assert!(step.detail.starts_with("2 of 2 left"), "{}", step.detail);
    }
    let r = s.check_perm(&secret, "feedback.read").await;
    assert_eq!(
        r.rate_limit.unwrap().remaining,
        1,
        "Check consumes, Explain did not"
    );

    // Usage: once a use checked after the explanations is flushed, the
    // explained key still has no last-used time.
    let (explained, explained_secret) = s
        .create_key(key_request(&account.id, &["feedback.read"]))
        .await;
    let (witness, witness_secret) = s
        .create_key(key_request(&account.id, &["feedback.read"]))
        .await;
    for _ in 0..3 {
        explain(&s, ask(&explained_secret, "feedback.read")).await;
    }
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
    assert_eq!(
        last_used(explained.id.clone()).await,
        None,
        "Explain noted a use"
    );
    assert!(last_used(key.id.clone()).await.is_some(), "Check noted one");

    // Failed authentications: explaining bad credentials from an address
    // spends none of its budget; checking them does.
    let stranger = keyfmt::generate("lk", "test", "sk").unwrap();
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
        explain(&s, from(stranger.expose())).await;
    }
    let r = explain(&s, from(&secret)).await;
    let budget = &r.steps[0];
    assert_eq!(
        (budget.name.as_str(), outcome(budget)),
        ("failure_budget", StepOutcome::Passed),
        "{r:#?}"
    );
    for _ in 0..3 {
        s.check(from(stranger.expose()).request.unwrap()).await;
    }
    let r = explain(&s, from(&secret)).await;
    denied_at(&r, Reason::TooManyFailures, "failure_budget");
    s.stop().await;
}

async fn explain_needs_its_admin_permission(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, secret) = s.simple_key("PRIME", &["*"]).await;
    let call = |token: Option<String>| {
        let s = &s;
        let secret = secret.clone();
        async move {
            let req = ask(&secret, "feedback.read");
            let req = match token {
                Some(t) => bearer(&t, req),
                None => tonic::Request::new(req),
            };
            s.checks().explain(req).await
        }
    };
    assert_eq!(call(None).await.unwrap_err().code(), Code::Unauthenticated);
    let token = |scope: &'static str| {
        let s = &s;
        async move {
            s.running()
                .services
                .keys
                .create_operator_key("ops", vec![Scope::parse(scope).unwrap()], None)
                .await
                .unwrap()
                .secret
                .expose()
                .clone()
        }
    };
    for scope in ["admin.check", "admin.keys.read"] {
        let e = call(Some(token(scope).await)).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{scope}: {e:?}");
        assert!(
            e.message().contains("admin.check.explain"),
            "{}",
            e.message()
        );
    }
    // A tenant's key is no admin token, whatever its scopes.
    let e = call(Some(secret.clone())).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(call(Some(token("admin.check.explain").await)).await.is_ok());
    s.stop().await;
}

async fn explain_refuses_bad_input(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, secret) = s.simple_key("PRIME", &["*"]).await;
    let refused = |req: pb::ExplainRequest, field: &'static str| {
        let s = &s;
        async move {
            let e = s.checks().explain(s.admin(req)).await.unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
            assert!(e.message().contains(field), "{field}: {}", e.message());
        }
    };
    refused(pb::ExplainRequest::default(), "request").await;
    refused(ask(&secret, "Not A Permission"), "request.permission").await;
    let what_if = |w: pb::WhatIf| pb::ExplainRequest {
        what_if: Some(w),
        ..ask(&secret, "feedback.read")
    };
    refused(
        what_if(pb::WhatIf {
            permissions: vec!["feedback.read".into(), "no way".into()],
            ..Default::default()
        }),
        "what_if.permissions",
    )
    .await;
    refused(
        what_if(pb::WhatIf {
            client_ip: "not-an-ip".into(),
            ..Default::default()
        }),
        "what_if.client_ip",
    )
    .await;
    refused(
        what_if(pb::WhatIf {
            mode: 42,
            ..Default::default()
        }),
        "what_if.mode",
    )
    .await;
    s.stop().await;
}

backend_tests!(
    explain_names_the_step_behind_each_denial,
    explain_says_when_the_cache_is_stale,
    explain_writes_and_consumes_nothing,
    explain_needs_its_admin_permission,
    explain_refuses_bad_input,
);

/// Runs `latchkey explain` with `credential` on stdin.
fn cli(server: &str, credential: &str, permission: &str, token: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    cmd.args([
        "explain",
        "--server",
        server,
        "--credential-stdin",
        "--permission",
        permission,
    ])
    .env_remove("LATCHKEY_ADMIN_TOKEN")
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if let Some(t) = token {
        cmd.env("LATCHKEY_ADMIN_TOKEN", t);
    }
    let mut child = cmd.spawn().unwrap();
    writeln!(child.stdin.take().unwrap(), "{credential}").unwrap();
    child.wait_with_output().unwrap()
}

/// `latchkey explain`: the credential on stdin, the admin token from the
/// environment, a readable table, the exit code says allowed or denied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_a_table_from_stdin() {
    let s = TestServer::start(Backend::Sqlite).await;
    let (key, secret) = s.simple_key("PRIME", &["feedback.read"]).await;
    let server = format!("http://{}", s.running().grpc_addr);
    let run = |permission: &'static str, token: Option<String>| {
        let (server, secret) = (server.clone(), secret.clone());
        tokio::task::spawn_blocking(move || cli(&server, &secret, permission, token.as_deref()))
    };
    let allowed = run("feedback.read", Some(s.admin_token.clone()))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&allowed.stdout);
    assert_eq!(
        allowed.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    assert!(stdout.starts_with("STEP"), "{stdout}");
    for step in STEPS {
        assert!(stdout.contains(step), "{step}: {stdout}");
    }
    assert!(stdout.contains(&key.id), "{stdout}");
    assert!(stdout.contains("decision: ALLOWED"), "{stdout}");
    assert!(!stdout.contains(&secret), "the credential is masked");

    let denied = run("webhooks.manage", Some(s.admin_token.clone()))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&denied.stdout);
    assert_eq!(denied.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("decision: DENIED (PERMISSION_DENIED)"),
        "{stdout}"
    );
    assert!(stdout.contains("FAILED"), "{stdout}");

    // No admin token: refused before anything is sent.
    let none = run("feedback.read", None).await.unwrap();
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("LATCHKEY_ADMIN_TOKEN"));

    // The credential is never an argument.
    let argv = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["explain", "--server", &server, "--permission", "x.read"])
        .output()
        .unwrap();
    assert_eq!(argv.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&argv.stderr).contains("--credential-stdin"));
    s.stop().await;
}
