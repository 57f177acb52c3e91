//! The hosted consent flow's records.

use super::Millis;

/// Named branding of an account's consent pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowConfigRecord {
    pub id: String,
    pub account_id: String,
    /// What `flow_config=` names, unique within the account.
    pub name: String,
    pub display_name: String,
    /// https only; the consent page's `img-src` allows this host alone.
    pub logo_url: Option<String>,
    /// `#rrggbb`.
    pub primary_color: Option<String>,
    /// https only.
    pub support_url: Option<String>,
    /// `en` or `de`: the page's language when `Accept-Language` names neither.
    pub default_language: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}
