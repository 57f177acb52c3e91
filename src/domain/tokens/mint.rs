//! Minting access tokens (RFC 9068 claims) and refresh tokens, and the two
//! grants that need nothing but the caller: client credentials (RFC 6749
//! §4.4) and the exchange of an API secret key for a short-lived pair.

use super::{
    Audience, Claims, IssuedTokens, OAuthError, TokenManager, join_scopes, random_token,
    split_scopes,
};
use crate::crypto;
use crate::crypto::jwt::JwtError;
use crate::crypto::secret::Secret;
use crate::domain::credential::strip_bearer;
use crate::domain::model::{
    ClientRecord, HolderKind, KeyKind, KeyStatus, Millis, Mode, RefreshRecord, new_id,
};
use crate::domain::permissions::{Permission, Scope, ScopeSet};

/// Is every scope in `requested` within `allowed`? A wildcard request needs
/// the same wildcard (or `*`) among the allowed ones.
pub(super) fn within(requested: &[String], allowed: &ScopeSet, allowed_strings: &[String]) -> bool {
    requested.iter().all(|s| {
        if s.contains('*') {
            allowed_strings.iter().any(|a| a == s || a == "*")
        } else {
            Permission::parse(s).is_ok_and(|p| allowed.grants(&p))
        }
    })
}

/// Who a token is for and what it may do: the holder (an OAuth2 client or
/// an exchanged API key), the account and mode it acts in, its subject and
/// its scopes.
pub(super) struct Grant<'a> {
    pub(super) holder: HolderKind,
    pub(super) holder_id: &'a str,
    pub(super) account_id: &'a str,
    pub(super) mode: Mode,
    pub(super) subject: &'a str,
    pub(super) scopes: &'a [String],
}

impl TokenManager {
    /// Requested scopes, or all of the client's when none are named.
    pub(super) fn grant_scopes(
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

    async fn mint(
        &self,
        grant: &Grant<'_>,
        ttl_secs: i64,
        now: Millis,
    ) -> std::result::Result<(Secret<String>, Claims), OAuthError> {
        let key = self.keyring.current().active.clone();
        let iat = now / 1000;
        let claims = Claims {
            iss: self.settings.issuer.clone(),
            aud: Audience::One(self.settings.audience.clone()),
            sub: grant.subject.to_owned(),
            scope: join_scopes(grant.scopes),
            exp: iat + ttl_secs,
            iat: Some(iat),
            nbf: Some(iat),
            jti: uuid::Uuid::new_v4().simple().to_string(),
            client_id: grant.holder_id.to_owned(),
            lk_account: grant.account_id.to_owned(),
            lk_mode: grant.mode.tag().to_owned(),
            lk_holder: grant.holder.tag().to_owned(),
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
        // The client may have come from the cache. A deleted client is not
        // in it: deleting one drops every cached client here and, through
        // the store's notification, on every replica. What the cache cannot
        // tell is an outage: a store known to be down is a 503, not a token
        // (nothing may be issued that introspection or revocation could not
        // then answer). One atomic read, not a query per token: re-reading
        // the client on every mint halved issuance.
        if self.tokens.known_down() {
            return Err(OAuthError::TemporarilyUnavailable);
        }
        let now = self.clock.now();
        let (token, _) = self
            .mint(
                &Grant {
                    holder: HolderKind::Client,
                    holder_id: &client.client_id,
                    account_id: &client.account_id,
                    mode: client.mode,
                    subject: &client.client_id,
                    scopes: &scopes,
                },
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
    pub(super) async fn mint_pair(
        &self,
        grant: &Grant<'_>,
        family_id: &str,
        previous: Option<&RefreshRecord>,
    ) -> std::result::Result<IssuedTokens, OAuthError> {
        let now = self.clock.now();
        let (access_ttl, refresh_ttl) = match grant.holder {
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
        let (access, claims) = self.mint(grant, access_ttl, now).await?;
        let refresh = Secret::new(format!("lkrt_{}", random_token(32)?));
        let record = RefreshRecord {
            token_hash: crypto::sha256(refresh.expose().as_bytes()),
            family_id: family_id.to_owned(),
            holder_kind: grant.holder,
            holder_id: grant.holder_id.to_owned(),
            account_id: grant.account_id.to_owned(),
            mode: grant.mode,
            subject: grant.subject.to_owned(),
            // A refresh may narrow the access token, never the grant (RFC 6749 §6).
            scope: previous.map_or_else(|| join_scopes(grant.scopes), |p| p.scope.clone()),
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
            scope: join_scopes(grant.scopes),
        })
    }

    /// The Inbenta secret flow: an API secret key for a short-lived token pair.
    pub async fn exchange_secret(
        &self,
        api_key: &str,
        requested: &[String],
    ) -> std::result::Result<IssuedTokens, OAuthError> {
        let bad = || OAuthError::InvalidClient("the API key is not valid".into());
        let api_key = strip_bearer(api_key);
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
            &Grant {
                holder: HolderKind::Key,
                holder_id: &key.record.id,
                account_id: &key.account.id,
                mode: key.record.mode,
                subject: &key.record.id,
                scopes: &scopes,
            },
            &family,
            None,
        )
        .await
    }
}
