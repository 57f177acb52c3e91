//! The envelope every secret that must be read back is stored in: AES-256-GCM
//! under the master key (`LATCHKEY_MASTER_KEY`), with a fresh random nonce per
//! seal and associated data that binds the ciphertext to the row it belongs to,
//! so a ciphertext copied into another row does not open.
//!
//! Layout: `0x01 ‖ nonce (12) ‖ ciphertext ‖ tag (16)`.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

const VERSION: u8 = 1;
const TAG_LEN: usize = 16;
pub const MASTER_KEY_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the master key must be base64 of exactly 32 bytes")]
    BadMasterKey,
    #[error("sealed value is malformed")]
    Malformed,
    /// Wrong master key, or the value was altered or moved to another row.
    #[error("sealed value does not open under this master key")]
    WrongKey,
    #[error("the system random source failed")]
    Random,
}

/// The AES-256 master key. Never printed; wiped on drop (by aws-lc).
pub struct MasterKey {
    key: LessSafeKey,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() != MASTER_KEY_LEN {
            return Err(EnvelopeError::BadMasterKey);
        }
        let unbound =
            UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| EnvelopeError::BadMasterKey)?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
        })
    }

    /// Parses the `LATCHKEY_MASTER_KEY` form: standard base64 of 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, EnvelopeError> {
        let bytes = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| EnvelopeError::BadMasterKey)?,
        );
        Self::from_bytes(&bytes)
    }

    /// A new random key and its base64 form (for the development key file).
    pub fn generate() -> Result<(Self, Zeroizing<String>), EnvelopeError> {
        let mut bytes = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        getrandom::fill(bytes.as_mut()).map_err(|_| EnvelopeError::Random)?;
        let text = Zeroizing::new(STANDARD.encode(bytes.as_ref()));
        Ok((Self::from_bytes(bytes.as_ref())?, text))
    }

    /// Encrypts `plaintext`; `context` (e.g. `"signing_key:<id>"`) must be
    /// given again to open it.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| EnvelopeError::Random)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut out[1 + NONCE_LEN..],
            )
            .map_err(|_| EnvelopeError::Malformed)?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Decrypts what [`MasterKey::seal`] produced with the same `context`.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        if sealed.len() < 1 + NONCE_LEN + TAG_LEN || sealed[0] != VERSION {
            return Err(EnvelopeError::Malformed);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[1..=NONCE_LEN]);
        let mut buf = Zeroizing::new(sealed[1 + NONCE_LEN..].to_vec());
        let len = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                buf.as_mut(),
            )
            .map_err(|_| EnvelopeError::WrongKey)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn seal_then_open_round_trips() {
        let k = key(7);
        let sealed = k.seal(b"private key bytes", b"signing_key:a").unwrap();
        assert_eq!(sealed[0], VERSION);
        assert!(!sealed.windows(7).any(|w| w == b"private"));
        assert_eq!(
            k.open(&sealed, b"signing_key:a").unwrap().as_slice(),
            b"private key bytes"
        );
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let k = key(7);
        assert_ne!(k.seal(b"x", b"c").unwrap(), k.seal(b"x", b"c").unwrap());
    }

    #[test]
    fn wrong_key_wrong_context_and_tampering_fail() {
        let sealed = key(7).seal(b"secret", b"row:1").unwrap();
        assert_eq!(key(8).open(&sealed, b"row:1"), Err(EnvelopeError::WrongKey));
        assert_eq!(key(7).open(&sealed, b"row:2"), Err(EnvelopeError::WrongKey));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(
            key(7).open(&flipped, b"row:1"),
            Err(EnvelopeError::WrongKey)
        );
        assert_eq!(
            key(7).open(&sealed[..20], b"row:1"),
            Err(EnvelopeError::Malformed)
        );
    }

    #[test]
    fn master_key_text_must_be_32_bytes_of_base64() {
        assert!(MasterKey::from_base64(&STANDARD.encode([1u8; 32])).is_ok());
        assert_eq!(
            MasterKey::from_base64(&STANDARD.encode([1u8; 16])).unwrap_err(),
            EnvelopeError::BadMasterKey
        );
        assert_eq!(
            MasterKey::from_base64("not base64!").unwrap_err(),
            EnvelopeError::BadMasterKey
        );
        let (generated, text) = MasterKey::generate().unwrap();
        let again = MasterKey::from_base64(&text).unwrap();
        let sealed = generated.seal(b"v", b"c").unwrap();
        assert_eq!(again.open(&sealed, b"c").unwrap().as_slice(), b"v");
    }
}
