//! Rate limits: GCRA (`gcra`) over counters kept in memory, per API key
//! (its own policy, else its plan's for its mode, else the deployment
//! default), per Envoy descriptor and per client address for failed
//! authentications.
//!
//! The hot path touches no lock and no shared reference count: each thread
//! keeps its own map from counted thing to cell (the shared, sharded map is
//! asked only on a thread's first use of a thing), and a request is one
//! compare-and-swap on the cell; it allocates only the first time a thread
//! counts a thing. Cells whose limit is fully available again carry no
//! information and are swept when a shard fills up — unless a thread still
//! holds one, so that every thread always counts in the same cell.

mod descriptors;
mod failures;
mod gcra;
mod global;
mod headers;
mod plans;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

pub use descriptors::{DescriptorEntry, DescriptorRule, Descriptors};
pub use failures::{FailureBudget, counts_as_failure};
pub use gcra::{MAX_PER_SECONDS, MAX_REQUESTS, PolicyError, Quota, RatePolicy, RateState, nanos};
pub use global::{Global, Pending, StrictCounters};
pub use headers::rate_limit_headers;
pub use plans::{PlanLimits, PlanRate};

use crate::domain::resolver::ResolvedKey;
use crate::ports::Clock;

const SHARDS: usize = 64;
/// Entries a shard holds before it first sweeps out idle cells.
const SWEEP_AT: usize = 4096;

/// A counted thing's state: its theoretical arrival time (nanoseconds),
/// and (with a global store) how far this replica moved it since the last
/// reconciliation.
#[derive(Debug, Default)]
struct Cell {
    tat: AtomicU64,
    pending: AtomicU64,
}

/// Which family a counter belongs to, so a key id can never collide with a
/// descriptor value or an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Space {
    Key,
    Descriptor,
    FailedAuth,
    BadSignature,
}

/// Counted things and their cells (one shard of them, or one thread's handles).
type Cells = HashMap<(Space, Box<str>), Arc<Cell>>;
type Shard = RwLock<Cells>;

/// Cells a thread keeps before it forgets them all (and so lets the shared
/// map sweep the idle ones).
const LOCAL_MAX: usize = 4096;

thread_local! {
    /// Per limiter (by its id): this thread's handles on the shared cells.
    static LOCAL: RefCell<HashMap<u64, Cells>> = RefCell::default();
}

static NEXT_LIMITER: AtomicU64 = AtomicU64::new(0);

/// Called once per request a limit refused (the metrics hook).
pub type LimitedHook = Arc<dyn Fn(Space) + Send + Sync>;

pub struct Limiter {
    /// This limiter's entries in the per-thread maps.
    id: u64,
    shards: Box<[Shard]>,
    /// The latest end of any cool-down (TAT, nanoseconds): until then an
    /// address may be blocked; after it, none is, and checks skip the lookup.
    held_until: AtomicU64,
    hasher: std::collections::hash_map::RandomState,
    clock: Arc<dyn Clock>,
    on_limited: Option<LimitedHook>,
    /// Set when the limits are shared with other replicas (Redis).
    global: Option<Global>,
    /// Set in strict mode: every request asks the global store.
    strict: std::sync::OnceLock<Arc<dyn StrictCounters>>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").finish_non_exhaustive()
    }
}

