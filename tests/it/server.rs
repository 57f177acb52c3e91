//! Health, readiness, shutdown, and what happens when the store goes away.

use std::time::Duration;

use latchkey::pb;
use pb::Reason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::backend_tests;
use crate::common::{Backend, TestServer, eventually, reason};

/// A bare HTTP/1.1 GET, so the test depends on no HTTP client library.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    stream.read_to_string(&mut buf).await.unwrap();
    let status = buf.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

async fn health(s: &TestServer, service: &str) -> i32 {
    HealthClient::new(s.channel.clone())
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

async fn serving_with_probes(backend: Backend) {
    let s = TestServer::start(backend).await;
    for service in [
        "",
        "latchkey.v1.CheckService",
        "latchkey.v1.KeyService",
        "latchkey.v1.AccountService",
    ] {
        assert_eq!(
            health(&s, service).await,
            ServingStatus::Serving as i32,
            "{service}"
        );
    }
    assert_eq!(http_get(s.running().http_addr, "/healthz").await.0, 200);
    let (status, body) = http_get(s.running().http_addr, "/readyz").await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"status":"ready","rate_limits":"local"}"#)
    );
    assert_eq!(http_get(s.running().http_addr, "/nope").await.0, 404);
    s.stop().await;
}

async fn shutdown_turns_health_not_serving_first(backend: Backend) {
    // Flushes only at shutdown, so the test sees the final flush.
    let mut s = TestServer::start_with(backend, |c| c.usage_flush_interval_ms = 3_600_000).await;
    let mut watch = HealthClient::new(s.channel.clone())
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first: HealthCheckResponse = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    let (key, secret) = s.simple_key("PRIME", &["feedback.read"]).await;
    assert!(s.check_perm(&secret, "feedback.read").await.allowed);
    s.trigger_shutdown();
    let next = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    // The batched last-used time of the last call was flushed on the way out.
    let running = s.running.take().unwrap();
    running.wait().await.unwrap();
    let db = sea_orm::Database::connect(&s.db.url).await.unwrap();
    use sea_orm::ConnectionTrait;
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT last_used_at FROM key_usage WHERE key_id = '{}'",
                key.id
            ),
        ))
        .await
        .unwrap()
        .unwrap();
    let used: Option<i64> = row.try_get("", "last_used_at").unwrap();
    assert!(used.is_some(), "last-used time flushed at shutdown");
    db.close().await.unwrap();
    s.db.drop_database().await;
}

backend_tests!(serving_with_probes, shutdown_turns_health_not_serving_first);

