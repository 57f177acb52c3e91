//! API key lifecycle through KeyService, observed through Check.

use latchkey::crypto::{hex, sha256};
use latchkey::pb;
use pb::Reason;
use sea_orm::{ConnectionTrait, Database, Statement};
use tonic::Code;

use crate::backend_tests;
use crate::common::{Backend, TestServer, key_request, reason};

const DAY: i64 = 86_400;

async fn created_key_is_shown_once_and_stored_hashed(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let (key, secret) = s
        .create_key(key_request(&account.id, &["feedback.read"]))
        .await;
    assert!(secret.starts_with("lk_test_sk_"), "{secret}");
    assert_eq!(
        key.masked,
        format!("lk_test_sk_…{}", &secret[secret.len() - 4..])
    );
    assert_eq!(key.status, pb::KeyStatus::Active as i32);
    let expires = key.expires_at.unwrap().seconds - key.created_at.unwrap().seconds;
    assert_eq!(expires, 90 * DAY, "default expiry is 90 days");

    let got = s
        .keys()
        .get_key(s.admin(pb::GetKeyRequest { id: key.id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, key);

    // The store holds the SHA-256 of the key and no trace of the key itself.
    let db = Database::connect(&s.db.url).await.unwrap();
    let columns = [
        "id",
        "account_id",
        "mode",
        "kind",
        "name",
        "key_hash",
        "masked",
        "scopes",
        "allowed_cidrs",
        "allowed_origins",
        "status",
    ];
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT {} FROM api_keys", columns.join(", ")),
        ))
        .await
        .unwrap();
    let mut dump = String::new();
    for row in &rows {
        for c in columns {
            dump.push_str(&row.try_get::<String>("", c).unwrap());
            dump.push('\n');
        }
    }
    assert!(!dump.contains(&secret), "plaintext key found in the store");
    assert!(!dump.contains(&secret[11..]), "key body found in the store");
    assert!(
        dump.contains(&hex(&sha256(secret.as_bytes()))),
        "hash not found"
    );
    db.close().await.unwrap();
    s.stop().await;
}

async fn live_keys_need_active_live_mode(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let mut req = key_request(&account.id, &[]);
    req.mode = pb::Mode::Live.into();
    let err = s.keys().create_key(s.admin(req.clone())).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("not_requested"), "{}", err.message());

    let live = s.live_account("PRIME").await;
    req.account_id = live.id.clone();
    let (key, secret) = s.create_key(req).await;
    assert!(secret.starts_with("lk_live_sk_"));
    assert_eq!(key.mode, pb::Mode::Live as i32);
    let r = s.check_perm(&secret, "products.read").await;
    assert!(r.allowed);
    assert_eq!(r.principal.unwrap().mode, pb::Mode::Live as i32);
    s.stop().await;
}

