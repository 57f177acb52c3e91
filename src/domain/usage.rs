//! Last-used times, gathered on the hot path without I/O and written in batches.

use std::collections::HashMap;
use std::sync::Mutex;

use super::model::Millis;

#[derive(Debug, Default)]
pub struct UsageRecorder {
    pending: Mutex<HashMap<String, Millis>>,
}

impl UsageRecorder {
    pub fn record(&self, key_id: &str, now: Millis) {
        // A poisoned lock only means another thread panicked mid-insert; the
        // map is still usable and losing a last-used time is harmless.
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match pending.get_mut(key_id) {
            Some(t) => *t = (*t).max(now),
            None => {
                pending.insert(key_id.to_owned(), now);
            }
        }
    }

    /// Everything recorded since the last drain.
    pub fn drain(&self) -> Vec<(String, Millis)> {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pending.drain().collect()
    }

    /// Puts back what a failed flush could not write (newer times win).
    pub fn restore(&self, batch: Vec<(String, Millis)>) {
        for (id, t) in batch {
            self.record(&id, t);
        }
    }
}
