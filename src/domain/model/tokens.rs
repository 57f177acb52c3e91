//! Records behind OAuth2 clients and tokens.

use std::fmt;

use super::{Millis, Mode};

/// A stored JWT signing key; `private_sealed` opens only under the master key.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub algorithm: String,
    pub private_sealed: Vec<u8>,
    pub public_key: Vec<u8>,
    pub created_at: Millis,
    pub retired_at: Option<Millis>,
}

impl fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// Grant types a client may be given (RFC 6749 names).
pub const GRANT_TYPES: [&str; 3] = ["client_credentials", "authorization_code", "refresh_token"];

#[derive(Clone, PartialEq, Eq)]
pub struct ClientRecord {
    pub client_id: String,
    pub account_id: String,
    pub mode: Mode,
    pub name: String,
    pub secret_hash: [u8; 32],
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub created_at: Millis,
    /// The signing secret (`SigningService`) of the client's signed consent links.
    pub signing_secret_id: Option<String>,
}

impl ClientRecord {
    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }
}

impl fmt::Debug for ClientRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientRecord")
            .field("client_id", &self.client_id)
            .field("account_id", &self.account_id)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCodeRecord {
    pub code_hash: [u8; 32],
    pub client_id: String,
    pub subject: String,
    pub redirect_uri: String,
    pub scope: String,
    pub code_challenge: String,
    pub family_id: String,
    pub expires_at: Millis,
    pub used_at: Option<Millis>,
    pub created_at: Millis,
}

/// Who a refresh token (and the access tokens it brings) speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolderKind {
    Client,
    Key,
}

impl HolderKind {
    pub fn tag(self) -> &'static str {
        match self {
            HolderKind::Client => "client",
            HolderKind::Key => "key",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Self> {
        match tag {
            "client" => Some(HolderKind::Client),
            "key" => Some(HolderKind::Key),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    pub token_hash: [u8; 32],
    pub family_id: String,
    pub holder_kind: HolderKind,
    pub holder_id: String,
    pub account_id: String,
    pub mode: Mode,
    pub subject: String,
    pub scope: String,
    pub access_jti: String,
    pub access_expires_at: Millis,
    pub expires_at: Millis,
    pub created_at: Millis,
    pub rotated_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
}

/// Associated data of a JWT signing key's sealed private half.
pub fn signing_key_context(kid: &str) -> String {
    format!("signing_key:{kid}")
}
