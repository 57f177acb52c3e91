//! The signing keys: the keyring each replica holds, the first key at
//! start-up, reloads (another replica may have rotated), rotation and the
//! JWKS document (RFC 7517 §5) that publishes the public halves.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::{TokenManager, TokenSettings, log_internal};
use crate::crypto::envelope::MasterKey;
use crate::crypto::jwt::{self, Algorithm, Expected, SigningKey, VerifyingKey};
use crate::domain::audit::{self, Change};
use crate::domain::error::{Error, Result};
use crate::domain::model::{Millis, SigningKeyRecord, new_id};
use crate::ports::TokenStore;

/// How often an unknown `kid` may make this replica re-read the signing keys.
const KEYRING_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The signing keys this replica knows: the one that signs, and every
/// public key a still-valid token may name.
pub(super) struct KeyringState {
    pub(super) active: Arc<SigningKey>,
    pub(super) verifiers: Vec<Arc<VerifyingKey>>,
    jwks: String,
}

pub(super) struct Keyring {
    state: RwLock<Arc<KeyringState>>,
    last_reload: Mutex<Option<Instant>>,
}

impl Keyring {
    /// Loads the signing keys, creating the first one if there is none.
    pub(super) async fn load(
        tokens: &dyn TokenStore,
        master_key: &Arc<MasterKey>,
        settings: &TokenSettings,
        now: Millis,
    ) -> Result<Self> {
        let mut records = tokens.signing_keys().await?;
        if !records.iter().any(|r| r.retired_at.is_none()) {
            let alg = settings.algorithm;
            let master = master_key.clone();
            let record = tokio::task::spawn_blocking(move || new_signing_record(alg, &master, now))
                .await
                .map_err(|e| Error::internal("generating a signing key", e))??;
            if tokens.insert_first_signing_key(&record).await? {
                tracing::info!(kid = %record.kid, algorithm = %record.algorithm, "created the first JWT signing key");
            }
            records = tokens.signing_keys().await?;
        }
        let state = Self::build(&records, None, master_key, now, settings)?;
        Ok(Self {
            state: RwLock::new(Arc::new(state)),
            last_reload: Mutex::new(None),
        })
    }

    /// The keyring for these records. Keys `previous` already holds are
    /// reused, so a periodic reload that finds nothing new parses nothing
    /// and opens no sealed private key.
    fn build(
        records: &[SigningKeyRecord],
        previous: Option<&KeyringState>,
        master: &MasterKey,
        now: Millis,
        settings: &TokenSettings,
    ) -> Result<KeyringState> {
        let verifiers = Self::verifiers(records, previous, now, settings)?;
        let mut active = None;
        for r in records.iter().filter(|r| r.retired_at.is_none()) {
            let alg = Algorithm::from_name(&r.algorithm)
                .ok_or_else(|| bad_key(&r.kid, &"unknown algorithm"))?;
            if let Some(p) = previous.filter(|p| p.active.kid == r.kid) {
                active = Some(p.active.clone());
                continue;
            }
            let der = master
                .open(&r.private_sealed, seal_context(&r.kid).as_bytes())
                .map_err(|e| bad_key(&r.kid, &e))?;
            active = Some(Arc::new(
                SigningKey::from_pkcs8(alg, r.kid.clone(), &der)
                    .map_err(|e| bad_key(&r.kid, &e))?,
            ));
        }
        let active = active
            .ok_or_else(|| Error::internal("loading the signing keys", "no active signing key"))?;
        let jwks = jwt::jwks(verifiers.iter().map(|v| v.as_ref()));
        Ok(KeyringState {
            active,
            verifiers,
            jwks,
        })
    }

    /// The public keys a still-valid token may name: every key not retired
    /// for longer than a token lives. Those `previous` holds are reused.
    fn verifiers(
        records: &[SigningKeyRecord],
        previous: Option<&KeyringState>,
        now: Millis,
        settings: &TokenSettings,
    ) -> Result<Vec<Arc<VerifyingKey>>> {
        let keep_ms = keep_retired_ms(settings);
        // What every token a key signed must say; built into each key's
        // validation once, not per token.
        let expected = Expected {
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
        };
        let mut verifiers = Vec::new();
        for r in records {
            let alg = Algorithm::from_name(&r.algorithm)
                .ok_or_else(|| bad_key(&r.kid, &"unknown algorithm"))?;
            if r.retired_at.is_some_and(|at| at + keep_ms <= now) {
                continue;
            }
            let known = previous.and_then(|p| p.verifiers.iter().find(|v| v.kid == r.kid));
            verifiers.push(match known {
                Some(v) => v.clone(),
                None => Arc::new(
                    VerifyingKey::new(alg, r.kid.clone(), &r.public_key, &expected)
                        .map_err(|e| bad_key(&r.kid, &e))?,
                ),
            });
        }
        Ok(verifiers)
    }

