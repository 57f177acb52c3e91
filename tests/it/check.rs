//! CheckService: every step of the decision, one reason at a time.

use std::collections::HashMap;

use latchkey::crypto::keyfmt;
use latchkey::pb;
use pb::Reason;

use crate::backend_tests;
use crate::common::{Backend, TestServer, key_request, reason};

fn ctx(client_ip: &str, origin: &str, headers: &[(&str, &str)]) -> Option<pb::RequestContext> {
    Some(pb::RequestContext {
        client_ip: client_ip.into(),
        origin: origin.into(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<HashMap<_, _>>(),
        ..Default::default()
    })
}

async fn allowed_returns_the_principal(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (key, secret) = s
        .simple_key("PRIME", &["feedback.read", "webhooks.*"])
        .await;
    for credential in [
        secret.clone(),
        format!("Bearer {secret}"),
        format!("bearer {secret}"),
    ] {
        let r = s.check_perm(&credential, "feedback.read").await;
        assert!(r.allowed, "{credential:?}: {r:?}");
        assert_eq!(reason(&r), Reason::Allowed);
        let p = r.principal.unwrap();
        assert_eq!(p.account_id, key.account_id);
        assert_eq!(p.key_id, key.id);
        assert_eq!(p.mode, pb::Mode::Test as i32);
        assert_eq!(p.plan, "PRIME");
        assert_eq!(p.scopes, ["feedback.read", "webhooks.*"]);
    }
    assert!(s.check_perm(&secret, "webhooks.manage").await.allowed);
    // No permission asked: authentication only.
    assert!(s.check_perm(&secret, "").await.allowed);
    // The credential may come as the authorization header instead.
    let r = s
        .check(pb::CheckRequest {
            permission: "feedback.read".into(),
            context: ctx("", "", &[("authorization", &format!("Bearer {secret}"))]),
            ..Default::default()
        })
        .await;
    assert!(r.allowed);
    s.stop().await;
}

async fn credential_problems_are_named(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, secret) = s.simple_key("PRIME", &["*"]).await;
    assert_eq!(
        reason(&s.check_perm("", "feedback.read").await),
        Reason::CredentialMissing
    );
    assert_eq!(
        reason(&s.check_perm("not-a-key", "feedback.read").await),
        Reason::CredentialMalformed
    );
    // One character off: the checksum catches it before any lookup.
    let mut typo = secret.clone().into_bytes();
    let i = typo.len() - 10;
    typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let r = s.check_perm(&typo, "feedback.read").await;
    assert_eq!(reason(&r), Reason::CredentialMalformed);
    assert!(r.message.contains("checksum"), "{}", r.message);
    assert!(r.principal.is_none());
    // Well-formed but never issued.
    let stranger = keyfmt::generate("lk", "test", "sk").unwrap();
    assert_eq!(
        reason(&s.check_perm(stranger.expose(), "feedback.read").await),
        Reason::CredentialUnknown
    );
    // Another deployment's prefix.
    let foreign = keyfmt::generate("bk", "test", "sk").unwrap();
    assert_eq!(
        reason(&s.check_perm(foreign.expose(), "feedback.read").await),
        Reason::CredentialMalformed
    );
    s.stop().await;
}

/// A valid key is never trimmed or cleaned into working: surrounding
/// whitespace, CR, LF, any control character, or a scheme other than
/// exactly `Bearer ` is malformed, in the field and in the header alike.
async fn credentials_are_never_normalised(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, secret) = s.simple_key("PRIME", &["*"]).await;
    for bad in [
        format!(" {secret}"),
        format!("{secret} "),
        format!("{secret}\r\n"),
        format!("{secret}\n"),
        format!("\t{secret}"),
        format!("{secret}\0"),
        format!("{secret}\u{1b}"),
        format!("Bearer  {secret}"),
        format!("Bearer\t{secret}"),
        format!(" Bearer {secret}"),
        format!("Bearer Bearer {secret}"),
        format!("{secret},{secret}"),
    ] {
        let r = s.check_perm(&bad, "feedback.read").await;
        assert_eq!(reason(&r), Reason::CredentialMalformed, "{bad:?}: {r:?}");
        assert!(r.principal.is_none());
        assert!(!r.message.contains(&secret), "{}", r.message);
        let r = s
            .check(pb::CheckRequest {
                permission: "feedback.read".into(),
                context: ctx("", "", &[("authorization", &bad)]),
                ..Default::default()
            })
            .await;
        assert_eq!(reason(&r), Reason::CredentialMalformed, "header {bad:?}");
    }
    s.stop().await;
}

