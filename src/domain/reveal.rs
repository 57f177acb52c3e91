//! One-time reveal links (DESIGN.md §6): a credential regenerated on someone's
//! behalf is handed over as an opaque token instead of in the response. The
//! token is stored only as its SHA-256; the plaintext it reveals is sealed
//! under the master key, bound to that hash. It is valid for 60 minutes and
//! redeems exactly once: redemption is one conditional `DELETE … RETURNING`,
//! so when two redemptions race, exactly one gets the secret.
//!
//! Other features hand out reveal links through [`RevealManager::create`].

use std::sync::Arc;

use super::error::{Error, Result};
use super::model::{Millis, RevealRecord, reveal_context};
use crate::crypto::envelope::MasterKey;
use crate::crypto::mac::random_secret;
use crate::crypto::secret::Secret;
use crate::crypto::sha256;
use crate::ports::{Clock, RevealStore};

/// Every reveal token starts with this, so scanners can recognise one.
pub const TOKEN_PREFIX: &str = "lkrv_";
const TOKEN_LEN: usize = TOKEN_PREFIX.len() + 43;
pub const DEFAULT_TTL_SECS: i64 = 60 * 60;

/// A link to hand out in place of the plaintext.
#[derive(Debug)]
pub struct RevealLink {
    /// `lkrv_…`; redeem with `RevealService/RevealSecret` or `GET /reveal/<token>`.
    pub token: Secret<String>,
    pub expires_at: Millis,
}

/// What a redeemed token gave.
#[derive(Debug)]
pub struct Revealed {
    pub secret: Secret<String>,
    pub kind: String,
    pub subject_id: String,
}

pub struct RevealManager {
    store: Arc<dyn RevealStore>,
    master_key: Arc<MasterKey>,
    clock: Arc<dyn Clock>,
    ttl_secs: i64,
}

impl RevealManager {
    pub fn new(
        store: Arc<dyn RevealStore>,
        master_key: Arc<MasterKey>,
        clock: Arc<dyn Clock>,
        ttl_secs: i64,
    ) -> Self {
        Self {
            store,
            master_key,
            clock,
            ttl_secs,
        }
    }

    /// Stores `plaintext` (sealed) behind a fresh one-time token. `kind` names
    /// what it is (e.g. `oauth_client_secret`) and `subject_id` whose it is;
    /// both come back on redemption.
    pub async fn create(
        &self,
        plaintext: &Secret<String>,
        kind: &str,
        subject_id: &str,
    ) -> Result<RevealLink> {
        let token = random_secret(TOKEN_PREFIX)
            .map_err(|e| Error::internal("generating a reveal token", e))?;
        let token_hash = sha256(token.expose().as_bytes());
        let sealed = self
            .master_key
            .seal(
                plaintext.expose().as_bytes(),
                reveal_context(&token_hash).as_bytes(),
            )
            .map_err(|e| Error::internal("sealing a reveal", e))?;
        let now = self.clock.now();
        let record = RevealRecord {
            token_hash,
            sealed,
            kind: kind.to_owned(),
            subject_id: subject_id.to_owned(),
            created_at: now,
            expires_at: now + self.ttl_secs * 1000,
        };
        self.store.insert_reveal(&record).await?;
        Ok(RevealLink {
            token,
            expires_at: record.expires_at,
        })
    }

    /// Redeems `token` once. Unknown, expired and already-used tokens get the
    /// same answer, so the answer says nothing about which it was; a string
    /// that is not shaped like a token is refused as such.
    pub async fn redeem(&self, token: &str) -> Result<Revealed> {
        let gone = || Error::NotFound {
            what: "reveal link",
            id: "(unknown, expired or already used)".to_owned(),
        };
        let token = token.trim();
        if token.is_empty() {
            return Err(Error::invalid("token", "is required"));
        }
        // The shape says nothing about any stored token, so it may be named.
        if token.len() != TOKEN_LEN
            || !token.starts_with(TOKEN_PREFIX)
            || !token[TOKEN_PREFIX.len()..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Error::invalid(
                "token",
                format!("is not a reveal token ({TOKEN_PREFIX} and 43 base64url characters)"),
            ));
        }
        let token_hash = sha256(token.as_bytes());
        let record = self
            .store
            .take_reveal(&token_hash, self.clock.now())
            .await?
            .ok_or_else(gone)?;
        let plain = self
            .master_key
            .open(&record.sealed, reveal_context(&token_hash).as_bytes())
            .map_err(|e| Error::internal("opening a reveal", e))?;
        let secret = String::from_utf8(plain.to_vec())
            .map_err(|e| Error::internal("decoding a revealed secret", e))?;
        Ok(Revealed {
            secret: Secret::new(secret),
            kind: record.kind,
            subject_id: record.subject_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_no_secret_material() {
        let record = RevealRecord {
            token_hash: [0xab; 32],
            sealed: b"sealed-bytes".to_vec(),
            kind: "api_key".into(),
            subject_id: "key_1".into(),
            created_at: 0,
            expires_at: 1,
        };
        let shown = format!("{record:?}");
        assert!(
            !shown.contains("abab") && !shown.contains("115, 101"),
            "{shown}"
        );
        let link = RevealLink {
            token: Secret::new("lkrv_topsecret".to_owned()),
            expires_at: 1,
        };
        assert!(!format!("{link:?}").contains("topsecret"));
        assert_eq!(
            reveal_context(&[0u8; 32]),
            format!("reveal:{}", "0".repeat(64))
        );
    }
}
