//! Endpoints: creation (the URL checked against the outbound safety rule,
//! after DNS), reading, updates (re-enabling), deletion, secret rotation
//! with an overlap, and test events for one endpoint.

use super::{WebhookManager, sign};
use crate::crypto::secret::Secret;
use crate::domain::audit::{self, Change};
use crate::domain::error::{Error, Result};
use crate::domain::model::{
    DeliveryRecord, DeliveryStatus, EndpointRecord, EndpointSecretRecord, OutboxEvent, ProbeError,
    SignatureFormat, WEBHOOK_DELIVERY_ID_PREFIX, WEBHOOK_ENDPOINT_ID_PREFIX, is_webhook_event_type,
    new_id,
};

const MAX_URL_LEN: usize = 2048;
const MAX_DESCRIPTION: usize = 500;
/// How long the previous secrets keep signing after a rotation, unless told.
pub const DEFAULT_OVERLAP_SECS: i64 = 86_400;
/// The type of [`WebhookManager::send_test_event`]'s events.
pub const TEST_EVENT_TYPE: &str = "webhook.test";

#[derive(Debug, Clone)]
pub struct NewEndpoint {
    /// `None` = operator-wide (every account's events).
    pub account_id: Option<String>,
    pub url: String,
    /// Empty = every event type.
    pub event_types: Vec<String>,
    pub description: String,
    pub format: SignatureFormat,
}

/// What `update_endpoint` changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    /// Replaces the list; empty = every event type.
    pub event_types: Option<Vec<String>>,
    pub description: Option<String>,
    /// `true` re-enables (and forgets the failing run); `false` disables.
    pub enabled: Option<bool>,
}

fn check_event_types(mut types: Vec<String>) -> Result<Vec<String>> {
    if let Some(bad) = types.iter().find(|t| !is_webhook_event_type(t)) {
        return Err(Error::invalid(
            "event_types",
            format!("`{bad}` is not a webhook event type"),
        ));
    }
    types.sort();
    types.dedup();
    Ok(types)
}

fn check_description(d: &str) -> Result<()> {
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(Error::invalid(
            "description",
            format!("must be at most {MAX_DESCRIPTION} characters"),
        ));
    }
    Ok(())
}

