//! What the domain needs from the outside world: a store and a clock.

pub mod audit_scope;
mod consent;
mod key_expiry;

pub use consent::ConsentStore;
pub use key_expiry::{ExpiryCursor, KeyExpiryStore, KeyNotice};

use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;

use crate::domain::model::{
    Account, AuthCodeRecord, ClientRecord, ConnectionTestRecord, IntegrationFilter,
    IntegrationRecord, KeyRecord, KeyStatus, Millis, Mode, ProbeError, ProbeRequest, ProbeResponse,
    RefreshRecord, RevealRecord, RuleRecord, SecretVersionRecord, SigningKeyRecord,
    SigningSecretRecord,
};
use crate::domain::model::{
    AttemptOutcome, DeliveryRecord, DeliveryStatus, DueDelivery, EndpointRecord,
    EndpointSecretRecord, OutboxEvent, WebhookPost,
};
use crate::domain::model::{AuditCursor, AuditEvent, AuditFilter};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// An optimistic-concurrency check failed: the stored version moved on.
    #[error("the record was changed concurrently")]
    Conflict,
    /// An insert met a unique value that is taken (a record with this id,
    /// name or hash exists already). Not a concurrency conflict.
    #[error("the record exists already")]
    AlreadyExists,
    /// The database could not be reached.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Internal(String),
}

#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    pub account_id: Option<String>,
    pub mode: Option<Mode>,
    pub status: Option<KeyStatus>,
}

