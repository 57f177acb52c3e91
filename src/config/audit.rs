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

/// `[webhooks]`: how deliveries reach endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Allow `http://` URLs and loopback, private, link-local and metadata
    /// targets (tests, development only). Default false.
    pub allow_insecure_targets: bool,
    /// Time limit of one delivery, DNS to last byte. Default 10000.
    pub timeout_ms: u64,
    /// Response-body bytes stored with a delivery. Default 1024.
    pub max_body_bytes: usize,
    /// How often the worker looks for due deliveries. Default 500.
    pub poll_interval_ms: u64,
    /// `key.expiring` goes out this many days before a key expires, once
    /// per key and threshold; 0 sends none. Default 7.
    pub key_expiring_days: u32,
    /// How often each replica looks for keys to announce as expiring or
    /// expired. Default 60.
    pub key_expiry_interval_seconds: u64,
    /// Days finished deliveries (and events none is left of) are kept;
    /// the purge runs every `audit.purge_interval_seconds`. Default 30.
    pub retention_days: u32,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            allow_insecure_targets: false,
            timeout_ms: 10_000,
            max_body_bytes: 1024,
            poll_interval_ms: 500,
            key_expiring_days: 7,
            key_expiry_interval_seconds: 60,
            retention_days: 30,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhooksSettings {
    pub allow_insecure_targets: bool,
    pub timeout: Duration,
    pub max_body_bytes: usize,
    pub poll_interval: Duration,
    pub key_expiring_days: u32,
    pub key_expiry_interval: Duration,
    pub retention_days: u32,
}

impl Default for WebhooksSettings {
    fn default() -> Self {
        let d = WebhooksConfig::default();
        Self {
            allow_insecure_targets: d.allow_insecure_targets,
            timeout: Duration::from_millis(d.timeout_ms),
            max_body_bytes: d.max_body_bytes,
            poll_interval: Duration::from_millis(d.poll_interval_ms),
            key_expiring_days: d.key_expiring_days,
            key_expiry_interval: Duration::from_secs(d.key_expiry_interval_seconds),
            retention_days: d.retention_days,
        }
    }
}

impl WebhooksConfig {
    pub fn validate(&self) -> Result<WebhooksSettings, ConfigError> {
        if !(100..=60_000).contains(&self.timeout_ms) {
            return Err(invalid(
                "webhooks.timeout_ms",
                "must be between 100 and 60000",
            ));
        }
        if !(1..=65_536).contains(&self.max_body_bytes) {
            return Err(invalid(
                "webhooks.max_body_bytes",
                "must be between 1 and 65536",
            ));
        }
        if !(10..=60_000).contains(&self.poll_interval_ms) {
            return Err(invalid(
                "webhooks.poll_interval_ms",
                "must be between 10 and 60000",
            ));
        }
        if self.key_expiring_days > 365 {
            return Err(invalid(
                "webhooks.key_expiring_days",
                "must be between 0 and 365",
            ));
        }
        if !(1..=86_400).contains(&self.key_expiry_interval_seconds) {
            return Err(invalid(
                "webhooks.key_expiry_interval_seconds",
                "must be between 1 and 86400",
            ));
        }
        if !(1..=36_500).contains(&self.retention_days) {
            return Err(invalid(
                "webhooks.retention_days",
                "must be between 1 and 36500",
            ));
        }
        Ok(WebhooksSettings {
            allow_insecure_targets: self.allow_insecure_targets,
            timeout: Duration::from_millis(self.timeout_ms),
            max_body_bytes: self.max_body_bytes,
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            key_expiring_days: self.key_expiring_days,
            key_expiry_interval: Duration::from_secs(self.key_expiry_interval_seconds),
            retention_days: self.retention_days,
        })
    }
}
