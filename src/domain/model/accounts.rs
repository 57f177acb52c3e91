//! Accounts (tenants) and their live-mode status.

use std::fmt;

use super::Millis;

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
