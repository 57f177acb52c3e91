//! The route rules in effect, compiled into a `RouteMatcher` that is rebuilt
//! whenever the rules change (here, or on another replica), never scanned per
//! request.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::matcher::{RouteMatcher, RouteRule, rule_key};
use super::template::{validate_host, validate_method, validate_template};
use crate::domain::audit::{self, Change};
use crate::domain::error::{Error, Result};
use crate::domain::model::{RuleRecord, new_id};
use crate::domain::permissions::Permission;
use crate::ports::{Clock, Store, StoreError};

pub const RULE_ID_PREFIX: &str = "rule";

static NEXT_TABLE_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// (table id, version, matcher): a hit reads only thread-local memory.
    static CURRENT: RefCell<Option<(u64, u64, Arc<RouteMatcher>)>> = const { RefCell::new(None) };
}

/// What a request needs, by the rule that covers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Required {
    Permission(String),
    /// The covering rule is broken (it did not compile): denied.
    Broken {
        rule_id: String,
    },
}

pub struct RouteTable {
    id: u64,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    matcher: RwLock<Arc<RouteMatcher>>,
    version: AtomicU64,
    broken: RwLock<Vec<String>>,
}

fn to_rule(r: &RuleRecord) -> RouteRule {
    RouteRule {
        id: r.id.clone(),
        host: r.host.clone(),
        method: r.method.clone(),
        path: r.path.clone(),
        permission: r.permission.clone(),
        case_insensitive: r.case_insensitive,
    }
}

impl RouteTable {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            id: NEXT_TABLE_ID.fetch_add(1, Ordering::Relaxed),
            store,
            clock,
            matcher: RwLock::new(Arc::new(RouteMatcher::empty())),
            version: AtomicU64::new(0),
            broken: RwLock::new(Vec::new()),
        }
    }

    /// The permission the most specific rule for this request needs, if any.
    /// Reads the matcher through this thread's copy: no shared reference count
    /// is touched per request.
    pub fn permission_for(&self, host: Option<&str>, method: &str, path: &str) -> Option<Required> {
        let version = self.version.load(Ordering::Acquire);
        CURRENT.with_borrow_mut(|current| {
            let fresh =
                matches!(current.as_ref(), Some((id, v, _)) if *id == self.id && *v == version);
            if !fresh {
                let m = self
                    .matcher
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                *current = Some((self.id, version, m));
            }
            current
                .as_ref()
                .and_then(|(_, _, m)| m.find(host, method, path))
                .map(|found| {
                    if found.broken {
                        Required::Broken {
                            rule_id: found.rule_id.to_owned(),
                        }
                    } else {
                        Required::Permission(found.permission.to_owned())
                    }
                })
        })
    }

    /// Rebuilds the matcher from the store. A stored set that does not
    /// compile never stops the service: each rule that does not is refused
    /// (reported here, and by [`RouteTable::broken`]) and the requests it
    /// covers are denied; only a store failure is an error.
    pub async fn reload(&self) -> std::result::Result<(), StoreError> {
        let rules = self.store.all_rules().await?;
        let compiled: Vec<RouteRule> = rules.iter().map(to_rule).collect();
        let (matcher, errors) = RouteMatcher::lenient(&compiled);
        for e in &errors {
            tracing::error!(error = %e, "a stored route rule does not compile; the requests it covers are denied until it is deleted");
        }
        *self.broken.write().unwrap_or_else(PoisonError::into_inner) =
            errors.iter().map(ToString::to_string).collect();
        *self.matcher.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(matcher);
        self.version.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Why each stored rule that does not compile was refused, as of the
    /// last reload.
    pub fn broken(&self) -> Vec<String> {
        self.broken
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub async fn create(
        &self,
        host: &str,
        method: &str,
        path: &str,
        permission: &str,
        case_insensitive: bool,
    ) -> Result<RuleRecord> {
        let host = validate_host(host).map_err(|e| Error::invalid("host", e.to_string()))?;
        let method =
            validate_method(method).map_err(|e| Error::invalid("method", e.to_string()))?;
        validate_template(path).map_err(|e| Error::invalid("path", e.to_string()))?;
        Permission::parse(permission).map_err(|e| Error::invalid("permission", e.to_string()))?;
        let rule = RuleRecord {
            id: new_id(RULE_ID_PREFIX),
            host,
            method,
            path: path.to_owned(),
            permission: permission.to_owned(),
            created_at: self.clock.now(),
            case_insensitive,
        };
        rule_key(
            rule.host.as_deref(),
            &rule.method,
            &rule.path,
            rule.case_insensitive,
        )
        .map_err(|e| Error::invalid("path", e.to_string()))?;
        // One transaction, under the store's unique constraint on the
        // rule's key: of two concurrent creations of the same route, one
        // fails here. Nothing else can make a set of valid rules ambiguous.
        audit::record(
            rule.created_at,
            Change::new("route.created", "route", &rule.id).summary(serde_json::json!({
                "host": rule.host,
                "method": rule.method,
                "path": rule.path,
                "permission": rule.permission,
                "case_insensitive": rule.case_insensitive,
            })),
        );
        match self.store.insert_rule(&rule).await {
            Ok(()) => {}
            Err(StoreError::AlreadyExists | StoreError::Conflict) => {
                return Err(Error::FailedPrecondition(format!(
                    "a rule for {} {} on {} exists already; delete it first",
                    rule.method,
                    rule.path,
                    rule.host.as_deref().unwrap_or("any host")
                )));
            }
            Err(e) => return Err(e.into()),
        }
        self.reload().await?;
        Ok(rule)
    }

    pub async fn list(&self, after: Option<&str>, limit: u64) -> Result<Vec<RuleRecord>> {
        Ok(self.store.list_rules(after, limit).await?)
    }

    pub async fn delete(&self, id: &str) -> Result<()> {
        audit::record(self.clock.now(), Change::new("route.deleted", "route", id));
        if !self.store.delete_rule(id).await? {
            return Err(Error::not_found("rule", id));
        }
        self.reload().await?;
        Ok(())
    }
}
