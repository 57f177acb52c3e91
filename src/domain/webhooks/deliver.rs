//! The delivery worker: fans outbox events out, leases due deliveries,
//! POSTs them signed, and reschedules failures with exponential backoff and
//! jitter on the `Clock` (tests step it). At least once: a delivery is
//! marked done only after the receiver's 2xx, and a lease that a crashed
//! process held runs out and is taken again; `webhook-id` stays the event's.

use futures::StreamExt;

use super::WebhookManager;
use super::sign;
use crate::domain::error::Result;
use crate::domain::model::{
    AttemptOutcome, DeliveryStatus, DueDelivery, Millis, OutboxEvent, ProbeError, WebhookPost,
};

/// Seconds to wait after the n-th failed attempt (the first is at once).
pub const BACKOFF_SECS: [i64; 7] = [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000];
/// An endpoint failing this long is disabled.
pub const DISABLE_AFTER_MS: Millis = 5 * 86_400_000;
/// How long a lease holds: past it, a crashed holder's delivery is taken again.
const LEASE_MS: Millis = 60_000;
/// Deliveries leased per round; a full round is followed by another at once.
pub const BATCH: u64 = 256;
const CONCURRENCY: usize = 64;
const MAX_EXCERPT: usize = 1024;
/// Rows of each kind per purge transaction.
pub const PURGE_BATCH: u64 = 500;
const DAY_MS: Millis = 86_400_000;

/// `secs`, ±10 %.
fn jittered(secs: i64) -> Millis {
    let mut b = [0u8; 2];
    let r = if getrandom::fill(&mut b).is_ok() {
        i64::from(u16::from_le_bytes(b))
    } else {
        32_768
    };
    // r / 65535 in [0, 1] → factor in [0.9, 1.1]
    secs * 1000 * (900 + r * 200 / 65_535) / 1000
}

/// What the attempt-th failed attempt (1-based) leads to.
pub fn after_failure(attempts: i64, now: Millis) -> (DeliveryStatus, Millis) {
    match usize::try_from(attempts - 1)
        .ok()
        .and_then(|i| BACKOFF_SECS.get(i))
    {
        Some(&secs) => (DeliveryStatus::Pending, now + jittered(secs)),
        None => (DeliveryStatus::Failed, now),
    }
}

