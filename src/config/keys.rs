//! `[keys]`: the API key format and lifetimes; builds the domain's `KeySettings`.

use serde::Deserialize;

use super::{ConfigError, invalid};
use crate::crypto::keyfmt;
use crate::domain::keys::KeySettings;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// The `lk` in `lk_live_sk_…`: 1–8 of `[a-z0-9]`, starting with a letter.
    pub prefix: String,
    /// Default 90.
    pub default_ttl_days: i64,
    /// Longest lifetime a key may be given. Default 1825 (5 years).
    pub max_ttl_days: i64,
    /// Default rotation overlap. Default 604800 (7 days).
    pub default_overlap_seconds: i64,
    /// Default 30.
    pub max_overlap_days: i64,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            prefix: "lk".to_owned(),
            default_ttl_days: 90,
            max_ttl_days: 1825,
            default_overlap_seconds: 7 * 24 * 3600,
            max_overlap_days: 30,
        }
    }
}

impl KeysConfig {
    pub(super) fn validate(&self) -> Result<KeySettings, ConfigError> {
        let k = self;
        if !keyfmt::valid_prefix(&k.prefix) {
            return Err(invalid(
                "keys.prefix",
                "must be 1-8 lower-case letters or digits, starting with a letter",
            ));
        }
        if k.max_ttl_days <= 0 || k.max_ttl_days > 36_500 {
            return Err(invalid("keys.max_ttl_days", "must be between 1 and 36500"));
        }
        if k.default_ttl_days <= 0 || k.default_ttl_days > k.max_ttl_days {
            return Err(invalid(
                "keys.default_ttl_days",
                "must be between 1 and keys.max_ttl_days",
            ));
        }
        if k.max_overlap_days < 0 || k.max_overlap_days > 365 {
            return Err(invalid(
                "keys.max_overlap_days",
                "must be between 0 and 365",
            ));
        }
        if k.default_overlap_seconds < 0 || k.default_overlap_seconds > k.max_overlap_days * 86_400
        {
            return Err(invalid(
                "keys.default_overlap_seconds",
                "must be between 0 and keys.max_overlap_days",
            ));
        }
        Ok(KeySettings {
            prefix: k.prefix.clone(),
            default_ttl_secs: k.default_ttl_days * 86_400,
            max_ttl_secs: k.max_ttl_days * 86_400,
            default_overlap_secs: k.default_overlap_seconds,
            max_overlap_secs: k.max_overlap_days * 86_400,
        })
    }
}
