//! Store outages, on a throwaway PostgreSQL cluster the test stops and
//! crashes: answers stay correct (deny, UNAVAILABLE, 503 with Retry-After)
//! and come fast; the health loop notices the store is back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use latchkey::pb;
use pb::Reason;
use sea_orm::{ConnectionTrait, Database, TransactionTrait};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::common::{TestDb, TestServer, eventually, reason};
use crate::throwaway::ThrowawayPg;
use crate::tokens::{REDIRECT, basic, client, code_flow, consent, form, http, pkce};

async fn serving(s: &TestServer) -> bool {
    HealthClient::new(s.channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .is_ok_and(|r| r.get_ref().status == ServingStatus::Serving as i32)
}

/// What the OAuth2 endpoints answer: status and Retry-After.
async fn oauth(s: &TestServer, path: &str, auth: &str, body: &str) -> (u16, String, String) {
    let r = http(
        s.running().http_addr,
        "POST",
        path,
        &[("authorization", auth)],
        body,
    )
    .await;
    (r.status, r.header("retry-after").to_owned(), r.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_answered_fast_and_as_unavailable() {
    let pg = ThrowawayPg::start();
    let db = Arc::new(TestDb::at(&pg.url));
    let s = TestServer::start_on(db, |c| c.cache.ttl_seconds = 3600, None).await;
    let (_, cached) = s.simple_key("PRIME", &["feedback.read"]).await;
    let (_, cold) = s.simple_key("PRIME", &["feedback.read"]).await;
    let (c, secret) = client(&s).await;
    let auth = basic(&c.client_id, &secret);
    let grant = form(&[("grant_type", "client_credentials")]);
    // Everything the outage will meet is cached now: the key, the admin
    // token, the client.
    assert!(s.check_perm(&cached, "feedback.read").await.allowed);
    let (status, _, body) = oauth(&s, "/oauth2/token", &auth, &grant).await;
    assert_eq!(status, 200, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let access = token["access_token"].as_str().unwrap().to_owned();
    // A code not yet redeemed, and a refresh token: the other two grants.
    let (verifier, challenge) = pkce();
    let code = consent(
        &s,
        &[
            ("response_type", "code"),
            ("client_id", c.client_id.as_str()),
            ("redirect_uri", REDIRECT),
            ("scope", "chat.read"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ],
        "allow",
    )
    .await["code"]
        .clone();
    let code_grant = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &verifier),
    ]);
    let pair = code_flow(&s, &c.client_id, &secret).await;
    assert_eq!(pair.status, 200, "{}", pair.body);
    let refresh_grant = form(&[
        ("grant_type", "refresh_token"),
        (
            "refresh_token",
            pair.json()["refresh_token"].as_str().unwrap(),
        ),
    ]);
    s.keys()
        .list_keys(s.admin(pb::ListKeysRequest::default()))
        .await
        .unwrap();

    pg.crash();

    // Before the health loop has noticed: bounded by the short acquire
    // timeout, not the pool's default of seconds upon seconds.
    let started = Instant::now();
    let r = s.check_perm(&cold, "feedback.read").await;
    assert!(!r.allowed);
    assert_eq!(reason(&r), Reason::InternalError);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a cold lookup during the outage took {:?}",
        started.elapsed()
    );
    eventually("health NOT_SERVING", || async {
        (!serving(&s).await).then_some(())
    })
    .await;
    // Known down: the circuit fails at once.
    let started = Instant::now();
    assert!(!s.check_perm(&cold, "feedback.read").await.allowed);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // Cached keys keep being answered (for at most the cache TTL).
    assert!(s.check_perm(&cached, "feedback.read").await.allowed);

    // Management calls: UNAVAILABLE, not INTERNAL.
    let err = s
        .keys()
        .list_keys(s.admin(pb::ListKeysRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");

    // No token is minted from the cached client, by any grant;
    // introspection and revocation cannot answer either: 503 with
    // Retry-After, fast.
    for (path, body) in [
        ("/oauth2/token", grant.clone()),
        ("/oauth2/token", code_grant.clone()),
        ("/oauth2/token", refresh_grant.clone()),
        ("/oauth2/introspect", form(&[("token", &access)])),
        ("/oauth2/revoke", form(&[("token", &access)])),
    ] {
        let started = Instant::now();
        let (status, retry_after, body) = oauth(&s, path, &auth, &body).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert!(
            retry_after.parse::<u32>().is_ok_and(|n| n > 0),
            "{path}: {retry_after:?}"
        );
        let error: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["error"], "temporarily_unavailable", "{path}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{path}: {:?}",
            started.elapsed()
        );
    }

    pg.start_again();
    eventually("health SERVING again", || async {
        serving(&s).await.then_some(())
    })
    .await;
    assert!(s.check_perm(&cold, "feedback.read").await.allowed);
    let (status, _, body) = oauth(&s, "/oauth2/token", &auth, &grant).await;
    assert_eq!(status, 200, "{body}");
    // The 503s used nothing up: the code and the refresh token still work.
    for grant in [&code_grant, &refresh_grant] {
        let (status, _, body) = oauth(&s, "/oauth2/token", &auth, grant).await;
        assert_eq!(status, 200, "{body}");
    }
    s.stop_keep_db().await;
}

/// A query in flight when the database crashes is answered UNAVAILABLE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_query_is_unavailable() {
    let pg = ThrowawayPg::start();
    let db = Arc::new(TestDb::at(&pg.url));
    let s = TestServer::start_on(db.clone(), |c| c.health_interval_ms = 3_600_000, None).await;
    let (key, _) = s.simple_key("PRIME", &["feedback.read"]).await;
    // The admin token is cached now, so only the call's own query waits.
    s.keys()
        .get_key(s.admin(pb::GetKeyRequest { id: key.id.clone() }))
        .await
        .unwrap();
    let sql = Database::connect(&db.url).await.unwrap();
    let lock = sql.begin().await.unwrap();
    lock.execute_unprepared("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let mut keys = s.keys();
    let request = s.admin(pb::GetKeyRequest { id: key.id.clone() });
    let in_flight = tokio::spawn(async move { keys.get_key(request).await });
    eventually("the call to wait inside its query", || async {
        let row = sql
            .query_one_raw(sea_orm::Statement::from_string(
                sql.get_database_backend(),
                "SELECT COUNT(*) AS n FROM pg_locks WHERE NOT granted",
            ))
            .await
            .unwrap()
            .unwrap();
        (row.try_get::<i64>("", "n").unwrap() > 0).then_some(())
    })
    .await;
    pg.crash();
    let err = in_flight.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    drop(lock);
    drop(sql);
    pg.start_again();
    s.stop_keep_db().await;
}
