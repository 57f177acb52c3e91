//! Signing secrets: HMAC-SHA256 secrets that belong to an (account, mode),
//! versioned, sealed at rest under the master key (DESIGN.md §6), and the
//! operations on them: webhook headers, signed URLs, signed requests.
//!
//! Versions and rotation. Rotating makes a new current version; the previous
//! one stays *active* for an overlap window (default 24 h), during which
//! webhook headers carry one `v1` per active version and both verify webhooks
//! and signed requests. Once the overlap has ended the old version is rotated
//! out: it never signs again and verifies only what it signed before the
//! rotation (signed URLs, each for its own validity period). A revoked secret
//! signs and verifies nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::accounts::validate_name;
use super::error::{Error, Result};
use super::model::{
    KeyRecord, LiveStatus, Millis, Mode, SecretStatus, SecretVersionRecord, SigningSecretRecord,
    new_id, valid_id, version_context,
};
use super::resolver::KeyResolver;
use super::sigfmt::{self, FormatError};
use crate::crypto::envelope::MasterKey;
use crate::crypto::mac::{hmac_sha256, random_secret};
use crate::crypto::secret::Secret;
use crate::crypto::{ct_eq, sha256};
use crate::ports::{Clock, SigningStore, Store, StoreError};

pub const SECRET_ID_PREFIX: &str = "sig";
/// Printed before every signing secret, so scanners can recognise a leak.
pub const SECRET_PREFIX: &str = "whsec_";
const DAY: i64 = 86_400;
/// How long the Check path trusts its copy of a secret's versions. A
/// rotation or revocation on this replica takes effect at once; on other
/// replicas within this time.
const VERIFIER_CACHE_TTL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct SigningSettings {
    /// How far a signature header's `t` may be from now. Default 300.
    pub tolerance_secs: i64,
    /// How long a signed URL is valid after its `timestamp`. Default 30 days.
    pub url_validity_secs: i64,
    /// How long the previous version stays active after a rotation. Default 24 h.
    pub default_overlap_secs: i64,
    pub max_overlap_secs: i64,
    /// Headers `VerifyWebhook` looks for a signature in, lower-case, in order.
    pub webhook_headers: Vec<String>,
    /// Header a shared secret may arrive in instead (inbound webhooks that
    /// pass the secret itself, as e-conomic's do). `None` = not accepted.
    pub webhook_secret_header: Option<String>,
    /// Header carrying a signed request's signature. Default `x-latchkey-signature`.
    pub request_header: String,
    /// Path prefix feed-token keys are confined to; `None` = feed keys are refused.
    pub feed_path_prefix: Option<String>,
}

impl Default for SigningSettings {
    fn default() -> Self {
        Self {
            tolerance_secs: 300,
            url_validity_secs: 30 * DAY,
            default_overlap_secs: DAY,
            max_overlap_secs: 30 * DAY,
            webhook_headers: vec![
                "x-webhook-signature".to_owned(),
                "x-latchkey-signature".to_owned(),
            ],
            webhook_secret_header: None,
            request_header: "x-latchkey-signature".to_owned(),
            feed_path_prefix: None,
        }
    }
}

/// A secret with its versions, newest first.
#[derive(Debug, Clone)]
pub struct SecretWithVersions {
    pub secret: SigningSecretRecord,
    pub versions: Vec<SecretVersionRecord>,
}

/// A secret and the plaintext of its newest version, to show once.
pub struct IssuedSecret {
    pub secret: SecretWithVersions,
    pub plaintext: Secret<String>,
}

/// Why a verification came out as it did. Stable codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyReason {
    Valid,
    /// No signature was found where one was expected.
    Missing,
    /// The signature or URL is not in the expected format.
    Malformed,
    /// The timestamp is outside the tolerance, or the URL's validity has passed.
    Expired,
    /// No active version made this signature.
    Invalid,
    /// The secret was revoked: nothing verifies.
    SecretRevoked,
}

