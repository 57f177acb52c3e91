//! `decide`: may this caller do this, here, now?
//!
//! A pipeline of cheap steps in a fixed order; the first failing step decides
//! (DESIGN.md §4). Nothing here writes to the store or blocks: the key comes
//! from the resolver's cache, and last-used times go to an in-memory batch.
//! Any error on the way is a denial.
//!
//! `input` says what is asked and what comes back; this file authenticates
//! (API key or JWT); `pipeline` runs the steps after that; `request` holds the
//! steps that need the HTTP request itself (feed paths, signed requests).

use std::borrow::Cow;
use std::sync::Arc;

use super::cache::CacheUse;
use super::credential::Credential;
use super::keys::KeyManager;
use super::limits::{KeyLimits, Quota, Space, counts_as_failure};
use super::model::{AUTO_SUSPENDED_BRUTE_FORCE, RatePolicy};
use super::model::{KeyKind, LiveStatus, Mode};
use super::network::{self, ClientIpRule};
use super::origin;
use super::outcomes::OutcomeRecorder;
use super::permissions::Permission;
use super::reason::Reason;
use super::reason::key_status_denial;
use super::resolver::{KeyResolver, ResolvedKey};
use super::routes::normalize_path;
use super::signing::{SigningManager, VerifyReason};
use super::tokens::TokenManager;
use super::usage::UsageRecorder;
use crate::crypto::{self, keyfmt};
use crate::ports::Clock;

mod explain;
mod input;
mod pipeline;
mod request;
mod trace;

pub use explain::{CacheView, Explanation};
pub use input::{CheckInput, Decision, RequestFacts};
pub use request::feed_path_allowed;
pub use trace::{Outcome, Step, StepReport};
use trace::{Trace, Untraced};

pub struct Checker {
    resolver: Arc<KeyResolver>,
    /// Verifies JWT access tokens; `None` (one-shot CLI commands) denies them.
    tokens: Option<Arc<TokenManager>>,
    clock: Arc<dyn Clock>,
    usage: Arc<UsageRecorder>,
    key_prefix: String,
    client_ip: ClientIpRule,
    signing: Option<Arc<SigningManager>>,
    /// Per-key rate limits; `None` = none are enforced.
    limits: Option<Arc<KeyLimits>>,
    /// Suspends a valid key that keeps arriving with bad signatures.
    suspender: Option<(KeyManager, Quota)>,
    /// Where each outcome is noted for usage analytics and the audit trail.
    outcomes: Option<Arc<OutcomeRecorder>>,
}

impl Checker {
    pub fn new(
        resolver: Arc<KeyResolver>,
        clock: Arc<dyn Clock>,
        usage: Arc<UsageRecorder>,
        key_prefix: String,
        client_ip: ClientIpRule,
        tokens: Option<Arc<TokenManager>>,
    ) -> Self {
        Self {
            resolver,
            tokens,
            clock,
            usage,
            key_prefix,
            client_ip,
            signing: None,
            limits: None,
            suspender: None,
            outcomes: None,
        }
    }

    /// Notes every decision's outcome (usage analytics, aggregated denials).
    pub fn with_outcomes(mut self, outcomes: Arc<OutcomeRecorder>) -> Self {
        self.outcomes = Some(outcomes);
        self
    }

    /// Suspends a key after `budget` requests with a missing or invalid
    /// signature (needs rate limits: the counts live in their limiter).
    pub fn with_auto_suspend(mut self, keys: KeyManager, budget: RatePolicy) -> Self {
        self.suspender = Some((keys, budget.quota()));
        self
    }

    /// Enforces per-key rate limits, the last step before an allow.
    pub fn with_rate_limits(mut self, limits: Arc<KeyLimits>) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Enables signed requests and feed keys; without it, keys that need
    /// either are denied.
    pub fn with_signed_requests(mut self, signing: Arc<SigningManager>) -> Self {
        self.signing = Some(signing);
        self
    }

    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    pub async fn decide(&self, input: CheckInput<'_>) -> Decision {
        let decision = self.run(input, &[], &mut Untraced).await;
        if let Some(outcomes) = &self.outcomes {
            let ip = self
                .client_ip
                .client_ip(input.peer_ip, input.forwarded_for, input.own_hops);
            let permission = input.permission.map_or("", |p| p.as_str());
            outcomes.record(
                decision.key.as_ref(),
                input.credential,
                permission,
                decision.reason,
                ip,
                self.clock.now(),
            );
        }
        decision
    }

