//! The integration vault (issue 14, items 1, 2, 5, 6): credentials sealed and
//! bound to their row, masked hints only, connection tests against fakes of
//! WooCommerce and e-conomic over TLS (tests/fakes/remote_api.py, with a CA
//! this test makes), failing and slow remotes, the outbound safety rule, and
//! bad input refused with the field named.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use latchkey::domain::permissions::Scope;
use latchkey::pb;
use prost::Message;
use sea_orm::{ConnectionTrait, Database};
use tonic::Code;
use tonic::transport::Channel;

use crate::backend_tests;
use crate::common::{Backend, TestServer, bearer};

const CK: &str = "ck_5d1b1f4c0e2a4b7e9f8a6c3d2e1f04f2a";
const CS: &str = "cs_9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3";
const APP: &str = "eco-app-secret-4b8d0c2e6f1a3b5d7e9f";
const GRANT: &str = "eco-grant-7c9e1a3b5d7f9b1d3f5a7c9e";
const TOKEN: &str = "tok_bearer_0a1b2c3d4e5f6a7b8c9d0e1f";

type Client = pb::integration_service_client::IntegrationServiceClient<Channel>;

fn client(s: &TestServer) -> Client {
    pb::integration_service_client::IntegrationServiceClient::new(s.channel.clone())
}

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a `localhost` / 127.0.0.1 server certificate it signed.
fn make_certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Latchkey test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
    );
}

