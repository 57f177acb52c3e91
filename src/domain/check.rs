//! `decide`: may this caller do this, here, now?
//!
//! A pipeline of cheap steps in a fixed order; the first failing step decides
//! (DESIGN.md §4). Nothing here writes to the store or blocks: the key comes
//! from the resolver's cache, and last-used times go to an in-memory batch.
//! Any error on the way is a denial.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ipnet::IpNet;

use super::credential::Credential;
use super::model::{KeyKind, LiveStatus, Mode};
use super::network;
use super::origin;
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

/// Last-used times are kept to this resolution (milliseconds).
const USAGE_RESOLUTION_MS: i64 = 1000;

/// What is being asked. Borrowed from the request: the hot path copies nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct CheckInput<'a> {
    /// As presented; a leading `Bearer ` is accepted.
    pub credential: &'a str,
    pub permission: Option<&'a Permission<'a>>,
    pub required_mode: Option<Mode>,
    /// The immediate peer of whoever is asking about the request.
    pub peer_ip: Option<IpAddr>,
    pub forwarded_for: Option<&'a str>,
    pub origin: Option<&'a str>,
    /// The store the request names (the configured store header), if any.
    pub store_id: Option<&'a str>,
    /// The HTTP request being authorized, when the caller knows it: needed
    /// for keys whose requests must be signed, and for feed keys.
    pub request: Option<&'a RequestFacts<'a>>,
}

/// What signed-request and feed-key checks need to know about the request.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a str,
    /// Path and query, as sent.
    pub path: &'a str,
    /// SHA-256 of the body, when the caller hashed it.
    pub body_sha256: Option<[u8; 32]>,
    /// The body itself, hashed only if a signature needs it. Neither this
    /// nor `body_sha256` = the body is empty.
    pub body: Option<&'a [u8]>,
    /// The signature header's value (`signing.request_header`), if present.
    pub signature: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub reason: Reason,
    /// The resolved key, when the credential got that far.
    pub key: Option<Arc<ResolvedKey>>,
    /// Why it was denied, for humans (empty when allowed); never contains secret material.
    pub message: Cow<'static, str>,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.reason == Reason::Allowed
    }

    fn deny(reason: Reason, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            reason,
            key: None,
            message: message.into(),
        }
    }

    fn deny_key(
        reason: Reason,
        key: &Arc<ResolvedKey>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            reason,
            key: Some(key.clone()),
            message: message.into(),
        }
    }
}

pub struct Checker {
    resolver: Arc<KeyResolver>,
    /// Verifies JWT access tokens; `None` (one-shot CLI commands) denies them.
    tokens: Option<Arc<TokenManager>>,
    clock: Arc<dyn Clock>,
    usage: Arc<UsageRecorder>,
    key_prefix: String,
    trusted_proxies: Vec<IpNet>,
    signing: Option<Arc<SigningManager>>,
}

impl Checker {
    pub fn new(
        resolver: Arc<KeyResolver>,
        clock: Arc<dyn Clock>,
        usage: Arc<UsageRecorder>,
        key_prefix: String,
        trusted_proxies: Vec<IpNet>,
        tokens: Option<Arc<TokenManager>>,
    ) -> Self {
        Self {
            resolver,
            tokens,
            clock,
            usage,
            key_prefix,
            trusted_proxies,
            signing: None,
        }
    }

    /// Enables signed requests and feed keys; without it, keys that need
    /// either are denied.
    pub fn with_signed_requests(mut self, signing: Arc<SigningManager>) -> Self {
        self.signing = Some(signing);
        self
    }

    /// The feed-path and signed-request steps; `None` = they pass.
    async fn request_checks(
        &self,
        key: &Arc<ResolvedKey>,
        request: Option<&RequestFacts<'_>>,
    ) -> Option<Decision> {
        let record = &key.record;
        if record.kind == KeyKind::Feed {
            let prefix = self
                .signing
                .as_ref()
                .and_then(|s| s.settings().feed_path_prefix.as_deref());
            let path = request.and_then(|r| normalize_path(r.path).ok());
            let inside = match (prefix, path.as_deref()) {
                (Some(prefix), Some(path)) => feed_path_allowed(prefix, path),
                _ => false,
            };
            if !inside {
                return Some(Decision::deny_key(
                    Reason::PathNotAllowed,
                    key,
                    "feed keys are accepted only under the configured feed path",
                ));
            }
        }
        let secret_id = record.signing_secret_id.as_deref()?;
        let (Some(signing), Some(request)) = (self.signing.as_ref(), request) else {
            return Some(Decision::deny_key(
                Reason::SignatureMissing,
                key,
                "the key requires signed requests; no request details were given to verify",
            ));
        };
        let body = request
            .body_sha256
            .unwrap_or_else(|| crypto::sha256(request.body.unwrap_or_default()));
        let verified = signing
            .verify_request(
                secret_id,
                request.signature,
                request.method,
                request.path,
                &body,
            )
            .await;
        match verified {
            Ok(v) => match v.reason {
                VerifyReason::Valid => None,
                VerifyReason::Missing => {
                    Some(Decision::deny_key(Reason::SignatureMissing, key, v.message))
                }
                VerifyReason::Expired => {
                    Some(Decision::deny_key(Reason::SignatureExpired, key, v.message))
                }
                _ => Some(Decision::deny_key(Reason::SignatureInvalid, key, v.message)),
            },
            Err(e) => {
                tracing::error!(error = %e, key_id = %record.id, "request signature check failed; denying");
                Some(Decision::deny_key(
                    Reason::InternalError,
                    key,
                    "the decision could not be made; denied",
                ))
            }
        }
    }

    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    pub async fn decide(&self, input: CheckInput<'_>) -> Decision {
        let key = match Credential::classify(input.credential) {
            Credential::Missing => {
                return Decision::deny(Reason::CredentialMissing, "no credential was presented");
            }
            Credential::Jwt(token) => {
                let Some(tokens) = &self.tokens else {
                    return Decision::deny(
                        Reason::InternalError,
                        "the decision could not be made; denied",
                    );
                };
                match tokens.authenticate(token).await {
                    Ok(principal) => principal,
                    Err(d) => {
                        return Decision {
                            reason: d.reason,
                            key: d.principal,
                            message: d.message.into(),
                        };
                    }
                }
            }
            Credential::ApiKey(credential) => match self.api_key(credential).await {
                Ok(key) => key,
                Err(denied) => return denied,
            },
        };
        self.authorize(key, &input).await
    }

