//! Permissions (`resource.action`), wildcard scopes, roles and plans.
//!
//! A pattern is dot-separated segments; `*` as the last segment matches one or
//! more remaining segments (`feedback.*`, `*`), `*` elsewhere matches exactly one
//! (`*.read`). What a key may do is its scopes ∩ its account's plan.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

const MAX_SEGMENTS: usize = 8;
const MAX_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermissionError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {MAX_LEN} characters")]
    TooLong,
    #[error("has more than {MAX_SEGMENTS} segments")]
    TooManySegments,
    #[error(
        "`{0}` is not `resource.action`: segments are lower-case letters, digits, `_` or `-`, separated by dots"
    )]
    Syntax(String),
    #[error("`{0}` needs at least two segments (`resource.action`)")]
    TooShort(String),
    #[error("`{0}` contains a wildcard; a required permission must be concrete")]
    Wildcard(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Segment {
    Literal(Box<str>),
    Star,
}

/// A scope: a permission pattern with optional wildcards.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    text: Box<str>,
    segments: Box<[Segment]>,
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn check_length(s: &str) -> Result<(), PermissionError> {
    if s.is_empty() {
        return Err(PermissionError::Empty);
    }
    if s.len() > MAX_LEN {
        return Err(PermissionError::TooLong);
    }
    if s.split('.').count() > MAX_SEGMENTS {
        return Err(PermissionError::TooManySegments);
    }
    Ok(())
}

impl Scope {
    pub fn parse(s: &str) -> Result<Self, PermissionError> {
        check_length(s)?;
        let segments = s
            .split('.')
            .map(|seg| match seg {
                "*" => Ok(Segment::Star),
                lit if valid_segment(lit) => Ok(Segment::Literal(lit.into())),
                _ => Err(PermissionError::Syntax(s.to_owned())),
            })
            .collect::<Result<Box<[_]>, _>>()?;
        // A single literal segment is meaningless as a scope (`feedback`): it
        // would never match any `resource.action`.
        if segments.len() == 1 && segments[0] != Segment::Star {
            return Err(PermissionError::TooShort(s.to_owned()));
        }
        Ok(Self {
            text: s.into(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Does this scope grant `permission`?
    pub fn grants(&self, permission: &Permission<'_>) -> bool {
        let mut wanted = permission.as_str().split('.');
        let last = self.segments.len() - 1;
        for (i, seg) in self.segments.iter().enumerate() {
            let Some(part) = wanted.next() else {
                return false;
            };
            match seg {
                Segment::Star if i == last => return true,
                Segment::Star => {}
                Segment::Literal(lit) if **lit == *part => {}
                Segment::Literal(_) => return false,
            }
        }
        wanted.next().is_none()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A concrete permission a call requires, e.g. `feedback.read`. Borrows the
/// text it was parsed from: Check parses one per request, and it should cost
/// no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Permission<'a>(&'a str);

impl<'a> Permission<'a> {
    pub fn parse(s: &'a str) -> Result<Self, PermissionError> {
        check_length(s)?;
        if s.split('.').any(|seg| seg == "*") {
            return Err(PermissionError::Wildcard(s.to_owned()));
        }
        if !s.split('.').all(valid_segment) {
            return Err(PermissionError::Syntax(s.to_owned()));
        }
        if !s.contains('.') {
            return Err(PermissionError::TooShort(s.to_owned()));
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &'a str {
        self.0
    }

    /// Management permissions, granted only to the operator account's keys.
    pub fn is_admin(&self) -> bool {
        self.0.starts_with("admin.")
    }
}

impl fmt::Display for Permission<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A set of scopes; grants a permission if any member does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet(Vec<Scope>);

impl ScopeSet {
    pub fn new(scopes: Vec<Scope>) -> Self {
        Self(scopes)
    }

    pub fn parse_all<S: AsRef<str>>(items: &[S]) -> Result<Self, PermissionError> {
        items
            .iter()
            .map(|s| Scope::parse(s.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn grants(&self, permission: &Permission<'_>) -> bool {
        self.0.iter().any(|s| s.grants(permission))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn strings(&self) -> Vec<String> {
        self.0.iter().map(|s| s.as_str().to_owned()).collect()
    }
}

/// A plan as configured: `extends` names its parent (permissions are
/// inherited, rate limits are not).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlanDef {
    pub name: String,
    #[serde(default)]
    pub extends: Option<String>,
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Live mode, e.g. `1200/min` (also `/s`, `/h`, `/day`, or
    /// `unlimited`); unset = `rate_limits.default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<String>,
    /// Test mode; unset = unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_rate_limit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("plan `{plan}`: permission {error}")]
    PlanPermission {
        plan: String,
        error: PermissionError,
    },
    #[error("plan `{0}` is defined twice")]
    DuplicatePlan(String),
    #[error("plan `{plan}` extends unknown plan `{parent}`")]
    UnknownParent { plan: String, parent: String },
    #[error("plan `{0}` extends itself, directly or through others")]
    Cycle(String),
    #[error("plan names must be 1..=64 characters of letters, digits, `_` or `-`: `{0}`")]
    PlanName(String),
    #[error("role `{role}`: permission {error}")]
    RolePermission {
        role: String,
        error: PermissionError,
    },
    #[error("role names must be 1..=64 characters of lower-case letters, digits or `_`: `{0}`")]
    RoleName(String),
    #[error("no plans are configured")]
    NoPlans,
}

/// The default plan set: the five BEEP! packages, each extending the last.
pub fn default_plans() -> Vec<PlanDef> {
    // Live limits grow with the package; test mode is unlimited (BEEP!).
    let plan = |name: &str, extends: Option<&str>, permissions: &[&str], rate: &str| PlanDef {
        name: name.to_owned(),
        extends: extends.map(str::to_owned),
        permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        rate_limit: Some(rate.to_owned()),
        test_rate_limit: None,
    };
    vec![
        plan(
            "DISCOVER",
            None,
            &["stores.*", "products.*", "catalog.*"],
            "300/min",
        ),
        plan("ASSIST", Some("DISCOVER"), &["chat.*"], "600/min"),
        plan(
            "GO",
            Some("ASSIST"),
            &["offers.*", "click_collect.*"],
            "1200/min",
        ),
        plan(
            "GROW",
            Some("GO"),
            &["scan_go.*", "checkout.*", "sync.*"],
            "3000/min",
        ),
        plan("PRIME", Some("GROW"), &["*"], "6000/min"),
    ]
}

/// The default roles.
pub fn default_roles() -> BTreeMap<String, Vec<String>> {
    BTreeMap::from([
        ("read_only".to_owned(), vec!["*.read".to_owned()]),
        ("full_access".to_owned(), vec!["*".to_owned()]),
    ])
}

/// Plans (inheritance resolved) and roles: everything `decide` needs to know
/// about entitlements. Built once from configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    plans: HashMap<String, Arc<ScopeSet>>,
    plan_names: Vec<String>,
    roles: HashMap<String, Arc<ScopeSet>>,
    operator: Arc<ScopeSet>,
}

impl Policy {
    pub fn new(
        plans: &[PlanDef],
        roles: &BTreeMap<String, Vec<String>>,
    ) -> Result<Self, PolicyError> {
        if plans.is_empty() {
            return Err(PolicyError::NoPlans);
        }
        let mut defs: HashMap<&str, &PlanDef> = HashMap::new();
        for p in plans {
            if p.name.is_empty()
                || p.name.len() > 64
                || !p
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(PolicyError::PlanName(p.name.clone()));
            }
            if defs.insert(&p.name, p).is_some() {
                return Err(PolicyError::DuplicatePlan(p.name.clone()));
            }
        }
        let mut resolved = HashMap::new();
        for p in plans {
            let mut scopes = Vec::new();
            let mut seen = Vec::new();
            let mut cur = Some(p);
            while let Some(def) = cur {
                if seen.contains(&def.name.as_str()) {
                    return Err(PolicyError::Cycle(p.name.clone()));
                }
                seen.push(def.name.as_str());
                for perm in &def.permissions {
                    scopes.push(Scope::parse(perm).map_err(|error| {
                        PolicyError::PlanPermission {
                            plan: def.name.clone(),
                            error,
                        }
                    })?);
                }
                cur = match &def.extends {
                    None => None,
                    Some(parent) => Some(*defs.get(parent.as_str()).ok_or_else(|| {
                        PolicyError::UnknownParent {
                            plan: def.name.clone(),
                            parent: parent.clone(),
                        }
                    })?),
                };
            }
            resolved.insert(p.name.clone(), Arc::new(ScopeSet::new(scopes)));
        }
        let mut role_sets = HashMap::new();
        for (name, perms) in roles {
            if name.is_empty()
                || name.len() > 64
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(PolicyError::RoleName(name.clone()));
            }
            let set = ScopeSet::parse_all(perms).map_err(|error| PolicyError::RolePermission {
                role: name.clone(),
                error,
            })?;
            role_sets.insert(name.clone(), Arc::new(set));
        }
        let operator =
            ScopeSet::parse_all(&["admin.*"]).map_err(|error| PolicyError::PlanPermission {
                plan: "operator".to_owned(),
                error,
            })?;
        Ok(Self {
            plans: resolved,
            plan_names: plans.iter().map(|p| p.name.clone()).collect(),
            roles: role_sets,
            operator: Arc::new(operator),
        })
    }

    pub fn defaults() -> Result<Self, PolicyError> {
        Self::new(&default_plans(), &default_roles())
    }

    pub fn plan(&self, name: &str) -> Option<&Arc<ScopeSet>> {
        self.plans.get(name)
    }

    pub fn plan_names(&self) -> &[String] {
        &self.plan_names
    }

    pub fn role(&self, name: &str) -> Option<&Arc<ScopeSet>> {
        self.roles.get(name)
    }

    pub fn role_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.roles.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// What the operator account's "plan" grants: management, nothing else.
    pub fn operator_entitlements(&self) -> &Arc<ScopeSet> {
        &self.operator
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn perm(s: &str) -> Permission<'_> {
        Permission::parse(s).unwrap()
    }

    fn scope(s: &str) -> Scope {
        Scope::parse(s).unwrap()
    }

    #[test]
    fn wildcards() {
        assert!(scope("*").grants(&perm("feedback.read")));
        assert!(scope("feedback.*").grants(&perm("feedback.read")));
        assert!(scope("feedback.*").grants(&perm("feedback.export.run")));
        assert!(!scope("feedback.*").grants(&perm("webhooks.manage")));
        assert!(!scope("feedback.*").grants(&perm("feedbacks.read")));
        assert!(scope("*.read").grants(&perm("surveys.read")));
        assert!(!scope("*.read").grants(&perm("surveys.write")));
        assert!(!scope("*.read").grants(&perm("surveys.read.all")));
        assert!(scope("feedback.read").grants(&perm("feedback.read")));
        assert!(!scope("feedback.read").grants(&perm("feedback.read.all")));
        assert!(!scope("feedback.read.all").grants(&perm("feedback.read")));
    }

    #[test]
    fn syntax_errors_name_the_rule() {
        assert!(matches!(
            Scope::parse("Not A Scope"),
            Err(PermissionError::Syntax(_))
        ));
        assert!(matches!(
            Scope::parse("feedback"),
            Err(PermissionError::TooShort(_))
        ));
        assert!(matches!(Scope::parse(""), Err(PermissionError::Empty)));
        assert!(matches!(
            Scope::parse("a..b"),
            Err(PermissionError::Syntax(_))
        ));
        assert!(matches!(
            Scope::parse("fee*.read"),
            Err(PermissionError::Syntax(_))
        ));
        assert!(matches!(
            Permission::parse("feedback.*"),
            Err(PermissionError::Wildcard(_))
        ));
        assert!(matches!(
            Permission::parse("a.b.c.d.e.f.g.h.i"),
            Err(PermissionError::TooManySegments)
        ));
    }

    #[test]
    fn default_plans_nest() {
        let policy = Policy::defaults().unwrap();
        let discover = policy.plan("DISCOVER").unwrap();
        let go = policy.plan("GO").unwrap();
        let prime = policy.plan("PRIME").unwrap();
        assert!(discover.grants(&perm("products.read")));
        assert!(!discover.grants(&perm("offers.create")));
        assert!(
            go.grants(&perm("offers.create"))
                && go.grants(&perm("chat.send"))
                && go.grants(&perm("stores.read"))
        );
        assert!(!go.grants(&perm("scan_go.checkin")));
        assert!(prime.grants(&perm("analytics.export")));
        assert!(
            policy
                .role("read_only")
                .unwrap()
                .grants(&perm("feedback.read"))
        );
        assert!(
            !policy
                .role("read_only")
                .unwrap()
                .grants(&perm("feedback.write"))
        );
    }

    #[test]
    fn plan_errors() {
        let p = |name: &str, extends: Option<&str>| PlanDef {
            name: name.into(),
            extends: extends.map(Into::into),
            permissions: vec![],
            ..PlanDef::default()
        };
        let roles = default_roles();
        assert_eq!(
            Policy::new(&[p("A", Some("B")), p("B", Some("A"))], &roles).unwrap_err(),
            PolicyError::Cycle("A".into())
        );
        assert!(matches!(
            Policy::new(&[p("A", Some("Z"))], &roles),
            Err(PolicyError::UnknownParent { .. })
        ));
        assert!(matches!(
            Policy::new(&[p("A", None), p("A", None)], &roles),
            Err(PolicyError::DuplicatePlan(_))
        ));
        assert!(matches!(
            Policy::new(&[], &roles),
            Err(PolicyError::NoPlans)
        ));
    }

    proptest! {
        #[test]
        fn a_permission_is_granted_by_itself_and_its_wildcards(segs in prop::collection::vec("[a-z][a-z0-9_]{0,6}", 2..5)) {
            let text = segs.join(".");
            let p = perm(&text);
            prop_assert!(scope(&segs.join(".")).grants(&p));
            prop_assert!(scope("*").grants(&p));
            let resource_wildcard = format!("{}.*", segs[0]);
            prop_assert!(scope(&resource_wildcard).grants(&p));
            let mut one_star = segs.clone();
            one_star[0] = "*".into();
            prop_assert!(scope(&one_star.join(".")).grants(&p));
        }

        #[test]
        fn a_different_resource_is_never_granted(a in "[a-z]{1,6}", b in "[a-z]{1,6}", action in "[a-z]{1,6}") {
            prop_assume!(a != b);
            let pattern = format!("{a}.*");
            let wanted = format!("{b}.{action}");
            prop_assert!(!scope(&pattern).grants(&perm(&wanted)));
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,40}") {
            let _ = Scope::parse(&s);
            let _ = Permission::parse(&s);
        }
    }
}
