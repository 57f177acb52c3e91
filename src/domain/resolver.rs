//! `KeyResolver`: key hash → everything `decide` needs, cached in memory.
//!
//! Entries are compiled once (CIDRs, origin patterns, scopes parsed) so the
//! hot path only compares, and kept small: an entry holds what the decision
//! reads, its account is shared with every other key of that account, and
//! its scope set with every key that has the same scopes (most keys share a
//! handful). Concurrent lookups of one uncached hash share one store lookup,
//! and concurrent misses share one statement (see `loader`). Invalidation is
//! immediate on this replica; other replicas hear of it through the store's
//! notification channel. An epoch counter keeps a load that raced with an
//! invalidation from caching stale data.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::cache::{DigestCache, SlotOwner, ThreadSlots};
use super::loader::Loader;
use super::model::{
    Account, KeyKind, KeyRecord, KeyStatus, LAST_USED_RESOLUTION_MS, Millis, Mode, RatePolicy,
    StoredKeyStatus,
};
use super::network::parse_cidr;
use super::origin::OriginPattern;
use super::permissions::{Policy, ScopeSet};
use crate::ports::{Store, StoreError};
use crate::telemetry::metrics::{StoreOp, metrics};
use ipnet::IpNet;

/// What the decision, and the answers built from it, read of a key's
/// record: nothing else is kept per cached key (issue 13: at most 1 KiB an
/// entry; `tests::a_cached_entry_stays_under_one_kib` holds it there).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyFacts {
    pub id: String,
    pub account_id: String,
    pub key_hash: [u8; 32],
    pub mode: Mode,
    pub kind: KeyKind,
    pub status: StoredKeyStatus,
    pub expires_at: Millis,
    pub overlap_ends_at: Option<Millis>,
    pub signing_secret_id: Option<String>,
    /// The key's own rate limit, overriding its plan's (`None` = the plan's).
    pub rate_limit: Option<RatePolicy>,
}

impl KeyFacts {
    /// Status at `now`, as [`KeyRecord::status_at`].
    pub fn status_at(&self, now: Millis) -> KeyStatus {
        KeyStatus::at(self.status, self.expires_at, self.overlap_ends_at, now)
    }
}

impl From<KeyRecord> for KeyFacts {
    fn from(r: KeyRecord) -> Self {
        Self {
            id: r.id,
            account_id: r.account_id,
            key_hash: r.key_hash,
            mode: r.mode,
            kind: r.kind,
            status: r.status,
            expires_at: r.expires_at,
            overlap_ends_at: r.overlap_ends_at,
            signing_secret_id: r.signing_secret_id,
            rate_limit: r.rate_limit,
        }
    }
}

// As `KeyRecord`'s: the hash is not secret, but there is no reason to print it.
impl std::fmt::Debug for KeyFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFacts")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("mode", &self.mode)
            .field("kind", &self.kind)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// A key with its account, ready for decisions.
#[derive(Debug)]
pub struct ResolvedKey {
    /// What the decision reads of the key's record.
    pub record: KeyFacts,
    /// Shared by every cached key of the account.
    pub account: Arc<Account>,
    /// The key's own scopes (role expanded; a bare secret key gets `*`),
    /// shared by every cached key with the same scopes.
    pub scopes: Arc<ScopeSet>,
    pub scope_strings: Arc<[String]>,
    /// What the account's plan grants; `None` if the plan is no longer configured.
    pub entitlements: Option<Arc<ScopeSet>>,
    pub cidrs: Vec<IpNet>,
    pub origins: Vec<OriginPattern>,
    /// When this entry last reported a use ([`ResolvedKey::note_use`]).
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
    /// Accounts by the SHA-256 of their id, so keys of one account share one.
    accounts: DigestCache<Arc<Account>>,
    /// Scope sets by the scope list (or role) they were built from.
    scope_sets: Mutex<HashMap<ScopeSource, Interned>>,
    /// Store lookups of misses: coalesced per hash (a burst of one new key
    /// is one lookup) and batched (concurrent misses share a statement).
    loader: Arc<Loader>,
    epoch: AtomicU64,
}

