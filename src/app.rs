//! Composition root: build the state, start gRPC and HTTP, drain on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt;
use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Settings;
use crate::crypto::envelope::MasterKey;
use crate::domain::accounts::AccountManager;
use crate::domain::check::Checker;
use crate::domain::keys::KeyManager;
use crate::domain::permissions::Policy;
use crate::domain::resolver::KeyResolver;
use crate::domain::reveal::RevealManager;
use crate::domain::route_table::RouteTable;
use crate::domain::services::Services;
use crate::domain::signing::SigningManager;
use crate::domain::tokens::TokenManager;
use crate::domain::usage::UsageRecorder;
use crate::grpc::{self, GrpcState, auth::AdminPermissions};
use crate::http::{HttpState, Readiness};
use crate::ports::{Clock, RevealStore, SigningStore, Store, StoreError, SystemClock};
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

/// The managers that need only the store, built before the listeners are
/// bound (start-up registers the bootstrap token and loads the route rules
/// with them); [`Parts::into_services`] adds the checker once the token
/// manager, whose issuer is the bound HTTP address, is loaded.
pub struct Parts {
    pub policy: Arc<Policy>,
    pub resolver: Arc<KeyResolver>,
    pub usage: Arc<UsageRecorder>,
    pub accounts: AccountManager,
    pub keys: KeyManager,
    pub routes: RouteTable,
    pub signing: Arc<SigningManager>,
    pub reveals: RevealManager,
    clock: Arc<dyn Clock>,
    key_prefix: String,
    trusted_proxies: Vec<IpNet>,
}

pub fn build(
    settings: &Settings,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    master_key: Arc<MasterKey>,
    features: Arc<impl FeatureStores>,
) -> Parts {
    let policy = Arc::new(settings.policy.clone());
    let resolver = Arc::new(KeyResolver::new(
        store.clone(),
        policy.clone(),
        settings.cache,
    ));
    let signing = Arc::new(SigningManager::new(
        features.clone(),
        store.clone(),
        resolver.clone(),
        master_key.clone(),
        clock.clone(),
        settings.signing.signing.clone(),
    ));
    let reveals = RevealManager::new(
        features,
        master_key,
        clock.clone(),
        settings.signing.reveal_ttl_secs,
    );
    Parts {
        accounts: AccountManager::new(
            store.clone(),
            policy.clone(),
            clock.clone(),
            resolver.clone(),
        ),
        routes: RouteTable::new(store.clone(), clock.clone()),
        keys: KeyManager::new(
            store,
            policy.clone(),
            clock.clone(),
            resolver.clone(),
            settings.keys.clone(),
        ),
        policy,
        resolver,
        usage: Arc::new(UsageRecorder::default()),
        signing,
        reveals,
        clock,
        key_prefix: settings.keys.prefix.clone(),
        trusted_proxies: settings.trusted_proxies.clone(),
    }
}

impl Parts {
    /// The services, with the checker built on `tokens` (`None` = JWTs are
    /// denied: one-shot CLI commands load no signing keys).
    pub fn into_services(self, tokens: Option<Arc<TokenManager>>) -> Services {
        let checker = Checker::new(
            self.resolver.clone(),
            self.clock.clone(),
            self.usage.clone(),
            self.key_prefix,
            self.trusted_proxies,
            tokens.clone(),
        )
        .with_signed_requests(self.signing.clone());
        Services {
            accounts: self.accounts,
            keys: self.keys,
            routes: self.routes,
            checker,
            signing: self.signing,
            reveals: self.reveals,
            tokens,
            resolver: self.resolver,
            usage: self.usage,
            clock: self.clock,
        }
    }
}

/// The services without listeners or signing keys, for one-shot commands.
pub async fn offline_services(settings: &Settings, db: &SqlStore) -> Result<Services, AppError> {
    let store: Arc<dyn Store> = Arc::new(db.clone());
    let master_key = Arc::new(crate::master_key::resolve(settings, store.as_ref()).await?);
    let parts = build(
        settings,
        store,
        Arc::new(SystemClock),
        master_key,
        Arc::new(db.clone()),
    );
    Ok(parts.into_services(None))
}

