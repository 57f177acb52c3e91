//! Malformed requests get INVALID_ARGUMENT naming the field, unknown ids
//! NOT_FOUND, and nothing is written.

use latchkey::pb;
use tonic::Code;

use crate::backend_tests;
use crate::common::{Backend, TestServer, key_request};

async fn create_key_errors_name_their_field(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let base = key_request(&account.id, &["feedback.read"]);
    let cases: Vec<(&str, pb::CreateKeyRequest)> = vec![
        (
            "account_id",
            pb::CreateKeyRequest {
                account_id: String::new(),
                ..base.clone()
            },
        ),
        (
            "account_id",
            pb::CreateKeyRequest {
                account_id: "acct_nope".into(),
                ..base.clone()
            },
        ),
        (
            "mode",
            pb::CreateKeyRequest {
                mode: 0,
                ..base.clone()
            },
        ),
        (
            "mode",
            pb::CreateKeyRequest {
                mode: 42,
                ..base.clone()
            },
        ),
        (
            "kind",
            pb::CreateKeyRequest {
                kind: 0,
                ..base.clone()
            },
        ),
        (
            "name",
            pb::CreateKeyRequest {
                name: " ".into(),
                ..base.clone()
            },
        ),
        (
            "name",
            pb::CreateKeyRequest {
                name: "x".repeat(201),
                ..base.clone()
            },
        ),
        (
            "scopes",
            pb::CreateKeyRequest {
                scopes: vec!["Not A Scope".into()],
                ..base.clone()
            },
        ),
        (
            "scopes",
            pb::CreateKeyRequest {
                scopes: vec!["feedback".into()],
                ..base.clone()
            },
        ),
        (
            "allowed_cidrs",
            pb::CreateKeyRequest {
                allowed_cidrs: vec!["10.0.0.0/33".into()],
                ..base.clone()
            },
        ),
        (
            "allowed_origins",
            pb::CreateKeyRequest {
                allowed_origins: vec!["https://a.com/path".into()],
                ..base.clone()
            },
        ),
        (
            "expires_in_seconds",
            pb::CreateKeyRequest {
                expires_in_seconds: Some(0),
                ..base.clone()
            },
        ),
        (
            "expires_in_seconds",
            pb::CreateKeyRequest {
                expires_in_seconds: Some(i64::MAX),
                ..base.clone()
            },
        ),
        (
            "scopes",
            pb::CreateKeyRequest {
                scopes: vec!["a.b".into(); 10_000],
                ..base.clone()
            },
        ),
    ];
    for (field, req) in cases {
        let err = s.keys().create_key(s.admin(req)).await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{field}: {}",
            err.message()
        );
        assert!(
            err.message().starts_with(field),
            "expected `{field}` first in: {}",
            err.message()
        );
    }
    let listed = s
        .keys()
        .list_keys(s.admin(pb::ListKeysRequest {
            account_id: account.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.keys.is_empty(), "a refused request wrote nothing");
    s.stop().await;
}

async fn unknown_ids_are_not_found(backend: Backend) {
    let s = TestServer::start(backend).await;
    let missing_key = "key_0000000000000000000000000000abcd".to_owned();
    let missing_account = "acct_0000000000000000000000000000abcd".to_owned();
    let mut keys = s.keys();
    let codes = [
        keys.get_key(s.admin(pb::GetKeyRequest {
            id: missing_key.clone(),
        }))
        .await
        .unwrap_err()
        .code(),
        keys.revoke_key(s.admin(pb::RevokeKeyRequest {
            id: missing_key.clone(),
        }))
        .await
        .unwrap_err()
        .code(),
        keys.rotate_key(s.admin(pb::RotateKeyRequest {
            id: missing_key.clone(),
            overlap_seconds: None,
            ..Default::default()
        }))
        .await
        .unwrap_err()
        .code(),
        keys.create_key(s.admin(key_request(&missing_account, &[])))
            .await
            .unwrap_err()
            .code(),
        s.accounts()
            .get_account(s.admin(pb::GetAccountRequest {
                id: missing_account.clone(),
            }))
            .await
            .unwrap_err()
            .code(),
    ];
    assert_eq!(codes, [Code::NotFound; 5]);
    let err = keys
        .get_key(s.admin(pb::GetKeyRequest {
            id: "../etc/passwd".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("id"), "{}", err.message());
    s.stop().await;
}

async fn paging_and_check_input_are_validated(backend: Backend) {
    let s = TestServer::start(backend).await;
    let err = s
        .accounts()
        .list_accounts(s.admin(pb::ListAccountsRequest {
            page_size: 5000,
            page_token: String::new(),
        }))
        .await
        .unwrap_err();
    assert!(err.message().starts_with("page_size"), "{}", err.message());
    let err = s
        .accounts()
        .list_accounts(s.admin(pb::ListAccountsRequest {
            page_size: 0,
            page_token: "bogus".into(),
        }))
        .await
        .unwrap_err();
    assert!(err.message().starts_with("page_token"), "{}", err.message());

    let (_, secret) = s.simple_key("PRIME", &[]).await;
    let err = s
        .checks()
        .check(pb::CheckRequest {
            credential: secret.clone(),
            permission: "feedback.*".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("permission"), "{}", err.message());
    let err = s
        .checks()
        .check(pb::CheckRequest {
            credential: secret,
            permission: "feedback.read".into(),
            context: Some(pb::RequestContext {
                client_ip: "not-an-ip".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        err.message().starts_with("context.client_ip"),
        "{}",
        err.message()
    );
    s.stop().await;
}

async fn oversized_messages_are_refused(backend: Backend) {
    let s = TestServer::start(backend).await;
    let err = s
        .checks()
        .check(pb::CheckRequest {
            credential: "x".repeat(1024 * 1024),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err.code(), Code::ResourceExhausted | Code::OutOfRange),
        "{:?}: {}",
        err.code(),
        err.message()
    );
    s.stop().await;
}

backend_tests!(
    create_key_errors_name_their_field,
    unknown_ids_are_not_found,
    paging_and_check_input_are_validated,
    oversized_messages_are_refused,
);
