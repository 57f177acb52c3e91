//! The audit context of one management call, and the events it has staged:
//! the port through which the domain hands the store the audit events of
//! the change it is about to write.
//!
//! A mutation's audit event must commit or roll back with the change, so it
//! is written by the store inside the mutation's own transaction. Rather than
//! thread an event through every store method, the call runs inside a
//! [`scope`] (the gRPC server opens one per call; background jobs open one as
//! `SYSTEM_ACTOR`): the domain [`record`]s the event just before it calls
//! the store, and the store's commit takes every staged event into the same
//! transaction (`store::SqlStore::commit`). A commit that fails puts them
//! back, so a retry carries them; a call that ends without a commit drops
//! them with its scope. Outside any scope `record` stages nothing (one-shot
//! CLI commands), which is logged.

use std::sync::{Arc, Mutex, PoisonError};

use crate::domain::model::{AuditEvent, Millis, OutboxEvent, SYSTEM_ACTOR, is_webhook_event_type};

/// Who is calling, from where: filled in once the admin token is decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The admin token's key id; `None` until authorized.
    pub actor: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub correlation_id: Option<String>,
}

impl Caller {
    pub fn system() -> Self {
        Self {
            actor: Some(SYSTEM_ACTOR.to_owned()),
            correlation_id: Some(uuid::Uuid::new_v4().simple().to_string()),
            ..Self::default()
        }
    }
}

#[derive(Debug, Default)]
struct State {
    caller: Caller,
    staged: Vec<AuditEvent>,
    /// Webhook events, written to the outbox by the same commit.
    outbox: Vec<OutboxEvent>,
}

tokio::task_local! {
    static CURRENT: Arc<Mutex<State>>;
}

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> Option<R> {
    CURRENT
        .try_with(|state| {
            // A poisoned lock means a panic mid-update of a Vec push; the
            // state is still whole.
            let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut state)
        })
        .ok()
}

/// Runs `fut` with an audit context for `caller`.
pub async fn scope<F: Future>(caller: Caller, fut: F) -> F::Output {
    let state = Arc::new(Mutex::new(State {
        caller,
        staged: Vec::new(),
        outbox: Vec::new(),
    }));
    CURRENT.scope(state, fut).await
}

/// Runs `fut` in the current audit scope, or, outside any (background jobs,
/// one-shot CLI commands), in a new one as the `system` actor.
pub async fn scope_or_system<F: Future>(fut: F) -> F::Output {
    if CURRENT.try_with(|_| ()).is_ok() {
        fut.await
    } else {
        scope(Caller::system(), fut).await
    }
}

/// Sets who is calling (the gRPC admin check does, once the token passed).
pub fn set_caller(caller: Caller) {
    with_state(|s| s.caller = caller);
}

/// The current caller, if inside a scope.
pub fn caller() -> Option<Caller> {
    with_state(|s| s.caller.clone())
}

/// What changed, for [`record`].
#[derive(Debug, Clone)]
pub struct Change {
    pub action: &'static str,
    pub target_type: &'static str,
    pub target_id: Option<String>,
    pub account_id: Option<String>,
    pub mode: Option<String>,
    /// A JSON object of identifiers and public fields; never a secret.
    pub summary: serde_json::Value,
}

