//! Route templates, methods and hosts: the parts of a rule, checked.
//!
//! Template syntax: `/v2/surveys/{id}/answers`, `/v2/feeds/**`. A literal
//! segment uses RFC 3986 `pchar`s without escapes (§3.3: unreserved,
//! sub-delims, `:` and `@`); `{name}` matches exactly one non-empty segment;
//! `**`, only as the last segment, matches zero or more. A trailing slash is
//! insignificant in templates and in request paths.

use super::RouteError;

/// Longest route template, in bytes.
pub const MAX_TEMPLATE_LEN: usize = 1024;

/// Methods a rule may name; `*` means any method.
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TemplateSegment {
    Literal(Box<str>),
    Param,
}

/// A parsed template: its segments before an optional final `**`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Template {
    pub(super) segments: Vec<TemplateSegment>,
    pub(super) catch_all: bool,
}

fn is_literal_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@".contains(c)
}

fn is_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

pub(super) fn parse_template(template: &str) -> Result<Template, RouteError> {
    let err = |reason: String| RouteError::Template {
        template: template.to_owned(),
        reason,
    };
    if template.len() > MAX_TEMPLATE_LEN {
        return Err(err(format!("is longer than {MAX_TEMPLATE_LEN} bytes")));
    }
    let Some(body) = template.strip_prefix('/') else {
        return Err(err("must start with `/`".to_owned()));
    };
    let mut parsed = Template {
        segments: Vec::new(),
        catch_all: false,
    };
    if body.is_empty() {
        return Ok(parsed);
    }
    let body = body.strip_suffix('/').unwrap_or(body);
    let mut names: Vec<&str> = Vec::new();
    let mut parts = body.split('/').peekable();
    while let Some(segment) = parts.next() {
        let is_last = parts.peek().is_none();
        match segment {
            "" => return Err(err("empty segment (`//`)".to_owned())),
            "." | ".." => {
                return Err(err(format!(
                    "`{segment}` is not allowed: request paths are normalised before matching"
                )));
            }
            "**" if is_last => parsed.catch_all = true,
            "**" => return Err(err("`**` must be the last segment".to_owned())),
            s if s.starts_with('{') || s.ends_with('}') => {
                let name = s
                    .strip_prefix('{')
                    .and_then(|s| s.strip_suffix('}'))
                    .filter(|name| is_param_name(name))
                    .ok_or_else(|| {
                        err(format!(
                            "`{s}` is not a parameter name: use `{{name}}` with lower-case letters, digits and `_`"
                        ))
                    })?;
                if names.contains(&name) {
                    return Err(err(format!("parameter `{s}` appears twice")));
                }
                names.push(name);
                parsed.segments.push(TemplateSegment::Param);
            }
            s if s.bytes().all(|b| b == b'*') => {
                return Err(err(format!(
                    "`{s}` is not a wildcard: use `{{name}}` for one segment or a final `**` for the rest"
                )));
            }
            s => {
                if let Some(c) = s.chars().find(|c| !is_literal_char(*c)) {
                    return Err(err(format!(
                        "`{s}` has `{}`, which is not allowed in a literal segment",
                        c.escape_default()
                    )));
                }
                parsed.segments.push(TemplateSegment::Literal(s.into()));
            }
        }
    }
    Ok(parsed)
}

/// Checks a route template's syntax (see the module docs).
pub fn validate_template(path: &str) -> Result<(), RouteError> {
    parse_template(path).map(|_| ())
}

/// Returns the canonical method (`GET`, …, or `*` for any); case-insensitive.
pub fn validate_method(method: &str) -> Result<String, RouteError> {
    if method == "*" {
        return Ok("*".to_owned());
    }
    METHODS
        .iter()
        .find(|m| m.eq_ignore_ascii_case(method))
        .map(|m| (*m).to_owned())
        .ok_or_else(|| RouteError::Method(method.to_owned()))
}

/// `""` → `None` (any host); otherwise the lower-cased DNS name, without port.
pub fn validate_host(host: &str) -> Result<Option<String>, RouteError> {
    if host.is_empty() {
        return Ok(None);
    }
    let err = |reason| RouteError::Host {
        host: host.to_owned(),
        reason,
    };
    if host.starts_with("*.") || host.contains('*') {
        return Err(err("wildcard hosts are not supported; name each host"));
    }
    if host.contains(':') {
        return Err(err(
            "has a port or is an IPv6 address; give the host name only",
        ));
    }
    if host.len() > 253 {
        return Err(err("is longer than 253 characters"));
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err(err(
                "has an empty label (`..`, or a leading or trailing `.`)",
            ));
        }
        if label.len() > 63 {
            return Err(err("has a label longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(err("may only contain letters, digits, `-` and `.`"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(err("has a label starting or ending with `-`"));
        }
    }
    Ok(Some(host.to_ascii_lowercase()))
}
