//! OAuth2 clients and JWT access tokens: issuance (client credentials,
//! authorization code with PKCE, refresh with rotation, API-key exchange),
//! introspection, revocation, and turning a presented JWT into the same
//! principal an API key resolves to, so `decide` treats both alike.
//!
//! Signing keys are parsed once and kept in a [`Keyring`]; signing runs on
//! the blocking pool, never on an async worker.

use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

use super::accounts::validate_name;
use super::cache::DigestCache;
use super::error::{Error, Result};
use super::keys::KEY_ID_PREFIX;
use super::model::{
    Account, KeyKind, KeyRecord, KeyStatus, LiveStatus, Millis, Mode, StoredKeyStatus, new_id,
    valid_id,
};
use super::model::{
    AuthCodeRecord, ClientRecord, GRANT_TYPES, HolderKind, RefreshRecord, SigningKeyRecord,
};
use super::permissions::{Permission, Policy, Scope, ScopeSet};
use super::reason::{Reason, key_status_denial};
use super::resolver::{KeyResolver, ResolvedKey};
use crate::crypto::envelope::MasterKey;
use crate::crypto::jwt::{self, Algorithm, JwtError, SigningKey, VerifyingKey};
use crate::crypto::pool::CpuPool;
use crate::crypto::secret::Secret;
use crate::crypto::{self, ct_eq};
use crate::ports::{Clock, Store, StoreError, TokenStore};

pub const CLIENT_ID_PREFIX: &str = "client";
const MAX_REDIRECT_URIS: usize = 20;
const MAX_SCOPES: usize = 100;
/// How often an unknown `kid` may make this replica re-read the signing keys.
const KEYRING_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

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
        }
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "token store failed");
        OAuthError::ServerError
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

/// The claims of every access token we mint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: Audience,
    pub sub: String,
    #[serde(default)]
    pub scope: String,
    pub exp: i64,
    pub iat: i64,
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

impl Audience {
    fn contains(&self, aud: &str) -> bool {
        match self {
            Audience::One(a) => a == aud,
            Audience::Many(list) => list.iter().any(|a| a == aud),
        }
    }

    pub fn first(&self) -> &str {
        match self {
            Audience::One(a) => a,
            Audience::Many(list) => list.first().map_or("", String::as_str),
        }
    }
}

/// The signing keys this replica knows: the one that signs, and every
/// public key a still-valid token may name.
struct KeyringState {
    active: Arc<SigningKey>,
    verifiers: Vec<Arc<VerifyingKey>>,
    jwks: String,
}

pub struct Keyring {
    state: RwLock<Arc<KeyringState>>,
    last_reload: Mutex<Option<Instant>>,
}

/// A verified token, cached by the SHA-256 of its text.
struct TokenEntry {
    principal: Arc<ResolvedKey>,
    exp: Millis,
    epoch: u64,
}

/// Why a presented JWT was not accepted.
pub struct TokenDenial {
    pub reason: Reason,
    pub message: String,
    pub principal: Option<Arc<ResolvedKey>>,
}

fn denial(reason: Reason, message: impl Into<String>) -> TokenDenial {
    TokenDenial {
        reason,
        message: message.into(),
        principal: None,
    }
}

/// A validated `/oauth2/authorize` request.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    pub client: ClientRecord,
    pub redirect_uri: String,
    pub scope: Vec<String>,
    pub state: Option<String>,
    pub code_challenge: String,
}

/// An authorize request that cannot go back to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// Unknown client or unregistered redirect URI: shown on the page, never redirected to.
    Page(String),
    /// Everything else goes back to the client (RFC 6749 §4.1.2.1).
    Redirect {
        redirect_uri: String,
        error: &'static str,
        description: String,
        state: Option<String>,
    },
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

fn random_token(bytes: usize) -> std::result::Result<String, StoreError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| StoreError::Internal(e.to_string()))?;
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

/// Is every scope in `requested` within `allowed`? A wildcard request needs
/// the same wildcard (or `*`) among the allowed ones.
fn within(requested: &[String], allowed: &ScopeSet, allowed_strings: &[String]) -> bool {
    requested.iter().all(|s| {
        if s.contains('*') {
            allowed_strings.iter().any(|a| a == s || a == "*")
        } else {
            Permission::parse(s).is_ok_and(|p| allowed.grants(&p))
        }
    })
}

fn parse_scopes(field: &'static str, scopes: &[String]) -> Result<Vec<String>> {
    if scopes.len() > MAX_SCOPES {
        return Err(Error::invalid(
            field,
            format!("at most {MAX_SCOPES} scopes are allowed"),
        ));
    }
    for s in scopes {
        Scope::parse(s).map_err(|e| Error::invalid(field, format!("scope {e}")))?;
    }
    Ok(scopes.to_vec())
}

/// A redirect URI we accept: absolute, no fragment (RFC 6749 §3.1.2), https
/// unless it points at this machine (RFC 8252 §7.3).
fn check_redirect_uri(uri: &str) -> std::result::Result<(), String> {
    if uri.len() > 2000 || uri.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!("`{uri}` is not a valid URI"));
    }
    if uri.contains('#') {
        return Err(format!("`{uri}` must not contain a fragment"));
    }
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"];
    let rest_ok = |prefix: &str| {
        uri.strip_prefix(prefix)
            .is_some_and(|r| r.is_empty() || r.starts_with(':') || r.starts_with('/'))
    };
    if uri.starts_with("https://") && uri.len() > "https://".len() {
        return Ok(());
    }
    if loopback.iter().any(|p| rest_ok(p)) {
        return Ok(());
    }
    Err(format!(
        "`{uri}` must be an https URL (plain http only for 127.0.0.1, [::1] or localhost)"
    ))
}

