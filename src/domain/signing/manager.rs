//! Building the signing manager, the secrets' lifecycle (create, list,
//! rotate, revoke) and the link from a key to the secret its requests must be
//! signed with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::strict_url::UrlForm;
use super::verify::Opened;
use super::{IssuedSecret, SECRET_ID_PREFIX, SECRET_PREFIX, SecretWithVersions, SigningSettings};
use crate::crypto::envelope::MasterKey;
use crate::crypto::mac::random_secret;
use crate::crypto::secret::Secret;
use crate::domain::accounts::validate_name;
use crate::domain::audit::{self, Change};
use crate::domain::error::{Error, Result};
use crate::domain::model::{
    KeyRecord, LiveStatus, Millis, Mode, SecretStatus, SecretVersionRecord, SigningSecretRecord,
    new_id, version_context,
};
use crate::domain::resolver::KeyResolver;
use crate::ports::{Clock, SigningStore, Store, StoreError};

/// What a [`SigningManager`] is built from.
pub struct SigningDeps {
    /// Where the secrets and their sealed versions live.
    pub store: Arc<dyn SigningStore>,
    /// Accounts and keys: a secret's owner, and the keys that require it.
    pub keys: Arc<dyn Store>,
    /// Told when a key's signing requirement changes.
    pub resolver: Arc<KeyResolver>,
    /// Seals and opens the versions.
    pub master_key: Arc<MasterKey>,
    pub clock: Arc<dyn Clock>,
    pub settings: SigningSettings,
}

/// An opened version: its number, times, and HMAC key.
pub(super) struct OpenVersion {
    pub(super) version: i64,
    pub(super) created_at: Millis,
    pub(super) retired_at: Option<Millis>,
    pub(super) overlap_ends_at: Option<Millis>,
    pub(super) key: Secret<Vec<u8>>,
}

pub struct SigningManager {
    store: Arc<dyn SigningStore>,
    keys: Arc<dyn Store>,
    resolver: Arc<KeyResolver>,
    master_key: Arc<MasterKey>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) settings: SigningSettings,
    /// The Check path's opened versions, by secret id (`verify.rs`).
    pub(super) cache: Mutex<HashMap<String, (Instant, Arc<Opened>)>>,
}

