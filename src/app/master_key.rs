//! Where the master keys come from, and the check that they are the right ones.
//!
//! `LATCHKEY_MASTER_KEYS` (base64 keys, newest first, comma-separated) or
//! `LATCHKEY_MASTER_KEY` (one key) wins. Without either, a development key
//! file `master.key` in the data directory is used, and created (with a loud
//! warning) only while the database holds nothing sealed yet. The database
//! keeps a sealed canary, so a wrong key is a start-up error rather than a
//! pile of secrets that no longer open — and never a silent new key. Start-up
//! also walks every sealed value and refuses to run while one of them is under
//! a key that is not configured, naming that key.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::Settings;
use crate::crypto::envelope::{EnvelopeError, KeyId, MasterKey};
use crate::domain::vault::master_keys::{self, RotationError};
use crate::ports::{SealedStore, Store, StoreError};

pub const ENV_VAR: &str = "LATCHKEY_MASTER_KEY";
/// The list form, newest first: what a rotation adds a key to.
pub const LIST_ENV_VAR: &str = "LATCHKEY_MASTER_KEYS";
/// Rows read per query while checking every sealed value at start-up.
const CENSUS_BATCH: u64 = 500;
const DEV_KEY_FILE: &str = "master.key";
const CANARY_NAME: &str = "master_key_check";
const CANARY: &[u8] = b"latchkey master key check v1";

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error(
        "{ENV_VAR} / {LIST_ENV_VAR} is not valid: {0} (each key is standard base64 of exactly \
         32 bytes, `openssl rand -base64 32`; a list is comma-separated, newest first)"
    )]
    BadVariable(EnvelopeError),
    #[error(
        "the master key is not the key they were sealed with: this database's secrets are \
         sealed under master key {0}, which is not configured (set it in {ENV_VAR}, or add \
         it to {LIST_ENV_VAR})"
    )]
    CanaryKeyMissing(KeyId),
    #[error("{0}; add that key to {LIST_ENV_VAR} (newest first) or restore it")]
    Values(#[from] RotationError),
    #[error("development key file {0} is not valid: it must hold base64 of exactly 32 bytes")]
    BadFile(PathBuf),
    #[error(
        "{ENV_VAR} is not set and {0} does not exist, but this database already holds secrets \
         sealed under a master key; set {ENV_VAR} to that key (a new one would not open them)"
    )]
    Missing(PathBuf),
    #[error(
        "the master key does not open this database's secrets: it is not the key they were \
         sealed with (check {ENV_VAR} or {DEV_KEY_FILE} in the data directory)"
    )]
    WrongKey,
    #[error("cannot use development key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Envelope(#[from] EnvelopeError),
}

/// The master keys for this database, checked against its canary (written on
/// first use) and against every sealed value it holds.
pub async fn resolve(
    settings: &Settings,
    store: &dyn Store,
    sealed: &dyn SealedStore,
) -> Result<MasterKey, MasterKeyError> {
    let key = load(settings, store).await?;
    let census = master_keys::census(sealed, &key, CENSUS_BATCH).await?;
    census.check(&key)?;
    Ok(key)
}

/// The master keys for this database, checked against its canary only (what
/// `latchkey master-key status` needs to report on a database it could not
/// serve).
pub async fn load(settings: &Settings, store: &dyn Store) -> Result<MasterKey, MasterKeyError> {
    let canary = store.get_meta(CANARY_NAME).await?;
    let key = match &settings.master_key {
        Some(text) => MasterKey::from_list(text.expose()).map_err(MasterKeyError::BadVariable)?,
        None => dev_key(&settings.data_dir, canary.is_some())?,
    };
    match canary {
        Some(sealed) => verify(&key, &sealed)?,
        None => {
            let sealed = key.seal(CANARY, CANARY_NAME.as_bytes())?;
            if !store.insert_meta(CANARY_NAME, &sealed).await? {
                // Another replica wrote its canary first: ours must match it.
                let theirs = store.get_meta(CANARY_NAME).await?.unwrap_or_default();
                verify(&key, &theirs)?;
            }
        }
    }
    Ok(key)
}

fn verify(key: &MasterKey, sealed: &[u8]) -> Result<(), MasterKeyError> {
    match key.open(sealed, CANARY_NAME.as_bytes()) {
        Ok(plain) if plain.as_slice() == CANARY => Ok(()),
        Err(EnvelopeError::MissingKey(id)) => Err(MasterKeyError::CanaryKeyMissing(id)),
        _ => Err(MasterKeyError::WrongKey),
    }
}

fn dev_key(data_dir: &Path, database_has_secrets: bool) -> Result<MasterKey, MasterKeyError> {
    let path = data_dir.join(DEV_KEY_FILE);
    let io = |source| MasterKeyError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            tracing::warn!(
                file = %path.display(),
                "{ENV_VAR} is not set: using the development master key file; set {ENV_VAR} in production"
            );
            return MasterKey::from_base64(&text).map_err(|_| MasterKeyError::BadFile(path));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    if database_has_secrets {
        return Err(MasterKeyError::Missing(path));
    }
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let (key, text) = MasterKey::generate()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    tracing::warn!(
        file = %path.display(),
        "!!! {ENV_VAR} is not set: created a DEVELOPMENT master key file. Anyone who can read \
         it can decrypt every signing key and secret. Set {ENV_VAR} (base64 of 32 random bytes) \
         in production !!!"
    );
    Ok(key)
}

/// A random 32-byte secret shared by every replica of this database (e.g.
/// the key behind CSRF tokens), created sealed on first use.
pub async fn shared_secret(
    store: &dyn Store,
    key: &MasterKey,
    name: &str,
) -> Result<zeroize::Zeroizing<[u8; 32]>, MasterKeyError> {
    let open = |sealed: &[u8]| -> Result<zeroize::Zeroizing<[u8; 32]>, MasterKeyError> {
        let plain = key
            .open(sealed, name.as_bytes())
            .map_err(|_| MasterKeyError::WrongKey)?;
        let mut out = zeroize::Zeroizing::new([0u8; 32]);
        if plain.len() != 32 {
            return Err(MasterKeyError::WrongKey);
        }
        out.copy_from_slice(&plain);
        Ok(out)
    };
    if let Some(sealed) = store.get_meta(name).await? {
        return open(&sealed);
    }
    let mut fresh = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(fresh.as_mut()).map_err(|_| EnvelopeError::Random)?;
    let sealed = key.seal(fresh.as_ref(), name.as_bytes())?;
    if store.insert_meta(name, &sealed).await? {
        return Ok(fresh);
    }
    // Another replica was first: use its secret.
    let theirs = store.get_meta(name).await?.unwrap_or_default();
    open(&theirs)
}
