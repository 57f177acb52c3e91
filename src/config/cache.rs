//! `[cache]`: the principal cache; builds the domain's `CacheSettings`.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid};
use crate::domain::resolver::CacheSettings;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Default 100000.
    pub max_entries: u64,
    /// Upper bound on how long a key stays cached without a change notice. Default 60.
    pub ttl_seconds: u64,
    /// How long an unknown key is remembered as unknown. Default 5.
    pub negative_ttl_seconds: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            ttl_seconds: 60,
            negative_ttl_seconds: 5,
        }
    }
}

impl CacheConfig {
    pub(super) fn validate(&self) -> Result<CacheSettings, ConfigError> {
        if self.max_entries == 0 {
            return Err(invalid("cache.max_entries", "must be positive"));
        }
        if self.ttl_seconds == 0 || self.ttl_seconds > 3600 {
            return Err(invalid("cache.ttl_seconds", "must be between 1 and 3600"));
        }
        if self.negative_ttl_seconds > 60 {
            return Err(invalid("cache.negative_ttl_seconds", "must be at most 60"));
        }
        Ok(CacheSettings {
            max_entries: self.max_entries,
            ttl: Duration::from_secs(self.ttl_seconds),
            negative_ttl: Duration::from_secs(self.negative_ttl_seconds),
        })
    }
}
