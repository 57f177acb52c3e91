//! Signing secrets and their versions as the store holds them.

use std::fmt;

use super::{Millis, Mode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretStatus {
    Active,
    Revoked,
}

impl SecretStatus {
    pub fn tag(self) -> &'static str {
        match self {
            SecretStatus::Active => "active",
            SecretStatus::Revoked => "revoked",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Self> {
        match tag {
            "active" => Some(SecretStatus::Active),
            "revoked" => Some(SecretStatus::Revoked),
            _ => None,
        }
    }
}

/// Which canonical form a signing secret's signed URLs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UrlForm {
    /// The consent-flow seed's form (`domain::signing::formats::url_canonical`):
    /// the sorted query only, with raw values. Kept for the links receivers
    /// already check.
    #[default]
    Seed,
    /// `domain::signing::strict_url::strict_url_canonical`: scheme, host,
    /// path and the query, every component re-encoded so that no value can
    /// pass for a boundary.
    Strict,
}

impl UrlForm {
    pub fn tag(self) -> &'static str {
        match self {
            UrlForm::Seed => "seed",
            UrlForm::Strict => "strict",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Self> {
        match tag {
            "seed" => Some(UrlForm::Seed),
            "strict" => Some(UrlForm::Strict),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningSecretRecord {
    pub id: String,
    pub account_id: String,
    pub mode: Mode,
    pub name: String,
    pub status: SecretStatus,
    /// The version that signs; versions count from 1.
    pub current_version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// The canonical form of its signed URLs; every version shares it.
    pub url_form: UrlForm,
}

/// One version of a secret, sealed with context [`version_context`].
#[derive(Clone, PartialEq, Eq)]
pub struct SecretVersionRecord {
    pub secret_id: String,
    pub version: i64,
    pub sealed: Vec<u8>,
    pub created_at: Millis,
    /// When a rotation replaced it (it signed nothing after this).
    pub retired_at: Option<Millis>,
    /// When it stopped being active (webhook headers, signed requests).
    pub overlap_ends_at: Option<Millis>,
}

impl fmt::Debug for SecretVersionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretVersionRecord")
            .field("secret_id", &self.secret_id)
            .field("version", &self.version)
            .field("retired_at", &self.retired_at)
            .field("overlap_ends_at", &self.overlap_ends_at)
            .finish_non_exhaustive()
    }
}

impl SecretVersionRecord {
    /// Current, or retired but still inside its overlap window.
    pub fn active_at(&self, now: Millis) -> bool {
        self.overlap_ends_at.is_none_or(|end| now < end)
    }
}

/// The associated data that binds a sealed version to its row.
pub fn version_context(secret_id: &str, version: i64) -> String {
    format!("signing_secret:{secret_id}:v{version}")
}
