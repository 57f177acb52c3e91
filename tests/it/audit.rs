//! The audit trail (issue 16, item 1): every mutation's event in the same
//! transaction as the change, with who, from where and the correlation id;
//! ListEvents' filters and keyset paging; retention at its boundary.

use latchkey::domain::model::{AuditEvent, AuditOutcome};
use latchkey::pb;
use sea_orm::{ConnectionTrait, Database};
use tonic::Request;
use tonic::transport::Channel;

use crate::backend_tests;
use crate::common::{Backend, TestServer, key_request};

const DAY_SECS: i64 = 86_400;

fn audit(s: &TestServer) -> pb::audit_service_client::AuditServiceClient<Channel> {
    pb::audit_service_client::AuditServiceClient::new(s.channel.clone())
}

async fn list(s: &TestServer, req: pb::ListEventsRequest) -> pb::ListEventsResponse {
    audit(s)
        .list_events(s.admin(req))
        .await
        .unwrap()
        .into_inner()
}

async fn events_of_key(s: &TestServer, key_id: &str) -> Vec<pb::AuditEvent> {
    list(
        s,
        pb::ListEventsRequest {
            key_id: key_id.into(),
            ..Default::default()
        },
    )
    .await
    .events
}

/// Every key mutation leaves one event naming the admin token, the peer,
/// the user agent and the caller's request id; newest first; the summary
/// never holds the secret.
async fn key_mutations_are_audited_with_their_caller(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("GO").await;
    let mut req = s.admin(key_request(&account.id, &["feedback.read"]));
    req.metadata_mut()
        .insert("x-request-id", "req-4711".parse().unwrap());
    let created = s.keys().create_key(req).await.unwrap().into_inner();
    let key = created.key.unwrap();
    s.keys()
        .suspend_key(s.admin(pb::SuspendKeyRequest { id: key.id.clone() }))
        .await
        .unwrap();
    s.keys()
        .revoke_key(s.admin(pb::RevokeKeyRequest { id: key.id.clone() }))
        .await
        .unwrap();

    let events = events_of_key(&s, &key.id).await;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["key.revoked", "key.suspended", "key.created"]);
    let created_event = &events[2];
    assert_eq!(created_event.correlation_id, "req-4711");
    assert_eq!(created_event.account_id, account.id);
    assert_eq!(created_event.mode, pb::Mode::Test as i32);
    assert_eq!(created_event.target_type, "key");
    assert_eq!(created_event.outcome, "success");
    assert_eq!(created_event.count, 1);
    assert_eq!(created_event.client_ip, "127.0.0.1");
    assert!(!created_event.user_agent.is_empty());
    assert!(
        created_event.actor.starts_with("key_"),
        "{}",
        created_event.actor
    );
    assert!(events.iter().all(|e| e.actor == created_event.actor));
    // A correlation id of its own when the caller sent none.
    assert!(!events[0].correlation_id.is_empty());
    assert_ne!(events[0].correlation_id, "req-4711");
    for e in &events {
        let summary: serde_json::Value = serde_json::from_str(&e.summary).unwrap();
        assert!(summary.is_object());
        assert!(!e.summary.contains(&created.secret));
    }
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&events[0].summary).unwrap()["status"],
        "revoked"
    );
    // GetEvent returns the same event.
    let one = audit(&s)
        .get_event(s.admin(pb::GetEventRequest {
            id: events[1].id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one, events[1]);
    s.stop().await;
}

/// Accounts, live-mode reviews and background suspensions are audited too;
/// the brute-force defence's suspension is the `system` actor's.
async fn accounts_reviews_and_auto_suspension_are_audited(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.live_account("GO").await;
    let events = list(
        &s,
        pb::ListEventsRequest {
            account_id: account.id.clone(),
            ..Default::default()
        },
    )
    .await
    .events;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "live_mode.reviewed",
            "live_mode.requested",
            "account.created"
        ]
    );
    let review: serde_json::Value = serde_json::from_str(&events[0].summary).unwrap();
    assert_eq!(review["from"], "pending_review");
    assert_eq!(review["to"], "active");

    let (key, _) = s
        .create_key(key_request(&account.id, &["feedback.read"]))
        .await;
    s.running()
        .services
        .keys
        .auto_suspend(&key.id, "auto_suspended_brute_force")
        .await
        .unwrap();
    let latest = &events_of_key(&s, &key.id).await[0];
    assert_eq!(latest.action, "key.auto_suspended");
    assert_eq!(latest.actor, "system");
    let summary: serde_json::Value = serde_json::from_str(&latest.summary).unwrap();
    assert_eq!(summary["suspension_cause"], "auto_suspended_brute_force");
    s.stop().await;
}

