//! Webhook events beyond a change's own (issue 16, item 2): `key.expiring`
//! and `key.expired` from the expiry job (once per key and threshold, on
//! the stepped clock, across replicas), aggregated `rate_limit.exceeded`,
//! and two replicas on one PostgreSQL database delivering every event once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use latchkey::config::Config;
use latchkey::crypto::secret::Secret;
use latchkey::domain::keys::expiry::ExpiryNotices;
use latchkey::domain::model::{OutboxEvent, SignatureFormat};
use latchkey::domain::webhooks::NewEndpoint;
use latchkey::pb;
use latchkey::ports::Clock;
use latchkey::store::SqlStore;
use pb::Reason;
use sea_orm::{ConnectionTrait, Database, Statement};

use crate::backend_tests;
use crate::common::{Backend, TestDb, TestServer, eventually, key_request, reason};

const DAY: i64 = 86_400;

/// Every POST it got: headers and body. Answers 200, after `delay`.
#[derive(Default)]
pub struct Receiver {
    pub got: Mutex<Vec<(HeaderMap, String)>>,
}

impl Receiver {
    /// How many times each `webhook-id` arrived.
    pub fn ids(&self) -> HashMap<String, usize> {
        let mut ids = HashMap::new();
        for (h, _) in self.got.lock().unwrap().iter() {
            let id = h.get("webhook-id").unwrap().to_str().unwrap().to_owned();
            *ids.entry(id).or_default() += 1;
        }
        ids
    }
}

pub async fn receiver(delay: std::time::Duration) -> (Arc<Receiver>, SocketAddr) {
    let state = Arc::new(Receiver::default());
    let s = state.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let s = s.clone();
            async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                s.got.lock().unwrap().push((headers, body));
                (StatusCode::OK, "ok")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (state, addr)
}

/// Verifies a Standard Webhooks signature the way the reference libraries do.
pub fn verify_standard(secret: &str, headers: &HeaderMap, body: &str) -> bool {
    let h = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_owned();
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let signed = format!("{}.{}.{}", h("webhook-id"), h("webhook-timestamp"), body);
    let mac = latchkey::crypto::mac::hmac_sha256(&key, &[signed.as_bytes()]);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac)
    );
    h("webhook-signature").split(' ').any(|s| s == expected)
}

/// An operator-wide endpoint at the receiver for these event types.
pub async fn endpoint(s: &TestServer, addr: SocketAddr, types: &[&str]) -> Secret<String> {
    s.running()
        .services
        .webhooks
        .create_endpoint(NewEndpoint {
            account_id: None,
            url: format!("http://{addr}/hook"),
            event_types: types.iter().map(|t| (*t).to_owned()).collect(),
            description: "test receiver".into(),
            format: SignatureFormat::Standard,
        })
        .await
        .unwrap()
        .1
}

/// A server whose deliveries may go to the loopback receiver, polled often.
pub fn insecure(c: &mut Config) {
    c.webhooks.allow_insecure_targets = true;
    c.webhooks.poll_interval_ms = 20;
}

/// One outbox row, as the tests read it.
#[derive(Debug)]
struct Queued {
    account_id: Option<String>,
    mode: Option<String>,
    data: serde_json::Value,
}

/// The outbox's events of this type.
async fn queued(db_url: &str, event_type: &str) -> Vec<Queued> {
    let db = Database::connect(db_url).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT account_id, mode, payload FROM webhook_events \
                 WHERE event_type = '{event_type}' ORDER BY created_at"
            ),
        ))
        .await
        .unwrap();
    let out = rows
        .iter()
        .map(|r| Queued {
            account_id: r.try_get("", "account_id").unwrap(),
            mode: r.try_get("", "mode").unwrap(),
            data: serde_json::from_str(&r.try_get::<String>("", "payload").unwrap()).unwrap(),
        })
        .collect();
    db.close().await.unwrap();
    out
}

