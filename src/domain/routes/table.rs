//! The route rules in effect, compiled into a `RouteMatcher` that is rebuilt
//! whenever the rules change (here, or on another replica), never scanned per
//! request.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::RouteError;
use super::matcher::{RouteMatcher, RouteRule};
use super::template::{validate_host, validate_method, validate_template};
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

pub struct RouteTable {
    id: u64,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    matcher: RwLock<Arc<RouteMatcher>>,
    version: AtomicU64,
}

fn to_rule(r: &RuleRecord) -> RouteRule {
    RouteRule {
        id: r.id.clone(),
        host: r.host.clone(),
        method: r.method.clone(),
        path: r.path.clone(),
        permission: r.permission.clone(),
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
        }
    }

    /// The permission the most specific rule for this request needs, if any.
    /// Reads the matcher through this thread's copy: no shared reference count
    /// is touched per request.
    pub fn permission_for(&self, host: Option<&str>, method: &str, path: &str) -> Option<String> {
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
                .map(|found| found.permission.to_owned())
        })
    }

    /// Rebuilds the matcher from the store.
    pub async fn reload(&self) -> std::result::Result<(), StoreError> {
        let rules = self.store.all_rules().await?;
        let compiled: Vec<RouteRule> = rules.iter().map(to_rule).collect();
        let matcher = RouteMatcher::new(&compiled)
            .map_err(|e| StoreError::Internal(format!("stored route rules do not compile: {e}")))?;
        *self.matcher.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(matcher);
        self.version.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    pub async fn create(
        &self,
        host: &str,
        method: &str,
        path: &str,
        permission: &str,
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
        };
        // Refuse a rule that would make the set ambiguous before writing it.
        let mut all: Vec<RouteRule> = self.store.all_rules().await?.iter().map(to_rule).collect();
        all.push(to_rule(&rule));
        if let Err(e) = RouteMatcher::new(&all) {
            return Err(match e {
                RouteError::Duplicate { .. } => Error::FailedPrecondition(e.to_string()),
                other => Error::invalid("path", other.to_string()),
            });
        }
        self.store.insert_rule(&rule).await?;
        self.reload().await?;
        Ok(rule)
    }

    pub async fn list(&self, after: Option<&str>, limit: u64) -> Result<Vec<RuleRecord>> {
        Ok(self.store.list_rules(after, limit).await?)
    }

    pub async fn delete(&self, id: &str) -> Result<()> {
        if !self.store.delete_rule(id).await? {
            return Err(Error::not_found("rule", id));
        }
        self.reload().await?;
        Ok(())
    }
}
