//! Event webhooks: endpoints, the durable outbox of events, deliveries.

use super::Millis;

pub const WEBHOOK_EVENT_ID_PREFIX: &str = "msg";
pub const WEBHOOK_ENDPOINT_ID_PREFIX: &str = "whe";
pub const WEBHOOK_DELIVERY_ID_PREFIX: &str = "dlv";

/// Every event type an endpoint may subscribe to (issue 16, item 2).
pub const WEBHOOK_EVENT_TYPES: [&str; 19] = [
    "key.created",
    "key.rotated",
    "key.revoked",
    "key.suspended",
    "key.resumed",
    "key.expiring",
    "key.expired",
    "key.auto_suspended",
    "auth.failed",
    "auth.unusual_location",
    "scope.unused",
    "client.created",
    "client.deleted",
    "secret.rotated",
    "live_mode.requested",
    "live_mode.reviewed",
    "rate_limit.exceeded",
    "endpoint.disabled",
    "webhook.test",
];

/// Associated data of an endpoint's sealed signing secret (one per version):
/// a ciphertext moved to another row does not open there.
pub fn webhook_secret_context(endpoint_id: &str, version: i64) -> String {
    format!("webhook_secrets:{endpoint_id}:{version}")
}

pub fn is_webhook_event_type(t: &str) -> bool {
    WEBHOOK_EVENT_TYPES.contains(&t)
}

/// One event in the outbox: written in the transaction of the change it
/// announces (or on its own, for aggregated ones), delivered at least once
/// to every endpoint subscribed to it. `id` is the `webhook-id` receivers
/// de-duplicate on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// `msg_<UUIDv7>`.
    pub id: String,
    /// One of [`WEBHOOK_EVENT_TYPES`].
    pub event_type: String,
    /// `None` = an operator-wide event (only operator-wide endpoints get it).
    pub account_id: Option<String>,
    pub mode: Option<String>,
    /// The `data` object of the delivered body (JSON); never a secret.
    pub data: String,
    pub created_at: Millis,
}

impl OutboxEvent {
    pub fn new(
        created_at: Millis,
        event_type: &str,
        account_id: Option<&str>,
        mode: Option<&str>,
        data: serde_json::Value,
    ) -> Self {
        Self {
            id: super::new_id(WEBHOOK_EVENT_ID_PREFIX),
            event_type: event_type.to_owned(),
            account_id: account_id.map(str::to_owned),
            mode: mode.map(str::to_owned),
            data: data.to_string(),
            created_at,
        }
    }

    /// The body POSTed: `{"type", "timestamp", "data"}` (Standard Webhooks' shape).
    pub fn body(&self) -> String {
        let data: serde_json::Value =
            serde_json::from_str(&self.data).unwrap_or(serde_json::Value::Null);
        serde_json::json!({
            "id": self.id,
            "type": self.event_type,
            "timestamp": self.created_at,
            "account_id": self.account_id,
            "mode": self.mode,
            "data": data,
        })
        .to_string()
    }
}

/// How deliveries to an endpoint are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureFormat {
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`,
    /// `webhook-signature: v1,<base64>`; secret `whsec_<base64>`.
    Standard,
    /// The seed format: `X-Webhook-Signature: t=<secs>,v1=<hex>` over `"<t>.<body>"`.
    Seed,
}

impl SignatureFormat {
    pub fn tag(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Seed => "seed",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Self> {
        match tag {
            "standard" => Some(Self::Standard),
            "seed" => Some(Self::Seed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRecord {
    pub id: String,
    pub account_id: Option<String>,
    pub url: String,
    /// Empty = every event type.
    pub event_types: Vec<String>,
    pub description: String,
    pub format: SignatureFormat,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// When the current run of failures began; `None` while deliveries succeed.
    pub failing_since: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub version: i64,
}

impl EndpointRecord {
    pub fn wants(&self, event: &OutboxEvent) -> bool {
        self.enabled
            && (self.account_id.is_none() || self.account_id == event.account_id)
            && (self.event_types.is_empty() || self.event_types.contains(&event.event_type))
    }
}

/// One version of an endpoint's signing secret, sealed under the master key.
#[derive(Clone, PartialEq, Eq)]
pub struct EndpointSecretRecord {
    pub endpoint_id: String,
    pub version: i64,
    pub sealed: Vec<u8>,
    pub created_at: Millis,
    /// After a rotation the old version signs beside the new one until then.
    pub expires_at: Option<Millis>,
}

impl std::fmt::Debug for EndpointSecretRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointSecretRecord")
            .field("endpoint_id", &self.endpoint_id)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Failed,
}

impl DeliveryStatus {
    pub fn tag(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Self> {
        match tag {
            "pending" => Some(Self::Pending),
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: String,
    pub event_id: String,
    /// The event's type (`key.created`, `webhook.test`, …).
    pub event_type: String,
    pub endpoint_id: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: Millis,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    /// The response body, truncated.
    pub response_excerpt: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A leased delivery with what sending it needs.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub delivery: DeliveryRecord,
    pub event: OutboxEvent,
    pub endpoint: EndpointRecord,
    pub secrets: Vec<EndpointSecretRecord>,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutcome {
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: Millis,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub response_excerpt: Option<String>,
    pub at: Millis,
}

/// One outbound POST of a delivery.
#[derive(Clone)]
pub struct WebhookPost {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for WebhookPost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Signatures are not secrets, but nothing here needs logging whole.
        f.debug_struct("WebhookPost")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}