    /// The decision's steps, shared by `decide` (untraced) and `explain`
    /// (recorded, dry). `extra`: permissions asked besides `input.permission`
    /// (Explain's what-if; always empty for Check).
    async fn run<T: Trace>(
        &self,
        input: CheckInput<'_>,
        extra: &[Permission<'_>],
        trace: &mut T,
    ) -> Decision {
        // An address that failed too often is refused before any lookup.
        let budget = self.limits.as_ref().and_then(|l| Some((l, l.failures?)));
        let client = budget.and_then(|_| {
            self.client_ip
                .client_ip(input.peer_ip, input.forwarded_for, input.own_hops)
        });
        if let (Some((limits, budget)), Some(ip)) = (budget, client) {
            if let Some(state) = limits.limiter.failures_blocked(&budget, ip) {
                trace.step(Step::FailureBudget, Outcome::Failed, || {
                    format!(
                        "client {ip} failed to authenticate too often: refused for {} s",
                        state.retry_after_seconds
                    )
                });
                return Decision {
                    reason: Reason::TooManyFailures,
                    key: None,
                    message: Cow::Borrowed(
                        "too many failed authentications from this address; retry after the time given",
                    ),
                    rate_limit: Some(state),
                };
            }
            trace.step(Step::FailureBudget, Outcome::Passed, || {
                format!("client {ip} is within its failed-authentication budget")
            });
        } else {
            trace.step(Step::FailureBudget, Outcome::Skipped, || {
                if budget.is_none() {
                    "no failed-authentication budget is configured".into()
                } else {
                    "no client address to budget".into()
                }
            });
        }
        let mut decision = self.judge(input, extra, trace).await;
        if !T::DRY_RUN
            && let (Some((limits, budget)), Some(ip)) = (budget, client)
            && counts_as_failure(decision.reason)
        {
            limits.limiter.failed(&budget, ip);
        }
        if !T::DRY_RUN
            && matches!(
                decision.reason,
                Reason::SignatureMissing | Reason::SignatureInvalid
            )
            && let (Some(limits), Some((keys, quota)), Some(key)) =
                (&self.limits, &self.suspender, &decision.key)
        {
            // Counted per key, never per address: only a valid key gets
            // here, and then only the key has leaked, not its signing secret.
            let id = &key.record.id;
            if limits
                .limiter
                .take(Space::BadSignature, id, quota)
                .remaining
                == 0
            {
                let (keys, id) = (keys.clone(), id.clone());
                // Off the hot path; idempotent, so a few racing ones are harmless.
                tokio::spawn(async move {
                    if let Err(e) = keys.auto_suspend(&id, AUTO_SUSPENDED_BRUTE_FORCE).await {
                        tracing::error!(key_id = %id, error = %e, "automatic suspension failed");
                    }
                });
            }
        }
        // Every answer for a limited key says where its limit stands; a
        // request denied before the limit step consumed nothing.
        if decision.rate_limit.is_none()
            && let (Some(limits), Some(key)) = (&self.limits, &decision.key)
        {
            decision.rate_limit = limits.peek(key);
        }
        decision
    }

    async fn judge<T: Trace>(
        &self,
        input: CheckInput<'_>,
        extra: &[Permission<'_>],
        trace: &mut T,
    ) -> Decision {
        let key = match Credential::classify(input.credential) {
            Credential::Missing => {
                trace.step(Step::Credential, Outcome::Failed, || {
                    "no credential was presented".into()
                });
                return Decision::deny(Reason::CredentialMissing, "no credential was presented");
            }
            Credential::Malformed(why) => {
                trace.step(Step::Credential, Outcome::Failed, || why.into());
                return Decision::deny(Reason::CredentialMalformed, why);
            }
            Credential::Jwt(token) => {
                let Some(tokens) = &self.tokens else {
                    trace.step(Step::Credential, Outcome::Failed, || {
                        "a JWT access token, and this server verifies none".into()
                    });
                    return Decision::deny(
                        Reason::InternalError,
                        "the decision could not be made; denied",
                    );
                };
                let cache = trace.cache_use();
                match tokens.authenticate(token, cache).await {
                    Ok(principal) => {
                        trace.step(Step::Credential, Outcome::Passed, || {
                            format!(
                                "a JWT access token: signature, claims and revocation verified ({})",
                                token_source(cache)
                            )
                        });
                        trace.step(Step::Lookup, Outcome::Passed, || {
                            format!(
                                "the token speaks for {} of account {}",
                                principal.record.id, principal.record.account_id
                            )
                        });
                        trace.step(Step::Status, Outcome::Passed, || {
                            "checked with the token: its key (if any) is active".into()
                        });
                        principal
                    }
                    Err(d) => {
                        trace.step(Step::Credential, Outcome::Failed, || {
                            format!("{} ({})", d.message, token_source(cache))
                        });
                        return Decision {
                            reason: d.reason,
                            key: d.principal,
                            message: d.message.into(),
                            rate_limit: None,
                        };
                    }
                }
            }
            Credential::ApiKey(credential) => match self.api_key(credential, trace).await {
                Ok(key) => key,
                Err(denied) => return denied,
            },
        };
        self.authorize(key, &input, extra, trace).await
    }

    /// An API key's principal, if the key exists and works right now.
    async fn api_key<T: Trace>(
        &self,
        credential: &str,
        trace: &mut T,
    ) -> Result<Arc<ResolvedKey>, Decision> {
        let parts = match keyfmt::parse(credential, &self.key_prefix) {
            Ok(parts) => parts,
            Err(e) => {
                trace.step(Step::Credential, Outcome::Failed, || e.to_string());
                return Err(Decision::deny(Reason::CredentialMalformed, e.to_string()));
            }
        };
        trace.step(Step::Credential, Outcome::Passed, || {
            let masked = keyfmt::mask(
                &self.key_prefix,
                parts.mode,
                parts.kind,
                keyfmt::last4(credential),
            );
            format!("API key {masked}: format and checksum valid")
        });
        let hash = crypto::sha256(credential.as_bytes());
        let (found, from) = match trace.cache_use() {
            CacheUse::Fill => (self.resolver.resolve(&hash).await, "the cache or the store"),
            CacheUse::Bypass => (
                self.resolver.resolve_uncached(&hash).await,
                "the store (no cache)",
            ),
            CacheUse::Peek => match self.resolver.cached(&hash) {
                Some(entry) => (Ok(entry), "the shared cache"),
                None => (
                    self.resolver.resolve_uncached(&hash).await,
                    "the store (nothing cached)",
                ),
            },
        };
        let key = match found {
            Ok(Some(key)) => key,
            Ok(None) => {
                trace.step(Step::Lookup, Outcome::Failed, || {
                    format!("no key has this credential's hash (read from {from})")
                });
                return Err(Decision::deny(Reason::CredentialUnknown, "no such key"));
            }
            Err(e) => {
                tracing::error!(error = %e, "key resolution failed; denying");
                trace.step(Step::Lookup, Outcome::Failed, || {
                    format!("{from} could not be read (the server log has the cause): denied")
                });
                return Err(Decision::deny(
                    Reason::InternalError,
                    "the decision could not be made; denied",
                ));
            }
        };
        let record = &key.record;
        // The store found this hash; these can only differ if the store lies.
        if !crypto::ct_eq(&record.key_hash, &hash)
            || parts.mode != record.mode.tag()
            || parts.kind != record.kind.tag()
        {
            tracing::error!(key_id = %record.id, "stored key does not match its credential; denying");
            trace.step(Step::Lookup, Outcome::Failed, || {
                format!("stored key {} does not match its credential", record.id)
            });
            return Err(Decision::deny(
                Reason::InternalError,
                "the decision could not be made; denied",
            ));
        }
        trace.step(Step::Lookup, Outcome::Passed, || {
            format!(
                "key {} of account {} ({} {}), read from {from}",
                record.id,
                record.account_id,
                record.mode.tag(),
                record.kind.tag()
            )
        });
        let now = self.clock.now();
        let status = record.status_at(now);
        if let Some((reason, message)) = key_status_denial(status) {
            trace.step(Step::Status, Outcome::Failed, || {
                format!("{message} (stored status `{}`)", record.status.tag())
            });
            return Err(Decision::deny_key(reason, &key, message));
        }
        trace.step(Step::Status, Outcome::Passed, || {
            let mut detail = format!("active; expires {}", trace::when(record.expires_at, now));
            if let Some(end) = record.overlap_ends_at {
                detail.push_str(&format!(
                    "; rotated, overlap window ends {}",
                    trace::when(end, now)
                ));
            }
            detail
        });
        Ok(key)
    }
}

/// Where a JWT's verification read what it needed, for a detail.
fn token_source(cache: CacheUse) -> &'static str {
    match cache {
        CacheUse::Fill => "the verified-token cache or the store",
        CacheUse::Bypass => {
            "signing keys, revocation, key and client read from the store, no cache"
        }
        CacheUse::Peek => "as this replica's caches hold it",
    }
}
