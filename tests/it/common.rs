//! Test harness: every test starts its own server on 127.0.0.1:0 with a fresh
//! database (a temp SQLite file, or a new PostgreSQL database), and drives it
//! with the generated tonic clients.

use std::sync::Arc;

use latchkey::app::{self, Running};
use latchkey::config::Config;
use latchkey::crypto::secret::Secret;
use latchkey::domain::permissions::Scope;
use latchkey::pb;
use latchkey::ports::{Clock, ManualClock};
use sea_orm::{ConnectionTrait, Database};
use tokio::sync::oneshot;
use tonic::Request;
use tonic::transport::Channel;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn name(backend: Backend)` once per backend.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            )*
        }
    };
}

/// The PostgreSQL server tests use: `DATABASE_URL` (the test command sets it),
/// else the local default. There is no silent skip: if it is down, tests fail.
pub fn postgres_admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{base}/{name}{query}")
}

pub fn new_master_key() -> String {
    let (_, text) = latchkey::crypto::envelope::MasterKey::generate().unwrap();
    text.to_string()
}

/// A fresh database, removed again by `drop_database`.
pub struct TestDb {
    pub url: String,
    /// The master key every server on this database uses (base64).
    pub master_key: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("latchkey.db").display()
                );
                Self {
                    url,
                    master_key: new_master_key(),
                    pg_name: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let admin = postgres_admin_url();
                // UUIDv7: the name carries its creation time, so the test
                // command drops only databases old enough to be leftovers.
                let name = format!("lk_test_{}", uuid::Uuid::now_v7().simple());
                let conn = Database::connect(&admin).await.unwrap_or_else(|e| {
                    panic!("PostgreSQL at DATABASE_URL is needed for the postgres tests: {e}")
                });
                conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .unwrap();
                conn.close().await.unwrap();
                Self {
                    url: with_database(&admin, &name),
                    master_key: new_master_key(),
                    pg_name: Some(name),
                    _dir: None,
                }
            }
        }
    }

    /// A database someone else made (a throwaway cluster's): nothing to drop.
    pub fn at(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            master_key: new_master_key(),
            pg_name: None,
            _dir: None,
        }
    }

    /// Runs SQL against the server's maintenance database (PostgreSQL only).
    pub async fn admin_sql(&self, sql: &str) {
        let conn = Database::connect(&postgres_admin_url()).await.unwrap();
        conn.execute_unprepared(sql).await.unwrap();
        conn.close().await.unwrap();
    }

    pub fn pg_name(&self) -> &str {
        self.pg_name.as_deref().expect("a PostgreSQL database")
    }

    pub async fn drop_database(&self) {
        if let Some(name) = &self.pg_name {
            let conn = Database::connect(&postgres_admin_url()).await.unwrap();
            let _ = conn
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
            let _ = conn.close().await;
        }
    }
}

pub struct TestServer {
    pub running: Option<Running>,
    shutdown: Option<oneshot::Sender<()>>,
    pub channel: Channel,
    pub clock: Arc<ManualClock>,
    pub admin_token: String,
    pub db: Arc<TestDb>,
}

/// The settings every test server starts from: fast background loops, so
/// tests can wait for them by polling rather than sleeping.
pub fn test_config(db_url: &str) -> Config {
    Config {
        grpc_addr: "127.0.0.1:0".into(),
        http_addr: "127.0.0.1:0".into(),
        database_url: Some(db_url.to_owned()),
        usage_flush_interval_ms: 50,
        health_interval_ms: 50,
        // Tests run many servers at once on one PostgreSQL: a small pool
        // kept open, the rest opened on demand (tests/it/store_pool.rs
        // checks the service's default, the whole pool).
        store_min_connections: Some(2),
        shutdown_grace_seconds: 5,
        shutdown_delay_seconds: 0,
        ..Config::default()
    }
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let db = Arc::new(TestDb::new(backend).await);
        Self::start_on(db, tweak, None).await
    }

    /// Another server (replica) on the same database.
    pub async fn start_on(
        db: Arc<TestDb>,
        tweak: impl FnOnce(&mut Config),
        bootstrap: Option<String>,
    ) -> Self {
        let keys = db.master_key.clone();
        Self::start_with_master_keys(db, tweak, bootstrap, &keys).await
    }

    /// As `start_on`, with these master keys (`LATCHKEY_MASTER_KEYS` form)
    /// instead of the database's own.
    pub async fn start_with_master_keys(
        db: Arc<TestDb>,
        tweak: impl FnOnce(&mut Config),
        bootstrap: Option<String>,
        master_keys: &str,
    ) -> Self {
        let mut config = test_config(&db.url);
        tweak(&mut config);
        let mut settings = config.validate().unwrap();
        settings.bootstrap_admin_token = bootstrap.map(Secret::new);
        settings.master_key = Some(Secret::new(master_keys.to_owned()));
        let clock = Arc::new(ManualClock::new(latchkey::ports::SystemClock.now()));
        let (tx, rx) = oneshot::channel();
        let running = app::start(settings, clock.clone(), async {
            let _ = rx.await;
        })
        .await
        .unwrap();
        let admin = running
            .services
            .keys
            .create_operator_key("test admin", vec![Scope::parse("admin.*").unwrap()], None)
            .await
            .unwrap();
        let channel = Channel::from_shared(format!("http://{}", running.grpc_addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self {
            running: Some(running),
            shutdown: Some(tx),
            channel,
            clock,
            admin_token: admin.secret.expose().clone(),
            db,
        }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    /// Triggers shutdown without waiting for it.
    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Shuts down, waits for the drain, and drops the database.
    pub async fn stop(mut self) {
        self.trigger_shutdown();
        if let Some(r) = self.running.take() {
            r.wait().await.unwrap();
        }
        if Arc::strong_count(&self.db) == 1 {
            self.db.drop_database().await;
        }
    }

    /// Shuts down but keeps the database (for a replica still using it).
    pub async fn stop_keep_db(mut self) {
        self.trigger_shutdown();
        if let Some(r) = self.running.take() {
            r.wait().await.unwrap();
        }
    }

    pub fn admin<T>(&self, msg: T) -> Request<T> {
        bearer(&self.admin_token, msg)
    }

    pub fn accounts(&self) -> pb::account_service_client::AccountServiceClient<Channel> {
        pb::account_service_client::AccountServiceClient::new(self.channel.clone())
    }

    pub fn keys(&self) -> pb::key_service_client::KeyServiceClient<Channel> {
        pb::key_service_client::KeyServiceClient::new(self.channel.clone())
    }

    pub fn checks(&self) -> pb::check_service_client::CheckServiceClient<Channel> {
        pb::check_service_client::CheckServiceClient::new(self.channel.clone())
    }

    pub async fn account(&self, plan: &str) -> pb::Account {
        self.accounts()
            .create_account(self.admin(pb::CreateAccountRequest {
                name: "Shop".into(),
                plan: plan.into(),
            }))
            .await
            .unwrap()
            .into_inner()
    }

    /// An account whose live mode has been reviewed and approved.
    pub async fn live_account(&self, plan: &str) -> pb::Account {
        let account = self.account(plan).await;
        let mut accounts = self.accounts();
        accounts
            .request_live_mode(self.admin(pb::RequestLiveModeRequest {
                id: account.id.clone(),
            }))
            .await
            .unwrap();
        accounts
            .review_live_mode(self.admin(pb::ReviewLiveModeRequest {
                id: account.id.clone(),
                approve: true,
            }))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn create_key(&self, req: pb::CreateKeyRequest) -> (pb::Key, String) {
        let r = self
            .keys()
            .create_key(self.admin(req))
            .await
            .unwrap()
            .into_inner();
        (r.key.unwrap(), r.secret)
    }

    /// A test-mode secret key with the given scopes on a fresh account.
    pub async fn simple_key(&self, plan: &str, scopes: &[&str]) -> (pb::Key, String) {
        let account = self.account(plan).await;
        self.create_key(key_request(&account.id, scopes)).await
    }

    pub async fn check(&self, req: pb::CheckRequest) -> pb::CheckResponse {
        self.checks().check(req).await.unwrap().into_inner()
    }

    /// Check a credential for a permission, with no other context.
    pub async fn check_perm(&self, credential: &str, permission: &str) -> pb::CheckResponse {
        self.check(pb::CheckRequest {
            credential: credential.into(),
            permission: permission.into(),
            ..Default::default()
        })
        .await
    }
}

pub fn bearer<T>(token: &str, msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

pub fn key_request(account_id: &str, scopes: &[&str]) -> pb::CreateKeyRequest {
    pb::CreateKeyRequest {
        account_id: account_id.into(),
        mode: pb::Mode::Test.into(),
        kind: pb::KeyKind::Secret.into(),
        name: "server key".into(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}

pub fn reason(r: &pb::CheckResponse) -> pb::Reason {
    pb::Reason::try_from(r.reason).unwrap()
}

/// Polls `f` until it returns `Some`, for at most 10 s. For background work
/// (batched flushes, cross-replica notices); never for time to pass.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
