//! Signing secrets: HMAC-SHA256 secrets that belong to an (account, mode),
//! versioned, sealed at rest under the master key (DESIGN.md §6), and the
//! operations on them: webhook headers, signed URLs, signed requests.
//!
//! Versions and rotation. Rotating makes a new current version; the previous
//! one stays *active* for an overlap window (default 24 h), during which
//! webhook headers carry one `v1` per active version and both verify webhooks
//! and signed requests. Once the overlap has ended the old version is rotated
//! out: it never signs again and verifies only what it signed before the
//! rotation (signed URLs, each for its own validity period). A revoked secret
//! signs and verifies nothing.
//!
//! - `manager.rs`: building the manager, secret CRUD and rotation, and which
//!   secret a key's requests must be signed with.
//! - `sign.rs`: webhook signature headers and signed URLs, made now.
//! - `verify.rs`: checking webhooks, signed URLs and signed requests.
//! - [`formats`]: the wire formats themselves, pure functions;
//!   [`strict_url`]: the strict signed-URL form.

pub mod formats;
mod manager;
mod sign;
pub mod strict_url;
mod verify;

#[cfg(test)]
mod tests;

pub use manager::{SigningDeps, SigningManager};
pub use verify::{Verification, VerifyReason};

use super::model::{SecretVersionRecord, SigningSecretRecord, valid_id};
use crate::crypto::secret::Secret;

pub const SECRET_ID_PREFIX: &str = "sig";
/// Printed before every signing secret, so scanners can recognise a leak.
pub const SECRET_PREFIX: &str = "whsec_";
const DAY: i64 = 86_400;

#[derive(Debug, Clone)]
pub struct SigningSettings {
    /// How far a signature header's `t` may be from now. Default 300.
    pub tolerance_secs: i64,
    /// How long a signed URL is valid after its `timestamp`. Default 30 days.
    pub url_validity_secs: i64,
    /// How long the previous version stays active after a rotation. Default 24 h.
    pub default_overlap_secs: i64,
    pub max_overlap_secs: i64,
    /// Headers `VerifyWebhook` looks for a signature in, lower-case, in order.
    pub webhook_headers: Vec<String>,
    /// Header a shared secret may arrive in instead (inbound webhooks that
    /// pass the secret itself, as e-conomic's do). `None` = not accepted.
    pub webhook_secret_header: Option<String>,
    /// Header carrying a signed request's signature. Default `x-latchkey-signature`.
    pub request_header: String,
    /// Path prefix feed-token keys are confined to; `None` = feed keys are refused.
    pub feed_path_prefix: Option<String>,
}

impl Default for SigningSettings {
    fn default() -> Self {
        Self {
            tolerance_secs: 300,
            url_validity_secs: 30 * DAY,
            default_overlap_secs: DAY,
            max_overlap_secs: 30 * DAY,
            webhook_headers: vec![
                "x-webhook-signature".to_owned(),
                "x-latchkey-signature".to_owned(),
            ],
            webhook_secret_header: None,
            request_header: "x-latchkey-signature".to_owned(),
            feed_path_prefix: None,
        }
    }
}

/// A secret with its versions, newest first.
#[derive(Debug, Clone)]
pub struct SecretWithVersions {
    pub secret: SigningSecretRecord,
    pub versions: Vec<SecretVersionRecord>,
}

/// A secret and the plaintext of its newest version, to show once.
pub struct IssuedSecret {
    pub secret: SecretWithVersions,
    pub plaintext: Secret<String>,
}

/// Is `id` shaped like a signing secret id?
pub fn valid_secret_id(id: &str) -> bool {
    valid_id(id, SECRET_ID_PREFIX)
}
