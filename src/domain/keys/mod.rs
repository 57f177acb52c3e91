//! API key lifecycle: create, update, rotate with an overlap window, revoke,
//! suspend, resume (`tenant`), and the operator's own admin keys (`operator`).
//! Plaintext exists only in the value returned from create and rotate; the
//! store sees the SHA-256 hash. This file holds what both share.

use std::sync::Arc;

use ipnet::IpNet;

use super::accounts::{OPERATOR_ACCOUNT_ID, validate_name};
use super::audit::{self, Change};
use super::error::{Error, Result};
use super::model::{
    Account, KeyKind, KeyRecord, LiveStatus, Millis, Mode, RatePolicy, StoredKeyStatus, new_id,
};
use super::origin::OriginPattern;
use super::permissions::{Policy, Scope};
use super::resolver::KeyResolver;
use crate::crypto::keyfmt;
use crate::crypto::secret::Secret;
use crate::crypto::{self};
use crate::ports::{Clock, KeyFilter, Store, StoreError};

pub mod expiry;
mod operator;
mod tenant;

pub const KEY_ID_PREFIX: &str = "key";
const DAY: i64 = 24 * 60 * 60;

#[derive(Debug, Clone)]
pub struct KeySettings {
    pub prefix: String,
    pub default_ttl_secs: i64,
    pub max_ttl_secs: i64,
    pub default_overlap_secs: i64,
    pub max_overlap_secs: i64,
}

impl Default for KeySettings {
    fn default() -> Self {
        Self {
            prefix: "lk".to_owned(),
            default_ttl_secs: 90 * DAY,
            max_ttl_secs: 5 * 365 * DAY,
            default_overlap_secs: 7 * DAY,
            max_overlap_secs: 30 * DAY,
        }
    }
}

/// A validated request for a new key (wire parsing happened in the adapter).
#[derive(Debug, Clone)]
pub struct NewKey {
    pub account_id: String,
    pub mode: Mode,
    pub kind: KeyKind,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub role: Option<String>,
    pub allowed_cidrs: Vec<IpNet>,
    pub allowed_origins: Vec<OriginPattern>,
    pub expires_in_secs: Option<i64>,
    /// Overrides the plan's rate limit.
    pub rate_limit: Option<RatePolicy>,
}

/// Changes to a key; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct KeyChanges {
    pub name: Option<String>,
    pub scopes: Option<Vec<Scope>>,
    /// `Some(None)` drops the role.
    pub role: Option<Option<String>>,
    pub allowed_cidrs: Option<Vec<IpNet>>,
    pub allowed_origins: Option<Vec<OriginPattern>>,
    pub expires_in_secs: Option<i64>,
    /// `Some(None)` clears the key's own limit (the plan's applies again).
    pub rate_limit: Option<Option<RatePolicy>>,
}

/// A key and its plaintext, which the caller must show once and forget.
pub struct IssuedKey {
    pub record: KeyRecord,
    pub secret: Secret<String>,
}

/// Cheap to clone: everything it holds is shared.
#[derive(Clone)]
pub struct KeyManager {
    store: Arc<dyn Store>,
    policy: Arc<Policy>,
    clock: Arc<dyn Clock>,
    resolver: Arc<KeyResolver>,
    settings: KeySettings,
}

fn strings<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

impl KeyManager {
    pub fn new(
        store: Arc<dyn Store>,
        policy: Arc<Policy>,
        clock: Arc<dyn Clock>,
        resolver: Arc<KeyResolver>,
        settings: KeySettings,
    ) -> Self {
        Self {
            store,
            policy,
            clock,
            resolver,
            settings,
        }
    }

    pub fn settings(&self) -> &KeySettings {
        &self.settings
    }

    fn check_ttl(&self, field: &'static str, secs: i64) -> Result<i64> {
        if secs <= 0 {
            return Err(Error::invalid(field, "must be positive"));
        }
        if secs > self.settings.max_ttl_secs {
            return Err(Error::invalid(
                field,
                format!("must be at most {} seconds", self.settings.max_ttl_secs),
            ));
        }
        Ok(secs)
    }

    /// Rules that tie fields together; checked on create and on every update.
    fn check_shape(&self, record: &KeyRecord) -> Result<()> {
        if record.role.is_some() && !record.scopes.is_empty() {
            return Err(Error::invalid(
                "role",
                "set either scopes or a role, not both",
            ));
        }
        if let Some(role) = &record.role
            && self.policy.role(role).is_none()
        {
            return Err(Error::invalid(
                "role",
                format!(
                    "`{role}` is not a configured role (one of: {})",
                    self.policy.role_names().join(", ")
                ),
            ));
        }
        if record.kind == KeyKind::Restricted && record.scopes.is_empty() && record.role.is_none() {
            return Err(Error::invalid(
                "scopes",
                "a restricted key needs at least one scope or a role",
            ));
        }
        if record.kind == KeyKind::Publishable && record.allowed_origins.is_empty() {
            return Err(Error::invalid(
                "allowed_origins",
                "a publishable key needs at least one allowed origin",
            ));
        }
        Ok(())
    }

    async fn tenant(&self, id: &str) -> Result<Account> {
        match self.store.get_account(id).await? {
            Some(a) if !a.is_operator => Ok(a),
            Some(_) => Err(Error::PermissionDenied(
                "operator keys are created with `latchkey admin create-token`".to_owned(),
            )),
            None => Err(Error::not_found("account", id)),
        }
    }

    fn issue(&self, mode: Mode, kind: KeyKind) -> Result<(Secret<String>, [u8; 32], String)> {
        let secret = keyfmt::generate(&self.settings.prefix, mode.tag(), kind.tag())
            .map_err(|e| Error::internal("generating a key", e))?;
        let hash = crypto::sha256(secret.expose().as_bytes());
        let masked = keyfmt::mask(
            &self.settings.prefix,
            mode.tag(),
            kind.tag(),
            keyfmt::last4(secret.expose()),
        );
        Ok((secret, hash, masked))
    }

    async fn set_status(
        &self,
        mut key: KeyRecord,
        status: StoredKeyStatus,
        action: &'static str,
    ) -> Result<KeyRecord> {
        key.status = status;
        self.save(key, self.clock.now(), action).await
    }

    /// Writes `key`, with its audit event (`action`) in the same transaction.
    async fn save(
        &self,
        mut key: KeyRecord,
        now: Millis,
        action: &'static str,
    ) -> Result<KeyRecord> {
        key.updated_at = now;
        key.version += 1;
        audit::record(now, key_change(action, &key));
        match self.store.update_key(&key).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => return Err(Error::Conflict("key")),
            Err(e) => return Err(e.into()),
        }
        self.resolver.invalidate_key(&key.key_hash);
        Ok(key)
    }
}

/// The audit record of a change to `key`: identifiers and public fields
/// only (the masked form is what every listing shows; never the hash).
fn key_change(action: &'static str, key: &KeyRecord) -> Change {
    Change::new(action, "key", &key.id)
        .account(&key.account_id)
        .mode(key.mode.tag())
        .summary(serde_json::json!({
            "name": key.name,
            "kind": key.kind.tag(),
            "masked": key.masked,
            "status": key.status.tag(),
            "scopes": key.scopes,
            "role": key.role,
            "expires_at": key.expires_at,
            "suspension_cause": key.suspension_cause,
        }))
}
