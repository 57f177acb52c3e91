//! Shutdown: one signal future (SIGTERM | SIGINT), then health goes
//! NOT_SERVING, the listeners keep serving for `shutdown_delay_seconds`
//! (load balancers stop routing here first), health Watch streams end,
//! in-flight calls drain under the grace timeout, the
//! background tasks end, buffered last-used times are flushed and the store
//! is closed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::AppError;
use super::tasks::flush_usage;
use crate::domain::usage::UsageRecorder;
use crate::grpc;
use crate::http::Readiness;
use crate::ports::Store;
use crate::store::SqlStore;

/// What start-up left running, stopped in this order once the shutdown
/// future completes.
pub(super) struct Stopping {
    pub readiness: Readiness,
    pub health: grpc::Health,
    /// Tells the servers and the background tasks to finish.
    pub drain: watch::Sender<bool>,
    pub grpc: JoinHandle<Result<(), tonic::transport::Error>>,
    pub http: JoinHandle<std::io::Result<()>>,
    /// Forward auth's listener, when it is on.
    pub forward_auth: Option<JoinHandle<std::io::Result<()>>>,
    /// How long in-flight calls may take.
    pub grace: Duration,
    /// How long to keep serving after NOT_SERVING, before the listeners close.
    pub delay: Duration,
    /// Store health and usage flushing.
    pub before_listener: [JoinHandle<()>; 2],
    /// The store's notification listener (PostgreSQL only): aborted, it has no drain.
    pub listener: Option<JoinHandle<()>>,
    /// Route and signing-key reloads.
    pub after_listener: [JoinHandle<()>; 2],
    pub usage: Arc<UsageRecorder>,
    /// The outcome worker (written last, after the drain) and usage maintenance.
    pub outcomes: super::usage_tasks::OutcomeTasks,
    pub store_port: Arc<dyn Store>,
    pub store: SqlStore,
}

impl Stopping {
    /// Waits for `shutdown`, then drains and stops everything.
    pub async fn after(self, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
        shutdown.await;
        tracing::info!("shutting down: health NOT_SERVING, draining in-flight calls");
        self.readiness.set(false);
        self.health.set_serving(false).await;
        if !self.delay.is_zero() {
            tracing::info!(
                delay_seconds = self.delay.as_secs(),
                "still serving while load balancers stop routing here"
            );
            tokio::time::sleep(self.delay).await;
        }
        // Watchers have seen NOT_SERVING; their streams end now rather than
        // hold the drain for the whole grace period.
        self.health.end_watches();
        let _ = self.drain.send(true);
        let servers = async {
            let grpc = self.grpc.await;
            let http = self.http.await;
            let forward_auth = match self.forward_auth {
                Some(task) => task.await,
                None => Ok(Ok(())),
            };
            (grpc, http, forward_auth)
        };
        let grace = self.grace;
        let result = match tokio::time::timeout(grace, servers).await {
            Ok((Ok(Ok(())), Ok(Ok(())), Ok(Ok(())))) => Ok(()),
            Ok((grpc, http, forward_auth)) => Err(AppError::Server(format!(
                "server ended badly: grpc={grpc:?} http={http:?} forward_auth={forward_auth:?}"
            ))),
            Err(_) => {
                tracing::warn!(
                    grace_seconds = grace.as_secs(),
                    "in-flight calls did not finish within the grace period"
                );
                Ok(())
            }
        };
        for task in self.before_listener {
            let _ = task.await;
        }
        if let Some(t) = self.listener {
            t.abort();
        }
        for task in self.after_listener {
            let _ = task.await;
        }
        flush_usage(self.store_port.as_ref(), &self.usage, Duration::ZERO, None).await;
        self.outcomes.finish().await;
        self.store.close().await;
        tracing::info!("stopped");
        result
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
