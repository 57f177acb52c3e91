//! Audit events: who did what to which record, when, from where; and the
//! aggregated outcomes of authentication and authorization.

use super::Millis;

/// Prefix of audit event ids (`evt_<UUIDv7>`: ids sort by creation).
pub const AUDIT_EVENT_ID_PREFIX: &str = "evt";

/// The actor of background jobs (expiry sweeps, automatic suspension, purges).
pub const SYSTEM_ACTOR: &str = "system";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOutcome {
    /// A mutation that was committed.
    Success,
    /// Aggregated denied decisions.
    Denied,
    /// Aggregated allowed decisions.
    Allowed,
}

impl AuditOutcome {
    pub fn tag(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Denied => "denied",
            Self::Allowed => "allowed",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Self> {
        match tag {
            "success" => Some(Self::Success),
            "denied" => Some(Self::Denied),
            "allowed" => Some(Self::Allowed),
            _ => None,
        }
    }
}

/// One row of the audit trail. `summary` is a JSON object describing what
/// changed; it never holds a secret, a hash or a ciphertext (the callers
/// build it from identifiers and public fields only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// `evt_<UUIDv7>`.
    pub id: String,
    pub time: Millis,
    /// The admin token's key id, or [`SYSTEM_ACTOR`].
    pub actor: String,
    /// `key.revoked`, `account.created`, `auth.denied`, …
    pub action: String,
    pub outcome: AuditOutcome,
    pub account_id: Option<String>,
    /// `test` / `live`.
    pub mode: Option<String>,
    /// `key`, `account`, `route`, `client`, `signing_secret`, `integration`, `credential`, …
    pub target_type: String,
    pub target_id: Option<String>,
    pub summary: String,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub correlation_id: Option<String>,
    /// How many decisions an aggregated outcome stands for; 1 for a mutation.
    pub count: i64,
}

impl AuditEvent {
    /// A new event with a fresh id, outcome `success`, count 1 and no caller
    /// details; fill in the rest with struct update syntax or the fields.
    pub fn new(time: Millis, actor: &str, action: &str, target_type: &str) -> Self {
        Self {
            id: super::new_id(AUDIT_EVENT_ID_PREFIX),
            time,
            actor: actor.to_owned(),
            action: action.to_owned(),
            outcome: AuditOutcome::Success,
            account_id: None,
            mode: None,
            target_type: target_type.to_owned(),
            target_id: None,
            summary: "{}".to_owned(),
            client_ip: None,
            user_agent: None,
            correlation_id: None,
            count: 1,
        }
    }
}

/// What `ListEvents` selects. Every field narrows; `None` = any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub account_id: Option<String>,
    /// Events whose target is this key.
    pub key_id: Option<String>,
    /// `key.` matches `key.created`, `key.revoked`…
    pub action_prefix: Option<String>,
    pub actor: Option<String>,
    /// Inclusive.
    pub from: Option<Millis>,
    /// Exclusive.
    pub to: Option<Millis>,
    pub outcome: Option<AuditOutcome>,
}

/// Where a page of events ends: newest first, so the next page holds events
/// strictly before `(time, id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCursor {
    pub time: Millis,
    pub id: String,
}