/// Persistence for accounts and keys. Every mutating method is one transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn ping(&self) -> Result<(), StoreError>;

    async fn insert_account(&self, account: &Account) -> Result<(), StoreError>;
    async fn get_account(&self, id: &str) -> Result<Option<Account>, StoreError>;
    /// Tenant accounts ordered by id, after `after`; the operator account is not listed.
    async fn list_accounts(
        &self,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<Account>, StoreError>;
    /// Writes `account`, whose `version` is one more than the stored one; `Conflict` otherwise.
    async fn update_account(&self, account: &Account) -> Result<(), StoreError>;
    /// Gives a store to an account; `AlreadyExists` if the store belongs to any account already.
    async fn add_store(
        &self,
        account_id: &str,
        store_id: &str,
        now: Millis,
    ) -> Result<(), StoreError>;
    /// `false` if the store did not belong to the account.
    async fn remove_store(&self, account_id: &str, store_id: &str) -> Result<bool, StoreError>;

    async fn insert_key(&self, key: &KeyRecord) -> Result<(), StoreError>;
    async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError>;
    async fn list_keys(
        &self,
        filter: &KeyFilter,
        now: Millis,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<KeyRecord>, StoreError>;
    /// Writes `key`, whose `version` is one more than the stored one; `Conflict` otherwise.
    /// Tells other replicas to drop the key from their caches.
    async fn update_key(&self, key: &KeyRecord) -> Result<(), StoreError>;
    /// Updates `old` (as `update_key`) and inserts `successor`, atomically;
    /// `predecessor` (`old`'s own predecessor, its overlap ended) is
    /// updated in the same transaction.
    async fn rotate_key(
        &self,
        old: &KeyRecord,
        successor: &KeyRecord,
        predecessor: Option<&KeyRecord>,
    ) -> Result<(), StoreError>;
    /// The key with this secret hash and its account.
    async fn find_key_by_hash(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<(KeyRecord, Account)>, StoreError>;
    /// `find_key_by_hash` for many hashes: one answer each, in order (one
    /// statement in the SQL store; a failed statement fails every hash).
    async fn find_keys_by_hashes(
        &self,
        hashes: &[[u8; 32]],
    ) -> Vec<Result<Option<(KeyRecord, Account)>, StoreError>> {
        let mut found = Vec::with_capacity(hashes.len());
        for hash in hashes {
            found.push(self.find_key_by_hash(hash).await);
        }
        found
    }
    /// Batched last-used times; never moves a time backwards.
    async fn record_key_usage(&self, used: &[(String, Millis)]) -> Result<(), StoreError>;

    /// Inserts a route rule and tells every replica to rebuild its matcher.
    async fn insert_rule(&self, rule: &RuleRecord) -> Result<(), StoreError>;
    /// Rules ordered by id, after `after`.
    async fn list_rules(
        &self,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<RuleRecord>, StoreError>;
    /// Every rule, for building the matcher.
    async fn all_rules(&self) -> Result<Vec<RuleRecord>, StoreError>;
    /// `false` if there was no such rule.
    async fn delete_rule(&self, id: &str) -> Result<bool, StoreError>;

    async fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores `value` under `name` unless a value is there already; `false` then.
    async fn insert_meta(&self, name: &str, value: &[u8]) -> Result<bool, StoreError>;
}

/// What the store's cross-replica notification listener tells this process:
/// implemented by the composition root over the caches it built, so the store
/// knows no domain service.
pub trait Invalidations: Send + Sync + 'static {
    /// Another replica changed the key with this secret hash.
    fn key(&self, hash: &[u8; 32]);
    /// Every cached key may be stale (an account changed, or notices were missed).
    fn all_keys(&self);
    /// The route rules changed.
    fn routes(&self);
}

/// Time, as a parameter: tests step it instead of sleeping.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Millis;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one reader of the wall clock
    fn now(&self) -> Millis {
        // A clock before 1970 reads as 0, which only makes keys look expired.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: Millis) -> Self {
        Self(AtomicI64::new(start))
    }

    pub fn advance_secs(&self, secs: i64) {
        self.0.fetch_add(secs * 1000, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

/// Persistence for OAuth2 clients, tokens and JWT signing keys.
#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// Is the store known to be down (its circuit open until the health
    /// loop reaches it again)? A cheap, lock-free read and no I/O: what the
    /// token endpoint asks before minting from a cached client, so that a
    /// known-down store is a 503 at once rather than a token.
    fn known_down(&self) -> bool;

    /// Every signing key, retired ones included.
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;
    /// Retires every active key at `key.created_at` and inserts `key` as the active one.
    async fn rotate_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError>;
    /// Inserts `key` only if there is no active key yet; `false` then.
    async fn insert_first_signing_key(&self, key: &SigningKeyRecord) -> Result<bool, StoreError>;

    async fn insert_client(&self, client: &ClientRecord) -> Result<(), StoreError>;
    async fn get_client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError>;
    /// Clients ordered by id, after `after`.
    async fn list_clients(
        &self,
        account_id: Option<&str>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<ClientRecord>, StoreError>;
    /// Deletes the client and revokes every refresh token it holds; `false` if there was none.
    async fn delete_client(&self, client_id: &str, now: Millis) -> Result<bool, StoreError>;

    async fn insert_code(&self, code: &AuthCodeRecord) -> Result<(), StoreError>;
    /// Marks the code used at `now`, only if it was issued to `client_id`
    /// (another client's attempt consumes nothing). The record, and whether
    /// this call was the one that used it (exactly one caller ever gets `true`).
    async fn use_code(
        &self,
        code_hash: &[u8; 32],
        client_id: &str,
        now: Millis,
    ) -> Result<Option<(AuthCodeRecord, bool)>, StoreError>;
    /// Notes that a used code was presented again.
    async fn mark_code_replayed(&self, code_hash: &[u8; 32], now: Millis)
    -> Result<(), StoreError>;
    /// Has the code been presented again since it was used?
    async fn code_replayed(&self, code_hash: &[u8; 32]) -> Result<bool, StoreError>;

    async fn insert_refresh(&self, token: &RefreshRecord) -> Result<(), StoreError>;
    async fn get_refresh(&self, token_hash: &[u8; 32])
    -> Result<Option<RefreshRecord>, StoreError>;
    /// Marks `old` rotated at `successor.created_at` and inserts `successor`,
    /// only if `old` was still current; `false` (and nothing written) otherwise.
    async fn rotate_refresh(
        &self,
        old: &[u8; 32],
        successor: &RefreshRecord,
    ) -> Result<bool, StoreError>;
    /// Revokes every refresh token of the family and every access token issued with them.
    async fn revoke_family(&self, family_id: &str, now: Millis) -> Result<(), StoreError>;
    /// Revokes one refresh token (not its family) and the access token issued with it.
    async fn revoke_refresh(&self, token_hash: &[u8; 32], now: Millis) -> Result<(), StoreError>;
    /// Revokes every refresh token issued to an exchanged API key.
    async fn revoke_holder(&self, holder_id: &str, now: Millis) -> Result<(), StoreError>;

    async fn revoke_jti(&self, jti: &str, expires_at: Millis) -> Result<(), StoreError>;
    async fn is_revoked(&self, jti: &str) -> Result<bool, StoreError>;
    /// Deletes codes, refresh tokens and revocations that expired before
    /// `before`; how many rows went.
    async fn prune_tokens(&self, before: Millis) -> Result<u64, StoreError>;
}

/// Persistence for signing secrets (`domain::signing`). Separate from
/// [`Store`] so that features can grow without one trait owning everything.
#[async_trait]
pub trait SigningStore: Send + Sync + 'static {
    async fn insert_signing_secret(
        &self,
        secret: &SigningSecretRecord,
        first: &SecretVersionRecord,
    ) -> Result<(), StoreError>;
    /// The secret and its versions, newest first.
    async fn get_signing_secret(
        &self,
        id: &str,
    ) -> Result<Option<(SigningSecretRecord, Vec<SecretVersionRecord>)>, StoreError>;
    /// Secrets ordered by id, after `after`.
    async fn list_signing_secrets(
        &self,
        account_id: Option<&str>,
        mode: Option<Mode>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<SigningSecretRecord>, StoreError>;
    /// Atomically: retires the version before `updated.current_version` (at
    /// `retired_at`, active until `overlap_ends_at`), inserts `new`, and
    /// writes `updated` — only if the stored secret is active and still at the
    /// previous version; `Conflict` otherwise.
    async fn rotate_signing_secret(
        &self,
        updated: &SigningSecretRecord,
        retired_at: Millis,
        overlap_ends_at: Millis,
        new: &SecretVersionRecord,
    ) -> Result<(), StoreError>;
    /// `false` if there is no such secret.
    async fn revoke_signing_secret(&self, id: &str, now: Millis) -> Result<bool, StoreError>;
    /// Sets the secret's signed-URL form (all its versions); `false` if
    /// there is no such secret.
    async fn set_signing_secret_url_form(
        &self,
        id: &str,
        form: crate::domain::model::UrlForm,
        now: Millis,
    ) -> Result<bool, StoreError>;
}

/// Persistence for one-time reveal links (`domain::reveal`).
#[async_trait]
pub trait RevealStore: Send + Sync + 'static {
    /// Also deletes reveals that expired before `record.created_at`.
    async fn insert_reveal(&self, record: &RevealRecord) -> Result<(), StoreError>;
    /// Deletes and returns the unexpired reveal with this hash, in one
    /// conditional statement: of concurrent callers, exactly one gets it.
    async fn take_reveal(
        &self,
        token_hash: &[u8; 32],
        now: Millis,
    ) -> Result<Option<RevealRecord>, StoreError>;
}

/// Where a value sealed under the master key lives. The domain derives the
/// value's associated data from it, so the store needs no crypto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealedSlot {
    /// `meta.value` (the master-key canary, shared secrets such as the CSRF key).
    Meta { name: String },
    /// `signing_keys.private_sealed`.
    SigningKey { kid: String },
    /// `signing_secret_versions.sealed`.
    SigningSecretVersion { secret_id: String, version: i64 },
    /// `reveals.sealed`.
    Reveal { token_hash: [u8; 32] },
    /// `integrations.sealed_credentials`.
    Integration { id: String },
    /// `webhook_secrets.sealed`: one version of an endpoint's signing secret.
    WebhookSecret { endpoint_id: String, version: i64 },
}

impl SealedSlot {
    /// The table it lives in, for reports.
    pub fn table(&self) -> &'static str {
        match self {
            Self::Meta { .. } => "meta",
            Self::SigningKey { .. } => "signing_keys",
            Self::SigningSecretVersion { .. } => "signing_secret_versions",
            Self::Reveal { .. } => "reveals",
            Self::Integration { .. } => "integrations",
            Self::WebhookSecret { .. } => "webhook_secrets",
        }
    }
}

/// One sealed value and where it lives.
#[derive(Clone)]
pub struct SealedValue {
    pub slot: SealedSlot,
    pub sealed: Vec<u8>,
}

/// Every value sealed under the master key, whatever table holds it: what
/// master-key rotation and the start-up key check walk.
#[async_trait]
pub trait SealedStore: Send + Sync + 'static {
    /// Up to `limit` sealed values after `after` (the last slot of the
    /// previous page), in one fixed order across every table.
    async fn sealed_values(
        &self,
        after: Option<&SealedSlot>,
        limit: u64,
    ) -> Result<Vec<SealedValue>, StoreError>;
    /// Writes `new` in place of `old`, only if the slot still holds `old`;
    /// `false` (and nothing written) if it changed or is gone.
    async fn replace_sealed(
        &self,
        slot: &SealedSlot,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError>;
}

/// Persistence for integrations and their connection tests (`domain::vault`).
#[async_trait]
pub trait IntegrationStore: Send + Sync + 'static {
    async fn insert_integration(&self, record: &IntegrationRecord) -> Result<(), StoreError>;
    async fn get_integration(&self, id: &str) -> Result<Option<IntegrationRecord>, StoreError>;
    /// Ordered by id, after `after`.
    async fn list_integrations(
        &self,
        filter: &IntegrationFilter,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<IntegrationRecord>, StoreError>;
    /// Writes `record`, whose `version` is one more than the stored one; `Conflict` otherwise.
    async fn update_integration(&self, record: &IntegrationRecord) -> Result<(), StoreError>;
    /// Deletes it and its connection tests; `false` if there was none.
    async fn delete_integration(&self, id: &str) -> Result<bool, StoreError>;
    /// Records a test, and deletes every test recorded before `keep_after`.
    async fn insert_connection_test(
        &self,
        test: &ConnectionTestRecord,
        keep_after: Millis,
    ) -> Result<(), StoreError>;
    /// Newest first.
    async fn list_connection_tests(
        &self,
        integration_id: &str,
        limit: u64,
    ) -> Result<Vec<ConnectionTestRecord>, StoreError>;
}

/// The outbound HTTPS client of connection tests: enforces the outbound
/// safety rule (https only; no loopback, private, link-local or metadata
/// address after DNS resolution, unless configured for tests), follows no
/// redirects and reads a bounded body.
#[async_trait]
pub trait RemoteProbe: Send + Sync + 'static {
    async fn get(&self, request: &ProbeRequest) -> Result<ProbeResponse, ProbeError>;
}

