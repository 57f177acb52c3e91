//! Usage analytics' parts and tasks: the outcome recorder, worker and
//! advisor built from `[usage]`/`[geoip]`, the flush loop beside the
//! servers, the maintenance loop (retention purge, unused-scope scan), and
//! the last flush at shutdown.

use std::sync::Arc;

use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use super::AppError;
use crate::config::Settings;
use crate::domain::advisor::Advisor;
use crate::domain::analytics::Analytics;
use crate::domain::audit::AuditManager;
use crate::domain::outcomes::{AuditedEvents, OutcomeRecorder, OutcomeWorker, WorkerDeps};
use crate::domain::pace::spread_over;
use crate::domain::permissions::Policy;
use crate::domain::usage_reports::UsageReports;
use crate::domain::webhooks::WebhookManager;
use crate::geoip::MaxMindCountries;
use crate::ports::{Clock, GeoLookup, OutcomeEvents, Store, UsageStore};

pub(super) fn analytics(
    settings: &Settings,
    keys: Arc<dyn Store>,
    store: Arc<impl UsageStore>,
    (audit, webhooks): (Arc<AuditManager>, Arc<WebhookManager>),
    policy: Arc<Policy>,
    clock: Arc<dyn Clock>,
) -> Result<Arc<Analytics>, AppError> {
    let u = &settings.usage;
    let geo: Option<Arc<dyn GeoLookup>> = match &u.geoip_database {
        Some(path) => Some(Arc::new(
            MaxMindCountries::open(path).map_err(AppError::Server)?,
        )),
        None => None,
    };
    let store: Arc<dyn UsageStore> = store;
    let events: Arc<dyn OutcomeEvents> = Arc::new(AuditedEvents { audit, webhooks });
    Ok(Arc::new(Analytics {
        recorder: u
            .record_outcomes
            .then(|| Arc::new(OutcomeRecorder::new(u.buffer_capacity))),
        reports: UsageReports::new(store.clone(), clock.clone(), u.retention_days),
        advisor: Advisor {
            keys,
            usage: store.clone(),
            events: events.clone(),
            policy,
            clock,
            window_days: u.advice_window_days,
        },
        store,
        events,
        geo,
    }))
}

/// How often the outcome ring is emptied into the aggregates.
const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// The running outcome worker and maintenance loop.
pub(super) struct OutcomeTasks {
    worker: Option<Arc<Mutex<OutcomeWorker>>>,
    flush: Option<JoinHandle<()>>,
    maintenance: JoinHandle<()>,
}

pub(super) fn spawn(
    analytics: &Arc<Analytics>,
    settings: &Settings,
    clock: Arc<dyn Clock>,
    drain: &watch::Receiver<bool>,
) -> OutcomeTasks {
    let u = &settings.usage;
    let worker = analytics.recorder.as_ref().map(|recorder| {
        Arc::new(Mutex::new(OutcomeWorker::new(WorkerDeps {
            recorder: recorder.clone(),
            usage: analytics.store.clone(),
            events: analytics.events.clone(),
            geo: analytics.geo.clone(),
            clock,
            max_groups: u.max_groups,
            location_window_days: u.location_window_days,
            auth_failed_every_ms: i64::try_from(u.auth_failed_throttle.as_millis())
                .unwrap_or(i64::MAX),
            usage_spread: spread_over(settings.usage_flush_interval),
            drain: Some(drain.clone()),
        })))
    });
    let flush = worker.clone().map(|worker| {
        let every = settings.usage_flush_interval;
        let mut drain = drain.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.tick().await;
            // The ring is emptied into the aggregates more often than they
            // are written: at 10,000 Checks a second a 32,768-slot ring
            // filled (and dropped outcomes) between two 5 s flushes.
            let mut emptier = tokio::time::interval(every.min(DRAIN_EVERY));
            emptier.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            emptier.tick().await;
            loop {
                tokio::select! {
                    _ = ticker.tick() => worker.lock().await.flush(false).await,
                    _ = emptier.tick() => worker.lock().await.drain().await,
                    _ = drain.changed() => return,
                }
            }
        })
    });
    let maintenance = {
        let analytics = analytics.clone();
        let every = u.maintenance_interval;
        let mut drain = drain.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = ticker.tick() => maintain(&analytics).await,
                    _ = drain.changed() => return,
                }
            }
        })
    };
    OutcomeTasks {
        worker,
        flush,
        maintenance,
    }
}

async fn maintain(analytics: &Analytics) {
    match analytics.reports.purge().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(rows = n, "purged usage past its retention"),
        Err(e) => tracing::warn!(error = %e, "usage retention purge failed; will retry"),
    }
    match analytics.advisor.scan_unused().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(keys = n, "scope.unused sent"),
        Err(e) => tracing::warn!(error = %e, "unused-scope scan failed; will retry"),
    }
}

impl OutcomeTasks {
    /// After the drain: the loops end, then every buffered outcome is written.
    pub(super) async fn finish(self) {
        if let Some(flush) = self.flush {
            let _ = flush.await;
        }
        let _ = self.maintenance.await;
        if let Some(worker) = self.worker {
            worker.lock().await.flush(true).await;
        }
    }
}
