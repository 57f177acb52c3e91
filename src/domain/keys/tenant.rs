//! A tenant's keys: create, read, update, status changes and rotation.

use super::*;

impl KeyManager {
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
            rate_limit: new.rate_limit,
            suspension_cause: None,
        };
        self.check_shape(&record)?;
        audit::record(now, key_change("key.created", &record));
        self.store.insert_key(&record).await?;
        // A negative-cache entry for this hash is astronomically unlikely, but free to drop.
        self.resolver.invalidate_key(&record.key_hash);
        Ok(IssuedKey { record, secret })
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
        if let Some(limit) = changes.rate_limit {
            key.rate_limit = limit;
        }
        if let Some(secs) = changes.expires_in_secs {
            key.expires_at = now + self.check_ttl("expires_in_seconds", secs)? * 1000;
        }
        self.check_shape(&key)?;
        self.save(key, now, "key.updated").await
    }

    pub async fn revoke(&self, id: &str) -> Result<KeyRecord> {
        let key = self.get(id).await?;
        if key.status == StoredKeyStatus::Revoked {
            // Nothing to write, but a cache that missed the change (a lost
            // notification, a write behind its back) still allows the key:
            // repeating the revocation is how an operator repairs that.
            self.resolver.invalidate_key(&key.key_hash);
            return Ok(key);
        }
        self.set_status(key, StoredKeyStatus::Revoked, "key.revoked")
            .await
    }

    pub async fn suspend(&self, id: &str) -> Result<KeyRecord> {
        let key = self.get(id).await?;
        match key.status {
            StoredKeyStatus::Suspended => {
                // As for a repeated revocation: drop what the cache holds.
                self.resolver.invalidate_key(&key.key_hash);
                Ok(key)
            }
            StoredKeyStatus::Revoked => Err(Error::FailedPrecondition(
                "a revoked key cannot be suspended".to_owned(),
            )),
            StoredKeyStatus::Active => {
                self.set_status(key, StoredKeyStatus::Suspended, "key.suspended")
                    .await
            }
        }
    }

    pub async fn resume(&self, id: &str) -> Result<KeyRecord> {
        let key = self.get(id).await?;
        match key.status {
            StoredKeyStatus::Active => Ok(key),
            StoredKeyStatus::Revoked => Err(Error::FailedPrecondition(
                "a revoked key cannot be resumed".to_owned(),
            )),
            StoredKeyStatus::Suspended => {
                let mut key = key;
                key.suspension_cause = None;
                self.set_status(key, StoredKeyStatus::Active, "key.resumed")
                    .await
            }
        }
    }

    /// Suspends an active key on Latchkey's own account, recording why
    /// (`cause`, e.g. `auto_suspended_brute_force`). A key that is not
    /// active is left as it is: an operator's decision is never overwritten.
    /// Audited as `key.auto_suspended` by the `system` actor.
    pub async fn auto_suspend(&self, id: &str, cause: &str) -> Result<KeyRecord> {
        audit::scope_or_system(async {
            let mut key = self.get(id).await?;
            if key.status != StoredKeyStatus::Active || key.account_id == OPERATOR_ACCOUNT_ID {
                return Ok(key);
            }
            key.suspension_cause = Some(cause.to_owned());
            let key = self
                .set_status(key, StoredKeyStatus::Suspended, "key.auto_suspended")
                .await?;
            tracing::warn!(key_id = %key.id, account_id = %key.account_id, cause, "key suspended automatically");
            Ok(key)
        })
        .await
    }

    /// Issues a successor with the same settings and lifetime; the old key
    /// keeps working for `overlap_secs` (0 = it stops at once). Rotating a
    /// key that is itself a successor ends its predecessor's overlap at
    /// once: a chain of rotations keeps at most two keys working, never the
    /// oldest.
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
            crate::domain::model::KeyStatus::Active => {}
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
        let predecessor = self.overlap_to_end(&old, now).await?;
        old.successor_id = Some(successor.id.clone());
        old.overlap_ends_at = Some(now + overlap * 1000);
        old.updated_at = now;
        old.version += 1;
        audit::record(
            now,
            key_change("key.rotated", &old).summary(serde_json::json!({
                "name": old.name,
                "masked": old.masked,
                "successor_id": successor.id,
                "successor_masked": successor.masked,
                "overlap_ends_at": old.overlap_ends_at,
            })),
        );
        match self
            .store
            .rotate_key(&old, &successor, predecessor.as_ref())
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict) => return Err(Error::Conflict("key")),
            Err(e) => return Err(e.into()),
        }
        self.resolver.invalidate_key(&old.key_hash);
        if let Some(p) = &predecessor {
            self.resolver.invalidate_key(&p.key_hash);
        }
        Ok((
            IssuedKey {
                record: successor,
                secret,
            },
            old,
        ))
    }

    /// `key`'s predecessor, changed to stop now, if its overlap still runs.
    async fn overlap_to_end(&self, key: &KeyRecord, now: i64) -> Result<Option<KeyRecord>> {
        let Some(pred_id) = key.predecessor_id.as_deref() else {
            return Ok(None);
        };
        let Some(mut pred) = self.store.get_key(pred_id).await? else {
            return Ok(None);
        };
        if pred.overlap_ends_at.is_some_and(|end| end <= now) {
            return Ok(None);
        }
        pred.overlap_ends_at = Some(now);
        pred.updated_at = now;
        pred.version += 1;
        Ok(Some(pred))
    }
}
