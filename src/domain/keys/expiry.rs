//! `key.expiring` and `key.expired`: a job every replica runs. It scans, in
//! small batches by expiry (an index, never every key), the keys stored as
//! active and not rotated away whose expiry is within
//! `webhooks.key_expiring_days` (`key.expiring`, once per key and
//! threshold) or has just passed (`key.expired`, once), and sends each
//! notice through the outbox with its audit event (actor `system`). The
//! notice's row is claimed in the transaction that writes the event, so of
//! several replicas exactly one sends it, and a crash between the two sends
//! neither (the next pass does).
//!
//! Decided here: a key revoked or suspended before its expiry gets neither
//! event (it stopped working already; its revocation or suspension was the
//! news), nor does a rotated key (its successor carries the lifetime). A key
//! whose expiry is moved (`UpdateKey`) is told again about the new expiry.
//! A key that expired more than [`EXPIRED_LOOKBACK_MS`] before any replica
//! looked is not announced, so upgrading onto an old database does not send
//! a backlog of stale `key.expired`.

use std::sync::Arc;

use super::key_change;
use crate::domain::audit::{self, Caller};
use crate::domain::error::Result;
use crate::domain::model::{KeyRecord, Millis};
use crate::ports::{Clock, ExpiryCursor, KeyExpiryStore, KeyNotice};

const DAY_MS: Millis = 86_400_000;
/// Keys read per query.
const BATCH: u64 = 100;
/// How far back a pass looks for keys that expired unannounced.
pub const EXPIRED_LOOKBACK_MS: Millis = 7 * DAY_MS;

pub struct ExpiryNotices {
    store: Arc<dyn KeyExpiryStore>,
    clock: Arc<dyn Clock>,
    /// `key.expiring` this many days ahead; 0 sends none.
    expiring_days: i64,
}

impl ExpiryNotices {
    pub fn new(store: Arc<dyn KeyExpiryStore>, clock: Arc<dyn Clock>, expiring_days: u32) -> Self {
        Self {
            store,
            clock,
            expiring_days: i64::from(expiring_days),
        }
    }

    /// One pass: every notice due now that no replica has sent, then one
    /// batch of pruning. How many notices this instance sent.
    pub async fn run(&self) -> Result<usize> {
        let now = self.clock.now();
        let mut sent = 0;
        if self.expiring_days > 0 {
            let ahead = now + self.expiring_days * DAY_MS;
            sent += self.pass(self.expiring_days, now, ahead, now).await?;
        }
        sent += self.pass(0, now - EXPIRED_LOOKBACK_MS, now, now).await?;
        // Notices about expiries no pass reaches any more.
        self.store
            .prune_key_notices(now - EXPIRED_LOOKBACK_MS - DAY_MS, BATCH)
            .await?;
        Ok(sent)
    }

    async fn pass(&self, threshold: i64, from: Millis, to: Millis, now: Millis) -> Result<usize> {
        let mut after: Option<ExpiryCursor> = None;
        let mut sent = 0;
        loop {
            let page = self
                .store
                .keys_due_notice(threshold, from, to, after.as_ref(), BATCH)
                .await?;
            for key in &page {
                if self.send(key, threshold, now).await? {
                    sent += 1;
                }
            }
            if (page.len() as u64) < BATCH {
                return Ok(sent);
            }
            after = page.last().map(|k| (k.expires_at, k.id.clone()));
        }
    }

    /// Stages the event and its audit record in a scope of its own, which
    /// the claim commits, or drops when another replica was first.
    async fn send(&self, key: &KeyRecord, threshold: i64, now: Millis) -> Result<bool> {
        let (action, extra) = if threshold == 0 {
            ("key.expired", ("status", serde_json::json!("expired")))
        } else {
            (
                "key.expiring",
                ("expiring_days", serde_json::json!(threshold)),
            )
        };
        let mut change = key_change(action, key);
        if let Some(map) = change.summary.as_object_mut() {
            map.insert(extra.0.to_owned(), extra.1);
        }
        let notice = KeyNotice {
            key_id: key.id.clone(),
            threshold_days: threshold,
            expires_at: key.expires_at,
            sent_at: now,
        };
        let claimed = audit::scope(Caller::system(), async {
            audit::record(now, change);
            self.store.claim_key_notice(&notice).await
        })
        .await?;
        if claimed {
            tracing::info!(key_id = %key.id, event = action, "key expiry notice sent");
        }
        Ok(claimed)
    }
}
