//! Usage analytics (issue 16 items 1, 3, 5): every decision's outcome is
//! recorded off the hot path, aggregated per minute into usage counts and
//! audit denial events, and read back through `UsageService.GetUsage`;
//! unusual source countries raise `auth.unusual_location`; a flood of
//! denials keeps memory bounded and counts what it drops.

use std::sync::Arc;

use latchkey::crypto::secret::Secret;
use latchkey::domain::check::CheckInput;
use latchkey::domain::model::{AuditFilter, AuditOutcome};
use latchkey::pb;
use latchkey::ports::{AuditStore, Clock, UsageRow, UsageStore};
use latchkey::store::SqlStore;
use pb::get_usage_request::Subject;
use tonic::Code;

use crate::backend_tests;
use crate::common::{Backend, TestDb, TestServer, eventually};

const DAY: i64 = 86_400;

fn usage_client(
    s: &TestServer,
) -> pb::usage_service_client::UsageServiceClient<tonic::transport::Channel> {
    pb::usage_service_client::UsageServiceClient::new(s.channel.clone())
}

fn ts(ms: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: 0,
    })
}

async fn usage(s: &TestServer, subject: Subject, g: pb::Granularity) -> Vec<pb::UsagePoint> {
    let now = s.clock.now();
    usage_client(s)
        .get_usage(s.admin(pb::GetUsageRequest {
            subject: Some(subject),
            from: ts(now - 3_600_000),
            to: ts(now + 3_600_000),
            granularity: g.into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .points
}

async fn check_from(s: &TestServer, secret: &str, permission: &str, ip: &str) -> pb::CheckResponse {
    s.check(pb::CheckRequest {
        credential: secret.into(),
        permission: permission.into(),
        context: Some(pb::RequestContext {
            client_ip: ip.into(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
}

async fn audit(s: &TestServer, action: &str) -> Vec<latchkey::domain::model::AuditEvent> {
    s.running()
        .services
        .audit
        .list(
            &AuditFilter {
                action_prefix: Some(action.to_owned()),
                ..AuditFilter::default()
            },
            None,
            1000,
        )
        .await
        .unwrap()
}

/// Events of this type in the webhook outbox, as their `data` JSON.
pub async fn outbox(db_url: &str, event_type: &str) -> Vec<serde_json::Value> {
    use sea_orm::{ConnectionTrait, Database, Statement};
    let db = Database::connect(db_url).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT payload FROM webhook_events WHERE event_type = '{event_type}'"),
        ))
        .await
        .unwrap();
    let out = rows
        .iter()
        .map(|r| serde_json::from_str(&r.try_get::<String>("", "payload").unwrap()).unwrap())
        .collect();
    db.close().await.unwrap();
    out
}

/// Allowed and denied counts per key and permission come back from
/// GetUsage, by key and by account, summed into hour buckets too.
async fn get_usage_returns_counts_per_permission_and_outcome(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (key, secret) = s.simple_key("PRIME", &["feedback.read"]).await;
    for _ in 0..3 {
        assert!(s.check_perm(&secret, "feedback.read").await.allowed);
    }
    for _ in 0..2 {
        assert!(!s.check_perm(&secret, "feedback.write").await.allowed);
    }
    let points = eventually("the usage flush", || async {
        let p = usage(&s, Subject::KeyId(key.id.clone()), pb::Granularity::Minute).await;
        let total: u64 = p
            .iter()
            .map(|p| p.allowed + p.denied.values().sum::<u64>())
            .sum();
        (total == 5).then_some(p)
    })
    .await;
    let read = points
        .iter()
        .find(|p| p.permission == "feedback.read")
        .unwrap();
    assert_eq!(read.allowed, 3);
    assert!(read.denied.is_empty());
    let write = points
        .iter()
        .find(|p| p.permission == "feedback.write")
        .unwrap();
    assert_eq!(write.allowed, 0);
    assert_eq!(write.denied.get("PERMISSION_DENIED"), Some(&2));

    let by_account = usage(
        &s,
        Subject::AccountId(key.account_id.clone()),
        pb::Granularity::Hour,
    )
    .await;
    assert_eq!(by_account.iter().map(|p| p.allowed).sum::<u64>(), 3);
    assert!(by_account.iter().all(|p| p.key_id == key.id));

    // Bad input names the field.
    let now = s.clock.now();
    let mut client = usage_client(&s);
    for (req, field) in [
        (
            pb::GetUsageRequest {
                subject: Some(Subject::KeyId(key.id.clone())),
                from: ts(now),
                to: ts(now + 60_000),
                granularity: pb::Granularity::Unspecified.into(),
            },
            "granularity",
        ),
        (
            pb::GetUsageRequest {
                subject: Some(Subject::KeyId(key.id.clone())),
                from: ts(now),
                to: ts(now - 60_000),
                granularity: pb::Granularity::Minute.into(),
            },
            "to",
        ),
        (
            pb::GetUsageRequest {
                subject: Some(Subject::KeyId(key.id.clone())),
                from: ts(now - 365 * DAY * 1000),
                to: ts(now),
                granularity: pb::Granularity::Minute.into(),
            },
            "granularity",
        ),
        (
            pb::GetUsageRequest {
                subject: Some(Subject::KeyId("nope".into())),
                from: ts(now),
                to: ts(now + 60_000),
                granularity: pb::Granularity::Minute.into(),
            },
            "key_id",
        ),
    ] {
        let err = client.get_usage(s.admin(req)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }
    // Without admin.usage.read: refused.
    let err = client
        .get_usage(crate::common::bearer(
            &secret,
            pb::GetUsageRequest {
                subject: Some(Subject::KeyId(key.id.clone())),
                from: ts(now),
                to: ts(now + 60_000),
                granularity: pb::Granularity::Minute.into(),
            },
        ))
        .await
        .unwrap_err();
    assert!(matches!(
        err.code(),
        Code::PermissionDenied | Code::Unauthenticated
    ));
    s.stop().await;
}

/// Denials become aggregated audit events (outcome `denied`, a count) per
/// key or unknown-credential hash prefix, reason, address and minute, once
/// the minute has closed; a known key failing authentication also raises
/// one aggregated `auth.failed`.
async fn denials_are_aggregated_into_the_audit_trail(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (key, secret) = s.simple_key("PRIME", &["feedback.read"]).await;
    for _ in 0..3 {
        check_from(
            &s,
            "lk_test_sk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "feedback.read",
            "192.0.2.10",
        )
        .await;
    }
    for _ in 0..2 {
        assert!(
            !check_from(&s, &secret, "orders.write", "192.0.2.11")
                .await
                .allowed
        );
    }
    s.keys()
        .revoke_key(s.admin(pb::RevokeKeyRequest { id: key.id.clone() }))
        .await
        .unwrap();
    for _ in 0..4 {
        assert!(
            !check_from(&s, &secret, "feedback.read", "192.0.2.11")
                .await
                .allowed
        );
    }
    // Nothing is written while the minute is open…
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(audit(&s, "auth.denied").await.is_empty());
    // …and everything once it has closed.
    s.clock.advance_secs(61);
    let events = eventually("the denial events", || async {
        let e = audit(&s, "auth.denied").await;
        (e.len() >= 3).then_some(e)
    })
    .await;
    assert!(
        events
            .iter()
            .all(|e| e.outcome == AuditOutcome::Denied && e.actor == "system")
    );
    let of_key: Vec<_> = events
        .iter()
        .filter(|e| e.target_id.as_deref() == Some(key.id.as_str()))
        .collect();
    let scope = of_key
        .iter()
        .find(|e| e.summary.contains("PERMISSION_DENIED"))
        .unwrap();
    assert_eq!(scope.count, 2);
    assert_eq!(scope.client_ip.as_deref(), Some("192.0.2.11"));
    assert_eq!(scope.account_id.as_deref(), Some(key.account_id.as_str()));
    let revoked = of_key
        .iter()
        .find(|e| e.summary.contains("KEY_REVOKED"))
        .unwrap();
    assert_eq!(revoked.count, 4);
    let stranger = events
        .iter()
        .find(|e| e.target_type == "credential")
        .unwrap();
    assert_eq!(stranger.count, 3);
    let prefix = stranger.target_id.clone().unwrap();
    assert_eq!(prefix.len(), 8);
    assert!(prefix.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(
        !events.iter().any(|e| e.summary.contains("lk_test_sk_")),
        "no credential in events"
    );

    let failed = eventually("auth.failed", || async {
        let e = audit(&s, "auth.failed").await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(
        failed.len(),
        1,
        "one aggregated auth.failed for the key and minute"
    );
    assert_eq!(failed[0].target_id.as_deref(), Some(key.id.as_str()));
    assert_eq!(failed[0].count, 4);
    let queued = outbox(&s.db.url, "auth.failed").await;
    assert_eq!(queued.len(), 1, "auth.failed goes to the webhook outbox");
    assert_eq!(queued[0]["key_id"], serde_json::json!(key.id));
    assert_eq!(queued[0]["count"], serde_json::json!(4));
    s.stop().await;
}

/// Shutdown writes the open minute's denials: nothing buffered is lost.
async fn shutdown_flushes_buffered_outcomes(backend: Backend) {
    let db = Arc::new(TestDb::new(backend).await);
    // A flush interval longer than the test: only the shutdown flush writes.
    let s = TestServer::start_on(db.clone(), |c| c.usage_flush_interval_ms = 600_000, None).await;
    let (key, secret) = s.simple_key("PRIME", &["feedback.read"]).await;
    for _ in 0..5 {
        assert!(!s.check_perm(&secret, "orders.write").await.allowed);
    }
    s.stop_keep_db().await;
    let store = SqlStore::connect(&Secret::new(db.url.clone()))
        .await
        .unwrap();
    let events = store
        .list_events(
            &AuditFilter {
                key_id: Some(key.id.clone()),
                outcome: Some(AuditOutcome::Denied),
                ..AuditFilter::default()
            },
            None,
            100,
        )
        .await
        .unwrap();
    assert_eq!(events.iter().map(|e| e.count).sum::<i64>(), 5, "{events:?}");
    let used = store.exercised(&key.id).await.unwrap();
    assert!(used.is_empty(), "only denials were recorded");
    store.close().await;
    db.drop_database().await;
}

/// A flood of denials (distinct unknown credentials, far more than the
/// buffer holds) never grows memory past the bounds: the ring and the
/// aggregates stay at their capacity, the rest is dropped, and the drops
/// are counted in the metric and in an audit event.
async fn a_flood_of_denials_is_bounded_and_drops_are_counted(backend: Backend) {
    let s = TestServer::start_with(backend, |c| {
        c.usage.buffer_capacity = 64;
        c.usage.max_groups = 64;
        c.usage_flush_interval_ms = 200;
    })
    .await;
    let services = s.running().services.clone();
    let recorder = services.analytics.recorder.clone().unwrap();
    let mut credentials = Vec::new();
    for i in 0..5000 {
        credentials.push(format!("lk_test_sk_flood{i:06}AAAAAAAAAAAAAAAAAAAAAA"));
    }
    for c in &credentials {
        let d = services
            .checker
            .decide(CheckInput {
                credential: c,
                peer_ip: Some("198.51.100.1".parse().unwrap()),
                ..CheckInput::default()
            })
            .await;
        assert!(!d.allowed());
        assert!(recorder.depth() <= 64, "the ring never grows");
    }
    assert!(
        recorder.dropped_total() > 4000,
        "dropped {}",
        recorder.dropped_total()
    );
    let metric = latchkey::telemetry::metrics::metrics()
        .snapshot()
        .audit_dropped;
    assert!(metric >= recorder.dropped_total(), "metric {metric}");
    let noted = eventually("the dropped-outcomes event", || async {
        let e = audit(&s, "audit.outcomes_dropped").await;
        let n: i64 = e.iter().map(|e| e.count).sum();
        (n > 4000).then_some(n)
    })
    .await;
    assert!(noted <= i64::try_from(recorder.dropped_total()).unwrap());
    // What was kept is still written: at most the bound.
    s.clock.advance_secs(61);
    let denied = eventually("the kept denials", || async {
        let e = audit(&s, "auth.denied").await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert!(denied.len() <= 64);
    s.stop().await;
}

/// Usage older than `usage.retention_days` is purged in batches; a day
/// inside the window stays.
async fn usage_retention_purges_at_the_boundary(backend: Backend) {
    let s = TestServer::start_with(backend, |c| c.usage.retention_days = 90).await;
    let (key, _) = s.simple_key("PRIME", &["feedback.read"]).await;
    let store = SqlStore::connect(&Secret::new(s.db.url.clone()))
        .await
        .unwrap();
    let now = s.clock.now();
    let row = |days: i64, permission: &str| UsageRow {
        minute: now - days * DAY * 1000,
        key_id: key.id.clone(),
        account_id: key.account_id.clone(),
        mode: latchkey::domain::model::Mode::Test,
        permission: permission.into(),
        outcome: "ALLOWED".into(),
        country: String::new(),
        count: 1,
    };
    let mut rows = vec![row(89, "kept.read"), row(91, "gone.read")];
    // More than one purge batch of expired rows.
    for i in 0..1500 {
        let mut r = row(200, "old.read");
        r.minute -= i * 60_000;
        rows.push(r);
    }
    store.add_usage(&rows).await.unwrap();
    let purged = s
        .running()
        .services
        .analytics
        .reports
        .purge()
        .await
        .unwrap();
    assert_eq!(purged, 1501);
    let left: Vec<String> = store
        .exercised(&key.id)
        .await
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(left, vec!["kept.read".to_owned()]);
    store.close().await;
    s.stop().await;
}

/// With a GeoIP database, usage carries countries, and a key seen from a
/// country it was not seen from in the window raises one
/// `auth.unusual_location` per key, country and day.
async fn an_unusual_country_raises_one_event_a_day(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("countries.mmdb");
    std::fs::write(
        &path,
        crate::mmdb::countries(&[
            ("198.51.100.0".parse().unwrap(), 24, "DE"),
            ("203.0.113.0".parse().unwrap(), 24, "JP"),
        ]),
    )
    .unwrap();
    let s = TestServer::start_with(backend, |c| c.geoip.database_path = Some(path.clone())).await;
    let (key, secret) = s.simple_key("PRIME", &["feedback.read"]).await;
    assert!(
        check_from(&s, &secret, "feedback.read", "198.51.100.7")
            .await
            .allowed
    );
    eventually("the usual country noted", || async {
        let c = s
            .running()
            .services
            .analytics
            .store
            .key_countries(&key.id)
            .await
            .unwrap();
        (!c.is_empty()).then_some(())
    })
    .await;
    assert!(
        audit(&s, "auth.unusual_location").await.is_empty(),
        "the first country is the baseline"
    );
    s.clock.advance_secs(DAY);
    for _ in 0..3 {
        assert!(
            check_from(&s, &secret, "feedback.read", "198.51.100.8")
                .await
                .allowed
        );
        assert!(
            check_from(&s, &secret, "feedback.read", "203.0.113.9")
                .await
                .allowed
        );
    }
    let events = eventually("auth.unusual_location", || async {
        let e = audit(&s, "auth.unusual_location").await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    // Later flushes the same day add nothing.
    assert!(
        check_from(&s, &secret, "feedback.read", "203.0.113.10")
            .await
            .allowed
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let events_after = audit(&s, "auth.unusual_location").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events_after.len(), 1, "once per key, country and day");
    assert!(
        events[0].summary.contains("\"country\":\"JP\""),
        "{}",
        events[0].summary
    );
    assert!(events[0].summary.contains("DE"), "{}", events[0].summary);
    let queued = outbox(&s.db.url, "auth.unusual_location").await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0]["country"], serde_json::json!("JP"));
    let now = s.clock.now();
    let points = usage_client(&s)
        .get_usage(s.admin(pb::GetUsageRequest {
            subject: Some(Subject::KeyId(key.id.clone())),
            from: ts(now - 2 * DAY * 1000),
            to: ts(now + 60_000),
            granularity: pb::Granularity::Day.into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .points;
    let de: u64 = points.iter().filter_map(|p| p.countries.get("DE")).sum();
    let jp: u64 = points.iter().filter_map(|p| p.countries.get("JP")).sum();
    assert_eq!((de, jp), (4, 4));
    s.stop().await;
}

/// The ring is emptied into the aggregates between flushes: bursts that
/// each fit in it, but together do not, lose nothing while the usage flush
/// is a minute away.
async fn the_ring_is_emptied_between_flushes(backend: Backend) {
    let s = TestServer::start_with(backend, |c| {
        c.usage.buffer_capacity = 64;
        c.usage.max_groups = 10_000;
        c.usage_flush_interval_ms = 60_000;
    })
    .await;
    let services = s.running().services.clone();
    let recorder = services.analytics.recorder.clone().unwrap();
    for burst in 0..4 {
        for i in 0..50 {
            let credential = format!("lk_test_sk_burst{burst}x{i:04}AAAAAAAAAAAAAAAAAAAAA");
            let d = services
                .checker
                .decide(CheckInput {
                    credential: &credential,
                    ..CheckInput::default()
                })
                .await;
            assert!(!d.allowed());
        }
        eventually("the ring emptied", || async {
            (recorder.depth() == 0).then_some(())
        })
        .await;
    }
    assert_eq!(
        recorder.dropped_total(),
        0,
        "200 outcomes through a ring of 64"
    );
    s.stop().await;
}

backend_tests!(
    get_usage_returns_counts_per_permission_and_outcome,
    denials_are_aggregated_into_the_audit_trail,
    shutdown_flushes_buffered_outcomes,
    a_flood_of_denials_is_bounded_and_drops_are_counted,
    usage_retention_purges_at_the_boundary,
    an_unusual_country_raises_one_event_a_day,
    the_ring_is_emptied_between_flushes,
);
