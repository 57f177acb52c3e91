//! `[rate_limits]`: the deployment default for plans without a limit, the
//! per-address budget for failed authentications, and the descriptor
//! limits Envoy's rate-limit filter asks about. Every limit is parsed here,
//! at start-up: one that cannot be parsed stops the start, naming its field.

use serde::Deserialize;

use super::{ConfigError, invalid};
use crate::crypto::secret::Secret;
use crate::domain::limits::{
    DescriptorRule, Descriptors, FailureBudget, PlanLimits, PlanRate, RatePolicy,
};
use crate::domain::permissions::PlanDef;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    /// Live-mode limit of every plan that sets no `rate_limit`. Default
    /// `1200/min`; `unlimited` turns it off.
    pub default: String,
    /// Failed authentications (malformed, unknown, revoked credentials)
    /// allowed per client address. Default `20/min`; `unlimited` = off.
    pub failed_auth: String,
    /// How long an address that spent that budget is refused. Default 300.
    pub failed_auth_cooldown_seconds: u64,
    /// Requests with a missing or invalid signature a valid key may make
    /// before it is suspended (`auto_suspended_brute_force`). Default
    /// `10/h`; `unlimited` = never.
    pub bad_signatures: String,
    /// Limits for Envoy's rate-limit service (`ShouldRateLimit`).
    pub descriptors: Vec<DescriptorConfig>,
    /// `redis://…`: key and descriptor limits hold for the sum of all
    /// replicas (also `--redis-url` / `LATCHKEY_REDIS_URL`). Unset = in memory.
    pub redis_url: Option<String>,
    /// Replicas sharing the limits: while Redis is unreachable each one
    /// enforces `limit ÷ replicas`. Default 2.
    pub replicas: u64,
    /// How often local counts are reconciled with Redis. Default 100.
    pub sync_interval_ms: u64,
    /// Ask Redis on every request instead (exact, for low-rate limits).
    pub strict: bool,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        Self {
            default: "1200/min".to_owned(),
            failed_auth: "20/min".to_owned(),
            failed_auth_cooldown_seconds: 300,
            bad_signatures: "10/h".to_owned(),
            descriptors: Vec::new(),
            redis_url: None,
            replicas: 2,
            sync_interval_ms: 100,
            strict: false,
        }
    }
}

/// One `[[rate_limits.descriptors]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescriptorConfig {
    /// Envoy's rate-limit domain.
    pub domain: String,
    /// The descriptor's entries, in order; an entry without `value` counts
    /// each distinct value separately.
    pub entries: Vec<EntryConfig>,
    pub requests: u64,
    pub per_seconds: u64,
    /// At most this many at once; default (0) = `requests`.
    #[serde(default)]
    pub burst: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryConfig {
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
}

/// What the rate limits run with.
#[derive(Debug, Clone, Default)]
pub struct RateLimitSettings {
    pub plans: PlanLimits,
    pub failures: Option<FailureBudget>,
    /// Bad signatures a key may send before it is suspended; `None` = never.
    pub bad_signatures: Option<RatePolicy>,
    pub descriptors: Descriptors,
    /// Limits shared through Redis; `None` = in memory only.
    pub global: Option<GlobalLimits>,
}

/// `[rate_limits]` Redis settings.
#[derive(Clone)]
pub struct GlobalLimits {
    pub redis_url: Secret<String>,
    pub replicas: u64,
    pub sync_interval: std::time::Duration,
    pub strict: bool,
}

impl std::fmt::Debug for GlobalLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("GlobalLimits")
            .field("replicas", &self.replicas)
            .field("sync_interval", &self.sync_interval)
            .field("strict", &self.strict)
            .finish_non_exhaustive()
    }
}

fn policy(field: &'static str, what: &str, s: &str) -> Result<Option<RatePolicy>, ConfigError> {
    RatePolicy::parse(s).map_err(|e| invalid(field, format!("{what}{e}")))
}

impl RateLimitsConfig {
    pub(super) fn validate(&self, plans: &[PlanDef]) -> Result<RateLimitSettings, ConfigError> {
        let default = policy("rate_limits.default", "", &self.default)?;
        let mut rates = Vec::with_capacity(plans.len());
        for p in plans {
            let plan = format!("plan `{}`: ", p.name);
            let live = match &p.rate_limit {
                // `unlimited` on the plan beats the deployment default.
                Some(s) => Some(policy("plans.rate_limit", &plan, s)?),
                None => None,
            };
            let test = match &p.test_rate_limit {
                Some(s) => policy("plans.test_rate_limit", &plan, s)?,
                None => None,
            };
            rates.push((p.name.as_str(), live, test));
        }
        let plan_limits = PlanLimits::new(
            rates
                .into_iter()
                .map(|(name, live, test)| (name, PlanRate { live, test })),
            default,
        );
        let failures = policy("rate_limits.failed_auth", "", &self.failed_auth)?;
        if !(1..=86_400).contains(&self.failed_auth_cooldown_seconds) {
            return Err(invalid(
                "rate_limits.failed_auth_cooldown_seconds",
                "must be between 1 and 86400",
            ));
        }
        let failures = failures.map(|p| FailureBudget {
            policy: p,
            cooldown_seconds: self.failed_auth_cooldown_seconds,
        });
        let mut rules = Vec::with_capacity(self.descriptors.len());
        for (i, d) in self.descriptors.iter().enumerate() {
            let at = format!("entry {}: ", i + 1);
            if d.domain.is_empty() {
                return Err(invalid(
                    "rate_limits.descriptors.domain",
                    format!("{at}is empty"),
                ));
            }
            if d.entries.is_empty() || d.entries.iter().any(|e| e.key.is_empty()) {
                return Err(invalid(
                    "rate_limits.descriptors.entries",
                    format!("{at}needs at least one entry, each with a non-empty `key`"),
                ));
            }
            let p = RatePolicy::new(d.requests, d.per_seconds, d.burst)
                .map_err(|e| invalid("rate_limits.descriptors", format!("{at}{e}")))?;
            rules.push(DescriptorRule::new(
                &d.domain,
                d.entries
                    .iter()
                    .map(|e| (e.key.as_str(), e.value.as_deref())),
                p,
            ));
        }
        let global = match self.redis_url.as_deref() {
            None | Some("") if self.strict => {
                return Err(invalid(
                    "rate_limits.strict",
                    "needs rate_limits.redis_url (or --redis-url)",
                ));
            }
            None | Some("") => None,
            Some(url) => {
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    return Err(invalid(
                        "rate_limits.redis_url",
                        "must start with redis:// or rediss://",
                    ));
                }
                if !(1..=1000).contains(&self.replicas) {
                    return Err(invalid(
                        "rate_limits.replicas",
                        "must be between 1 and 1000",
                    ));
                }
                if !(10..=10_000).contains(&self.sync_interval_ms) {
                    return Err(invalid(
                        "rate_limits.sync_interval_ms",
                        "must be between 10 and 10000",
                    ));
                }
                Some(GlobalLimits {
                    redis_url: Secret::new(url.to_owned()),
                    replicas: self.replicas,
                    sync_interval: std::time::Duration::from_millis(self.sync_interval_ms),
                    strict: self.strict,
                })
            }
        };
        Ok(RateLimitSettings {
            global,
            plans: plan_limits,
            failures,
            bad_signatures: policy("rate_limits.bad_signatures", "", &self.bad_signatures)?,
            descriptors: Descriptors::new(rules),
        })
    }
}