struct Fake {
    child: Child,
    port: u16,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_fake(dir: &Path) -> Fake {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakes/remote_api.py");
    let expected = serde_json::json!({
        "woocommerce": {"consumer_key": CK, "consumer_secret": CS},
        "economic": {"app_secret_token": APP, "agreement_grant_token": GRANT},
        "bearer": {"token": TOKEN},
    });
    let mut child = Command::new("python3")
        .arg(script)
        .arg(dir.join("leaf.pem"))
        .arg(dir.join("leaf.key"))
        .env("FAKE_CREDENTIALS", expected.to_string())
        .env("FAKE_LOG", dir.join("requests.jsonl"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("listening ")
        .unwrap()
        .parse()
        .unwrap();
    Fake { child, port }
}

fn create_req(
    account: &str,
    kind: &str,
    base_url: &str,
    creds: &[(&str, &str)],
) -> pb::CreateIntegrationRequest {
    pb::CreateIntegrationRequest {
        account_id: account.into(),
        mode: pb::Mode::Live.into(),
        kind: kind.into(),
        name: format!("{kind} shop"),
        base_url: base_url.into(),
        credentials: map(creds),
        ..Default::default()
    }
}

/// No credential value anywhere in a wire message.
fn assert_no_secret(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for secret in [CK, CS, APP, GRANT, TOKEN, "wrong-secret-value-123456"] {
        assert!(
            !text.contains(secret),
            "{what} carries a credential: {text}"
        );
        assert!(
            !text.contains(&secret[secret.len() - 12..]),
            "{what} carries part of a credential: {text}"
        );
    }
}

async fn connection_tests_call_the_real_apis(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let fake = start_fake(dir.path());
    let ca = dir.path().join("ca.pem");
    let s = TestServer::start_with(backend, |c| {
        c.integrations.allow_insecure_targets = true;
        c.integrations.ca_file = Some(ca.clone());
        c.integrations.test_timeout_ms = 1000;
    })
    .await;
    let account = s.account("PRIME").await;
    let base = format!("https://localhost:{}", fake.port);
    let mut api = client(&s);

    // WooCommerce: HTTP Basic with the consumer key and secret.
    let woo = api
        .create_integration(s.admin(create_req(
            &account.id,
            "woocommerce",
            &format!("{base}/wc"),
            &[("consumer_key", CK), ("consumer_secret", CS)],
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(woo.credential_hints["consumer_key"], "ck_…4f2a");
    assert_eq!(woo.credential_hints["consumer_secret"], "cs_…c4d3");
    assert_no_secret("Integration", &woo.encode_to_vec());
    let test = api
        .test_connection(s.admin(pb::TestConnectionRequest { id: woo.id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert!(test.ok, "{test:?}");
    assert_eq!(test.http_status, 200);
    assert!(test.response_excerpt.contains("9.1.0"), "{test:?}");
    assert_no_secret("ConnectionTest", &test.encode_to_vec());

    // e-conomic: the two token headers.
    let eco = api
        .create_integration(s.admin(create_req(
            &account.id,
            "economic",
            &format!("{base}/eco"),
            &[("app_secret_token", APP), ("agreement_grant_token", GRANT)],
        )))
        .await
        .unwrap()
        .into_inner();
    let test = api
        .test_connection(s.admin(pb::TestConnectionRequest { id: eco.id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert!(test.ok && test.http_status == 200, "{test:?}");
    assert!(test.response_excerpt.contains("123456"), "{test:?}");

    // A generic kind, with its test path.
    let mut req = create_req(
        &account.id,
        "bearer",
        &format!("{base}/bearer"),
        &[("token", TOKEN)],
    );
    req.settings = map(&[("test_path", "/ping")]);
    let bearer_int = api
        .create_integration(s.admin(req))
        .await
        .unwrap()
        .into_inner();
    let test = api
        .test_connection(s.admin(pb::TestConnectionRequest {
            id: bearer_int.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(test.ok, "{test:?}");

    // Failing: credentials replaced whole by wrong ones; the remote says 401.
    let err = api
        .update_integration(s.admin(pb::UpdateIntegrationRequest {
            id: woo.id.clone(),
            credentials: Some(pb::StringMap {
                values: map(&[("consumer_key", CK)]),
            }),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "never merged: {err:?}");
    assert!(err.message().contains("consumer_secret"), "{err:?}");
    let updated = api
        .update_integration(s.admin(pb::UpdateIntegrationRequest {
            id: woo.id.clone(),
            credentials: Some(pb::StringMap {
                values: map(&[
                    ("consumer_key", CK),
                    ("consumer_secret", "wrong-secret-value-123456"),
                ]),
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.version, 2);
    let failed = api
        .test_connection(s.admin(pb::TestConnectionRequest { id: woo.id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert!(!failed.ok);
    assert_eq!(failed.http_status, 401);
    assert!(
        failed.error.contains("rejected the credentials"),
        "{failed:?}"
    );
    assert_no_secret("failed ConnectionTest", &failed.encode_to_vec());

    // Slow: the time limit ends it, with no HTTP status.
    let mut slow = create_req(
        &account.id,
        "bearer",
        &format!("{base}/slow"),
        &[("token", TOKEN)],
    );
    slow.settings = map(&[("test_path", "/x")]);
    let slow = api
        .create_integration(s.admin(slow))
        .await
        .unwrap()
        .into_inner();
    let late = api
        .test_connection(s.admin(pb::TestConnectionRequest {
            id: slow.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(!late.ok);
    assert_eq!(late.http_status, 0);
    assert!(late.error.contains("timed out"), "{late:?}");

    // A redirect is reported, never followed.
    let mut redirect = create_req(
        &account.id,
        "bearer",
        &format!("{base}/redirect"),
        &[("token", TOKEN)],
    );
    redirect.settings = map(&[("test_path", "/x")]);
    let redirect = api
        .create_integration(s.admin(redirect))
        .await
        .unwrap()
        .into_inner();
    let moved = api
        .test_connection(s.admin(pb::TestConnectionRequest {
            id: redirect.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(!moved.ok && moved.http_status == 302, "{moved:?}");

    // The records, newest first.
    let tests = api
        .list_connection_tests(s.admin(pb::ListConnectionTestsRequest {
            id: woo.id.clone(),
            page_size: 0,
        }))
        .await
        .unwrap()
        .into_inner()
        .tests;
    assert_eq!(
        tests.iter().map(|t| t.ok).collect::<Vec<_>>(),
        [false, true]
    );

    // Kept 90 days: a test recorded 91 days later prunes the older records.
    let long = s
        .running()
        .services
        .keys
        .create_operator_key(
            "long",
            vec![Scope::parse("admin.*").unwrap()],
            Some(400 * 86_400),
        )
        .await
        .unwrap();
    let long = long.secret.expose().clone();
    s.clock.advance_secs(91 * 86_400);
    let fresh = api
        .test_connection(bearer(
            &long,
            pb::TestConnectionRequest { id: eco.id.clone() },
        ))
        .await
        .unwrap()
        .into_inner();
    let list = |id: &str| {
        let mut api = api.clone();
        let req = bearer(
            &long,
            pb::ListConnectionTestsRequest {
                id: id.to_owned(),
                page_size: 0,
            },
        );
        async move {
            api.list_connection_tests(req)
                .await
                .unwrap()
                .into_inner()
                .tests
        }
    };
    assert!(
        list(&woo.id).await.is_empty(),
        "91-day-old records were kept"
    );
    let eco_tests = list(&eco.id).await;
    assert_eq!(
        eco_tests.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        [fresh.id.as_str()]
    );

    // UseCredentials needs `admin.integrations.use`; write alone is not enough.
    let writer = s
        .running()
        .services
        .keys
        .create_operator_key(
            "writer",
            vec![
                Scope::parse("admin.integrations.write").unwrap(),
                Scope::parse("admin.integrations.read").unwrap(),
            ],
            None,
        )
        .await
        .unwrap();
    let err = api
        .use_credentials(bearer(
            writer.secret.expose(),
            pb::UseCredentialsRequest { id: eco.id.clone() },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let plain = api
        .use_credentials(bearer(
            &long,
            pb::UseCredentialsRequest { id: eco.id.clone() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(plain.credentials["app_secret_token"], APP);
    assert_eq!(plain.credentials["agreement_grant_token"], GRANT);

    // Listing, by kind; nothing secret in the page.
    let page = api
        .list_integrations(bearer(
            &long,
            pb::ListIntegrationsRequest {
                account_id: account.id.clone(),
                kind: "bearer".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.integrations.len(), 3);
    assert_no_secret("ListIntegrations", &page.encode_to_vec());

    // A ciphertext moved to another row does not open there.
    let conn = Database::connect(&s.db.url).await.unwrap();
    conn.execute_unprepared(&format!(
        "UPDATE integrations SET sealed_credentials = \
         (SELECT sealed_credentials FROM integrations WHERE id = '{}') WHERE id = '{}'",
        eco.id, bearer_int.id
    ))
    .await
    .unwrap();
    conn.close().await.unwrap();
    let err = api
        .use_credentials(bearer(
            &long,
            pb::UseCredentialsRequest {
                id: bearer_int.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    assert_no_secret("error", err.message().as_bytes());

    // Deleted: gone, with its records.
    api.delete_integration(bearer(
        &long,
        pb::DeleteIntegrationRequest { id: woo.id.clone() },
    ))
    .await
    .unwrap();
    let err = api
        .get_integration(bearer(
            &long,
            pb::GetIntegrationRequest { id: woo.id.clone() },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    s.stop().await;
    drop(fake);
}

async fn the_outbound_safety_rule_and_bad_input(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let mut api = client(&s);
    let woo = [("consumer_key", CK), ("consumer_secret", CS)];
    let refused = |req: pb::CreateIntegrationRequest, field: &'static str| {
        let mut api = api.clone();
        let req = s.admin(req);
        async move {
            let err = api.create_integration(req).await.unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
            assert!(
                err.message().starts_with(field),
                "{field}: {}",
                err.message()
            );
            assert_no_secret("error", err.message().as_bytes());
        }
    };
    for url in [
        "http://shop.example.com",
        "https://127.0.0.1/wc",
        "https://10.0.0.8",
        "https://169.254.169.254/latest",
        "https://[::1]:8443",
        "https://user:pw@shop.example.com",
        "not a url",
        "",
    ] {
        refused(
            create_req(&account.id, "woocommerce", url, &woo),
            "base_url",
        )
        .await;
    }
    refused(
        create_req(&account.id, "ftp", "https://shop.example.com", &woo),
        "kind",
    )
    .await;
    refused(
        create_req(&account.id, "", "https://shop.example.com", &woo),
        "kind",
    )
    .await;
    refused(
        create_req(
            &account.id,
            "woocommerce",
            "https://shop.example.com",
            &[("consumer_key", CK)],
        ),
        "credentials",
    )
    .await;
    refused(
        create_req(&account.id, "economic", "https://shop.example.com", &woo),
        "credentials",
    )
    .await;
    refused(
        create_req(
            &account.id,
            "header",
            "https://shop.example.com",
            &[("header_name", "X Bad"), ("header_value", TOKEN)],
        ),
        "credentials",
    )
    .await;
    let mut other = create_req(
        &account.id,
        "bearer",
        "https://shop.example.com",
        &[("token", TOKEN)],
    );
    other.store_id = "store-not-ours".into();
    refused(other, "store_id").await;
    let mut bad_path = create_req(
        &account.id,
        "bearer",
        "https://shop.example.com",
        &[("token", TOKEN)],
    );
    bad_path.settings = map(&[("test_path", "//evil.example.com/")]);
    refused(bad_path, "settings").await;
    let mut no_mode = create_req(
        &account.id,
        "bearer",
        "https://shop.example.com",
        &[("token", TOKEN)],
    );
    no_mode.mode = 0;
    refused(no_mode, "mode").await;
    // Nothing was created.
    let page = api
        .list_integrations(s.admin(pb::ListIntegrationsRequest {
            account_id: account.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(page.integrations.is_empty(), "{page:?}");

    // A name is checked after DNS: `localhost` resolves to loopback, so the
    // test is refused before connecting, and nothing is recorded.
    let local = api
        .create_integration(s.admin(create_req(
            &account.id,
            "woocommerce",
            "https://localhost:9",
            &woo,
        )))
        .await
        .unwrap()
        .into_inner();
    let err = api
        .test_connection(s.admin(pb::TestConnectionRequest {
            id: local.id.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().starts_with("base_url") && err.message().contains("127.0.0.1"),
        "{err:?}"
    );
    let tests = api
        .list_connection_tests(s.admin(pb::ListConnectionTestsRequest {
            id: local.id.clone(),
            page_size: 0,
        }))
        .await
        .unwrap()
        .into_inner()
        .tests;
    assert!(tests.is_empty(), "{tests:?}");
    // An update to a private literal is refused too, and changes nothing.
    let err = api
        .update_integration(s.admin(pb::UpdateIntegrationRequest {
            id: local.id.clone(),
            base_url: Some("https://192.168.1.10".into()),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let again = api
        .get_integration(s.admin(pb::GetIntegrationRequest {
            id: local.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (again.base_url.as_str(), again.version),
        ("https://localhost:9", 1)
    );
    // Bad ids are named.
    let err = api
        .get_integration(s.admin(pb::GetIntegrationRequest { id: "nope".into() }))
        .await
        .unwrap_err();
    assert!(err.message().starts_with("id"), "{err:?}");
    s.stop().await;
}

backend_tests!(
    connection_tests_call_the_real_apis,
    the_outbound_safety_rule_and_bad_input
);
