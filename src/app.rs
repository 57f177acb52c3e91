//! Composition root: build the state, start gRPC and HTTP, drain on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::ServingStatus;

use crate::config::Settings;
use crate::crypto::envelope::MasterKey;
use crate::domain::accounts::AccountManager;
use crate::domain::check::Checker;
use crate::domain::keys::KeyManager;
use crate::domain::resolver::KeyResolver;
use crate::domain::reveal::RevealManager;
use crate::domain::routes::RouteTable;
use crate::domain::signing::{SigningDeps, SigningManager};
use crate::domain::tokens::TokenManager;
use crate::domain::usage::UsageRecorder;
use crate::grpc::auth::AdminPermissions;
use crate::grpc::conn::GrpcConn;
use crate::grpc::{
    AccountApi, CheckApi, ExtAuthzApi, KeyApi, RevealApi, RouteApi, SigningApi, TokenApi,
};
use crate::http::Readiness;
use crate::pb;
use crate::ports::{Clock, RevealStore, SigningStore, Store, StoreError};
use crate::store::SqlStore;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Domain(#[from] crate::domain::error::Error),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("master key: {0}")]
    MasterKey(#[from] crate::master_key::MasterKeyError),
    #[error("{0}")]
    Server(String),
}

/// What the adapters call: one instance per process.
pub struct Core {
    pub accounts: AccountManager,
    pub keys: KeyManager,
    pub routes: RouteTable,
    pub checker: Checker,
    pub clock: Arc<dyn Clock>,
    pub admin: AdminPermissions,
    pub check_requires_auth: bool,
    /// The header naming a store, checked against the key's account.
    pub store_header: Option<String>,
    pub max_list_items: usize,
    /// Seals every secret that must be read back (signing keys, HMAC secrets).
    pub master_key: Arc<MasterKey>,
    pub signing: Arc<SigningManager>,
    pub reveals: RevealManager,
    /// Prefix of reveal links (`https://…`); `None` = the path alone.
    pub reveal_base_url: Option<String>,
}

/// The stores of features that keep their own port traits (`SqlStore`
/// implements them all).
pub trait FeatureStores: SigningStore + RevealStore {}
impl<T: SigningStore + RevealStore> FeatureStores for T {}

/// Opens the configured store, creating the SQLite data directory if needed.
pub async fn open_store(settings: &Settings) -> Result<SqlStore, AppError> {
    if settings.database_url.expose().starts_with("sqlite:") {
        std::fs::create_dir_all(&settings.data_dir).map_err(|source| AppError::DataDir {
            path: settings.data_dir.display().to_string(),
            source,
        })?;
    }
    Ok(SqlStore::connect(&settings.database_url).await?)
}

pub struct Parts {
    pub core: Arc<Core>,
    pub policy: Arc<crate::domain::permissions::Policy>,
    pub resolver: Arc<KeyResolver>,
    pub usage: Arc<UsageRecorder>,
}

pub fn build(
    settings: &Settings,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    master_key: Arc<MasterKey>,
    features: Arc<impl FeatureStores>,
) -> Result<Parts, AppError> {
    let policy = Arc::new(settings.policy.clone());
    let policy_for_parts = policy.clone();
    let resolver = Arc::new(KeyResolver::new(
        store.clone(),
        policy.clone(),
        settings.cache,
    ));
    let usage = Arc::new(UsageRecorder::default());
    let admin = AdminPermissions::new().map_err(|e| AppError::Server(e.to_string()))?;
    let signing = Arc::new(SigningManager::new(SigningDeps {
        store: features.clone(),
        keys: store.clone(),
        resolver: resolver.clone(),
        master_key: master_key.clone(),
        clock: clock.clone(),
        settings: settings.signing.signing.clone(),
    }));
    let reveals = RevealManager::new(
        features,
        master_key.clone(),
        clock.clone(),
        settings.signing.reveal_ttl_secs,
    );
    let core = Arc::new(Core {
        accounts: AccountManager::new(
            store.clone(),
            policy.clone(),
            clock.clone(),
            resolver.clone(),
        ),
        routes: RouteTable::new(store.clone(), clock.clone()),
        keys: KeyManager::new(
            store,
            policy,
            clock.clone(),
            resolver.clone(),
            settings.keys.clone(),
        ),
        checker: Checker::new(
            resolver.clone(),
            clock.clone(),
            usage.clone(),
            settings.keys.prefix.clone(),
            settings.trusted_proxies.clone(),
        )
        .with_signed_requests(signing.clone()),
        clock,
        admin,
        check_requires_auth: settings.check_requires_auth,
        store_header: settings.store_header.clone(),
        max_list_items: settings.max_list_items,
        master_key,
        signing,
        reveals,
        reveal_base_url: settings.signing.reveal_base_url.clone(),
    });
    Ok(Parts {
        policy: policy_for_parts,
        core,
        resolver,
        usage,
    })
}

/// What other replicas' notices do here: drop cached keys, rebuild the route
/// matcher (the store's listener knows only the `Invalidations` port).
struct ReplicaInvalidations {
    resolver: Arc<KeyResolver>,
    routes_changed: Arc<tokio::sync::Notify>,
}

impl crate::ports::Invalidations for ReplicaInvalidations {
    fn key(&self, hash: &[u8; 32]) {
        self.resolver.invalidate_key(hash);
    }

    fn all_keys(&self) {
        self.resolver.invalidate_all();
    }

    fn routes(&self) {
        self.routes_changed.notify_one();
    }
}

/// A running server. Dropping it does not stop it; use the shutdown future.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub core: Arc<Core>,
    pub tokens: Arc<TokenManager>,
    task: tokio::task::JoinHandle<Result<(), AppError>>,
}

