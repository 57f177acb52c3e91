//! The audit trail: every mutation's event (staged through
//! `ports::audit_scope` and written by the store in the mutation's
//! transaction), aggregated
//! authentication outcomes (appended in batches by the outcome recorder),
//! reading them back, and retention.

use std::sync::Arc;

use crate::domain::error::{Error, Result};
use crate::domain::model::{AuditCursor, AuditEvent, AuditFilter, Millis};
use crate::ports::{AuditStore, Clock};

pub use crate::ports::audit_scope::{Caller, Change, record, scope, scope_or_system, set_caller};

const DAY_MS: Millis = 86_400_000;
/// Rows one purge statement deletes: short transactions that never hold
/// many locks, so a purge never stalls the mutations writing beside it.
pub const PURGE_BATCH: u64 = 500;

pub struct AuditManager {
    store: Arc<dyn AuditStore>,
    clock: Arc<dyn Clock>,
    retention_days: u32,
}

impl AuditManager {
    pub fn new(store: Arc<dyn AuditStore>, clock: Arc<dyn Clock>, retention_days: u32) -> Self {
        Self {
            store,
            clock,
            retention_days,
        }
    }

    /// Appends aggregated events (outcomes) in one short transaction of their own.
    pub async fn append_batch(&self, events: Vec<AuditEvent>) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        Ok(self.store.append_batch(events).await?)
    }

    pub async fn get(&self, id: &str) -> Result<AuditEvent> {
        self.store
            .get_event(id)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: "audit event",
                id: id.to_owned(),
            })
    }

    /// Newest first; `limit` rows at most, strictly before `before`.
    pub async fn list(
        &self,
        filter: &AuditFilter,
        before: Option<&AuditCursor>,
        limit: u64,
    ) -> Result<Vec<AuditEvent>> {
        Ok(self.store.list_events(filter, before, limit).await?)
    }

    /// Events older than this are purged.
    pub fn cutoff(&self) -> Millis {
        self.clock
            .now()
            .saturating_sub(i64::from(self.retention_days).saturating_mul(DAY_MS))
    }

    /// Deletes every event older than the retention window, [`PURGE_BATCH`]
    /// rows per statement, oldest first: a crash mid-purge has deleted only
    /// whole batches of expired events, and the next run goes on from there.
    /// How many went.
    pub async fn purge_expired(&self) -> Result<u64> {
        let cutoff = self.cutoff();
        let mut total = 0;
        loop {
            let deleted = self.store.purge_events(cutoff, PURGE_BATCH).await?;
            total += deleted;
            if deleted < PURGE_BATCH {
                return Ok(total);
            }
            // Let the writers in between batches.
            tokio::task::yield_now().await;
        }
    }
}