async fn rotation_keeps_the_old_key_for_the_overlap(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (key, old_secret) = s.simple_key("PRIME", &["feedback.read"]).await;
    assert!(
        s.check_perm(&old_secret, "feedback.read").await.allowed,
        "warm the cache"
    );

    let rotated = s
        .keys()
        .rotate_key(s.admin(pb::RotateKeyRequest {
            id: key.id.clone(),
            overlap_seconds: None,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let new_key = rotated.key.unwrap();
    let previous = rotated.previous.unwrap();
    assert_ne!(rotated.secret, old_secret);
    assert_eq!(new_key.scopes, key.scopes);
    assert_eq!(new_key.predecessor_id, key.id);
    assert_eq!(previous.successor_id, new_key.id);
    let overlap = previous.overlap_ends_at.unwrap().seconds - s.clock_secs();
    assert!(
        (7 * DAY - 1..=7 * DAY).contains(&overlap),
        "default overlap is 7 days, got {overlap}"
    );

    // Both work during the overlap.
    assert!(s.check_perm(&old_secret, "feedback.read").await.allowed);
    assert!(s.check_perm(&rotated.secret, "feedback.read").await.allowed);
    // A rotated key cannot be rotated again.
    let err = s
        .keys()
        .rotate_key(s.admin(pb::RotateKeyRequest {
            id: key.id.clone(),
            overlap_seconds: Some(0),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    s.clock.advance_secs(7 * DAY + 1);
    let r = s.check_perm(&old_secret, "feedback.read").await;
    assert_eq!(reason(&r), Reason::KeyRotated);
    assert!(s.check_perm(&rotated.secret, "feedback.read").await.allowed);
    let old = s
        .keys()
        .get_key(s.admin(pb::GetKeyRequest { id: key.id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(old.status, pb::KeyStatus::Rotated as i32);
    s.stop().await;
}

/// A → B → C: once B is rotated, A stops at once (it would otherwise live
/// on for the rest of its own overlap, beside B and C).
async fn rotating_the_successor_ends_the_predecessors_overlap(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (a, a_secret) = s.simple_key("PRIME", &["feedback.read"]).await;
    let rotate = |id: String| {
        let s = &s;
        async move {
            s.keys()
                .rotate_key(s.admin(pb::RotateKeyRequest {
                    id,
                    overlap_seconds: Some(DAY),
                    ..Default::default()
                }))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let b = rotate(a.id.clone()).await;
    assert!(
        s.check_perm(&a_secret, "feedback.read").await.allowed,
        "A in its overlap"
    );
    let c = rotate(b.key.unwrap().id).await;
    assert_eq!(
        reason(&s.check_perm(&a_secret, "feedback.read").await),
        Reason::KeyRotated,
        "A outlived its successor's rotation"
    );
    assert!(
        s.check_perm(&b.secret, "feedback.read").await.allowed,
        "B in its overlap"
    );
    assert!(s.check_perm(&c.secret, "feedback.read").await.allowed);
    let stored = s
        .keys()
        .get_key(s.admin(pb::GetKeyRequest { id: a.id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.status, pb::KeyStatus::Rotated as i32);
    s.stop().await;
}

async fn rotation_with_zero_overlap_stops_the_old_key_at_once(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (key, old_secret) = s.simple_key("PRIME", &["feedback.read"]).await;
    assert!(s.check_perm(&old_secret, "feedback.read").await.allowed);
    let rotated = s
        .keys()
        .rotate_key(s.admin(pb::RotateKeyRequest {
            id: key.id.clone(),
            overlap_seconds: Some(0),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reason(&s.check_perm(&old_secret, "feedback.read").await),
        Reason::KeyRotated
    );
    assert!(s.check_perm(&rotated.secret, "feedback.read").await.allowed);
    s.stop().await;
}

async fn revoke_suspend_resume_take_effect_at_once(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (key, secret) = s.simple_key("PRIME", &["feedback.read"]).await;
    let id = || key.id.clone();
    let mut keys = s.keys();
    assert!(
        s.check_perm(&secret, "feedback.read").await.allowed,
        "cached now"
    );

    let k = keys
        .suspend_key(s.admin(pb::SuspendKeyRequest { id: id() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(k.status, pb::KeyStatus::Suspended as i32);
    assert_eq!(
        reason(&s.check_perm(&secret, "feedback.read").await),
        Reason::KeySuspended
    );

    keys.resume_key(s.admin(pb::ResumeKeyRequest { id: id() }))
        .await
        .unwrap();
    assert!(s.check_perm(&secret, "feedback.read").await.allowed);

    let k = keys
        .revoke_key(s.admin(pb::RevokeKeyRequest { id: id() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(k.status, pb::KeyStatus::Revoked as i32);
    assert_eq!(
        reason(&s.check_perm(&secret, "feedback.read").await),
        Reason::KeyRevoked
    );
    // Revoked is final.
    let err = keys
        .resume_key(s.admin(pb::ResumeKeyRequest { id: id() }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = keys
        .rotate_key(s.admin(pb::RotateKeyRequest {
            id: id(),
            overlap_seconds: None,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    s.stop().await;
}

/// A denial for a key that no longer works names the account and the key,
/// never what the key could do (scopes, plan, mode, kind).
async fn dead_keys_tell_only_whose_they_were(backend: Backend) {
    let s = TestServer::start(backend).await;
    let only_ids = |r: &pb::CheckResponse, key: &pb::Key, why: Reason| {
        assert_eq!(reason(r), why);
        let p = r.principal.as_ref().expect("the ids are kept");
        assert_eq!(
            (p.account_id.as_str(), p.key_id.as_str()),
            (key.account_id.as_str(), key.id.as_str())
        );
        assert!(p.scopes.is_empty(), "{why:?}: {p:?}");
        assert!(p.plan.is_empty(), "{why:?}: {p:?}");
        assert_eq!((p.mode, p.kind), (0, 0), "{why:?}: {p:?}");
    };
    let (key, secret) = s.simple_key("PRIME", &["feedback.read"]).await;
    let live = s.check_perm(&secret, "feedback.read").await;
    assert_eq!(live.principal.unwrap().scopes, ["feedback.read"]);
    s.keys()
        .suspend_key(s.admin(pb::SuspendKeyRequest { id: key.id.clone() }))
        .await
        .unwrap();
    only_ids(
        &s.check_perm(&secret, "feedback.read").await,
        &key,
        Reason::KeySuspended,
    );
    s.keys()
        .revoke_key(s.admin(pb::RevokeKeyRequest { id: key.id.clone() }))
        .await
        .unwrap();
    only_ids(
        &s.check_perm(&secret, "feedback.read").await,
        &key,
        Reason::KeyRevoked,
    );

    let (key, secret) = s.simple_key("PRIME", &["feedback.read"]).await;
    s.keys()
        .rotate_key(s.admin(pb::RotateKeyRequest {
            id: key.id.clone(),
            overlap_seconds: Some(0),
            ..Default::default()
        }))
        .await
        .unwrap();
    only_ids(
        &s.check_perm(&secret, "feedback.read").await,
        &key,
        Reason::KeyRotated,
    );

    let (key, secret) = s.simple_key("PRIME", &["feedback.read"]).await;
    s.clock.advance_secs(91 * DAY);
    only_ids(
        &s.check_perm(&secret, "feedback.read").await,
        &key,
        Reason::KeyExpired,
    );
    s.stop().await;
}

async fn updates_apply_to_the_next_check(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (key, secret) = s.simple_key("PRIME", &["feedback.read"]).await;
    assert!(
        !s.check_perm(&secret, "feedback.write").await.allowed,
        "cached now"
    );
    let updated = s
        .keys()
        .update_key(s.admin(pb::UpdateKeyRequest {
            id: key.id.clone(),
            name: Some("renamed".into()),
            scopes: Some(pb::StringList {
                values: vec!["feedback.*".into()],
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.name, "renamed");
    assert_eq!(updated.scopes, ["feedback.*"]);
    assert!(s.check_perm(&secret, "feedback.write").await.allowed);

    // A narrower allowlist applies at once too.
    s.keys()
        .update_key(s.admin(pb::UpdateKeyRequest {
            id: key.id.clone(),
            allowed_cidrs: Some(pb::StringList {
                values: vec!["10.0.0.0/8".into()],
            }),
            expires_in_seconds: Some(60),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(
        reason(&s.check_perm(&secret, "feedback.read").await),
        Reason::IpNotAllowed
    );
    s.stop().await;
}

async fn expiry_follows_the_clock(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let mut req = key_request(&account.id, &["feedback.read"]);
    req.expires_in_seconds = Some(3600);
    let (key, secret) = s.create_key(req).await;
    assert!(s.check_perm(&secret, "feedback.read").await.allowed);
    s.clock.advance_secs(3601);
    assert_eq!(
        reason(&s.check_perm(&secret, "feedback.read").await),
        Reason::KeyExpired
    );
    let listed = s
        .keys()
        .list_keys(s.admin(pb::ListKeysRequest {
            account_id: account.id.clone(),
            status: pb::KeyStatus::Expired.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.keys.iter().map(|k| &k.id).collect::<Vec<_>>(),
        [&key.id]
    );
    s.stop().await;
}

async fn list_filters_and_pages(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let other = s.account("PRIME").await;
    let mut mine = Vec::new();
    for _ in 0..3 {
        mine.push(s.create_key(key_request(&account.id, &[])).await.0.id);
    }
    s.create_key(key_request(&other.id, &[])).await;
    s.keys()
        .revoke_key(s.admin(pb::RevokeKeyRequest {
            id: mine[1].clone(),
        }))
        .await
        .unwrap();

    let list = |status: pb::KeyStatus, page_size, page_token: String| {
        s.admin(pb::ListKeysRequest {
            account_id: account.id.clone(),
            mode: pb::Mode::Test.into(),
            status: status.into(),
            page_size,
            page_token,
        })
    };
    let mut keys = s.keys();
    let active = keys
        .list_keys(list(pb::KeyStatus::Active, 0, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        active.keys.iter().map(|k| k.id.clone()).collect::<Vec<_>>(),
        [mine[0].clone(), mine[2].clone()]
    );
    let revoked = keys
        .list_keys(list(pb::KeyStatus::Revoked, 0, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.keys.len(), 1);
    let live = keys
        .list_keys(s.admin(pb::ListKeysRequest {
            account_id: account.id.clone(),
            mode: pb::Mode::Live.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(live.keys.is_empty(), "test and live are separate");

    let first = keys
        .list_keys(list(pb::KeyStatus::Unspecified, 2, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.keys.len(), 2);
    let second = keys
        .list_keys(list(pb::KeyStatus::Unspecified, 2, first.next_page_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        second.keys.iter().map(|k| k.id.clone()).collect::<Vec<_>>(),
        [mine[2].clone()]
    );
    assert!(second.next_page_token.is_empty());
    s.stop().await;
}

async fn kinds_have_their_rules(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let mut publishable = key_request(&account.id, &["products.read"]);
    publishable.kind = pb::KeyKind::Publishable.into();
    let err = s
        .keys()
        .create_key(s.admin(publishable.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("allowed_origins"),
        "{}",
        err.message()
    );
    publishable.allowed_origins = vec!["https://*.shop.example".into()];
    let (key, secret) = s.create_key(publishable).await;
    assert!(secret.starts_with("lk_test_pk_"));
    assert_eq!(key.allowed_origins, ["https://*.shop.example"]);

    let mut restricted = key_request(&account.id, &[]);
    restricted.kind = pb::KeyKind::Restricted.into();
    let err = s
        .keys()
        .create_key(s.admin(restricted.clone()))
        .await
        .unwrap_err();
    assert!(err.message().starts_with("scopes"), "{}", err.message());
    restricted.role = "read_only".into();
    let (_, rk) = s.create_key(restricted).await;
    assert!(rk.starts_with("lk_test_rk_"));
    assert!(s.check_perm(&rk, "surveys.read").await.allowed);
    assert_eq!(
        reason(&s.check_perm(&rk, "surveys.write").await),
        Reason::PermissionDenied
    );

    let mut both = key_request(&account.id, &["feedback.read"]);
    both.role = "read_only".into();
    let err = s.keys().create_key(s.admin(both)).await.unwrap_err();
    assert!(err.message().starts_with("role"), "{}", err.message());
    let mut unknown_role = key_request(&account.id, &[]);
    unknown_role.role = "superuser".into();
    let err = s
        .keys()
        .create_key(s.admin(unknown_role))
        .await
        .unwrap_err();
    assert!(err.message().contains("full_access"), "{}", err.message());
    s.stop().await;
}

async fn last_used_times_are_flushed_in_batches(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (key, secret) = s.simple_key("PRIME", &["feedback.read"]).await;
    assert!(key.last_used_at.is_none());
    assert!(s.check_perm(&secret, "feedback.read").await.allowed);
    let now = s.clock_secs();
    let used = crate::common::eventually("last_used_at to be flushed", || async {
        let k = s
            .keys()
            .get_key(s.admin(pb::GetKeyRequest { id: key.id.clone() }))
            .await
            .unwrap()
            .into_inner();
        k.last_used_at
    })
    .await;
    assert!((now - 1..=now + 1).contains(&used.seconds));
    s.stop().await;
}

/// Last-used times are kept to a minute: a use half a minute after the
/// stored one leaves it, and the use a whole minute after it replaces it
/// (it was skipped as "not more than a minute newer" before).
async fn a_use_a_minute_after_the_stored_one_is_written(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (key, secret) = s.simple_key("PRIME", &["feedback.read"]).await;
    let last_used = || async {
        s.keys()
            .get_key(s.admin(pb::GetKeyRequest { id: key.id.clone() }))
            .await
            .unwrap()
            .into_inner()
            .last_used_at
            .map(|t| t.seconds)
    };
    assert!(s.check_perm(&secret, "feedback.read").await.allowed);
    let first = s.clock_secs();
    crate::common::eventually("the first use to be flushed", || async {
        last_used().await.filter(|t| *t == first)
    })
    .await;
    s.clock.advance_secs(30);
    assert!(s.check_perm(&secret, "feedback.read").await.allowed);
    s.clock.advance_secs(30);
    assert!(s.check_perm(&secret, "feedback.read").await.allowed);
    crate::common::eventually("the use a minute later to be flushed", || async {
        last_used().await.filter(|t| *t == first + 60)
    })
    .await;
    s.stop().await;
}

impl TestServer {
    fn clock_secs(&self) -> i64 {
        use latchkey::ports::Clock;
        self.clock.now() / 1000
    }
}

backend_tests!(
    dead_keys_tell_only_whose_they_were,
    rotating_the_successor_ends_the_predecessors_overlap,
    created_key_is_shown_once_and_stored_hashed,
    live_keys_need_active_live_mode,
    rotation_keeps_the_old_key_for_the_overlap,
    rotation_with_zero_overlap_stops_the_old_key_at_once,
    revoke_suspend_resume_take_effect_at_once,
    updates_apply_to_the_next_check,
    expiry_follows_the_clock,
    list_filters_and_pages,
    kinds_have_their_rules,
    last_used_times_are_flushed_in_batches,
    a_use_a_minute_after_the_stored_one_is_written,
);
