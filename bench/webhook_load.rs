//! Load driver of `bench/webhooks.sh` (a benchmark, not a test). Runs a
//! local HTTP receiver, points a webhook endpoint of the running server's
//! database at it, enqueues EVENTS events into the outbox and waits until
//! the server's delivery worker has delivered every one of them. Prints one
//! line of `key=value` fields; exits non-zero if an event is missing, one
//! arrived twice, or a signature does not verify.
//!
//!   webhook_load DATA_DIR EVENTS TIMEOUT_SECONDS
//!
//! The database is the server's: `LATCHKEY_DATABASE_URL`, else SQLite in
//! DATA_DIR; the master key as the server finds it (`LATCHKEY_MASTER_KEY`,
//! else the development key file in DATA_DIR).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // a benchmark reads the wall clock

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use latchkey::config::Config;
use latchkey::domain::model::{OutboxEvent, SignatureFormat};
use latchkey::domain::webhooks::NewEndpoint;

/// What arrived: per `webhook-id`, how often; the time of the last arrival;
/// signatures that did not verify.
#[derive(Default)]
struct Got {
    ids: HashMap<String, u32>,
    last: Option<Instant>,
    first: Option<Instant>,
    bad_signatures: u64,
}

fn verifies(key: &[u8], headers: &HeaderMap, body: &str) -> bool {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let signed = format!("{}.{}.{}", h("webhook-id"), h("webhook-timestamp"), body);
    let mac = latchkey::crypto::mac::hmac_sha256(key, &[signed.as_bytes()]);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac)
    );
    h("webhook-signature").split(' ').any(|s| s == expected)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, data_dir, events, timeout] = args.as_slice() else {
        panic!("usage: webhook_load DATA_DIR EVENTS TIMEOUT_SECONDS");
    };
    let events: usize = events.parse().unwrap();
    let timeout = Duration::from_secs(timeout.parse().unwrap());

    let mut config = Config {
        data_dir: data_dir.into(),
        database_url: std::env::var("LATCHKEY_DATABASE_URL").ok(),
        ..Config::default()
    };
    config.webhooks.allow_insecure_targets = true;
    let mut settings = config.validate().unwrap();
    if let Ok(key) = std::env::var("LATCHKEY_MASTER_KEY") {
        settings.master_key = Some(latchkey::crypto::secret::Secret::new(key));
    }
    let db = latchkey::app::open_store(&settings).await.unwrap();
    let services = latchkey::app::offline_services(&settings, &db)
        .await
        .unwrap();

    // The receiver: answers 200 at once, verifies every signature.
    let got = Arc::new(Mutex::new(Got::default()));
    let key: Arc<Mutex<Vec<u8>>> = Arc::default();
    let (g, k) = (got.clone(), key.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let (g, k) = (g.clone(), k.clone());
            async move {
                let ok = verifies(&k.lock().unwrap(), &headers, &body);
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let mut g = g.lock().unwrap();
                let now = Instant::now();
                g.first.get_or_insert(now);
                g.last = Some(now);
                *g.ids.entry(id).or_default() += 1;
                if !ok {
                    g.bad_signatures += 1;
                }
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (_, secret) = services
        .webhooks
        .create_endpoint(NewEndpoint {
            account_id: None,
            url: format!("http://{addr}/hook"),
            event_types: vec!["webhook.test".into()],
            description: "bench receiver".into(),
            format: SignatureFormat::Standard,
        })
        .await
        .unwrap();
    *key.lock().unwrap() = base64::engine::general_purpose::STANDARD
        .decode(secret.expose().strip_prefix("whsec_").unwrap())
        .unwrap();

    // Enqueue, 500 events a transaction.
    let started = Instant::now();
    let mut want = Vec::with_capacity(events);
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    for chunk in (0..events).collect::<Vec<_>>().chunks(500) {
        let batch: Vec<OutboxEvent> = chunk
            .iter()
            .map(|i| {
                OutboxEvent::new(
                    now_ms,
                    "webhook.test",
                    None,
                    None,
                    serde_json::json!({ "n": i, "padding": "x".repeat(200) }),
                )
            })
            .collect();
        want.extend(batch.iter().map(|e| e.id.clone()));
        services.webhooks.enqueue(batch).await.unwrap();
    }
    let enqueued = started.elapsed();

    // Drain: every event once.
    loop {
        let n = got.lock().unwrap().ids.len();
        if n >= events || started.elapsed() > timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A moment more, so that a second delivery of an event would be seen.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ok = {
        let g = got.lock().unwrap();
        let delivered = want.iter().filter(|id| g.ids.contains_key(*id)).count();
        let twice = g.ids.values().filter(|n| **n > 1).count();
        let drained = g.last.map_or(started.elapsed(), |t| t - started);
        let first = g.first.map_or(Duration::ZERO, |t| t - started);
        let rate = delivered as f64 / drained.as_secs_f64();
        println!(
            "events={events} delivered={delivered} duplicates={twice} bad_signatures={} \
         enqueue_s={:.3} first_delivery_s={:.3} drain_s={:.3} deliveries_per_s={rate:.0}",
            g.bad_signatures,
            enqueued.as_secs_f64(),
            first.as_secs_f64(),
            drained.as_secs_f64(),
        );
        delivered == events && twice == 0 && g.bad_signatures == 0
    };
    db.close().await;
    std::process::exit(if ok { 0 } else { 1 });
}
