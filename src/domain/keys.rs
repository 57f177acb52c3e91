//! API key lifecycle: create, update, rotate with an overlap window, revoke,
//! suspend, resume. Plaintext exists only in the value returned from create
//! and rotate; the store sees the SHA-256 hash.

use std::sync::Arc;

use ipnet::IpNet;

use super::accounts::{OPERATOR_ACCOUNT_ID, validate_name};
use super::error::{Error, Result};
use super::model::{
    Account, KeyKind, KeyRecord, LiveStatus, Millis, Mode, StoredKeyStatus, new_id,
};
use super::origin::OriginPattern;
use super::permissions::{Policy, Scope};
use super::resolver::KeyResolver;
use crate::crypto::keyfmt;
use crate::crypto::secret::Secret;
use crate::crypto::{self};
use crate::ports::{Clock, KeyFilter, Store, StoreError};

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
}

/// A key and its plaintext, which the caller must show once and forget.
pub struct IssuedKey {
    pub record: KeyRecord,
    pub secret: Secret<String>,
}

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
            .map_err(|e| Error::Store(StoreError::Internal(e.to_string())))?;
        let hash = crypto::sha256(secret.expose().as_bytes());
        let masked = keyfmt::mask(
            &self.settings.prefix,
            mode.tag(),
            kind.tag(),
            keyfmt::last4(secret.expose()),
        );
        Ok((secret, hash, masked))
    }

    pub async fn create(&self, new: NewKey) -> Result<IssuedKey> {
        let name = validate_name("name", &new.name)?;
        let ttl = self.check_ttl(
            "expires_in_seconds",
            new.expires_in_secs
                .unwrap_or(self.settings.default_ttl_secs),
        )?;
        let account = self.tenant(&new.account_id).await?;
        if new.mode == Mode::Live && account.live_status != LiveStatus::Active {
            return Err(Error::FailedPrecondition(format!(
                "live keys need live mode to be active for the account; it is `{}`",
                account.live_status
            )));
        }
        let now = self.clock.now();
        let (secret, key_hash, masked) = self.issue(new.mode, new.kind)?;
        let record = KeyRecord {
            id: new_id(KEY_ID_PREFIX),
            account_id: account.id,
            mode: new.mode,
            kind: new.kind,
            name,
            key_hash,
            masked,
            scopes: strings(&new.scopes),
            role: new.role,
            allowed_cidrs: strings(&new.allowed_cidrs),
            allowed_origins: strings(&new.allowed_origins),
            status: StoredKeyStatus::Active,
            expires_at: now + ttl * 1000,
            created_at: now,
            updated_at: now,
            last_used_at: None,
            predecessor_id: None,
            successor_id: None,
            overlap_ends_at: None,
            version: 1,
            signing_secret_id: None,
        };
        self.check_shape(&record)?;
        self.store.insert_key(&record).await?;
        // A negative-cache entry for this hash is astronomically unlikely, but free to drop.
        self.resolver.invalidate_key(&record.key_hash);
        Ok(IssuedKey { record, secret })
    }

    /// Makes sure the operator account exists (idempotent).
    pub async fn ensure_operator_account(&self) -> Result<Account> {
        if let Some(a) = self.store.get_account(OPERATOR_ACCOUNT_ID).await? {
            return Ok(a);
        }
        let now = self.clock.now();
        let account = Account {
            id: OPERATOR_ACCOUNT_ID.to_owned(),
            name: "latchkey operators".to_owned(),
            plan: "operator".to_owned(),
            live_status: LiveStatus::Active,
            is_operator: true,
            store_ids: Vec::new(),
            created_at: now,
            updated_at: now,
            version: 1,
        };
        match self.store.insert_account(&account).await {
            // Another replica bootstrapped at the same moment.
            Ok(()) | Err(StoreError::Conflict) => Ok(account),
            Err(e) => Err(e.into()),
        }
    }

    /// A new admin token for the operator account (`latchkey admin create-token`).
    pub async fn create_operator_key(
        &self,
        name: &str,
        scopes: Vec<Scope>,
        ttl_secs: Option<i64>,
    ) -> Result<IssuedKey> {
        let (secret, key_hash, masked) = self.issue(Mode::Live, KeyKind::Secret)?;
        let record = self
            .operator_record(name, scopes, ttl_secs, key_hash, masked)
            .await?;
        self.store.insert_key(&record).await?;
        Ok(IssuedKey { record, secret })
    }

    /// Registers an admin token a deployment injected (`LATCHKEY_BOOTSTRAP_ADMIN_TOKEN`).
    /// Idempotent: a token already registered is left as it is (also when revoked).
    pub async fn register_operator_token(&self, token: &Secret<String>) -> Result<KeyRecord> {
        let parts = keyfmt::parse(token.expose(), &self.settings.prefix).map_err(|e| {
            Error::invalid(
                "LATCHKEY_BOOTSTRAP_ADMIN_TOKEN",
                format!("{e} (generate one with `latchkey admin generate-token`)"),
            )
        })?;
        if parts.mode != Mode::Live.tag() || parts.kind != KeyKind::Secret.tag() {
            return Err(Error::invalid(
                "LATCHKEY_BOOTSTRAP_ADMIN_TOKEN",
                format!(
                    "must be a live secret key (`{}_live_sk_…`)",
                    self.settings.prefix
                ),
            ));
        }
        let key_hash = crypto::sha256(token.expose().as_bytes());
        if let Some((existing, _)) = self.store.find_key_by_hash(&key_hash).await? {
            return Ok(existing);
        }
        let masked = keyfmt::mask(
            &self.settings.prefix,
            "live",
            "sk",
            keyfmt::last4(token.expose()),
        );
        let scopes =
            vec![Scope::parse("admin.*").map_err(|e| Error::invalid("scopes", e.to_string()))?];
        let record = self
            .operator_record("bootstrap admin token", scopes, None, key_hash, masked)
            .await?;
        match self.store.insert_key(&record).await {
            Ok(()) | Err(StoreError::Conflict) => Ok(record),
            Err(e) => Err(e.into()),
        }
    }

    async fn operator_record(
        &self,
        name: &str,
        scopes: Vec<Scope>,
        ttl_secs: Option<i64>,
        key_hash: [u8; 32],
        masked: String,
    ) -> Result<KeyRecord> {
        let name = validate_name("name", name)?;
        if scopes.is_empty() || !scopes.iter().all(|s| s.as_str().starts_with("admin.")) {
            return Err(Error::invalid(
                "scopes",
                "admin tokens hold `admin.*` scopes only",
            ));
        }
        let ttl = self.check_ttl("ttl", ttl_secs.unwrap_or(self.settings.max_ttl_secs))?;
        let account = self.ensure_operator_account().await?;
        let now = self.clock.now();
        Ok(KeyRecord {
            id: new_id(KEY_ID_PREFIX),
            account_id: account.id,
            mode: Mode::Live,
            kind: KeyKind::Secret,
            name,
            key_hash,
            masked,
            scopes: strings(&scopes),
            role: None,
            allowed_cidrs: vec![],
            allowed_origins: vec![],
            status: StoredKeyStatus::Active,
            expires_at: now + ttl * 1000,
            created_at: now,
            updated_at: now,
            last_used_at: None,
            predecessor_id: None,
            successor_id: None,
            overlap_ends_at: None,
            version: 1,
            signing_secret_id: None,
        })
    }

    pub async fn get(&self, id: &str) -> Result<KeyRecord> {
        self.store
            .get_key(id)
            .await?
            .ok_or_else(|| Error::not_found("key", id))
    }

    pub async fn list(
        &self,
        filter: &KeyFilter,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<KeyRecord>> {
        Ok(self
            .store
            .list_keys(filter, self.clock.now(), after, limit)
            .await?)
    }

    pub async fn update(&self, id: &str, changes: KeyChanges) -> Result<KeyRecord> {
        let mut key = self.get(id).await?;
        if key.account_id == OPERATOR_ACCOUNT_ID {
            // Otherwise a token holding only `admin.keys.write` could widen itself to `admin.*`.
            return Err(Error::PermissionDenied(
                "admin tokens cannot be changed; create a new one with `latchkey admin create-token`"
                    .to_owned(),
            ));
        }
        if key.status == StoredKeyStatus::Revoked {
            return Err(Error::FailedPrecondition(
                "a revoked key cannot be changed".to_owned(),
            ));
        }
        let now = self.clock.now();
        if let Some(name) = changes.name {
            key.name = validate_name("name", &name)?;
        }
        if let Some(scopes) = changes.scopes {
            key.scopes = strings(&scopes);
        }
        if let Some(role) = changes.role {
            key.role = role;
        }
        if let Some(cidrs) = changes.allowed_cidrs {
            key.allowed_cidrs = strings(&cidrs);
        }
        if let Some(origins) = changes.allowed_origins {
            key.allowed_origins = strings(&origins);
        }
        if let Some(secs) = changes.expires_in_secs {
            key.expires_at = now + self.check_ttl("expires_in_seconds", secs)? * 1000;
        }
        self.check_shape(&key)?;
        self.save(key, now).await
    }

    pub async fn revoke(&self, id: &str) -> Result<KeyRecord> {
        let key = self.get(id).await?;
        if key.status == StoredKeyStatus::Revoked {
            return Ok(key);
        }
        self.set_status(key, StoredKeyStatus::Revoked).await
    }

    pub async fn suspend(&self, id: &str) -> Result<KeyRecord> {
        let key = self.get(id).await?;
        match key.status {
            StoredKeyStatus::Suspended => Ok(key),
            StoredKeyStatus::Revoked => Err(Error::FailedPrecondition(
                "a revoked key cannot be suspended".to_owned(),
            )),
            StoredKeyStatus::Active => self.set_status(key, StoredKeyStatus::Suspended).await,
        }
    }

    pub async fn resume(&self, id: &str) -> Result<KeyRecord> {
        let key = self.get(id).await?;
        match key.status {
            StoredKeyStatus::Active => Ok(key),
            StoredKeyStatus::Revoked => Err(Error::FailedPrecondition(
                "a revoked key cannot be resumed".to_owned(),
            )),
            StoredKeyStatus::Suspended => self.set_status(key, StoredKeyStatus::Active).await,
        }
    }

    async fn set_status(&self, mut key: KeyRecord, status: StoredKeyStatus) -> Result<KeyRecord> {
        key.status = status;
        self.save(key, self.clock.now()).await
    }

    async fn save(&self, mut key: KeyRecord, now: Millis) -> Result<KeyRecord> {
        key.updated_at = now;
        key.version += 1;
        match self.store.update_key(&key).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => return Err(Error::Conflict("key")),
            Err(e) => return Err(e.into()),
        }
        self.resolver.invalidate_key(&key.key_hash);
        Ok(key)
    }

    /// Issues a successor with the same settings and lifetime; the old key
    /// keeps working for `overlap_secs` (0 = it stops at once).
    pub async fn rotate(
        &self,
        id: &str,
        overlap_secs: Option<i64>,
    ) -> Result<(IssuedKey, KeyRecord)> {
        let overlap = overlap_secs.unwrap_or(self.settings.default_overlap_secs);
        if !(0..=self.settings.max_overlap_secs).contains(&overlap) {
            return Err(Error::invalid(
                "overlap_seconds",
                format!("must be between 0 and {}", self.settings.max_overlap_secs),
            ));
        }
        let mut old = self.get(id).await?;
        let now = self.clock.now();
        if old.successor_id.is_some() {
            return Err(Error::FailedPrecondition(
                "the key was already rotated; rotate its successor instead".to_owned(),
            ));
        }
        if old.account_id == OPERATOR_ACCOUNT_ID {
            return Err(Error::PermissionDenied(
                "operator keys are managed with `latchkey admin`".to_owned(),
            ));
        }
        match old.status_at(now) {
            super::model::KeyStatus::Active => {}
            other => {
                return Err(Error::FailedPrecondition(
                    format!("only an active key can be rotated; it is {other:?}").to_lowercase(),
                ));
            }
        }
        let (secret, key_hash, masked) = self.issue(old.mode, old.kind)?;
        let lifetime = (old.expires_at - old.created_at).max(1000);
        let successor = KeyRecord {
            id: new_id(KEY_ID_PREFIX),
            key_hash,
            masked,
            status: StoredKeyStatus::Active,
            expires_at: now + lifetime,
            created_at: now,
            updated_at: now,
            last_used_at: None,
            predecessor_id: Some(old.id.clone()),
            successor_id: None,
            overlap_ends_at: None,
            version: 1,
            ..old.clone()
        };
        old.successor_id = Some(successor.id.clone());
        old.overlap_ends_at = Some(now + overlap * 1000);
        old.updated_at = now;
        old.version += 1;
        match self.store.rotate_key(&old, &successor).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => return Err(Error::Conflict("key")),
            Err(e) => return Err(e.into()),
        }
        self.resolver.invalidate_key(&old.key_hash);
        Ok((
            IssuedKey {
                record: successor,
                secret,
            },
            old,
        ))
    }
}
