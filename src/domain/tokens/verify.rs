//! A presented JWT for Check: signature (RFC 7515), the registered claims
//! (RFC 7519 §4.1), revocation, and the principal it speaks for, the same
//! `ResolvedKey` an API key resolves to.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use super::{Claims, TokenManager, log_internal, split_scopes};
use crate::crypto;
use crate::crypto::jwt::{self, JwtError, VerifyingKey};
use crate::domain::cache::CacheUse;
use crate::domain::error::Error;
use crate::domain::keys::KEY_ID_PREFIX;
use crate::domain::model::{
    Account, HolderKind, KeyKind, KeyRecord, Millis, StoredKeyStatus, valid_id,
};
use crate::domain::permissions::ScopeSet;
use crate::domain::reason::{Reason, key_status_denial};
use crate::domain::resolver::{KeyFacts, ResolvedKey};
use crate::ports::StoreError;

/// A verified token, cached by the SHA-256 of its text.
pub(super) struct TokenEntry {
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

impl TokenManager {
    /// The header read (unverified) only to find the key; then the key's
    /// own validation: signature, `iss`, `aud`, required claims
    /// (`jsonwebtoken`), and `typ` (RFC 9068 §4).
    /// `verifiers`: the signing keys to verify with (this replica's keyring,
    /// or, for Explain, those read from the store just now).
    pub(super) fn verify_signature(
        &self,
        token: &str,
        verifiers: &[Arc<VerifyingKey>],
    ) -> std::result::Result<Claims, TokenDenial> {
        let header = jwt::header(token).map_err(|e| match e {
            JwtError::Unsigned => denial(
                Reason::TokenUnsigned,
                "unsigned tokens (alg `none`) are never accepted",
            ),
            JwtError::UnknownAlgorithm => denial(
                Reason::TokenAlgorithmMismatch,
                "the token names an algorithm no signing key here uses",
            ),
            e => denial(
                Reason::CredentialMalformed,
                format!("the token is malformed: {e}"),
            ),
        })?;
        if header.crit.is_some() {
            return Err(denial(
                Reason::CredentialMalformed,
                "the token names critical header parameters this server does not support",
            ));
        }
        let kid = header.kid.as_deref().unwrap_or_default();
        let Some(key) = verifiers.iter().find(|v| v.kid == kid) else {
            return Err(denial(
                Reason::TokenKeyUnknown,
                "the token's `kid` names no current signing key",
            ));
        };
        // The key decides the algorithm, never the token.
        if header.alg != key.alg.jws() {
            return Err(denial(
                Reason::TokenAlgorithmMismatch,
                format!(
                    "the token says `{:?}` but its key is {}",
                    header.alg, key.alg
                ),
            ));
        }
        let (header, claims) = key.decode::<Claims>(token).map_err(|e| match e {
            JwtError::BadSignature => denial(
                Reason::TokenSignatureInvalid,
                "the token's signature does not verify",
            ),
            JwtError::UnknownAlgorithm => denial(
                Reason::TokenAlgorithmMismatch,
                format!("the token's algorithm is not its key's ({})", key.alg),
            ),
            e @ (JwtError::MissingClaim(_)
            | JwtError::WrongIssuer
            | JwtError::WrongAudience
            | JwtError::BadClaims) => denial(Reason::TokenClaimsInvalid, e.to_string()),
            e => denial(
                Reason::CredentialMalformed,
                format!("the token is malformed: {e}"),
            ),
        })?;
        // RFC 9068 §4: an access token says so (`at+jwt`, or the full
        // media type), so that no other JWT a key signed passes for one.
        let typ = header.typ.as_deref().unwrap_or_default();
        if !typ.eq_ignore_ascii_case(jwt::ACCESS_TOKEN_TYP)
            && !typ.eq_ignore_ascii_case("application/at+jwt")
        {
            return Err(denial(
                Reason::TokenClaimsInvalid,
                "the token is not an access token (`typ` must be `at+jwt`)",
            ));
        }
        if claims.iat.is_none() {
            return Err(denial(
                Reason::TokenClaimsInvalid,
                "the token lacks the `iat` claim",
            ));
        }
        Ok(claims)
    }

