//! The built `latchkey` binary, driven as an operator would: subcommands,
//! configuration precedence, signals, and its logs searched for secrets.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use latchkey::crypto::keyfmt;
use latchkey::pb;
use tonic::transport::Channel;

use crate::common::bearer;

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");

fn latchkey(args: &[&str], cwd: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("LATCHKEY_DATABASE_URL")
        .env_remove("LATCHKEY_CONFIG")
        .env_remove("LATCHKEY_MASTER_KEY")
        .output()
        .unwrap()
}

struct Served {
    child: Child,
    grpc: String,
    stderr_path: std::path::PathBuf,
}

/// Starts `latchkey serve` and waits for its "listening" line.
fn serve(args: &[&str], envs: &[(&str, &str)], cwd: &Path) -> Served {
    let stderr_path = cwd.join("serve.stderr");
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .args(args)
        .current_dir(cwd)
        .env_remove("LATCHKEY_DATABASE_URL")
        .env_remove("LATCHKEY_CONFIG")
        .env_remove("LATCHKEY_MASTER_KEY")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("latchkey listening grpc="),
        "no listening line: {line:?}; stderr: {}",
        std::fs::read_to_string(&stderr_path).unwrap_or_default()
    );
    let grpc = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("grpc="))
        .unwrap()
        .to_owned();
    Served {
        child,
        grpc,
        stderr_path,
    }
}

impl Served {
    /// SIGTERM, then the exit status and everything it logged.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no exit within 15 s of SIGTERM"
            );
            // Polls a real child process, not time passing in the service.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(50));
        };
        (status, std::fs::read_to_string(&self.stderr_path).unwrap())
    }
}

#[test]
fn serve_with_no_configuration_uses_embedded_sqlite_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(
        &[],
        &[
            ("LATCHKEY_GRPC_ADDR", "127.0.0.1:0"),
            ("LATCHKEY_HTTP_ADDR", "127.0.0.1:0"),
        ],
        dir.path(),
    );
    assert!(
        dir.path().join("latchkey-data/latchkey.db").exists(),
        "SQLite database created in ./latchkey-data"
    );
    let (status, logs) = served.terminate();
    assert!(status.success(), "exit status {status:?}; logs:\n{logs}");
    assert!(logs.contains("shutting down"), "{logs}");
}

/// `serve` that is expected to fail at start-up: its exit status and stderr.
fn serve_fails(envs: &[(&str, &str)], cwd: &Path) -> (std::process::ExitStatus, String) {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--grpc-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
    ])
    .current_dir(cwd)
    .env_remove("LATCHKEY_DATABASE_URL")
    .env_remove("LATCHKEY_CONFIG")
    .env_remove("LATCHKEY_MASTER_KEY");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn master_key_is_checked_and_never_silently_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = [
        ("LATCHKEY_GRPC_ADDR", "127.0.0.1:0"),
        ("LATCHKEY_HTTP_ADDR", "127.0.0.1:0"),
    ];
    let key_file = dir.path().join("latchkey-data/master.key");

    // Without the variable: a development key file, and a loud warning.
    let (status, logs) = serve(&[], &addrs, dir.path()).terminate();
    assert!(status.success(), "{logs}");
    assert!(logs.contains("DEVELOPMENT master key"), "{logs}");
    let dev_key = std::fs::read_to_string(&key_file).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "key file readable by others");
    }
    assert!(!logs.contains(dev_key.trim()), "the key reached the log");

    // The same file again: starts, and the file is unchanged.
    let (status, logs) = serve(&[], &addrs, dir.path()).terminate();
    assert!(status.success(), "{logs}");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), dev_key);

    // The same key through the variable: starts.
    let env_ok = [addrs[0], addrs[1], ("LATCHKEY_MASTER_KEY", dev_key.trim())];
    let (status, logs) = serve(&[], &env_ok, dir.path()).terminate();
    assert!(status.success(), "{logs}");

    // Another key: a start-up error that says so.
    let other = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let (status, stderr) = serve_fails(&[("LATCHKEY_MASTER_KEY", other)], dir.path());
    assert!(!status.success());
    assert!(
        stderr.contains("not the key they were sealed with"),
        "{stderr}"
    );
    assert!(!stderr.contains(other), "the key reached the error");

    // Not base64 of 32 bytes: named.
    let (status, stderr) = serve_fails(&[("LATCHKEY_MASTER_KEY", "c2hvcnQ=")], dir.path());
    assert!(!status.success());
    assert!(stderr.contains("exactly 32 bytes"), "{stderr}");

    // The file gone and no variable: an error, never a silent new key.
    std::fs::remove_file(&key_file).unwrap();
    let (status, stderr) = serve_fails(&[], dir.path());
    assert!(!status.success());
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(!key_file.exists(), "a new key file was created");
}