impl VerifyReason {
    pub fn code(self) -> &'static str {
        match self {
            VerifyReason::Valid => "VALID",
            VerifyReason::Missing => "SIGNATURE_MISSING",
            VerifyReason::Malformed => "SIGNATURE_MALFORMED",
            VerifyReason::Expired => "SIGNATURE_EXPIRED",
            VerifyReason::Invalid => "SIGNATURE_INVALID",
            VerifyReason::SecretRevoked => "SECRET_REVOKED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub reason: VerifyReason,
    /// The version that matched, when valid.
    pub version: Option<i64>,
    /// For humans; never secret material.
    pub message: String,
}

impl Verification {
    pub fn valid(&self) -> bool {
        self.reason == VerifyReason::Valid
    }

    fn ok(version: i64) -> Self {
        Self {
            reason: VerifyReason::Valid,
            version: Some(version),
            message: String::new(),
        }
    }

    fn no(reason: VerifyReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            version: None,
            message: message.into(),
        }
    }
}

fn format_failure(e: &FormatError) -> Verification {
    let reason = match e {
        FormatError::MissingSignature | FormatError::NoUrlSignature => VerifyReason::Missing,
        _ => VerifyReason::Malformed,
    };
    Verification::no(reason, e.to_string())
}

/// An opened version: its number, times, and HMAC key.
struct OpenVersion {
    version: i64,
    created_at: Millis,
    retired_at: Option<Millis>,
    overlap_ends_at: Option<Millis>,
    key: Secret<Vec<u8>>,
}

/// A secret's opened versions as the Check path keeps them.
struct Opened {
    revoked: bool,
    versions: Vec<OpenVersion>,
}

pub struct SigningManager {
    store: Arc<dyn SigningStore>,
    keys: Arc<dyn Store>,
    resolver: Arc<KeyResolver>,
    master_key: Arc<MasterKey>,
    clock: Arc<dyn Clock>,
    settings: SigningSettings,
    cache: Mutex<HashMap<String, (Instant, Arc<Opened>)>>,
}

impl SigningManager {
    pub fn new(
        store: Arc<dyn SigningStore>,
        keys: Arc<dyn Store>,
        resolver: Arc<KeyResolver>,
        master_key: Arc<MasterKey>,
        clock: Arc<dyn Clock>,
        settings: SigningSettings,
    ) -> Self {
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
            .map_err(|e| Error::Store(StoreError::Internal(format!("sealing secret {id}: {e}"))))
    }