/// The audit trail (`domain::audit`). A mutation's own event is not written
/// through here: the store writes it in the mutation's transaction (see
/// `ports::audit_scope`). This is for batches of aggregated outcomes,
/// for reading, and for retention.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Appends `events` in one short transaction of their own.
    async fn append_batch(&self, events: Vec<AuditEvent>) -> Result<(), StoreError>;
    async fn get_event(&self, id: &str) -> Result<Option<AuditEvent>, StoreError>;
    /// Newest first (time, then id, descending), strictly before `before`.
    async fn list_events(
        &self,
        filter: &AuditFilter,
        before: Option<&AuditCursor>,
        limit: u64,
    ) -> Result<Vec<AuditEvent>, StoreError>;
    /// Deletes up to `limit` of the oldest events with `time < before`, in
    /// one transaction; how many went.
    async fn purge_events(&self, before: Millis, limit: u64) -> Result<u64, StoreError>;
}

// ---- Usage analytics, outcome events and the least-privilege advisor ----

/// One aggregated usage count: per minute, key, permission, outcome (the
/// reason code, `ALLOWED` for an allow) and source country (empty = unknown).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsageRow {
    /// Start of the minute (or of the bucket, in a series).
    pub minute: Millis,
    pub key_id: String,
    pub account_id: String,
    pub mode: Mode,
    pub permission: String,
    pub outcome: String,
    pub country: String,
    pub count: i64,
}