impl SigningManager {
    pub fn new(deps: SigningDeps) -> Self {
        let SigningDeps {
            store,
            keys,
            resolver,
            master_key,
            clock,
            settings,
        } = deps;
        Self {
            store,
            keys,
            resolver,
            master_key,
            clock,
            settings,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &SigningSettings {
        &self.settings
    }

    fn seal(&self, id: &str, version: i64, plaintext: &Secret<String>) -> Result<Vec<u8>> {
        self.master_key
            .seal(
                plaintext.expose().as_bytes(),
                version_context(id, version).as_bytes(),
            )
            .map_err(|e| {
                Error::internal("sealing a signing secret", format!("{id} v{version}: {e}"))
            })
    }

    pub(super) fn open(&self, v: &SecretVersionRecord) -> Result<OpenVersion> {
        let plain = self
            .master_key
            .open(
                &v.sealed,
                version_context(&v.secret_id, v.version).as_bytes(),
            )
            .map_err(|e| {
                Error::internal(
                    "opening a signing secret",
                    format!("{} v{}: {e}", v.secret_id, v.version),
                )
            })?;
        Ok(OpenVersion {
            version: v.version,
            created_at: v.created_at,
            retired_at: v.retired_at,
            overlap_ends_at: v.overlap_ends_at,
            key: Secret::new(plain.to_vec()),
        })
    }

    fn new_plaintext() -> Result<Secret<String>> {
        random_secret(SECRET_PREFIX).map_err(|e| Error::internal("generating a signing secret", e))
    }

    fn forget(&self, id: &str) {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    /// A secret whose signed URLs use the seed's form.
    pub async fn create(&self, account_id: &str, mode: Mode, name: &str) -> Result<IssuedSecret> {
        self.create_as(account_id, mode, name, UrlForm::Seed).await
    }

    /// A secret whose signed URLs use `url_form`.
    pub async fn create_as(
        &self,
        account_id: &str,
        mode: Mode,
        name: &str,
        url_form: UrlForm,
    ) -> Result<IssuedSecret> {
        let name = validate_name("name", name)?;
        let account = match self.keys.get_account(account_id).await? {
            Some(a) if !a.is_operator => a,
            Some(_) => {
                return Err(Error::PermissionDenied(
                    "the operator account holds no signing secrets".to_owned(),
                ));
            }
            None => return Err(Error::not_found("account", account_id)),
        };
        if mode == Mode::Live && account.live_status != LiveStatus::Active {
            return Err(Error::FailedPrecondition(format!(
                "live signing secrets need live mode to be active for the account; it is `{}`",
                account.live_status
            )));
        }
        let now = self.clock.now();
        let secret = SigningSecretRecord {
            id: new_id(SECRET_ID_PREFIX),
            account_id: account.id,
            mode,
            name,
            status: SecretStatus::Active,
            current_version: 1,
            created_at: now,
            updated_at: now,
            url_form,
        };
        let plaintext = Self::new_plaintext()?;
        let first = SecretVersionRecord {
            secret_id: secret.id.clone(),
            version: 1,
            sealed: self.seal(&secret.id, 1, &plaintext)?,
            created_at: now,
            retired_at: None,
            overlap_ends_at: None,
        };
        audit::record(
            now,
            Change::new("secret.created", "signing_secret", &secret.id)
                .account(&secret.account_id)
                .mode(secret.mode.tag())
                .summary(serde_json::json!({ "name": secret.name, "version": 1 })),
        );
        self.store.insert_signing_secret(&secret, &first).await?;
        Ok(IssuedSecret {
            secret: SecretWithVersions {
                secret,
                versions: vec![first],
            },
            plaintext,
        })
    }

    pub async fn get(&self, id: &str) -> Result<SecretWithVersions> {
        let (secret, versions) = self
            .store
            .get_signing_secret(id)
            .await?
            .ok_or_else(|| Error::not_found("signing secret", id))?;
        Ok(SecretWithVersions { secret, versions })
    }

    pub async fn list(
        &self,
        account_id: Option<&str>,
        mode: Option<Mode>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<SigningSecretRecord>> {
        Ok(self
            .store
            .list_signing_secrets(account_id, mode, after, limit)
            .await?)
    }

    /// A new current version; the previous one stays active for the overlap.
    pub async fn rotate(&self, id: &str, overlap_secs: Option<i64>) -> Result<IssuedSecret> {
        let overlap = overlap_secs.unwrap_or(self.settings.default_overlap_secs);
        if !(0..=self.settings.max_overlap_secs).contains(&overlap) {
            return Err(Error::invalid(
                "overlap_seconds",
                format!(
                    "must be between 0 and {} seconds",
                    self.settings.max_overlap_secs
                ),
            ));
        }
        let current = self.get(id).await?;
        if current.secret.status == SecretStatus::Revoked {
            return Err(Error::FailedPrecondition(format!(
                "signing secret `{id}` is revoked; create a new one"
            )));
        }
        let now = self.clock.now();
        let version = current.secret.current_version + 1;
        let plaintext = Self::new_plaintext()?;
        let new = SecretVersionRecord {
            secret_id: id.to_owned(),
            version,
            sealed: self.seal(id, version, &plaintext)?,
            created_at: now,
            retired_at: None,
            overlap_ends_at: None,
        };
        let mut updated = current.secret.clone();
        updated.current_version = version;
        updated.updated_at = now;
        audit::record(
            now,
            Change::new("secret.rotated", "signing_secret", id)
                .account(&updated.account_id)
                .mode(updated.mode.tag())
                .summary(serde_json::json!({
                    "version": version,
                    "previous_active_until": now + overlap * 1000,
                })),
        );
        match self
            .store
            .rotate_signing_secret(&updated, now, now + overlap * 1000, &new)
            .await
        {
            Err(StoreError::Conflict) => return Err(Error::Conflict("signing secret")),
            other => other?,
        }
        self.forget(id);
        Ok(IssuedSecret {
            secret: self.get(id).await?,
            plaintext,
        })
    }

    pub async fn revoke(&self, id: &str) -> Result<SecretWithVersions> {
        audit::record(
            self.clock.now(),
            Change::new("secret.revoked", "signing_secret", id),
        );
        if !self
            .store
            .revoke_signing_secret(id, self.clock.now())
            .await?
        {
            return Err(Error::not_found("signing secret", id));
        }
        self.forget(id);
        self.get(id).await
    }

    /// Changes the canonical form of the secret's signed URLs, for all its
    /// versions: links signed in the other form stop verifying at once.
    pub async fn set_url_form(&self, id: &str, url_form: UrlForm) -> Result<SecretWithVersions> {
        let current = self.get(id).await?;
        if current.secret.status == SecretStatus::Revoked {
            return Err(Self::revoked_error(id));
        }
        if current.secret.url_form == url_form {
            return Ok(current);
        }
        audit::record(
            self.clock.now(),
            Change::new("secret.url_form_set", "signing_secret", id)
                .account(&current.secret.account_id)
                .mode(current.secret.mode.tag())
                .summary(serde_json::json!({ "url_form": url_form.tag() })),
        );
        if !self
            .store
            .set_signing_secret_url_form(id, url_form, self.clock.now())
            .await?
        {
            return Err(Error::not_found("signing secret", id));
        }
        self.forget(id);
        self.get(id).await
    }

    /// The secret's versions, opened, for an operation that must not run on a
    /// revoked secret (`Ok(None)` then).
    pub(super) async fn opened(&self, id: &str) -> Result<Option<Vec<OpenVersion>>> {
        Ok(self
            .opened_with_form(id)
            .await?
            .map(|(_, versions)| versions))
    }

    /// [`Self::opened`] and the secret's signed-URL form.
    pub(super) async fn opened_with_form(
        &self,
        id: &str,
    ) -> Result<Option<(UrlForm, Vec<OpenVersion>)>> {
        let s = self.get(id).await?;
        if s.secret.status == SecretStatus::Revoked {
            return Ok(None);
        }
        let versions = s
            .versions
            .iter()
            .map(|v| self.open(v))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some((s.secret.url_form, versions)))
    }

    pub(super) fn revoked_error(id: &str) -> Error {
        Error::FailedPrecondition(format!("signing secret `{id}` is revoked"))
    }

    /// The signing secret `id` may sign the consent links of a client of
    /// `account_id` in `mode`: it exists, is that account's, in that mode,
    /// and not revoked. `""` = none. Every refusal names `signing_secret_id`.
    pub async fn for_client(
        &self,
        account_id: &str,
        mode: Mode,
        id: &str,
    ) -> Result<Option<String>> {
        const FIELD: &str = "signing_secret_id";
        if id.is_empty() {
            return Ok(None);
        }
        if !super::valid_secret_id(id) {
            return Err(Error::invalid(FIELD, "is not a signing secret id (sig_…)"));
        }
        let secret = match self.get(id).await {
            Ok(s) => s.secret,
            Err(Error::NotFound { .. }) => {
                return Err(Error::invalid(FIELD, "no such signing secret"));
            }
            Err(e) => return Err(e),
        };
        if secret.account_id != account_id || secret.mode != mode {
            return Err(Error::invalid(
                FIELD,
                "the signing secret belongs to another account or mode than the client",
            ));
        }
        if secret.status == SecretStatus::Revoked {
            return Err(Error::invalid(FIELD, "the signing secret was revoked"));
        }
        Ok(Some(secret.id))
    }

    /// Marks a key "requests must be signed" with this secret (`None` clears it).
    pub async fn require_signed_requests(
        &self,
        key_id: &str,
        secret_id: Option<&str>,
    ) -> Result<KeyRecord> {
        let mut key = self
            .keys
            .get_key(key_id)
            .await?
            .ok_or_else(|| Error::not_found("key", key_id))?;
        if let Some(secret_id) = secret_id {
            let s = self.get(secret_id).await?;
            if s.secret.account_id != key.account_id || s.secret.mode != key.mode {
                return Err(Error::invalid(
                    "secret_id",
                    "the signing secret must belong to the key's account and mode",
                ));
            }
            if s.secret.status == SecretStatus::Revoked {
                return Err(Self::revoked_error(secret_id));
            }
        }
        key.signing_secret_id = secret_id.map(str::to_owned);
        key.updated_at = self.clock.now();
        key.version += 1;
        audit::record(
            key.updated_at,
            Change::new("key.signing_secret_set", "key", &key.id)
                .account(&key.account_id)
                .mode(key.mode.tag())
                .summary(serde_json::json!({ "signing_secret_id": key.signing_secret_id })),
        );
        match self.keys.update_key(&key).await {
            Err(StoreError::Conflict) => return Err(Error::Conflict("key")),
            other => other?,
        }
        self.resolver.invalidate_key(&key.key_hash);
        Ok(key)
    }
}
