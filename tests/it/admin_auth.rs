//! The management API answers only to admin tokens of the operator account.

use latchkey::crypto::keyfmt;
use latchkey::domain::accounts::OPERATOR_ACCOUNT_ID;
use latchkey::domain::permissions::Scope;
use latchkey::pb;
use tonic::{Code, Request};

use crate::backend_tests;
use crate::common::{Backend, TestServer, bearer, key_request};

async fn missing_or_bad_tokens_are_unauthenticated(backend: Backend) {
    let s = TestServer::start(backend).await;
    let err = s
        .accounts()
        .create_account(Request::new(pb::CreateAccountRequest {
            name: "x".into(),
            plan: "PRIME".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("authorization"), "{}", err.message());
    let err = s
        .keys()
        .list_keys(Request::new(pb::ListKeysRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    for token in ["garbage", "lk_live_sk_tooshort"] {
        let err = s
            .keys()
            .list_keys(bearer(token, pb::ListKeysRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{token}");
    }
    let unknown = keyfmt::generate("lk", "live", "sk").unwrap();
    let err = s
        .keys()
        .list_keys(bearer(unknown.expose(), pb::ListKeysRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(
        err.message().contains("CREDENTIAL_UNKNOWN"),
        "{}",
        err.message()
    );
    s.stop().await;
}

async fn tenant_keys_are_not_admin_tokens(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, tenant) = s.simple_key("PRIME", &["*"]).await;
    let err = s
        .keys()
        .list_keys(bearer(&tenant, pb::ListKeysRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // Nor can anyone mint keys on the operator account through the API.
    let err = s
        .keys()
        .create_key(s.admin(key_request(OPERATOR_ACCOUNT_ID, &["admin.*"])))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = s
        .accounts()
        .get_account(s.admin(pb::GetAccountRequest {
            id: OPERATOR_ACCOUNT_ID.into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    s.stop().await;
}

async fn admin_scopes_are_enforced_per_call(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (key, _) = s.simple_key("PRIME", &[]).await;
    let reader = s
        .running()
        .services
        .keys
        .create_operator_key(
            "auditor",
            vec![Scope::parse("admin.keys.read").unwrap()],
            None,
        )
        .await
        .unwrap();
    let reader = reader.secret.expose().clone();
    s.keys()
        .get_key(bearer(&reader, pb::GetKeyRequest { id: key.id.clone() }))
        .await
        .unwrap();
    let err = s
        .keys()
        .revoke_key(bearer(&reader, pb::RevokeKeyRequest { id: key.id.clone() }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("admin.keys.write"),
        "{}",
        err.message()
    );
    let err = s
        .accounts()
        .list_accounts(bearer(&reader, pb::ListAccountsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // A narrow admin token cannot be widened through the API, not even by a full admin.
    let writer = s
        .running()
        .services
        .keys
        .create_operator_key(
            "key manager",
            vec![Scope::parse("admin.keys.*").unwrap()],
            None,
        )
        .await
        .unwrap();
    let widen = pb::UpdateKeyRequest {
        id: writer.record.id.clone(),
        scopes: Some(pb::StringList {
            values: vec!["admin.*".into()],
        }),
        ..Default::default()
    };
    let err = s
        .keys()
        .update_key(bearer(writer.secret.expose(), widen.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = s.keys().update_key(s.admin(widen)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    s.stop().await;
}

async fn revoked_admin_tokens_stop_working_at_once(backend: Backend) {
    let s = TestServer::start(backend).await;
    let second = s
        .running()
        .services
        .keys
        .create_operator_key("ci", vec![Scope::parse("admin.*").unwrap()], None)
        .await
        .unwrap();
    let token = second.secret.expose().clone();
    s.keys()
        .list_keys(bearer(&token, pb::ListKeysRequest::default()))
        .await
        .unwrap();
    s.keys()
        .revoke_key(s.admin(pb::RevokeKeyRequest {
            id: second.record.id.clone(),
        }))
        .await
        .unwrap();
    let err = s
        .keys()
        .list_keys(bearer(&token, pb::ListKeysRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("KEY_REVOKED"), "{}", err.message());
    s.stop().await;
}

async fn bootstrap_token_is_registered_once(backend: Backend) {
    let token = keyfmt::generate("lk", "live", "sk")
        .unwrap()
        .expose()
        .clone();
    let first = TestServer::start_on(
        std::sync::Arc::new(crate::common::TestDb::new(backend).await),
        |_| {},
        Some(token.clone()),
    )
    .await;
    first
        .accounts()
        .list_accounts(bearer(&token, pb::ListAccountsRequest::default()))
        .await
        .unwrap();
    let db = first.db.clone();
    first.stop_keep_db().await;
    // A restart with the same variable is a no-op, not a duplicate.
    let second = TestServer::start_on(db, |_| {}, Some(token.clone())).await;
    second
        .accounts()
        .list_accounts(bearer(&token, pb::ListAccountsRequest::default()))
        .await
        .unwrap();
    second.stop().await;
}

async fn check_can_require_a_credential(backend: Backend) {
    let s = TestServer::start_with(backend, |c| c.check.require_auth = true).await;
    let (_, secret) = s.simple_key("PRIME", &["feedback.read"]).await;
    let req = || pb::CheckRequest {
        credential: secret.clone(),
        permission: "feedback.read".into(),
        ..Default::default()
    };
    let err = s.checks().check(Request::new(req())).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let r = s.checks().check(s.admin(req())).await.unwrap().into_inner();
    assert!(r.allowed);
    s.stop().await;
}

backend_tests!(
    missing_or_bad_tokens_are_unauthenticated,
    tenant_keys_are_not_admin_tokens,
    admin_scopes_are_enforced_per_call,
    revoked_admin_tokens_stop_working_at_once,
    bootstrap_token_is_registered_once,
    check_can_require_a_credential,
);
