//! Route rules: which permission an HTTP request needs, decided from its host,
//! method and path.
//!
//! Two halves, both pure:
//!
//! - [`normalize_path`] turns Envoy's `:path` into the one path a rule is
//!   matched against: query and fragment dropped (RFC 3986 §3.3–3.5), every
//!   percent-escape decoded (§2.1, §6.2.2.2), repeated slashes merged, and dot
//!   segments removed as in §5.2.4 (`remove_dot_segments`), which §6.2.2.3
//!   applies to normalisation. An encoded `/`, `\` or NUL is refused: after
//!   decoding, a rule could not tell the path's segments apart, and the
//!   upstream might split them differently than we did.
//! - [`RouteMatcher`] compiles [`RouteRule`]s into one segment tree per host
//!   plus one for any host, and [`RouteMatcher::find`] picks the most specific
//!   rule: the request's host before any host; then, segment by segment from
//!   the left, a literal before `{param}` before `**`; then the exact method
//!   before `*`.
//!
//! Template syntax: `/v2/surveys/{id}/answers`, `/v2/feeds/**`. A literal
//! segment uses RFC 3986 `pchar`s without escapes (§3.3: unreserved,
//! sub-delims, `:` and `@`); `{name}` matches exactly one non-empty segment;
//! `**`, only as the last segment, matches zero or more. A trailing slash is
//! insignificant in templates and in request paths.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::domain::permissions::{Permission, PermissionError};

/// Longest `:path` (without its query) we normalise, in bytes.
pub const MAX_PATH_LEN: usize = 4096;
/// Longest route template, in bytes.
pub const MAX_TEMPLATE_LEN: usize = 1024;

/// Methods a rule may name; `*` means any method.
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with `/`")]
    NotAbsolute,
    #[error("the path is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    #[error(
        "the path has an invalid percent-escape (`%` must be followed by two hex digits encoding UTF-8)"
    )]
    BadEscape,
    #[error(
        "the path has an encoded `/`, `\\` or NUL (`%2F`, `%5C`, `%00`), which makes its segments ambiguous"
    )]
    EncodedSeparator,
    #[error("the path has a backslash, NUL or other control character")]
    BadCharacter,
}

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

// ---------------------------------------------------------------------------
// Path normalisation
// ---------------------------------------------------------------------------

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes every `%XX`, refusing what would make the path ambiguous.
fn percent_decode(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::BadEscape);
            };
            match (hi << 4) | lo {
                b'/' | b'\\' | 0 => return Err(PathError::EncodedSeparator),
                // `%0A`, `%0D` and friends are header-smuggling material, and
                // refusing them keeps the output free of control characters.
                c if c.is_ascii_control() => return Err(PathError::BadCharacter),
                c => out.push(c),
            }
            i += 3;
        } else if b == b'\\' || b.is_ascii_control() {
            return Err(PathError::BadCharacter);
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| PathError::BadEscape)
}

/// Appends a decoded segment, re-encoding the characters that would mean
/// something else in a path (`%`, `?`, `#`), so normalising is idempotent.
fn push_segment(out: &mut String, segment: &str) {
    out.push('/');
    for c in segment.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3F"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
}

/// Normalises the `:path` of a request for matching against route templates.
///
/// `/v2/public/../admin` → `/v2/admin`, `/v2/%2e%2e/admin` → `/admin`,
/// `//a///b` → `/a/b`, `/a/b/..` → `/a/`. A `..` above the root stays at the
/// root (RFC 3986 §5.2.4). A trailing slash is kept. The result's only
/// escapes are `%25`, `%3F` and `%23`, for a decoded `%`, `?` or `#`.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let path = raw.split(['?', '#']).next().unwrap_or_default();
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    // Most paths Envoy sends are already normal: no copy, no allocation.
    if is_normal(path) {
        return Ok(Cow::Borrowed(path));
    }
    rebuild(path).map(Cow::Owned)
}

/// Is `path` (without query or fragment) its own normal form? True only for
/// what [`rebuild`] would return unchanged: absolute, no escapes, no
/// backslash or control character, no empty segment but a last one, no dot
/// segment.
fn is_normal(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    let mut start = 1;
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        if b == b'%' || b == b'\\' || b.is_ascii_control() {
            return false;
        }
        if b == b'/' {
            if matches!(&bytes[start..i], b"" | b"." | b"..") {
                return false;
            }
            start = i + 1;
        }
    }
    !matches!(&bytes[start..], b"." | b"..")
}

