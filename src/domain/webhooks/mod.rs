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

pub mod deliver;
mod endpoints;
pub mod sign;

use std::sync::Arc;

use crate::crypto::envelope::MasterKey;
use crate::crypto::secret::Secret;
use crate::domain::error::{Error, Result};
use crate::domain::model::{
    EndpointSecretRecord, OutboxEvent, is_webhook_event_type, webhook_secret_context,
};
use crate::ports::{Clock, Store, WebhookSender, WebhookStore};

pub use endpoints::{DEFAULT_OVERLAP_SECS, EndpointChange, NewEndpoint};

pub struct WebhookDeps {
    pub store: Arc<dyn WebhookStore>,
    /// Accounts, to refuse an endpoint for one that does not exist.
    pub accounts: Arc<dyn Store>,
    pub sender: Arc<dyn WebhookSender>,
    pub master_key: Arc<MasterKey>,
    pub clock: Arc<dyn Clock>,
    /// `webhooks.allow_insecure_targets`: http and private targets (tests only).
    pub allow_insecure_targets: bool,
    /// `webhooks.retention_days`: finished deliveries and their events are
    /// kept this long.
    pub retention_days: u32,
}

pub struct WebhookManager {
    store: Arc<dyn WebhookStore>,
    accounts: Arc<dyn Store>,
    sender: Arc<dyn WebhookSender>,
    master_key: Arc<MasterKey>,
    clock: Arc<dyn Clock>,
    allow_insecure: bool,
    retention_days: u32,
}

impl WebhookManager {
    pub fn new(deps: WebhookDeps) -> Self {
        Self {
            store: deps.store,
            accounts: deps.accounts,
            sender: deps.sender,
            master_key: deps.master_key,
            clock: deps.clock,
            allow_insecure: deps.allow_insecure_targets,
            retention_days: deps.retention_days,
        }
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

    fn seal_secret(
        &self,
        endpoint_id: &str,
        version: i64,
        secret: &Secret<String>,
    ) -> Result<Vec<u8>> {
        self.master_key
            .seal(
                secret.expose().as_bytes(),
                webhook_secret_context(endpoint_id, version).as_bytes(),
            )
            .map_err(|e| Error::internal("sealing a webhook secret", e))
    }

    fn open_secret(&self, s: &EndpointSecretRecord) -> Result<Secret<String>> {
        let plain = self
            .master_key
            .open(
                &s.sealed,
                webhook_secret_context(&s.endpoint_id, s.version).as_bytes(),
            )
            .map_err(|e| Error::internal("opening a webhook secret", e))?;
        String::from_utf8(plain.to_vec())
            .map(Secret::new)
            .map_err(|e| Error::internal("opening a webhook secret", e))
    }
}