#[test]
fn flags_beat_environment_beat_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("latchkey.toml");
    std::fs::write(
        &config,
        "grpc_addr = \"127.0.0.1:1\"\nhttp_addr = \"127.0.0.1:1\"\n[keys]\nprefix = \"bk\"\n",
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    // The environment overrides the file's grpc address; a flag overrides the environment's http address.
    let served = serve(
        &[
            "--config",
            cfg,
            "--data-dir",
            data,
            "--http-addr",
            "127.0.0.1:0",
        ],
        &[
            ("LATCHKEY_GRPC_ADDR", "127.0.0.1:0"),
            ("LATCHKEY_HTTP_ADDR", "not-an-address"),
        ],
        dir.path(),
    );
    assert!(!served.grpc.ends_with(":1"), "{}", served.grpc);
    let (status, _) = served.terminate();
    assert!(status.success());
    // The file's key prefix applies where nothing overrides it.
    let out = latchkey(
        &["admin", "create-token", "--config", cfg, "--data-dir", data],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    assert!(token.trim().starts_with("bk_live_sk_"), "{token}");
}

#[test]
fn config_check_names_the_bad_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[keys]\nprefix = \"ak\"\n[check]\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
    )
    .unwrap();
    let out = latchkey(&["config", "check", good.to_str().unwrap()], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("key prefix `ak`"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[keys]\nprefx = \"ak\"\n").unwrap();
    let out = latchkey(&["config", "check", bad.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("prefx"));

    std::fs::write(
        &bad,
        "database_url = \"postgres://app:hunter2@db/lk\"\n[check]\ntrusted_proxies = [\"nope\"]\n",
    )
    .unwrap();
    let out = latchkey(&["config", "check", bad.to_str().unwrap()], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("check.trusted_proxies"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn migrate_and_token_commands() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let out = latchkey(
        &["migrate", "--data-dir", data.to_str().unwrap()],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(data.join("latchkey.db").exists());
    let out = latchkey(&["admin", "generate-token"], dir.path());
    let token = String::from_utf8(out.stdout).unwrap();
    assert!(keyfmt::parse(token.trim(), "lk").is_ok(), "{token}");
    let out = latchkey(
        &["admin", "create-token", "--scope", "keys.read"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "non-admin scopes are refused");
}

/// Every secret the run creates is searched for in everything the server logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let data = data.to_str().unwrap();
    let out = latchkey(&["admin", "create-token", "--data-dir", data], dir.path());
    let admin = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let bootstrap = String::from_utf8(latchkey(&["admin", "generate-token"], dir.path()).stdout)
        .unwrap()
        .trim()
        .to_owned();
    // Connection tests may reach a closed local port, so the outbound client really runs.
    let config = dir.path().join("latchkey.toml");
    std::fs::write(&config, "[integrations]\nallow_insecure_targets = true\n").unwrap();
    let served = serve(
        &[
            "--data-dir",
            data,
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ],
        &[
            ("LATCHKEY_LOG", "trace"),
            ("LATCHKEY_LOG_FORMAT", "json"),
            ("LATCHKEY_BOOTSTRAP_ADMIN_TOKEN", &bootstrap),
        ],
        dir.path(),
    );
    let channel = Channel::from_shared(format!("http://{}", served.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut accounts = pb::account_service_client::AccountServiceClient::new(channel.clone());
    let mut keys = pb::key_service_client::KeyServiceClient::new(channel.clone());
    let mut checks = pb::check_service_client::CheckServiceClient::new(channel);
    let account = accounts
        .create_account(bearer(
            &admin,
            pb::CreateAccountRequest {
                name: "Shop".into(),
                plan: "PRIME".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let created = keys
        .create_key(bearer(
            &bootstrap,
            crate::common::key_request(&account.id, &["feedback.read"]),
        ))
        .await
        .unwrap()
        .into_inner();
    let rotated = keys
        .rotate_key(bearer(
            &admin,
            pb::RotateKeyRequest {
                id: created.key.unwrap().id,
                overlap_seconds: Some(0),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut secrets = vec![
        admin.clone(),
        bootstrap.clone(),
        created.secret.clone(),
        rotated.secret.clone(),
    ];
    for credential in &secrets {
        for permission in ["feedback.read", "feedback.write"] {
            let _ = checks
                .check(pb::CheckRequest {
                    credential: credential.clone(),
                    permission: permission.into(),
                    ..Default::default()
                })
                .await;
        }
    }
    // Failing management calls with a secret in the wrong place.
    let typo = format!("{}x", created.secret);
    secrets.push(typo.clone());
    let _ = keys
        .list_keys(bearer(&typo, pb::ListKeysRequest::default()))
        .await;
    let _ = accounts
        .create_account(bearer(
            &admin,
            pb::CreateAccountRequest {
                name: rotated.secret.clone(),
                plan: "NOPE".into(),
            },
        ))
        .await;
    // Integration credentials: stored, tested against a closed port, handed
    // out, and refused in a bad update.
    let mut vault = pb::integration_service_client::IntegrationServiceClient::new(
        Channel::from_shared(format!("http://{}", served.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let (ck, cs) = (
        "ck_logcheck_0123456789abcdef0123",
        "cs_logcheck_fedcba9876543210fedc",
    );
    let integration = vault
        .create_integration(bearer(
            &admin,
            pb::CreateIntegrationRequest {
                account_id: account.id.clone(),
                mode: pb::Mode::Test.into(),
                kind: "woocommerce".into(),
                name: "shop".into(),
                base_url: "https://127.0.0.1:9".into(),
                credentials: [
                    ("consumer_key".to_owned(), ck.to_owned()),
                    ("consumer_secret".to_owned(), cs.to_owned()),
                ]
                .into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let tested = vault
        .test_connection(bearer(
            &admin,
            pb::TestConnectionRequest {
                id: integration.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!tested.ok && !tested.error.is_empty(), "{tested:?}");
    let plain = vault
        .use_credentials(bearer(
            &admin,
            pb::UseCredentialsRequest {
                id: integration.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(plain.credentials["consumer_secret"], cs);
    let _ = vault
        .update_integration(bearer(
            &admin,
            pb::UpdateIntegrationRequest {
                id: integration.id.clone(),
                credentials: Some(pb::StringMap {
                    values: [("consumer_key".to_owned(), ck.to_owned())].into(),
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    secrets.push(ck.to_owned());
    secrets.push(cs.to_owned());
    let (status, logs) = served.terminate();
    assert!(status.success());
    assert!(logs.len() > 1000, "trace logging produced output");
    assert!(logs.contains("connection tested"), "the test was logged");
    for secret in &secrets {
        let body = &secret[11..];
        assert!(!logs.contains(body), "a secret reached the logs");
    }
}