impl WebhookManager {
    /// Deletes finished deliveries last updated before the retention
    /// window, and dispatched events older than it that no delivery refers
    /// to any more, a batch per transaction, oldest first (a pending
    /// delivery, however old, keeps itself and its event). How many rows
    /// went.
    pub async fn purge_expired(&self) -> Result<u64> {
        let cutoff = self
            .clock
            .now()
            .saturating_sub(i64::from(self.retention_days).saturating_mul(DAY_MS));
        let mut total = 0;
        loop {
            let gone = self.store.purge_webhooks(cutoff, PURGE_BATCH).await?;
            total += gone;
            if gone == 0 {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }

    /// One round: fan out, lease, deliver. How many deliveries were attempted.
    pub async fn deliver_due(&self) -> Result<usize> {
        let now = self.clock.now();
        while self.store.dispatch_events(now, BATCH).await? == BATCH {}
        let due = self
            .store
            .lease_deliveries(now, now + LEASE_MS, BATCH)
            .await?;
        let n = due.len();
        // Attempts are recorded as they finish, a group at a time (one
        // transaction each), not when the whole round is done: a slow
        // endpoint holding the round open would otherwise let the others'
        // leases run out and their deliveries be sent twice.
        let mut finished = futures::stream::iter(due)
            .map(|d| self.attempt(d))
            .buffer_unordered(CONCURRENCY)
            .ready_chunks(CONCURRENCY);
        while let Some(group) = finished.next().await {
            self.record(&group).await;
        }
        Ok(n)
    }

    /// Writes a group of finished attempts in one transaction, then each
    /// endpoint's failure run.
    async fn record(&self, group: &[(DueDelivery, bool, AttemptOutcome)]) {
        let done: Vec<(String, AttemptOutcome)> = group
            .iter()
            .map(|(d, _, o)| (d.delivery.id.clone(), o.clone()))
            .collect();
        if let Err(e) = self.store.finish_deliveries(&done).await {
            // The leases run out and the deliveries are tried again: at least once.
            tracing::warn!(deliveries = group.len(), error = %e, "could not record webhook attempts");
            return;
        }
        for (d, ok, o) in group {
            self.note_health(d, *ok, o.at).await;
        }
    }

    /// Sends one delivery; what happened, recorded by the caller with the others that finish with it.
    async fn attempt(&self, d: DueDelivery) -> (DueDelivery, bool, AttemptOutcome) {
        let now = self.clock.now();
        let mut secrets = Vec::with_capacity(d.secrets.len());
        for s in d
            .secrets
            .iter()
            .filter(|s| s.expires_at.is_none_or(|t| t > now))
        {
            match self.open_secret(s) {
                Ok(plain) => secrets.push(plain),
                Err(e) => tracing::error!(
                    endpoint_id = %d.endpoint.id,
                    version = s.version,
                    error = %e,
                    "a webhook signing secret does not open"
                ),
            }
        }
        let plain: Vec<&str> = secrets.iter().map(|s| s.expose().as_str()).collect();
        let body = d.event.body().into_bytes();
        let post = WebhookPost {
            url: d.endpoint.url.clone(),
            headers: sign::headers(
                d.endpoint.format,
                &d.event.id,
                now.div_euclid(1000),
                &body,
                &plain,
            ),
            body,
        };
        let attempts = d.delivery.attempts + 1;
        // Nothing goes out unsigned: with no secret to sign with, the
        // attempt fails here and is retried like any other failure.
        let result = if plain.is_empty() {
            Err(ProbeError::Refused(
                "no signing secret of the endpoint could be opened; nothing was sent".to_owned(),
            ))
        } else {
            self.sender.post(&post).await
        };
        let done = self.clock.now();
        let (ok, outcome) = match result {
            Ok(r) if (200..300).contains(&r.status) => (
                true,
                AttemptOutcome {
                    status: DeliveryStatus::Succeeded,
                    attempts,
                    next_attempt_at: done,
                    last_status: Some(i32::from(r.status)),
                    last_error: None,
                    response_excerpt: Some(excerpt(&r.body)),
                    at: done,
                },
            ),
            other => {
                let (status, next) = after_failure(attempts, done);
                let (last_status, last_error, body) = match other {
                    Ok(r) => (Some(i32::from(r.status)), None, Some(excerpt(&r.body))),
                    Err(e) => (None, Some(e.to_string()), None),
                };
                (
                    false,
                    AttemptOutcome {
                        status,
                        attempts,
                        next_attempt_at: next,
                        last_status,
                        last_error,
                        response_excerpt: body,
                        at: done,
                    },
                )
            }
        };
        (d, ok, outcome)
    }

    /// Keeps the endpoint's failure run: cleared by a success, disabling it
    /// after [`DISABLE_AFTER_MS`] of failures.
    async fn note_health(&self, d: &DueDelivery, ok: bool, done: Millis) {
        if ok && d.endpoint.failing_since.is_none() {
            // Healthy when leased and healthy now: nothing to write.
            return;
        }
        match self
            .store
            .endpoint_result(&d.endpoint.id, ok, done, done - DISABLE_AFTER_MS)
            .await
        {
            Ok(true) => {
                tracing::warn!(endpoint_id = %d.endpoint.id, "webhook endpoint disabled after 5 days of failures");
                let event = OutboxEvent::new(
                    done,
                    "endpoint.disabled",
                    d.endpoint.account_id.as_deref(),
                    None,
                    serde_json::json!({ "id": d.endpoint.id, "url": d.endpoint.url }),
                );
                if let Err(e) = self.store.enqueue(vec![event]).await {
                    tracing::warn!(error = %e, "could not announce a disabled endpoint");
                }
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(endpoint_id = %d.endpoint.id, error = %e, "could not record endpoint health")
            }
        }
    }
}

/// The response body as text, cut at [`MAX_EXCERPT`] bytes.
fn excerpt(body: &[u8]) -> String {
    let cut = &body[..body.len().min(MAX_EXCERPT)];
    String::from_utf8_lossy(cut).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_then_gives_up() {
        let (s, next) = after_failure(1, 0);
        assert_eq!(s, DeliveryStatus::Pending);
        assert!((4_500..=5_500).contains(&next), "{next}");
        let (_, next) = after_failure(2, 0);
        assert!((270_000..=330_000).contains(&next), "{next}");
        assert_eq!(after_failure(8, 0).0, DeliveryStatus::Failed);
    }
}
