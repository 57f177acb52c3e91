//! Signatures made now: webhook signature headers and signed URLs, under
//! the secret's active (or current) versions.

use super::SigningManager;
use super::formats;
use crate::domain::error::{Error, Result};
use crate::ports::StoreError;

impl SigningManager {
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
        Ok(formats::sign_header(now.div_euclid(1000), &keys, payload))
    }

    /// `url` with `timestamp` (now) and `signature` (current version) added,
    /// in the secret's signed-URL form.
    pub async fn sign_url(&self, id: &str, url: &str) -> Result<String> {
        let (form, versions) = self
            .opened_with_form(id)
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
        formats::sign_url_as(form, url, current.key.expose(), self.clock.now())
            .map_err(|e| Error::invalid("url", e.to_string()))
    }
}