/// A running server. Dropping it does not stop it; use the shutdown future.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub services: Arc<Services>,
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
        clock.clone(),
        master_key.clone(),
        Arc::new(store.clone()),
    );
    if let Some(token) = &settings.bootstrap_admin_token {
        let key = parts.keys.register_operator_token(token).await?;
        tracing::info!(key_id = %key.id, masked = %key.masked, "bootstrap admin token registered");
    }
    parts.routes.reload().await?;

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
        TokenManager::load(
            store_port.clone(),
            Arc::new(store.clone()),
            parts.policy.clone(),
            clock,
            parts.resolver.clone(),
            master_key.clone(),
            token_settings,
            settings.keys.prefix.clone(),
        )
        .await?,
    );
    let services = Arc::new(parts.into_services(Some(tokens.clone())));
    let csrf_secret =
        crate::master_key::shared_secret(store_port.as_ref(), &master_key, "oauth_csrf_key")
            .await?;
    let http_state = Arc::new(HttpState::new(
        services.clone(),
        tokens.clone(),
        settings.tokens.user_header.clone(),
        &csrf_secret,
    ));
    let grpc_state = Arc::new(GrpcState {
        services: services.clone(),
        tokens: tokens.clone(),
        admin: AdminPermissions::new().map_err(|e| AppError::Server(e.to_string()))?,
        check_requires_auth: settings.check_requires_auth,
        store_header: settings.store_header.clone(),
        max_list_items: settings.max_list_items,
        max_message_bytes: settings.max_message_bytes,
        reveal_base_url: settings.signing.reveal_base_url.clone(),
        ext_authz: settings.ext_authz.clone(),
    });
    let (grpc_server, health) =
        grpc::Server::new(grpc_state).map_err(|e| AppError::Server(e.to_string()))?;
    health.set_serving(true).await;
    let readiness = Readiness::default();
    readiness.set(true);

    let (drain_tx, drain_rx) = watch::channel(false);
    let drained = move |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|draining| *draining).await;
    };
    let grpc_task = tokio::spawn(grpc_server.serve(grpc_listener, drained(drain_rx.clone())));
    let http = axum::serve(
        http_listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        }),
        crate::http::router(readiness.clone(), http_state),
    )
    .with_graceful_shutdown(drained(drain_rx.clone()));
    let http_task = tokio::spawn(async move { http.await });

    let health_task = tokio::spawn(monitor_store(
        store_port.clone(),
        health.clone(),
        readiness.clone(),
        settings.health_interval,
        drain_rx.clone(),
    ));
    let flush_task = tokio::spawn(flush_usage_periodically(
        store_port.clone(),
        services.usage.clone(),
        settings.usage_flush_interval,
        drain_rx.clone(),
    ));
    let routes_changed = Arc::new(tokio::sync::Notify::new());
    let listener_task =
        store.spawn_invalidation_listener(services.resolver.clone(), routes_changed.clone());
    let routes_task = tokio::spawn(reload_routes_on_notice(
        services.clone(),
        routes_changed,
        drain_rx.clone(),
    ));

    let keyring_task = tokio::spawn(reload_signing_keys(tokens.clone(), drain_rx.clone()));

    let grace = settings.shutdown_grace;
    let usage = services.usage.clone();
    let task = tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: health NOT_SERVING, draining in-flight calls");
        readiness.set(false);
        health.set_serving(false).await;
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
        services,
        tokens,
        task,
    })
}

async fn monitor_store(
    store: Arc<dyn Store>,
    health: grpc::Health,
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
            health.set_serving(ok).await;
        }
    }
}

/// Rebuilds the route matcher when another replica changed the rules.
async fn reload_routes_on_notice(
    services: Arc<Services>,
    notice: Arc<tokio::sync::Notify>,
    mut drain: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = notice.notified() => {
                if let Err(e) = services.routes.reload().await {
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
