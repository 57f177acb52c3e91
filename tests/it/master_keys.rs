//! Master-key rotation (issue 14, item 4): values sealed under one key are
//! re-sealed under a new one by `latchkey master-key rotate` beside a running
//! server, the rotation survives `kill -9` and resumes, `status` counts the
//! values per key, and a server refuses to start while a stored value's key
//! is missing, naming it. Webhook endpoints' signing secrets are among the
//! values: an endpoint made before the rotation still signs after it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use latchkey::app;
use latchkey::crypto::envelope::MasterKey;
use latchkey::crypto::secret::Secret;
use latchkey::pb;
use latchkey::ports::ManualClock;

use crate::backend_tests;
use crate::common::{Backend, TestDb, TestServer, new_master_key, test_config};
use crate::signing::new_secret;
use crate::webhook_events::{endpoint, insecure, receiver, verify_standard};

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");

fn key_id(b64: &str) -> String {
    MasterKey::from_base64(b64).unwrap().newest().to_string()
}

/// `latchkey master-key …` against `db` with these key variables.
fn cli(db: &TestDb, args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("master-key")
        .args(args)
        .env("LATCHKEY_DATABASE_URL", &db.url)
        .env_remove("LATCHKEY_CONFIG")
        .env_remove("LATCHKEY_MASTER_KEY")
        .env_remove("LATCHKEY_MASTER_KEYS");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

fn run(db: &TestDb, args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
    let out = cli(db, args, envs).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The count `status` prints for a key.
fn count(status: &str, id: &str) -> u64 {
    status
        .lines()
        .find(|l| l.starts_with(id))
        .and_then(|l| l.split_whitespace().last())
        .map_or(0, |n| n.parse().unwrap())
}

fn total(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("total "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap()
}

fn integrations(
    s: &TestServer,
) -> pb::integration_service_client::IntegrationServiceClient<tonic::transport::Channel> {
    pb::integration_service_client::IntegrationServiceClient::new(s.channel.clone())
}

async fn sign_all(s: &TestServer, ids: &[String]) {
    let mut client = pb::signing_service_client::SigningServiceClient::new(s.channel.clone());
    for id in ids {
        let r = client
            .sign(s.admin(pb::SignRequest {
                secret_id: id.clone(),
                payload: b"{}".to_vec(),
            }))
            .await;
        assert!(r.is_ok(), "secret {id} does not open: {r:?}");
    }
}

/// A server on `db` with these keys that is expected not to start: its error.
async fn start_error(db: &TestDb, keys: &str) -> String {
    let mut settings = test_config(&db.url).validate().unwrap();
    settings.master_key = Some(Secret::new(keys.to_owned()));
    let clock = Arc::new(ManualClock::new(0));
    match app::start(settings, clock, std::future::pending()).await {
        Ok(_) => panic!("started with keys that do not hold every value"),
        Err(e) => e.to_string(),
    }
}

async fn rotation_survives_kill_9_and_the_old_key_can_go(backend: Backend) {
    let (a, b) = (new_master_key(), new_master_key());
    let (id_a, id_b) = (key_id(&a), key_id(&b));
    let mut db = TestDb::new(backend).await;
    db.master_key = a.clone();
    let db = Arc::new(db);
    let s = TestServer::start_on(db.clone(), insecure, None).await;
    let account = s.account("PRIME").await;
    // An endpoint with two secret versions (rotated, both signing).
    let (rx, addr) = receiver(std::time::Duration::ZERO).await;
    let first_secret = endpoint(&s, addr, &["webhook.test"]).await;
    let webhooks = s.running().services.webhooks.clone();
    let endpoint_id = webhooks
        .list_endpoints(None, None, 10)
        .await
        .unwrap()
        .remove(0)
        .id;
    let second_secret = webhooks.rotate_secret(&endpoint_id, 3600).await.unwrap();
    let mut secrets = Vec::new();
    for _ in 0..6 {
        secrets.push(new_secret(&s, &account.id).await.0);
    }
    sign_all(&s, &secrets).await;
    let integration = integrations(&s)
        .create_integration(
            s.admin(pb::CreateIntegrationRequest {
                account_id: account.id.clone(),
                mode: pb::Mode::Live.into(),
                kind: "economic".into(),
                name: "books".into(),
                base_url: "https://restapi.example.com".into(),
                credentials: [
                    (
                        "app_secret_token".to_owned(),
                        "app-secret-0123456789".to_owned(),
                    ),
                    (
                        "agreement_grant_token".to_owned(),
                        "grant-0123456789".to_owned(),
                    ),
                ]
                .into(),
                ..Default::default()
            }),
        )
        .await
        .unwrap()
        .into_inner()
        .id;
    let opens = |s: &TestServer| {
        let mut api = integrations(s);
        let req = s.admin(pb::UseCredentialsRequest {
            id: integration.clone(),
        });
        async move {
            let plain = api.use_credentials(req).await.unwrap().into_inner();
            assert_eq!(
                plain.credentials["agreement_grant_token"],
                "grant-0123456789"
            );
        }
    };
    opens(&s).await;
    s.stop_keep_db().await;

    // Everything is under A.
    let (ok, status, err) = run(&db, &["status"], &[("LATCHKEY_MASTER_KEY", &a)]);
    assert!(ok, "{err}");
    let n = total(&status);
    assert!(
        n >= 11,
        "canary, CSRF key, six secrets, an integration and two webhook secrets at least: {status}"
    );
    assert_eq!(count(&status, &id_a), n, "{status}");
    assert!(
        !status.contains(&a) && !err.contains(&a),
        "the key was printed"
    );

    // Rotating with no new key is refused, and changes nothing.
    let (ok, _, err) = run(&db, &["rotate"], &[("LATCHKEY_MASTER_KEY", &a)]);
    assert!(!ok);
    assert!(err.contains("only one master key"), "{err}");
    let both = format!("{b},{a}");
    let (_, status, _) = run(&db, &["status"], &[("LATCHKEY_MASTER_KEYS", &both)]);
    assert_eq!(count(&status, &id_a), n, "{status}");
    assert_eq!(count(&status, &id_b), 0, "{status}");

    // Online: a server with both keys runs while the rotation does.
    let s = TestServer::start_with_master_keys(db.clone(), |_| {}, None, &both).await;

    // One value per batch with a pause between, killed after the first.
    let mut child = cli(
        &db,
        &["rotate", "--batch-size", "1", "--pause-ms", "2000"],
        &[("LATCHKEY_MASTER_KEYS", &both)],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|l| l.contains("re-sealed"))
        .expect("a progress line");
    assert!(first.ends_with(&format!("re-sealed 1/{n}")), "{first}");
    child.kill().unwrap(); // SIGKILL
    assert!(!child.wait().unwrap().success());

    let (ok, status, err) = run(&db, &["status"], &[("LATCHKEY_MASTER_KEYS", &both)]);
    assert!(ok, "{err}");
    let under_b = count(&status, &id_b);
    assert!(under_b >= 1 && under_b < n, "half-way: {status}");
    assert_eq!(count(&status, &id_a) + under_b, n, "{status}");
    // Half-way, every secret still opens on the running server…
    sign_all(&s, &secrets).await;
    opens(&s).await;
    // …and a server with only the new key refuses, naming the old one.
    let error = start_error(&db, &b).await;
    assert!(error.contains(&id_a), "{error}");
    assert!(!error.contains(&b), "the key reached the error: {error}");

    // Run again: it carries on and finishes.
    let (ok, _, err) = run(&db, &["rotate"], &[("LATCHKEY_MASTER_KEYS", &both)]);
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!("{} of {n} value(s)", n - under_b)),
        "{err}"
    );
    assert!(err.contains("rotation done"), "{err}");
    sign_all(&s, &secrets).await;
    s.stop_keep_db().await;

    // The old key goes: everything is under B and still opens.
    let (ok, status, err) = run(&db, &["status"], &[("LATCHKEY_MASTER_KEY", &b)]);
    assert!(ok, "{err}");
    assert_eq!(count(&status, &id_b), n, "{status}");
    assert!(!status.contains(&id_a), "{status}");
    let s = TestServer::start_with_master_keys(db.clone(), insecure, None, &b).await;
    sign_all(&s, &secrets).await;
    opens(&s).await;
    // The endpoint's secrets were re-sealed too: a delivery is signed with both.
    let event = latchkey::domain::model::OutboxEvent::new(
        latchkey::ports::Clock::now(s.clock.as_ref()),
        "webhook.test",
        None,
        None,
        serde_json::json!({ "after": "rotation" }),
    );
    s.running()
        .services
        .webhooks
        .enqueue(vec![event])
        .await
        .unwrap();
    let (headers, body) = crate::common::eventually("the delivery", || async {
        rx.got.lock().unwrap().first().cloned()
    })
    .await;
    for secret in [&first_secret, &second_secret] {
        assert!(
            verify_standard(secret.expose(), &headers, &body),
            "{headers:?}"
        );
    }
    s.stop_keep_db().await;

    // The old key alone no longer opens this database, and says which key it needs.
    let error = start_error(&db, &a).await;
    assert!(error.contains(&id_b), "{error}");
    db.drop_database().await;
}

backend_tests!(rotation_survives_kill_9_and_the_old_key_can_go);