/// Audit events of this action.
async fn audited(db_url: &str, action: &str) -> Vec<(String, Option<String>)> {
    let db = Database::connect(db_url).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT actor, target_id FROM audit_events WHERE action = '{action}'"),
        ))
        .await
        .unwrap();
    let out = rows
        .iter()
        .map(|r| {
            (
                r.try_get::<String>("", "actor").unwrap(),
                r.try_get::<Option<String>>("", "target_id").unwrap(),
            )
        })
        .collect();
    db.close().await.unwrap();
    out
}

/// An expiry job of its own on the server's database and clock (a replica's).
async fn expiry_job(s: &TestServer, days: u32) -> (ExpiryNotices, SqlStore) {
    let store = SqlStore::connect(&Secret::new(s.db.url.clone()))
        .await
        .unwrap();
    let clock: Arc<dyn Clock> = s.clock.clone();
    (
        ExpiryNotices::new(Arc::new(store.clone()), clock, days),
        store,
    )
}

/// A key on `account` that expires in `days`.
async fn key_expiring_in(s: &TestServer, account: &str, days: i64) -> pb::Key {
    s.create_key(pb::CreateKeyRequest {
        expires_in_seconds: Some(days * DAY),
        ..key_request(account, &["feedback.read"])
    })
    .await
    .0
}

fn for_key<'a>(events: &'a [Queued], id: &str) -> Vec<&'a Queued> {
    events.iter().filter(|e| e.data["id"] == id).collect()
}

/// The server's own job runs once at start and then not again during the
/// test: the passes here are the test's. Its first pass may come late, after
/// the test made its keys (a busy machine), so it sends no `key.expiring`
/// (0 days) and, with the clock not yet stepped, no `key.expired` either.
fn quiet_expiry_job(c: &mut Config) {
    c.webhooks.key_expiry_interval_seconds = 86_400;
    c.webhooks.key_expiring_days = 0;
}

/// Crossing 7 days before expiry sends one `key.expiring`; running the job
/// again sends nothing more; crossing the expiry sends one `key.expired`. A
/// key revoked before gets neither (it stopped working when revoked).
async fn key_expiring_and_expired_are_sent_once(backend: Backend) {
    let s = TestServer::start_with(backend, quiet_expiry_job).await;
    let account = s.account("PRIME").await;
    let key = key_expiring_in(&s, &account.id, 30).await;
    let revoked = key_expiring_in(&s, &account.id, 30).await;
    s.keys()
        .revoke_key(s.admin(pb::RevokeKeyRequest {
            id: revoked.id.clone(),
        }))
        .await
        .unwrap();
    let (job, store) = expiry_job(&s, 7).await;
    let url = s.db.url.clone();

    // 8 days and a second before the expiry: not yet.
    s.clock.advance_secs(22 * DAY - 1);
    assert_eq!(job.run().await.unwrap(), 0);
    assert!(queued(&url, "key.expiring").await.is_empty());

    // Within 7 days: one key.expiring, however often the job runs.
    s.clock.advance_secs(DAY + 2);
    assert_eq!(job.run().await.unwrap(), 1);
    for _ in 0..2 {
        assert_eq!(job.run().await.unwrap(), 0);
    }
    let expiring = queued(&url, "key.expiring").await;
    assert_eq!(expiring.len(), 1, "{expiring:?}");
    let e = &expiring[0];
    assert_eq!(e.data["id"], key.id);
    assert_eq!(e.data["object"], "key");
    assert_eq!(e.data["name"], key.name);
    let expiry = key.expires_at.unwrap();
    let expiry_ms = expiry.seconds * 1000 + i64::from(expiry.nanos) / 1_000_000;
    assert_eq!(e.data["expires_at"], expiry_ms);
    assert_eq!(e.data["expiring_days"], 7);
    assert_eq!(e.account_id.as_deref(), Some(account.id.as_str()));
    assert_eq!(e.mode.as_deref(), Some("test"));
    let text = e.data.to_string();
    assert!(!text.contains("hash"), "no hash in the event: {text}");
    assert!(queued(&url, "key.expired").await.is_empty());

    // Past the expiry: one key.expired, once.
    s.clock.advance_secs(7 * DAY);
    assert_eq!(job.run().await.unwrap(), 1);
    assert_eq!(job.run().await.unwrap(), 0);
    let expired = queued(&url, "key.expired").await;
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(expired[0].data["id"], key.id);
    assert_eq!(expired[0].data["status"], "expired");
    assert_eq!(queued(&url, "key.expiring").await.len(), 1);

    // The revoked key was never announced; the notices are audited as `system`.
    for t in ["key.expiring", "key.expired"] {
        assert!(
            for_key(&queued(&url, t).await, &revoked.id).is_empty(),
            "{t}"
        );
        let audit = audited(&url, t).await;
        assert_eq!(audit, [("system".to_owned(), Some(key.id.clone()))], "{t}");
    }
    store.close().await;
    s.stop().await;
}