/// The normal form of an absolute path or why it has none.
fn rebuild(path: &str) -> Result<String, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = percent_decode(path)?;

    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in decoded.split('/').skip(1) {
        // A segment that ends the path without naming a resource (``, `.`,
        // `..`) leaves a directory: the output ends with a slash.
        trailing_slash = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            name => kept.push(name),
        }
    }

    let mut out = String::with_capacity(decoded.len());
    for segment in &kept {
        push_segment(&mut out, segment);
    }
    if trailing_slash || kept.is_empty() {
        out.push('/');
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Templates, methods and hosts
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplateSegment {
    Literal(Box<str>),
    Param,
}

/// A parsed template: its segments before an optional final `**`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template {
    segments: Vec<TemplateSegment>,
    catch_all: bool,
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

fn parse_template(template: &str) -> Result<Template, RouteError> {
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

/// The request's host as a rule names it: no port, no trailing dot, lower
/// case. Allocates only when the host has upper-case letters.
fn host_key(host: &str) -> Cow<'_, str> {
    let host = match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

// ---------------------------------------------------------------------------
// The matcher
// ---------------------------------------------------------------------------

/// One configured rule: requests to `host` (or any host), `method` (or `*`)
/// and a path matching `path` need `permission`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    pub id: String,
    pub host: Option<String>,
    pub method: String,
    pub path: String,
    pub permission: String,
}

/// The rule a request matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch<'a> {
    pub rule_id: &'a str,
    pub permission: &'a str,
}

/// Rules ending at one trie position, by method.
#[derive(Debug, Clone, Default)]
struct Methods {
    /// At most seven entries: a scan beats hashing.
    exact: Vec<(Box<str>, usize)>,
    any: Option<usize>,
}

impl Methods {
    fn pick(&self, method: &str) -> Option<usize> {
        self.exact
            .iter()
            .find(|(m, _)| **m == *method)
            .map(|(_, rule)| *rule)
            .or(self.any)
    }

    /// Records `rule`; on a clash, returns the rule already there.
    fn insert(&mut self, method: &str, rule: usize) -> Result<(), usize> {
        let slot = if method == "*" {
            &mut self.any
        } else if let Some((_, existing)) = self.exact.iter().find(|(m, _)| **m == *method) {
            return Err(*existing);
        } else {
            self.exact.push((method.into(), rule));
            return Ok(());
        };
        match slot {
            Some(existing) => Err(*existing),
            None => {
                *slot = Some(rule);
                Ok(())
            }
        }
    }
}

/// A segment tree: a node per template prefix.
#[derive(Debug, Clone, Default)]
struct Node {
    literals: HashMap<Box<str>, Node>,
    param: Option<Box<Node>>,
    /// Rules whose template ends here.
    here: Methods,
    /// Rules whose template ends here with `/**`.
    rest: Methods,
}

impl Node {
    /// The most specific rule for `path` below this node. Each node is
    /// visited at most once (a node's depth fixes how many segments were
    /// consumed to reach it), so the backtracking is bounded by the tree size.
    fn find(&self, path: &str, method: &str) -> Option<usize> {
        let path = path.trim_start_matches('/');
        if path.is_empty() {
            return self.here.pick(method).or_else(|| self.rest.pick(method));
        }
        let (segment, after) = path.split_once('/').unwrap_or((path, ""));
        self.literals
            .get(segment)
            .and_then(|child| child.find(after, method))
            .or_else(|| {
                self.param
                    .as_ref()
                    .and_then(|child| child.find(after, method))
            })
            .or_else(|| self.rest.pick(method))
    }

    fn slot(&mut self, template: &Template) -> &mut Methods {
        let mut node = self;
        for segment in &template.segments {
            node = match segment {
                TemplateSegment::Literal(text) => node.literals.entry(text.clone()).or_default(),
                TemplateSegment::Param => node.param.get_or_insert_with(Box::default),
            };
        }
        if template.catch_all {
            &mut node.rest
        } else {
            &mut node.here
        }
    }
}

