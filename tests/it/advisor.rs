//! The least-privilege advisor (issue 16 item 4) on keys with synthetic
//! usage: what was granted, what was exercised in the window, the narrowest
//! covering scopes (applied with one UpdateKey), since when the rest was
//! idle; young keys get no advice; `scope.unused` is sent once per key.

use latchkey::crypto::secret::Secret;
use latchkey::domain::model::{AuditFilter, Mode};
use latchkey::pb;
use latchkey::ports::{Clock, UsageRow, UsageStore};
use latchkey::store::SqlStore;
use tonic::Code;

use crate::backend_tests;
use crate::common::{Backend, TestServer, key_request};

const DAY_MS: i64 = 86_400_000;

fn used(key: &pb::Key, at: i64, permission: &str, outcome: &str) -> UsageRow {
    UsageRow {
        minute: at - at.rem_euclid(60_000),
        key_id: key.id.clone(),
        account_id: key.account_id.clone(),
        mode: Mode::Test,
        permission: permission.into(),
        outcome: outcome.into(),
        country: String::new(),
        count: 7,
    }
}

async fn advise(s: &TestServer, id: &str) -> Result<pb::AdviseKeyResponse, tonic::Status> {
    s.keys()
        .advise_key(s.admin(pb::AdviseKeyRequest { id: id.into() }))
        .await
        .map(tonic::Response::into_inner)
}

async fn advisor_suggests_the_narrowest_scopes_from_usage(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let (narrow, narrow_secret) = s
        .create_key(key_request(
            &account.id,
            &[
                "feedback.read",
                "feedback.write",
                "orders.read",
                "orders.write",
            ],
        ))
        .await;
    let (wide, _) = s.create_key(key_request(&account.id, &["*"])).await;
    let created = s.clock.now();

    // Young keys get no advice.
    let err = advise(&s, &narrow.id).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("younger than 30 days"),
        "{}",
        err.message()
    );

    // Sixty days on: orders.write was last used on day 10 (outside the
    // 30-day window), feedback.* on day 50; a denial is not an exercise.
    s.clock.advance_secs(60 * 86_400);
    let store = SqlStore::connect(&Secret::new(s.db.url.clone()))
        .await
        .unwrap();
    store
        .add_usage(&[
            used(&narrow, created + 10 * DAY_MS, "orders.write", "ALLOWED"),
            used(&narrow, created + 50 * DAY_MS, "feedback.read", "ALLOWED"),
            used(&narrow, created + 50 * DAY_MS, "feedback.write", "ALLOWED"),
            used(
                &narrow,
                created + 55 * DAY_MS,
                "orders.read",
                "PERMISSION_DENIED",
            ),
            used(&wide, created + 40 * DAY_MS, "feedback.read", "ALLOWED"),
            used(&wide, created + 41 * DAY_MS, "feedback.write", "ALLOWED"),
            used(&wide, created + 42 * DAY_MS, "orders.read", "ALLOWED"),
        ])
        .await
        .unwrap();

    let a = advise(&s, &narrow.id).await.unwrap();
    assert_eq!(
        a.granted,
        [
            "feedback.read",
            "feedback.write",
            "orders.read",
            "orders.write"
        ]
    );
    assert_eq!(a.exercised, ["feedback.read", "feedback.write"]);
    // The key holds no wildcard: advice never widens it to `feedback.*`.
    assert_eq!(a.suggested, ["feedback.read", "feedback.write"]);
    let since = a.unused_since.unwrap().seconds * 1000;
    assert_eq!(since, used(&narrow, created + 10 * DAY_MS, "", "").minute);

    // `*`, with every known feedback action used: collapsed to `feedback.*`;
    // orders has a second known action (orders.write) it never used.
    let w = advise(&s, &wide.id).await.unwrap();
    assert_eq!(w.granted, ["*"]);
    assert_eq!(w.suggested, ["feedback.*", "orders.read"]);
    assert!(w.unused_since.is_none(), "`*` is in use");

    // Applying the advice is one UpdateKey.
    let updated = s
        .keys()
        .update_key(s.admin(pb::UpdateKeyRequest {
            id: narrow.id.clone(),
            scopes: Some(pb::StringList {
                values: a.suggested.clone(),
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.scopes, a.suggested);
    assert!(!s.check_perm(&narrow_secret, "orders.write").await.allowed);

    // Unknown and malformed ids.
    assert_eq!(
        advise(&s, &latchkey::domain::model::new_id("key"))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let bad = advise(&s, "nope").await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("id"));
    store.close().await;
    s.stop().await;
}

/// `scope.unused` goes out once for a key that has held an unused write
/// scope for the whole window, and never for one whose only idle scope is a read.
async fn scope_unused_is_sent_once_per_key(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let (idle_write, _) = s
        .create_key(key_request(&account.id, &["feedback.read", "orders.write"]))
        .await;
    let (idle_read, _) = s
        .create_key(key_request(&account.id, &["feedback.read", "orders.read"]))
        .await;
    let advisor = &s.running().services.analytics.advisor;
    // Young keys: nothing.
    assert_eq!(advisor.scan_unused().await.unwrap(), 0);
    s.clock.advance_secs(31 * 86_400);
    let store = SqlStore::connect(&Secret::new(s.db.url.clone()))
        .await
        .unwrap();
    let now = s.clock.now();
    store
        .add_usage(&[
            used(&idle_write, now - DAY_MS, "feedback.read", "ALLOWED"),
            used(&idle_read, now - DAY_MS, "feedback.read", "ALLOWED"),
        ])
        .await
        .unwrap();
    // The idle write key, and the test's own admin token (`admin.*`, never used).
    assert_eq!(advisor.scan_unused().await.unwrap(), 2);
    assert_eq!(advisor.scan_unused().await.unwrap(), 0, "once per key");
    let events = s
        .running()
        .services
        .audit
        .list(
            &AuditFilter {
                action_prefix: Some("scope.unused".into()),
                ..AuditFilter::default()
            },
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    let of = |id: &str| {
        events
            .iter()
            .find(|e| e.target_id.as_deref() == Some(id))
            .cloned()
    };
    let write = of(&idle_write.id).expect("scope.unused for the idle write scope");
    assert!(
        write
            .summary
            .contains("\"unused_scopes\":[\"orders.write\"]"),
        "{}",
        write.summary
    );
    assert!(
        of(&idle_read.id).is_none(),
        "an idle read scope is no alert"
    );
    store.close().await;
    s.stop().await;
}

backend_tests!(
    advisor_suggests_the_narrowest_scopes_from_usage,
    scope_unused_is_sent_once_per_key,
);
