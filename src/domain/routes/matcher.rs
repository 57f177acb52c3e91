//! The compiled rules: one segment tree per host plus one for any host.

use std::borrow::Cow;
use std::collections::HashMap;

use super::RouteError;
use super::template::{Template, TemplateSegment, parse_template, validate_host, validate_method};
use crate::domain::model::match_key;
use crate::domain::permissions::Permission;

/// One configured rule: requests to `host` (or any host), `method` (or `*`)
/// and a path matching `path` need `permission`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    pub id: String,
    pub host: Option<String>,
    pub method: String,
    pub path: String,
    pub permission: String,
    /// Literal segments match in any ASCII case.
    pub case_insensitive: bool,
}

/// The rule a request matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch<'a> {
    pub rule_id: &'a str,
    pub permission: &'a str,
    /// The rule did not compile (see [`RouteMatcher::lenient`]): its routes
    /// are denied, never passed on to a less specific rule.
    pub broken: bool,
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
    /// Literals of case-insensitive rules, in ASCII lower case.
    literals_ci: HashMap<Box<str>, Node>,
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
                if self.literals_ci.is_empty() {
                    return None;
                }
                self.literals_ci
                    .get(segment.to_ascii_lowercase().as_str())
                    .and_then(|child| child.find(after, method))
            })
            .or_else(|| {
                self.param
                    .as_ref()
                    .and_then(|child| child.find(after, method))
            })
            .or_else(|| self.rest.pick(method))
    }

    fn slot(&mut self, template: &Template, case_insensitive: bool) -> &mut Methods {
        let mut node = self;
        for segment in &template.segments {
            node = match segment {
                TemplateSegment::Literal(text) if case_insensitive => node
                    .literals_ci
                    .entry(text.to_ascii_lowercase().into())
                    .or_default(),
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
    broken: bool,
}

/// Compiled route rules; see the module docs for how a match is chosen.
#[derive(Debug, Clone, Default)]
pub struct RouteMatcher {
    rules: Vec<CompiledRule>,
    by_host: HashMap<String, Node>,
    any_host: Node,
}

impl RouteMatcher {
    /// Compiles `rules`; the first that does not compile fails the set.
    pub fn new(rules: &[RouteRule]) -> Result<Self, RouteError> {
        let (matcher, mut errors) = Self::lenient(rules);
        match errors.drain(..).next() {
            Some(e) => Err(e),
            None => Ok(matcher),
        }
    }

    /// Compiles what compiles, and says what did not. A rule whose
    /// permission is invalid, and both rules of a duplicate pair, stay in
    /// the tree as *broken*: a request they cover is denied rather than
    /// falling through to a less specific rule. A rule whose template,
    /// method or host is invalid covers no knowable request and is left out.
    pub fn lenient(rules: &[RouteRule]) -> (Self, Vec<RouteError>) {
        let mut matcher = Self::empty();
        let mut errors = Vec::new();
        for rule in rules {
            let parsed = parse_template(&rule.path).and_then(|t| {
                let method = validate_method(&rule.method)?;
                let host = match rule.host.as_deref() {
                    Some(host) => validate_host(host)?,
                    None => None,
                };
                Ok((t, method, host))
            });
            let (template, method, host) = match parsed {
                Ok(p) => p,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let mut broken = false;
            if let Err(error) = Permission::parse(&rule.permission) {
                errors.push(RouteError::Permission {
                    rule: rule.id.clone(),
                    error,
                });
                broken = true;
            }
            let index = matcher.rules.len();
            let trie = match host {
                Some(host) => matcher.by_host.entry(host).or_default(),
                None => &mut matcher.any_host,
            };
            match trie
                .slot(&template, rule.case_insensitive)
                .insert(&method, index)
            {
                Ok(()) => matcher.rules.push(CompiledRule {
                    id: rule.id.as_str().into(),
                    permission: rule.permission.as_str().into(),
                    broken,
                }),
                Err(first) => {
                    if let Some(first) = matcher.rules.get_mut(first) {
                        first.broken = true;
                        errors.push(RouteError::Duplicate {
                            first: first.id.to_string(),
                            second: rule.id.clone(),
                        });
                    }
                }
            }
        }
        (matcher, errors)
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
            broken: rule.broken,
        })
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Validates a rule's parts and returns its [`match_key`]: what makes two
/// rules the same route.
pub fn rule_key(
    host: Option<&str>,
    method: &str,
    path: &str,
    case_insensitive: bool,
) -> Result<String, RouteError> {
    parse_template(path)?;
    let method = validate_method(method)?;
    let host = match host {
        Some(h) => validate_host(h)?,
        None => None,
    };
    Ok(match_key(host.as_deref(), &method, path, case_insensitive))
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
