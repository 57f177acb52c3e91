//! `[audit]`: how long the audit trail is kept, and how it is purged.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Days audit events are kept; older ones are purged. Default 365.
    pub retention_days: u32,
    /// How often the retention purge runs. Default 3600.
    pub purge_interval_seconds: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            retention_days: 365,
            purge_interval_seconds: 3600,
        }
    }
}

/// The validated `[audit]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditSettings {
    pub retention_days: u32,
    pub purge_interval: Duration,
}

impl Default for AuditSettings {
    fn default() -> Self {
        let d = AuditConfig::default();
        Self {
            retention_days: d.retention_days,
            purge_interval: Duration::from_secs(d.purge_interval_seconds),
        }
    }
}

impl AuditConfig {
    pub fn validate(&self) -> Result<AuditSettings, ConfigError> {
        if !(1..=36_500).contains(&self.retention_days) {
            return Err(invalid(
                "audit.retention_days",
                "must be between 1 and 36500",
            ));
        }
        if !(1..=86_400).contains(&self.purge_interval_seconds) {
            return Err(invalid(
                "audit.purge_interval_seconds",
                "must be between 1 and 86400",
            ));
        }
        Ok(AuditSettings {
            retention_days: self.retention_days,
            purge_interval: Duration::from_secs(self.purge_interval_seconds),
        })
    }
}
