//! Accounts, plans and the live-mode review flow.

use latchkey::pb;
use tonic::Code;

use crate::backend_tests;
use crate::common::{Backend, TestServer};

async fn create_get_and_page(backend: Backend) {
    let s = TestServer::start(backend).await;
    let mut accounts = s.accounts();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(s.account("PRIME").await.id);
    }
    let got = accounts
        .get_account(s.admin(pb::GetAccountRequest { id: ids[2].clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.plan, "PRIME");
    assert_eq!(got.live_status, pb::LiveStatus::NotRequested as i32);

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = accounts
            .list_accounts(s.admin(pb::ListAccountsRequest {
                page_size: 2,
                page_token: token.clone(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(page.accounts.len() <= 2);
        seen.extend(page.accounts.into_iter().map(|a| a.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    // Every tenant exactly once, in creation order; the operator account is never listed.
    assert_eq!(seen, ids);
    s.stop().await;
}

async fn unknown_plan_is_refused_and_names_the_plans(backend: Backend) {
    let s = TestServer::start(backend).await;
    let err = s
        .accounts()
        .create_account(s.admin(pb::CreateAccountRequest {
            name: "Shop".into(),
            plan: "PLATINUM".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("plan:"), "{}", err.message());
    assert!(err.message().contains("DISCOVER"), "{}", err.message());
    s.stop().await;
}

async fn live_mode_review_flow(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("GO").await;
    let mut accounts = s.accounts();
    let review = |approve| {
        s.admin(pb::ReviewLiveModeRequest {
            id: account.id.clone(),
            approve,
        })
    };
    // Nothing to review before a request.
    let err = accounts.review_live_mode(review(true)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    let a = accounts
        .request_live_mode(s.admin(pb::RequestLiveModeRequest {
            id: account.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.live_status, pb::LiveStatus::PendingReview as i32);
    let a = accounts
        .review_live_mode(review(false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.live_status, pb::LiveStatus::Rejected as i32);
    // A rejected account may ask again, and be approved.
    accounts
        .request_live_mode(s.admin(pb::RequestLiveModeRequest {
            id: account.id.clone(),
        }))
        .await
        .unwrap();
    let a = accounts
        .review_live_mode(review(true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.live_status, pb::LiveStatus::Active as i32);
    let err = accounts
        .request_live_mode(s.admin(pb::RequestLiveModeRequest {
            id: account.id.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    s.stop().await;
}

async fn configured_plans_replace_the_defaults(backend: Backend) {
    let s = TestServer::start_with(backend, |c| {
        c.plans = Some(vec![
            latchkey::domain::permissions::PlanDef {
                name: "basic".into(),
                extends: None,
                permissions: vec!["feedback.read".into()],
                ..Default::default()
            },
            latchkey::domain::permissions::PlanDef {
                name: "pro".into(),
                extends: Some("basic".into()),
                permissions: vec!["webhooks.*".into()],
                ..Default::default()
            },
        ])
    })
    .await;
    let err = s
        .accounts()
        .create_account(s.admin(pb::CreateAccountRequest {
            name: "Shop".into(),
            plan: "PRIME".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let (_, pro_key) = s.simple_key("pro", &["*"]).await;
    assert!(s.check_perm(&pro_key, "feedback.read").await.allowed);
    assert!(s.check_perm(&pro_key, "webhooks.manage").await.allowed);
    assert!(!s.check_perm(&pro_key, "surveys.read").await.allowed);
    s.stop().await;
}

backend_tests!(
    create_get_and_page,
    unknown_plan_is_refused_and_names_the_plans,
    live_mode_review_flow,
    configured_plans_replace_the_defaults,
);

mod stores {
    use latchkey::pb;
    use pb::Reason;
    use tonic::Code;

    use crate::backend_tests;
    use crate::common::{Backend, TestServer, reason};

    fn add(
        s: &TestServer,
        account_id: &str,
        store_id: &str,
    ) -> tonic::Request<pb::AddStoreRequest> {
        s.admin(pb::AddStoreRequest {
            account_id: account_id.into(),
            store_id: store_id.into(),
        })
    }

    async fn stores_belong_to_one_account(backend: Backend) {
        let s = TestServer::start(backend).await;
        let a = s.account("PRIME").await;
        let b = s.account("PRIME").await;
        let mut accounts = s.accounts();
        let got = accounts
            .add_store(add(&s, &a.id, "store-2"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.store_ids, ["store-2"]);
        let got = accounts
            .add_store(add(&s, &a.id, "store-1"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.store_ids, ["store-1", "store-2"]);
        let err = accounts
            .add_store(add(&s, &b.id, "store-1"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
        let err = accounts
            .add_store(add(&s, &a.id, "bad store!"))
            .await
            .unwrap_err();
        assert!(err.message().starts_with("store_id"), "{}", err.message());
        let got = accounts
            .remove_store(s.admin(pb::RemoveStoreRequest {
                account_id: a.id.clone(),
                store_id: "store-2".into(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.store_ids, ["store-1"]);
        let err = accounts
            .remove_store(s.admin(pb::RemoveStoreRequest {
                account_id: b.id.clone(),
                store_id: "store-1".into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        s.stop().await;
    }

    async fn the_store_header_must_name_a_store_of_the_key_account(backend: Backend) {
        let s = TestServer::start_with(backend, |c| {
            c.check.store_header = Some("X-Beep-Store-Id".into())
        })
        .await;
        let (key, secret) = s.simple_key("PRIME", &["products.read"]).await;
        let check = |store: Option<&'static str>| {
            let secret = secret.clone();
            let s = &s;
            async move {
                let headers = store
                    .map(|v| [("x-beep-store-id".to_owned(), v.to_owned())].into())
                    .unwrap_or_default();
                reason(
                    &s.check(pb::CheckRequest {
                        credential: secret,
                        permission: "products.read".into(),
                        context: Some(pb::RequestContext {
                            headers,
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .await,
                )
            }
        };
        assert_eq!(
            check(Some("store-1")).await,
            Reason::StoreNotAllowed,
            "cached now"
        );
        assert_eq!(
            check(None).await,
            Reason::Allowed,
            "no store named, nothing to check"
        );
        s.accounts()
            .add_store(add(&s, &key.account_id, "store-1"))
            .await
            .unwrap();
        assert_eq!(
            check(Some("store-1")).await,
            Reason::Allowed,
            "takes effect at once"
        );
        assert_eq!(check(Some("store-2")).await, Reason::StoreNotAllowed);
        s.stop().await;
    }

    backend_tests!(
        stores_belong_to_one_account,
        the_store_header_must_name_a_store_of_the_key_account,
    );
}
