//! The least-privilege advisor: from usage analytics, what a key was granted,
//! what it actually exercised in the last N days (`usage.advice_window_days`,
//! default 30), and the narrowest scope list covering that. A resource
//! collapses to `resource.*` only where the key used every action of the
//! resource that is known (seen in any key's usage in the window or named by
//! the key's own scopes), at least two of them, and where the key's scopes
//! already grant the whole resource: advice never widens a key. Keys younger
//! than the window get no advice (their usage says too little).
//!
//! `scan_unused` sends `scope.unused` once per key that has held a write or
//! admin scope it never used for the whole window.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::error::{Error, Result};
use super::model::{KeyRecord, KeyStatus, Millis};
use super::permissions::{Permission, Policy, Scope};
use super::resolver::key_scopes;
use crate::ports::{Clock, KeyFilter, OutcomeEvents, PublishedEvent, Store, UsageStore};

const DAY_MS: Millis = 86_400_000;
/// Keys read per page while scanning for unused scopes.
const SCAN_PAGE: u64 = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advice {
    pub granted: Vec<String>,
    /// Permissions allowed in the window, sorted.
    pub exercised: Vec<String>,
    /// The narrowest scopes covering `exercised`; apply with one `UpdateKey`.
    pub suggested: Vec<String>,
    /// Since when the granted scopes not in use have been unused; `None`
    /// when every granted scope was used in the window.
    pub unused_since: Option<Millis>,
    /// Granted scopes none of whose permissions was exercised.
    pub unused: Vec<String>,
}

pub struct Advisor {
    pub keys: Arc<dyn Store>,
    pub usage: Arc<dyn UsageStore>,
    pub events: Arc<dyn OutcomeEvents>,
    pub policy: Arc<Policy>,
    pub clock: Arc<dyn Clock>,
    pub window_days: i64,
}

/// Everything but the last segment: `feedback` of `feedback.read`.
fn resource(permission: &str) -> &str {
    permission.rsplit_once('.').map_or(permission, |(r, _)| r)
}

fn grants(scope: &str, permission: &str) -> bool {
    match (Scope::parse(scope), Permission::parse(permission)) {
        (Ok(s), Ok(p)) => s.grants(&p),
        _ => false,
    }
}

/// Does `scope` grant every permission of `resource` (`*`, `feedback.*`, `admin.*` of `admin.keys`)?
fn grants_resource(scope: &str, resource: &str) -> bool {
    scope == "*"
        || scope.strip_suffix('*').is_some_and(|prefix| {
            prefix.ends_with('.') && format!("{resource}.").starts_with(prefix)
        })
}

/// A scope that can change something: not a read.
fn is_write_or_admin(scope: &str) -> bool {
    let last = scope.rsplit('.').next().unwrap_or(scope);
    scope.starts_with("admin.") || !matches!(last, "read" | "list" | "get")
}

/// The advice, from what the key holds and its usage (pure, for tests).
pub fn advise(
    granted: &[String],
    used: &[(String, Millis)],
    known: &BTreeSet<String>,
    since: Millis,
    created_at: Millis,
) -> Advice {
    let exercised: BTreeSet<String> = used
        .iter()
        .filter(|(_, last)| *last >= since)
        .map(|(p, _)| p.clone())
        .collect();
    let mut by_resource: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for p in &exercised {
        by_resource.entry(resource(p)).or_default().push(p);
    }
    let mut suggested = BTreeSet::new();
    for (res, perms) in &by_resource {
        let actions: BTreeSet<&str> = known
            .iter()
            .map(String::as_str)
            .chain(
                granted
                    .iter()
                    .map(String::as_str)
                    .filter(|s| !s.contains('*')),
            )
            .filter(|p| resource(p) == *res && p.len() > res.len())
            .collect();
        let all_used = actions.len() >= 2 && actions.iter().all(|a| exercised.contains(*a));
        if all_used && granted.iter().any(|g| grants_resource(g, res)) {
            suggested.insert(format!("{res}.*"));
        } else {
            suggested.extend(perms.iter().map(|p| (*p).to_owned()));
        }
    }
    let unused: Vec<String> = granted
        .iter()
        .filter(|g| !exercised.iter().any(|p| grants(g, p)))
        .cloned()
        .collect();
    let unused_since = (!unused.is_empty()).then(|| {
        used.iter()
            .filter(|(p, _)| unused.iter().any(|g| grants(g, p)))
            .map(|(_, last)| *last)
            .fold(created_at, Millis::max)
    });
    Advice {
        granted: granted.to_vec(),
        exercised: exercised.into_iter().collect(),
        suggested: suggested.into_iter().collect(),
        unused_since,
        unused,
    }
}

