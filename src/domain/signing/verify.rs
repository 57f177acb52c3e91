//! Verification: inbound webhooks (a signature header or a shared secret),
//! signed URLs, and signed requests for the Check path.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use super::formats::{self, FormatError};
use super::manager::OpenVersion;
use super::strict_url::UrlForm;
use super::{DAY, SigningManager};
use crate::crypto::mac::hmac_sha256;
use crate::crypto::{ct_eq, sha256};
use crate::domain::cache::CacheUse;
use crate::domain::error::Result;
use crate::domain::model::SecretStatus;

/// How long the Check path trusts its copy of a secret's versions. A
/// rotation or revocation on this replica takes effect at once; on other
/// replicas within this time.
const VERIFIER_CACHE_TTL: Duration = Duration::from_secs(10);

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

/// A refusal naming the form, when `url` carries a signature one of
/// `versions` made in the form other than the secret's `form`: the link was
/// made before the secret's form changed, or for another secret. `None`
/// when it was not.
fn other_form(form: UrlForm, versions: &[OpenVersion], url: &str) -> Option<Verification> {
    let other = match form {
        UrlForm::Seed => UrlForm::Strict,
        UrlForm::Strict => UrlForm::Seed,
    };
    let sig = formats::url_signature_as(other, url).ok()?;
    versions
        .iter()
        .any(|v| {
            let expected = hmac_sha256(v.key.expose(), &[sig.canonical.as_bytes()]);
            ct_eq(&expected, &sig.signature)
        })
        .then(|| {
            Verification::no(
                VerifyReason::Invalid,
                format!(
                    "the URL was signed in the {} form; this secret's signed URLs use the {} form",
                    other.tag(),
                    form.tag()
                ),
            )
        })
}

/// A secret's opened versions as the Check path keeps them.
pub(super) struct Opened {
    revoked: bool,
    versions: Vec<OpenVersion>,
}

impl SigningManager {
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
        let parsed = match formats::parse_header(header) {
            Ok(p) => p,
            Err(e) => return format_failure(&e),
        };
        let now = self.clock.now();
        if !formats::within_tolerance(parsed.t, now, self.settings.tolerance_secs) {
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
        match formats::match_header(&parsed, &keys, payload) {
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

    /// A signed URL is valid for its own validity period, under the version
    /// that was current when its timestamp was set.
    ///
    /// The URL is read in the secret's form ([`UrlForm`]); one signed in the
    /// other form is refused, and the message says so.
    pub async fn verify_url(&self, id: &str, url: &str) -> Result<Verification> {
        let Some((form, versions)) = self.opened_with_form(id).await? else {
            return Ok(Verification::no(
                VerifyReason::SecretRevoked,
                "the signing secret was revoked",
            ));
        };
        let sig = match formats::url_signature_as(form, url) {
            Ok(s) => s,
            Err(e) => {
                return Ok(other_form(form, &versions, url).unwrap_or_else(|| format_failure(&e)));
            }
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
        Ok(other_form(form, &versions, url).unwrap_or_else(|| {
            Verification::no(
                VerifyReason::Invalid,
                "the signature does not match the URL",
            )
        }))
    }

    /// The secret's versions as the Check path keeps them: from its cache
    /// (filled on a miss, for `Fill`; only read, for `Peek`), or, for
    /// `Bypass`, straight from the store with the cache untouched.
    async fn opened_for_check(&self, id: &str, cache: CacheUse) -> Result<Arc<Opened>> {
        let now = Instant::now();
        if cache != CacheUse::Bypass
            && let Some((at, opened)) = self
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
        if cache == CacheUse::Fill {
            self.cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id.to_owned(), (now, opened.clone()));
        }
        Ok(opened)
    }

    /// A signed request, for Check: `header` over the canonical request of
    /// (`method`, `path_and_query`, `body_sha256`) under an active version of
    /// `secret_id`, its versions read as `cache` says (Explain: `Bypass`,
    /// then `Peek`). An error means the decision could not be made.
    pub async fn verify_request(
        &self,
        secret_id: &str,
        header: Option<&str>,
        method: &str,
        path_and_query: &str,
        body_sha256: &[u8; 32],
        cache: CacheUse,
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
        let opened = self.opened_for_check(secret_id, cache).await?;
        if opened.revoked {
            return Ok(Verification::no(
                VerifyReason::Invalid,
                "the key's request-signing secret was revoked",
            ));
        }
        let canonical = formats::canonical_request(method, path_and_query, body_sha256);
        Ok(self.check_header(&opened.versions, header, canonical.as_bytes()))
    }
}
