//! `[limits]`: bounds on what one request may carry.

use serde::Deserialize;

use super::{ConfigError, invalid};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Most scopes, CIDRs or origins one key may carry. Default 100.
    pub max_list_items: usize,
    /// Largest gRPC request accepted. Default 262144 (256 KiB).
    pub max_message_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_list_items: 100,
            max_message_bytes: 256 * 1024,
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
        Ok(())
    }
}
