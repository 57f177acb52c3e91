//! `[integrations]`: how connection tests reach remote services.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntegrationsConfig {
    /// Allow `http://` base URLs and loopback, private, link-local and
    /// metadata targets (tests, development). Default false.
    pub allow_insecure_targets: bool,
    /// Time limit of one connection test, connect to last byte. Default 10000.
    pub test_timeout_ms: u64,
    /// Most response-body bytes a connection test reads. Default 4096.
    pub max_body_bytes: usize,
    /// Extra trusted CA certificates (PEM) for connection tests, beside the
    /// system's roots. Default none.
    pub ca_file: Option<PathBuf>,
    /// Days connection-test records are kept. Default 90.
    pub test_retention_days: u32,
}

impl Default for IntegrationsConfig {
    fn default() -> Self {
        Self {
            allow_insecure_targets: false,
            test_timeout_ms: 10_000,
            max_body_bytes: 4096,
            ca_file: None,
            test_retention_days: 90,
        }
    }
}

/// The validated `[integrations]` section.
#[derive(Debug, Clone)]
pub struct IntegrationsSettings {
    pub allow_insecure_targets: bool,
    pub test_timeout: Duration,
    pub max_body_bytes: usize,
    pub ca_file: Option<PathBuf>,
    pub test_retention_days: u32,
}

impl Default for IntegrationsSettings {
    fn default() -> Self {
        // The defaults are valid by construction.
        let d = IntegrationsConfig::default();
        Self {
            allow_insecure_targets: d.allow_insecure_targets,
            test_timeout: Duration::from_millis(d.test_timeout_ms),
            max_body_bytes: d.max_body_bytes,
            ca_file: d.ca_file,
            test_retention_days: d.test_retention_days,
        }
    }
}

impl IntegrationsConfig {
    pub(super) fn validate(&self) -> Result<IntegrationsSettings, ConfigError> {
        if !(100..=120_000).contains(&self.test_timeout_ms) {
            return Err(invalid(
                "integrations.test_timeout_ms",
                "must be between 100 and 120000",
            ));
        }
        if !(64..=1024 * 1024).contains(&self.max_body_bytes) {
            return Err(invalid(
                "integrations.max_body_bytes",
                "must be between 64 and 1048576",
            ));
        }
        if !(1..=3650).contains(&self.test_retention_days) {
            return Err(invalid(
                "integrations.test_retention_days",
                "must be between 1 and 3650",
            ));
        }
        Ok(IntegrationsSettings {
            allow_insecure_targets: self.allow_insecure_targets,
            test_timeout: Duration::from_millis(self.test_timeout_ms),
            max_body_bytes: self.max_body_bytes,
            ca_file: self.ca_file.clone(),
            test_retention_days: self.test_retention_days,
        })
    }
}
