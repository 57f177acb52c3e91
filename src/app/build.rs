//! The store and the domain's services, as `serve` and the one-shot CLI
//! commands both build them.

use std::sync::Arc;

use crate::domain::network::ClientIpRule;

use super::AppError;
use crate::config::Settings;
use crate::crypto::envelope::MasterKey;
use crate::domain::accounts::AccountManager;
use crate::domain::analytics::Analytics;
use crate::domain::audit::AuditManager;
use crate::domain::check::Checker;
use crate::domain::consent::ConsentManager;
use crate::domain::keys::KeyManager;
use crate::domain::limits::{Descriptors, KeyLimits, Limiter, Space};
use crate::domain::model::RatePolicy;
use crate::domain::permissions::Policy;
use crate::domain::resolver::KeyResolver;
use crate::domain::reveal::RevealManager;
use crate::domain::routes::RouteTable;
use crate::domain::services::Services;
use crate::domain::signing::{SigningDeps, SigningManager};
use crate::domain::tokens::TokenManager;
use crate::domain::usage::UsageRecorder;
use crate::domain::vault::integrations::{IntegrationDeps, IntegrationManager};
use crate::domain::webhooks::{WebhookDeps, WebhookManager};
use crate::outbound::HttpsProbe;
use crate::ports::{
    AuditStore, Clock, ConsentStore, IntegrationStore, RevealStore, SigningStore, Store,
    SystemClock, UsageStore, WebhookStore,
};
use crate::store::SqlStore;
use crate::telemetry::metrics::{Limit, metrics};

/// The stores of features that keep their own port traits (`SqlStore`
/// implements them all).
pub trait FeatureStores:
    SigningStore
    + RevealStore
    + IntegrationStore
    + ConsentStore
    + AuditStore
    + WebhookStore
    + UsageStore
{
}
impl<T> FeatureStores for T where
    T: SigningStore
        + RevealStore
        + IntegrationStore
        + ConsentStore
        + AuditStore
        + WebhookStore
        + UsageStore
{
}

/// Opens the configured store, creating the SQLite data directory if needed.
pub async fn open_store(settings: &Settings) -> Result<SqlStore, AppError> {
    if settings.database_url.expose().starts_with("sqlite:") {
        std::fs::create_dir_all(&settings.data_dir).map_err(|source| AppError::DataDir {
            path: settings.data_dir.display().to_string(),
            source,
        })?;
    }
    Ok(SqlStore::connect_with(&settings.database_url, settings.store).await?)
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
    pub integrations: Arc<IntegrationManager>,
    /// Flow configurations and signed consent links.
    pub consent: Arc<ConsentManager>,
    /// The audit trail: reading, outcome batches, retention.
    pub audit: Arc<AuditManager>,
    /// Outcome recording, usage analytics and the advisor.
    pub analytics: Arc<Analytics>,
    pub webhooks: Arc<WebhookManager>,
    clock: Arc<dyn Clock>,
    key_prefix: String,
    client_ip: ClientIpRule,
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
) -> Result<Parts, AppError> {
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
    let probe = HttpsProbe::new(&settings.integrations).map_err(AppError::Server)?;
    let integrations = Arc::new(IntegrationManager::new(IntegrationDeps {
        store: features.clone(),
        accounts: store.clone(),
        master_key: master_key.clone(),
        probe: Arc::new(probe),
        clock: clock.clone(),
        allow_insecure_targets: settings.integrations.allow_insecure_targets,
        retention_days: settings.integrations.test_retention_days,
    }));
    let consent = Arc::new(ConsentManager::new(
        features.clone(),
        store.clone(),
        clock.clone(),
    ));
    let audit = Arc::new(AuditManager::new(
        features.clone(),
        clock.clone(),
        settings.audit.retention_days,
    ));
    let sender = HttpsProbe::new(&crate::config::IntegrationsSettings {
        allow_insecure_targets: settings.webhooks.allow_insecure_targets,
        test_timeout: settings.webhooks.timeout,
        max_body_bytes: settings.webhooks.max_body_bytes,
        ..settings.integrations.clone()
    })
    .map_err(AppError::Server)?;
    let webhooks = Arc::new(WebhookManager::new(WebhookDeps {
        store: features.clone(),
        accounts: store.clone(),
        sender: Arc::new(sender),
        master_key: master_key.clone(),
        clock: clock.clone(),
        allow_insecure_targets: settings.webhooks.allow_insecure_targets,
        retention_days: settings.webhooks.retention_days,
    }));
    let analytics = super::usage_tasks::analytics(
        settings,
        store.clone(),
        features.clone(),
        (audit.clone(), webhooks.clone()),
        policy.clone(),
        clock.clone(),
    )?;
    let reveals = RevealManager::new(
        features.clone(),
        master_key,
        clock.clone(),
        settings.signing.reveal_ttl_secs,
    );
    Ok(Parts {
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
        client_ip: settings.client_ip.clone(),
        limits: Arc::new(KeyLimits {
            limiter: Arc::new(
                match &settings.rate_limits.global {
                    Some(g) => Limiter::new(clock.clone()).with_global(g.replicas),
                    None => Limiter::new(clock.clone()),
                }
                .with_limited_hook(Arc::new(count_limited)),
            ),
            plans: settings.rate_limits.plans.clone(),
            failures: settings.rate_limits.failures,
        }),
        descriptors: Arc::new(settings.rate_limits.descriptors.clone()),
        bad_signatures: settings.rate_limits.bad_signatures,
        integrations,
        consent,
        analytics,
        audit,
        webhooks,
        clock,
    })
}

/// The limiter's hook: each refused request counted by the limit that
/// refused it (the domain does not know the metrics).
fn count_limited(space: Space) {
    metrics().rate_limited(match space {
        Space::Key => Limit::Key,
        Space::Descriptor => Limit::Descriptor,
        Space::FailedAuth => Limit::FailedAuth,
        Space::BadSignature => Limit::BadSignature,
    });
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
            self.client_ip,
            tokens.clone(),
        )
        .with_signed_requests(self.signing.clone())
        .with_rate_limits(self.limits.clone());
        let checker = match &self.analytics.recorder {
            Some(recorder) => checker.with_outcomes(recorder.clone()),
            None => checker,
        };
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
            integrations: self.integrations,
            consent: self.consent,
            audit: self.audit,
            analytics: self.analytics,
            webhooks: self.webhooks,
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
    let master_key = Arc::new(super::master_key::resolve(settings, store.as_ref(), db).await?);
    let parts = build(
        settings,
        store,
        Arc::new(SystemClock),
        master_key,
        Arc::new(db.clone()),
    )?;
    Ok(parts.into_services(None))
}