/// Which usage a series covers.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    pub key_id: Option<String>,
    pub account_id: Option<String>,
    /// Inclusive.
    pub from: Millis,
    /// Exclusive.
    pub to: Millis,
    /// Bucket width: 60 000, 3 600 000 or 86 400 000.
    pub bucket_ms: i64,
}

/// Where a key has been seen from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountrySighting {
    pub country: String,
    pub last_seen: Millis,
    /// The day (days since the epoch) an unusual-location event was last sent.
    pub alerted_day: Option<i64>,
}

/// Usage analytics: per-minute counts, written in batches by the outcome
/// worker and read by `UsageService` and the advisor.
#[async_trait]
pub trait UsageStore: Send + Sync + 'static {
    /// Adds the counts (rows for the same minute, key, permission, outcome
    /// and country add up), all or nothing.
    async fn add_usage(&self, rows: &[UsageRow]) -> Result<(), StoreError>;
    /// Counts summed per bucket, key, permission, outcome and country;
    /// ordered by bucket; at most `limit` rows.
    async fn usage_series(&self, q: &UsageQuery, limit: u64) -> Result<Vec<UsageRow>, StoreError>;
    /// Deletes at most `batch` rows older than `before`; how many it deleted.
    async fn purge_usage(&self, before: Millis, batch: u64) -> Result<u64, StoreError>;
    /// Each permission the key was allowed, with the start of the last minute it was.
    async fn exercised(&self, key_id: &str) -> Result<Vec<(String, Millis)>, StoreError>;
    /// Every permission any key was allowed since `since`.
    async fn permissions_seen(&self, since: Millis) -> Result<Vec<String>, StoreError>;
    async fn key_countries(&self, key_id: &str) -> Result<Vec<CountrySighting>, StoreError>;
    /// Notes that `key_id` was seen from `country` at `seen_at` (a later
    /// time wins). With `alert_day` (days since the epoch), also claims that
    /// day's unusual-location event: `true` only for the one caller (of any
    /// replica) that claimed it.
    async fn note_country(
        &self,
        key_id: &str,
        country: &str,
        seen_at: Millis,
        alert_day: Option<i64>,
    ) -> Result<bool, StoreError>;
    /// Marks that `scope.unused` was sent for the key; `false` if it had been already.
    async fn mark_scope_unused(&self, key_id: &str, at: Millis) -> Result<bool, StoreError>;
}

