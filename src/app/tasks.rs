//! What runs beside the servers until the drain: store health, usage
//! flushing, and reloads of route rules and signing keys.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::domain::pace::spread_over;
use crate::domain::resolver::KeyResolver;
use crate::domain::services::Services;
use crate::domain::tokens::TokenManager;
use crate::domain::usage::UsageRecorder;
use crate::grpc;
use crate::http::Readiness;
use crate::ports::Store;
use crate::telemetry::metrics::{StoreOp, metrics};

pub(super) async fn monitor_store(
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
        let started = std::time::Instant::now();
        let pinged =
            tokio::time::timeout(every.max(std::time::Duration::from_secs(1)), store.ping()).await;
        metrics().store_call(
            StoreOp::Ping,
            started.elapsed(),
            matches!(pinged, Ok(Ok(()))),
        );
        let ok = match pinged {
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
pub(super) async fn reload_routes_on_notice(
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

/// Writes the last-used times recorded since the last flush, spread over
/// `spread` until `drain` turns true (see [`UsageRecorder::flush`]).
pub(super) async fn flush_usage(
    store: &dyn Store,
    usage: &UsageRecorder,
    spread: Duration,
    drain: Option<watch::Receiver<bool>>,
) {
    let written = usage
        .flush(
            |slice: Vec<(String, crate::domain::model::Millis)>| async move {
                let started = std::time::Instant::now();
                let written = store.record_key_usage(&slice).await;
                metrics().store_call(StoreOp::RecordUsage, started.elapsed(), written.is_ok());
                written
            },
            spread,
            drain,
        )
        .await;
    if let Err((e, keys)) = written {
        tracing::warn!(error = %e, keys, "could not write last-used times; will retry");
    }
}

pub(super) async fn flush_usage_periodically(
    store: Arc<dyn Store>,
    usage: Arc<UsageRecorder>,
    every: std::time::Duration,
    mut drain: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every);
    // A flush that runs late (a slow database) can outlast the interval:
    // the next one starts a whole interval after it, not at once to catch up.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let drain = Some(drain.clone());
                flush_usage(store.as_ref(), &usage, spread_over(every), drain).await;
            }
            _ = drain.changed() => return,
        }
    }
}

/// Re-reads the signing keys now and then: another replica may have rotated,
/// and retired keys leave the JWKS once their tokens have expired. Every
/// hundredth round also prunes expired token rows.
pub(super) async fn reload_signing_keys(
    tokens: Arc<TokenManager>,
    mut drain: watch::Receiver<bool>,
) {
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

/// What other replicas' notices do here: drop cached keys, rebuild the route
/// matcher (the store's listener knows only the `Invalidations` port).
pub(super) struct ReplicaInvalidations {
    pub(super) resolver: Arc<KeyResolver>,
    pub(super) routes_changed: Arc<tokio::sync::Notify>,
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

/// Purges audit events past `audit.retention_days` and webhook deliveries
/// and events past `webhooks.retention_days`, in small batches (see
/// `AuditManager::purge_expired`, `WebhookManager::purge_expired`), once at
/// start and then every `every`.
pub(super) async fn purge_periodically(
    audit: Arc<crate::domain::audit::AuditManager>,
    webhooks: Arc<crate::domain::webhooks::WebhookManager>,
    every: std::time::Duration,
    mut drain: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                match audit.purge_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(events = n, "purged audit events past their retention"),
                    Err(e) => tracing::warn!(error = %e, "audit events could not be purged; will retry"),
                }
                match webhooks.purge_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rows = n, "purged webhook deliveries and events past their retention"),
                    Err(e) => tracing::warn!(error = %e, "webhook deliveries could not be purged; will retry"),
                }
            }
            _ = drain.changed() => return,
        }
    }
}

/// The webhook delivery worker: a round every `every`, and at once again
/// while rounds come back full.
pub(super) async fn deliver_webhooks(
    webhooks: Arc<crate::domain::webhooks::WebhookManager>,
    every: std::time::Duration,
    mut drain: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = ticker.tick() => loop {
                match webhooks.deliver_due().await {
                    // A full lease: more are due; no waiting for the tick.
                    Ok(n) if n as u64 >= crate::domain::webhooks::deliver::BATCH => {
                        if *drain.borrow() {
                            return;
                        }
                    }
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook deliveries failed this round; will retry");
                        break;
                    }
                }
            },
            _ = drain.changed() => return,
        }
    }
}

/// `key.expiring` / `key.expired`: a pass at once and then every `every`.
/// Every replica runs it; each notice's claim lets only one send it.
pub(super) async fn announce_key_expiry(
    notices: Arc<crate::domain::keys::expiry::ExpiryNotices>,
    every: std::time::Duration,
    mut drain: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = ticker.tick() => match notices.run().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(notices = n, "key expiry notices sent"),
                Err(e) => tracing::warn!(error = %e, "key expiry notices failed this pass; will retry"),
            },
            _ = drain.changed() => return,
        }
    }
}
