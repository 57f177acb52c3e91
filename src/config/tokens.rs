//! `[tokens]`: JWT access tokens and the OAuth2 endpoints; builds the
//! domain's `TokenSettings`.

use serde::Deserialize;

use super::{ConfigError, header_name, invalid};
use crate::crypto::jwt::Algorithm;
use crate::domain::tokens::TokenSettings;

/// JWT access tokens and the OAuth2 endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    /// `iss` of every token and the metadata's `issuer`: the public URL of
    /// the HTTP side. Default `http://<the bound http address>`.
    pub issuer: Option<String>,
    /// `aud` of every token. Default `latchkey`.
    pub audience: String,
    /// `RS256`, `ES256` or `EdDSA`, for new signing keys. Default `RS256`.
    pub algorithm: String,
    /// Default 3600.
    pub access_ttl_seconds: i64,
    /// Default 2592000 (30 days).
    pub refresh_ttl_seconds: i64,
    /// Default 60.
    pub code_ttl_seconds: i64,
    /// Lifetime of tokens minted by `ExchangeSecret`. Default 900.
    pub exchange_ttl_seconds: i64,
    /// Clock skew allowed on `exp` and `nbf`. Default 30.
    pub leeway_seconds: i64,
    /// The trusted header naming the signed-in user on the consent page, set
    /// by the platform's login proxy (oauth2-proxy sets `X-Forwarded-User`).
    pub user_header: String,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: "latchkey".into(),
            algorithm: "RS256".into(),
            access_ttl_seconds: 3600,
            refresh_ttl_seconds: 30 * 86_400,
            code_ttl_seconds: 60,
            exchange_ttl_seconds: 900,
            leeway_seconds: 30,
            user_header: "x-forwarded-user".into(),
        }
    }
}

/// Validated token settings; `issuer` `None` = derived from the bound HTTP address.
#[derive(Debug, Clone)]
pub struct TokensSettings {
    pub issuer: Option<String>,
    pub tokens: TokenSettings,
    pub user_header: String,
}

impl TokensConfig {
    pub(super) fn validate(&self) -> Result<TokensSettings, ConfigError> {
        let range = |field: &'static str, v: i64, min: i64, max: i64| {
            if (min..=max).contains(&v) {
                Ok(v)
            } else {
                Err(invalid(field, format!("must be between {min} and {max}")))
            }
        };
        let issuer = match self.issuer.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(i) if i.starts_with("https://") || i.starts_with("http://") => {
                Some(i.trim_end_matches('/').to_owned())
            }
            Some(_) => return Err(invalid("tokens.issuer", "must be an http(s) URL")),
        };
        if self.audience.trim().is_empty() {
            return Err(invalid("tokens.audience", "must not be empty"));
        }
        let algorithm = Algorithm::from_name(&self.algorithm)
            .ok_or_else(|| invalid("tokens.algorithm", "must be RS256, ES256 or EdDSA"))?;
        let access = range(
            "tokens.access_ttl_seconds",
            self.access_ttl_seconds,
            60,
            86_400,
        )?;
        Ok(TokensSettings {
            issuer,
            tokens: TokenSettings {
                issuer: String::new(),
                audience: self.audience.trim().to_owned(),
                algorithm,
                access_ttl_secs: access,
                refresh_ttl_secs: range(
                    "tokens.refresh_ttl_seconds",
                    self.refresh_ttl_seconds,
                    60,
                    365 * 86_400,
                )?,
                code_ttl_secs: range("tokens.code_ttl_seconds", self.code_ttl_seconds, 10, 600)?,
                exchange_ttl_secs: range(
                    "tokens.exchange_ttl_seconds",
                    self.exchange_ttl_seconds,
                    60,
                    access,
                )?,
                leeway_secs: range("tokens.leeway_seconds", self.leeway_seconds, 0, 300)?,
            },
            user_header: header_name("tokens.user_header", &self.user_header)?,
        })
    }
}