/// A key whose expiry is moved is told again about the new one; one with
/// `key_expiring_days = 0` configured gets only `key.expired`.
async fn a_moved_expiry_is_announced_again(backend: Backend) {
    let s = TestServer::start_with(backend, quiet_expiry_job).await;
    let account = s.account("PRIME").await;
    let key = key_expiring_in(&s, &account.id, 5).await;
    let (job, store) = expiry_job(&s, 7).await;
    let (silent, silent_store) = expiry_job(&s, 0).await;
    assert_eq!(silent.run().await.unwrap(), 0, "no key.expiring at 0 days");
    assert_eq!(job.run().await.unwrap(), 1);
    s.keys()
        .update_key(s.admin(pb::UpdateKeyRequest {
            id: key.id.clone(),
            expires_in_seconds: Some(6 * DAY),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(job.run().await.unwrap(), 1, "the new expiry");
    assert_eq!(job.run().await.unwrap(), 0);
    let expiring = queued(&s.db.url, "key.expiring").await;
    assert_eq!(expiring.len(), 2);
    assert_ne!(
        expiring[0].data["expires_at"],
        expiring[1].data["expires_at"]
    );
    s.clock.advance_secs(6 * DAY + 1);
    assert_eq!(silent.run().await.unwrap(), 1, "key.expired still goes");
    assert_eq!(job.run().await.unwrap(), 0);
    assert_eq!(queued(&s.db.url, "key.expired").await.len(), 1);
    store.close().await;
    silent_store.close().await;
    s.stop().await;
}

/// Two job instances (replicas) on one PostgreSQL database, run at once:
/// every key gets exactly one `key.expiring` and one `key.expired`, and the
/// instances' counts add up to the keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_expiry_jobs_on_postgres_send_each_notice_once() {
    const KEYS: usize = 150;
    let s = TestServer::start_with(Backend::Postgres, quiet_expiry_job).await;
    let account = s.account("PRIME").await;
    let mut ids = Vec::new();
    for _ in 0..KEYS {
        ids.push(key_expiring_in(&s, &account.id, 3).await.id);
    }
    let (a, store_a) = expiry_job(&s, 7).await;
    let (b, store_b) = expiry_job(&s, 7).await;
    let url = s.db.url.clone();
    for (event, step) in [("key.expiring", 0), ("key.expired", 3 * DAY + 1)] {
        s.clock.advance_secs(step);
        let (na, nb) = tokio::join!(a.run(), b.run());
        let (na, nb) = (na.unwrap(), nb.unwrap());
        assert_eq!(na + nb, KEYS, "{event}: a sent {na}, b sent {nb}");
        let events = queued(&url, event).await;
        assert_eq!(events.len(), KEYS, "{event}");
        let mut got: Vec<String> = events
            .iter()
            .map(|e| e.data["id"].as_str().unwrap().to_owned())
            .collect();
        got.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(got, want, "{event}: each key once");
    }
    store_a.close().await;
    store_b.close().await;
    s.stop().await;
}

/// `RATE_LIMITED` denials raise one aggregated `rate_limit.exceeded` per key
/// and closed minute, throttled like `auth.failed`: within the throttle
/// window the next minutes' are held back and counted into the next one.
async fn rate_limit_exceeded_is_aggregated_and_throttled(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let (key, secret) = s
        .create_key(pb::CreateKeyRequest {
            rate_limit: Some(pb::RateLimitPolicy {
                requests: 1,
                per_seconds: 3600,
                burst: 0,
            }),
            ..key_request(&account.id, &["feedback.read"])
        })
        .await;
    let deny = |n: usize| {
        let (s, secret) = (&s, &secret);
        async move {
            for _ in 0..n {
                let r = s.check_perm(secret, "feedback.read").await;
                assert_eq!(reason(&r), Reason::RateLimited);
            }
        }
    };
    assert!(s.check_perm(&secret, "feedback.read").await.allowed);
    deny(4).await;
    // Written once the minute has closed.
    s.clock.advance_secs(61);
    let events = eventually("rate_limit.exceeded", || async {
        let q = queued(&s.db.url, "rate_limit.exceeded").await;
        (!q.is_empty()).then_some(q)
    })
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].data["key_id"], key.id);
    assert_eq!(events[0].data["count"], 4);
    assert_eq!(events[0].data["suppressed_before"], 0);
    assert_eq!(events[0].account_id.as_deref(), Some(account.id.as_str()));
    assert_eq!(events[0].mode.as_deref(), Some("test"));
    // A rate-limited key is no authentication failure.
    assert!(queued(&s.db.url, "auth.failed").await.is_empty());

    // The next minute: inside the 300 s throttle, held back.
    deny(2).await;
    s.clock.advance_secs(61);
    eventually("the second minute's denials audited", || async {
        let n = audited(&s.db.url, "auth.denied").await.len();
        (n >= 2).then_some(())
    })
    .await;
    assert_eq!(queued(&s.db.url, "rate_limit.exceeded").await.len(), 1);

    // Past the window: the next one carries what was held back.
    s.clock.advance_secs(300);
    deny(3).await;
    s.clock.advance_secs(61);
    let events = eventually("the next rate_limit.exceeded", || async {
        let q = queued(&s.db.url, "rate_limit.exceeded").await;
        (q.len() == 2).then_some(q)
    })
    .await;
    assert_eq!(events[1].data["count"], 3);
    assert_eq!(events[1].data["suppressed_before"], 2);
    s.stop().await;
}

