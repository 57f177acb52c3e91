//! The key-expiry job's port (`domain::keys::expiry`), split out of
//! `ports.rs`, which stays under the layer rule's 400 lines.

use async_trait::async_trait;

use crate::domain::model::{KeyRecord, Millis};
use crate::ports::StoreError;

/// One notice about a key's expiry: `key.expiring` `threshold_days` before
/// it, or `key.expired` (`threshold_days` 0) once it has passed. Sent once
/// per (key, threshold, expiry): a key whose expiry is moved is told again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyNotice {
    pub key_id: String,
    pub threshold_days: i64,
    pub expires_at: Millis,
    pub sent_at: Millis,
}

/// Where a scan of keys near their expiry has got to: the last key's
/// (expiry, id).
pub type ExpiryCursor = (Millis, String);

#[async_trait]
pub trait KeyExpiryStore: Send + Sync + 'static {
    /// Keys stored as active and not rotated away (no successor), whose
    /// expiry lies in `(from, to]`, that have had no notice for
    /// `threshold_days` and that expiry; by (expiry, id), after `after`; at
    /// most `limit`. Reads an index on (status, expiry), never every key.
    async fn keys_due_notice(
        &self,
        threshold_days: i64,
        from: Millis,
        to: Millis,
        after: Option<&ExpiryCursor>,
        limit: u64,
    ) -> Result<Vec<KeyRecord>, StoreError>;
    /// Inserts the notice and, in the same transaction, what the current
    /// audit scope has staged (its audit event and outbox event). `false`,
    /// and nothing written, when the notice exists already: another replica
    /// sent it. Replicas racing for one notice: exactly one gets `true`.
    async fn claim_key_notice(&self, notice: &KeyNotice) -> Result<bool, StoreError>;
    /// Deletes up to `limit` notices about expiries before `before` (no scan
    /// reaches back that far any more); how many went.
    async fn prune_key_notices(&self, before: Millis, limit: u64) -> Result<u64, StoreError>;
}
