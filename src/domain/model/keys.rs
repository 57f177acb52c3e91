//! API keys as the store holds them.

use std::fmt;

use super::{Millis, Mode, RatePolicy};

/// Last-used times are accurate to this much: a cached key reports a use
/// at most once per this long, and the store writes a reported time only
/// when the stored one is at least this much older.
pub const LAST_USED_RESOLUTION_MS: Millis = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    Secret,
    Publishable,
    Restricted,
    /// A bearer token for machine-readable feeds, accepted only under the
    /// configured feed path prefix.
    Feed,
}

impl KeyKind {
    /// The tag used in key strings (`sk`, `pk`, `rk`).
    pub fn tag(self) -> &'static str {
        match self {
            KeyKind::Secret => "sk",
            KeyKind::Publishable => "pk",
            KeyKind::Restricted => "rk",
            KeyKind::Feed => "fk",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Self> {
        match tag {
            "sk" => Some(KeyKind::Secret),
            "pk" => Some(KeyKind::Publishable),
            "rk" => Some(KeyKind::Restricted),
            "fk" => Some(KeyKind::Feed),
            _ => None,
        }
    }
}

/// What the store records; `expired` and `rotated` are derived from times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredKeyStatus {
    Active,
    Suspended,
    Revoked,
}

impl StoredKeyStatus {
    pub fn tag(self) -> &'static str {
        match self {
            StoredKeyStatus::Active => "active",
            StoredKeyStatus::Suspended => "suspended",
            StoredKeyStatus::Revoked => "revoked",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Self> {
        match tag {
            "active" => Some(StoredKeyStatus::Active),
            "suspended" => Some(StoredKeyStatus::Suspended),
            "revoked" => Some(StoredKeyStatus::Revoked),
            _ => None,
        }
    }
}

/// A key's status at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Suspended,
    Revoked,
    Expired,
    Rotated,
}

/// A stored API key. Holds the SHA-256 of the secret, never the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub account_id: String,
    pub mode: Mode,
    pub kind: KeyKind,
    pub name: String,
    pub key_hash: [u8; 32],
    pub masked: String,
    pub scopes: Vec<String>,
    pub role: Option<String>,
    pub allowed_cidrs: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub status: StoredKeyStatus,
    pub expires_at: Millis,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Accurate to [`LAST_USED_RESOLUTION_MS`].
    pub last_used_at: Option<Millis>,
    pub predecessor_id: Option<String>,
    pub successor_id: Option<String>,
    pub overlap_ends_at: Option<Millis>,
    pub version: i64,
    /// "Requests must be signed": the signing secret whose active versions
    /// must sign every request this key makes.
    pub signing_secret_id: Option<String>,
    /// The key's own rate limit, overriding its plan's (`None` = the plan's).
    pub rate_limit: Option<RatePolicy>,
    /// Why Latchkey suspended the key itself ([`AUTO_SUSPENDED_BRUTE_FORCE`]);
    /// `None` for any other status or a suspension by an operator.
    pub suspension_cause: Option<String>,
}

/// The cause of a key suspended because a valid key kept arriving with
/// invalid request signatures: it has leaked without its signing secret.
pub const AUTO_SUSPENDED_BRUTE_FORCE: &str = "auto_suspended_brute_force";

impl KeyRecord {
    /// Status at `now`: a stored state, or one that time has brought about.
    pub fn status_at(&self, now: Millis) -> KeyStatus {
        KeyStatus::at(self.status, self.expires_at, self.overlap_ends_at, now)
    }
}

impl KeyStatus {
    /// A stored status at `now`, with what expiry and a rotation's overlap
    /// window have made of it.
    pub fn at(
        stored: StoredKeyStatus,
        expires_at: Millis,
        overlap_ends_at: Option<Millis>,
        now: Millis,
    ) -> Self {
        match stored {
            StoredKeyStatus::Revoked => KeyStatus::Revoked,
            StoredKeyStatus::Suspended => KeyStatus::Suspended,
            StoredKeyStatus::Active => {
                if overlap_ends_at.is_some_and(|end| end <= now) {
                    KeyStatus::Rotated
                } else if expires_at <= now {
                    KeyStatus::Expired
                } else {
                    KeyStatus::Active
                }
            }
        }
    }
}

// The hash is not secret, but there is no reason to print it either.
impl fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRecord")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("mode", &self.mode)
            .field("kind", &self.kind)
            .field("masked", &self.masked)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}
