//! `[tls]`: TLS on the gRPC and HTTP ports (rustls), mTLS on gRPC when a
//! client CA is named. Off unless both `cert_file` and `key_file` are set.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid};
use crate::tls::{MinVersion, TlsSettings};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first. Unset = plaintext (h2c / HTTP).
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates: gRPC clients must present a certificate one of
    /// them signed. Unset = no client certificates asked for.
    pub client_ca_file: Option<PathBuf>,
    /// `1.2` or `1.3`: the lowest version offered. Default `1.2`.
    pub min_version: String,
    /// How often the files are checked for a change (a rotated Secret).
    /// Default 10000.
    pub reload_interval_ms: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            min_version: "1.2".to_owned(),
            reload_interval_ms: 10_000,
        }
    }
}

impl TlsConfig {
    /// `None` when TLS is off.
    pub(super) fn validate(&self) -> Result<Option<TlsSettings>, ConfigError> {
        let min_version = match self.min_version.as_str() {
            "1.2" => MinVersion::Tls12,
            "1.3" => MinVersion::Tls13,
            other => {
                return Err(invalid(
                    "tls.min_version",
                    format!("`{other}` is not `1.2` or `1.3`"),
                ));
            }
        };
        if self.reload_interval_ms < 10 {
            return Err(invalid("tls.reload_interval_ms", "must be at least 10"));
        }
        let (cert_file, key_file) = match (&self.cert_file, &self.key_file) {
            (None, None) => {
                if self.client_ca_file.is_some() {
                    return Err(invalid(
                        "tls.client_ca_file",
                        "needs tls.cert_file and tls.key_file: client certificates are asked for inside TLS",
                    ));
                }
                return Ok(None);
            }
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            (Some(_), None) => {
                return Err(invalid("tls.key_file", "is required with tls.cert_file"));
            }
            (None, Some(_)) => {
                return Err(invalid("tls.cert_file", "is required with tls.key_file"));
            }
        };
        Ok(Some(TlsSettings {
            cert_file,
            key_file,
            client_ca_file: self.client_ca_file.clone(),
            min_version,
            reload_every: Duration::from_millis(self.reload_interval_ms),
        }))
    }
}