impl Change {
    pub fn new(action: &'static str, target_type: &'static str, target_id: &str) -> Self {
        Self {
            action,
            target_type,
            target_id: Some(target_id.to_owned()),
            account_id: None,
            mode: None,
            summary: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    pub fn account(mut self, account_id: &str) -> Self {
        self.account_id = Some(account_id.to_owned());
        self
    }

    pub fn mode(mut self, mode: &str) -> Self {
        self.mode = Some(mode.to_owned());
        self
    }

    pub fn summary(mut self, summary: serde_json::Value) -> Self {
        self.summary = summary;
        self
    }
}

/// Stages the audit event of the change about to be written: the store's
/// next commit in this scope writes it in the same transaction.
pub fn record(now: Millis, change: Change) {
    let staged = with_state(|s| {
        let actor = s.caller.actor.as_deref().unwrap_or(SYSTEM_ACTOR);
        let mut event = AuditEvent::new(now, actor, change.action, change.target_type);
        event.target_id = change.target_id.clone();
        event.account_id = change.account_id.clone();
        event.mode = change.mode.clone();
        event.summary = change.summary.to_string();
        event.client_ip = s.caller.client_ip.clone();
        event.user_agent = s.caller.user_agent.clone();
        event.correlation_id = s.caller.correlation_id.clone();
        // A change subscribers care about is announced through the outbox,
        // in the same transaction (its `data` is the audit summary: public
        // fields only, plus the target's id).
        if is_webhook_event_type(change.action) {
            let mut data = change.summary.clone();
            if let (Some(map), Some(id)) = (data.as_object_mut(), &change.target_id) {
                map.insert("id".to_owned(), serde_json::Value::String(id.clone()));
                map.insert(
                    "object".to_owned(),
                    serde_json::Value::String(change.target_type.to_owned()),
                );
            }
            s.outbox.push(OutboxEvent::new(
                now,
                change.action,
                change.account_id.as_deref(),
                change.mode.as_deref(),
                data,
            ));
        }
        s.staged.push(event);
    });
    if staged.is_none() {
        tracing::debug!(
            action = change.action,
            "a change outside an audit scope is not audited"
        );
    }
}

/// Stages a webhook event for the outbox: the store's next commit in this
/// scope writes it in the same transaction as the change. Outside a scope,
/// nothing is staged (use `WebhookStore::enqueue` for standalone events).
pub fn emit(event: OutboxEvent) -> bool {
    with_state(|s| s.outbox.push(event)).is_some()
}

/// What a commit writes beside the change.
#[derive(Debug, Default)]
pub struct Staged {
    pub audit: Vec<AuditEvent>,
    pub outbox: Vec<OutboxEvent>,
}

impl Staged {
    pub fn is_empty(&self) -> bool {
        self.audit.is_empty() && self.outbox.is_empty()
    }
}

/// Takes every staged event (the store, at commit).
pub fn take_all() -> Staged {
    with_state(|s| Staged {
        audit: std::mem::take(&mut s.staged),
        outbox: std::mem::take(&mut s.outbox),
    })
    .unwrap_or_default()
}

/// Takes every staged audit event.
pub fn take_staged() -> Vec<AuditEvent> {
    with_state(|s| std::mem::take(&mut s.staged)).unwrap_or_default()
}

/// Puts back events whose commit failed, ahead of any staged since.
pub fn restore_all(mut staged: Staged) {
    if staged.is_empty() {
        return;
    }
    with_state(move |s| {
        staged.audit.append(&mut s.staged);
        s.staged = staged.audit;
        staged.outbox.append(&mut s.outbox);
        s.outbox = staged.outbox;
    });
}

/// Puts back audit events whose commit failed.
pub fn restore(events: Vec<AuditEvent>) {
    restore_all(Staged {
        audit: events,
        outbox: Vec::new(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn staged_events_carry_the_caller_and_are_taken_once() {
        let caller = Caller {
            actor: Some("key_1".into()),
            client_ip: Some("10.0.0.1".into()),
            user_agent: Some("grpcurl".into()),
            correlation_id: Some("c1".into()),
        };
        scope(caller, async {
            record(
                5,
                Change::new("key.revoked", "key", "key_a").account("acct_1"),
            );
            let events = take_staged();
            assert_eq!(events.len(), 1);
            assert_eq!(events[0].actor, "key_1");
            assert_eq!(events[0].client_ip.as_deref(), Some("10.0.0.1"));
            assert_eq!(events[0].account_id.as_deref(), Some("acct_1"));
            assert!(take_staged().is_empty());
            restore(events);
            assert_eq!(take_staged().len(), 1);
        })
        .await;
    }

    #[tokio::test]
    async fn outside_a_scope_nothing_is_staged() {
        record(5, Change::new("key.revoked", "key", "key_a"));
        assert!(take_staged().is_empty());
    }
}