impl WebhookManager {
    async fn check_url(&self, url: &str) -> Result<String> {
        if url.is_empty() {
            return Err(Error::invalid("url", "is required"));
        }
        if url.len() > MAX_URL_LEN {
            return Err(Error::invalid(
                "url",
                format!("must be at most {MAX_URL_LEN} bytes"),
            ));
        }
        let parsed = url::Url::parse(url)
            .map_err(|e| Error::invalid("url", format!("is not a URL: {e}")))?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_insecure => {}
            _ => return Err(Error::invalid("url", "must be an https:// URL")),
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(Error::invalid("url", "must not carry user info"));
        }
        match self.sender.vet(url).await {
            Ok(()) => Ok(parsed.to_string()),
            Err(ProbeError::Refused(why)) => Err(Error::invalid("url", why)),
            Err(ProbeError::Failed { message, .. }) => Err(Error::invalid("url", message)),
        }
    }

    /// A new endpoint and its signing secret (shown this once).
    pub async fn create_endpoint(
        &self,
        new: NewEndpoint,
    ) -> Result<(EndpointRecord, Secret<String>)> {
        let url = self.check_url(&new.url).await?;
        let event_types = check_event_types(new.event_types)?;
        check_description(&new.description)?;
        if let Some(account_id) = &new.account_id
            && self.accounts.get_account(account_id).await?.is_none()
        {
            return Err(Error::not_found("account", account_id));
        }
        let now = self.clock.now();
        let endpoint = EndpointRecord {
            id: new_id(WEBHOOK_ENDPOINT_ID_PREFIX),
            account_id: new.account_id,
            url,
            event_types,
            description: new.description,
            format: new.format,
            enabled: true,
            disabled_reason: None,
            failing_since: None,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let secret =
            sign::new_secret().map_err(|e| Error::internal("generating a webhook secret", e))?;
        let record = EndpointSecretRecord {
            endpoint_id: endpoint.id.clone(),
            version: 1,
            sealed: self.seal_secret(&endpoint.id, 1, &secret)?,
            created_at: now,
            expires_at: None,
        };
        let mut change = Change::new("webhook_endpoint.created", "webhook_endpoint", &endpoint.id)
            .summary(serde_json::json!({
                "url": endpoint.url,
                "event_types": endpoint.event_types,
                "format": endpoint.format.tag(),
            }));
        if let Some(a) = &endpoint.account_id {
            change = change.account(a);
        }
        audit::record(now, change);
        self.store.insert_endpoint(&endpoint, &record).await?;
        Ok((endpoint, secret))
    }

    /// A new secret; the previous ones keep signing beside it for
    /// `overlap_secs` (Stripe's rolling secrets).
    pub async fn rotate_secret(&self, id: &str, overlap_secs: i64) -> Result<Secret<String>> {
        if !(0..=7 * 86_400).contains(&overlap_secs) {
            return Err(Error::invalid(
                "overlap_seconds",
                "must be between 0 and 604800",
            ));
        }
        let (_, secrets) = self
            .store
            .get_endpoint(id)
            .await?
            .ok_or_else(|| Error::not_found("webhook endpoint", id))?;
        let now = self.clock.now();
        let version = secrets.iter().map(|s| s.version).max().unwrap_or(0) + 1;
        let secret =
            sign::new_secret().map_err(|e| Error::internal("generating a webhook secret", e))?;
        let record = EndpointSecretRecord {
            endpoint_id: id.to_owned(),
            version,
            sealed: self.seal_secret(id, version, &secret)?,
            created_at: now,
            expires_at: None,
        };
        audit::record(
            now,
            Change::new("webhook_endpoint.secret_rotated", "webhook_endpoint", id)
                .summary(serde_json::json!({ "version": version })),
        );
        self.store
            .rotate_endpoint_secret(&record, now + overlap_secs * 1000)
            .await?;
        Ok(secret)
    }

    pub async fn delete_endpoint(&self, id: &str) -> Result<()> {
        audit::record(
            self.clock.now(),
            Change::new("webhook_endpoint.deleted", "webhook_endpoint", id),
        );
        if !self.store.delete_endpoint(id).await? {
            return Err(Error::not_found("webhook endpoint", id));
        }
        Ok(())
    }

    pub async fn list_endpoints(
        &self,
        account_id: Option<&str>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<EndpointRecord>> {
        Ok(self.store.list_endpoints(account_id, after, limit).await?)
    }

    pub async fn list_deliveries(
        &self,
        endpoint_id: &str,
        status: Option<crate::domain::model::DeliveryStatus>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<crate::domain::model::DeliveryRecord>> {
        Ok(self
            .store
            .list_deliveries(endpoint_id, status, after, limit)
            .await?)
    }

    /// The endpoint and its secret versions (sealed; newest first).
    pub async fn get_endpoint(
        &self,
        id: &str,
    ) -> Result<(EndpointRecord, Vec<EndpointSecretRecord>)> {
        self.store
            .get_endpoint(id)
            .await?
            .ok_or_else(|| Error::not_found("webhook endpoint", id))
    }

    /// Applies `change`: a new URL is checked like a new endpoint's;
    /// re-enabling clears the reason and the failing run, so the 5-day
    /// count starts afresh.
    pub async fn update_endpoint(
        &self,
        id: &str,
        change: EndpointChange,
    ) -> Result<EndpointRecord> {
        let url = match &change.url {
            Some(u) => Some(self.check_url(u).await?),
            None => None,
        };
        let event_types = change.event_types.map(check_event_types).transpose()?;
        if let Some(d) = &change.description {
            check_description(d)?;
        }
        let (old, _) = self.get_endpoint(id).await?;
        let now = self.clock.now();
        let mut new = old.clone();
        let mut summary = serde_json::Map::new();
        if let Some(url) = url {
            summary.insert("url".into(), url.clone().into());
            new.url = url;
        }
        if let Some(types) = event_types {
            summary.insert("event_types".into(), types.clone().into());
            new.event_types = types;
        }
        if let Some(d) = change.description {
            summary.insert("description".into(), d.clone().into());
            new.description = d;
        }
        if let Some(enabled) = change.enabled {
            summary.insert("enabled".into(), enabled.into());
            if enabled && !old.enabled {
                new.disabled_reason = None;
                new.failing_since = None;
            } else if !enabled && old.enabled {
                new.disabled_reason = Some("disabled by an operator".into());
            }
            new.enabled = enabled;
        }
        new.updated_at = now;
        new.version = old.version + 1;
        let mut change = Change::new("webhook_endpoint.updated", "webhook_endpoint", id)
            .summary(serde_json::Value::Object(summary));
        if let Some(a) = &new.account_id {
            change = change.account(a);
        }
        audit::record(now, change);
        self.store.update_endpoint(&new).await?;
        Ok(new)
    }

    /// Queues a `webhook.test` event for this endpoint alone; the worker
    /// signs and delivers it like any other. The event and its delivery.
    pub async fn send_test_event(
        &self,
        endpoint_id: &str,
    ) -> Result<(OutboxEvent, DeliveryRecord)> {
        let (endpoint, _) = self.get_endpoint(endpoint_id).await?;
        if !endpoint.enabled {
            return Err(Error::FailedPrecondition(format!(
                "webhook endpoint `{endpoint_id}` is disabled; enable it with UpdateEndpoint first"
            )));
        }
        let now = self.clock.now();
        let event = OutboxEvent::new(
            now,
            TEST_EVENT_TYPE,
            endpoint.account_id.as_deref(),
            None,
            serde_json::json!({
                "endpoint_id": endpoint.id,
                "message": "a test event from Latchkey",
            }),
        );
        let delivery = DeliveryRecord {
            id: new_id(WEBHOOK_DELIVERY_ID_PREFIX),
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            endpoint_id: endpoint.id.clone(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: now,
            last_status: None,
            last_error: None,
            response_excerpt: None,
            created_at: now,
            updated_at: now,
        };
        let mut change = Change::new(
            "webhook_endpoint.test_sent",
            "webhook_endpoint",
            endpoint_id,
        )
        .summary(serde_json::json!({ "event_id": event.id }));
        if let Some(a) = &endpoint.account_id {
            change = change.account(a);
        }
        audit::record(now, change);
        if !self.store.enqueue_to(&event, &delivery).await? {
            return Err(Error::not_found("webhook endpoint", endpoint_id));
        }
        Ok((event, delivery))
    }

    pub async fn retry_delivery(&self, id: &str) -> Result<()> {
        if !self.store.retry_delivery(id, self.clock.now()).await? {
            return Err(Error::not_found("webhook delivery", id));
        }
        Ok(())
    }
}
