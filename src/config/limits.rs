//! `[limits]`: bounds on what one request may carry.

use std::time::Duration;

use serde::Deserialize;

use crate::http::serve::HttpLimits;

use super::{ConfigError, invalid};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Most scopes, CIDRs or origins one key may carry. Default 100.
    pub max_list_items: usize,
    /// Largest gRPC request accepted. Default 262144 (256 KiB).
    pub max_message_bytes: usize,
    /// Public HTTP port: time a connection has for its first request's
    /// headers (HTTP/1.1: every request's). Default 10000.
    pub http_header_timeout_ms: u64,
    /// Public HTTP port: time a request body has to arrive, else 408.
    /// Default 10000.
    pub http_body_timeout_ms: u64,
    /// Public HTTP port: largest request body, else 413. Default 65536.
    pub http_max_body_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_list_items: 100,
            max_message_bytes: 256 * 1024,
            http_header_timeout_ms: 10_000,
            http_body_timeout_ms: 10_000,
            http_max_body_bytes: 64 * 1024,
        }
    }
}

impl LimitsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_list_items == 0 || self.max_list_items > 1000 {
            return Err(invalid(
                "limits.max_list_items",
                "must be between 1 and 1000",
            ));
        }
        if self.max_message_bytes < 1024 || self.max_message_bytes > 16 * 1024 * 1024 {
            return Err(invalid(
                "limits.max_message_bytes",
                "must be between 1024 and 16777216",
            ));
        }
        for (field, ms) in [
            ("limits.http_header_timeout_ms", self.http_header_timeout_ms),
            ("limits.http_body_timeout_ms", self.http_body_timeout_ms),
        ] {
            if !(100..=600_000).contains(&ms) {
                return Err(invalid(field, "must be between 100 and 600000"));
            }
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.http_max_body_bytes) {
            return Err(invalid(
                "limits.http_max_body_bytes",
                "must be between 1024 and 16777216",
            ));
        }
        Ok(())
    }

    /// The public HTTP port's limits.
    pub fn http(&self) -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_millis(self.http_header_timeout_ms),
            body_timeout: Duration::from_millis(self.http_body_timeout_ms),
            max_body_bytes: self.http_max_body_bytes,
        }
    }
}