/// Two replicas on one PostgreSQL database, both delivering, and many
/// events enqueued on both while they run: every event reaches the
/// receiver, and no `webhook-id` arrives twice (`FOR UPDATE SKIP LOCKED`
/// leases; one delivery per event and endpoint).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_deliver_each_event_once() {
    const EVENTS: usize = 200;
    let db = Arc::new(TestDb::new(Backend::Postgres).await);
    let a = TestServer::start_on(db.clone(), insecure, None).await;
    let b = TestServer::start_on(db, insecure, None).await;
    // A receiver that takes a little while, so leases overlap.
    let (rx, addr) = receiver(std::time::Duration::from_millis(5)).await;
    let secret = endpoint(&a, addr, &["webhook.test"]).await;
    let mut want = Vec::new();
    for round in 0..EVENTS / 20 {
        let on = if round % 2 == 0 { &a } else { &b };
        let batch: Vec<OutboxEvent> = (0..20)
            .map(|i| {
                OutboxEvent::new(
                    on.clock.now(),
                    "webhook.test",
                    None,
                    None,
                    serde_json::json!({ "n": round * 20 + i }),
                )
            })
            .collect();
        want.extend(batch.iter().map(|e| e.id.clone()));
        on.running().services.webhooks.enqueue(batch).await.unwrap();
    }
    eventually("every event delivered", || async {
        (rx.ids().len() == EVENTS).then_some(())
    })
    .await;
    // Both replicas are still running: a second delivery would show now.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let ids = rx.ids();
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let mut got: Vec<String> = ids.into_keys().collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    for (h, body) in rx.got.lock().unwrap().iter() {
        assert!(verify_standard(secret.expose(), h, body));
    }
    a.stop_keep_db().await;
    b.stop().await;
}

backend_tests!(
    key_expiring_and_expired_are_sent_once,
    a_moved_expiry_is_announced_again,
    rate_limit_exceeded_is_aggregated_and_throttled,
);
