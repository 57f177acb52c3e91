//! Event webhooks (issue 16, item 2): a change's event reaches a receiver
//! signed in the Standard Webhooks format, failures are retried on the
//! stepped clock with the same `webhook-id`, and private targets are
//! refused unless allowed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use latchkey::config::Config;
use latchkey::domain::model::{DeliveryStatus, SignatureFormat};
use latchkey::domain::webhooks::NewEndpoint;

use crate::backend_tests;
use crate::common::{Backend, TestServer, eventually, key_request};

#[derive(Default)]
pub(crate) struct Receiver {
    pub(crate) got: Mutex<Vec<(HeaderMap, String)>>,
    /// Answer 500 to this many requests first.
    pub(crate) fail_first: AtomicUsize,
}

/// A receiver on `http://<addr>/hook` (also used by `webhook_api.rs`).
pub(crate) async fn receiver(fail_first: usize) -> (Arc<Receiver>, SocketAddr) {
    let state = Arc::new(Receiver {
        fail_first: AtomicUsize::new(fail_first),
        ..Receiver::default()
    });
    let s = state.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let s = s.clone();
            async move {
                s.got.lock().unwrap().push((headers, body));
                let failing = s
                    .fail_first
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if failing {
                    (StatusCode::INTERNAL_SERVER_ERROR, "try later")
                } else {
                    (StatusCode::OK, "ok")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (state, addr)
}

/// Verifies a Standard Webhooks signature the way the reference libraries do.
pub(crate) fn verify_standard(secret: &str, headers: &HeaderMap, body: &str) -> bool {
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

async fn insecure_server(backend: Backend) -> TestServer {
    TestServer::start_with(backend, |c: &mut Config| {
        c.webhooks.allow_insecure_targets = true;
        c.webhooks.poll_interval_ms = 20;
    })
    .await
}

async fn a_key_change_is_delivered_signed_and_retried(backend: Backend) {
    let s = insecure_server(backend).await;
    let (rx, addr) = receiver(1).await;
    let webhooks = s.running().services.webhooks.clone();
    let (endpoint, secret) = webhooks
        .create_endpoint(NewEndpoint {
            account_id: None,
            url: format!("http://{addr}/hook"),
            event_types: vec!["key.created".into()],
            description: "test receiver".into(),
            format: SignatureFormat::Standard,
        })
        .await
        .unwrap();
    let account = s.account("GO").await;
    let (key, key_secret) = s
        .create_key(key_request(&account.id, &["feedback.read"]))
        .await;
    // The first attempt at once: refused with a 500.
    eventually("the first attempt", || async {
        (rx.got.lock().unwrap().len() == 1).then_some(())
    })
    .await;
    let pending = eventually("the failure recorded", || async {
        let d = webhooks
            .list_deliveries(&endpoint.id, None, None, 10)
            .await
            .unwrap();
        d.into_iter()
            .find(|d| d.attempts == 1 && d.status == DeliveryStatus::Pending)
    })
    .await;
    assert_eq!(pending.last_status, Some(500));
    assert_eq!(pending.response_excerpt.as_deref(), Some("try later"));
    // Not before the backoff (5 s ± 10 %) has passed on the clock.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(rx.got.lock().unwrap().len(), 1);
    s.clock.advance_secs(6);
    eventually("the retry", || async {
        (rx.got.lock().unwrap().len() == 2).then_some(())
    })
    .await;
    let got = rx.got.lock().unwrap().clone();
    let (h1, b1) = &got[0];
    let (h2, b2) = &got[1];
    assert_eq!(h1.get("webhook-id"), h2.get("webhook-id"));
    for (h, b) in [(h1, b1), (h2, b2)] {
        assert!(verify_standard(secret.expose(), h, b), "{h:?}");
        assert!(!verify_standard(
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            h,
            b
        ));
        let body: serde_json::Value = serde_json::from_str(b).unwrap();
        assert_eq!(body["type"], "key.created");
        assert_eq!(body["data"]["id"], key.id);
        assert!(!b.contains(&key_secret));
    }
    eventually("the delivery succeeded", || async {
        let d = webhooks
            .list_deliveries(&endpoint.id, Some(DeliveryStatus::Succeeded), None, 10)
            .await
            .unwrap();
        (d.len() == 1).then_some(())
    })
    .await;
    s.stop().await;
}

/// Loopback, private and metadata targets are refused (after DNS), with the
/// field named, unless `webhooks.allow_insecure_targets`; so is http.
async fn private_targets_are_refused(backend: Backend) {
    let s = TestServer::start(backend).await;
    let webhooks = s.running().services.webhooks.clone();
    for url in [
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest",
        "http://example.com/hook",
        "not a url",
    ] {
        let err = webhooks
            .create_endpoint(NewEndpoint {
                account_id: None,
                url: url.into(),
                event_types: vec![],
                description: String::new(),
                format: SignatureFormat::Standard,
            })
            .await
            .unwrap_err();
        assert!(err.to_string().starts_with("url:"), "{url}: {err}");
    }
    let err = webhooks
        .create_endpoint(NewEndpoint {
            account_id: None,
            url: "https://127.0.0.1/hook".into(),
            event_types: vec!["key.nope".into()],
            description: String::new(),
            format: SignatureFormat::Standard,
        })
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("url:"), "{err}");
    s.stop().await;
}

async fn endpoint(
    webhooks: &latchkey::domain::webhooks::WebhookManager,
    addr: SocketAddr,
    event_types: &[&str],
) -> String {
    let (endpoint, _) = webhooks
        .create_endpoint(NewEndpoint {
            account_id: None,
            url: format!("http://{addr}/hook"),
            event_types: event_types.iter().map(|t| (*t).to_owned()).collect(),
            description: String::new(),
            format: SignatureFormat::Standard,
        })
        .await
        .unwrap();
    endpoint.id
}

async fn deliveries(
    webhooks: &latchkey::domain::webhooks::WebhookManager,
    endpoint: &str,
) -> Vec<(DeliveryStatus, i64)> {
    let d = webhooks
        .list_deliveries(endpoint, None, None, 10)
        .await
        .unwrap();
    d.into_iter().map(|d| (d.status, d.attempts)).collect()
}

/// `webhooks.retention_days`: finished deliveries past it go, and with them
/// the events none is left of; a delivery still being retried keeps itself
/// and its event however old, and young ones stay.
async fn finished_deliveries_and_their_events_are_purged_after_retention(backend: Backend) {
    let s = TestServer::start_with(backend, |c: &mut Config| {
        c.webhooks.allow_insecure_targets = true;
        c.webhooks.poll_interval_ms = 20;
        c.webhooks.retention_days = 2;
    })
    .await;
    let webhooks = s.running().services.webhooks.clone();
    let (_, ok_addr) = receiver(0).await;
    let (_, failing_addr) = receiver(usize::MAX).await;
    let ok = endpoint(&webhooks, ok_addr, &["key.created", "key.revoked"]).await;
    let failing = endpoint(&webhooks, failing_addr, &["key.created"]).await;
    let account = s.account("GO").await;
    let (key, _) = s
        .create_key(key_request(&account.id, &["feedback.read"]))
        .await;
    s.keys()
        .revoke_key(s.admin(latchkey::pb::RevokeKeyRequest { id: key.id }))
        .await
        .unwrap();
    eventually(
        "both events delivered to one endpoint, tried at the other",
        || async {
            let ok = deliveries(&webhooks, &ok).await;
            let failing = deliveries(&webhooks, &failing).await;
            (ok == [(DeliveryStatus::Succeeded, 1); 2] && failing == [(DeliveryStatus::Pending, 1)])
                .then_some(())
        },
    )
    .await;
    // A day later nothing is past retention.
    s.clock.advance_secs(86_400);
    assert_eq!(webhooks.purge_expired().await.unwrap(), 0);
    assert_eq!(deliveries(&webhooks, &ok).await.len(), 2);
    // Three days later: the two succeeded deliveries and the `key.revoked`
    // event go; the pending delivery and its `key.created` event stay.
    s.clock.advance_secs(2 * 86_400);
    assert_eq!(webhooks.purge_expired().await.unwrap(), 3);
    assert_eq!(deliveries(&webhooks, &ok).await, []);
    assert_eq!(deliveries(&webhooks, &failing).await.len(), 1);
    assert_eq!(webhooks.purge_expired().await.unwrap(), 0);
    // A new event now is young: delivered and kept.
    s.create_key(key_request(&account.id, &["feedback.read"]))
        .await;
    eventually("the new event delivered", || async {
        (deliveries(&webhooks, &ok).await == [(DeliveryStatus::Succeeded, 1)]).then_some(())
    })
    .await;
    assert_eq!(webhooks.purge_expired().await.unwrap(), 0);
    assert_eq!(deliveries(&webhooks, &ok).await.len(), 1);
    s.stop().await;
}

backend_tests!(
    a_key_change_is_delivered_signed_and_retried,
    private_targets_are_refused,
    finished_deliveries_and_their_events_are_purged_after_retention,
);
