//! `KeyResolver`: key hash → everything `decide` needs, cached in memory.
//!
//! Entries are compiled once (CIDRs, origin patterns, scopes parsed) so the
//! hot path only compares. Invalidation is immediate on this replica; other
//! replicas hear of it through the store's notification channel. An epoch
//! counter keeps a load that raced with an invalidation from caching stale data.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::cache::{DigestCache, SlotOwner, ThreadSlots};
use super::model::{Account, KeyKind, KeyRecord};
use super::network::parse_cidr;
use super::origin::OriginPattern;
use super::permissions::{Policy, ScopeSet};
use crate::ports::{Store, StoreError};
use crate::telemetry::metrics::{StoreOp, metrics};

/// A key with its account, ready for decisions.
#[derive(Debug)]
pub struct ResolvedKey {
    pub record: KeyRecord,
    pub account: Account,
    /// The key's own scopes (role expanded; a bare secret key gets `*`).
    pub scopes: Arc<ScopeSet>,
    pub scope_strings: Vec<String>,
    /// What the account's plan grants; `None` if the plan is no longer configured.
    pub entitlements: Option<Arc<ScopeSet>>,
    pub cidrs: Vec<IpNet>,
    pub origins: Vec<OriginPattern>,
    /// When this entry last reported a use, so that a busy key takes the
    /// shared usage lock about once a second rather than on every call.
    pub last_reported: AtomicI64,
}

#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    pub max_entries: u64,
    pub ttl: Duration,
    pub negative_ttl: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
        }
    }
}

pub struct KeyResolver {
    /// This resolver's entries in the per-thread copies.
    owner: SlotOwner,
    store: Arc<dyn Store>,
    policy: Arc<Policy>,
    known: DigestCache<Arc<ResolvedKey>>,
    unknown: DigestCache<()>,
    epoch: AtomicU64,
}

struct ThreadEntry {
    key: Arc<ResolvedKey>,
    epoch: u64,
    expires: Instant,
}

thread_local! {
    /// A per-thread copy of hot entries. A hit touches no memory that another
    /// core writes: no lock word and no shared reference count, which under
    /// load cost more than the rest of the decision. An entry is trusted only
    /// while the resolver's epoch is the one it was copied under.
    static THREAD_CACHE: RefCell<ThreadSlots<ThreadEntry>> = RefCell::default();
}

impl ResolvedKey {
    /// A private copy for one thread's cache (the shared parts stay shared).
    fn thread_copy(&self) -> Self {
        Self {
            record: self.record.clone(),
            account: self.account.clone(),
            scopes: self.scopes.clone(),
            scope_strings: self.scope_strings.clone(),
            entitlements: self.entitlements.clone(),
            cidrs: self.cidrs.clone(),
            origins: self.origins.clone(),
            last_reported: AtomicI64::new(self.last_reported.load(Ordering::Relaxed)),
        }
    }
}

impl KeyResolver {
    pub fn new(store: Arc<dyn Store>, policy: Arc<Policy>, settings: CacheSettings) -> Self {
        Self {
            owner: SlotOwner::next(),
            store,
            policy,
            known: DigestCache::new(settings.max_entries, settings.ttl),
            unknown: DigestCache::new(settings.max_entries, settings.negative_ttl),
            epoch: AtomicU64::new(0),
        }
    }

