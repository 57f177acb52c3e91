//! `[metrics]`: the internal Prometheus listener (`GET /metrics`), never
//! the public HTTP port.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{ConfigError, invalid};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics`. Default false; `--metrics-addr` turns it on.
    pub enabled: bool,
    /// Its listener: internal only. Default `127.0.0.1:9464`.
    pub addr: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            addr: "127.0.0.1:9464".to_owned(),
        }
    }
}

impl MetricsConfig {
    /// The listener's address, `None` when the listener is off.
    pub(super) fn validate(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if !self.enabled {
            return Ok(None);
        }
        self.addr.parse::<SocketAddr>().map(Some).map_err(|_| {
            invalid(
                "metrics.addr",
                format!("`{}` is not an address like 127.0.0.1:9464", self.addr),
            )
        })
    }
}
