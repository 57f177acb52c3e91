//! Several replicas on one PostgreSQL database: a revocation on one reaches
//! every other replica's cache through LISTEN/NOTIFY, well before the TTL.

use std::sync::Arc;

use latchkey::pb;
use pb::Reason;

use crate::common::{Backend, TestDb, TestServer, eventually, reason};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_other_replicas() {
    let db = Arc::new(TestDb::new(Backend::Postgres).await);
    // A cache TTL far longer than the test: only the notification can do it.
    let a = TestServer::start_on(db.clone(), |c| c.cache.ttl_seconds = 3600, None).await;
    let b = TestServer::start_on(db, |c| c.cache.ttl_seconds = 3600, None).await;
    let (key, secret) = a.simple_key("PRIME", &["feedback.read"]).await;
    assert!(
        b.check_perm(&secret, "feedback.read").await.allowed,
        "cached on b"
    );
    a.keys()
        .revoke_key(a.admin(pb::RevokeKeyRequest { id: key.id.clone() }))
        .await
        .unwrap();
    eventually("b to see the revocation", || async {
        (reason(&b.check_perm(&secret, "feedback.read").await) == Reason::KeyRevoked).then_some(())
    })
    .await;
    a.stop_keep_db().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_rules_reach_other_replicas() {
    use envoy_types::ext_authz::v3::pb::{CheckRequest, HttpResponse};
    use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;

    let db = Arc::new(TestDb::new(Backend::Postgres).await);
    let a = TestServer::start_on(db.clone(), |_| {}, None).await;
    let b = TestServer::start_on(db, |_| {}, None).await;
    let (_, secret) = a.simple_key("PRIME", &["feeds.read"]).await;
    let request = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: "/v2/feeds/main".into(),
                    host: "api.example".into(),
                    headers: [("authorization".to_owned(), format!("Bearer {secret}"))].into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let allowed_on_b = || async {
        let r = AuthorizationClient::new(b.channel.clone())
            .check(request.clone())
            .await
            .unwrap()
            .into_inner();
        matches!(r.http_response, Some(HttpResponse::OkResponse(_)))
    };
    assert!(!allowed_on_b().await, "no rule yet");
    pb::route_service_client::RouteServiceClient::new(a.channel.clone())
        .create_rule(a.admin(pb::CreateRuleRequest {
            host: String::new(),
            method: "GET".into(),
            path: "/v2/feeds/{feed}".into(),
            permission: "feeds.read".into(),
            case_insensitive: false,
        }))
        .await
        .unwrap();
    eventually("b to rebuild its route matcher", || async {
        allowed_on_b().await.then_some(())
    })
    .await;
    a.stop_keep_db().await;
    b.stop().await;
}

/// Migrations are not held to the statement timeout: a migration waiting
/// for a lock (or building an index over a big table) is not a hung query.
/// Another session holds the migrations table for longer than the timeout;
/// migrating waits for it instead of failing start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_outlast_the_statement_timeout() {
    use latchkey::crypto::secret::Secret;
    use latchkey::store::{SqlStore, StoreOptions};
    use sea_orm::{ConnectionTrait, Database, TransactionTrait};
    use std::time::Duration;

    let db = TestDb::new(Backend::Postgres).await;
    let options = StoreOptions {
        statement_timeout: Duration::from_millis(100),
        ..StoreOptions::default()
    };
    let store = SqlStore::connect_with(&Secret::new(db.url.clone()), options)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let holder = Database::connect(&db.url).await.unwrap();
    let txn = holder.begin().await.unwrap();
    txn.execute_unprepared("LOCK TABLE seaql_migrations IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        txn.commit().await.unwrap();
    });
    let migrated = store.migrate().await;
    release.await.unwrap();
    migrated.expect("migrations wait for the lock instead of timing out");
    holder.close().await.unwrap();
    db.drop_database().await;
}

/// Three replicas started at the same moment on an empty database: each
/// comes up (migrations and first-start writes take turns under the
/// start-up lock), and the bootstrap rows exist once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_start_at_once_on_an_empty_database() {
    use latchkey::crypto::keyfmt;
    use sea_orm::{ConnectionTrait, Database, Statement};

    let db = Arc::new(TestDb::new(Backend::Postgres).await);
    let token = keyfmt::generate("lk", "live", "sk")
        .unwrap()
        .expose()
        .clone();
    let (a, b, c) = tokio::join!(
        TestServer::start_on(db.clone(), |_| {}, Some(token.clone())),
        TestServer::start_on(db.clone(), |_| {}, Some(token.clone())),
        TestServer::start_on(db.clone(), |_| {}, Some(token.clone())),
    );
    for s in [&a, &b, &c] {
        s.accounts()
            .list_accounts(crate::common::bearer(
                &token,
                pb::ListAccountsRequest::default(),
            ))
            .await
            .unwrap();
    }
    let sql = Database::connect(&db.url).await.unwrap();
    let count = |query: &'static str| {
        let sql = &sql;
        async move {
            sql.query_one_raw(Statement::from_string(sql.get_database_backend(), query))
                .await
                .unwrap()
                .unwrap()
                .try_get_by_index::<i64>(0)
                .unwrap()
        }
    };
    assert_eq!(
        count("SELECT COUNT(*) FROM accounts WHERE is_operator").await,
        1
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM api_keys WHERE name = 'bootstrap admin token'").await,
        1
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM signing_keys WHERE retired_at IS NULL").await,
        1
    );
    sql.close().await.unwrap();
    a.stop_keep_db().await;
    b.stop_keep_db().await;
    c.stop().await;
}
