//! Master-key rotation (DESIGN.md §6): which key each sealed value is under,
//! and re-sealing them under the newest key in small batches, beside a
//! running service. Every batch is its own set of compare-and-swap writes,
//! so a rotation killed at any point leaves each value whole under one key or
//! the other, and running it again carries on where it stopped.

use std::collections::BTreeMap;

use crate::crypto::envelope::{EnvelopeError, KeyId, MasterKey, SealedBy};
use crate::domain::model::{
    integration_context, reveal_context, signing_key_context, version_context,
    webhook_secret_context,
};
use crate::ports::{SealedSlot, SealedStore, SealedValue, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error(
        "only one master key is configured: put the new key first in LATCHKEY_MASTER_KEYS, \
         followed by the current one"
    )]
    NoNewKey,
    #[error("{count} stored value(s) are sealed under master key {key}, which is not configured")]
    MissingKey { key: KeyId, count: u64 },
    #[error(
        "{count} stored value(s) in the old layout (no key id) open under none of the \
         configured master keys"
    )]
    UnopenedLegacy { count: u64 },
    #[error("{table} value does not open: {error}")]
    Open {
        table: &'static str,
        error: EnvelopeError,
    },
}

/// The associated data a slot's value was sealed with: the same strings the
/// owning modules use.
pub fn context(slot: &SealedSlot) -> Vec<u8> {
    match slot {
        SealedSlot::Meta { name } => name.as_bytes().to_vec(),
        SealedSlot::SigningKey { kid } => signing_key_context(kid).into_bytes(),
        SealedSlot::SigningSecretVersion { secret_id, version } => {
            version_context(secret_id, *version).into_bytes()
        }
        SealedSlot::Reveal { token_hash } => reveal_context(token_hash).into_bytes(),
        SealedSlot::Integration { id } => integration_context(id).into_bytes(),
        SealedSlot::WebhookSecret {
            endpoint_id,
            version,
        } => webhook_secret_context(endpoint_id, *version).into_bytes(),
    }
}

/// How many stored values each master key holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Census {
    /// Values per key (configured or not), by the id in their header or, for
    /// old-layout values, by the configured key that opens them.
    pub per_key: BTreeMap<KeyId, u64>,
    /// Old-layout values no configured key opens.
    pub unopened_legacy: u64,
    pub total: u64,
}

impl Census {
    /// The first problem that must stop the service: a value whose key is
    /// not configured.
    pub fn check(&self, keys: &MasterKey) -> Result<(), RotationError> {
        if let Some((key, count)) = self.per_key.iter().find(|(id, _)| !keys.holds(**id)) {
            return Err(RotationError::MissingKey {
                key: *key,
                count: *count,
            });
        }
        if self.unopened_legacy > 0 {
            return Err(RotationError::UnopenedLegacy {
                count: self.unopened_legacy,
            });
        }
        Ok(())
    }

    /// Values not yet under the newest key.
    pub fn outstanding(&self, keys: &MasterKey) -> u64 {
        self.total - self.per_key.get(&keys.newest()).copied().unwrap_or(0)
    }

    fn count(&mut self, keys: &MasterKey, value: &SealedValue) {
        self.total += 1;
        match SealedBy::of(&value.sealed) {
            Ok(SealedBy::Key(id)) => *self.per_key.entry(id).or_default() += 1,
            // Malformed values are counted with the unopened ones: no key holds them.
            Ok(SealedBy::Unnamed) | Err(_) => {
                match keys.open_with_id(&value.sealed, &context(&value.slot)) {
                    Ok((_, id)) => *self.per_key.entry(id).or_default() += 1,
                    Err(_) => self.unopened_legacy += 1,
                }
            }
        }
    }
}

/// Counts every sealed value by key, `batch` rows at a time.
pub async fn census(
    store: &dyn SealedStore,
    keys: &MasterKey,
    batch: u64,
) -> Result<Census, RotationError> {
    let mut census = Census::default();
    let mut after: Option<SealedSlot> = None;
    loop {
        let page = store.sealed_values(after.as_ref(), batch.max(1)).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.slot.clone());
        for value in &page {
            census.count(keys, value);
        }
    }
    Ok(census)
}

/// What one batch of a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Where the next batch starts; `None` when every table is done.
    pub next: Option<SealedSlot>,
    /// Values re-sealed under the newest key in this batch.
    pub resealed: u64,
    /// Values that changed while we looked (re-sealed by the service since,
    /// or deleted): they need nothing.
    pub skipped: u64,
}

/// Refuses to rotate with only one key: there is nothing to rotate to.
pub fn ready_to_rotate(keys: &MasterKey) -> Result<(), RotationError> {
    if keys.ids().len() < 2 {
        return Err(RotationError::NoNewKey);
    }
    Ok(())
}

/// Re-seals under the newest key the values of the next `limit` slots after
/// `after`. Values already under the newest key are left as they are.
pub async fn rotate_batch(
    store: &dyn SealedStore,
    keys: &MasterKey,
    after: Option<&SealedSlot>,
    limit: u64,
) -> Result<Batch, RotationError> {
    let page = store.sealed_values(after, limit.max(1)).await?;
    let mut batch = Batch {
        next: page.last().map(|v| v.slot.clone()),
        resealed: 0,
        skipped: 0,
    };
    for value in &page {
        let fresh = keys
            .reseal(&value.sealed, &context(&value.slot))
            .map_err(|error| RotationError::Open {
                table: value.slot.table(),
                error,
            })?;
        let Some(fresh) = fresh else { continue };
        if store
            .replace_sealed(&value.slot, &value.sealed, &fresh)
            .await?
        {
            batch.resealed += 1;
        } else {
            batch.skipped += 1;
        }
    }
    Ok(batch)
}