type Interned = (Arc<ScopeSet>, Arc<[String]>);

/// What a key's scope set is made from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ScopeSource {
    Role(String),
    Scopes(Vec<String>),
    Everything,
}

/// Most distinct scope sets kept for sharing before the table starts over.
const MAX_INTERNED: usize = 4096;

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
    /// Whether a use at `now` is reported for the key's last-used time: the
    /// entry's first, then one per [`LAST_USED_RESOLUTION_MS`], the store's own
    /// resolution. Reported once a second, a key in use was written out by
    /// every flush, and the store skipped it: at 300,000 keys in use that
    /// was up to 300,000 rows a flush read and not written, and a busy key
    /// took the shared usage lock every second.
    pub fn note_use(&self, now: Millis) -> bool {
        let reported = self.last_reported.load(Ordering::Relaxed);
        now.saturating_sub(reported) >= LAST_USED_RESOLUTION_MS
            && self
                .last_reported
                .compare_exchange(reported, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

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
            loader: Loader::new(Arc::clone(&store)),
            store,
            policy,
            known: DigestCache::new(settings.max_entries, settings.ttl),
            unknown: DigestCache::new(settings.max_entries, settings.negative_ttl),
            accounts: DigestCache::new(settings.max_entries, settings.ttl),
            scope_sets: Mutex::default(),
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
        let found = self.loader.load(hash).await?;
        let Some((record, account)) = found else {
            self.unknown.insert(*hash, ());
            if self.epoch.load(Ordering::Acquire) != epoch {
                self.unknown.remove(hash);
            }
            return Ok(None);
        };
        let resolved = Arc::new(self.compile(record, account)?);
        self.known.insert(*hash, resolved.clone());
        // An invalidation that ran while we were loading may have missed our
        // insert, and another thread may have copied it already.
        if self.epoch.load(Ordering::Acquire) != epoch {
            self.known.remove(hash);
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
        Ok(Some(resolved))
    }

    /// The key as the store holds it right now, compiled but cached nowhere
    /// and sharing nothing from a cache (Explain: no cache may colour it).
    pub async fn resolve_uncached(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<Arc<ResolvedKey>>, StoreError> {
        let started = Instant::now();
        let found = self.store.find_key_by_hash(hash).await;
        metrics().store_call(StoreOp::FindKey, started.elapsed(), found.is_ok());
        let Some((record, account)) = found? else {
            return Ok(None);
        };
        let scopes = key_scopes(&record, &self.policy)?;
        let strings: Arc<[String]> = scopes.strings().into();
        let key = compile(record, Arc::new(account), scopes, strings, &self.policy)?;
        Ok(Some(Arc::new(key)))
    }

    /// What the shared cache holds for `hash`, loading and copying nothing:
    /// `None` = no entry (the next Check reads the store), `Some(None)` =
    /// remembered as unknown.
    pub fn cached(&self, hash: &[u8; 32]) -> Option<Option<Arc<ResolvedKey>>> {
        if let Some(key) = self.known.get(hash) {
            return Some(Some(key));
        }
        self.unknown.get(hash).map(|()| None)
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
        // A lookup already under way may have read the old row: later
        // callers start their own.
        self.loader.forget(hash);
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Drops everything: after an account change, or when notifications may have been missed.
    pub fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.known.clear();
        self.unknown.clear();
        self.accounts.clear();
        self.loader.forget_all();
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// The cached account if it is the one just loaded, else this one.
    fn shared_account(&self, account: Account) -> Arc<Account> {
        let slot = crate::crypto::sha256(account.id.as_bytes());
        if let Some(cached) = self.accounts.get(&slot)
            && *cached == account
        {
            return cached;
        }
        let account = Arc::new(account);
        self.accounts.insert(slot, account.clone());
        account
    }

    /// The key's scope set and its strings, shared with every key that has
    /// the same scopes.
    fn shared_scopes(&self, record: &KeyRecord) -> Result<Interned, StoreError> {
        let source = match &record.role {
            Some(role) => ScopeSource::Role(role.clone()),
            None if record.scopes.is_empty() && record.kind == KeyKind::Secret => {
                ScopeSource::Everything
            }
            None => ScopeSource::Scopes(record.scopes.clone()),
        };
        let mut sets = self
            .scope_sets
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(hit) = sets.get(&source) {
            return Ok(hit.clone());
        }
        let set = key_scopes(record, &self.policy)?;
        let strings: Arc<[String]> = set.strings().into();
        if sets.len() >= MAX_INTERNED {
            sets.clear();
        }
        sets.insert(source, (set.clone(), strings.clone()));
        Ok((set, strings))
    }

    fn compile(&self, record: KeyRecord, account: Account) -> Result<ResolvedKey, StoreError> {
        let (scopes, scope_strings) = self.shared_scopes(&record)?;
        let account = self.shared_account(account);
        compile(record, account, scopes, scope_strings, &self.policy)
    }
}

/// `record` made ready for decisions: lists parsed, and nothing kept that a
/// decision never reads (name, masked form, the unparsed lists, times).
fn compile(
    record: KeyRecord,
    account: Arc<Account>,
    scopes: Arc<ScopeSet>,
    scope_strings: Arc<[String]>,
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
    let entitlements = if account.is_operator {
        Some(policy.operator_entitlements().clone())
    } else {
        policy.plan(&account.plan).cloned()
    };
    // Kept for the entry's lifetime: no spare capacity (a collected Vec
    // starts at four slots, which for origins alone was 256 B a key).
    let (mut cidrs, mut origins) = (cidrs, origins);
    cidrs.shrink_to_fit();
    origins.shrink_to_fit();
    let mut record = KeyFacts::from(record);
    record.id.shrink_to_fit();
    record.account_id.shrink_to_fit();
    if let Some(id) = &mut record.signing_secret_id {
        id.shrink_to_fit();
    }
    Ok(ResolvedKey {
        scope_strings,
        scopes,
        entitlements,
        cidrs,
        origins,
        last_reported: AtomicI64::new(i64::MIN),
        record,
        account,
    })
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use async_trait::async_trait;

    use super::*;
    use crate::domain::loader::{MAX_BATCH, MAX_QUERIES};
    use crate::domain::model::{LiveStatus, Millis, Mode, RuleRecord, StoredKeyStatus};
    use crate::domain::permissions::{default_plans, default_roles};
    use crate::ports::KeyFilter;

    /// Answers lookups from a map, counting the statements and recording
    /// each one's hashes; each statement reads the map when it starts (as a
    /// database reads its rows), then waits until the test opens the gate,
    /// so concurrent callers pile up.
    struct Fake {
        keys: Mutex<HashMap<[u8; 32], (KeyRecord, Account)>>,
        calls: AtomicUsize,
        batches: Mutex<Vec<Vec<[u8; 32]>>>,
        gate: tokio::sync::Semaphore,
        /// Every statement fails with this while set.
        failure: Mutex<Option<StoreError>>,
    }

    /// A hash the fake store panics on.
    const POISON: [u8; 32] = [0xee; 32];

    impl Fake {
        fn batches(&self) -> Vec<Vec<[u8; 32]>> {
            self.batches.lock().unwrap().clone()
        }

        /// Lets the spawned tasks run until `n` statements have started.
        async fn started(&self, n: usize) {
            for _ in 0..1000 {
                if self.calls.load(Ordering::SeqCst) >= n {
                    return;
                }
                tokio::task::yield_now().await;
            }
            panic!("{n} statements never started");
        }

        fn set_status(&self, hash: &[u8; 32], status: StoredKeyStatus) {
            self.keys.lock().unwrap().get_mut(hash).unwrap().0.status = status;
        }
    }

    #[async_trait]
    impl Store for Fake {
        async fn find_key_by_hash(
            &self,
            hash: &[u8; 32],
        ) -> Result<Option<(KeyRecord, Account)>, StoreError> {
            let mut found = self.find_keys_by_hashes(&[*hash]).await;
            found.pop().unwrap()
        }
        async fn find_keys_by_hashes(
            &self,
            hashes: &[[u8; 32]],
        ) -> Vec<Result<Option<(KeyRecord, Account)>, StoreError>> {
            self.batches.lock().unwrap().push(hashes.to_vec());
            let failure = self.failure.lock().unwrap().clone();
            let rows: Vec<_> = {
                let keys = self.keys.lock().unwrap();
                hashes.iter().map(|h| keys.get(h).cloned()).collect()
            };
            self.calls.fetch_add(1, Ordering::SeqCst);
            let _permit = self.gate.acquire().await.unwrap();
            assert!(!hashes.contains(&POISON), "the fake store was poisoned");
            match failure {
                Some(e) => hashes.iter().map(|_| Err(e.clone())).collect(),
                None => rows.into_iter().map(Ok).collect(),
            }
        }
        async fn ping(&self) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn insert_account(&self, _: &Account) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn get_account(&self, _: &str) -> Result<Option<Account>, StoreError> {
            unreachable!()
        }
        async fn list_accounts(&self, _: Option<&str>, _: u64) -> Result<Vec<Account>, StoreError> {
            unreachable!()
        }
        async fn update_account(&self, _: &Account) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn add_store(&self, _: &str, _: &str, _: Millis) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn remove_store(&self, _: &str, _: &str) -> Result<bool, StoreError> {
            unreachable!()
        }
        async fn insert_key(&self, _: &KeyRecord) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn get_key(&self, _: &str) -> Result<Option<KeyRecord>, StoreError> {
            unreachable!()
        }
        async fn list_keys(
            &self,
            _: &KeyFilter,
            _: Millis,
            _: Option<&str>,
            _: u64,
        ) -> Result<Vec<KeyRecord>, StoreError> {
            unreachable!()
        }
        async fn update_key(&self, _: &KeyRecord) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn rotate_key(
            &self,
            _: &KeyRecord,
            _: &KeyRecord,
            _: Option<&KeyRecord>,
        ) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn record_key_usage(&self, _: &[(String, Millis)]) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn insert_rule(&self, _: &RuleRecord) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn list_rules(&self, _: Option<&str>, _: u64) -> Result<Vec<RuleRecord>, StoreError> {
            unreachable!()
        }
        async fn all_rules(&self) -> Result<Vec<RuleRecord>, StoreError> {
            unreachable!()
        }
        async fn delete_rule(&self, _: &str) -> Result<bool, StoreError> {
            unreachable!()
        }
        async fn get_meta(&self, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
            unreachable!()
        }
        async fn insert_meta(&self, _: &str, _: &[u8]) -> Result<bool, StoreError> {
            unreachable!()
        }
    }

    fn account() -> Account {
        Account {
            id: "acct_1".into(),
            name: "Shop".into(),
            plan: "PRIME".into(),
            live_status: LiveStatus::NotRequested,
            is_operator: false,
            store_ids: vec![],
            created_at: 0,
            updated_at: 0,
            version: 1,
        }
    }

    fn key(n: u8) -> KeyRecord {
        KeyRecord {
            id: format!("key_{n}"),
            account_id: "acct_1".into(),
            mode: Mode::Test,
            kind: KeyKind::Secret,
            name: "a name the decision never reads".into(),
            key_hash: [n; 32],
            masked: "lk_test_sk_…abcd".into(),
            scopes: vec!["feedback.read".into(), "surveys.*".into()],
            role: None,
            allowed_cidrs: vec!["10.0.0.0/8".into()],
            allowed_origins: vec![],
            status: StoredKeyStatus::Active,
            expires_at: Millis::MAX,
            created_at: 0,
            updated_at: 0,
            last_used_at: None,
            predecessor_id: None,
            successor_id: None,
            overlap_ends_at: None,
            version: 1,
            signing_secret_id: None,
            rate_limit: None,
            suspension_cause: None,
        }
    }

    fn resolver(keys: &[KeyRecord]) -> (KeyResolver, Arc<Fake>) {
        let fake = Arc::new(Fake {
            keys: Mutex::new(
                keys.iter()
                    .map(|k| (k.key_hash, (k.clone(), account())))
                    .collect(),
            ),
            calls: AtomicUsize::new(0),
            batches: Mutex::default(),
            gate: tokio::sync::Semaphore::new(0),
            failure: Mutex::default(),
        });
        let policy = Arc::new(Policy::new(&default_plans(), &default_roles()).unwrap());
        let resolver = KeyResolver::new(fake.clone(), policy, CacheSettings::default());
        (resolver, fake)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_lookups_of_one_hash_share_one_query() {
        let (resolver, fake) = resolver(&[key(1)]);
        let resolver = Arc::new(resolver);
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let resolver = resolver.clone();
                tokio::spawn(async move { resolver.resolve(&[1; 32]).await })
            })
            .collect();
        // On this one thread, every task runs up to its first wait.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        fake.gate.add_permits(100);
        for task in tasks {
            assert!(task.await.unwrap().unwrap().is_some());
        }
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        // An invalidation starts a fresh lookup.
        resolver.invalidate_key(&[1; 32]);
        assert!(resolver.resolve(&[1; 32]).await.unwrap().is_some());
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    }

    fn spawn_resolve(
        resolver: &Arc<KeyResolver>,
        n: u8,
    ) -> tokio::task::JoinHandle<Result<Option<Arc<ResolvedKey>>, StoreError>> {
        let resolver = resolver.clone();
        tokio::spawn(async move { resolver.resolve(&[n; 32]).await })
    }

    /// Every query place taken by one gated statement each: later misses queue.
    async fn fill_query_places(
        resolver: &Arc<KeyResolver>,
        fake: &Fake,
    ) -> Vec<tokio::task::JoinHandle<Result<Option<Arc<ResolvedKey>>, StoreError>>> {
        let mut tasks = Vec::new();
        for n in 0..MAX_QUERIES {
            tasks.push(spawn_resolve(resolver, 200 + u8::try_from(n).unwrap()));
            fake.started(n + 1).await;
        }
        tasks
    }

    #[tokio::test(flavor = "current_thread")]
    async fn misses_arriving_during_queries_share_the_next_statement() {
        let keys: Vec<KeyRecord> = (1..=150).chain(200..210).map(key).collect();
        let (resolver, fake) = resolver(&keys);
        let resolver = Arc::new(resolver);
        let mut tasks = fill_query_places(&resolver, &fake).await;
        // 150 distinct misses (and a second caller of each of the first
        // ten, which joins its lookup) while every query place is taken.
        for n in (1..=150).chain(1..=10) {
            tasks.push(spawn_resolve(&resolver, n));
        }
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(fake.calls.load(Ordering::SeqCst), MAX_QUERIES);
        fake.gate.add_permits(1000);
        for task in tasks {
            assert!(task.await.unwrap().unwrap().is_some());
        }
        let batches = fake.batches();
        // The gated ones, then the queue in as few statements as the bound allows.
        let queued = &batches[MAX_QUERIES..];
        assert_eq!(queued.len(), 150usize.div_ceil(MAX_BATCH), "{queued:?}");
        assert!(queued.iter().all(|b| b.len() <= MAX_BATCH));
        let mut asked: Vec<[u8; 32]> = queued.concat();
        asked.sort_unstable();
        let expected: Vec<[u8; 32]> = (1..=150).map(|n| [n; 32]).collect();
        assert_eq!(asked, expected, "each miss asked once");
        // Now cached: no statement more.
        assert!(resolver.resolve(&[77; 32]).await.unwrap().is_some());
        assert_eq!(fake.batches().len(), batches.len());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_lone_miss_is_looked_up_at_once_and_unknown_keys_are_none() {
        let (resolver, fake) = resolver(&[key(1)]);
        let resolver = Arc::new(resolver);
        let known = spawn_resolve(&resolver, 1);
        fake.started(1).await;
        let unknown = spawn_resolve(&resolver, 9);
        fake.started(2).await;
        fake.gate.add_permits(10);
        assert!(known.await.unwrap().unwrap().is_some());
        assert!(unknown.await.unwrap().unwrap().is_none());
        assert_eq!(fake.batches(), [vec![[1; 32]], vec![[9; 32]]]);
    }

    /// A revoke that commits while a batch's statement is under way: the
    /// statement read the key before it, so its callers get the old row,
    /// but the cache must not keep it, and the next Check reads the new one.
    #[tokio::test(flavor = "current_thread")]
    async fn a_revoke_during_a_batch_leaves_no_stale_entry() {
        let keys: Vec<KeyRecord> = (1..=5).chain(200..210).map(key).collect();
        let (resolver, fake) = resolver(&keys);
        let resolver = Arc::new(resolver);
        let gated = fill_query_places(&resolver, &fake).await;
        let batch: Vec<_> = (1..=5).map(|n| spawn_resolve(&resolver, n)).collect();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        // One gated statement ends; its task takes the queue as one batch.
        fake.gate.add_permits(1);
        fake.started(MAX_QUERIES + 1).await;
        assert_eq!(fake.batches()[MAX_QUERIES].len(), 5);
        // Key 3 is revoked (and its replica told) while that batch runs.
        fake.set_status(&[3; 32], StoredKeyStatus::Revoked);
        resolver.invalidate_key(&[3; 32]);
        fake.gate.add_permits(1000);
        for task in gated.into_iter().chain(batch) {
            assert!(task.await.unwrap().unwrap().is_some());
        }
        assert!(
            resolver.cached(&[3; 32]).is_none(),
            "the row read before the revoke was cached"
        );
        let now = resolver.resolve(&[3; 32]).await.unwrap().unwrap();
        assert_eq!(now.record.status, StoredKeyStatus::Revoked);
    }

    /// A hash queued, invalidated, and asked for again before any statement
    /// took it: one statement answers both callers (it starts after the
    /// invalidation, so both may have its answer).
    #[tokio::test(flavor = "current_thread")]
    async fn a_hash_queued_twice_is_asked_once() {
        let keys: Vec<KeyRecord> = (1..=2).chain(200..210).map(key).collect();
        let (resolver, fake) = resolver(&keys);
        let resolver = Arc::new(resolver);
        let mut tasks = fill_query_places(&resolver, &fake).await;
        tasks.push(spawn_resolve(&resolver, 1));
        tokio::task::yield_now().await;
        resolver.invalidate_key(&[1; 32]);
        tasks.push(spawn_resolve(&resolver, 1));
        tasks.push(spawn_resolve(&resolver, 2));
        tokio::task::yield_now().await;
        fake.gate.add_permits(1000);
        for task in tasks {
            assert!(task.await.unwrap().unwrap().is_some());
        }
        assert_eq!(fake.batches()[MAX_QUERIES..], [vec![[1; 32], [2; 32]]]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_cancelled_caller_strands_no_one_and_abandoned_misses_are_not_asked() {
        let keys: Vec<KeyRecord> = (1..=3).chain(200..210).map(key).collect();
        let (resolver, fake) = resolver(&keys);
        let resolver = Arc::new(resolver);
        // The caller whose miss started the statement goes away; the one
        // that joined it still gets the answer.
        let first = spawn_resolve(&resolver, 1);
        fake.started(1).await;
        let joined = spawn_resolve(&resolver, 1);
        tokio::task::yield_now().await;
        first.abort();
        let second = spawn_resolve(&resolver, 200);
        fake.started(2).await;
        // Queued: 2, whose only caller goes away, and 3.
        let gone = spawn_resolve(&resolver, 2);
        let kept = spawn_resolve(&resolver, 3);
        tokio::task::yield_now().await;
        gone.abort();
        assert!(gone.await.unwrap_err().is_cancelled());
        fake.gate.add_permits(1000);
        assert!(joined.await.unwrap().unwrap().is_some());
        assert!(second.await.unwrap().unwrap().is_some());
        assert!(kept.await.unwrap().unwrap().is_some());
        assert_eq!(fake.batches()[2..], [vec![[3; 32]]]);
        assert!(first.await.unwrap_err().is_cancelled());
        // Not stuck: 2 is looked up when someone asks again.
        assert!(resolver.resolve(&[2; 32]).await.unwrap().is_some());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failed_statement_fails_every_waiter_and_caches_nothing() {
        let keys: Vec<KeyRecord> = (1..=4).chain(200..210).map(key).collect();
        let (resolver, fake) = resolver(&keys);
        let resolver = Arc::new(resolver);
        *fake.failure.lock().unwrap() = Some(StoreError::Unavailable("down".into()));
        let mut tasks = fill_query_places(&resolver, &fake).await;
        tasks.extend((1..=4).map(|n| spawn_resolve(&resolver, n)));
        tokio::task::yield_now().await;
        fake.gate.add_permits(1000);
        for task in tasks {
            let result = task.await.unwrap();
            assert!(
                matches!(result, Err(StoreError::Unavailable(_))),
                "{result:?}"
            );
        }
        assert!(resolver.cached(&[1; 32]).is_none());
        *fake.failure.lock().unwrap() = None;
        assert!(resolver.resolve(&[1; 32]).await.unwrap().is_some());
    }

    /// A statement whose task dies (here: the store panics) fails its own
    /// callers, and the queue behind it is still served.
    #[tokio::test(flavor = "current_thread")]
    async fn a_query_task_that_dies_fails_its_callers_and_the_queue_goes_on() {
        let keys: Vec<KeyRecord> = (1..=3)
            .chain(200..210)
            .chain([POISON[0]])
            .map(key)
            .collect();
        let (resolver, fake) = resolver(&keys);
        let resolver = Arc::new(resolver);
        let poison = spawn_resolve(&resolver, 0xee);
        fake.started(1).await;
        let other = spawn_resolve(&resolver, 200);
        fake.started(2).await;
        let queued: Vec<_> = (1..=3).map(|n| spawn_resolve(&resolver, n)).collect();
        tokio::task::yield_now().await;
        fake.gate.add_permits(1000);
        assert!(matches!(
            poison.await.unwrap(),
            Err(StoreError::Internal(_))
        ));
        assert!(other.await.unwrap().unwrap().is_some());
        for task in queued {
            assert!(task.await.unwrap().unwrap().is_some());
        }
        // Both places are free again: two new misses start two statements
        // while neither can finish.
        fake.gate.forget_permits(usize::MAX);
        let calls = fake.calls.load(Ordering::SeqCst);
        let a = spawn_resolve(&resolver, 201);
        let b = spawn_resolve(&resolver, 202);
        fake.started(calls + 2).await;
        fake.gate.add_permits(10);
        assert!(a.await.unwrap().unwrap().is_some());
        assert!(b.await.unwrap().unwrap().is_some());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn keys_share_their_account_and_scope_set_and_keep_only_what_decides() {
        let (resolver, fake) = resolver(&[key(1), key(2)]);
        fake.gate.add_permits(100);
        let one = resolver.resolve(&[1; 32]).await.unwrap().unwrap();
        let two = resolver.resolve(&[2; 32]).await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&one.account, &two.account));
        assert!(Arc::ptr_eq(&one.scopes, &two.scopes));
        assert!(Arc::ptr_eq(&one.scope_strings, &two.scope_strings));
        assert_eq!(&*one.scope_strings, ["feedback.read", "surveys.*"]);
        assert_eq!(one.cidrs.len(), 1);
        assert_eq!(one.record.id, "key_1");
    }

    /// A cached key reports its first use, then one a minute: what the
    /// store keeps of last-used times, and no more often.
    #[tokio::test(flavor = "current_thread")]
    async fn a_cached_key_reports_a_use_once_a_minute() {
        let (resolver, fake) = resolver(&[key(7)]);
        fake.gate.add_permits(100);
        let cached = resolver.resolve(&[7; 32]).await.unwrap().unwrap();
        let minute = LAST_USED_RESOLUTION_MS;
        let reported: Vec<Millis> = [1_000, 1_001, 30_000, minute, minute + 999]
            .into_iter()
            .chain([minute + 1_000, minute + 1_500, 2 * minute + 999])
            .chain([2 * minute + 1_000, 10 * minute])
            .filter(|at| cached.note_use(*at))
            .collect();
        assert_eq!(
            reported,
            [1_000, minute + 1_000, 2 * minute + 1_000, 10 * minute]
        );
    }

    /// What one cached key costs: its entry (with the heap it owns alone)
    /// and its slot in the shared map, at the map's worst load (just grown:
    /// half full). Allocations are rounded up to 16 bytes, plus an eighth
    /// for the allocator's size classes. The account, scope set and plan
    /// are shared with other keys and not counted.
    fn entry_bytes(key: &ResolvedKey) -> usize {
        let alloc = |n: usize| {
            if n == 0 {
                0
            } else {
                let n = n.next_multiple_of(16);
                n + n / 8
            }
        };
        let origins: usize = key.origins.iter().map(|o| alloc(o.to_string().len())).sum();
        let owned = alloc(std::mem::size_of::<ResolvedKey>() + 16) // the Arc's counts
            + alloc(key.record.id.capacity())
            + alloc(key.record.account_id.capacity())
            + alloc(key.record.signing_secret_id.as_ref().map_or(0, String::capacity))
            + alloc(key.cidrs.capacity() * std::mem::size_of::<IpNet>())
            + alloc(key.origins.capacity() * std::mem::size_of::<OriginPattern>())
            + origins;
        let slot = std::mem::size_of::<([u8; 32], (Arc<ResolvedKey>, Instant))>() + 1;
        owned + 2 * slot
    }

    /// Issue 13: at most 1 KiB per cached key. Before, an entry held the
    /// whole `KeyRecord` (name, masked form, lists, times, rotation links):
    /// this bounds both the estimate and the entry's own size, so neither
    /// can grow back unnoticed.
    #[tokio::test(flavor = "current_thread")]
    async fn a_cached_entry_stays_under_one_kib() {
        use crate::domain::model::new_id;
        let mut typical = key(7);
        typical.id = new_id("key");
        typical.account_id = new_id("acct");
        typical.allowed_cidrs = vec!["203.0.113.0/24".into(), "2001:db8::/32".into()];
        typical.allowed_origins = vec!["https://shop.example.com".into()];
        typical.signing_secret_id = Some(new_id("sec"));
        typical.rate_limit = Some(RatePolicy::new(100, 1, 100).unwrap());
        typical.predecessor_id = Some(new_id("key"));
        typical.overlap_ends_at = Some(Millis::MAX - 1);
        let (resolver, fake) = resolver(&[typical]);
        fake.gate.add_permits(100);
        let cached = resolver.resolve(&[7; 32]).await.unwrap().unwrap();
        let bytes = entry_bytes(&cached);
        let own = std::mem::size_of::<ResolvedKey>();
        println!("ResolvedKey {own} B; a cached entry ~{bytes} B");
        assert!(bytes < 1024, "a cached key costs ~{bytes} B, over 1 KiB");
        // The full record alone was ~420 B; what decides fits in far less.
        assert!(own <= 320, "ResolvedKey grew to {own} B");
        assert!(std::mem::size_of::<KeyFacts>() < std::mem::size_of::<KeyRecord>() / 2);
    }
}
