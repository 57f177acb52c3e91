//! Event webhooks: endpoints (`endpoints.rs`), Standard Webhooks and seed
//! signatures (`sign.rs`), and the delivery worker (`deliver.rs`) that
//! drains the durable outbox with retries.
//!
//! Events enter the outbox two ways, both durable:
//! - a change's own event, in the change's transaction: the domain's
//!   `audit::record` of a subscribed action stages it automatically, and
//!   `ports::audit_scope::emit` stages any other inside a call's scope;
//! - events standing alone (aggregated `auth.failed`, `scope.unused`,
//!   `auth.unusual_location`): [`WebhookManager::enqueue`], its own short
//!   transaction.

use std::sync::Arc;

use crate::domain::error::{Error, Result};
use crate::domain::model::{OutboxEvent, is_webhook_event_type};
use crate::ports::WebhookStore;

pub struct WebhookManager {
    store: Arc<dyn WebhookStore>,
}

impl WebhookManager {
    pub fn new(store: Arc<dyn WebhookStore>) -> Self {
        Self { store }
    }

    /// Appends events to the outbox in one transaction of their own; the
    /// delivery worker sends each to every subscribed endpoint. Never waits
    /// on a delivery.
    pub async fn enqueue(&self, events: Vec<OutboxEvent>) -> Result<()> {
        if let Some(bad) = events
            .iter()
            .find(|e| !is_webhook_event_type(&e.event_type))
        {
            return Err(Error::invalid(
                "event_type",
                format!("`{}` is not a webhook event type", bad.event_type),
            ));
        }
        Ok(self.store.enqueue(events).await?)
    }
}
