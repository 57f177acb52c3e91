//! The operator's admin keys: its account, generated keys and the bootstrap
//! token registered at start-up (idempotent across restarts).

use super::*;

impl KeyManager {
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
            Ok(()) | Err(StoreError::AlreadyExists) => Ok(account),
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
        audit::scope_or_system(async {
            audit::record(
                record.created_at,
                key_change("admin_token.created", &record),
            );
            self.store.insert_key(&record).await
        })
        .await?;
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
        let inserted = audit::scope_or_system(async {
            audit::record(
                record.created_at,
                key_change("admin_token.registered", &record),
            );
            self.store.insert_key(&record).await
        })
        .await;
        match inserted {
            Ok(()) | Err(StoreError::AlreadyExists) => Ok(record),
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
            rate_limit: None,
            suspension_cause: None,
        })
    }
}
