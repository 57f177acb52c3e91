//! Route rules as the store holds them.

use super::Millis;

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