#[derive(Debug, Clone)]
struct CompiledRule {
    id: Box<str>,
    permission: Box<str>,
}

/// Compiled route rules; see the module docs for how a match is chosen.
#[derive(Debug, Clone, Default)]
pub struct RouteMatcher {
    rules: Vec<CompiledRule>,
    by_host: HashMap<String, Node>,
    any_host: Node,
}

impl RouteMatcher {
    pub fn new(rules: &[RouteRule]) -> Result<Self, RouteError> {
        let mut matcher = Self::empty();
        for (index, rule) in rules.iter().enumerate() {
            let template = parse_template(&rule.path)?;
            let method = validate_method(&rule.method)?;
            let host = match rule.host.as_deref() {
                Some(host) => validate_host(host)?,
                None => None,
            };
            Permission::parse(&rule.permission).map_err(|error| RouteError::Permission {
                rule: rule.id.clone(),
                error,
            })?;
            let trie = match host {
                Some(host) => matcher.by_host.entry(host).or_default(),
                None => &mut matcher.any_host,
            };
            trie.slot(&template)
                .insert(&method, index)
                .map_err(|first| RouteError::Duplicate {
                    first: rules.get(first).map(|r| r.id.clone()).unwrap_or_default(),
                    second: rule.id.clone(),
                })?;
            matcher.rules.push(CompiledRule {
                id: rule.id.as_str().into(),
                permission: rule.permission.as_str().into(),
            });
        }
        Ok(matcher)
    }

    pub fn empty() -> Self {
        Self::default()
    }

    /// `path` is already normalised (no query). `host` is the request's
    /// Host/:authority (a port is ignored, case-insensitive).
    ///
    /// Methods compare exactly (RFC 9110 §9.1: they are case-sensitive), so
    /// `get` only matches `*` rules.
    pub fn find(&self, host: Option<&str>, method: &str, path: &str) -> Option<RouteMatch<'_>> {
        if !path.starts_with('/') {
            return None;
        }
        let for_host = match host {
            Some(host) if !self.by_host.is_empty() => self
                .by_host
                .get(host_key(host).as_ref())
                .and_then(|trie| trie.find(path, method)),
            _ => None,
        };
        let index = for_host.or_else(|| self.any_host.find(path, method))?;
        self.rules.get(index).map(|rule| RouteMatch {
            rule_id: &rule.id,
            permission: &rule.permission,
        })
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rule(id: &str, host: Option<&str>, method: &str, path: &str, permission: &str) -> RouteRule {
        RouteRule {
            id: id.to_owned(),
            host: host.map(str::to_owned),
            method: method.to_owned(),
            path: path.to_owned(),
            permission: permission.to_owned(),
        }
    }

    fn on_any_host(id: &str, method: &str, path: &str) -> RouteRule {
        rule(id, None, method, path, &format!("{id}.x"))
    }

