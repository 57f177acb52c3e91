//! Cold lookups, batched: the store half of [`super::resolver::KeyResolver`].
//!
//! A miss joins the lookup already pending for its hash (coalescing), or
//! queues one. While fewer than [`MAX_QUERIES`] store queries run, the miss
//! starts one at once, so a lone miss costs one round trip as before; while
//! they all run, misses wait in the queue, and the query that finishes first
//! takes up to [`MAX_BATCH`] of them into its next statement. Thirty-two
//! lookups in flight so cost a few statements instead of thirty-two: the
//! per-statement CPU (the database's parse, plan and protocol, the pool, the
//! driver) is what capped cold lookups per second.
//!
//! Queries run in their own tasks, never inside a caller's future: a caller
//! that is cancelled (its deadline passed, its client went away) strands no
//! one, and a queued hash whose callers are all gone is not looked up.
//! Every waiter of a failed query gets its error (store down: UNAVAILABLE for
//! all of them). No lock is held across an await.
//!
//! Staleness: [`Loader::forget`] (an invalidation) detaches the pending
//! lookup of a hash, so callers after it queue a fresh one; callers that had
//! joined the old one get its answer, and the resolver's epoch check keeps it
//! out of the cache.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Instant;

use tokio::sync::watch;

use super::model::{Account, KeyRecord};
use crate::ports::{Store, StoreError};
use crate::telemetry::metrics::{StoreOp, metrics};

/// The store's answer for one hash.
pub type Found = Result<Option<(KeyRecord, Account)>, StoreError>;

/// Most hashes in one store statement.
pub const MAX_BATCH: usize = 64;
/// Store queries of cold lookups in flight at once. Two: one can run on the
/// database while the answers of the other are handed out, and more would
/// only split the same misses into smaller batches.
pub const MAX_QUERIES: usize = 2;

/// Where one pending lookup's answer is published. Its receivers are the
/// callers waiting for it: none left = nobody needs the answer. Held by the
/// queue, then by the query that takes it; once that drops it (answered, or
/// the task died) a waiter still without an answer is told so.
type Slot = Arc<watch::Sender<Option<Found>>>;
/// The hashes of one statement, each with the lookups it answers (more than
/// one only when a hash was queued again after an invalidation).
type Batch = Vec<([u8; 32], Vec<Slot>)>;

#[derive(Default)]
struct State {
    /// The lookup each hash joins: queued or running (dead once dropped).
    pending: HashMap<[u8; 32], Weak<watch::Sender<Option<Found>>>>,
    /// Lookups no query has taken yet, oldest first.
    queue: VecDeque<([u8; 32], Slot)>,
    /// Queries under way.
    running: usize,
}

impl State {
    /// Up to [`MAX_BATCH`] queued lookups that someone still waits for;
    /// abandoned ones are dropped on the way.
    fn take_batch(&mut self) -> Batch {
        let mut batch: Batch = Vec::new();
        while batch.len() < MAX_BATCH {
            let Some((hash, slot)) = self.queue.pop_front() else {
                break;
            };
            if slot.receiver_count() == 0 {
                self.detach(&hash, &slot);
            } else if let Some((_, slots)) = batch.iter_mut().find(|(h, _)| *h == hash) {
                slots.push(slot);
            } else {
                batch.push((hash, vec![slot]));
            }
        }
        batch
    }

    /// Later callers of `hash` no longer join `slot`.
    fn detach(&mut self, hash: &[u8; 32], slot: &Slot) {
        if self
            .pending
            .get(hash)
            .is_some_and(|s| std::ptr::eq(s.as_ptr(), Arc::as_ptr(slot)))
        {
            self.pending.remove(hash);
        }
    }
}

pub struct Loader {
    store: Arc<dyn Store>,
    state: Mutex<State>,
}

impl Loader {
    pub fn new(store: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            store,
            state: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The store's answer for `hash`, shared with every caller that asks
    /// before it arrives.
    pub async fn load(self: &Arc<Self>, hash: &[u8; 32]) -> Found {
        let mut answer = {
            let mut state = self.lock();
            let joined = state.pending.get(hash).and_then(Weak::upgrade);
            let answer = match joined {
                Some(slot) => slot.subscribe(),
                None => {
                    let (slot, answer) = watch::channel(None);
                    let slot = Arc::new(slot);
                    state.pending.insert(*hash, Arc::downgrade(&slot));
                    state.queue.push_back((*hash, slot));
                    answer
                }
            };
            if state.running < MAX_QUERIES {
                let batch = state.take_batch();
                if !batch.is_empty() {
                    state.running += 1;
                    tokio::spawn(self.clone().run(batch));
                }
            }
            answer
        };
        match answer.wait_for(Option::is_some).await {
            Ok(found) => found.clone().unwrap_or_else(|| Err(abandoned())),
            // The query's task ended without an answer (it panicked, or the
            // runtime is shutting down): denied, as any failure.
            Err(_) => Err(abandoned()),
        }
    }

    /// One query task: answers `batch`, then whatever queued meanwhile,
    /// until the queue is empty.
    async fn run(self: Arc<Self>, mut batch: Batch) {
        let mut place = Place(Some(self.clone()));
        loop {
            let hashes: Vec<[u8; 32]> = batch.iter().map(|(hash, _)| *hash).collect();
            // Timed once per statement, not once per key or waiter.
            let started = Instant::now();
            let found = self.store.find_keys_by_hashes(&hashes).await;
            let ok = found.iter().all(Result::is_ok);
            metrics().store_call(StoreOp::FindKey, started.elapsed(), ok);
            publish(&batch, found);
            let mut state = self.lock();
            for (hash, slots) in &batch {
                for slot in slots {
                    state.detach(hash, slot);
                }
            }
            batch = state.take_batch();
            if batch.is_empty() {
                state.running -= 1;
                place.0 = None;
                return;
            }
        }
    }

    /// Later callers of `hash` start a fresh lookup (the key changed).
    pub fn forget(&self, hash: &[u8; 32]) {
        self.lock().pending.remove(hash);
    }

    /// Later callers of every hash start fresh lookups.
    pub fn forget_all(&self) {
        self.lock().pending.clear();
    }
}

fn abandoned() -> StoreError {
    StoreError::Internal("the key lookup ended without an answer".into())
}

/// Hands each waiter its answer.
fn publish(batch: &Batch, found: Vec<Found>) {
    // An answer missing (a store that broke its contract) leaves its slots
    // unanswered: they drop with the batch, and their waiters are denied.
    for ((_, slots), found) in batch.iter().zip(found) {
        if let Some((last, others)) = slots.split_last() {
            for slot in others {
                slot.send_replace(Some(found.clone()));
            }
            last.send_replace(Some(found));
        }
    }
}

/// A query task's place among the [`MAX_QUERIES`], held until it ends. If
/// the task ends early (it panicked), the lookups it had taken fail (their
/// slots drop with it) and a new task takes over the queue, so that no
/// queued lookup waits for a task that is gone.
struct Place(Option<Arc<Loader>>);

impl Drop for Place {
    fn drop(&mut self) {
        let Some(loader) = self.0.take() else {
            return;
        };
        let mut state = loader.lock();
        state.pending.retain(|_, slot| slot.strong_count() > 0);
        let batch = state.take_batch();
        let runtime = tokio::runtime::Handle::try_current();
        match runtime {
            Ok(runtime) if !batch.is_empty() => {
                drop(state);
                runtime.spawn(loader.clone().run(batch));
            }
            _ => state.running -= 1,
        }
    }
}
