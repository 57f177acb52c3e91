//! One-time reveal records as the store holds them.

use std::fmt;

use super::Millis;
use crate::crypto::hex;

/// What a stored reveal holds. `sealed` opens with [`reveal_context`].
#[derive(Clone, PartialEq, Eq)]
pub struct RevealRecord {
    pub token_hash: [u8; 32],
    pub sealed: Vec<u8>,
    /// What the secret is (`api_key`, `signing_secret`, `oauth_client_secret`).
    pub kind: String,
    /// The id of the credential it belongs to.
    pub subject_id: String,
    pub created_at: Millis,
    pub expires_at: Millis,
}

impl fmt::Debug for RevealRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevealRecord")
            .field("kind", &self.kind)
            .field("subject_id", &self.subject_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

pub fn reveal_context(token_hash: &[u8; 32]) -> String {
    format!("reveal:{}", hex(token_hash))
}
