//! Token introspection (RFC 7662) and revocation (RFC 7009).

use super::OAuthError;
use super::TokenManager;
use crate::crypto::{self, jwt};
use crate::domain::cache::CacheUse;
use crate::domain::model::ClientRecord;
use crate::domain::reason::Reason;

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

impl TokenManager {
    /// Claims of an access token that verifies and is not revoked, or the
    /// record of a live refresh token; `TemporarilyUnavailable` when that
    /// cannot be known now (the store is down), never "inactive" by mistake.
    pub async fn introspect(
        &self,
        token: &str,
    ) -> std::result::Result<Option<Introspection>, OAuthError> {
        let undecided = |d: &super::verify::TokenDenial| d.reason == Reason::InternalError;
        let now = self.clock.now();
        if jwt::looks_like_jwt(token) {
            let claims = match self.verify_claims(token, now, CacheUse::Fill).await {
                Ok(claims) => claims,
                Err(d) if undecided(&d) => return Err(OAuthError::TemporarilyUnavailable),
                Err(_) => return Ok(None),
            };
            match self.principal_for(&claims, now, CacheUse::Fill).await {
                Ok(_) => {}
                Err(d) if undecided(&d) => return Err(OAuthError::TemporarilyUnavailable),
                Err(_) => return Ok(None),
            }
            return Ok(Some(Introspection {
                token_type: "access_token",
                scope: claims.scope.clone(),
                client_id: claims.client_id.clone(),
                sub: claims.sub.clone(),
                exp: claims.exp,
                iat: claims.iat.unwrap_or_default(),
                jti: claims.jti.clone(),
                account_id: claims.lk_account.clone(),
                iss: claims.iss.clone(),
                aud: claims.aud.first().to_owned(),
            }));
        }
        let Some(record) = self
            .tokens
            .get_refresh(&crypto::sha256(token.as_bytes()))
            .await?
        else {
            return Ok(None);
        };
        if record.revoked_at.is_some() || record.rotated_at.is_some() || record.expires_at <= now {
            return Ok(None);
        }
        Ok(Some(Introspection {
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
        }))
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
            let Ok(claims) = self.verify_signature(token, &self.keyring.current().verifiers) else {
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
}
