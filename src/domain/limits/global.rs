//! Limits shared by every replica (through a global store such as Redis).
//!
//! Each replica answers from its own cells, and remembers how far it moved
//! each one (`pending`: the TAT advance its allowed requests cost). A
//! background task takes the cells with something pending
//! ([`Limiter::take_pending`]), adds their advances to the global TATs in
//! one batch, and moves each local cell to the global TAT plus what was
//! counted locally meanwhile ([`Limiter::apply_global`]). So the sum of all
//! replicas is held to one limit, and a replica overshoots it only by what
//! it counts between two reconciliations.
//!
//! While the global store cannot be reached, every limit is divided by the
//! replica count (never unlimited, never deny-all), and pending advances
//! are kept to be sent once it answers again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::{Cell, Limiter, Quota, RateState, Space, nanos};

/// Strict mode's global store: one GCRA step per request, atomically.
#[async_trait::async_trait]
pub trait StrictCounters: Send + Sync {
    /// Takes `cost` against `quota` on the global counter at `now` (ns):
    /// whether it was allowed, and the counter's TAT before the step.
    async fn take(
        &self,
        space: Space,
        id: &str,
        quota: &Quota,
        cost: u64,
        now: u64,
    ) -> Result<(bool, u64), ()>;
}

/// What one counter owes the global store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub space: Space,
    pub id: Box<str>,
    /// TAT advance (nanoseconds) counted here since the last reconciliation.
    pub advance: u64,
    /// The limit's tolerance, so the global entry can expire once idle.
    pub tolerance: u64,
}

/// A limiter's global mode.
#[derive(Debug)]
pub struct Global {
    /// The limit is divided by this while the global store is unreachable.
    pub replicas: u64,
    connected: AtomicBool,
    /// Counters with something pending, each once.
    dirty: Mutex<Vec<(Space, Box<str>, u64)>>,
}

impl Global {
    /// Key limits and descriptor limits are global; the brute-force budgets
    /// stay per replica (an address is blocked where it failed).
    pub fn syncs(&self, space: Space) -> bool {
        matches!(space, Space::Key | Space::Descriptor)
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Records `advance` as counted on `cell`; the first advance since a
    /// reconciliation marks the counter dirty (the only lock, once per
    /// counter per reconciliation).
    pub(super) fn consumed(&self, cell: &Cell, space: Space, id: &str, advance: u64, tol: u64) {
        if !self.syncs(space) {
            return;
        }
        if cell.pending.fetch_add(advance, Ordering::AcqRel) == 0 {
            let mut dirty = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
            dirty.push((space, id.into(), tol));
        }
    }
}

impl Quota {
    /// This limit shared among `replicas` equal parts (each at least one
    /// request at once).
    pub fn per_replica(&self, replicas: u64) -> Quota {
        let n = replicas.max(1);
        let interval = self.interval.saturating_mul(n);
        let burst = self.limit.div_ceil(n).max(1);
        Quota {
            interval,
            tolerance: interval.saturating_mul(burst),
            limit: burst,
            policy: self.policy,
        }
    }
}

impl Limiter {
    /// Shares the key and descriptor limits with other replicas; until the
    /// global store has answered once, each replica enforces its share.
    pub fn with_global(mut self, replicas: u64) -> Self {
        self.global = Some(Global {
            replicas: replicas.max(1),
            connected: AtomicBool::new(false),
            dirty: Mutex::default(),
        });
        self
    }

    /// Strict mode: from now on every key and descriptor request asks `store`.
    pub fn set_strict(&self, store: Arc<dyn StrictCounters>) {
        let _ = self.strict.set(store);
    }

    pub fn is_strict(&self) -> bool {
        self.strict.get().is_some()
    }

    /// [`Limiter::take_n`], but in strict mode (and while the global store
    /// answers) decided by the global store. A failed answer marks it
    /// unreachable and falls back to this replica's share.
    pub async fn take_n_strict(
        &self,
        space: Space,
        id: &str,
        quota: &Quota,
        cost: u64,
    ) -> RateState {
        if let (Some(store), Some(g)) = (self.strict.get(), &self.global)
            && g.syncs(space)
            && g.is_connected()
        {
            let now = self.now_nanos();
            if let Ok((allowed, base)) = store.take(space, id, quota, cost, now).await {
                let (_, mut state) = quota.take(base, now, cost);
                if state.allowed != allowed {
                    // Rounding (Redis counts microseconds): Redis decides.
                    state.allowed = allowed;
                    if !allowed {
                        state.remaining = 0;
                        state.retry_after_seconds = state.retry_after_seconds.max(1);
                    }
                }
                if !allowed && let Some(hook) = &self.on_limited {
                    hook(space);
                }
                return state;
            }
            if self.set_connected(false) {
                tracing::warn!(
                    "redis unreachable in strict mode: each replica enforces limit / replicas"
                );
            }
        }
        self.take_n(space, id, quota, cost)
    }

    /// The limiter's clock, as the algorithm counts (nanoseconds).
    pub fn now_nanos(&self) -> u64 {
        nanos(self.clock.now())
    }

    pub fn global(&self) -> Option<&Global> {
        self.global.as_ref()
    }

    /// Says whether the global store answers; returns whether that changed.
    pub fn set_connected(&self, up: bool) -> bool {
        self.global
            .as_ref()
            .is_some_and(|g| g.connected.swap(up, Ordering::AcqRel) != up)
    }

    /// Takes every pending advance (resetting it to zero), for one batch.
    pub fn take_pending(&self) -> Vec<Pending> {
        let Some(g) = &self.global else {
            return Vec::new();
        };
        let dirty = std::mem::take(&mut *g.dirty.lock().unwrap_or_else(|e| e.into_inner()));
        let now = nanos(self.clock.now());
        dirty
            .into_iter()
            .filter_map(|(space, id, tolerance)| {
                let cell = self.shared_cell(space, &id, now);
                let advance = cell.pending.swap(0, Ordering::AcqRel);
                (advance > 0).then_some(Pending {
                    space,
                    id,
                    advance,
                    tolerance,
                })
            })
            .collect()
    }

    /// Gives back advances a failed batch could not deliver.
    pub fn restore_pending(&self, batch: Vec<Pending>) {
        let Some(g) = &self.global else { return };
        let now = nanos(self.clock.now());
        for p in batch {
            let cell = self.shared_cell(p.space, &p.id, now);
            g.consumed(&cell, p.space, &p.id, p.advance, p.tolerance);
        }
    }

    /// Moves a counter to the global TAT (nanoseconds), keeping what this
    /// replica counted since its advance was taken.
    pub fn apply_global(&self, space: Space, id: &str, global_tat: u64) {
        let now = nanos(self.clock.now());
        let cell = self.shared_cell(space, id, now);
        let mut cur = cell.tat.load(Ordering::Acquire);
        loop {
            let since = cell.pending.load(Ordering::Acquire);
            let next = if since == 0 {
                global_tat
            } else {
                global_tat.max(now).saturating_add(since)
            };
            match cell
                .tat
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(seen) => cur = seen,
            }
        }
    }
}