impl Running {
    /// Waits until the server has drained and stopped.
    pub async fn wait(self) -> Result<(), AppError> {
        self.task
            .await
            .map_err(|e| AppError::Server(e.to_string()))?
    }
}

const SERVICES: [&str; 9] = [
    "",
    "latchkey.v1.TokenService",
    "latchkey.v1.AccountService",
    "latchkey.v1.KeyService",
    "latchkey.v1.CheckService",
    "latchkey.v1.RouteService",
    "envoy.service.auth.v3.Authorization",
    "latchkey.v1.SigningService",
    "latchkey.v1.RevealService",
];

/// Envoy's ext_authz API, compiled by build.rs from the envoy-types package.
const ENVOY_FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("envoy_ext_authz_descriptor");

async fn set_health(reporter: &tonic_health::server::HealthReporter, status: ServingStatus) {
    for service in SERVICES {
        reporter.set_service_status(service, status).await;
    }
}

/// Starts gRPC and HTTP on the configured addresses (port 0 picks a free one)
/// and returns once both listen. When `shutdown` completes: health turns
/// NOT_SERVING, in-flight calls drain under the grace timeout, buffered
/// last-used times are flushed, and the store is closed.
pub async fn start(
    settings: Settings,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, AppError> {
    let store = open_store(&settings).await?;
    if settings.migrate_on_start {
        store.migrate().await?;
    }
    let store_port: Arc<dyn Store> = Arc::new(store.clone());
    let master_key = Arc::new(crate::master_key::resolve(&settings, store_port.as_ref()).await?);
    let parts = build(
        &settings,
        store_port.clone(),
        clock,
        master_key,
        Arc::new(store.clone()),
    )?;
    if let Some(token) = &settings.bootstrap_admin_token {
        let key = parts.core.keys.register_operator_token(token).await?;
        tracing::info!(key_id = %key.id, masked = %key.masked, "bootstrap admin token registered");
    }
    parts.core.routes.reload().await?;
    let ext_authz = ExtAuthzApi::new(parts.core.clone(), settings.ext_authz.clone())
        .map_err(|e| AppError::Server(format!("ext_authz.public_routes: {e}")))?;

    let grpc_listener = TcpListener::bind(settings.grpc_addr)
        .await
        .map_err(|source| AppError::Bind {
            addr: settings.grpc_addr,
            source,
        })?;
    let http_listener = TcpListener::bind(settings.http_addr)
        .await
        .map_err(|source| AppError::Bind {
            addr: settings.http_addr,
            source,
        })?;
    let grpc_addr = grpc_listener
        .local_addr()
        .map_err(|e| AppError::Server(e.to_string()))?;
    let http_addr = http_listener
        .local_addr()
        .map_err(|e| AppError::Server(e.to_string()))?;

    let mut token_settings = settings.tokens.tokens.clone();
    token_settings.issuer = settings
        .tokens
        .issuer
        .clone()
        .unwrap_or_else(|| format!("http://{http_addr}"));
    let tokens = Arc::new(
        TokenManager::load(crate::domain::tokens::TokenDeps {
            store: store_port.clone(),
            tokens: Arc::new(store.clone()),
            policy: parts.policy.clone(),
            clock: parts.core.clock.clone(),
            resolver: parts.resolver.clone(),
            master_key: parts.core.master_key.clone(),
            settings: token_settings,
            key_prefix: settings.keys.prefix.clone(),
        })
        .await?,
    );
    parts.core.checker.set_tokens(tokens.clone());
    let csrf_secret = crate::master_key::shared_secret(
        store_port.as_ref(),
        &parts.core.master_key,
        "oauth_csrf_key",
    )
    .await?;
    let oauth_http = Arc::new(crate::http::oauth::OAuthHttp::new(
        tokens.clone(),
        settings.tokens.user_header.clone(),
        parts.core.clock.clone(),
        &csrf_secret,
    ));

    let (reporter, health_service) = tonic_health::server::health_reporter();
    set_health(&reporter, ServingStatus::Serving).await;
    let readiness = Readiness::default();
    readiness.set(true);

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(ENVOY_FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| AppError::Server(e.to_string()))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(ENVOY_FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| AppError::Server(e.to_string()))?;

    let max = settings.max_message_bytes;
    let core = parts.core.clone();
    let (drain_tx, drain_rx) = watch::channel(false);
    let drained = move |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|draining| *draining).await;
    };

    let grpc = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            pb::account_service_server::AccountServiceServer::new(AccountApi(core.clone()))
                .max_decoding_message_size(max),
        )
        .add_service(
            pb::key_service_server::KeyServiceServer::new(KeyApi(core.clone()))
                .max_decoding_message_size(max),
        )
        .add_service(
            pb::check_service_server::CheckServiceServer::new(CheckApi(core.clone()))
                .max_decoding_message_size(max),
        )
        .add_service(
            pb::route_service_server::RouteServiceServer::new(RouteApi(core.clone()))
                .max_decoding_message_size(max),
        )
        .add_service(
            pb::token_service_server::TokenServiceServer::new(TokenApi {
                core: core.clone(),
                tokens: tokens.clone(),
            })
            .max_decoding_message_size(max),
        )
        .add_service(
            // Not the generated `AuthorizationServer`: this one encodes an
            // allow's principal once per key (see grpc/ext_authz/wire.rs).
            crate::grpc::ext_authz::AuthorizationService::new(ext_authz, max),
        )
        .add_service(
            pb::signing_service_server::SigningServiceServer::new(SigningApi(core.clone()))
                .max_decoding_message_size(max),
        )
        .add_service(
            pb::reveal_service_server::RevealServiceServer::new(RevealApi(core.clone()))
                .max_decoding_message_size(max),
        )
        .serve_with_incoming_shutdown(
            // TCP_NODELAY, and small responses batched into shared writes: see grpc/conn.rs.
            TcpListenerStream::new(grpc_listener).map(|conn| conn.map(GrpcConn::new)),
            drained(drain_rx.clone()),
        );
    let http = axum::serve(
        http_listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        }),
        crate::http::router(readiness.clone(), oauth_http)
            .merge(crate::http::reveal::router(core.clone())),
    )
    .with_graceful_shutdown(drained(drain_rx.clone()));
    let grpc_task = tokio::spawn(grpc);
    let http_task = tokio::spawn(async move { http.await });

    let health_task = tokio::spawn(monitor_store(
        store_port.clone(),
        reporter.clone(),
        readiness.clone(),
        settings.health_interval,
        drain_rx.clone(),
    ));
    let flush_task = tokio::spawn(flush_usage_periodically(
        store_port.clone(),
        parts.usage.clone(),
        settings.usage_flush_interval,
        drain_rx.clone(),
    ));
    let routes_changed = Arc::new(tokio::sync::Notify::new());
    let listener_task = store.spawn_invalidation_listener(Arc::new(ReplicaInvalidations {
        resolver: parts.resolver.clone(),
        routes_changed: routes_changed.clone(),
    }));
    let routes_task = tokio::spawn(reload_routes_on_notice(
        core.clone(),
        routes_changed,
        drain_rx.clone(),
    ));

    let keyring_task = tokio::spawn(reload_signing_keys(tokens.clone(), drain_rx.clone()));

    let grace = settings.shutdown_grace;
    let usage = parts.usage.clone();
    let task = tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: health NOT_SERVING, draining in-flight calls");
        readiness.set(false);
        set_health(&reporter, ServingStatus::NotServing).await;
        let _ = drain_tx.send(true);
        let servers = async {
            let grpc = grpc_task.await;
            let http = http_task.await;
            (grpc, http)
        };
        let result = match tokio::time::timeout(grace, servers).await {
            Ok((Ok(Ok(())), Ok(Ok(())))) => Ok(()),
            Ok((grpc, http)) => Err(AppError::Server(format!(
                "server ended badly: grpc={grpc:?} http={http:?}"
            ))),
            Err(_) => {
                tracing::warn!(
                    grace_seconds = grace.as_secs(),
                    "in-flight calls did not finish within the grace period"
                );
                Ok(())
            }
        };
        let _ = health_task.await;
        let _ = flush_task.await;
        if let Some(t) = listener_task {
            t.abort();
        }
        let _ = routes_task.await;
        let _ = keyring_task.await;
        flush_usage(store_port.as_ref(), &usage).await;
        store.close().await;
        tracing::info!("stopped");
        result
    });
    Ok(Running {
        grpc_addr,
        http_addr,
        tokens,
        core,
        task,
    })
}

