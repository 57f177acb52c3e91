//! OAuth2 clients and JWT access tokens: issuance (client credentials,
//! authorization code with PKCE, refresh with rotation, API-key exchange),
//! introspection, revocation, and turning a presented JWT into the same
//! principal an API key resolves to, so `decide` treats both alike.
//!
//! One file per operation, each an `impl TokenManager` block:
//! [`keyring`] (signing keys, JWKS, rotation), [`clients`] (registered
//! OAuth2 clients), [`mint`] (signing tokens; client credentials and the
//! API-key exchange), [`code`] (authorization code with PKCE), [`refresh`],
//! [`introspect`] (introspection and revocation) and [`verify`] (a presented
//! JWT for Check). This file holds the types they share.
//!
//! Signing keys are parsed once and kept in a `Keyring`; signing runs on
//! the blocking pool, never on an async worker.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

use super::cache::DigestCache;
use super::error::{Error, Result};
use super::permissions::Policy;
use super::resolver::KeyResolver;
use crate::crypto::envelope::MasterKey;
use crate::crypto::jwt::Algorithm;
use crate::crypto::pool::CpuPool;
use crate::crypto::secret::Secret;
use crate::ports::{Clock, Store, StoreError, TokenStore};

mod clients;
mod code;
mod introspect;
mod keyring;
mod mint;
mod refresh;
#[cfg(test)]
mod tests;
mod verify;

pub use code::{AuthorizeError, AuthorizeParams, AuthorizeRequest};
pub use introspect::Introspection;
pub use verify::TokenDenial;

use clients::ClientEntry;
use keyring::Keyring;
use verify::TokenEntry;

pub const CLIENT_ID_PREFIX: &str = "client";

#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub algorithm: Algorithm,
    pub access_ttl_secs: i64,
    pub refresh_ttl_secs: i64,
    pub code_ttl_secs: i64,
    /// Lifetime of an access token minted by `ExchangeSecret`.
    pub exchange_ttl_secs: i64,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway_secs: i64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            issuer: "http://127.0.0.1:8080".into(),
            audience: "latchkey".into(),
            algorithm: Algorithm::Rs256,
            access_ttl_secs: 3600,
            refresh_ttl_secs: 30 * 86_400,
            code_ttl_secs: 60,
            exchange_ttl_secs: 900,
            leeway_secs: 30,
        }
    }
}

/// An RFC 6749 §5.2 error: the code a client switches on, and a description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidClient(String),
    #[error("{0}")]
    InvalidGrant(String),
    #[error("{0}")]
    UnauthorizedClient(String),
    #[error("{0}")]
    UnsupportedGrantType(String),
    #[error("{0}")]
    InvalidScope(String),
    #[error("the server could not complete the request")]
    ServerError,
    /// The store is down: nothing was issued or changed; try again shortly
    /// (HTTP 503 with `Retry-After`).
    #[error("the service is temporarily unavailable; retry shortly")]
    TemporarilyUnavailable,
}

impl OAuthError {
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient(_) => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::UnauthorizedClient(_) => "unauthorized_client",
            OAuthError::UnsupportedGrantType(_) => "unsupported_grant_type",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::ServerError => "server_error",
            OAuthError::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "token store failed");
        match e {
            StoreError::Unavailable(_) => OAuthError::TemporarilyUnavailable,
            _ => OAuthError::ServerError,
        }
    }
}

/// A fault inside a grant (randomness, say) is the server's, never the
/// client's: its cause goes to the log, `server_error` to the client.
impl From<Error> for OAuthError {
    fn from(e: Error) -> Self {
        match &e {
            Error::Internal { .. } => log_internal(&e),
            other => tracing::error!(error = %other, "token operation failed"),
        }
        match e {
            Error::Store(StoreError::Unavailable(_)) => OAuthError::TemporarilyUnavailable,
            _ => OAuthError::ServerError,
        }
    }
}

/// Logs the cause of an internal fault. Its text names only what was being
/// done, and start-up, the periodic key reload and the token endpoints show
/// nothing more (only the gRPC table logs causes), so the cause is logged
/// where the fault leaves this module.
fn log_internal(e: &Error) {
    if let Error::Internal { what, cause } = e {
        tracing::error!(%cause, "internal error while {what}");
    }
}

/// What every token endpoint returns (RFC 6749 §5.1).
#[derive(Debug, Clone, Serialize)]
pub struct IssuedTokens {
    #[serde(serialize_with = "expose")]
    pub access_token: Secret<String>,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "expose_opt")]
    pub refresh_token: Option<Secret<String>>,
    pub scope: String,
}

fn expose<S: serde::Serializer>(v: &Secret<String>, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(v.expose())
}

