//! Where the outcome worker's events go: aggregated denials into the audit
//! trail (outcome `denied`, action `auth.denied`), and subscriber events
//! (`auth.failed`, `auth.unusual_location`, `scope.unused`) into the audit
//! trail and the webhook outbox.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::audit::AuditManager;
use crate::domain::error::Error;
use crate::domain::model::{AuditEvent, AuditOutcome, Millis, SYSTEM_ACTOR};
use crate::ports::{DenialEvent, OutcomeEvents, PublishedEvent, StoreError};

pub struct AuditedEvents {
    pub audit: Arc<AuditManager>,
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
