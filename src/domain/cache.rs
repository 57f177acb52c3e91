//! A bounded TTL map keyed by SHA-256 digests, built for the Check hot path:
//! a read is one shared lock on one of 64 shards and a hash that is just the
//! digest's first eight bytes (the keys are uniformly random already, and no
//! caller can choose a digest, so there is nothing to flood).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

const SHARDS: usize = 64;

/// Uses the first eight bytes written as the hash. Only for digests.
#[derive(Default)]
pub(crate) struct DigestHasher(u64);

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

    pub fn clear(&self) {
        for shard in &self.shards {
            shard
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
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