impl Advisor {
    fn window(&self) -> Millis {
        self.window_days * DAY_MS
    }

    pub async fn advise(&self, key_id: &str) -> Result<Advice> {
        let key = self
            .keys
            .get_key(key_id)
            .await?
            .ok_or_else(|| Error::not_found("key", key_id))?;
        let now = self.clock.now();
        if now - key.created_at < self.window() {
            return Err(Error::FailedPrecondition(format!(
                "key `{key_id}` is younger than {} days: its usage is too short to advise on",
                self.window_days
            )));
        }
        self.advice_for(&key, now).await
    }

    async fn advice_for(&self, key: &KeyRecord, now: Millis) -> Result<Advice> {
        let granted = key_scopes(key, &self.policy)?.strings();
        let since = now - self.window();
        let used = self.usage.exercised(&key.id).await?;
        let known: BTreeSet<String> = self
            .usage
            .permissions_seen(since)
            .await?
            .into_iter()
            .collect();
        Ok(advise(&granted, &used, &known, since, key.created_at))
    }

    /// Sends `scope.unused` for every active key, older than the window,
    /// that holds a write or admin scope it has not used in the window;
    /// once per key. How many were sent.
    pub async fn scan_unused(&self) -> Result<usize> {
        let filter = KeyFilter {
            status: Some(KeyStatus::Active),
            ..KeyFilter::default()
        };
        let mut after: Option<String> = None;
        let mut sent = 0;
        loop {
            let now = self.clock.now();
            let page = self
                .keys
                .list_keys(&filter, now, after.as_deref(), SCAN_PAGE)
                .await?;
            for key in &page {
                if now - key.created_at < self.window() {
                    continue;
                }
                let advice = self.advice_for(key, now).await?;
                let idle: Vec<&String> = advice
                    .unused
                    .iter()
                    .filter(|s| is_write_or_admin(s))
                    .collect();
                if idle.is_empty() || !self.usage.mark_scope_unused(&key.id, now).await? {
                    continue;
                }
                let event = PublishedEvent {
                    event_type: "scope.unused",
                    time: now,
                    account_id: Some(key.account_id.clone()),
                    mode: Some(key.mode),
                    target_type: "key",
                    target_id: Some(key.id.clone()),
                    data: serde_json::json!({
                        "key_id": key.id,
                        "unused_scopes": idle,
                        "exercised": advice.exercised,
                        "suggested": advice.suggested,
                        "window_days": self.window_days,
                    }),
                };
                self.events.publish(&[event]).await?;
                sent += 1;
            }
            if (page.len() as u64) < SCAN_PAGE {
                return Ok(sent);
            }
            after = page.last().map(|k| k.id.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(items: &[&str]) -> Vec<String> {
        items.iter().map(|i| (*i).to_owned()).collect()
    }

    #[test]
    fn collapses_only_a_fully_used_resource_the_key_holds_whole() {
        let known: BTreeSet<String> = s(&[
            "feedback.read",
            "feedback.write",
            "orders.read",
            "orders.write",
        ])
        .into_iter()
        .collect();
        let used = vec![
            ("feedback.read".to_owned(), 100),
            ("feedback.write".to_owned(), 100),
            ("orders.read".to_owned(), 100),
        ];
        let a = advise(&s(&["*"]), &used, &known, 0, 0);
        assert_eq!(a.suggested, s(&["feedback.*", "orders.read"]));
        assert_eq!(a.unused_since, None);
        // Narrow grants are never widened to a wildcard.
        let a = advise(
            &s(&["feedback.read", "feedback.write"]),
            &used[..2],
            &known,
            0,
            0,
        );
        assert_eq!(a.suggested, s(&["feedback.read", "feedback.write"]));
    }

    #[test]
    fn unused_scopes_and_since_when() {
        let known = BTreeSet::new();
        // orders.write was last used at 50, before the window (since = 80).
        let used = vec![
            ("feedback.read".to_owned(), 100),
            ("orders.write".to_owned(), 50),
        ];
        let a = advise(
            &s(&["feedback.read", "orders.write"]),
            &used,
            &known,
            80,
            10,
        );
        assert_eq!(a.exercised, s(&["feedback.read"]));
        assert_eq!(a.suggested, s(&["feedback.read"]));
        assert_eq!(a.unused, s(&["orders.write"]));
        assert_eq!(a.unused_since, Some(50));
        assert!(is_write_or_admin("orders.write") && is_write_or_admin("orders.*"));
        assert!(!is_write_or_admin("orders.read"));
    }
}