async fn modes_never_cross(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, test_key) = s.simple_key("PRIME", &["*"]).await;
    let req = |credential: &str, mode: pb::Mode| pb::CheckRequest {
        credential: credential.into(),
        permission: "products.read".into(),
        mode: mode.into(),
        ..Default::default()
    };
    assert_eq!(
        reason(&s.check(req(&test_key, pb::Mode::Live)).await),
        Reason::ModeMismatch
    );
    assert!(s.check(req(&test_key, pb::Mode::Test)).await.allowed);
    let live = s.live_account("PRIME").await;
    let mut live_req = key_request(&live.id, &["*"]);
    live_req.mode = pb::Mode::Live.into();
    let (_, live_key) = s.create_key(live_req).await;
    assert_eq!(
        reason(&s.check(req(&live_key, pb::Mode::Test)).await),
        Reason::ModeMismatch
    );
    assert!(s.check(req(&live_key, pb::Mode::Live)).await.allowed);
    s.stop().await;
}

async fn scopes_and_plan_both_bound_the_permission(backend: Backend) {
    let s = TestServer::start(backend).await;
    // DISCOVER covers stores, products and catalog; GO adds offers.
    let (_, discover_all) = s.simple_key("DISCOVER", &[]).await;
    assert!(s.check_perm(&discover_all, "products.read").await.allowed);
    let r = s.check_perm(&discover_all, "offers.create").await;
    assert_eq!(reason(&r), Reason::PlanNotEntitled);
    assert!(r.message.contains("DISCOVER"), "{}", r.message);
    let (_, go_all) = s.simple_key("GO", &[]).await;
    assert!(s.check_perm(&go_all, "offers.create").await.allowed);
    assert!(
        s.check_perm(&go_all, "chat.send").await.allowed,
        "GO extends ASSIST"
    );
    assert_eq!(
        reason(&s.check_perm(&go_all, "scan_go.checkin").await),
        Reason::PlanNotEntitled
    );
    // The key's scopes narrow what the plan allows.
    let (_, narrow) = s.simple_key("PRIME", &["products.read"]).await;
    assert_eq!(
        reason(&s.check_perm(&narrow, "products.write").await),
        Reason::PermissionDenied
    );
    // A tenant's key never reaches management permissions, even with `*` on PRIME.
    let (_, everything) = s.simple_key("PRIME", &["*"]).await;
    assert_eq!(
        reason(&s.check_perm(&everything, "admin.keys.write").await),
        Reason::PlanNotEntitled
    );
    // And an admin token is no tenant credential.
    assert_eq!(
        reason(&s.check_perm(&s.admin_token, "products.read").await),
        Reason::PermissionDenied
    );
    s.stop().await;
}

async fn ip_allowlist_and_trusted_proxies(backend: Backend) {
    let s = TestServer::start_with(backend, |c| {
        c.check.trusted_proxies = vec!["10.1.0.0/16".into()]
    })
    .await;
    let account = s.account("PRIME").await;
    let mut req = key_request(&account.id, &["feedback.read"]);
    req.allowed_cidrs = vec!["203.0.113.0/24".into(), "2001:db8::1".into()];
    let (_, secret) = s.create_key(req).await;
    let check = |ip: &'static str, xff: &'static str| {
        let secret = secret.clone();
        let s = &s;
        async move {
            let headers: Vec<(&str, &str)> = if xff.is_empty() {
                vec![]
            } else {
                vec![("x-forwarded-for", xff)]
            };
            let r = s
                .check(pb::CheckRequest {
                    credential: secret,
                    permission: "feedback.read".into(),
                    context: ctx(ip, "", &headers),
                    ..Default::default()
                })
                .await;
            reason(&r)
        }
    };
    assert_eq!(check("203.0.113.7", "").await, Reason::Allowed);
    assert_eq!(check("2001:db8::1", "").await, Reason::Allowed);
    assert_eq!(check("198.51.100.1", "").await, Reason::IpNotAllowed);
    assert_eq!(
        check("", "").await,
        Reason::IpNotAllowed,
        "no address, no entry"
    );
    // An untrusted peer cannot talk its way in with X-Forwarded-For.
    assert_eq!(
        check("198.51.100.1", "203.0.113.7").await,
        Reason::IpNotAllowed
    );
    // Through a trusted proxy, the rightmost untrusted hop is the client.
    assert_eq!(check("10.1.2.3", "203.0.113.7").await, Reason::Allowed);
    assert_eq!(
        check("10.1.2.3", "203.0.113.7, 198.51.100.1").await,
        Reason::IpNotAllowed
    );
    assert_eq!(
        check("10.1.2.3", "198.51.100.1, 203.0.113.7, 10.1.9.9").await,
        Reason::Allowed
    );
    s.stop().await;
}