/// Pages walk every matching event once, newest first, and the filters
/// narrow; a bad filter names its field.
async fn list_events_pages_and_filters(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("GO").await;
    let mut keys = Vec::new();
    for _ in 0..5 {
        keys.push(
            s.create_key(key_request(&account.id, &["feedback.read"]))
                .await
                .0,
        );
        s.clock.advance_secs(1);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(
            &s,
            pb::ListEventsRequest {
                action_prefix: "key.".into(),
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            },
        )
        .await;
        assert!(page.events.len() <= 2);
        seen.extend(page.events);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let ids: Vec<&str> = seen.iter().map(|e| e.target_id.as_str()).collect();
    let mut expected: Vec<&str> = keys.iter().map(|k| k.id.as_str()).collect();
    expected.reverse();
    assert_eq!(ids, expected);

    // `_` in a prefix is literal, not a LIKE wildcard.
    let none = list(
        &s,
        pb::ListEventsRequest {
            action_prefix: "key_".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(none.events.is_empty());
    let accounts_only = list(
        &s,
        pb::ListEventsRequest {
            action_prefix: "account.".into(),
            outcome: "success".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(accounts_only.events.len(), 1);
    // A time window: only the first key's event is before the second second.
    let first = &seen[seen.len() - 1];
    let to = prost_types::Timestamp {
        seconds: first.time.as_ref().unwrap().seconds + 1,
        nanos: first.time.as_ref().unwrap().nanos,
    };
    let window = list(
        &s,
        pb::ListEventsRequest {
            action_prefix: "key.".into(),
            to: Some(to),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(window.events.len(), 1);
    assert_eq!(window.events[0].id, first.id);

    for (req, field) in [
        (
            pb::ListEventsRequest {
                outcome: "maybe".into(),
                ..Default::default()
            },
            "outcome",
        ),
        (
            pb::ListEventsRequest {
                page_token: "garbage".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            pb::ListEventsRequest {
                key_id: "nope".into(),
                ..Default::default()
            },
            "key_id",
        ),
    ] {
        let err = audit(&s).list_events(s.admin(req)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains(field), "{}", err.message());
    }
    // Without `admin.audit.read`: refused.
    let err = audit(&s)
        .list_events(Request::new(pb::ListEventsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    s.stop().await;
}

/// A failure inside the mutation's transaction leaves neither the change
/// nor its event, whichever of the two fails.
async fn a_failed_mutation_leaves_neither_change_nor_event(backend: Backend) {
    let s = TestServer::start(backend).await;
    let a = s.account("GO").await;
    let b = s.account("GO").await;
    s.accounts()
        .add_store(s.admin(pb::AddStoreRequest {
            account_id: a.id.clone(),
            store_id: "shop-1".into(),
        }))
        .await
        .unwrap();
    // The change fails (the store belongs to `a`): no event for `b`.
    s.accounts()
        .add_store(s.admin(pb::AddStoreRequest {
            account_id: b.id.clone(),
            store_id: "shop-1".into(),
        }))
        .await
        .unwrap_err();
    let of_b = list(
        &s,
        pb::ListEventsRequest {
            account_id: b.id.clone(),
            ..Default::default()
        },
    )
    .await;
    let actions: Vec<&str> = of_b.events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["account.created"]);

    // The event fails (its table is gone): the change is not made either.
    let db = Database::connect(&s.db.url).await.unwrap();
    db.execute_unprepared("DROP TABLE audit_events")
        .await
        .unwrap();
    db.close().await.unwrap();
    let err = s
        .keys()
        .create_key(s.admin(key_request(&a.id, &["feedback.read"])))
        .await
        .unwrap_err();
    assert_ne!(err.code(), tonic::Code::Ok);
    let keys = s
        .keys()
        .list_keys(s.admin(pb::ListKeysRequest {
            account_id: a.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(keys.keys.is_empty(), "{:?}", keys.keys);
    let err = s
        .accounts()
        .remove_store(s.admin(pb::RemoveStoreRequest {
            account_id: a.id.clone(),
            store_id: "shop-1".into(),
        }))
        .await
        .unwrap_err();
    assert_ne!(err.code(), tonic::Code::Ok);
    let still = s
        .accounts()
        .get_account(s.admin(pb::GetAccountRequest { id: a.id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(still.store_ids, ["shop-1"]);
    s.stop().await;
}

/// Retention: with `audit.retention_days = 365`, an event 364 days old is
/// kept and one 366 days old is purged, across several purge batches.
async fn retention_purges_at_the_boundary(backend: Backend) {
    let s = TestServer::start(backend).await;
    let audit_manager = s.running().services.audit.clone();
    let t0 = latchkey::ports::Clock::now(s.clock.as_ref());
    let old: Vec<AuditEvent> = (0..1_100)
        .map(|i| {
            let mut e = AuditEvent::new(t0, "system", "auth.denied", "key");
            e.outcome = AuditOutcome::Denied;
            e.target_id = Some(format!("key_old_{i}"));
            e.count = 3;
            e
        })
        .collect();
    audit_manager.append_batch(old).await.unwrap();
    s.clock.advance_secs(2 * DAY_SECS);
    let t2 = latchkey::ports::Clock::now(s.clock.as_ref());
    let young = AuditEvent::new(t2, "system", "auth.denied", "key");
    let young_id = young.id.clone();
    audit_manager.append_batch(vec![young]).await.unwrap();
    let total = |s: &TestServer| {
        let s = s.running().services.audit.clone();
        async move {
            s.list(&Default::default(), None, 5_000)
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e.action == "auth.denied")
                .count()
        }
    };
    // The old batch 364 days old, the young event 362: all kept.
    s.clock.advance_secs(362 * DAY_SECS);
    assert_eq!(audit_manager.purge_expired().await.unwrap(), 0);
    assert_eq!(total(&s).await, 1_101);
    // 366 days old: the old batch goes (in batches), the young event stays (364).
    s.clock.advance_secs(2 * DAY_SECS);
    // (The test admin token's own `admin_token.created` event goes with them.)
    assert!(audit_manager.purge_expired().await.unwrap() >= 1_100);
    assert_eq!(total(&s).await, 1);
    assert_eq!(audit_manager.get(&young_id).await.unwrap().count, 1);
    s.stop().await;
}

/// A purge while mutations write their events: each batch is one
/// statement, so on SQLite no purge fails with "database is locked"
/// (a transaction that read the ids first, then deleted, did whenever a
/// write landed in between), and nothing young is deleted.
async fn a_purge_beside_writers_neither_fails_nor_takes_young_events(backend: Backend) {
    let s = TestServer::start(backend).await;
    let audit_manager = s.running().services.audit.clone();
    let t0 = latchkey::ports::Clock::now(s.clock.as_ref());
    for chunk in 0..20 {
        let old = (0..500)
            .map(|i| {
                let mut e = AuditEvent::new(t0, "system", "auth.denied", "key");
                e.target_id = Some(format!("key_old_{chunk}_{i}"));
                e
            })
            .collect();
        audit_manager.append_batch(old).await.unwrap();
    }
    s.clock.advance_secs(366 * DAY_SECS);
    let now = latchkey::ports::Clock::now(s.clock.as_ref());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn({
        let (audit_manager, stop) = (audit_manager.clone(), stop.clone());
        async move {
            let mut written = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let young = AuditEvent::new(now, "system", "auth.denied", "key");
                audit_manager.append_batch(vec![young]).await.unwrap();
                written += 1;
            }
            written
        }
    });
    let mut purged = 0;
    for _ in 0..5 {
        purged += audit_manager.purge_expired().await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.await.unwrap();
    assert!(purged >= 10_000, "{purged} purged");
    let left = audit_manager
        .list(&Default::default(), None, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "auth.denied")
        .count();
    assert_eq!(left, written);
    s.stop().await;
}

backend_tests!(
    key_mutations_are_audited_with_their_caller,
    accounts_reviews_and_auto_suspension_are_audited,
    list_events_pages_and_filters,
    a_failed_mutation_leaves_neither_change_nor_event,
    retention_purges_at_the_boundary,
    a_purge_beside_writers_neither_fails_nor_takes_young_events,
);
