//! Accounts (tenants) and the live-mode activation flow:
//! `not_requested → pending_review → active | rejected` (a rejected account may ask again).

use std::sync::Arc;

use super::audit::{self, Change};
use super::error::{Error, Result};
use super::model::{Account, LiveStatus, new_id};
use super::permissions::Policy;
use super::resolver::KeyResolver;
use crate::ports::{Clock, Store, StoreError};

/// The operator account holds the deployment's admin keys. Its id is fixed so
/// that bootstrapping is idempotent.
pub const OPERATOR_ACCOUNT_ID: &str = "acct_00000000000000000000000000000000";
pub const ACCOUNT_ID_PREFIX: &str = "acct";
pub const MAX_NAME_LEN: usize = 200;

pub struct AccountManager {
    store: Arc<dyn Store>,
    policy: Arc<Policy>,
    clock: Arc<dyn Clock>,
    resolver: Arc<KeyResolver>,
}

/// A display name: 1..=200 characters, no control characters.
pub fn validate_name(field: &'static str, name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_NAME_LEN} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(name.to_owned())
}

/// A store id: 1..=128 of letters, digits, `_`, `-`, `.`.
pub fn validate_store_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 128 {
        return Err(Error::invalid("store_id", "must be 1 to 128 characters"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(Error::invalid(
            "store_id",
            "may hold only letters, digits, `_`, `-` and `.`",
        ));
    }
    Ok(())
}

impl AccountManager {
    pub fn new(
        store: Arc<dyn Store>,
        policy: Arc<Policy>,
        clock: Arc<dyn Clock>,
        resolver: Arc<KeyResolver>,
    ) -> Self {
        Self {
            store,
            policy,
            clock,
            resolver,
        }
    }

    pub async fn create(&self, name: &str, plan: &str) -> Result<Account> {
        let name = validate_name("name", name)?;
        if self.policy.plan(plan).is_none() {
            return Err(Error::invalid(
                "plan",
                format!(
                    "`{plan}` is not a configured plan (one of: {})",
                    self.policy.plan_names().join(", ")
                ),
            ));
        }
        let now = self.clock.now();
        let account = Account {
            id: new_id(ACCOUNT_ID_PREFIX),
            name,
            plan: plan.to_owned(),
            live_status: LiveStatus::NotRequested,
            is_operator: false,
            store_ids: Vec::new(),
            created_at: now,
            updated_at: now,
            version: 1,
        };
        audit::record(now, account_change("account.created", &account));
        self.store.insert_account(&account).await?;
        Ok(account)
    }

    /// A tenant account; the operator account is not addressable here.
    pub async fn get(&self, id: &str) -> Result<Account> {
        match self.store.get_account(id).await? {
            Some(a) if !a.is_operator => Ok(a),
            _ => Err(Error::not_found("account", id)),
        }
    }

    pub async fn list(&self, after: Option<&str>, limit: u64) -> Result<Vec<Account>> {
        Ok(self.store.list_accounts(after, limit).await?)
    }

    /// Gives a store to the account. A store belongs to one account only.
    pub async fn add_store(&self, account_id: &str, store_id: &str) -> Result<Account> {
        validate_store_id(store_id)?;
        let account = self.get(account_id).await?;
        let now = self.clock.now();
        audit::record(
            now,
            Change::new("account.store_added", "account", &account.id)
                .account(&account.id)
                .summary(serde_json::json!({ "store_id": store_id })),
        );
        match self.store.add_store(&account.id, store_id, now).await {
            Ok(()) => {}
            Err(StoreError::AlreadyExists) => {
                return Err(Error::FailedPrecondition(format!(
                    "store `{store_id}` already belongs to an account"
                )));
            }
            Err(e) => return Err(e.into()),
        }
        // Cached keys carry their account's stores.
        self.resolver.invalidate_all();
        self.get(account_id).await
    }

    pub async fn remove_store(&self, account_id: &str, store_id: &str) -> Result<Account> {
        validate_store_id(store_id)?;
        let account = self.get(account_id).await?;
        audit::record(
            self.clock.now(),
            Change::new("account.store_removed", "account", &account.id)
                .account(&account.id)
                .summary(serde_json::json!({ "store_id": store_id })),
        );
        if !self.store.remove_store(&account.id, store_id).await? {
            return Err(Error::not_found("store", store_id));
        }
        self.resolver.invalidate_all();
        self.get(account_id).await
    }

    pub async fn request_live(&self, id: &str) -> Result<Account> {
        self.transition(id, "live_mode.requested", |from| match from {
            LiveStatus::NotRequested | LiveStatus::Rejected => Ok(LiveStatus::PendingReview),
            other => Err(Error::FailedPrecondition(format!(
                "live mode cannot be requested while it is `{other}`"
            ))),
        })
        .await
    }

    pub async fn review_live(&self, id: &str, approve: bool) -> Result<Account> {
        self.transition(id, "live_mode.reviewed", |from| match from {
            LiveStatus::PendingReview if approve => Ok(LiveStatus::Active),
            LiveStatus::PendingReview => Ok(LiveStatus::Rejected),
            other => Err(Error::FailedPrecondition(format!(
                "live mode can only be reviewed while `pending_review`; it is `{other}`"
            ))),
        })
        .await
    }

    async fn transition(
        &self,
        id: &str,
        action: &'static str,
        next: impl Fn(LiveStatus) -> Result<LiveStatus>,
    ) -> Result<Account> {
        let mut account = self.get(id).await?;
        let from = account.live_status;
        account.live_status = next(from)?;
        account.updated_at = self.clock.now();
        account.version += 1;
        audit::record(
            account.updated_at,
            Change::new(action, "account", &account.id)
                .account(&account.id)
                .mode("live")
                .summary(serde_json::json!({
                    "from": from.to_string(),
                    "to": account.live_status.to_string(),
                })),
        );
        match self.store.update_account(&account).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => return Err(Error::Conflict("account")),
            Err(e) => return Err(e.into()),
        }
        // Cached keys carry their account's live status.
        self.resolver.invalidate_all();
        Ok(account)
    }
}

/// The audit record of a change to `account` (its public fields).
fn account_change(action: &'static str, account: &Account) -> Change {
    Change::new(action, "account", &account.id)
        .account(&account.id)
        .summary(serde_json::json!({
            "name": account.name,
            "plan": account.plan,
            "live_status": account.live_status.to_string(),
        }))
}
