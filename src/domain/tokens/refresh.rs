//! The refresh token grant (RFC 6749 §6) with rotation: each use returns a
//! new pair, and a rotated-out token presented again revokes its family.

use super::mint::Grant;
use super::{IssuedTokens, OAuthError, TokenManager, split_scopes};
use crate::crypto;
use crate::domain::cache::CacheUse;
use crate::domain::model::{ClientRecord, HolderKind};

impl TokenManager {
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
            self.live_key(&record.holder_id, now, CacheUse::Fill)
                .await
                .map_err(|_| invalid("the API key behind this token no longer works"))?;
        }
        self.mint_pair(
            &Grant {
                holder: record.holder_kind,
                holder_id: &record.holder_id,
                account_id: &record.account_id,
                mode: record.mode,
                subject: &record.subject,
                scopes: &scopes,
            },
            &record.family_id,
            Some(&record),
        )
        .await
    }
}