impl Keyring {
    /// The keyring for these records. Keys `previous` already holds are
    /// reused, so a periodic reload that finds nothing new parses nothing
    /// and opens no sealed private key.
    fn build(
        records: &[SigningKeyRecord],
        previous: Option<&KeyringState>,
        master: &MasterKey,
        now: Millis,
        keep_ms: i64,
    ) -> std::result::Result<KeyringState, StoreError> {
        let bad = |kid: &str, e: &dyn std::fmt::Display| {
            StoreError::Internal(format!("signing key {kid}: {e}"))
        };
        let mut active = None;
        let mut verifiers = Vec::new();
        for r in records {
            let alg = Algorithm::from_name(&r.algorithm)
                .ok_or_else(|| bad(&r.kid, &"unknown algorithm"))?;
            if r.retired_at.is_some_and(|at| at + keep_ms <= now) {
                continue;
            }
            let known = previous.and_then(|p| p.verifiers.iter().find(|v| v.kid == r.kid));
            verifiers.push(match known {
                Some(v) => v.clone(),
                None => Arc::new(
                    VerifyingKey::new(alg, r.kid.clone(), &r.public_key)
                        .map_err(|e| bad(&r.kid, &e))?,
                ),
            });
            if r.retired_at.is_none() {
                if let Some(p) = previous.filter(|p| p.active.kid == r.kid) {
                    active = Some(p.active.clone());
                    continue;
                }
                let der = master
                    .open(&r.private_sealed, seal_context(&r.kid).as_bytes())
                    .map_err(|e| bad(&r.kid, &e))?;
                active = Some(Arc::new(
                    SigningKey::from_pkcs8(alg, r.kid.clone(), &der)
                        .map_err(|e| bad(&r.kid, &e))?,
                ));
            }
        }
        let active = active.ok_or_else(|| StoreError::Internal("no active signing key".into()))?;
        let keys: Vec<&serde_json::Value> = verifiers.iter().map(|v| v.jwk()).collect();
        let jwks = serde_json::json!({ "keys": keys }).to_string();
        Ok(KeyringState {
            active,
            verifiers,
            jwks,
        })
    }

    fn current(&self) -> Arc<KeyringState> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn replace(&self, state: KeyringState) {
        *self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(state);
    }
}

fn seal_context(kid: &str) -> String {
    format!("signing_key:{kid}")
}

fn new_signing_record(
    alg: Algorithm,
    master: &MasterKey,
    now: Millis,
) -> std::result::Result<SigningKeyRecord, StoreError> {
    let kid = new_id("sk");
    let (key, pkcs8) =
        SigningKey::generate(alg, kid.clone()).map_err(|e| StoreError::Internal(e.to_string()))?;
    let sealed = master
        .seal(&pkcs8, seal_context(&kid).as_bytes())
        .map_err(|e| StoreError::Internal(e.to_string()))?;
    Ok(SigningKeyRecord {
        kid,
        algorithm: alg.name().to_owned(),
        private_sealed: sealed,
        public_key: key.public_key_bytes(),
        created_at: now,
        retired_at: None,
    })
}

/// Most signatures waiting or running at once; beyond that, callers get
/// `server_error` at once rather than a queue that only grows.
const MAX_SIGNING_IN_FLIGHT: usize = 4096;

/// A verified client, cached by the SHA-256 of its id.
struct ClientEntry {
    client: ClientRecord,
    epoch: u64,
}

impl TokenManager {
    /// Loads the signing keys, creating the first one if there is none.
    #[allow(clippy::too_many_arguments)]
    pub async fn load(
        store: Arc<dyn Store>,
        tokens: Arc<dyn TokenStore>,
        policy: Arc<Policy>,
        clock: Arc<dyn Clock>,
        resolver: Arc<KeyResolver>,
        master_key: Arc<MasterKey>,
        settings: TokenSettings,
        key_prefix: String,
    ) -> std::result::Result<Self, StoreError> {
        let now = clock.now();
        let mut records = tokens.signing_keys().await?;
        if !records.iter().any(|r| r.retired_at.is_none()) {
            let alg = settings.algorithm;
            let master = master_key.clone();
            let record = tokio::task::spawn_blocking(move || new_signing_record(alg, &master, now))
                .await
                .map_err(|e| StoreError::Internal(e.to_string()))??;
            if tokens.insert_first_signing_key(&record).await? {
                tracing::info!(kid = %record.kid, algorithm = %record.algorithm, "created the first JWT signing key");
            }
            records = tokens.signing_keys().await?;
        }
        let keep_ms = Self::keep_retired_ms(&settings);
        let state = Keyring::build(&records, None, &master_key, now, keep_ms)?;
        Ok(Self {
            store,
            tokens,
            policy,
            clock,
            resolver,
            master_key,
            settings,
            keyring: Keyring {
                state: RwLock::new(Arc::new(state)),
                last_reload: Mutex::new(None),
            },
            verified: DigestCache::new(100_000, Duration::from_secs(300)),
            key_hashes: DigestCache::new(100_000, Duration::from_secs(3600)),
            key_prefix,
            signer: CpuPool::new(
                "jwt-signer",
                std::thread::available_parallelism().map_or(2, usize::from),
                MAX_SIGNING_IN_FLIGHT,
            )
            .map_err(|e| StoreError::Internal(format!("cannot start signing threads: {e}")))?,
            clients: DigestCache::new(10_000, Duration::from_secs(60)),
        })
    }

    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    /// A retired key stays published until every token it signed has expired.
    fn keep_retired_ms(settings: &TokenSettings) -> i64 {
        (settings.access_ttl_secs.max(settings.exchange_ttl_secs) + settings.leeway_secs) * 1000
    }

    /// Re-reads the signing keys from the store (another replica may have rotated).
    pub async fn reload_keys(&self) -> std::result::Result<(), StoreError> {
        let records = self.tokens.signing_keys().await?;
        let previous = self.keyring.current();
        let state = Keyring::build(
            &records,
            Some(&previous),
            &self.master_key,
            self.clock.now(),
            Self::keep_retired_ms(&self.settings),
        )?;
        self.keyring.replace(state);
        Ok(())
    }