/// An aggregated denial: what the audit trail stores (outcome `denied`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenialEvent {
    /// Start of the minute.
    pub minute: Millis,
    pub account_id: Option<String>,
    pub mode: Option<Mode>,
    /// `key`, or `credential` for an unknown one (then `target_id` is the
    /// first 8 hex digits of its SHA-256), or `none` when none was presented.
    pub target_type: &'static str,
    pub target_id: Option<String>,
    pub reason: &'static str,
    pub client_ip: Option<std::net::IpAddr>,
    pub count: i64,
}

/// An event for webhook subscribers (`auth.failed`, `rate_limit.exceeded`,
/// `auth.unusual_location`, `scope.unused`) or the audit trail's own note of dropped outcomes.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedEvent {
    pub event_type: &'static str,
    pub time: Millis,
    pub account_id: Option<String>,
    pub mode: Option<Mode>,
    pub target_type: &'static str,
    pub target_id: Option<String>,
    /// The event's data; never a secret, hash or ciphertext.
    pub data: serde_json::Value,
}

/// Where aggregated outcomes go: the audit trail and the webhook outbox.
#[async_trait]
pub trait OutcomeEvents: Send + Sync + 'static {
    /// Appends aggregated denials to the audit trail, in one short transaction.
    async fn record_denials(&self, events: &[DenialEvent]) -> Result<(), StoreError>;
    /// Records the events and queues them for webhook delivery.
    async fn publish(&self, events: &[PublishedEvent]) -> Result<(), StoreError>;
    /// Notes in the audit trail that `count` outcomes were dropped (the
    /// buffer was full) up to `at`.
    async fn record_dropped(&self, at: Millis, count: i64) -> Result<(), StoreError>;
}

/// Country of an address, from a MaxMind-format database.
pub trait GeoLookup: Send + Sync + 'static {
    /// ISO 3166-1 alpha-2 code, `None` when the address is not in the database.
    fn country(&self, ip: std::net::IpAddr) -> Option<String>;
}