    fn hit<'a>(
        m: &'a RouteMatcher,
        host: Option<&str>,
        method: &str,
        path: &str,
    ) -> Option<&'a str> {
        m.find(host, method, path).map(|r| r.rule_id)
    }

    // --- normalize_path ------------------------------------------------------

    #[test]
    fn normalises_examples() {
        for (raw, want) in [
            ("/", "/"),
            ("/v2/public/../admin", "/v2/admin"),
            ("/v2/%2e%2e/admin", "/admin"),
            ("/v2/%2E%2E/admin", "/admin"),
            ("/v2/.%2e/admin", "/admin"),
            ("/a/./b/", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("//a///b", "/a/b"),
            ("/a//", "/a/"),
            ("/..", "/"),
            ("/../../x", "/x"),
            ("/a/../..//b/", "/b/"),
            ("/v2/surveys?x=/../admin", "/v2/surveys"),
            ("/v2/surveys#frag", "/v2/surveys"),
            ("/v2/s%75rveys", "/v2/surveys"),
            ("/caf%C3%A9", "/café"),
            ("/café", "/café"),
            ("/a%20b", "/a b"),
            ("/100%25", "/100%25"),
            ("/a%3Fb%23c", "/a%3Fb%23c"),
            ("/%252F", "/%252F"),
            ("/...", "/..."),
            ("/..a/.b", "/..a/.b"),
        ] {
            assert_eq!(normalize_path(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn refuses_bad_paths() {
        for (raw, want) in [
            ("", PathError::NotAbsolute),
            ("v2/x", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
            ("?/a", PathError::NotAbsolute),
            ("http://h/a", PathError::NotAbsolute),
            ("/a%G1", PathError::BadEscape),
            ("/a%4", PathError::BadEscape),
            ("/a%", PathError::BadEscape),
            ("/a%%41", PathError::BadEscape),
            ("/%FF", PathError::BadEscape),
            ("/%C3", PathError::BadEscape),
            ("/%C3/", PathError::BadEscape),
            ("/a%2Fb", PathError::EncodedSeparator),
            ("/a%2fb", PathError::EncodedSeparator),
            ("/a%5Cb", PathError::EncodedSeparator),
            ("/a%5cb", PathError::EncodedSeparator),
            ("/a%00", PathError::EncodedSeparator),
            ("/a\\b", PathError::BadCharacter),
            ("/a\0b", PathError::BadCharacter),
            ("/a\nb", PathError::BadCharacter),
            ("/a\tb", PathError::BadCharacter),
            ("/a\x7fb", PathError::BadCharacter),
            ("/a%0Ab", PathError::BadCharacter),
            ("/a%0d%0aX:1", PathError::BadCharacter),
        ] {
            assert_eq!(normalize_path(raw), Err(want), "{raw:?}");
        }
    }

    #[test]
    fn length_limit_is_on_the_path_only() {
        let long = format!("/{}", "a".repeat(MAX_PATH_LEN - 1));
        assert!(normalize_path(&long).is_ok());
        assert_eq!(normalize_path(&format!("{long}b")), Err(PathError::TooLong));
        let query = format!("/a?{}", "q".repeat(MAX_PATH_LEN * 2));
        assert_eq!(normalize_path(&query).as_deref(), Ok("/a"));
    }

    fn escapes(s: &str) -> Vec<&str> {
        s.match_indices('%')
            .map(|(i, _)| s.get(i..i + 3).unwrap_or("%"))
            .collect()
    }

    fn check_normal_form(out: &str) -> Result<(), TestCaseError> {
        prop_assert!(out.starts_with('/'));
        prop_assert!(!out.contains("//"), "{out}");
        prop_assert!(!out.contains(['\\', '?', '#', '\0']), "{out}");
        prop_assert!(!out.chars().any(|c| c.is_ascii_control()), "{out}");
        for segment in out.split('/') {
            prop_assert!(segment != "." && segment != "..", "{out}");
        }
        for escape in escapes(out) {
            prop_assert!(matches!(escape, "%25" | "%3F" | "%23"), "{out}: {escape}");
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn normalising_is_idempotent_any_text(raw in "\\PC{0,200}") {
            if let Ok(once) = normalize_path(&raw) {
                check_normal_form(&once)?;
                prop_assert_eq!(normalize_path(&once), Ok(once.clone()));
            }
        }

        #[test]
        fn normalising_is_idempotent_tricky_alphabet(tail in "[/.%2eEfF a-z5cC0-3?#]{0,60}") {
            let raw = format!("/{tail}");
            if let Ok(once) = normalize_path(&raw) {
                check_normal_form(&once)?;
                prop_assert_eq!(normalize_path(&once), Ok(once.clone()));
            }
            let _ = normalize_path(&tail);
        }

        /// The shortcut for paths already normal agrees with normalising them.
        #[test]
        fn the_fast_path_is_the_normal_form(tail in "[/.%2eEfF a-z5cC0-3?#\\\\\t\u{7f}é]{0,40}") {
            let raw = format!("/{tail}");
            let path = raw.split(['?', '#']).next().unwrap_or_default();
            if is_normal(path) {
                prop_assert_eq!(rebuild(path), Ok(path.to_owned()));
            }
            prop_assert_eq!(
                normalize_path(&raw).map(Cow::into_owned),
                rebuild(path),
            );
        }

        #[test]
        fn dot_segments_never_climb_out(prefix in "[a-z]{1,5}", hops in 1usize..6, name in "[a-z]{1,5}") {
            let raw = format!("/{prefix}{}/{name}", "/%2e%2e".repeat(hops));
            prop_assert_eq!(normalize_path(&raw).map(Cow::into_owned), Ok(format!("/{name}")));
        }
    }

    // --- templates, methods, hosts ------------------------------------------

    #[test]
    fn templates() {
        for ok in [
            "/",
            "/v2",
            "/v2/",
            "/v2/surveys/{id}",
            "/v2/{a}/{b_2}/x",
            "/v2/feeds/**",
            "/**",
            "/a-b.c~d/!$&'()*+,;=:@",
            "/v1/*x",
            "/{_}",
        ] {
            assert_eq!(validate_template(ok), Ok(()), "{ok}");
        }
        for (bad, reason) in [
            ("", "must start with `/`"),
            ("v2", "must start with `/`"),
            ("//", "empty segment"),
            ("/a//b", "empty segment"),
            ("/a//", "empty segment"),
            ("/**/x", "`**` must be the last segment"),
            ("/a/**/**", "`**` must be the last segment"),
            ("/{Bad}", "`{Bad}` is not a parameter name"),
            ("/{}", "`{}` is not a parameter name"),
            ("/{1a}", "`{1a}` is not a parameter name"),
            ("/{a", "`{a` is not a parameter name"),
            ("/a}", "`a}` is not a parameter name"),
            ("/{a}/{a}", "parameter `{a}` appears twice"),
            ("/a/./b", "`.` is not allowed"),
            ("/a/..", "`..` is not allowed"),
            ("/*/x", "`*` is not a wildcard"),
            ("/a/***", "`***` is not a wildcard"),
            ("/a%2Fb", "`a%2Fb` has `%`"),
            ("/a b", "has ` `"),
            ("/café", "has `\\u{e9}`"),
            ("/a?b", "has `?`"),
        ] {
            match validate_template(bad) {
                Err(RouteError::Template {
                    template,
                    reason: got,
                }) => {
                    assert_eq!(template, bad);
                    assert!(got.contains(reason), "{bad}: {got}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        let long = format!("/{}", "a".repeat(MAX_TEMPLATE_LEN));
        assert!(validate_template(&long).is_err());
    }

    #[test]
    fn methods() {
        assert_eq!(validate_method("get").as_deref(), Ok("GET"));
        assert_eq!(validate_method("Options").as_deref(), Ok("OPTIONS"));
        assert_eq!(validate_method("*").as_deref(), Ok("*"));
        for bad in ["", "ANY", "GETX", " GET", "CONNECT", "**"] {
            assert_eq!(
                validate_method(bad),
                Err(RouteError::Method(bad.to_owned()))
            );
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(validate_host(""), Ok(None));
        assert_eq!(
            validate_host("API.Shop.example"),
            Ok(Some("api.shop.example".to_owned()))
        );
        assert_eq!(validate_host("10.0.0.1"), Ok(Some("10.0.0.1".to_owned())));
        for bad in [
            "*.shop.example",
            "api.shop.example:443",
            "::1",
            "a..b",
            ".a",
            "a.",
            "-a.b",
            "a_b.c",
            "a b",
            "api/x",
        ] {
            assert!(
                matches!(validate_host(bad), Err(RouteError::Host { .. })),
                "{bad}"
            );
        }
        assert!(validate_host(&"a".repeat(64)).is_err());
        assert!(validate_host(&["a"; 130].join(".")).is_err());
    }

    // --- matching ------------------------------------------------------------

    #[test]
    fn specificity_table() {
        let m = RouteMatcher::new(&[
            rule("read", None, "GET", "/v2/surveys/{id}", "surveys.read"),
            rule(
                "export",
                None,
                "GET",
                "/v2/surveys/export",
                "surveys.export",
            ),
            rule("v2", None, "*", "/v2/**", "v2.any"),
            rule("shop", Some("api.shop.example"), "*", "/v2/**", "shop.any"),
        ])
        .unwrap();
        assert_eq!(m.len(), 4);
        for (host, method, path, want) in [
            (
                None,
                "GET",
                "/v2/surveys/42",
                Some(("read", "surveys.read")),
            ),
            (
                None,
                "GET",
                "/v2/surveys/42/",
                Some(("read", "surveys.read")),
            ),
            (
                None,
                "GET",
                "/v2/surveys/export",
                Some(("export", "surveys.export")),
            ),
            (
                Some("other.example"),
                "GET",
                "/v2/surveys/export",
                Some(("export", "surveys.export")),
            ),
            (None, "POST", "/v2/surveys/42", Some(("v2", "v2.any"))),
            (None, "DELETE", "/v2/surveys/export", Some(("v2", "v2.any"))),
            (None, "GET", "/v2/surveys", Some(("v2", "v2.any"))),
            (
                None,
                "GET",
                "/v2/surveys/42/answers",
                Some(("v2", "v2.any")),
            ),
            (None, "GET", "/v2", Some(("v2", "v2.any"))),
            (
                Some("api.shop.example"),
                "GET",
                "/v2/surveys/42",
                Some(("shop", "shop.any")),
            ),
            (
                Some("API.Shop.Example:8443"),
                "GET",
                "/v2/surveys/export",
                Some(("shop", "shop.any")),
            ),
            (
                Some("api.shop.example."),
                "GET",
                "/v2/x",
                Some(("shop", "shop.any")),
            ),
            (Some("api.shop.example"), "GET", "/v3/x", None),
            (None, "GET", "/v3", None),
            (None, "GET", "/", None),
            (None, "GET", "/v2x", None),
            (None, "GET", "v2/surveys/42", None),
        ] {
            let got = m
                .find(host, method, path)
                .map(|r| (r.rule_id, r.permission));
            assert_eq!(got, want, "{host:?} {method} {path}");
        }
    }

    #[test]
    fn host_rules_fall_back_to_any_host() {
        let m = RouteMatcher::new(&[
            rule(
                "shop-get",
                Some("api.shop.example"),
                "GET",
                "/v2/orders",
                "orders.read",
            ),
            rule("all", None, "*", "/v2/orders", "orders.any"),
            rule("root", None, "GET", "/", "root.read"),
        ])
        .unwrap();
        assert_eq!(
            hit(&m, Some("api.shop.example"), "GET", "/v2/orders"),
            Some("shop-get")
        );
        // No host rule for POST: the any-host rule applies.
        assert_eq!(
            hit(&m, Some("api.shop.example"), "POST", "/v2/orders"),
            Some("all")
        );
        assert_eq!(hit(&m, Some("api.shop.example"), "GET", "/"), Some("root"));
        assert_eq!(hit(&m, None, "GET", "/v2/orders"), Some("all"));
        assert_eq!(hit(&m, Some("[::1]:443"), "GET", "/v2/orders"), Some("all"));
    }

    #[test]
    fn method_misses_backtrack_to_less_specific_paths() {
        let m = RouteMatcher::new(&[
            on_any_host("export", "GET", "/v2/export"),
            on_any_host("item", "POST", "/v2/{id}"),
            on_any_host("item-any", "*", "/v2/{id}/x"),
            on_any_host("item-get", "GET", "/v2/{id}/x"),
        ])
        .unwrap();
        assert_eq!(hit(&m, None, "GET", "/v2/export"), Some("export"));
        assert_eq!(hit(&m, None, "POST", "/v2/export"), Some("item"));
        assert_eq!(hit(&m, None, "PUT", "/v2/export"), None);
        assert_eq!(hit(&m, None, "GET", "/v2/export/x"), Some("item-get"));
        assert_eq!(hit(&m, None, "PUT", "/v2/export/x"), Some("item-any"));
        // Methods are case-sensitive on the wire.
        assert_eq!(hit(&m, None, "get", "/v2/export/x"), Some("item-any"));
    }

    #[test]
    fn literal_beats_param_at_the_leftmost_difference() {
        let m = RouteMatcher::new(&[
            on_any_host("lit-param", "GET", "/a/{x}/c"),
            on_any_host("param-lit", "GET", "/{x}/b/c"),
            on_any_host("lit-rest", "GET", "/a/**"),
        ])
        .unwrap();
        // `/a/{x}/c` wins over `/{x}/b/c` (literal in the first segment),
        // and `/a/{x}/c` over `/a/**` (param before catch-all).
        assert_eq!(hit(&m, None, "GET", "/a/b/c"), Some("lit-param"));
        assert_eq!(hit(&m, None, "GET", "/z/b/c"), Some("param-lit"));
        assert_eq!(hit(&m, None, "GET", "/a/b/d"), Some("lit-rest"));
    }

    #[test]
    fn catch_all_and_trailing_slashes() {
        let m = RouteMatcher::new(&[
            on_any_host("feeds", "GET", "/v2/feeds/**"),
            on_any_host("surveys", "GET", "/v2/surveys/"),
            on_any_host("root", "GET", "/"),
        ])
        .unwrap();
        for path in ["/v2/feeds", "/v2/feeds/", "/v2/feeds/a", "/v2/feeds/a/b/"] {
            assert_eq!(hit(&m, None, "GET", path), Some("feeds"), "{path}");
        }
        assert_eq!(hit(&m, None, "GET", "/v2/feedsx"), None);
        assert_eq!(hit(&m, None, "GET", "/v2"), None);
        assert_eq!(hit(&m, None, "GET", "/v2/surveys"), Some("surveys"));
        assert_eq!(hit(&m, None, "GET", "/v2/surveys/"), Some("surveys"));
        assert_eq!(hit(&m, None, "GET", "/v2/surveys/1"), None);
        assert_eq!(hit(&m, None, "GET", "/"), Some("root"));
        assert_eq!(hit(&m, None, "GET", "/x"), None);

        let all = RouteMatcher::new(&[on_any_host("all", "*", "/**")]).unwrap();
        assert_eq!(hit(&all, None, "GET", "/"), Some("all"));
        assert_eq!(hit(&all, None, "GET", "/a/b"), Some("all"));
    }

    #[test]
    fn path_specificity_comes_before_method() {
        let m = RouteMatcher::new(&[
            on_any_host("any-method", "*", "/v2/feeds"),
            on_any_host("get-rest", "GET", "/v2/feeds/**"),
        ])
        .unwrap();
        assert_eq!(hit(&m, None, "GET", "/v2/feeds"), Some("any-method"));
        assert_eq!(hit(&m, None, "GET", "/v2/feeds/1"), Some("get-rest"));
    }

    #[test]
    fn duplicates_are_refused() {
        for (a, b) in [
            (
                on_any_host("a", "GET", "/x/{id}"),
                on_any_host("b", "get", "/x/{other}/"),
            ),
            (
                on_any_host("a", "*", "/x/**"),
                on_any_host("b", "*", "/x/**/"),
            ),
            (on_any_host("a", "GET", "/"), on_any_host("b", "GET", "/")),
            (
                rule("a", Some("h.example"), "GET", "/x", "x.read"),
                rule("b", Some("H.example"), "GET", "/x", "x.read"),
            ),
            (
                rule("a", Some(""), "GET", "/x", "x.read"),
                rule("b", None, "GET", "/x", "x.read"),
            ),
        ] {
            assert_eq!(
                RouteMatcher::new(&[a, b]).err(),
                Some(RouteError::Duplicate {
                    first: "a".to_owned(),
                    second: "b".to_owned()
                })
            );
        }
        // Not duplicates: method, host, `**` versus end, or literal versus param differ.
        let m = RouteMatcher::new(&[
            on_any_host("a", "GET", "/x/{id}"),
            on_any_host("b", "*", "/x/{id}"),
            on_any_host("c", "POST", "/x/{id}"),
            on_any_host("d", "GET", "/x/id"),
            on_any_host("e", "GET", "/x/{id}/**"),
            rule("f", Some("h.example"), "GET", "/x/{id}", "x.read"),
        ]);
        assert_eq!(m.map(|m| m.len()).ok(), Some(6));
    }

    #[test]
    fn new_reports_bad_rules() {
        assert!(matches!(
            RouteMatcher::new(&[on_any_host("a", "GET", "/a//b")]),
            Err(RouteError::Template { .. })
        ));
        assert_eq!(
            RouteMatcher::new(&[on_any_host("a", "FETCH", "/a")]).err(),
            Some(RouteError::Method("FETCH".to_owned()))
        );
        assert!(matches!(
            RouteMatcher::new(&[rule("a", Some("*.x.example"), "GET", "/a", "a.read")]),
            Err(RouteError::Host { .. })
        ));
        for permission in ["", "surveys", "surveys.*", "Surveys.Read"] {
            assert!(
                matches!(
                    RouteMatcher::new(&[rule("a", None, "GET", "/a", permission)]),
                    Err(RouteError::Permission { ref rule, .. }) if rule == "a"
                ),
                "{permission}"
            );
        }
    }

    #[test]
    fn empty_matcher() {
        let m = RouteMatcher::empty();
        assert!(m.is_empty());
        assert_eq!(m.len(), 0);
        assert_eq!(m.find(Some("a.example"), "GET", "/"), None);
        assert!(RouteMatcher::new(&[]).unwrap().is_empty());
    }

    #[test]
    fn error_messages_name_the_problem() {
        let err = validate_template("/a/**/b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "route template `/a/**/b`: `**` must be the last segment"
        );
        let err = RouteMatcher::new(&[
            on_any_host("one", "GET", "/a/{x}"),
            on_any_host("two", "GET", "/a/{y}"),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "routes `one` and `two` have the same host, method and path template"
        );
        assert_eq!(
            PathError::EncodedSeparator.to_string(),
            "the path has an encoded `/`, `\\` or NUL (`%2F`, `%5C`, `%00`), which makes its segments ambiguous"
        );
    }

    fn literal_segments() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec("[a-z0-9_~-][a-z0-9._~-]{0,7}", 1..6)
    }

    proptest! {
        #[test]
        fn exact_template_beats_param_and_catch_all(
            segments in literal_segments(),
            param_at in any::<prop::sample::Index>(),
            exact_method in prop::sample::select(vec!["GET", "*"]),
            other_method in prop::sample::select(vec!["GET", "*"]),
            trailing in any::<bool>(),
        ) {
            let exact = format!("/{}", segments.join("/"));
            prop_assume!(validate_template(&exact).is_ok());
            let i = param_at.index(segments.len());
            let mut with_param = segments.clone();
            if let Some(s) = with_param.get_mut(i) {
                *s = "{p}".to_owned();
            }
            let with_param = format!("/{}", with_param.join("/"));
            let mut rules = vec![
                on_any_host("rest", other_method, "/**"),
                on_any_host("param", other_method, &with_param),
                on_any_host("exact", exact_method, &exact),
            ];
            let path = if trailing { format!("{exact}/") } else { exact.clone() };
            for _ in 0..3 {
                let m = RouteMatcher::new(&rules).unwrap();
                prop_assert_eq!(hit(&m, None, "GET", &path), Some("exact"));
                rules.rotate_left(1);
            }
            let m = RouteMatcher::new(&rules[..2]).unwrap();
            prop_assert_eq!(hit(&m, None, "GET", &path), Some("param"));
        }

        #[test]
        fn find_never_panics(
            host in proptest::option::of("\\PC{0,30}"),
            method in "\\PC{0,10}",
            path in "\\PC{0,100}",
            tricky in "[/a{}*.:]{0,30}",
        ) {
            let m = RouteMatcher::new(&[
                on_any_host("a", "GET", "/a/{x}/**"),
                on_any_host("b", "*", "/**"),
                rule("c", Some("a.example"), "GET", "/a/{x}", "c.read"),
            ]).unwrap();
            let _ = m.find(host.as_deref(), &method, &path);
            let _ = m.find(host.as_deref(), &method, &tricky);
            let _ = m.find(Some(&tricky), "GET", &tricky);
            let _ = validate_template(&path);
            let _ = validate_host(&path);
            let _ = validate_method(&method);
        }

        #[test]
        fn normalised_paths_match_like_their_templates(segments in literal_segments(), junk in "[a-z]{1,5}") {
            let exact = format!("/{}", segments.join("/"));
            prop_assume!(validate_template(&exact).is_ok());
            let m = RouteMatcher::new(&[on_any_host("exact", "GET", &exact)]).unwrap();
            // A detour through `..` and doubled slashes normalises back to the template.
            let raw = format!("/{junk}/..//{}", segments.join("//"));
            let path = normalize_path(&raw).unwrap();
            prop_assert_eq!(hit(&m, None, "GET", &path), Some("exact"));
        }
    }
}
