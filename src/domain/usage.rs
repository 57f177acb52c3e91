//! Last-used times, gathered on the hot path without I/O and written in batches.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use super::model::Millis;
use super::pace::Pace;
use crate::ports::StoreError;

/// Keys per write of a flush (one short store statement each).
pub const FLUSH_SLICE: usize = 500;

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
        self.take().into_iter().collect()
    }

    /// The map itself, swapped for an empty one: the lock that every
    /// Check's `record` takes is held for the swap only, not for a walk
    /// over 100,000 entries.
    fn take(&self) -> HashMap<String, Millis> {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::take(&mut *pending)
    }

    /// Puts back what a failed flush could not write (newer times win).
    pub fn restore(&self, batch: Vec<(String, Millis)>) {
        for (id, t) in batch {
            self.record(&id, t);
        }
    }

    /// Writes everything recorded since the last flush through `write`,
    /// [`FLUSH_SLICE`] keys at a time in key order, the writes spread evenly
    /// over `spread` (see [`Pace`]; the periodic flush: most of its
    /// interval; the last one at shutdown: none) until `drain` turns true.
    /// A burst of new keys (10,000 a second is 50,000 keys in a 5 s flush)
    /// written back to back kept a database core busy for the better part
    /// of a second, and the cold lookups beside it were the run's slowest
    /// calls. The slice that fails is put back with the rest, for the next
    /// flush (the slices before it are written: nothing twice); its error
    /// and how many keys went back are returned.
    pub async fn flush<W, F>(
        &self,
        write: W,
        spread: Duration,
        drain: Option<watch::Receiver<bool>>,
    ) -> Result<(), (StoreError, usize)>
    where
        W: Fn(Vec<(String, Millis)>) -> F,
        F: Future<Output = Result<(), StoreError>>,
    {
        let pending = self.take();
        if pending.is_empty() {
            return Ok(());
        }
        // Ordering 100,000 key ids took a runtime worker for ~40 ms, and the
        // calls whose connection that worker held stalled with it: the
        // ordering runs on a blocking thread, beside the workers.
        let ordered = tokio::task::spawn_blocking(move || {
            let mut batch: Vec<(String, Millis)> = pending.into_iter().collect();
            batch.sort_unstable();
            batch
        })
        .await;
        let mut batch = match ordered {
            Ok(batch) => batch,
            Err(e) => {
                return Err((
                    StoreError::Internal(format!("ordering the last-used times failed: {e}")),
                    0,
                ));
            }
        };
        let mut pace = Pace::new(spread, batch.len().div_ceil(FLUSH_SLICE), drain);
        let mut written = 0;
        while written < batch.len() {
            pace.until_due(written / FLUSH_SLICE).await;
            let slice = &batch[written..batch.len().min(written + FLUSH_SLICE)];
            if let Err(e) = write(slice.to_vec()).await {
                let rest = batch.split_off(written);
                let kept = rest.len();
                self.restore(rest);
                return Err((e, kept));
            }
            written += slice.len();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Instant;

    use super::*;

    fn recorder(keys: usize) -> UsageRecorder {
        let usage = UsageRecorder::default();
        for i in 0..keys {
            usage.record(
                &format!("key_{i:05}"),
                1_000 + i64::try_from(i).unwrap_or(0),
            );
        }
        usage
    }

    /// The writes of `usage`'s flush: when each started, and its key ids.
    async fn flushed(
        usage: &UsageRecorder,
        spread: Duration,
        drain: Option<watch::Receiver<bool>>,
    ) -> Vec<(Instant, Vec<String>)> {
        let writes: Mutex<Vec<(Instant, Vec<String>)>> = Mutex::default();
        let flushed = usage
            .flush(
                |slice: Vec<(String, Millis)>| {
                    let ids = slice.into_iter().map(|(id, _)| id).collect();
                    writes.lock().unwrap().push((Instant::now(), ids));
                    async { Ok(()) }
                },
                spread,
                drain,
            )
            .await;
        assert!(flushed.is_ok());
        writes.into_inner().unwrap()
    }

    #[tokio::test]
    async fn a_flush_writes_ordered_slices_spread_over_the_time() {
        let usage = recorder(1_234);
        let spread = Duration::from_millis(90);
        let before = Instant::now();
        let writes = flushed(&usage, spread, None).await;
        let sizes: Vec<usize> = writes.iter().map(|(_, ids)| ids.len()).collect();
        assert_eq!(sizes, [FLUSH_SLICE, FLUSH_SLICE, 234]);
        let ids: Vec<&String> = writes.iter().flat_map(|(_, ids)| ids).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "key order across slices"
        );
        for (i, (at, _)) in writes.iter().enumerate().skip(1) {
            let due = spread * u32::try_from(i).unwrap() / 3;
            assert!(*at - before >= due, "slice {i} written before it was due");
        }
        assert!(usage.drain().is_empty());
    }

    #[tokio::test]
    async fn a_drain_ends_the_spread() {
        let usage = recorder(1_234);
        let (_tx, draining) = watch::channel(true);
        let before = Instant::now();
        let writes = flushed(&usage, Duration::from_secs(3_600), Some(draining)).await;
        assert_eq!(writes.len(), 3, "every slice written");
        assert!(before.elapsed() < Duration::from_secs(60));
        assert!(usage.drain().is_empty());
    }

    #[tokio::test]
    async fn a_failed_slice_goes_back_with_the_rest_and_newer_times_win() {
        let usage = recorder(1_200);
        let calls = Mutex::new(0);
        let flushed = usage
            .flush(
                |_| {
                    let mut calls = calls.lock().unwrap();
                    *calls += 1;
                    let fail = *calls == 2;
                    if fail {
                        // A use recorded while the flush runs.
                        usage.record("key_00600", 99_999);
                    }
                    async move {
                        if fail {
                            return Err(StoreError::Unavailable("down".into()));
                        }
                        Ok(())
                    }
                },
                Duration::from_millis(1),
                None,
            )
            .await;
        let Err((StoreError::Unavailable(_), kept)) = flushed else {
            panic!("the failure is returned: {flushed:?}");
        };
        assert_eq!(kept, 700);
        let mut left = usage.drain();
        left.sort_unstable();
        assert_eq!(left.len(), 700, "the failed slice and the one after it");
        assert_eq!(left[0], ("key_00500".to_owned(), 1_500));
        assert!(left.contains(&("key_00600".to_owned(), 99_999)));
        assert_eq!(left.last().map(|(id, _)| id.as_str()), Some("key_01199"));
    }
}