/// Event webhooks (`domain::webhooks`): endpoints, the durable outbox and
/// deliveries. Events announcing a change are written by the change's own
/// commit (`ports::audit_scope::emit`); [`WebhookStore::enqueue`] is for
/// events standing alone (aggregated ones).
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Appends events to the outbox in one short transaction of their own.
    async fn enqueue(&self, events: Vec<OutboxEvent>) -> Result<(), StoreError>;
    async fn insert_endpoint(
        &self,
        endpoint: &EndpointRecord,
        secret: &EndpointSecretRecord,
    ) -> Result<(), StoreError>;
    /// The endpoint and its secret versions, newest first.
    async fn get_endpoint(
        &self,
        id: &str,
    ) -> Result<Option<(EndpointRecord, Vec<EndpointSecretRecord>)>, StoreError>;
    /// Ordered by id, after `after`; `account_id` narrows when given.
    async fn list_endpoints(
        &self,
        account_id: Option<&str>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<EndpointRecord>, StoreError>;
    /// Writes `endpoint`, whose `version` is one more than the stored one; `Conflict` otherwise.
    async fn update_endpoint(&self, endpoint: &EndpointRecord) -> Result<(), StoreError>;
    /// Deletes it, its secrets and its deliveries; `false` if there was none.
    async fn delete_endpoint(&self, id: &str) -> Result<bool, StoreError>;
    /// Inserts `new` and ends every older version at `old_until`.
    async fn rotate_endpoint_secret(
        &self,
        new: &EndpointSecretRecord,
        old_until: Millis,
    ) -> Result<(), StoreError>;
    /// Fans up to `limit` undispatched outbox events out into one delivery
    /// per subscribed endpoint, due at `now`; how many events.
    async fn dispatch_events(&self, now: Millis, limit: u64) -> Result<u64, StoreError>;
    /// Leases up to `limit` due deliveries until `lease_until` (on
    /// PostgreSQL with `FOR UPDATE SKIP LOCKED`, so replicas never lease one
    /// twice), with what sending them needs.
    async fn lease_deliveries(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: u64,
    ) -> Result<Vec<DueDelivery>, StoreError>;
    /// Records a group of finished attempts, `(delivery id, outcome)`, in one transaction, releasing their leases.
    async fn finish_deliveries(&self, done: &[(String, AttemptOutcome)]) -> Result<(), StoreError>;
    /// Notes a success (clears `failing_since`) or a failure (sets it if
    /// unset); a failing run that began before `disable_before` disables
    /// the endpoint: `true` then (once).
    async fn endpoint_result(
        &self,
        endpoint_id: &str,
        ok: bool,
        now: Millis,
        disable_before: Millis,
    ) -> Result<bool, StoreError>;
    /// Newest first, after `after` (a delivery id).
    async fn list_deliveries(
        &self,
        endpoint_id: &str,
        status: Option<DeliveryStatus>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;
    /// Makes a delivery due again at `now`; `false` if there is none.
    async fn retry_delivery(&self, id: &str, now: Millis) -> Result<bool, StoreError>;
    /// Deletes, in one transaction, up to `limit` of the oldest finished
    /// (succeeded or failed) deliveries last updated before `before`, then
    /// up to `limit` of the oldest dispatched outbox events created before
    /// `before` that no delivery refers to any more (a pending one keeps its
    /// event, whatever its age); how many rows went, of both.
    async fn purge_webhooks(&self, before: Millis, limit: u64) -> Result<u64, StoreError>;
    /// Writes `event` for `delivery`'s endpoint alone (no fan-out) with that
    /// delivery, in one transaction; `false` if the endpoint is gone.
    async fn enqueue_to(
        &self,
        event: &OutboxEvent,
        delivery: &DeliveryRecord,
    ) -> Result<bool, StoreError>;
}

/// The outbound side of webhook deliveries: the same safety rule as
/// [`RemoteProbe`] (https only; no loopback, private, link-local or metadata
/// address after DNS resolution unless configured for tests; no redirects;
/// a bounded body), for POSTs.
#[async_trait]
pub trait WebhookSender: Send + Sync + 'static {
    /// Refuses a URL whose host is not a public address (creation-time check).
    async fn vet(&self, url: &str) -> Result<(), ProbeError>;
    async fn post(&self, post: &WebhookPost) -> Result<ProbeResponse, ProbeError>;
}