async fn monitor_store(
    store: Arc<dyn Store>,
    reporter: tonic_health::server::HealthReporter,
    readiness: Readiness,
    every: std::time::Duration,
    mut drain: watch::Receiver<bool>,
) {
    let mut healthy = true;
    let mut ticker = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = drain.changed() => return,
        }
        let ok =
            match tokio::time::timeout(every.max(std::time::Duration::from_secs(1)), store.ping())
                .await
            {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    if healthy {
                        tracing::error!(error = %e, "store unreachable: NOT_SERVING");
                    }
                    false
                }
                Err(_) => {
                    if healthy {
                        tracing::error!("store ping timed out: NOT_SERVING");
                    }
                    false
                }
            };
        if *drain.borrow() {
            return;
        }
        if ok != healthy {
            healthy = ok;
            if ok {
                tracing::info!("store reachable again: SERVING");
            }
            readiness.set(ok);
            set_health(
                &reporter,
                if ok {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                },
            )
            .await;
        }
    }
}

/// Rebuilds the route matcher when another replica changed the rules.
async fn reload_routes_on_notice(
    core: Arc<Core>,
    notice: Arc<tokio::sync::Notify>,
    mut drain: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = notice.notified() => {
                if let Err(e) = core.routes.reload().await {
                    tracing::error!(error = %e, "could not reload route rules; keeping the previous ones");
                }
            }
            _ = drain.changed() => return,
        }
    }
}