    /// An API key's principal, if the key exists and works right now.
    async fn api_key(&self, credential: &str) -> Result<Arc<ResolvedKey>, Decision> {
        let parts = match keyfmt::parse(credential, &self.key_prefix) {
            Ok(parts) => parts,
            Err(e) => return Err(Decision::deny(Reason::CredentialMalformed, e.to_string())),
        };
        let hash = crypto::sha256(credential.as_bytes());
        let key = match self.resolver.resolve(&hash).await {
            Ok(Some(key)) => key,
            Ok(None) => return Err(Decision::deny(Reason::CredentialUnknown, "no such key")),
            Err(e) => {
                tracing::error!(error = %e, "key resolution failed; denying");
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
            return Err(Decision::deny(
                Reason::InternalError,
                "the decision could not be made; denied",
            ));
        }
        let now = self.clock.now();
        if let Some((reason, message)) = key_status_denial(record.status_at(now)) {
            return Err(Decision::deny_key(reason, &key, message));
        }
        Ok(key)
    }

    /// The steps after authentication, the same for keys and tokens.
    async fn authorize(&self, key: Arc<ResolvedKey>, input: &CheckInput<'_>) -> Decision {
        let record = &key.record;
        let now = self.clock.now();
        if record.mode == Mode::Live
            && !key.account.is_operator
            && key.account.live_status != LiveStatus::Active
        {
            return Decision::deny_key(
                Reason::LiveModeInactive,
                &key,
                "live mode is not active for this account",
            );
        }
        if let Some(required) = input.required_mode
            && required != record.mode
        {
            let msg = format!(
                "a {} key was presented where {} is required",
                record.mode.tag(),
                required.tag()
            );
            return Decision::deny_key(Reason::ModeMismatch, &key, msg);
        }
        if !key.cidrs.is_empty() {
            let client =
                network::client_ip(input.peer_ip, input.forwarded_for, &self.trusted_proxies);
            if !client.is_some_and(|ip| network::allowed(ip, &key.cidrs)) {
                return Decision::deny_key(
                    Reason::IpNotAllowed,
                    &key,
                    "the client address is not in the key's allowlist",
                );
            }
        }
        if (!key.origins.is_empty() || record.kind == KeyKind::Publishable)
            && !origin::allowed(input.origin, &key.origins)
        {
            return Decision::deny_key(
                Reason::OriginNotAllowed,
                &key,
                "the request Origin is not in the key's allowlist",
            );
        }
        if let Some(store) = input.store_id
            && key
                .account
                .store_ids
                .binary_search_by(|s| s.as_str().cmp(store))
                .is_err()
        {
            return Decision::deny_key(
                Reason::StoreNotAllowed,
                &key,
                "the store named by the request does not belong to the key's account",
            );
        }
        if (record.signing_secret_id.is_some() || record.kind == KeyKind::Feed)
            && let Some(denied) = self.request_checks(&key, input.request).await
        {
            return denied;
        }
        if key.account.is_operator && !input.permission.is_some_and(Permission::is_admin) {
            return Decision::deny_key(
                Reason::PermissionDenied,
                &key,
                "operator keys authorize management calls only",
            );
        }
        if let Some(permission) = input.permission {
            if !key.scopes.grants(permission) {
                let msg = format!("the key's scopes do not include `{permission}`");
                return Decision::deny_key(Reason::PermissionDenied, &key, msg);
            }
            let entitled = match &key.entitlements {
                Some(plan) => {
                    (key.account.is_operator || !permission.is_admin()) && plan.grants(permission)
                }
                None => false,
            };
            if !entitled {
                let msg = format!(
                    "the account's plan `{}` does not include `{permission}`",
                    key.account.plan
                );
                return Decision::deny_key(Reason::PlanNotEntitled, &key, msg);
            }
        }
        let reported = key.last_reported.load(Ordering::Relaxed);
        if now.saturating_sub(reported) >= USAGE_RESOLUTION_MS
            && key
                .last_reported
                .compare_exchange(reported, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.usage.record(&record.id, now);
        }
        Decision {
            reason: Reason::Allowed,
            key: Some(key),
            message: Cow::Borrowed(""),
        }
    }
}

/// Is the normalised `path` under `prefix`? A prefix without a trailing slash
/// still ends at a segment boundary: `/feeds` covers `/feeds/x`, not `/feedsx`.
pub fn feed_path_allowed(prefix: &str, path: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod feed_tests {
    use super::feed_path_allowed;

    #[test]
    fn feed_prefixes_end_at_segment_boundaries() {
        assert!(feed_path_allowed("/feeds/", "/feeds/products.xml"));
        assert!(!feed_path_allowed("/feeds/", "/feeds"));
        assert!(!feed_path_allowed("/feeds/", "/admin/feeds/x"));
        assert!(feed_path_allowed("/feeds", "/feeds"));
        assert!(feed_path_allowed("/feeds", "/feeds/a"));
        assert!(!feed_path_allowed("/feeds", "/feedsx"));
    }
}