    /// Signature and claims, then time on this server's clock (`exp`,
    /// `nbf`, `iat`, each with the leeway), then revocation (always read
    /// from the store). With `Bypass` the signing keys are read from the
    /// store too, and this replica's keyring is left as it is.
    pub(super) async fn verify_claims(
        &self,
        token: &str,
        now: Millis,
        cache: CacheUse,
    ) -> std::result::Result<Claims, TokenDenial> {
        let claims = match cache {
            CacheUse::Bypass => self.verify_signature(token, &self.stored_verifiers().await?)?,
            CacheUse::Fill | CacheUse::Peek => {
                match self.verify_signature(token, &self.keyring.current().verifiers) {
                    Err(d) if d.reason == Reason::TokenKeyUnknown && cache == CacheUse::Peek => {
                        // Check would re-read the keys: do so, keeping them.
                        self.verify_signature(token, &self.stored_verifiers().await?)?
                    }
                    Err(d) if d.reason == Reason::TokenKeyUnknown && self.keyring.may_reload() => {
                        // Another replica may have rotated: look once more.
                        if let Err(e) = self.reload_keys().await {
                            tracing::warn!(error = %e, "signing keys could not be re-read");
                        }
                        self.verify_signature(token, &self.keyring.current().verifiers)?
                    }
                    other => other?,
                }
            }
        };
        let now_s = now / 1000;
        let leeway = self.settings.leeway_secs;
        if claims.exp.saturating_add(leeway) <= now_s {
            return Err(denial(Reason::TokenExpired, "the token has expired"));
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf.saturating_sub(leeway) > now_s)
        {
            return Err(denial(
                Reason::TokenNotYetValid,
                "the token is not valid yet",
            ));
        }
        if claims
            .iat
            .is_some_and(|iat| iat.saturating_sub(leeway) > now_s)
        {
            return Err(denial(
                Reason::TokenNotYetValid,
                "the token was issued in the future",
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

    /// The signing keys as the store holds them now (the keyring untouched).
    async fn stored_verifiers(&self) -> std::result::Result<Vec<Arc<VerifyingKey>>, TokenDenial> {
        self.read_verifiers().await.map_err(|e| {
            match &e {
                Error::Internal { .. } => log_internal(&e),
                other => tracing::error!(error = %other, "signing keys could not be read; denying"),
            }
            denial(
                Reason::InternalError,
                "the signing keys could not be read; denied",
            )
        })
    }

    /// The key with this id, if it works right now.
    pub(super) async fn live_key(
        &self,
        key_id: &str,
        now: Millis,
        cache: CacheUse,
    ) -> std::result::Result<Arc<ResolvedKey>, TokenDenial> {
        let internal = |e: StoreError| {
            tracing::error!(error = %e, "key lookup failed; denying");
            denial(
                Reason::InternalError,
                "the decision could not be made; denied",
            )
        };
        let slot = crypto::sha256(key_id.as_bytes());
        let hash = match (cache != CacheUse::Bypass)
            .then(|| self.key_hashes.get(&slot))
            .flatten()
        {
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
                if cache == CacheUse::Fill {
                    self.key_hashes.insert(slot, record.key_hash);
                }
                record.key_hash
            }
        };
        let found = match cache {
            CacheUse::Fill => self.resolver.resolve(&hash).await,
            CacheUse::Bypass => self.resolver.resolve_uncached(&hash).await,
            CacheUse::Peek => match self.resolver.cached(&hash) {
                Some(held) => Ok(held),
                None => self.resolver.resolve_uncached(&hash).await,
            },
        };
        let Some(key) = found.map_err(internal)? else {
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
    pub(super) async fn principal_for(
        &self,
        claims: &Claims,
        now: Millis,
        cache: CacheUse,
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
                let key = self.live_key(&claims.client_id, now, cache).await?;
                Ok(Arc::new(ResolvedKey {
                    record: key.record.clone(),
                    account: key.account.clone(),
                    scope_strings: scope_set.strings().into(),
                    scopes: scope_set,
                    entitlements: key.entitlements.clone(),
                    cidrs: key.cidrs.clone(),
                    origins: key.origins.clone(),
                    last_reported: AtomicI64::new(i64::MIN),
                }))
            }
            Some(HolderKind::Client) => {
                let client = self
                    .client(&claims.client_id, cache)
                    .await
                    .map_err(internal)?;
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
                    record: KeyFacts::from(KeyRecord {
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
                        created_at: claims.iat.unwrap_or_default() * 1000,
                        updated_at: claims.iat.unwrap_or_default() * 1000,
                        last_used_at: None,
                        predecessor_id: None,
                        successor_id: None,
                        overlap_ends_at: None,
                        version: 1,
                        signing_secret_id: None,
                        rate_limit: None,
                        suspension_cause: None,
                    }),
                    account: Arc::new(account),
                    scope_strings: scope_set.strings().into(),
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
    /// makes the next use check again. `cache`: Check fills the caches;
    /// Explain verifies from the store alone (`Bypass`: signing keys,
    /// revocation, key and client), then from what the caches hold
    /// (`Peek`), filling nothing.
    pub async fn authenticate(
        &self,
        token: &str,
        cache: CacheUse,
    ) -> std::result::Result<Arc<ResolvedKey>, TokenDenial> {
        let epoch = self.resolver.epoch();
        let now = self.clock.now();
        let slot = crypto::sha256(token.as_bytes());
        if cache != CacheUse::Bypass
            && let Some(entry) = self.verified.get(&slot)
            && entry.epoch == epoch
        {
            if entry.exp + self.settings.leeway_secs * 1000 <= now {
                return Err(denial(Reason::TokenExpired, "the token has expired"));
            }
            return Ok(entry.principal.clone());
        }
        let claims = self.verify_claims(token, now, cache).await?;
        let principal = self.principal_for(&claims, now, cache).await?;
        if cache == CacheUse::Fill {
            self.verified.insert(
                slot,
                Arc::new(TokenEntry {
                    principal: principal.clone(),
                    exp: claims.exp * 1000,
                    epoch,
                }),
            );
        }
        Ok(principal)
    }

    /// Does the verified-token cache hold this token (still trusted)?
    pub fn holds_verified(&self, token: &str) -> bool {
        self.verified
            .get(&crypto::sha256(token.as_bytes()))
            .is_some_and(|entry| entry.epoch == self.resolver.epoch())
    }
}
