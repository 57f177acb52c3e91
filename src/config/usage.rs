//! `[usage]`: outcome recording, usage analytics, the least-privilege
//! advisor; and `[geoip]`: the country database for unusual locations.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsageConfig {
    /// Record every decision's outcome (usage analytics, aggregated denial
    /// events, `auth.failed`). Default true.
    pub record_outcomes: bool,
    /// Outcomes buffered between two drains; beyond it they are dropped
    /// (counted in `latchkey_audit_dropped_total` and an audit event). Default 32768.
    pub buffer_capacity: usize,
    /// Distinct per-minute aggregates held in memory at once. Default 100000.
    pub max_groups: usize,
    /// Days usage counts are kept. Default 90.
    pub retention_days: u32,
    /// The advisor's window: exercised = used in the last N days; keys
    /// younger than it get no advice; `scope.unused` after N idle days. Default 30.
    pub advice_window_days: u32,
    /// A country a key was not seen from in this many days is unusual. Default 30.
    pub location_window_days: u32,
    /// At most one `auth.failed`, and one `rate_limit.exceeded`, per key per
    /// this many seconds. Default 300.
    pub auth_failed_throttle_seconds: u64,
    /// How often the retention purge and the unused-scope scan run. Default 3600.
    pub maintenance_interval_seconds: u64,
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self {
            record_outcomes: true,
            buffer_capacity: 32_768,
            max_groups: 100_000,
            retention_days: 90,
            advice_window_days: 30,
            location_window_days: 30,
            auth_failed_throttle_seconds: 300,
            maintenance_interval_seconds: 3600,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeoipConfig {
    /// A MaxMind-format (`.mmdb`) country or city database; unset = no countries.
    pub database_path: Option<PathBuf>,
}

/// The validated `[usage]` and `[geoip]` sections.
#[derive(Debug, Clone)]
pub struct UsageSettings {
    pub record_outcomes: bool,
    pub buffer_capacity: usize,
    pub max_groups: usize,
    pub retention_days: i64,
    pub advice_window_days: i64,
    pub location_window_days: i64,
    pub auth_failed_throttle: Duration,
    pub maintenance_interval: Duration,
    pub geoip_database: Option<PathBuf>,
}

impl UsageConfig {
    pub fn validate(&self, geoip: &GeoipConfig) -> Result<UsageSettings, ConfigError> {
        if !(16..=4_194_304).contains(&self.buffer_capacity) {
            return Err(invalid(
                "usage.buffer_capacity",
                "must be between 16 and 4194304",
            ));
        }
        if !(16..=10_000_000).contains(&self.max_groups) {
            return Err(invalid(
                "usage.max_groups",
                "must be between 16 and 10000000",
            ));
        }
        for (field, v) in [
            ("usage.retention_days", self.retention_days),
            ("usage.advice_window_days", self.advice_window_days),
            ("usage.location_window_days", self.location_window_days),
        ] {
            if !(1..=36_500).contains(&v) {
                return Err(invalid(field, "must be between 1 and 36500"));
            }
        }
        if self.advice_window_days > self.retention_days {
            return Err(invalid(
                "usage.advice_window_days",
                "must not exceed usage.retention_days (the usage it reads would be purged)",
            ));
        }
        if self.auth_failed_throttle_seconds > 86_400 {
            return Err(invalid(
                "usage.auth_failed_throttle_seconds",
                "must be at most 86400",
            ));
        }
        if !(1..=86_400).contains(&self.maintenance_interval_seconds) {
            return Err(invalid(
                "usage.maintenance_interval_seconds",
                "must be between 1 and 86400",
            ));
        }
        if let Some(p) = &geoip.database_path
            && !p.is_file()
        {
            return Err(invalid(
                "geoip.database_path",
                format!("`{}` is not a readable file", p.display()),
            ));
        }
        Ok(UsageSettings {
            record_outcomes: self.record_outcomes,
            buffer_capacity: self.buffer_capacity,
            max_groups: self.max_groups,
            retention_days: i64::from(self.retention_days),
            advice_window_days: i64::from(self.advice_window_days),
            location_window_days: i64::from(self.location_window_days),
            auth_failed_throttle: Duration::from_secs(self.auth_failed_throttle_seconds),
            maintenance_interval: Duration::from_secs(self.maintenance_interval_seconds),
            geoip_database: geoip.database_path.clone(),
        })
    }
}
