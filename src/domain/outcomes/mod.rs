//! Authentication and authorization outcomes, recorded off the hot path.
//!
//! Every decision pushes one fixed-size [`Outcome`] into a bounded lock-free
//! ring ([`crossbeam_queue::ArrayQueue`], allocated once at start-up): the
//! decision never waits, takes no lock and allocates nothing (the key is an
//! `Arc` already held by the decision; the permission is copied into an
//! inline buffer). When the ring is full the outcome is dropped and counted;
//! the worker (`worker.rs`) reports drops as a metric and an audit event, so
//! a flood is never silent. The worker drains the ring into per-minute
//! aggregates (`aggregate.rs`): usage rows per key, permission, outcome and
//! country; denial events per key (or credential hash prefix), reason,
//! client address and minute; `auth.failed` per key and minute.

mod aggregate;
mod events;
mod worker;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;

use super::model::Millis;
use super::reason::Reason;
use super::resolver::ResolvedKey;
use crate::crypto;

pub use aggregate::{Aggregator, Closed, Sighting};
pub use events::AuditedEvents;
pub use worker::{OutcomeWorker, WorkerDeps};

/// Longest permission kept (the permission grammar's own limit).
const PERMISSION_BYTES: usize = 128;
/// Credentials longer than this are not hashed for their prefix: a flood of
/// huge garbage must not cost a hash of every byte.
const MAX_HASHED_CREDENTIAL: usize = 1024;

/// A permission copied inline, so that recording allocates nothing.
#[derive(Clone, Copy)]
pub struct PermissionText {
    len: u8,
    bytes: [u8; PERMISSION_BYTES],
}

impl PermissionText {
    fn new(s: &str) -> Self {
        let mut bytes = [0u8; PERMISSION_BYTES];
        // Permissions are ASCII and at most 128 bytes (`Permission::parse`);
        // anything longer is cut at a character boundary.
        let mut len = s.len().min(PERMISSION_BYTES);
        while !s.is_char_boundary(len) {
            len -= 1;
        }
        bytes[..len].copy_from_slice(&s.as_bytes()[..len]);
        Self {
            len: u8::try_from(len).unwrap_or(u8::MAX),
            bytes,
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

/// One decision, as recorded.
pub struct Outcome {
    /// The resolved key (or token principal), when the credential got that far.
    pub key: Option<Arc<ResolvedKey>>,
    /// No key: the first 4 bytes of the credential's SHA-256 (an unknown
    /// or malformed credential), `None` when no credential was presented.
    pub credential_prefix: Option<[u8; 4]>,
    pub permission: PermissionText,
    pub reason: Reason,
    pub client_ip: Option<IpAddr>,
    pub at: Millis,
}

/// How the recorder is sized; `usage.*` in the configuration.
#[derive(Debug, Clone, Copy)]
pub struct OutcomeSettings {
    /// Outcomes the ring holds between two drains.
    pub buffer_capacity: usize,
    /// Distinct aggregates held at once; beyond it outcomes are dropped (counted).
    pub max_groups: usize,
}

impl Default for OutcomeSettings {
    fn default() -> Self {
        Self {
            buffer_capacity: 32_768,
            max_groups: 100_000,
        }
    }
}

pub struct OutcomeRecorder {
    queue: ArrayQueue<Outcome>,
    dropped: AtomicU64,
    /// Kept for the metric: drops since start.
    dropped_total: AtomicU64,
}

impl std::fmt::Debug for OutcomeRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutcomeRecorder")
            .field("depth", &self.queue.len())
            .field("capacity", &self.queue.capacity())
            .finish()
    }
}

impl OutcomeRecorder {
    pub fn new(capacity: usize) -> Self {
        Self {
            queue: ArrayQueue::new(capacity.max(1)),
            dropped: AtomicU64::new(0),
            dropped_total: AtomicU64::new(0),
        }
    }

    /// Notes a decision: the key it resolved (if any), the credential as
    /// presented (hashed for its prefix only when no key was found), the
    /// permission asked for and the reason. Never blocks, never allocates;
    /// a full ring drops it (counted).
    pub fn record(
        &self,
        key: Option<&Arc<ResolvedKey>>,
        credential: &str,
        permission: &str,
        reason: Reason,
        client_ip: Option<IpAddr>,
        at: Millis,
    ) {
        let credential_prefix = match (key, reason) {
            (None, Reason::CredentialUnknown | Reason::CredentialMalformed)
                if !credential.is_empty() && credential.len() <= MAX_HASHED_CREDENTIAL =>
            {
                let hash = crypto::sha256(credential.as_bytes());
                Some([hash[0], hash[1], hash[2], hash[3]])
            }
            _ => None,
        };
        let outcome = Outcome {
            key: key.cloned(),
            credential_prefix,
            permission: PermissionText::new(permission),
            reason,
            client_ip,
            at,
        };
        if self.queue.push(outcome).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.dropped_total.fetch_add(1, Ordering::Relaxed);
            crate::telemetry::metrics::metrics().audit_dropped(1);
        }
    }

    /// Counts an outcome the aggregation had no room for.
    pub fn count_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.dropped_total.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::metrics::metrics().audit_dropped(1);
    }

    pub fn pop(&self) -> Option<Outcome> {
        self.queue.pop()
    }

    pub fn depth(&self) -> usize {
        self.queue.len()
    }

    /// Drops since the last call.
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }

    /// Drops since start.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }
}

/// The start of the minute `at` falls in.
pub fn minute_of(at: Millis) -> Millis {
    at - at.rem_euclid(60_000)
}

#[cfg(test)]
mod tests;
