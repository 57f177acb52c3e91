//! `[signing]`: HMAC signatures, signed URLs, signed requests, reveal links
//! and feed keys; builds the domain's `SigningSettings`.

use serde::Deserialize;

use super::{ConfigError, header_name, invalid};
use crate::domain::signing::SigningSettings;

/// HMAC signatures, signed URLs, signed requests, reveal links, feed keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigningConfig {
    /// How far a signature's `t` may be from now (replay window). Default 300.
    pub tolerance_seconds: i64,
    /// How long a signed URL stays valid after its `timestamp`. Default 30.
    pub url_validity_days: i64,
    /// How long the previous version stays active after a rotation. Default 86400.
    pub default_overlap_seconds: i64,
    /// Longest overlap a rotation may ask for. Default 30.
    pub max_overlap_days: i64,
    /// Headers VerifyWebhook takes a signature from, in order.
    /// Default `["x-webhook-signature", "x-latchkey-signature"]`.
    pub webhook_headers: Vec<String>,
    /// A header inbound callbacks may pass the secret itself in (compared in
    /// constant time). Default none: only signatures are accepted.
    pub webhook_secret_header: Option<String>,
    /// Header carrying a signed request's signature. Default `x-latchkey-signature`.
    pub request_header: String,
    /// How long a one-time reveal link is valid. Default 3600.
    pub reveal_ttl_seconds: i64,
    /// Public base of reveal links (`https://auth.example.com`); the link is
    /// `<base>/reveal/<token>`. Default none: the path alone.
    pub reveal_base_url: Option<String>,
    /// Path prefix (`/feeds/`) under which feed-token keys are accepted.
    /// Default none: feed keys are refused everywhere.
    pub feed_path_prefix: Option<String>,
}

impl Default for SigningConfig {
    fn default() -> Self {
        let d = SigningSettings::default();
        Self {
            tolerance_seconds: d.tolerance_secs,
            url_validity_days: d.url_validity_secs / 86_400,
            default_overlap_seconds: d.default_overlap_secs,
            max_overlap_days: d.max_overlap_secs / 86_400,
            webhook_headers: d.webhook_headers,
            webhook_secret_header: None,
            request_header: d.request_header,
            reveal_ttl_seconds: crate::domain::reveal::DEFAULT_TTL_SECS,
            reveal_base_url: None,
            feed_path_prefix: None,
        }
    }
}

/// Validated `[signing]` settings.
#[derive(Debug, Clone)]
pub struct SigningSection {
    pub signing: SigningSettings,
    pub reveal_ttl_secs: i64,
    pub reveal_base_url: Option<String>,
}

impl SigningConfig {
    pub(super) fn validate(&self) -> Result<SigningSection, ConfigError> {
        if !(1..=3600).contains(&self.tolerance_seconds) {
            return Err(invalid(
                "signing.tolerance_seconds",
                "must be between 1 and 3600",
            ));
        }
        if !(1..=365).contains(&self.url_validity_days) {
            return Err(invalid(
                "signing.url_validity_days",
                "must be between 1 and 365",
            ));
        }
        if !(0..=365).contains(&self.max_overlap_days) {
            return Err(invalid(
                "signing.max_overlap_days",
                "must be between 0 and 365",
            ));
        }
        if self.default_overlap_seconds < 0
            || self.default_overlap_seconds > self.max_overlap_days * 86_400
        {
            return Err(invalid(
                "signing.default_overlap_seconds",
                "must be between 0 and signing.max_overlap_days",
            ));
        }
        if !(60..=86_400).contains(&self.reveal_ttl_seconds) {
            return Err(invalid(
                "signing.reveal_ttl_seconds",
                "must be between 60 and 86400",
            ));
        }
        if self.webhook_headers.is_empty() {
            return Err(invalid(
                "signing.webhook_headers",
                "must name at least one header",
            ));
        }
        let webhook_headers = self
            .webhook_headers
            .iter()
            .map(|h| header_name("signing.webhook_headers", h))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(base) = &self.reveal_base_url
            && !(base.starts_with("https://") || base.starts_with("http://"))
        {
            return Err(invalid(
                "signing.reveal_base_url",
                "must start with https:// or http://",
            ));
        }
        if let Some(prefix) = &self.feed_path_prefix
            && (!prefix.starts_with('/') || prefix.len() < 2 || prefix.contains(['?', '#']))
        {
            return Err(invalid(
                "signing.feed_path_prefix",
                "must be a path like /feeds/ (starting with /, not just /)",
            ));
        }
        Ok(SigningSection {
            signing: SigningSettings {
                tolerance_secs: self.tolerance_seconds,
                url_validity_secs: self.url_validity_days * 86_400,
                default_overlap_secs: self.default_overlap_seconds,
                max_overlap_secs: self.max_overlap_days * 86_400,
                webhook_headers,
                webhook_secret_header: self
                    .webhook_secret_header
                    .as_deref()
                    .map(|h| header_name("signing.webhook_secret_header", h))
                    .transpose()?,
                request_header: header_name("signing.request_header", &self.request_header)?,
                feed_path_prefix: self.feed_path_prefix.clone(),
            },
            reveal_ttl_secs: self.reveal_ttl_seconds,
            reveal_base_url: self
                .reveal_base_url
                .as_deref()
                .map(|b| b.trim_end_matches('/').to_owned()),
        })
    }
}
