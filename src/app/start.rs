//! `start`: binds the listeners, builds each adapter's state on the
//! services, and spawns the servers and the background tasks. The gate that
//! judges proxied requests is built once and shared by ext_authz and forward
//! auth, so both decide a request the same way.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::build::{build, open_store};
use super::shutdown::Stopping;
use super::{AppError, global_limits, master_key, observe, secure, tasks};
use crate::config::{ForwardAuthListener, Settings};
use crate::domain::gate::Gate;
use crate::domain::services::Services;
use crate::domain::tokens::{TokenDeps, TokenManager};
use crate::grpc::{self, GrpcState, auth::AdminPermissions};
use crate::http::forward_auth::{self, ForwardAuth};
use crate::http::{HttpState, Readiness};
use crate::ports::{Clock, Store};

/// A running server. Dropping it does not stop it; use the shutdown future.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// The forward-auth listener, when forward auth is on.
    pub forward_auth_addr: Option<SocketAddr>,
    /// The Prometheus listener, when metrics are on.
    pub metrics_addr: Option<SocketAddr>,
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
    // Replicas starting together take turns at migrating and bootstrapping.
    let startup_lock = store.startup_lock().await?;
    if settings.migrate_on_start {
        store.migrate().await?;
    }
    let store_port: Arc<dyn Store> = Arc::new(store.clone());
    let master_key = Arc::new(master_key::resolve(&settings, store_port.as_ref(), &store).await?);
    let parts = build(
        &settings,
        store_port.clone(),
        clock.clone(),
        master_key.clone(),
        Arc::new(store.clone()),
    )?;
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
    let forward_auth_listener = match &settings.forward_auth {
        Some(fa) => Some(
            TcpListener::bind(fa.addr)
                .await
                .map_err(|source| AppError::Bind {
                    addr: fa.addr,
                    source,
                })?,
        ),
        None => None,
    };
    let metrics_listener = observe::bind(settings.metrics_addr).await?;
    let metrics_addr = metrics_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()
        .map_err(|e| AppError::Server(e.to_string()))?;
    let forward_auth_addr = forward_auth_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()
        .map_err(|e| AppError::Server(e.to_string()))?;
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
        TokenManager::load(TokenDeps {
            store: store_port.clone(),
            tokens: Arc::new(store.clone()),
            policy: parts.policy.clone(),
            clock: clock.clone(),
            resolver: parts.resolver.clone(),
            master_key: master_key.clone(),
            settings: token_settings,
            key_prefix: settings.keys.prefix.clone(),
        })
        .await?,
    );
    let services = Arc::new(parts.into_services(Some(tokens.clone())));
    let gate = Arc::new(
        Gate::new(services.clone(), settings.gate.clone())
            .map_err(|e| AppError::Server(format!("ext_authz.public_routes: {e}")))?,
    );
    let csrf_secret =
        master_key::shared_secret(store_port.as_ref(), &master_key, "oauth_csrf_key").await?;
    drop(startup_lock);
    let http_state = Arc::new(
        HttpState::new(
            services.clone(),
            tokens.clone(),
            settings.tokens.user_header.clone(),
            &csrf_secret,
        )
        .with_scope_texts(settings.scope_texts.clone()),
    );
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
        gate: gate.clone(),
    });
    let (grpc_server, health) =
        grpc::Server::new(grpc_state).map_err(|e| AppError::Server(e.to_string()))?;
    health.set_serving(true).await;
    health.set_live().await;
    let readiness = Readiness::default();
    readiness.set(true);

    let (drain_tx, drain_rx) = watch::channel(false);
    let drained = move |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|draining| *draining).await;
    };
    let public = crate::http::router(readiness.clone(), http_state)
        .layer(crate::telemetry::traces::HttpTraceLayer);
    let (grpc_task, http_task) = match &settings.tls {
        None => {
            let grpc_task =
                tokio::spawn(grpc_server.serve(grpc_listener, drained(drain_rx.clone())));
            let http = crate::http::serve::serve(
                http_listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                }),
                public,
                settings.http_limits,
                drained(drain_rx.clone()),
            );
            (grpc_task, tokio::spawn(http))
        }
        Some(tls) => {
            let acceptors = secure::acceptors(tls, drained(drain_rx.clone()))?;
            let grpc_task = tokio::spawn(grpc_server.serve_tls(
                crate::tls::incoming(grpc_listener, Some(acceptors.grpc)),
                drained(drain_rx.clone()),
            ));
            let incoming = crate::tls::Incoming::new(http_listener, Some(acceptors.http))
                .map_err(|e| AppError::Server(e.to_string()))?;
            let http = crate::http::serve::serve(
                incoming,
                public,
                settings.http_limits,
                drained(drain_rx.clone()),
            );
            (grpc_task, tokio::spawn(http))
        }
    };
    let forward_auth_task = match (forward_auth_listener, &settings.forward_auth) {
        (Some(listener), Some(fa)) => Some(serve_forward_auth(
            listener,
            fa,
            gate,
            drained(drain_rx.clone()),
        )?),
        _ => None,
    };

    observe::register(&services.resolver);
    if let Some(listener) = metrics_listener {
        // Ends with the drain; nothing is in flight on it worth waiting for.
        drop(observe::serve(listener, drained(drain_rx.clone())));
    }
    let health_task = tokio::spawn(tasks::monitor_store(
        store_port.clone(),
        health.clone(),
        readiness.clone(),
        settings.health_interval,
        drain_rx.clone(),
    ));
    let flush_task = tokio::spawn(tasks::flush_usage_periodically(
        store_port.clone(),
        services.usage.clone(),
        settings.usage_flush_interval,
        drain_rx.clone(),
    ));
    let routes_changed = Arc::new(tokio::sync::Notify::new());
    let listener_task = store.spawn_invalidation_listener(Arc::new(tasks::ReplicaInvalidations {
        resolver: services.resolver.clone(),
        routes_changed: routes_changed.clone(),
    }));
    let routes_task = tokio::spawn(tasks::reload_routes_on_notice(
        services.clone(),
        routes_changed,
        drain_rx.clone(),
    ));

    if let Some(global) = settings.rate_limits.global.clone() {
        // Ends with the drain; nothing waits on it.
        drop(tokio::spawn(global_limits::reconcile(
            services.limits.limiter.clone(),
            global,
            readiness.clone(),
            drain_rx.clone(),
        )));
    }
    let keyring_task = tokio::spawn(tasks::reload_signing_keys(tokens.clone(), drain_rx.clone()));
    let outcome_tasks =
        super::usage_tasks::spawn(&services.analytics, &settings, clock.clone(), &drain_rx);
    // Audit retention: ends with the drain; a purge cut short loses only
    // whole batches of expired events.
    // Webhook deliveries: never on a mutation's path; ends with the drain,
    // and what it had not sent is in the outbox for the next start.
    drop(tokio::spawn(tasks::deliver_webhooks(
        services.webhooks.clone(),
        settings.webhooks.poll_interval,
        drain_rx.clone(),
    )));
    // key.expiring / key.expired: every replica scans; a notice's claim
    // lets only one of them send it.
    drop(tokio::spawn(tasks::announce_key_expiry(
        Arc::new(crate::domain::keys::expiry::ExpiryNotices::new(
            Arc::new(store.clone()),
            clock.clone(),
            settings.webhooks.key_expiring_days,
        )),
        settings.webhooks.key_expiry_interval,
        drain_rx.clone(),
    )));
    drop(tokio::spawn(tasks::purge_periodically(
        services.audit.clone(),
        services.webhooks.clone(),
        settings.audit.purge_interval,
        drain_rx.clone(),
    )));

    let stopping = Stopping {
        readiness,
        health,
        drain: drain_tx,
        grpc: grpc_task,
        http: http_task,
        forward_auth: forward_auth_task,
        grace: settings.shutdown_grace,
        delay: settings.shutdown_delay,
        before_listener: [health_task, flush_task],
        listener: listener_task,
        after_listener: [routes_task, keyring_task],
        usage: services.usage.clone(),
        outcomes: outcome_tasks,
        store_port,
        store,
    };
    let task = tokio::spawn(stopping.after(shutdown));
    Ok(Running {
        grpc_addr,
        http_addr,
        forward_auth_addr,
        metrics_addr,
        services,
        tokens,
        task,
    })
}

/// Serves forward auth on its own listener until `shutdown` completes. The
/// peer address goes to the handler: only trusted proxies may ask.
fn serve_forward_auth(
    listener: TcpListener,
    config: &ForwardAuthListener,
    gate: Arc<Gate>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, AppError> {
    let api = ForwardAuth::new(gate, config.settings.clone())
        .map_err(|e| AppError::Server(format!("ext_authz.header_prefix: {e}")))?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, flavor = config.settings.flavor.name(), "forward auth listening");
    }
    let server = axum::serve(
        listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        }),
        forward_auth::router(Arc::new(api)).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown);
    Ok(tokio::spawn(async move { server.await }))
}
