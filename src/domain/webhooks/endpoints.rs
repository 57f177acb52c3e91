//! Endpoints: creation (the URL checked against the outbound safety rule,
//! after DNS), listing, deletion and secret rotation with an overlap.

use super::{WebhookManager, sign};
use crate::crypto::secret::Secret;
use crate::domain::audit::{self, Change};
use crate::domain::error::{Error, Result};
use crate::domain::model::{
    EndpointRecord, EndpointSecretRecord, ProbeError, SignatureFormat, WEBHOOK_ENDPOINT_ID_PREFIX,
    is_webhook_event_type, new_id,
};

const MAX_URL_LEN: usize = 2048;
const MAX_DESCRIPTION: usize = 500;

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
        if let Some(bad) = new.event_types.iter().find(|t| !is_webhook_event_type(t)) {
            return Err(Error::invalid(
                "event_types",
                format!("`{bad}` is not a webhook event type"),
            ));
        }
        if new.description.chars().count() > MAX_DESCRIPTION {
            return Err(Error::invalid(
                "description",
                format!("must be at most {MAX_DESCRIPTION} characters"),
            ));
        }
        let now = self.clock.now();
        let mut event_types = new.event_types;
        event_types.sort();
        event_types.dedup();
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

    pub async fn retry_delivery(&self, id: &str) -> Result<()> {
        if !self.store.retry_delivery(id, self.clock.now()).await? {
            return Err(Error::not_found("webhook delivery", id));
        }
        Ok(())
    }
}
