//! What an operator sees: the liveness health service that a store outage
//! does not touch, and the Prometheus listener with its decision, cache,
//! store and token metrics, on its own port and never on the public one.

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::backend_tests;
use crate::common::{Backend, TestServer, eventually, key_request, reason};
use crate::server::http_get;
use latchkey::pb;
use pb::Reason;

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

/// The value of the sample `series` (name and labels exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

async fn scrape(s: &TestServer) -> String {
    let addr = s.running().metrics_addr.expect("metrics listener on");
    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// PostgreSQL only: the store is taken away for real.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_stays_serving_through_a_store_outage() {
    let s = TestServer::start(Backend::Postgres).await;
    assert_eq!(
        health(&s, "latchkey.liveness").await,
        ServingStatus::Serving as i32
    );
    let name = s.db.pg_name().to_owned();
    s.db.admin_sql(&format!(
        "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .await;
    eventually("readiness NOT_SERVING", || async {
        (health(&s, "").await == ServingStatus::NotServing as i32).then_some(())
    })
    .await;
    // Readiness follows the store; liveness does not, so nothing restarts.
    assert_eq!(
        health(&s, "latchkey.liveness").await,
        ServingStatus::Serving as i32
    );
    s.db.admin_sql(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await;
    eventually("readiness SERVING again", || async {
        (health(&s, "").await == ServingStatus::Serving as i32).then_some(())
    })
    .await;
    s.stop().await;
}

async fn metrics_count_decisions_cache_and_store(backend: Backend) {
    let s = TestServer::start_with(backend, |c| {
        c.metrics.enabled = true;
        c.metrics.addr = "127.0.0.1:0".into();
    })
    .await;
    let before = scrape(&s).await;
    let allowed = r#"latchkey_decisions_total{api="check",reason="ALLOWED"}"#;
    let missing = r#"latchkey_decisions_total{api="check",reason="PERMISSION_DENIED"}"#;
    let misses = "latchkey_key_cache_misses_total";
    let hits = "latchkey_key_cache_hits_total";
    let find = r#"latchkey_store_call_duration_seconds_count{op="find_key"}"#;
    let at = |text: &str, series: &str| sample(text, series).unwrap_or(0.0);

    let (_, secret) = s.simple_key("PRIME", &["feedback.read"]).await;
    assert!(s.check_perm(&secret, "feedback.read").await.allowed);
    assert!(s.check_perm(&secret, "feedback.read").await.allowed);
    assert!(!s.check_perm(&secret, "webhooks.manage").await.allowed);

    let after = scrape(&s).await;
    // At least: other tests in this process may decide too (cargo test
    // runs them side by side; nextest gives each its own process).
    assert!(at(&after, allowed) - at(&before, allowed) >= 2.0, "{after}");
    assert!(at(&after, missing) - at(&before, missing) >= 1.0, "{after}");
    assert!(at(&after, misses) - at(&before, misses) >= 1.0, "{after}");
    assert!(at(&after, hits) - at(&before, hits) >= 2.0, "{after}");
    assert!(at(&after, find) - at(&before, find) >= 1.0, "{after}");
    assert!(sample(&after, "latchkey_key_cache_entries").unwrap() >= 1.0);
    let latency = r#"latchkey_decision_duration_seconds_count{api="check"}"#;
    assert!(at(&after, latency) - at(&before, latency) >= 3.0, "{after}");
    assert!(
        sample(
            &after,
            r#"latchkey_decision_duration_seconds_bucket{api="check",le="+Inf"}"#
        )
        .unwrap()
            >= 3.0
    );
    assert!(after.contains("# TYPE latchkey_decision_duration_seconds histogram"));
    assert!(after.contains(&format!(
        "latchkey_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    // The health loop pings the store on its own.
    eventually("a timed store ping", || async {
        let text = scrape(&s).await;
        (at(
            &text,
            r#"latchkey_store_call_duration_seconds_count{op="ping"}"#,
        ) >= 1.0)
            .then_some(())
    })
    .await;
    // Never a secret in the exposition.
    assert!(!after.contains(&secret));
    // Not on the public port.
    assert_eq!(http_get(s.running().http_addr, "/metrics").await.0, 404);
    s.stop().await;
}

async fn metrics_are_off_unless_asked_for(backend: Backend) {
    let s = TestServer::start(backend).await;
    assert!(s.running().metrics_addr.is_none());
    s.stop().await;
}

/// A refused request is counted by the limit that refused it.
async fn metrics_count_rate_limited_requests(backend: Backend) {
    let s = TestServer::start_with(backend, |c| {
        c.metrics.enabled = true;
        c.metrics.addr = "127.0.0.1:0".into();
    })
    .await;
    let series = r#"latchkey_rate_limited_total{limit="key"}"#;
    let before = sample(&scrape(&s).await, series).expect("series exposed");
    let account = s.account("PRIME").await;
    let (_, secret) = s
        .create_key(pb::CreateKeyRequest {
            rate_limit: Some(pb::RateLimitPolicy {
                requests: 1,
                per_seconds: 60,
                burst: 0,
            }),
            ..key_request(&account.id, &["feedback.read"])
        })
        .await;
    assert!(s.check_perm(&secret, "feedback.read").await.allowed);
    let r = s.check_perm(&secret, "feedback.read").await;
    assert_eq!(reason(&r), Reason::RateLimited);
    let after = sample(&scrape(&s).await, series).unwrap();
    assert!(after - before >= 1.0, "{before} -> {after}");
    s.stop().await;
}

/// Redis configured but unreachable: the mode gauge says per replica.
async fn metrics_show_the_rate_limit_mode(backend: Backend) {
    let s = TestServer::start_with(backend, |c| {
        c.metrics.enabled = true;
        c.metrics.addr = "127.0.0.1:0".into();
        // Nothing listens on port 1.
        c.rate_limits.redis_url = Some("redis://127.0.0.1:1".into());
    })
    .await;
    eventually("per_replica mode", || async {
        let text = scrape(&s).await;
        (sample(&text, r#"latchkey_rate_limit_mode{mode="per_replica"}"#) == Some(1.0)
            && sample(&text, r#"latchkey_rate_limit_mode{mode="global"}"#) == Some(0.0)
            && sample(&text, r#"latchkey_rate_limit_mode{mode="local"}"#) == Some(0.0))
        .then_some(())
    })
    .await;
    s.stop().await;
}

backend_tests!(
    metrics_count_decisions_cache_and_store,
    metrics_are_off_unless_asked_for,
    metrics_count_rate_limited_requests,
    metrics_show_the_rate_limit_mode
);

/// HTTP/2 limits on the gRPC port: a call whose headers exceed 16 KiB is
/// refused, while the next ordinary call on another connection is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refuses_a_header_list_over_16_kib() {
    let s = TestServer::start(Backend::Sqlite).await;
    let mut req = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    req.metadata_mut()
        .insert("x-padding", "a".repeat(20 * 1024).parse().unwrap());
    let refused = HealthClient::new(s.channel.clone()).check(req).await;
    assert!(refused.is_err(), "a 20 KiB header was accepted");
    let fresh = tonic::transport::Channel::from_shared(format!("http://{}", s.running().grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut ok = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    ok.metadata_mut()
        .insert("x-padding", "a".repeat(8 * 1024).parse().unwrap());
    let status = HealthClient::new(fresh)
        .check(ok)
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
    s.stop().await;
}

/// Two replicas on one PostgreSQL database: a change committed on `a`
/// reaches `b` as a notice stamped with its send time, and `b`'s
/// notification-lag histogram moves; losing the notification connection is
/// counted as a cache drop; an older replica's unstamped notice still applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_lag_moves_when_another_replica_changes_something() {
    use std::sync::Arc;

    use crate::common::TestDb;

    let db = Arc::new(TestDb::new(Backend::Postgres).await);
    let with_metrics = |c: &mut latchkey::config::Config| {
        c.cache.ttl_seconds = 3600;
        c.metrics.enabled = true;
        c.metrics.addr = "127.0.0.1:0".into();
    };
    let a = TestServer::start_on(db.clone(), with_metrics, None).await;
    let b = TestServer::start_on(db.clone(), with_metrics, None).await;
    let lag_count = "latchkey_notification_lag_seconds_count";
    let lag_sum = "latchkey_notification_lag_seconds_sum";
    let drops = "latchkey_key_cache_drops_total";
    let at = |text: &str, series: &str| sample(text, series).unwrap_or(0.0);

    let (key, secret) = a.simple_key("PRIME", &["feedback.read"]).await;
    assert!(b.check_perm(&secret, "feedback.read").await.allowed);
    let before = scrape(&b).await;
    a.keys()
        .revoke_key(a.admin(pb::RevokeKeyRequest { id: key.id.clone() }))
        .await
        .unwrap();
    eventually("b to see the revocation", || async {
        (reason(&b.check_perm(&secret, "feedback.read").await) == Reason::KeyRevoked).then_some(())
    })
    .await;
    let after = scrape(&b).await;
    assert!(
        at(&after, lag_count) > at(&before, lag_count),
        "the lag histogram did not move:\n{after}"
    );
    let lag = at(&after, lag_sum) - at(&before, lag_sum);
    assert!((0.0..10.0).contains(&lag), "lag {lag}s");

    // An unstamped notice (an older replica's) still drops b's cache.
    let (_, other) = a.simple_key("PRIME", &["feedback.read"]).await;
    assert!(b.check_perm(&other, "feedback.read").await.allowed);
    let name = db.pg_name().to_owned();
    let conn = sea_orm::Database::connect(&db.url).await.unwrap();
    sea_orm::ConnectionTrait::execute_unprepared(
        &conn,
        "SELECT pg_notify('latchkey_invalidate', '*')",
    )
    .await
    .unwrap();
    conn.close().await.unwrap();
    let misses = "latchkey_key_cache_misses_total";
    let before = scrape(&b).await;
    eventually("b to drop its cache on an unstamped notice", || async {
        assert!(b.check_perm(&other, "feedback.read").await.allowed);
        (at(&scrape(&b).await, misses) > at(&before, misses)).then_some(())
    })
    .await;

    // The notification connections are cut: each replica reconnects, drops
    // its cache, and counts it.
    let before = scrape(&b).await;
    db.admin_sql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{name}' AND query LIKE 'LISTEN%'"
    ))
    .await;
    eventually("the cache drop to be counted", || async {
        (at(&scrape(&b).await, drops) > at(&before, drops)).then_some(())
    })
    .await;
    a.stop_keep_db().await;
    b.stop().await;
}
