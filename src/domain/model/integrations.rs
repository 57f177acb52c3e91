//! Integrations (stored remote credentials) and their connection tests as the
//! store holds them.

use std::collections::BTreeMap;

use super::{Millis, Mode};

/// An integration row. The credentials are only ever held sealed here
/// (`sealed_credentials`, opened with [`integration_context`]).
#[derive(Clone, PartialEq, Eq)]
pub struct IntegrationRecord {
    pub id: String,
    pub account_id: String,
    pub mode: Mode,
    pub store_id: Option<String>,
    pub kind: String,
    pub name: String,
    pub base_url: String,
    pub sealed_credentials: Vec<u8>,
    /// Masked form of each credential field.
    pub hints: BTreeMap<String, String>,
    pub settings: BTreeMap<String, String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Optimistic-concurrency counter, from 1.
    pub version: i64,
}

impl std::fmt::Debug for IntegrationRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntegrationRecord")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("kind", &self.kind)
            .field("hints", &self.hints)
            .finish_non_exhaustive()
    }
}

/// The result of one connection test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionTestRecord {
    pub id: String,
    pub integration_id: String,
    pub ok: bool,
    /// `None` when no HTTP response came back.
    pub http_status: Option<i32>,
    pub latency_ms: i64,
    pub error: Option<String>,
    /// The start of the body, credential-looking parts masked.
    pub excerpt: String,
    pub tested_at: Millis,
}

/// What may narrow `ListIntegrations`.
#[derive(Debug, Clone, Default)]
pub struct IntegrationFilter {
    pub account_id: Option<String>,
    pub kind: Option<String>,
    pub store_id: Option<String>,
}

/// Associated data of an integration's sealed credentials: a ciphertext moved
/// to another row does not open there.
pub fn integration_context(id: &str) -> String {
    format!("integration:{id}")
}

/// One outbound GET a connection test makes. Header values are credentials.
pub struct ProbeRequest {
    pub url: String,
    pub headers: Vec<(String, crate::crypto::secret::Secret<String>)>,
}

impl std::fmt::Debug for ProbeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeRequest")
            .field("url", &self.url)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// What came back: the status and at most the configured number of body bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResponse {
    pub status: u16,
    pub body: Vec<u8>,
    pub latency_ms: i64,
}

/// Why no response came back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The outbound safety rule refused the target (before any connection).
    #[error("{0}")]
    Refused(String),
    /// Connecting, TLS, or reading failed, or the time limit passed.
    #[error("{message}")]
    Failed { message: String, latency_ms: i64 },
}
