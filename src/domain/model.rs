//! The domain's nouns: accounts, keys, modes, statuses.

use std::fmt;

/// Unix time in milliseconds. The store keeps times in this form on every backend.
pub type Millis = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Test,
    Live,
}

impl Mode {
    /// The tag used in key strings and the store.
    pub fn tag(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Live => "live",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Self> {
        match tag {
            "test" => Some(Mode::Test),
            "live" => Some(Mode::Live),
            _ => None,
        }
    }
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveStatus {
    NotRequested,
    PendingReview,
    Active,
    Rejected,
}

impl LiveStatus {
    pub fn tag(self) -> &'static str {
        match self {
            LiveStatus::NotRequested => "not_requested",
            LiveStatus::PendingReview => "pending_review",
            LiveStatus::Active => "active",
            LiveStatus::Rejected => "rejected",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Self> {
        match tag {
            "not_requested" => Some(LiveStatus::NotRequested),
            "pending_review" => Some(LiveStatus::PendingReview),
            "active" => Some(LiveStatus::Active),
            "rejected" => Some(LiveStatus::Rejected),
            _ => None,
        }
    }
}

impl fmt::Display for LiveStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub plan: String,
    pub live_status: LiveStatus,
    /// The deployment's own operator account, which holds admin keys. Never a tenant.
    pub is_operator: bool,
    /// Stores (a merchant's shops) that belong to this account, sorted.
    pub store_ids: Vec<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Optimistic-concurrency version; every update bumps it.
    pub version: i64,
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
    pub last_used_at: Option<Millis>,
    pub predecessor_id: Option<String>,
    pub successor_id: Option<String>,
    pub overlap_ends_at: Option<Millis>,
    pub version: i64,
    /// "Requests must be signed": the signing secret whose active versions
    /// must sign every request this key makes.
    pub signing_secret_id: Option<String>,
}

impl KeyRecord {
    /// Status at `now`: a stored state, or one that time has brought about.
    pub fn status_at(&self, now: Millis) -> KeyStatus {
        match self.status {
            StoredKeyStatus::Revoked => KeyStatus::Revoked,
            StoredKeyStatus::Suspended => KeyStatus::Suspended,
            StoredKeyStatus::Active => {
                if self.overlap_ends_at.is_some_and(|end| end <= now) {
                    KeyStatus::Rotated
                } else if self.expires_at <= now {
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

/// A new id: a readable prefix and a time-ordered UUIDv7, so ids sort by creation.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Is `id` shaped like one of ours (`<prefix>_<32 hex>`)? Checked before any lookup.
pub fn valid_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A stored route rule: (host, method, path template) → permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRecord {
    pub id: String,
    /// `None` = any host.
    pub host: Option<String>,
    pub method: String,
    pub path: String,
    pub permission: String,
    pub created_at: Millis,
}