    /// Deletes what can no longer be used: codes, refresh tokens and
    /// revocations expired for more than a day (kept that long so a late
    /// replay is still recognised as one). How many rows went.
    pub async fn prune(&self) -> std::result::Result<u64, StoreError> {
        const GRACE_MS: i64 = 86_400_000;
        self.tokens.prune_tokens(self.clock.now() - GRACE_MS).await
    }

    pub fn jwks_json(&self) -> String {
        self.keyring.current().jwks.clone()
    }

    pub async fn rotate_signing_key(&self, algorithm: Option<&str>) -> Result<SigningKeyRecord> {
        let alg = match algorithm.map(str::trim).filter(|a| !a.is_empty()) {
            None => self.settings.algorithm,
            Some(name) => Algorithm::from_name(name).ok_or_else(|| {
                Error::invalid(
                    "algorithm",
                    format!("`{name}` is not one of RS256, ES256, EdDSA"),
                )
            })?,
        };
        let now = self.clock.now();
        let master = self.master_key.clone();
        let record = tokio::task::spawn_blocking(move || new_signing_record(alg, &master, now))
            .await
            .map_err(|e| Error::Store(StoreError::Internal(e.to_string())))??;
        self.tokens.rotate_signing_key(&record).await?;
        self.reload_keys().await?;
        tracing::info!(kid = %record.kid, algorithm = %record.algorithm, "rotated the JWT signing key");
        Ok(record)
    }

    // ---- clients -------------------------------------------------------

