//! The authorization code grant with PKCE: the authorization request
//! (RFC 6749 §4.1.1, RFC 7636 §4.3), the single-use code, and the code for
//! tokens (RFC 6749 §4.1.3, RFC 7636 §4.6).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use super::clients::redirect_matches;
use super::mint::Grant;
use super::{
    CLIENT_ID_PREFIX, IssuedTokens, OAuthError, TokenManager, join_scopes, random_token,
    split_scopes,
};
use crate::crypto::secret::Secret;
use crate::crypto::{self, ct_eq};
use crate::domain::model::{AuthCodeRecord, ClientRecord, HolderKind, new_id, valid_id};

/// The parameters of an `/oauth2/authorize` request as they arrived, each
/// absent or as sent; [`TokenManager::authorize_request`] validates them.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthorizeParams<'a> {
    pub response_type: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub redirect_uri: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub state: Option<&'a str>,
    pub code_challenge: Option<&'a str>,
    pub code_challenge_method: Option<&'a str>,
    /// A signed consent link: PKCE only when the link carries a challenge
    /// (the signature already binds the request to the integrator).
    pub pkce_optional: bool,
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

impl TokenManager {
    /// Validates an authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3).
    pub async fn authorize_request(
        &self,
        params: AuthorizeParams<'_>,
    ) -> std::result::Result<AuthorizeRequest, AuthorizeError> {
        let AuthorizeParams {
            response_type,
            client_id,
            redirect_uri,
            scope,
            state,
            code_challenge,
            code_challenge_method,
            pkce_optional,
        } = params;
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
        // Exactly one of the registered URIs (a loopback one on any port);
        // without one named, only if there is just one.
        let redirect_uri = match redirect_uri {
            Some(uri)
                if client
                    .redirect_uris
                    .iter()
                    .any(|r| redirect_matches(r, uri)) =>
            {
                uri.to_owned()
            }
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
        // A signed link without a challenge: the code is redeemed with the
        // client's secret alone (`code_challenge` stays empty).
        let without_pkce = pkce_optional && challenge.is_empty() && code_challenge_method.is_none();
        if !without_pkce {
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
        let code_hash = crypto::sha256(code.as_bytes());
        // Bound to the client before it is consumed: another client's
        // attempt neither uses the code nor counts as a replay.
        let Some((record, won)) = self
            .tokens
            .use_code(&code_hash, &client.client_id, now)
            .await?
        else {
            return Err(invalid("the authorization code is not valid"));
        };
        if record.client_id != client.client_id {
            return Err(invalid(
                "the authorization code was issued to another client",
            ));
        }
        if !won {
            // A replayed code: whatever the first use issued is revoked (RFC
            // 6749 §4.1.2). Noted first, so that an exchange still minting
            // sees it afterwards and revokes what it issued too.
            self.tokens.mark_code_replayed(&code_hash, now).await?;
            self.tokens.revoke_family(&record.family_id, now).await?;
            self.resolver.invalidate_all();
            return Err(invalid("the authorization code was already used"));
        }
        if record.expires_at <= now {
            return Err(invalid("the authorization code has expired"));
        }
        if redirect_uri != Some(record.redirect_uri.as_str()) {
            return Err(invalid(
                "redirect_uri must be the one the authorization request used",
            ));
        }
        // An empty challenge comes only from a signed consent link that
        // carried none (`pkce_optional`); every other code has one.
        if !record.code_challenge.is_empty() {
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
        }
        let scopes = split_scopes(&[record.scope.as_str()]);
        let mut issued = self
            .mint_pair(
                &Grant {
                    holder: HolderKind::Client,
                    holder_id: &client.client_id,
                    account_id: &client.account_id,
                    mode: client.mode,
                    subject: &record.subject,
                    scopes: &scopes,
                },
                &record.family_id,
                None,
            )
            .await?;
        // A replay that raced this exchange revoked the family before these
        // tokens existed: revoke again, now that they do, and hand out nothing.
        if self.tokens.code_replayed(&code_hash).await? {
            self.tokens.revoke_family(&record.family_id, now).await?;
            self.resolver.invalidate_all();
            return Err(invalid("the authorization code was already used"));
        }
        // The refresh record is kept either way: it is what a replayed code revokes.
        if !client.allows_grant("refresh_token") {
            issued.refresh_token = None;
        }
        Ok(issued)
    }
}
