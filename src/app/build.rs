//! The store and the domain's services, as `serve` and the one-shot CLI
//! commands both build them.

use std::sync::Arc;

use ipnet::IpNet;

use super::AppError;
use crate::config::Settings;
use crate::crypto::envelope::MasterKey;
use crate::domain::accounts::AccountManager;
use crate::domain::check::Checker;
use crate::domain::keys::KeyManager;
use crate::domain::limits::{Descriptors, KeyLimits, Limiter};
use crate::domain::model::RatePolicy;
use crate::domain::permissions::Policy;
use crate::domain::resolver::KeyResolver;
use crate::domain::reveal::RevealManager;
use crate::domain::routes::RouteTable;
use crate::domain::services::Services;
use crate::domain::signing::{SigningDeps, SigningManager};
use crate::domain::tokens::TokenManager;
use crate::domain::usage::UsageRecorder;
use crate::ports::{Clock, RevealStore, SigningStore, Store, SystemClock};
use crate::store::SqlStore;

/// The stores of features that keep their own port traits (`SqlStore`
/// implements them all).
pub trait FeatureStores: SigningStore + RevealStore {}
impl<T: SigningStore + RevealStore> FeatureStores for T {}

/// Opens the configured store, creating the SQLite data directory if needed.
pub async fn open_store(settings: &Settings) -> Result<SqlStore, AppError> {
    if settings.database_url.expose().starts_with("sqlite:") {
        std::fs::create_dir_all(&settings.data_dir).map_err(|source| AppError::DataDir {
            path: settings.data_dir.display().to_string(),
            source,
        })?;
    }
    Ok(SqlStore::connect(&settings.database_url).await?)
}

/// The managers that need only the store, built before the listeners are
/// bound (start-up registers the bootstrap token and loads the route rules
/// with them); [`Parts::into_services`] adds the checker once the token
/// manager, whose issuer is the bound HTTP address, is loaded.
pub struct Parts {
    pub policy: Arc<Policy>,
    pub resolver: Arc<KeyResolver>,
    pub usage: Arc<UsageRecorder>,
    pub accounts: AccountManager,
    pub keys: KeyManager,
    pub routes: RouteTable,
    pub signing: Arc<SigningManager>,
    pub reveals: RevealManager,
    clock: Arc<dyn Clock>,
    key_prefix: String,
    trusted_proxies: Vec<IpNet>,
    limits: Arc<KeyLimits>,
    descriptors: Arc<Descriptors>,
    bad_signatures: Option<RatePolicy>,
}

pub fn build(
    settings: &Settings,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    master_key: Arc<MasterKey>,
    features: Arc<impl FeatureStores>,
) -> Parts {
    let policy = Arc::new(settings.policy.clone());
    let resolver = Arc::new(KeyResolver::new(
        store.clone(),
        policy.clone(),
        settings.cache,
    ));
    let signing = Arc::new(SigningManager::new(SigningDeps {
        store: features.clone(),
        keys: store.clone(),
        resolver: resolver.clone(),
        master_key: master_key.clone(),
        clock: clock.clone(),
        settings: settings.signing.signing.clone(),
    }));
    let reveals = RevealManager::new(
        features,
        master_key,
        clock.clone(),
        settings.signing.reveal_ttl_secs,
    );
    Parts {
        accounts: AccountManager::new(
            store.clone(),
            policy.clone(),
            clock.clone(),
            resolver.clone(),
        ),
        routes: RouteTable::new(store.clone(), clock.clone()),
        keys: KeyManager::new(
            store,
            policy.clone(),
            clock.clone(),
            resolver.clone(),
            settings.keys.clone(),
        ),
        policy,
        resolver,
        usage: Arc::new(UsageRecorder::default()),
        signing,
        reveals,
        key_prefix: settings.keys.prefix.clone(),
        trusted_proxies: settings.trusted_proxies.clone(),
        limits: Arc::new(KeyLimits {
            limiter: Arc::new(match &settings.rate_limits.global {
                Some(g) => Limiter::new(clock.clone()).with_global(g.replicas),
                None => Limiter::new(clock.clone()),
            }),
            plans: settings.rate_limits.plans.clone(),
            failures: settings.rate_limits.failures,
        }),
        descriptors: Arc::new(settings.rate_limits.descriptors.clone()),
        bad_signatures: settings.rate_limits.bad_signatures,
        clock,
    }
}

impl Parts {
    /// The services, with the checker built on `tokens` (`None` = JWTs are
    /// denied: one-shot CLI commands load no signing keys).
    pub fn into_services(self, tokens: Option<Arc<TokenManager>>) -> Services {
        let checker = Checker::new(
            self.resolver.clone(),
            self.clock.clone(),
            self.usage.clone(),
            self.key_prefix,
            self.trusted_proxies,
            tokens.clone(),
        )
        .with_signed_requests(self.signing.clone())
        .with_rate_limits(self.limits.clone());
        let checker = match self.bad_signatures {
            Some(budget) => checker.with_auto_suspend(self.keys.clone(), budget),
            None => checker,
        };
        Services {
            accounts: self.accounts,
            keys: self.keys,
            routes: self.routes,
            checker,
            signing: self.signing,
            reveals: self.reveals,
            tokens,
            resolver: self.resolver,
            usage: self.usage,
            clock: self.clock,
            limits: self.limits,
            descriptors: self.descriptors,
        }
    }
}

/// The services without listeners or signing keys, for one-shot commands.
pub async fn offline_services(settings: &Settings, db: &SqlStore) -> Result<Services, AppError> {
    let store: Arc<dyn Store> = Arc::new(db.clone());
    let master_key = Arc::new(super::master_key::resolve(settings, store.as_ref()).await?);
    let parts = build(
        settings,
        store,
        Arc::new(SystemClock),
        master_key,
        Arc::new(db.clone()),
    );
    Ok(parts.into_services(None))
}
