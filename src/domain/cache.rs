//! Caches keyed by SHA-256 digests, built for the Check hot path.
//!
//! - [`DigestCache`]: a bounded TTL map shared by every thread. A read is one
//!   shared lock on one of 64 shards and a hash that is just the digest's
//!   first eight bytes (the keys are uniformly random already, and no caller
//!   can choose a digest, so there is nothing to flood).
//! - [`ThreadSlots`]: what a thread keeps for itself in a `thread_local!`
//!   (the resolver's copies of hot keys, ext_authz's encoded principals). A
//!   hit touches no memory that another core writes: no lock word and no
//!   shared reference count, which under load cost more than the rest of the
//!   decision.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

const SHARDS: usize = 64;

/// Uses the first eight bytes written as the hash. Only for digests.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        if let Some(head) = bytes.first_chunk::<8>() {
            self.0 = u64::from_le_bytes(*head);
        }
    }

    // The slice length that `[u8; 32]: Hash` writes first carries no information.
    fn write_usize(&mut self, _: usize) {}
}

/// How a decision may use this process's caches: Check reads and fills
/// them; Explain (issue 14 item 3) reads the store alone, and then what the
/// caches hold, to compare, filling none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    /// Check: read the caches, fill them on a miss.
    Fill,
    /// Explain: the store only; no cache is read or filled.
    Bypass,
    /// Explain's comparison: what the caches hold now, the store where they
    /// hold nothing; nothing is filled.
    Peek,
}

type Shard<V> = HashMap<[u8; 32], (V, Instant), BuildHasherDefault<DigestHasher>>;

pub struct DigestCache<V> {
    shards: Box<[RwLock<Shard<V>>]>,
    ttl: Duration,
    per_shard: usize,
}

impl<V: Clone> DigestCache<V> {
    pub fn new(max_entries: u64, ttl: Duration) -> Self {
        let per_shard = usize::try_from(max_entries)
            .unwrap_or(usize::MAX)
            .div_ceil(SHARDS)
            .max(1);
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            ttl,
            per_shard,
        }
    }

    fn shard(&self, digest: &[u8; 32]) -> &RwLock<Shard<V>> {
        // The last byte, independent of the bytes the map hashes on.
        &self.shards[usize::from(digest[31]) % SHARDS]
    }

    pub fn get(&self, digest: &[u8; 32]) -> Option<V> {
        self.get_with_expiry(digest).map(|(value, _)| value)
    }

    /// The value and when it expires.
    pub fn get_with_expiry(&self, digest: &[u8; 32]) -> Option<(V, Instant)> {
        let shard = self
            .shard(digest)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        match shard.get(digest) {
            Some((value, expires)) if *expires > Instant::now() => Some((value.clone(), *expires)),
            _ => None,
        }
    }

    pub fn insert(&self, digest: [u8; 32], value: V) {
        let now = Instant::now();
        let mut shard = self
            .shard(&digest)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if shard.len() >= self.per_shard && !shard.contains_key(&digest) {
            shard.retain(|_, (_, expires)| *expires > now);
            if shard.len() >= self.per_shard
                && let Some(victim) = shard.keys().next().copied()
            {
                shard.remove(&victim);
            }
        }
        shard.insert(digest, (value, now + self.ttl));
    }

    pub fn remove(&self, digest: &[u8; 32]) {
        self.shard(digest)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(digest);
    }

    /// Entries held (expired ones included until they are replaced); read
    /// at scrape time, never on the hot path.
    pub fn entries(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    pub fn clear(&self) {
        for shard in &self.shards {
            shard
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
    }
}

/// Whose entries these are, in a thread's [`ThreadSlots`]: one per cache
/// user (tests run several servers, with different settings, in one process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotOwner(u64);

static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

impl SlotOwner {
    pub fn next() -> Self {
        Self(NEXT_OWNER.fetch_add(1, Ordering::Relaxed))
    }
}

/// Hashes the owner and the first bytes of the digest (already uniform).
#[derive(Default)]
struct SlotHasher(u64);

impl Hasher for SlotHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        if let Some(head) = bytes.first_chunk::<8>() {
            self.0 ^= u64::from_le_bytes(*head);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n.rotate_left(32);
    }

    // The slice length that `[u8; 32]: Hash` writes first carries no information.
    fn write_usize(&mut self, _: usize) {}
}