fn expose_opt<S: serde::Serializer>(
    v: &Option<Secret<String>>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(v.expose()),
        None => s.serialize_none(),
    }
}

/// The claims of every access token we mint (RFC 9068 §2.2). When a
/// presented token is read, a missing `iss`, `aud`, `sub` or `exp` reads as
/// empty here so that `jsonwebtoken`'s validation names the claim that is
/// missing; a missing `iat` reads as `None`, refused by [`verify`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub iss: String,
    #[serde(default)]
    pub aud: Audience,
    #[serde(default)]
    pub sub: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default)]
    pub nbf: Option<i64>,
    pub jti: String,
    /// The OAuth2 client (RFC 9068 §2.2), or the API key for an exchanged token.
    pub client_id: String,
    /// Latchkey's own: the account and mode the token acts in, and what holds it.
    pub lk_account: String,
    pub lk_mode: String,
    pub lk_holder: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Default for Audience {
    fn default() -> Self {
        Audience::Many(Vec::new())
    }
}

impl Audience {
    pub fn first(&self) -> &str {
        match self {
            Audience::One(a) => a,
            Audience::Many(list) => list.first().map_or("", String::as_str),
        }
    }
}

/// What a [`TokenManager`] is built from.
pub struct TokenDeps {
    pub store: Arc<dyn Store>,
    pub tokens: Arc<dyn TokenStore>,
    pub policy: Arc<Policy>,
    pub clock: Arc<dyn Clock>,
    /// Resolves the API keys behind exchanged tokens; its epoch invalidates
    /// the caches of verified tokens and clients.
    pub resolver: Arc<KeyResolver>,
    /// Seals and opens the signing keys' private halves.
    pub master_key: Arc<MasterKey>,
    pub settings: TokenSettings,
    /// The deployment's API key prefix (`lk` by default), checked before an
    /// API key is exchanged for tokens.
    pub key_prefix: String,
}

pub struct TokenManager {
    store: Arc<dyn Store>,
    tokens: Arc<dyn TokenStore>,
    policy: Arc<Policy>,
    clock: Arc<dyn Clock>,
    resolver: Arc<KeyResolver>,
    master_key: Arc<MasterKey>,
    settings: TokenSettings,
    keyring: Keyring,
    verified: DigestCache<Arc<TokenEntry>>,
    /// Key id → key hash (a key's hash never changes), for exchanged tokens.
    key_hashes: DigestCache<[u8; 32]>,
    key_prefix: String,
    signer: CpuPool,
    clients: DigestCache<Arc<ClientEntry>>,
}

fn random_token(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| Error::internal("drawing random bytes", e))?;
    Ok(B64.encode(buf))
}

fn join_scopes(scopes: &[String]) -> String {
    scopes.join(" ")
}

/// Space-separated (RFC 6749 §3.3) or repeated; both accepted.
pub fn split_scopes<S: AsRef<str>>(items: &[S]) -> Vec<String> {
    let mut out: Vec<String> = items
        .iter()
        .flat_map(|s| s.as_ref().split_ascii_whitespace())
        .map(str::to_owned)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Most signatures waiting or running at once; beyond that, callers get
/// `server_error` at once rather than a queue that only grows.
const MAX_SIGNING_IN_FLIGHT: usize = 4096;

impl TokenManager {
    /// Loads the signing keys, creating the first one if there is none.
    pub async fn load(deps: TokenDeps) -> Result<Self> {
        let TokenDeps {
            store,
            tokens,
            policy,
            clock,
            resolver,
            master_key,
            settings,
            key_prefix,
        } = deps;
        let keyring = Keyring::load(tokens.as_ref(), &master_key, &settings, clock.now())
            .await
            .inspect_err(log_internal)?;
        let signer = CpuPool::new(
            "jwt-signer",
            std::thread::available_parallelism().map_or(2, usize::from),
            MAX_SIGNING_IN_FLIGHT,
        )
        .map_err(|e| Error::internal("starting the signing threads", e))
        .inspect_err(log_internal)?;
        Ok(Self {
            store,
            tokens,
            policy,
            clock,
            resolver,
            master_key,
            settings,
            keyring,
            verified: DigestCache::new(100_000, Duration::from_secs(300)),
            key_hashes: DigestCache::new(100_000, Duration::from_secs(3600)),
            key_prefix,
            signer,
            clients: DigestCache::new(10_000, Duration::from_secs(60)),
        })
    }

    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    /// Deletes what can no longer be used: codes, refresh tokens and
    /// revocations expired for more than a day (kept that long so a late
    /// replay is still recognised as one). How many rows went.
    pub async fn prune(&self) -> std::result::Result<u64, StoreError> {
        const GRACE_MS: i64 = 86_400_000;
        self.tokens.prune_tokens(self.clock.now() - GRACE_MS).await
    }
}