    pub(super) fn current(&self) -> Arc<KeyringState> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn replace(&self, state: KeyringState) {
        *self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(state);
    }

    /// Whether an unknown `kid` may re-read the keys now (at most once per
    /// `KEYRING_RELOAD_INTERVAL`, so forged `kid`s cannot hammer the store).
    pub(super) fn may_reload(&self) -> bool {
        let mut last = self
            .last_reload
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < KEYRING_RELOAD_INTERVAL) {
            return false;
        }
        *last = Some(now);
        true
    }
}

fn bad_key(kid: &str, e: &dyn std::fmt::Display) -> Error {
    Error::internal("loading a signing key", format!("{kid}: {e}"))
}

fn seal_context(kid: &str) -> String {
    crate::domain::model::signing_key_context(kid)
}

fn new_signing_record(alg: Algorithm, master: &MasterKey, now: Millis) -> Result<SigningKeyRecord> {
    let kid = new_id("sk");
    let (key, pkcs8) = SigningKey::generate(alg, kid.clone())
        .map_err(|e| Error::internal("generating a signing key", e))?;
    let sealed = master
        .seal(&pkcs8, seal_context(&kid).as_bytes())
        .map_err(|e| Error::internal("sealing a signing key", e))?;
    Ok(SigningKeyRecord {
        kid,
        algorithm: alg.name().to_owned(),
        private_sealed: sealed,
        public_key: key.public_key_bytes(),
        created_at: now,
        retired_at: None,
    })
}

/// A retired key stays published until every token it signed has expired.
fn keep_retired_ms(settings: &TokenSettings) -> i64 {
    (settings.access_ttl_secs.max(settings.exchange_ttl_secs) + settings.leeway_secs) * 1000
}

impl TokenManager {
    /// Re-reads the signing keys from the store (another replica may have rotated).
    pub async fn reload_keys(&self) -> Result<()> {
        self.reread_keys().await.inspect_err(log_internal)
    }

    /// [`Self::reload_keys`] without the log, for callers that report the error
    /// through a transport's table.
    async fn reread_keys(&self) -> Result<()> {
        let records = self.tokens.signing_keys().await?;
        let previous = self.keyring.current();
        let state = Keyring::build(
            &records,
            Some(&previous),
            &self.master_key,
            self.clock.now(),
            &self.settings,
        )?;
        self.keyring.replace(state);
        Ok(())
    }

    /// The public keys as the store holds them now, for Explain: this
    /// replica's keyring is neither read nor replaced.
    pub(super) async fn read_verifiers(&self) -> Result<Vec<Arc<VerifyingKey>>> {
        let records = self.tokens.signing_keys().await?;
        Keyring::verifiers(&records, None, self.clock.now(), &self.settings)
    }

    pub fn jwks_json(&self) -> String {
        self.keyring.current().jwks.clone()
    }

    pub async fn rotate_signing_key(&self, algorithm: Option<&str>) -> Result<SigningKeyRecord> {
        let alg = match algorithm.map(str::trim).filter(|a| !a.is_empty()) {
            None => self.settings.algorithm,
            Some(name) => Algorithm::from_name(name).ok_or_else(|| {
                Error::invalid(
                    "algorithm",
                    format!("`{name}` is not one of RS256, ES256, EdDSA"),
                )
            })?,
        };
        let now = self.clock.now();
        let master = self.master_key.clone();
        let record = tokio::task::spawn_blocking(move || new_signing_record(alg, &master, now))
            .await
            .map_err(|e| Error::internal("generating a signing key", e))??;
        audit::record(
            now,
            Change::new("signing_key.rotated", "signing_key", &record.kid)
                .summary(serde_json::json!({ "algorithm": record.algorithm })),
        );
        self.tokens.rotate_signing_key(&record).await?;
        self.reread_keys().await?;
        tracing::info!(kid = %record.kid, algorithm = %record.algorithm, "rotated the JWT signing key");
        Ok(record)
    }
}