/// Most entries a thread keeps for one kind of slot before it starts over.
const THREAD_SLOTS_CAPACITY: usize = 4096;

/// One thread's entries by (owner, digest), for a `thread_local!`
/// `RefCell<ThreadSlots<V>>`. Bounded: when full it starts over, which
/// costs a few misses and no bookkeeping on a hit. Whether an entry is still
/// good (an epoch, an expiry, the `Arc` it was built from) is the caller's
/// test, made on the entry it gets.
pub struct ThreadSlots<V> {
    map: HashMap<(SlotOwner, [u8; 32]), V, BuildHasherDefault<SlotHasher>>,
}

impl<V> Default for ThreadSlots<V> {
    fn default() -> Self {
        Self {
            map: HashMap::default(),
        }
    }
}

impl<V> ThreadSlots<V> {
    #[inline]
    pub fn get(&self, owner: SlotOwner, digest: &[u8; 32]) -> Option<&V> {
        self.map.get(&(owner, *digest))
    }

    pub fn insert(&mut self, owner: SlotOwner, digest: [u8; 32], value: V) {
        if self.map.len() >= THREAD_SLOTS_CAPACITY {
            self.map.clear();
        }
        self.map.insert((owner, digest), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(i: u32) -> [u8; 32] {
        crate::crypto::sha256(&i.to_le_bytes())
    }

    #[test]
    fn get_insert_remove_clear() {
        let cache = DigestCache::new(1000, Duration::from_secs(60));
        assert_eq!(cache.get(&digest(1)), None);
        cache.insert(digest(1), "a");
        cache.insert(digest(2), "b");
        assert_eq!(cache.get(&digest(1)), Some("a"));
        cache.remove(&digest(1));
        assert_eq!(cache.get(&digest(1)), None);
        assert_eq!(cache.get(&digest(2)), Some("b"));
        cache.clear();
        assert_eq!(cache.get(&digest(2)), None);
    }

    #[test]
    fn entries_expire() {
        let cache = DigestCache::new(10, Duration::ZERO);
        cache.insert(digest(1), 1);
        assert_eq!(cache.get(&digest(1)), None);
    }

    #[test]
    fn thread_slots_keep_owners_apart_and_stay_bounded() {
        let (a, b) = (SlotOwner::next(), SlotOwner::next());
        let mut slots = ThreadSlots::default();
        slots.insert(a, digest(1), "a");
        slots.insert(b, digest(1), "b");
        assert_eq!(slots.get(a, &digest(1)), Some(&"a"));
        assert_eq!(slots.get(b, &digest(1)), Some(&"b"));
        assert_eq!(slots.get(a, &digest(2)), None);
        for i in 0..10_000 {
            slots.insert(a, digest(i), "x");
        }
        assert!(slots.map.len() <= THREAD_SLOTS_CAPACITY);
        assert_eq!(
            slots.get(a, &digest(9_999)),
            Some(&"x"),
            "the newest entry is kept"
        );
    }

    #[test]
    fn size_stays_bounded() {
        let cache = DigestCache::new(128, Duration::from_secs(60));
        for i in 0..10_000 {
            cache.insert(digest(i), i);
        }
        let total: usize = cache.shards.iter().map(|s| s.read().unwrap().len()).sum();
        assert!(total <= 128, "{total}");
        assert_eq!(
            cache.get(&digest(9_999)),
            Some(9_999),
            "the newest entry is kept"
        );
    }
}