impl Limiter {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            id: NEXT_LIMITER.fetch_add(1, Ordering::Relaxed),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            held_until: AtomicU64::new(0),
            hasher: std::collections::hash_map::RandomState::new(),
            clock,
            on_limited: None,
            global: None,
            strict: std::sync::OnceLock::new(),
        }
    }

    /// Calls `hook` for every refused request (a counter, nothing more).
    pub fn with_limited_hook(mut self, hook: LimitedHook) -> Self {
        self.on_limited = Some(hook);
        self
    }

    fn shard(&self, space: Space, id: &str) -> &Shard {
        let h = self.hasher.hash_one((space, id));
        // SHARDS is a power of two; the low bits of SipHash are uniform.
        &self.shards[usize::try_from(h).unwrap_or(0) % SHARDS]
    }

    /// Runs `f` on `id`'s cell: this thread's handle when it has one (no
    /// lock, no reference count touched), else the shared cell, which the
    /// thread then keeps.
    fn with_cell<T>(&self, space: Space, id: &str, now: u64, f: impl Fn(&Cell) -> T) -> T {
        let hit = LOCAL.with_borrow(|local| {
            local
                .get(&self.id)
                .and_then(|mine| mine.get(&(space, id) as &dyn Lookup))
                .map(|c| f(c))
        });
        if let Some(out) = hit {
            return out;
        }
        let cell = self.shared_cell(space, id, now);
        let out = f(&cell);
        LOCAL.with_borrow_mut(|local| {
            let mine = local.entry(self.id).or_default();
            if mine.len() >= LOCAL_MAX {
                mine.clear();
            }
            mine.insert((space, id.into()), cell);
        });
        out
    }

    fn shared_cell(&self, space: Space, id: &str, now: u64) -> Arc<Cell> {
        let shard = self.shard(space, id);
        {
            // A poisoned lock only means a panic elsewhere; the map is intact.
            let map = shard.read().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = map.get(&(space, id) as &dyn Lookup) {
                return c.clone();
            }
        }
        let mut map = shard.write().unwrap_or_else(|e| e.into_inner());
        // At each doubling from SWEEP_AT on, so that a shard full of live
        // cells costs amortised O(1) per insert, not a scan each time.
        if map.len() >= SWEEP_AT && map.len().is_power_of_two() {
            // A cell some thread still holds stays: it must keep counting there.
            map.retain(|_, c| Arc::strong_count(c) > 1 || c.tat.load(Ordering::Relaxed) > now);
        }
        map.entry((space, id.into())).or_default().clone()
    }

    /// Counts one request against `quota` for `id`.
    pub fn take(&self, space: Space, id: &str, quota: &Quota) -> RateState {
        self.take_n(space, id, quota, 1)
    }

    /// Counts `cost` requests (Envoy's `hits_addend`).
    pub fn take_n(&self, space: Space, id: &str, quota: &Quota, cost: u64) -> RateState {
        let now = nanos(self.clock.now());
        // The global store counts the whole limit's interval, even while
        // this replica enforces its share.
        let (full_interval, full_tolerance) = (quota.interval, quota.tolerance);
        let scaled;
        let quota = match &self.global {
            Some(g) if g.syncs(space) && !g.is_connected() => {
                scaled = quota.per_replica(g.replicas);
                &scaled
            }
            _ => quota,
        };
        let state = self.with_cell(space, id, now, |cell| {
            let mut tat = cell.tat.load(Ordering::Acquire);
            loop {
                let (next, state) = quota.take(tat, now, cost);
                let Some(next) = next else {
                    return state;
                };
                match cell
                    .tat
                    .compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        if let Some(g) = &self.global {
                            g.consumed(
                                cell,
                                space,
                                id,
                                full_interval.saturating_mul(cost),
                                full_tolerance,
                            );
                        }
                        return state;
                    }
                    Err(seen) => tat = seen,
                }
            }
        });
        if !state.allowed
            && let Some(hook) = &self.on_limited
        {
            hook(space);
        }
        state
    }

    /// What `id`'s limit says now, consuming nothing (and allocating
    /// nothing for a thing that was never counted).
    pub fn peek(&self, space: Space, id: &str, quota: &Quota) -> RateState {
        let now = nanos(self.clock.now());
        let local = LOCAL.with_borrow(|local| {
            local
                .get(&self.id)
                .and_then(|mine| mine.get(&(space, id) as &dyn Lookup))
                .map(|c| c.tat.load(Ordering::Acquire))
        });
        let tat = local.unwrap_or_else(|| {
            let map = self
                .shard(space, id)
                .read()
                .unwrap_or_else(|e| e.into_inner());
            map.get(&(space, id) as &dyn Lookup)
                .map_or(0, |c| c.tat.load(Ordering::Acquire))
        });
        quota.peek(tat, now)
    }

    /// Moves `id`'s TAT to at least `until` (a cool-down).
    fn hold(&self, space: Space, id: &str, until: u64) {
        let now = nanos(self.clock.now());
        self.held_until.fetch_max(until, Ordering::AcqRel);
        self.with_cell(space, id, now, |c| c.tat.fetch_max(until, Ordering::AcqRel));
    }

    /// Could any cool-down still be running at `now`? A plain load of a
    /// value that is written only when a cool-down starts.
    fn any_held(&self, now: u64) -> bool {
        self.held_until.load(Ordering::Relaxed) > now
    }
}

/// Borrowed lookups into a map keyed by `(Space, Box<str>)`: no allocation
/// per call (the standard trick for tuple keys).
trait Lookup {
    fn space(&self) -> Space;
    fn id(&self) -> &str;
}

impl Lookup for (Space, Box<str>) {
    fn space(&self) -> Space {
        self.0
    }
    fn id(&self) -> &str {
        &self.1
    }
}

impl Lookup for (Space, &str) {
    fn space(&self) -> Space {
        self.0
    }
    fn id(&self) -> &str {
        self.1
    }
}

impl<'a> std::borrow::Borrow<dyn Lookup + 'a> for (Space, Box<str>) {
    fn borrow(&self) -> &(dyn Lookup + 'a) {
        self
    }
}

impl PartialEq for dyn Lookup + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.space() == other.space() && self.id() == other.id()
    }
}

impl Eq for dyn Lookup + '_ {}

impl std::hash::Hash for dyn Lookup + '_ {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Must hash exactly as `(Space, Box<str>)` does.
        self.space().hash(state);
        self.id().hash(state);
    }
}

/// Per-principal limits for `decide`: the counters and who runs under which limit.
#[derive(Debug)]
pub struct KeyLimits {
    pub limiter: Arc<Limiter>,
    pub plans: PlanLimits,
    /// Failed authentications per client address; `None` = not budgeted.
    pub failures: Option<FailureBudget>,
}

impl KeyLimits {
    /// The limit `key` (or a token minted from it) runs under; `None` =
    /// unlimited. Admin tokens (the operator account) have none: a plan
    /// default must never lock operators out of the management API.
    pub fn quota(&self, key: &ResolvedKey) -> Option<Quota> {
        if key.account.is_operator {
            return None;
        }
        self.plans.for_policy(
            key.record.rate_limit.as_ref(),
            key.record.mode,
            &key.account.plan,
        )
    }

    /// Counts one request for `key`.
    pub fn take(&self, key: &ResolvedKey) -> Option<RateState> {
        let quota = self.quota(key)?;
        Some(self.limiter.take(Space::Key, &key.record.id, &quota))
    }

    /// [`KeyLimits::take`], asking the global store first in strict mode.
    pub async fn take_checked(&self, key: &ResolvedKey) -> Option<RateState> {
        let quota = self.quota(key)?;
        Some(
            self.limiter
                .take_n_strict(Space::Key, &key.record.id, &quota, 1)
                .await,
        )
    }

    /// What `key`'s limit says, consuming nothing (for answers that were
    /// denied before the limit was reached).
    pub fn peek(&self, key: &ResolvedKey) -> Option<RateState> {
        let quota = self.quota(key)?;
        Some(self.limiter.peek(Space::Key, &key.record.id, &quota))
    }
}