    fn open(&self, v: &SecretVersionRecord) -> Result<OpenVersion> {
        let plain = self
            .master_key
            .open(
                &v.sealed,
                version_context(&v.secret_id, v.version).as_bytes(),
            )
            .map_err(|e| {
                Error::Store(StoreError::Internal(format!(
                    "secret {} v{} does not open: {e}",
                    v.secret_id, v.version
                )))
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
        random_secret(SECRET_PREFIX)
            .map_err(|e| Error::Store(StoreError::Internal(format!("random source failed: {e}"))))
    }

    fn forget(&self, id: &str) {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    pub async fn create(&self, account_id: &str, mode: Mode, name: &str) -> Result<IssuedSecret> {
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

    /// The secret's versions, opened, for an operation that must not run on a
    /// revoked secret (`Ok(None)` then).
    async fn opened(&self, id: &str) -> Result<Option<Vec<OpenVersion>>> {
        let s = self.get(id).await?;
        if s.secret.status == SecretStatus::Revoked {
            return Ok(None);
        }
        s.versions
            .iter()
            .map(|v| self.open(v))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    fn revoked_error(id: &str) -> Error {
        Error::FailedPrecondition(format!("signing secret `{id}` is revoked"))
    }

    /// A webhook signature header for `payload`, signed now: one `v1` per active version.
    pub async fn sign(&self, id: &str, payload: &[u8]) -> Result<String> {
        let versions = self
            .opened(id)
            .await?
            .ok_or_else(|| Self::revoked_error(id))?;
        let now = self.clock.now();
        let keys: Vec<&[u8]> = versions
            .iter()
            .filter(|v| v.overlap_ends_at.is_none_or(|end| now < end))
            .map(|v| v.key.expose().as_slice())
            .collect();
        Ok(sigfmt::sign_header(now.div_euclid(1000), &keys, payload))
    }

    /// Checks a signature header over `payload` against the active versions.
    pub async fn verify(&self, id: &str, payload: &[u8], header: &str) -> Result<Verification> {
        let Some(versions) = self.opened(id).await? else {
            return Ok(Verification::no(
                VerifyReason::SecretRevoked,
                "the signing secret was revoked",
            ));
        };
        if header.trim().is_empty() {
            return Ok(Verification::no(
                VerifyReason::Missing,
                "no signature header was given",
            ));
        }
        Ok(self.check_header(&versions, header, payload))
    }

    fn check_header(&self, versions: &[OpenVersion], header: &str, payload: &[u8]) -> Verification {
        let parsed = match sigfmt::parse_header(header) {
            Ok(p) => p,
            Err(e) => return format_failure(&e),
        };
        let now = self.clock.now();
        if !sigfmt::within_tolerance(parsed.t, now, self.settings.tolerance_secs) {
            return Verification::no(
                VerifyReason::Expired,
                format!(
                    "the signature's timestamp is more than {} seconds from now",
                    self.settings.tolerance_secs
                ),
            );
        }
        let active: Vec<&OpenVersion> = versions
            .iter()
            .filter(|v| v.overlap_ends_at.is_none_or(|end| now < end))
            .collect();
        let keys: Vec<&[u8]> = active.iter().map(|v| v.key.expose().as_slice()).collect();
        match sigfmt::match_header(&parsed, &keys, payload) {
            Some(i) => Verification::ok(active[i].version),
            None => Verification::no(
                VerifyReason::Invalid,
                "no signature matches an active version of the secret",
            ),
        }
    }

    /// Inbound webhook: the raw body and the request's headers (names
    /// lower-case). A signature header is looked for first; failing that, a
    /// shared secret in the configured secret header.
    pub async fn verify_webhook(
        &self,
        id: &str,
        body: &[u8],
        headers: &HashMap<String, String>,
    ) -> Result<Verification> {
        let Some(versions) = self.opened(id).await? else {
            return Ok(Verification::no(
                VerifyReason::SecretRevoked,
                "the signing secret was revoked",
            ));
        };
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        if let Some(sig) = self.settings.webhook_headers.iter().find_map(|h| header(h)) {
            return Ok(self.check_header(&versions, sig, body));
        }
        if let Some(shared) = self
            .settings
            .webhook_secret_header
            .as_deref()
            .and_then(header)
        {
            let now = self.clock.now();
            // Compare digests: equal length, constant time, whatever was sent.
            let sent = sha256(shared.as_bytes());
            let matched = versions
                .iter()
                .filter(|v| v.overlap_ends_at.is_none_or(|end| now < end))
                .find(|v| ct_eq(&sha256(v.key.expose()), &sent));
            return Ok(match matched {
                Some(v) => Verification::ok(v.version),
                None => Verification::no(
                    VerifyReason::Invalid,
                    "the shared secret does not match an active version",
                ),
            });
        }
        Ok(Verification::no(
            VerifyReason::Missing,
            format!(
                "none of the signature headers ({}) is present",
                self.settings.webhook_headers.join(", ")
            ),
        ))
    }

    /// `url` with `timestamp` (now) and `signature` (current version) added.
    pub async fn sign_url(&self, id: &str, url: &str) -> Result<String> {
        let versions = self
            .opened(id)
            .await?
            .ok_or_else(|| Self::revoked_error(id))?;
        let current = versions
            .iter()
            .find(|v| v.retired_at.is_none())
            .ok_or_else(|| {
                Error::Store(StoreError::Internal(format!(
                    "secret {id} has no current version"
                )))
            })?;
        sigfmt::sign_url(url, current.key.expose(), self.clock.now())
            .map_err(|e| Error::invalid("url", e.to_string()))
    }

    /// A signed URL is valid for its own validity period, under the version
    /// that was current when its timestamp was set.
    pub async fn verify_url(&self, id: &str, url: &str) -> Result<Verification> {
        let Some(versions) = self.opened(id).await? else {
            return Ok(Verification::no(
                VerifyReason::SecretRevoked,
                "the signing secret was revoked",
            ));
        };
        let sig = match sigfmt::url_signature(url) {
            Ok(s) => s,
            Err(e) => return Ok(format_failure(&e)),
        };
        let now = self.clock.now();
        let skew = self.settings.tolerance_secs * 1000;
        if sig.timestamp > now + skew {
            return Ok(Verification::no(
                VerifyReason::Invalid,
                "the URL's timestamp is in the future",
            ));
        }
        if now - sig.timestamp > self.settings.url_validity_secs * 1000 {
            return Ok(Verification::no(
                VerifyReason::Expired,
                format!(
                    "the signed URL is older than {} days",
                    self.settings.url_validity_secs / DAY
                ),
            ));
        }
        for v in &versions {
            let expected = hmac_sha256(v.key.expose(), &[sig.canonical.as_bytes()]);
            let signed_in_its_time = sig.timestamp >= v.created_at - skew
                && v.retired_at.is_none_or(|retired| sig.timestamp <= retired);
            if ct_eq(&expected, &sig.signature) && signed_in_its_time {
                return Ok(Verification::ok(v.version));
            }
        }
        Ok(Verification::no(
            VerifyReason::Invalid,
            "the signature does not match the URL",
        ))
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
        match self.keys.update_key(&key).await {
            Err(StoreError::Conflict) => return Err(Error::Conflict("key")),
            other => other?,
        }
        self.resolver.invalidate_key(&key.key_hash);
        Ok(key)
    }

    async fn opened_cached(&self, id: &str) -> Result<Arc<Opened>> {
        let now = Instant::now();
        if let Some((at, opened)) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            && now.duration_since(*at) < VERIFIER_CACHE_TTL
        {
            return Ok(opened.clone());
        }
        let s = self.get(id).await?;
        let opened = Arc::new(Opened {
            revoked: s.secret.status == SecretStatus::Revoked,
            versions: s
                .versions
                .iter()
                .map(|v| self.open(v))
                .collect::<Result<Vec<_>>>()?,
        });
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_owned(), (now, opened.clone()));
        Ok(opened)
    }

    /// A signed request, for Check: `header` over the canonical request of
    /// (`method`, `path_and_query`, `body_sha256`) under an active version of
    /// `secret_id`. An error means the decision could not be made.
    pub async fn verify_request(
        &self,
        secret_id: &str,
        header: Option<&str>,
        method: &str,
        path_and_query: &str,
        body_sha256: &[u8; 32],
    ) -> Result<Verification> {
        let Some(header) = header.filter(|h| !h.trim().is_empty()) else {
            return Ok(Verification::no(
                VerifyReason::Missing,
                format!(
                    "the key requires signed requests; the `{}` header is missing",
                    self.settings.request_header
                ),
            ));
        };
        let opened = self.opened_cached(secret_id).await?;
        if opened.revoked {
            return Ok(Verification::no(
                VerifyReason::Invalid,
                "the key's request-signing secret was revoked",
            ));
        }
        let canonical = sigfmt::canonical_request(method, path_and_query, body_sha256);
        Ok(self.check_header(&opened.versions, header, canonical.as_bytes()))
    }
}

/// Is `id` shaped like a signing secret id?
pub fn valid_secret_id(id: &str) -> bool {
    valid_id(id, SECRET_ID_PREFIX)
}