    pub async fn create_client(
        &self,
        account_id: &str,
        mode: Mode,
        name: &str,
        redirect_uris: &[String],
        grant_types: &[String],
        scopes: &[String],
    ) -> Result<(ClientRecord, Secret<String>)> {
        let name = validate_name("name", name)?;
        let account = match self.store.get_account(account_id).await? {
            Some(a) if !a.is_operator => a,
            _ => return Err(Error::not_found("account", account_id)),
        };
        if mode == Mode::Live && account.live_status != LiveStatus::Active {
            return Err(Error::FailedPrecondition(format!(
                "live clients need live mode to be active for the account; it is `{}`",
                account.live_status
            )));
        }
        if grant_types.is_empty() {
            return Err(Error::invalid(
                "grant_types",
                format!("name at least one of {}", GRANT_TYPES.join(", ")),
            ));
        }
        for g in grant_types {
            if !GRANT_TYPES.contains(&g.as_str()) {
                return Err(Error::invalid(
                    "grant_types",
                    format!("`{g}` is not one of {}", GRANT_TYPES.join(", ")),
                ));
            }
        }
        if redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(Error::invalid(
                "redirect_uris",
                format!("at most {MAX_REDIRECT_URIS} are allowed"),
            ));
        }
        for uri in redirect_uris {
            check_redirect_uri(uri).map_err(|m| Error::invalid("redirect_uris", m))?;
        }
        if grant_types.iter().any(|g| g == "authorization_code") && redirect_uris.is_empty() {
            return Err(Error::invalid(
                "redirect_uris",
                "the authorization_code grant needs at least one redirect URI",
            ));
        }
        let scopes = parse_scopes("scopes", &split_scopes(scopes))?;
        if scopes.is_empty() {
            return Err(Error::invalid("scopes", "name at least one scope"));
        }
        let mut grants = grant_types.to_vec();
        grants.sort();
        grants.dedup();
        let secret = Secret::new(format!("lkcs_{}", random_token(32)?));
        let client = ClientRecord {
            client_id: new_id(CLIENT_ID_PREFIX),
            account_id: account.id,
            mode,
            name,
            secret_hash: crypto::sha256(secret.expose().as_bytes()),
            redirect_uris: redirect_uris.to_vec(),
            grant_types: grants,
            scopes,
            created_at: self.clock.now(),
        };
        self.tokens.insert_client(&client).await?;
        Ok((client, secret))
    }

    pub async fn get_client(&self, client_id: &str) -> Result<ClientRecord> {
        if !valid_id(client_id, CLIENT_ID_PREFIX) {
            return Err(Error::invalid("client_id", "is not a client id"));
        }
        self.tokens
            .get_client(client_id)
            .await?
            .ok_or_else(|| Error::not_found("client", client_id))
    }

    pub async fn list_clients(
        &self,
        account_id: Option<&str>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<ClientRecord>> {
        Ok(self.tokens.list_clients(account_id, after, limit).await?)
    }

    pub async fn delete_client(&self, client_id: &str) -> Result<()> {
        if !valid_id(client_id, CLIENT_ID_PREFIX) {
            return Err(Error::invalid("client_id", "is not a client id"));
        }
        if !self
            .tokens
            .delete_client(client_id, self.clock.now())
            .await?
        {
            return Err(Error::not_found("client", client_id));
        }
        // Cached tokens of this client are re-checked (and now refused).
        self.resolver.invalidate_all();
        Ok(())
    }

    /// The client, if the secret is its own. Client secrets are 256 random
    /// bits, so a SHA-256 compare in constant time is the right check.
    pub async fn authenticate_client(
        &self,
        client_id: &str,
        secret: &str,
    ) -> std::result::Result<ClientRecord, OAuthError> {
        let unknown = || OAuthError::InvalidClient("client authentication failed".into());
        if !valid_id(client_id, CLIENT_ID_PREFIX) {
            return Err(unknown());
        }
        let client = self.client(client_id).await?.ok_or_else(unknown)?;
        if !ct_eq(&crypto::sha256(secret.as_bytes()), &client.secret_hash) {
            return Err(unknown());
        }
        Ok(client)
    }

    /// A client by id, cached until the next invalidation (a deleted client
    /// invalidates everything, on every replica).
    async fn client(
        &self,
        client_id: &str,
    ) -> std::result::Result<Option<ClientRecord>, StoreError> {
        let epoch = self.resolver.epoch();
        let slot = crypto::sha256(client_id.as_bytes());
        if let Some(hit) = self.clients.get(&slot)
            && hit.epoch == epoch
        {
            return Ok(Some(hit.client.clone()));
        }
        let Some(client) = self.tokens.get_client(client_id).await? else {
            return Ok(None);
        };
        self.clients.insert(
            slot,
            Arc::new(ClientEntry {
                client: client.clone(),
                epoch,
            }),
        );
        Ok(Some(client))
    }

    /// Requested scopes, or all of the client's when none are named.
    fn grant_scopes(
        &self,
        requested: &[String],
        allowed: &[String],
    ) -> std::result::Result<Vec<String>, OAuthError> {
        let requested = split_scopes(requested);
        if requested.is_empty() {
            return Ok(allowed.to_vec());
        }
        let set = ScopeSet::parse_all(allowed).map_err(|_| OAuthError::ServerError)?;
        if requested.iter().any(|s| Scope::parse(s).is_err()) || !within(&requested, &set, allowed)
        {
            return Err(OAuthError::InvalidScope(
                "the requested scope is beyond what the client may ask for".into(),
            ));
        }
        Ok(requested)
    }

    #[allow(clippy::too_many_arguments)]
    async fn mint(
        &self,
        holder: HolderKind,
        holder_id: &str,
        account_id: &str,
        mode: Mode,
        subject: &str,
        scopes: &[String],
        ttl_secs: i64,
        now: Millis,
    ) -> std::result::Result<(Secret<String>, Claims), OAuthError> {
        let key = self.keyring.current().active.clone();
        let iat = now / 1000;
        let claims = Claims {
            iss: self.settings.issuer.clone(),
            aud: Audience::One(self.settings.audience.clone()),
            sub: subject.to_owned(),
            scope: join_scopes(scopes),
            exp: iat + ttl_secs,
            iat,
            nbf: Some(iat),
            jti: uuid::Uuid::new_v4().simple().to_string(),
            client_id: holder_id.to_owned(),
            lk_account: account_id.to_owned(),
            lk_mode: mode.tag().to_owned(),
            lk_holder: holder.tag().to_owned(),
        };
        let signed = claims.clone();
        let token = self
            .signer
            .run(move || key.sign(&signed))
            .await
            .ok_or_else(|| {
                tracing::warn!("the signing pool is saturated; refusing to queue more");
                OAuthError::ServerError
            })?
            .map_err(|e: JwtError| {
                tracing::error!(error = %e, "signing failed");
                OAuthError::ServerError
            })?;
        Ok((Secret::new(token), claims))
    }

    /// Client credentials (RFC 6749 §4.4): an access token, no refresh token.
    pub async fn client_credentials(
        &self,
        client: &ClientRecord,
        requested: &[String],
    ) -> std::result::Result<IssuedTokens, OAuthError> {
        if !client.allows_grant("client_credentials") {
            return Err(OAuthError::UnauthorizedClient(
                "the client may not use the client_credentials grant".into(),
            ));
        }
        let scopes = self.grant_scopes(requested, &client.scopes)?;
        let now = self.clock.now();
        let (token, _) = self
            .mint(
                HolderKind::Client,
                &client.client_id,
                &client.account_id,
                client.mode,
                &client.client_id,
                &scopes,
                self.settings.access_ttl_secs,
                now,
            )
            .await?;
        Ok(IssuedTokens {
            access_token: token,
            token_type: "Bearer",
            expires_in: self.settings.access_ttl_secs,
            refresh_token: None,
            scope: join_scopes(&scopes),
        })
    }

    /// An access token with a refresh token in `family_id`.
    #[allow(clippy::too_many_arguments)]
    async fn mint_pair(
        &self,
        holder: HolderKind,
        holder_id: &str,
        account_id: &str,
        mode: Mode,
        subject: &str,
        scopes: &[String],
        family_id: &str,
        previous: Option<&RefreshRecord>,
    ) -> std::result::Result<IssuedTokens, OAuthError> {
        let now = self.clock.now();
        let (access_ttl, refresh_ttl) = match holder {
            // The Inbenta flow: refresh before the access token expires, or start again.
            HolderKind::Key => (
                self.settings.exchange_ttl_secs,
                self.settings.exchange_ttl_secs,
            ),
            HolderKind::Client => (
                self.settings.access_ttl_secs,
                self.settings.refresh_ttl_secs,
            ),
        };
        let (access, claims) = self
            .mint(
                holder, holder_id, account_id, mode, subject, scopes, access_ttl, now,
            )
            .await?;
        let refresh = Secret::new(format!("lkrt_{}", random_token(32)?));
        let record = RefreshRecord {
            token_hash: crypto::sha256(refresh.expose().as_bytes()),
            family_id: family_id.to_owned(),
            holder_kind: holder,
            holder_id: holder_id.to_owned(),
            account_id: account_id.to_owned(),
            mode,
            subject: subject.to_owned(),
            // A refresh may narrow the access token, never the grant (RFC 6749 §6).
            scope: previous.map_or_else(|| join_scopes(scopes), |p| p.scope.clone()),
            access_jti: claims.jti.clone(),
            access_expires_at: claims.exp * 1000,
            expires_at: now + refresh_ttl * 1000,
            created_at: now,
            rotated_at: None,
            revoked_at: None,
        };
        match previous {
            None => self.tokens.insert_refresh(&record).await?,
            Some(old) => {
                if !self.tokens.rotate_refresh(&old.token_hash, &record).await? {
                    // Two presentations raced: treat it as reuse.
                    self.tokens.revoke_family(family_id, now).await?;
                    self.resolver.invalidate_all();
                    return Err(OAuthError::InvalidGrant(
                        "the refresh token was already used".into(),
                    ));
                }
            }
        }
        Ok(IssuedTokens {
            access_token: access,
            token_type: "Bearer",
            expires_in: access_ttl,
            refresh_token: Some(refresh),
            scope: join_scopes(scopes),
        })
    }

    /// The Inbenta secret flow: an API secret key for a short-lived token pair.
    pub async fn exchange_secret(
        &self,
        api_key: &str,
        requested: &[String],
    ) -> std::result::Result<IssuedTokens, OAuthError> {
        let bad = || OAuthError::InvalidClient("the API key is not valid".into());
        let api_key = super::credential::strip_bearer(api_key);
        if crypto::keyfmt::parse(api_key, &self.key_prefix).is_err() {
            return Err(bad());
        }
        let hash = crypto::sha256(api_key.as_bytes());
        let key = self.resolver.resolve(&hash).await?.ok_or_else(bad)?;
        let now = self.clock.now();
        if key.record.status_at(now) != KeyStatus::Active || key.account.is_operator {
            return Err(bad());
        }
        if !matches!(key.record.kind, KeyKind::Secret | KeyKind::Restricted) {
            return Err(OAuthError::UnauthorizedClient(
                "only secret and restricted keys can be exchanged for a token".into(),
            ));
        }
        let scopes = self.grant_scopes(requested, &key.scope_strings)?;
        let family = new_id("fam");
        self.mint_pair(
            HolderKind::Key,
            &key.record.id,
            &key.account.id,
            key.record.mode,
            &key.record.id,
            &scopes,
            &family,
            None,
        )
        .await
    }

    // ---- authorization code ---------------------------------------------

    /// Validates an authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3).
    #[allow(clippy::too_many_arguments)]
    pub async fn authorize_request(
        &self,
        response_type: Option<&str>,
        client_id: Option<&str>,
        redirect_uri: Option<&str>,
        scope: Option<&str>,
        state: Option<&str>,
        code_challenge: Option<&str>,
        code_challenge_method: Option<&str>,
    ) -> std::result::Result<AuthorizeRequest, AuthorizeError> {
        let client_id = client_id.unwrap_or_default();
        let client = if valid_id(client_id, CLIENT_ID_PREFIX) {
            self.tokens.get_client(client_id).await.map_err(|e| {
                tracing::error!(error = %e, "client lookup failed");
                AuthorizeError::Page("the request could not be checked; try again".into())
            })?
        } else {
            None
        };
        let Some(client) = client else {
            return Err(AuthorizeError::Page(
                "unknown client: the link that brought you here is wrong".into(),
            ));
        };
        // Exactly one of the registered URIs; without one named, only if there is just one.
        let redirect_uri = match redirect_uri {
            Some(uri) if client.redirect_uris.iter().any(|r| r == uri) => uri.to_owned(),
            None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
            _ => {
                return Err(AuthorizeError::Page(
                    "the redirect URI is not registered for this client".into(),
                ));
            }
        };
        let state = state.map(str::to_owned);
        let fail = |error: &'static str, description: &str| AuthorizeError::Redirect {
            redirect_uri: redirect_uri.clone(),
            error,
            description: description.to_owned(),
            state: state.clone(),
        };
        if response_type.is_none() {
            return Err(fail("invalid_request", "response_type is required"));
        }
        if response_type != Some("code") {
            return Err(fail(
                "unsupported_response_type",
                "response_type must be `code`",
            ));
        }
        if !client.allows_grant("authorization_code") {
            return Err(fail(
                "unauthorized_client",
                "the client may not use the authorization_code grant",
            ));
        }
        let challenge = code_challenge.unwrap_or_default();
        if challenge.is_empty() {
            return Err(fail(
                "invalid_request",
                "PKCE is required: send code_challenge",
            ));
        }
        if code_challenge_method != Some("S256") {
            return Err(fail(
                "invalid_request",
                "code_challenge_method must be S256",
            ));
        }
        if challenge.len() != 43 || B64.decode(challenge).is_err() {
            return Err(fail(
                "invalid_request",
                "code_challenge must be the base64url SHA-256 of the verifier (43 characters)",
            ));
        }
        let requested: Vec<String> = scope.map(|s| vec![s.to_owned()]).unwrap_or_default();
        let scopes = self
            .grant_scopes(&requested, &client.scopes)
            .map_err(|e| match e {
                OAuthError::InvalidScope(m) => fail("invalid_scope", &m),
                _ => fail("server_error", "the request could not be checked"),
            })?;
        Ok(AuthorizeRequest {
            client,
            redirect_uri,
            scope: scopes,
            state,
            code_challenge: challenge.to_owned(),
        })
    }

    /// The resource owner said yes: a single-use code.
    pub async fn issue_code(
        &self,
        request: &AuthorizeRequest,
        subject: &str,
    ) -> std::result::Result<Secret<String>, OAuthError> {
        let code = Secret::new(random_token(32)?);
        let now = self.clock.now();
        self.tokens
            .insert_code(&AuthCodeRecord {
                code_hash: crypto::sha256(code.expose().as_bytes()),
                client_id: request.client.client_id.clone(),
                subject: subject.to_owned(),
                redirect_uri: request.redirect_uri.clone(),
                scope: join_scopes(&request.scope),
                code_challenge: request.code_challenge.clone(),
                family_id: new_id("fam"),
                expires_at: now + self.settings.code_ttl_secs * 1000,
                used_at: None,
                created_at: now,
            })
            .await?;
        Ok(code)
    }

    /// The code for tokens (RFC 6749 §4.1.3, RFC 7636 §4.6).
    pub async fn exchange_code(
        &self,
        client: &ClientRecord,
        code: &str,
        redirect_uri: Option<&str>,
        code_verifier: Option<&str>,
    ) -> std::result::Result<IssuedTokens, OAuthError> {
        let invalid = |m: &str| OAuthError::InvalidGrant(m.to_owned());
        if !client.allows_grant("authorization_code") {
            return Err(OAuthError::UnauthorizedClient(
                "the client may not use the authorization_code grant".into(),
            ));
        }
        let now = self.clock.now();
        let Some((record, won)) = self
            .tokens
            .use_code(&crypto::sha256(code.as_bytes()), now)
            .await?
        else {
            return Err(invalid("the authorization code is not valid"));
        };
        if !won {
            // A replayed code: whatever the first use issued is revoked (RFC 6749 §4.1.2).
            self.tokens.revoke_family(&record.family_id, now).await?;
            self.resolver.invalidate_all();
            return Err(invalid("the authorization code was already used"));
        }
        if record.expires_at <= now {
            return Err(invalid("the authorization code has expired"));
        }
        if record.client_id != client.client_id {
            return Err(invalid(
                "the authorization code was issued to another client",
            ));
        }
        if redirect_uri != Some(record.redirect_uri.as_str()) {
            return Err(invalid(
                "redirect_uri must be the one the authorization request used",
            ));
        }
        let verifier = code_verifier.unwrap_or_default();
        if !(43..=128).contains(&verifier.len())
            || !verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        {
            return Err(invalid("code_verifier is missing or malformed"));
        }
        let computed = B64.encode(crypto::sha256(verifier.as_bytes()));
        if !ct_eq(computed.as_bytes(), record.code_challenge.as_bytes()) {
            return Err(invalid("code_verifier does not match the code_challenge"));
        }
        let scopes = split_scopes(&[record.scope.as_str()]);
        let mut issued = self
            .mint_pair(
                HolderKind::Client,
                &client.client_id,
                &client.account_id,
                client.mode,
                &record.subject,
                &scopes,
                &record.family_id,
                None,
            )
            .await?;
        // The refresh record is kept either way: it is what a replayed code revokes.
        if !client.allows_grant("refresh_token") {
            issued.refresh_token = None;
        }
        Ok(issued)
    }

    /// A refresh token for a new pair (RFC 6749 §6). A rotated-out token
    /// presented again revokes its whole family.
    pub async fn refresh(
        &self,
        client: Option<&ClientRecord>,
        refresh_token: &str,
        requested: &[String],
    ) -> std::result::Result<IssuedTokens, OAuthError> {
        let invalid = |m: &str| OAuthError::InvalidGrant(m.to_owned());
        let hash = crypto::sha256(refresh_token.as_bytes());
        let now = self.clock.now();
        let Some(record) = self.tokens.get_refresh(&hash).await? else {
            return Err(invalid("the refresh token is not valid"));
        };
        match (record.holder_kind, client) {
            (HolderKind::Client, Some(c)) if c.client_id == record.holder_id => {
                if !c.allows_grant("refresh_token") {
                    return Err(OAuthError::UnauthorizedClient(
                        "the client may not use the refresh_token grant".into(),
                    ));
                }
            }
            (HolderKind::Client, None) => {
                return Err(OAuthError::InvalidClient(
                    "this refresh token needs client authentication".into(),
                ));
            }
            (HolderKind::Key, None) => {}
            _ => return Err(invalid("the refresh token was issued to another client")),
        }
        if record.revoked_at.is_some() {
            return Err(invalid("the refresh token was revoked"));
        }
        if record.rotated_at.is_some() {
            self.tokens.revoke_family(&record.family_id, now).await?;
            self.resolver.invalidate_all();
            tracing::warn!(family = %record.family_id, "a rotated-out refresh token was presented; family revoked");
            return Err(invalid("the refresh token was already used"));
        }
        if record.expires_at <= now {
            return Err(invalid("the refresh token has expired"));
        }
        // May narrow, never widen (RFC 6749 §6): the same rule as a grant,
        // with what was granted as the limit.
        let granted = split_scopes(&[record.scope.as_str()]);
        let scopes = self.grant_scopes(requested, &granted)?;
        if record.holder_kind == HolderKind::Key {
            self.live_key(&record.holder_id, now)
                .await
                .map_err(|_| invalid("the API key behind this token no longer works"))?;
        }
        self.mint_pair(
            record.holder_kind,
            &record.holder_id,
            &record.account_id,
            record.mode,
            &record.subject,
            &scopes,
            &record.family_id,
            Some(&record),
        )
        .await
    }

    // ---- introspection and revocation -----------------------------------

    /// Claims of an access token that verifies and is not revoked, or the
    /// record of a live refresh token.
    pub async fn introspect(&self, token: &str) -> Option<Introspection> {
        let now = self.clock.now();
        if jwt::looks_like_jwt(token) {
            let claims = self.verify_claims(token, now).await.ok()?;
            if self.principal_for(&claims, now).await.is_err() {
                return None;
            }
            return Some(Introspection {
                token_type: "access_token",
                scope: claims.scope.clone(),
                client_id: claims.client_id.clone(),
                sub: claims.sub.clone(),
                exp: claims.exp,
                iat: claims.iat,
                jti: claims.jti.clone(),
                account_id: claims.lk_account.clone(),
                iss: claims.iss.clone(),
                aud: claims.aud.first().to_owned(),
            });
        }
        let record = self
            .tokens
            .get_refresh(&crypto::sha256(token.as_bytes()))
            .await
            .ok()??;
        if record.revoked_at.is_some() || record.rotated_at.is_some() || record.expires_at <= now {
            return None;
        }
        Some(Introspection {
            token_type: "refresh_token",
            scope: record.scope,
            client_id: record.holder_id,
            sub: record.subject,
            exp: record.expires_at / 1000,
            iat: record.created_at / 1000,
            jti: String::new(),
            account_id: record.account_id,
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
        })
    }

    /// RFC 7009: revokes an access token (by `jti`) or a refresh token (and
    /// the access token issued with it). Unknown tokens are not an error.
    /// With `client`, only that client's tokens are touched.
    pub async fn revoke(
        &self,
        token: &str,
        client: Option<&ClientRecord>,
    ) -> std::result::Result<(), OAuthError> {
        let now = self.clock.now();
        if jwt::looks_like_jwt(token) {
            // Signature checked, expiry not: revoking an expired token is harmless.
            let Ok(claims) = self.verify_signature(token) else {
                return Ok(());
            };
            if client.is_some_and(|c| c.client_id != claims.client_id) {
                return Ok(());
            }
            self.tokens
                .revoke_jti(&claims.jti, (claims.exp + self.settings.leeway_secs) * 1000)
                .await?;
        } else {
            let hash = crypto::sha256(token.as_bytes());
            let Some(record) = self.tokens.get_refresh(&hash).await? else {
                return Ok(());
            };
            if client.is_some_and(|c| c.client_id != record.holder_id) {
                return Ok(());
            }
            self.tokens.revoke_refresh(&hash, now).await?;
        }
        self.resolver.invalidate_all();
        Ok(())
    }

    // ---- verification (Check) ------------------------------------------

    fn verify_signature(&self, token: &str) -> std::result::Result<Claims, TokenDenial> {
        let parts = jwt::split(token).map_err(|e| {
            denial(
                Reason::CredentialMalformed,
                format!("the token is malformed: {e}"),
            )
        })?;
        if parts.header.alg.eq_ignore_ascii_case("none") {
            return Err(denial(
                Reason::TokenUnsigned,
                "unsigned tokens (alg `none`) are never accepted",
            ));
        }
        if parts.header.crit.is_some() {
            return Err(denial(
                Reason::CredentialMalformed,
                "the token names critical header parameters this server does not support",
            ));
        }
        let kid = parts.header.kid.as_deref().unwrap_or_default();
        let state = self.keyring.current();
        let Some(key) = state.verifiers.iter().find(|v| v.kid == kid) else {
            return Err(denial(
                Reason::TokenKeyUnknown,
                "the token's `kid` names no current signing key",
            ));
        };
        if parts.header.alg != key.alg.name() {
            return Err(denial(
                Reason::TokenAlgorithmMismatch,
                format!(
                    "the token says `{}` but its key is {}",
                    parts.header.alg.chars().take(16).collect::<String>(),
                    key.alg
                ),
            ));
        }
        key.verify(&parts).map_err(|_| {
            denial(
                Reason::TokenSignatureInvalid,
                "the token's signature does not verify",
            )
        })?;
        serde_json::from_slice::<Claims>(&parts.claims).map_err(|_| {
            denial(
                Reason::CredentialMalformed,
                "the token's claims are not the ones this server issues",
            )
        })
    }

    /// Signature, then `exp`/`nbf` (with leeway), `iss`, `aud`, and revocation.
    async fn verify_claims(
        &self,
        token: &str,
        now: Millis,
    ) -> std::result::Result<Claims, TokenDenial> {
        let claims = match self.verify_signature(token) {
            Err(d) if d.reason == Reason::TokenKeyUnknown && self.may_reload() => {
                // Another replica may have rotated: look once more.
                if let Err(e) = self.reload_keys().await {
                    tracing::warn!(error = %e, "signing keys could not be re-read");
                }
                self.verify_signature(token)?
            }
            other => other?,
        };
        let now_s = now / 1000;
        let leeway = self.settings.leeway_secs;
        if claims.exp + leeway <= now_s {
            return Err(denial(Reason::TokenExpired, "the token has expired"));
        }
        if claims.nbf.is_some_and(|nbf| nbf - leeway > now_s) {
            return Err(denial(
                Reason::TokenNotYetValid,
                "the token is not valid yet",
            ));
        }
        if claims.iss != self.settings.issuer || !claims.aud.contains(&self.settings.audience) {
            return Err(denial(
                Reason::TokenClaimsInvalid,
                "the token was issued for another issuer or audience",
            ));
        }
        match self.tokens.is_revoked(&claims.jti).await {
            Ok(false) => Ok(claims),
            Ok(true) => Err(denial(Reason::TokenRevoked, "the token was revoked")),
            Err(e) => {
                tracing::error!(error = %e, "revocation lookup failed; denying");
                Err(denial(
                    Reason::InternalError,
                    "the decision could not be made; denied",
                ))
            }
        }
    }

    fn may_reload(&self) -> bool {
        let mut last = self
            .keyring
            .last_reload
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < KEYRING_RELOAD_INTERVAL) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// The key with this id, if it works right now.
    async fn live_key(
        &self,
        key_id: &str,
        now: Millis,
    ) -> std::result::Result<Arc<ResolvedKey>, TokenDenial> {
        let internal = |e: StoreError| {
            tracing::error!(error = %e, "key lookup failed; denying");
            denial(
                Reason::InternalError,
                "the decision could not be made; denied",
            )
        };
        let slot = crypto::sha256(key_id.as_bytes());
        let hash = match self.key_hashes.get(&slot) {
            Some(h) => h,
            None => {
                if !valid_id(key_id, KEY_ID_PREFIX) {
                    return Err(denial(Reason::CredentialUnknown, "no such key"));
                }
                let record: Option<KeyRecord> =
                    self.store.get_key(key_id).await.map_err(internal)?;
                let Some(record) = record else {
                    return Err(denial(
                        Reason::CredentialUnknown,
                        "the key behind the token is gone",
                    ));
                };
                self.key_hashes.insert(slot, record.key_hash);
                record.key_hash
            }
        };
        let Some(key) = self.resolver.resolve(&hash).await.map_err(internal)? else {
            return Err(denial(
                Reason::CredentialUnknown,
                "the key behind the token is gone",
            ));
        };
        match key_status_denial(key.record.status_at(now)) {
            None => Ok(key),
            Some((reason, message)) => Err(TokenDenial {
                reason,
                message: format!("the token's API key: {message}"),
                principal: Some(key),
            }),
        }
    }

    /// The principal a verified token speaks for: the exchanged key (with the
    /// token's narrower scopes), or the client in its account.
    async fn principal_for(
        &self,
        claims: &Claims,
        now: Millis,
    ) -> std::result::Result<Arc<ResolvedKey>, TokenDenial> {
        let scopes = split_scopes(&[claims.scope.as_str()]);
        let scope_set = Arc::new(ScopeSet::parse_all(&scopes).map_err(|_| {
            denial(
                Reason::CredentialMalformed,
                "the token carries a malformed scope",
            )
        })?);
        let internal = |e: StoreError| {
            tracing::error!(error = %e, "token principal lookup failed; denying");
            denial(
                Reason::InternalError,
                "the decision could not be made; denied",
            )
        };
        match HolderKind::from_tag(&claims.lk_holder) {
            Some(HolderKind::Key) => {
                let key = self.live_key(&claims.client_id, now).await?;
                Ok(Arc::new(ResolvedKey {
                    record: key.record.clone(),
                    account: key.account.clone(),
                    scope_strings: scope_set.strings(),
                    scopes: scope_set,
                    entitlements: key.entitlements.clone(),
                    cidrs: key.cidrs.clone(),
                    origins: key.origins.clone(),
                    last_reported: AtomicI64::new(i64::MIN),
                }))
            }
            Some(HolderKind::Client) => {
                let client = self.client(&claims.client_id).await.map_err(internal)?;
                let Some(client) = client else {
                    return Err(denial(
                        Reason::TokenRevoked,
                        "the token's client was deleted",
                    ));
                };
                let account: Option<Account> = self
                    .store
                    .get_account(&client.account_id)
                    .await
                    .map_err(internal)?;
                let Some(account) = account else {
                    return Err(denial(
                        Reason::CredentialUnknown,
                        "the client's account is gone",
                    ));
                };
                let entitlements = self.policy.plan(&account.plan).cloned();
                Ok(Arc::new(ResolvedKey {
                    record: KeyRecord {
                        id: client.client_id.clone(),
                        account_id: client.account_id.clone(),
                        mode: client.mode,
                        kind: KeyKind::Secret,
                        name: client.name.clone(),
                        key_hash: [0; 32],
                        masked: String::new(),
                        scopes: scopes.clone(),
                        role: None,
                        allowed_cidrs: Vec::new(),
                        allowed_origins: Vec::new(),
                        status: StoredKeyStatus::Active,
                        expires_at: claims.exp * 1000,
                        created_at: claims.iat * 1000,
                        updated_at: claims.iat * 1000,
                        last_used_at: None,
                        predecessor_id: None,
                        successor_id: None,
                        overlap_ends_at: None,
                        version: 1,
                        signing_secret_id: None,
                    },
                    account,
                    scope_strings: scope_set.strings(),
                    scopes: scope_set,
                    entitlements,
                    cidrs: Vec::new(),
                    origins: Vec::new(),
                    // Not an API key: no last-used times to record.
                    last_reported: AtomicI64::new(i64::MAX),
                }))
            }
            None => Err(denial(
                Reason::CredentialMalformed,
                "the token names no holder this server knows",
            )),
        }
    }

    /// A presented JWT → the principal `decide` goes on with. Verified tokens
    /// are cached; any invalidation (key change, revocation, deleted client)
    /// makes the next use check again.
    pub async fn authenticate(
        &self,
        token: &str,
    ) -> std::result::Result<Arc<ResolvedKey>, TokenDenial> {
        let epoch = self.resolver.epoch();
        let now = self.clock.now();
        let slot = crypto::sha256(token.as_bytes());
        if let Some(entry) = self.verified.get(&slot)
            && entry.epoch == epoch
        {
            if entry.exp + self.settings.leeway_secs * 1000 <= now {
                return Err(denial(Reason::TokenExpired, "the token has expired"));
            }
            return Ok(entry.principal.clone());
        }
        let claims = self.verify_claims(token, now).await?;
        let principal = self.principal_for(&claims, now).await?;
        self.verified.insert(
            slot,
            Arc::new(TokenEntry {
                principal: principal.clone(),
                exp: claims.exp * 1000,
                epoch,
            }),
        );
        Ok(principal)
    }
}