    pub async fn resolve(&self, hash: &[u8; 32]) -> Result<Option<Arc<ResolvedKey>>, StoreError> {
        // Read before anything else: an entry copied from the shared cache is
        // tagged with this epoch, so an invalidation after this point re-checks it.
        let epoch = self.epoch.load(Ordering::Acquire);
        let now = Instant::now();
        let local = THREAD_CACHE.with_borrow(|cache| {
            cache
                .get(self.owner, hash)
                .filter(|e| e.epoch == epoch && e.expires > now)
                .map(|e| e.key.clone())
        });
        if let Some(hit) = local {
            metrics().cache_hit();
            return Ok(Some(hit));
        }
        if let Some((shared, expires)) = self.known.get_with_expiry(hash) {
            let key = Arc::new(shared.thread_copy());
            THREAD_CACHE.with_borrow_mut(|cache| {
                cache.insert(
                    self.owner,
                    *hash,
                    ThreadEntry {
                        key: key.clone(),
                        epoch,
                        expires,
                    },
                );
            });
            metrics().cache_hit();
            return Ok(Some(key));
        }
        if self.unknown.get(hash).is_some() {
            metrics().cache_hit();
            return Ok(None);
        }
        metrics().cache_miss();
        let started = Instant::now();
        let found = self.store.find_key_by_hash(hash).await;
        metrics().store_call(StoreOp::FindKey, started.elapsed(), found.is_ok());
        let found = found?;
        let Some((record, account)) = found else {
            self.unknown.insert(*hash, ());
            if self.epoch.load(Ordering::Acquire) != epoch {
                self.unknown.remove(hash);
            }
            return Ok(None);
        };
        let resolved = Arc::new(compile(record, account, &self.policy)?);
        self.known.insert(*hash, resolved.clone());
        // An invalidation that ran while we were loading may have missed our
        // insert, and another thread may have copied it already.
        if self.epoch.load(Ordering::Acquire) != epoch {
            self.known.remove(hash);
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
        Ok(Some(resolved))
    }

    /// Keys held in the shared cache (known and unknown), for the metrics.
    pub fn cached_entries(&self) -> u64 {
        u64::try_from(self.known.entries() + self.unknown.entries()).unwrap_or(u64::MAX)
    }

    /// Moves on every invalidation; a cache built on resolved keys (verified
    /// tokens) tags its entries with it and distrusts them once it moves.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Drops one key everywhere in this process. The epoch moves before the
    /// removal (so a concurrent load notices) and after it (so no thread keeps
    /// a copy it took in between).
    pub fn invalidate_key(&self, hash: &[u8; 32]) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.known.remove(hash);
        self.unknown.remove(hash);
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Drops everything: after an account change, or when notifications may have been missed.
    pub fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.known.clear();
        self.unknown.clear();
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

/// The scopes a key carries: its role's, its own, or (a secret key with
/// neither) everything — still bounded by the plan.
pub fn key_scopes(record: &KeyRecord, policy: &Policy) -> Result<Arc<ScopeSet>, StoreError> {
    if let Some(role) = &record.role {
        return policy.role(role).cloned().ok_or_else(|| {
            StoreError::Internal(format!("key {} names unknown role `{role}`", record.id))
        });
    }
    if record.scopes.is_empty() && record.kind == KeyKind::Secret {
        return ScopeSet::parse_all(&["*"])
            .map(Arc::new)
            .map_err(|e| StoreError::Internal(e.to_string()));
    }
    ScopeSet::parse_all(&record.scopes)
        .map(Arc::new)
        .map_err(|e| StoreError::Internal(format!("key {} has a bad stored scope: {e}", record.id)))
}

fn compile(
    record: KeyRecord,
    account: Account,
    policy: &Policy,
) -> Result<ResolvedKey, StoreError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        StoreError::Internal(format!("key {} has a bad stored {what}: {e}", record.id))
    };
    let cidrs = record
        .allowed_cidrs
        .iter()
        .map(|c| parse_cidr(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("CIDR", &e))?;
    let origins = record
        .allowed_origins
        .iter()
        .map(|o| OriginPattern::parse(o))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("origin", &e))?;
    let scopes = key_scopes(&record, policy)?;
    let entitlements = if account.is_operator {
        Some(policy.operator_entitlements().clone())
    } else {
        policy.plan(&account.plan).cloned()
    };
    Ok(ResolvedKey {
        scope_strings: scopes.strings(),
        scopes,
        entitlements,
        cidrs,
        origins,
        last_reported: AtomicI64::new(i64::MIN),
        record,
        account,
    })
}
