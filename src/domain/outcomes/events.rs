//! Where the outcome worker's events go: aggregated denials into the audit
//! trail (outcome `denied`, action `auth.denied`), and subscriber events
//! (`auth.failed`, `auth.unusual_location`, `scope.unused`) into the
//! webhook outbox (its own short transaction; delivery never waits on it,
//! nor it on delivery) and then the audit trail.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::audit::AuditManager;
use crate::domain::error::Error;
use crate::domain::model::{AuditEvent, AuditOutcome, Millis, OutboxEvent, SYSTEM_ACTOR};
use crate::domain::webhooks::WebhookManager;
use crate::ports::{DenialEvent, OutcomeEvents, PublishedEvent, StoreError};

pub struct AuditedEvents {
    pub audit: Arc<AuditManager>,
    pub webhooks: Arc<WebhookManager>,
}

fn store_error(e: Error) -> StoreError {
    match e {
        Error::Store(e) => e,
        other => StoreError::Internal(other.to_string()),
    }
}

fn denial(e: &DenialEvent) -> AuditEvent {
    AuditEvent {
        outcome: AuditOutcome::Denied,
        account_id: e.account_id.clone(),
        mode: e.mode.map(|m| m.tag().to_owned()),
        target_id: e.target_id.clone(),
        summary: serde_json::json!({ "reason": e.reason }).to_string(),
        client_ip: e.client_ip.map(|ip| ip.to_string()),
        count: e.count,
        ..AuditEvent::new(e.minute, SYSTEM_ACTOR, "auth.denied", e.target_type)
    }
}

fn published(e: &PublishedEvent) -> AuditEvent {
    let outcome = if e.event_type.starts_with("auth.") {
        AuditOutcome::Denied
    } else {
        AuditOutcome::Success
    };
    AuditEvent {
        outcome,
        account_id: e.account_id.clone(),
        mode: e.mode.map(|m| m.tag().to_owned()),
        target_id: e.target_id.clone(),
        summary: e.data.to_string(),
        count: e.data["count"].as_i64().unwrap_or(1),
        ..AuditEvent::new(e.time, SYSTEM_ACTOR, e.event_type, e.target_type)
    }
}

#[async_trait]
impl OutcomeEvents for AuditedEvents {
    async fn record_denials(&self, events: &[DenialEvent]) -> Result<(), StoreError> {
        let rows = events.iter().map(denial).collect();
        self.audit.append_batch(rows).await.map_err(store_error)
    }

    async fn publish(&self, events: &[PublishedEvent]) -> Result<(), StoreError> {
        let outbox = events
            .iter()
            .map(|e| {
                OutboxEvent::new(
                    e.time,
                    e.event_type,
                    e.account_id.as_deref(),
                    e.mode.map(|m| m.tag()),
                    e.data.clone(),
                )
            })
            .collect();
        self.webhooks.enqueue(outbox).await.map_err(store_error)?;
        let rows = events.iter().map(published).collect();
        self.audit.append_batch(rows).await.map_err(store_error)
    }

    async fn record_dropped(&self, at: Millis, count: i64) -> Result<(), StoreError> {
        let event = AuditEvent {
            count,
            summary: serde_json::json!({ "dropped": count, "why": "the outcome buffer was full" })
                .to_string(),
            ..AuditEvent::new(at, SYSTEM_ACTOR, "audit.outcomes_dropped", "outcomes")
        };
        self.audit
            .append_batch(vec![event])
            .await
            .map_err(store_error)
    }
}