/// PostgreSQL only: the store can be taken away for real and given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_denies_unknown_keys_and_reports_not_serving() {
    let s = TestServer::start(Backend::Postgres).await;
    let (_, cached) = s.simple_key("PRIME", &["feedback.read"]).await;
    let (_, cold) = s.simple_key("PRIME", &["feedback.read"]).await;
    assert!(s.check_perm(&cached, "feedback.read").await.allowed);
    let name = s.db.pg_name().to_owned();
    s.db.admin_sql(&format!(
        "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .await;

    eventually("health NOT_SERVING", || async {
        (health(&s, "").await == ServingStatus::NotServing as i32).then_some(())
    })
    .await;
    assert_eq!(http_get(s.running().http_addr, "/readyz").await.0, 503);
    // A key that must be looked up cannot be: denied, never allowed.
    let r = s.check_perm(&cold, "feedback.read").await;
    assert!(!r.allowed);
    assert_eq!(reason(&r), Reason::InternalError);
    // A cached key needs no I/O: the hot path keeps answering.
    assert!(s.check_perm(&cached, "feedback.read").await.allowed);

    s.db.admin_sql(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await;
    eventually("health SERVING again", || async {
        (health(&s, "").await == ServingStatus::Serving as i32).then_some(())
    })
    .await;
    assert!(s.check_perm(&cold, "feedback.read").await.allowed);
    s.stop().await;
}

/// PostgreSQL only: a Check that is in flight when shutdown begins still gets
/// its answer. A table lock holds the call inside its store lookup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_calls() {
    use sea_orm::{ConnectionTrait, Database, TransactionTrait};

    let mut s = TestServer::start(Backend::Postgres).await;
    let (_, cold) = s.simple_key("PRIME", &["feedback.read"]).await;
    let db = Database::connect(&s.db.url).await.unwrap();
    let lock = db.begin().await.unwrap();
    lock.execute_unprepared("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();

    let mut checks = s.checks();
    let in_flight = tokio::spawn(async move {
        checks
            .check(pb::CheckRequest {
                credential: cold,
                permission: "feedback.read".into(),
                ..Default::default()
            })
            .await
    });
    // Wait until the call is really blocked on the lock, not merely sent.
    eventually("the Check to wait on the table lock", || async {
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM pg_locks WHERE NOT granted",
            ))
            .await
            .unwrap()
            .unwrap();
        (row.try_get::<i64>("", "n").unwrap() > 0).then_some(())
    })
    .await;

    s.trigger_shutdown();
    // Shutdown has begun once health says NOT_SERVING, or new calls are refused.
    eventually("shutdown to begin", || async {
        let r = HealthClient::new(s.channel.clone())
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await;
        match r {
            Ok(r) => (r.get_ref().status == ServingStatus::NotServing as i32).then_some(()),
            Err(_) => Some(()),
        }
    })
    .await;
    assert!(
        !in_flight.is_finished(),
        "the call is still held by the lock"
    );
    lock.commit().await.unwrap();

    let answer = in_flight
        .await
        .unwrap()
        .expect("an in-flight call completes during shutdown");
    assert!(answer.into_inner().allowed);
    s.running.take().unwrap().wait().await.unwrap();
    db.close().await.unwrap();
    s.db.drop_database().await;
}

/// After NOT_SERVING, the listeners keep serving for
/// `shutdown_delay_seconds` (new connections included), so that load
/// balancers stop routing first. The delay here outlasts the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_keeps_serving_for_the_delay_after_not_serving() {
    let mut s = TestServer::start_with(Backend::Sqlite, |c| c.shutdown_delay_seconds = 3600).await;
    let (_, secret) = s.simple_key("PRIME", &["feedback.read"]).await;
    let mut watch = HealthClient::new(s.channel.clone())
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );
    s.trigger_shutdown();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::NotServing as i32
    );
    // Still answering, on a connection made after NOT_SERVING too.
    let fresh = tonic::transport::Channel::from_shared(format!("http://{}", s.running().grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let r = pb::check_service_client::CheckServiceClient::new(fresh)
        .check(pb::CheckRequest {
            credential: secret.clone(),
            permission: "feedback.read".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.allowed);
    assert_eq!(http_get(s.running().http_addr, "/healthz").await.0, 200);
    assert_eq!(http_get(s.running().http_addr, "/readyz").await.0, 503);
}

/// An open health Watch stream ends when the drain begins: it does not hold
/// the process for the grace period (an hour here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_watch_streams_end_at_shutdown() {
    let mut s = TestServer::start_with(Backend::Sqlite, |c| c.shutdown_grace_seconds = 3600).await;
    let mut watch = HealthClient::new(s.channel.clone())
        .watch(HealthCheckRequest {
            service: "latchkey.v1.CheckService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );
    s.trigger_shutdown();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::NotServing as i32
    );
    assert!(
        matches!(watch.message().await, Ok(None) | Err(_)),
        "the stream ends"
    );
    // The timeout only turns "held for the grace period" into a failure.
    tokio::time::timeout(Duration::from_secs(60), s.running.take().unwrap().wait())
        .await
        .expect("the server stopped without waiting out the grace period")
        .unwrap();
    s.db.drop_database().await;
}