/// `check.trusted_proxies` and `ext_authz.trusted_hops` are one rule:
/// `CheckService/Check` and Envoy's ext_authz tell the same client from
/// the same request, under either setting.
async fn one_client_ip_rule_for_both_check_apis(backend: Backend) {
    use crate::ext_authz::{Http, allow, denial, ext_check, rule};
    for (proxies, hops) in [(vec!["10.1.0.0/16".to_owned()], 0), (vec![], 1)] {
        let s = TestServer::start_with(backend, |c| {
            c.check.trusted_proxies = proxies.clone();
            c.ext_authz.trusted_hops = hops;
        })
        .await;
        rule(&s, "", "GET", "/v2/feedback", "feedback.read").await;
        let account = s.account("PRIME").await;
        let mut req = key_request(&account.id, &["feedback.read"]);
        req.allowed_cidrs = vec!["203.0.113.0/24".into()];
        let (_, secret) = s.create_key(req).await;
        for (peer, xff, allowed) in [
            ("10.1.2.3", "198.51.100.1, 203.0.113.7", true),
            ("10.1.2.3", "203.0.113.7, 198.51.100.1", false),
        ] {
            let r = s
                .check(pb::CheckRequest {
                    credential: secret.clone(),
                    permission: "feedback.read".into(),
                    context: ctx(peer, "", &[("x-forwarded-for", xff)]),
                    ..Default::default()
                })
                .await;
            assert_eq!(r.allowed, allowed, "Check {peer} {xff} {hops}: {r:?}");
            let mut http = Http::get("/v2/feedback")
                .bearer(&secret)
                .header("x-forwarded-for", xff);
            http.source = peer;
            let r = ext_check(&s, &http).await;
            if allowed {
                allow(&r);
            } else {
                assert_eq!(
                    denial(&r).1["reason"],
                    "IP_NOT_ALLOWED",
                    "{peer} {xff} {hops}"
                );
            }
        }
        s.stop().await;
    }
}

async fn forwarded_for_is_ignored_by_default(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let mut req = key_request(&account.id, &["feedback.read"]);
    req.allowed_cidrs = vec!["203.0.113.0/24".into()];
    let (_, secret) = s.create_key(req).await;
    let r = s
        .check(pb::CheckRequest {
            credential: secret,
            permission: "feedback.read".into(),
            context: ctx("10.1.2.3", "", &[("x-forwarded-for", "203.0.113.7")]),
            ..Default::default()
        })
        .await;
    assert_eq!(reason(&r), Reason::IpNotAllowed);
    s.stop().await;
}

async fn publishable_keys_only_from_their_origins(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let mut req = key_request(&account.id, &["products.read"]);
    req.kind = pb::KeyKind::Publishable.into();
    req.allowed_origins = vec!["https://shop.example.com".into(), "*.beep.example".into()];
    let (_, pk) = s.create_key(req).await;
    let check = |origin: &'static str, header: &'static str| {
        let pk = pk.clone();
        let s = &s;
        async move {
            let headers: Vec<(&str, &str)> = if header.is_empty() {
                vec![]
            } else {
                vec![("origin", header)]
            };
            reason(
                &s.check(pb::CheckRequest {
                    credential: pk,
                    permission: "products.read".into(),
                    context: ctx("", origin, &headers),
                    ..Default::default()
                })
                .await,
            )
        }
    };
    assert_eq!(check("https://shop.example.com", "").await, Reason::Allowed);
    assert_eq!(
        check("", "https://shop.example.com").await,
        Reason::Allowed,
        "from the Origin header"
    );
    assert_eq!(
        check("https://store1.beep.example", "").await,
        Reason::Allowed
    );
    assert_eq!(
        check("https://beep.example", "").await,
        Reason::OriginNotAllowed
    );
    assert_eq!(
        check("https://shop.example.com.evil.io", "").await,
        Reason::OriginNotAllowed
    );
    assert_eq!(
        check("http://shop.example.com", "").await,
        Reason::OriginNotAllowed
    );
    assert_eq!(
        check("", "").await,
        Reason::OriginNotAllowed,
        "no Origin, no entry"
    );
    s.stop().await;
}

backend_tests!(
    one_client_ip_rule_for_both_check_apis,
    credentials_are_never_normalised,
    allowed_returns_the_principal,
    credential_problems_are_named,
    modes_never_cross,
    scopes_and_plan_both_bound_the_permission,
    ip_allowlist_and_trusted_proxies,
    forwarded_for_is_ignored_by_default,
    publishable_keys_only_from_their_origins,
);