/// RFC 7662 §2.2 fields of an active token.
#[derive(Debug, Clone)]
pub struct Introspection {
    pub token_type: &'static str,
    pub scope: String,
    pub client_id: String,
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub account_id: String,
    pub iss: String,
    pub aud: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_must_be_https_or_loopback_without_fragment() {
        assert!(check_redirect_uri("https://app.example.com/cb").is_ok());
        assert!(check_redirect_uri("http://127.0.0.1:8000/cb").is_ok());
        assert!(check_redirect_uri("http://localhost/cb").is_ok());
        assert!(check_redirect_uri("http://example.com/cb").is_err());
        assert!(check_redirect_uri("http://localhost.evil.com/cb").is_err());
        assert!(check_redirect_uri("https://app.example.com/cb#x").is_err());
        assert!(check_redirect_uri("javascript:alert(1)").is_err());
    }

    #[test]
    fn requested_scopes_must_stay_within_the_allowed_ones() {
        let allowed = vec!["surveys.*".to_owned(), "feeds.read".to_owned()];
        let set = ScopeSet::parse_all(&allowed).unwrap();
        assert!(within(&["surveys.read".into()], &set, &allowed));
        assert!(within(
            &["surveys.*".into(), "feeds.read".into()],
            &set,
            &allowed
        ));
        assert!(!within(&["feeds.write".into()], &set, &allowed));
        assert!(!within(&["*".into()], &set, &allowed));
        assert_eq!(
            split_scopes(&["b a", "a"]),
            vec!["a".to_owned(), "b".to_owned()]
        );
    }
}
