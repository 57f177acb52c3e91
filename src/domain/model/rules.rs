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
    /// Literal segments match in any ASCII case.
    pub case_insensitive: bool,
}

impl RuleRecord {
    /// What makes two rules the same route (see [`match_key`]).
    pub fn match_key(&self) -> String {
        match_key(
            self.host.as_deref(),
            &self.method,
            &self.path,
            self.case_insensitive,
        )
    }
}

/// What makes two rules the same slot of the route tree: host, method and
/// the template with its parameter names dropped (`/a/{id}` and `/a/{x}`
/// are one route), a case-insensitive rule's literals in lower case. The
/// store keeps it under a unique constraint, so that concurrent creations
/// can never store a duplicate. `host` and `method` as validated
/// (`routes::validate_host`, `routes::validate_method`).
pub fn match_key(host: Option<&str>, method: &str, path: &str, case_insensitive: bool) -> String {
    let mut key = format!("{} {method} ", host.unwrap_or_default());
    let body = path.strip_prefix('/').unwrap_or(path);
    let body = body.strip_suffix('/').unwrap_or(body);
    for segment in body.split('/').filter(|s| !s.is_empty()) {
        key.push('/');
        if segment.starts_with('{') && segment.ends_with('}') {
            key.push_str("{}");
        } else if segment == "**" {
            key.push_str("**");
        } else if case_insensitive {
            // `|` is no literal character: a case-insensitive literal's key
            // can never equal an exact one's.
            key.push('|');
            key.push_str(&segment.to_ascii_lowercase());
        } else {
            key.push_str(segment);
        }
    }
    key
}