async fn flush_usage(store: &dyn Store, usage: &UsageRecorder) {
    let batch = usage.drain();
    if batch.is_empty() {
        return;
    }
    if let Err(e) = store.record_key_usage(&batch).await {
        tracing::warn!(error = %e, keys = batch.len(), "could not write last-used times; will retry");
        usage.restore(batch);
    }
}

async fn flush_usage_periodically(
    store: Arc<dyn Store>,
    usage: Arc<UsageRecorder>,
    every: std::time::Duration,
    mut drain: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => flush_usage(store.as_ref(), &usage).await,
            _ = drain.changed() => return,
        }
    }
}

/// Completes on SIGTERM or SIGINT. The handlers are installed when this is
/// called, not when the future is first polled: a SIGTERM that arrives right
/// after start-up must drain, not kill the process.
#[cfg(unix)]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

#[cfg(not(unix))]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// Re-reads the signing keys now and then: another replica may have rotated,
/// and retired keys leave the JWKS once their tokens have expired. Every
/// hundredth round also prunes expired token rows.
async fn reload_signing_keys(tokens: Arc<TokenManager>, mut drain: watch::Receiver<bool>) {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(10);
    const PRUNE_EVERY: u32 = 100;
    let mut round: u32 = 0;
    loop {
        tokio::select! {
            _ = drain.changed() => return,
            () = tokio::time::sleep(EVERY) => {
                if let Err(e) = tokens.reload_keys().await {
                    tracing::warn!(error = %e, "signing keys could not be re-read");
                }
                round = round.wrapping_add(1);
                if round.is_multiple_of(PRUNE_EVERY) {
                    match tokens.prune().await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(rows = n, "pruned expired token records"),
                        Err(e) => tracing::warn!(error = %e, "expired token records could not be pruned"),
                    }
                }
            }
        }
    }
}
