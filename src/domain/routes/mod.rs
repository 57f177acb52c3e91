//! Route rules: which permission an HTTP request needs, decided from its host,
//! method and path.
//!
//! Four parts, all pure but the last:
//!
//! - [`normalize_path`] (`normalize.rs`) turns Envoy's `:path` into the one
//!   path a rule is matched against (RFC 3986 §5.2.4, §6.2.2).
//! - [`validate_template`], [`validate_method`] and [`validate_host`]
//!   (`template.rs`) check a rule's parts; the template syntax is described
//!   there.
//! - [`RouteMatcher`] (`matcher.rs`) compiles [`RouteRule`]s into one segment
//!   tree per host plus one for any host, and [`RouteMatcher::find`] picks the
//!   most specific rule: the request's host before any host; then, segment by
//!   segment from the left, a literal before `{param}` before `**` (an exact
//!   literal before a case-insensitive rule's literal); then the exact method
//!   before `*`.
//! - [`RouteTable`] (`table.rs`) holds the rules in effect, compiled, and the
//!   operations that change them.

mod matcher;
mod normalize;
mod table;
mod template;

#[cfg(test)]
mod tests;

pub use matcher::{RouteMatch, RouteMatcher, RouteRule, rule_key};
pub use normalize::{MAX_PATH_LEN, PathError, PathParams, normalize_path, normalize_request_path};
pub use table::{RULE_ID_PREFIX, Required, RouteTable};
pub use template::{MAX_TEMPLATE_LEN, validate_host, validate_method, validate_template};

use crate::domain::permissions::PermissionError;

/// Why a rule (or a set of rules) does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("route template `{template}`: {reason}")]
    Template { template: String, reason: String },
    #[error("`{0}` is not a route method: use GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS or `*`")]
    Method(String),
    #[error("route host `{host}`: {reason}")]
    Host { host: String, reason: &'static str },
    #[error("route `{rule}`: permission {error}")]
    Permission {
        rule: String,
        error: PermissionError,
    },
    #[error("routes `{first}` and `{second}` have the same host, method and path template")]
    Duplicate { first: String, second: String },
}
