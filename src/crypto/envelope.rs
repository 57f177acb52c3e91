//! The envelope every secret that must be read back is stored in: AES-256-GCM
//! under the master key (`LATCHKEY_MASTER_KEYS`, newest first, or one
//! `LATCHKEY_MASTER_KEY`), with a fresh random nonce per seal and associated
//! data that binds the ciphertext to the row it belongs to, so a ciphertext
//! copied into another row does not open.
//!
//! Layouts (DESIGN.md §6: the key's id beside each ciphertext, so the master
//! key can be rotated):
//! - v2 (written now): `0x02 ‖ key id (8) ‖ nonce (12) ‖ ciphertext ‖ tag (16)`;
//!   the associated data is `0x02 ‖ key id ‖ context`, so the header cannot be
//!   edited either. The key id is the first 8 bytes of SHA-256 of the raw key
//!   (`base64 -d | sha256sum | cut -c1-16`).
//! - v1 (written before key ids existed): `0x01 ‖ nonce (12) ‖ ciphertext ‖ tag`,
//!   associated data `context`. Still opened, by trying each configured key.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

const V1: u8 = 1;
const V2: u8 = 2;
const KEY_ID_LEN: usize = 8;
const V2_HEADER: usize = 1 + KEY_ID_LEN;
const TAG_LEN: usize = 16;
pub const MASTER_KEY_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the master key must be base64 of exactly 32 bytes")]
    BadMasterKey,
    #[error("the master key list is empty")]
    NoMasterKey,
    #[error("master key {0} is listed twice")]
    DuplicateMasterKey(KeyId),
    #[error("sealed value is malformed")]
    Malformed,
    /// The value names a master key this process was not given.
    #[error("sealed value is sealed under master key {0}, which is not configured")]
    MissingKey(KeyId),
    /// Wrong master key, or the value was altered or moved to another row.
    #[error("sealed value does not open under this master key")]
    WrongKey,
    #[error("the system random source failed")]
    Random,
}

/// A master key's public name: the first 8 bytes of SHA-256 of the key,
/// printed as 16 hex digits. Not a secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl KeyId {
    fn of(key: &[u8]) -> Self {
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest(&SHA256, key).as_ref()[..KEY_ID_LEN]);
        Self(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&super::hex(&self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Which key a stored value says it was sealed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedBy {
    Key(KeyId),
    /// The v1 layout, which names no key.
    Unnamed,
}

impl SealedBy {
    pub fn of(sealed: &[u8]) -> Result<Self, EnvelopeError> {
        match sealed.first() {
            Some(&V1) if sealed.len() >= 1 + NONCE_LEN + TAG_LEN => Ok(Self::Unnamed),
            Some(&V2) if sealed.len() >= V2_HEADER + NONCE_LEN + TAG_LEN => {
                let mut id = [0u8; KEY_ID_LEN];
                id.copy_from_slice(&sealed[1..V2_HEADER]);
                Ok(Self::Key(KeyId(id)))
            }
            _ => Err(EnvelopeError::Malformed),
        }
    }
}

struct Slot {
    id: KeyId,
    key: LessSafeKey,
}

impl Slot {
    fn new(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() != MASTER_KEY_LEN {
            return Err(EnvelopeError::BadMasterKey);
        }
        let unbound =
            UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| EnvelopeError::BadMasterKey)?;
        Ok(Self {
            id: KeyId::of(bytes),
            key: LessSafeKey::new(unbound),
        })
    }

    fn open(
        &self,
        nonce: &[u8],
        body: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(nonce);
        let mut buf = Zeroizing::new(body.to_vec());
        let len = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(n),
                Aad::from(aad),
                buf.as_mut(),
            )
            .map_err(|_| EnvelopeError::WrongKey)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

/// The master keys, newest first: the newest seals, every one opens what it
/// sealed. Never printed (only the ids are); wiped on drop (by aws-lc).
pub struct MasterKey {
    /// Never empty.
    slots: Vec<Slot>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        Ok(Self {
            slots: vec![Slot::new(bytes)?],
        })
    }

    /// Parses the `LATCHKEY_MASTER_KEY` form: standard base64 of 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, EnvelopeError> {
        Self::from_list(text)
    }

    /// Parses `LATCHKEY_MASTER_KEYS`: base64 keys separated by commas or
    /// white space, newest first. One key is a list of one.
    pub fn from_list(text: &str) -> Result<Self, EnvelopeError> {
        let mut slots: Vec<Slot> = Vec::new();
        for item in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
        {
            let bytes = Zeroizing::new(
                STANDARD
                    .decode(item)
                    .map_err(|_| EnvelopeError::BadMasterKey)?,
            );
            let slot = Slot::new(&bytes)?;
            if slots.iter().any(|s| s.id == slot.id) {
                return Err(EnvelopeError::DuplicateMasterKey(slot.id));
            }
            slots.push(slot);
        }
        if slots.is_empty() {
            return Err(EnvelopeError::NoMasterKey);
        }
        Ok(Self { slots })
    }

    /// A new random key and its base64 form (for the development key file).
    pub fn generate() -> Result<(Self, Zeroizing<String>), EnvelopeError> {
        let mut bytes = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        getrandom::fill(bytes.as_mut()).map_err(|_| EnvelopeError::Random)?;
        let text = Zeroizing::new(STANDARD.encode(bytes.as_ref()));
        Ok((Self::from_bytes(bytes.as_ref())?, text))
    }

    /// The key that seals.
    pub fn newest(&self) -> KeyId {
        self.slots[0].id
    }

    /// Every configured key, newest first.
    pub fn ids(&self) -> Vec<KeyId> {
        self.slots.iter().map(|s| s.id).collect()
    }

    pub fn holds(&self, id: KeyId) -> bool {
        self.slots.iter().any(|s| s.id == id)
    }

    /// Encrypts `plaintext` under the newest key; `context` (e.g.
    /// `"signing_key:<id>"`) must be given again to open it.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        let slot = &self.slots[0];
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| EnvelopeError::Random)?;
        let mut out = Vec::with_capacity(V2_HEADER + NONCE_LEN + plaintext.len() + TAG_LEN);
        out.push(V2);
        out.extend_from_slice(&slot.id.0);
        let mut aad = Vec::with_capacity(V2_HEADER + context.len());
        aad.extend_from_slice(&out);
        aad.extend_from_slice(context);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = slot
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut out[V2_HEADER + NONCE_LEN..],
            )
            .map_err(|_| EnvelopeError::Malformed)?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Decrypts what [`MasterKey::seal`] produced (now or in the v1 layout)
    /// with the same `context`.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        self.open_with_id(sealed, context).map(|(plain, _)| plain)
    }

    /// As [`MasterKey::open`], also saying which key opened it.
    pub fn open_with_id(
        &self,
        sealed: &[u8],
        context: &[u8],
    ) -> Result<(Zeroizing<Vec<u8>>, KeyId), EnvelopeError> {
        match SealedBy::of(sealed)? {
            SealedBy::Key(id) => {
                let slot = self
                    .slots
                    .iter()
                    .find(|s| s.id == id)
                    .ok_or(EnvelopeError::MissingKey(id))?;
                let (header, rest) = sealed.split_at(V2_HEADER);
                let mut aad = Vec::with_capacity(V2_HEADER + context.len());
                aad.extend_from_slice(header);
                aad.extend_from_slice(context);
                let (nonce, body) = rest.split_at(NONCE_LEN);
                Ok((slot.open(nonce, body, &aad)?, id))
            }
            SealedBy::Unnamed => {
                let (nonce, body) = sealed[1..].split_at(NONCE_LEN);
                self.slots
                    .iter()
                    .find_map(|s| s.open(nonce, body, context).ok().map(|p| (p, s.id)))
                    .ok_or(EnvelopeError::WrongKey)
            }
        }
    }

    /// `sealed` under the newest key, or `None` when it is there already.
    pub fn reseal(&self, sealed: &[u8], context: &[u8]) -> Result<Option<Vec<u8>>, EnvelopeError> {
        if SealedBy::of(sealed)? == SealedBy::Key(self.newest()) {
            return Ok(None);
        }
        let plain = self.open(sealed, context)?;
        self.seal(&plain, context).map(Some)
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
        assert_eq!(sealed[0], V2);
        assert_eq!(SealedBy::of(&sealed).unwrap(), SealedBy::Key(k.newest()));
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
        assert_eq!(
            key(8).open(&sealed, b"row:1"),
            Err(EnvelopeError::MissingKey(key(7).newest()))
        );
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

    /// What a pre-key-id release wrote: `0x01 ‖ nonce ‖ ciphertext ‖ tag`.
    fn seal_v1(bytes: &[u8; 32], plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).unwrap());
        let nonce = [9u8; NONCE_LEN];
        let mut out = vec![V1];
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut out[1 + NONCE_LEN..],
            )
            .unwrap();
        out.extend_from_slice(tag.as_ref());
        out
    }

    fn b64(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    #[test]
    fn key_id_is_the_start_of_the_keys_sha256() {
        // printf '\x07%.0s' {1..32} | sha256sum
        let expected = crate::crypto::hex(&crate::crypto::sha256(&[7u8; 32])[..8]);
        assert_eq!(key(7).newest().to_string(), expected);
        assert_ne!(key(7).newest(), key(8).newest());
    }

    #[test]
    fn v1_values_still_open_under_any_listed_key() {
        let old = seal_v1(&[7u8; 32], b"legacy", b"row:1");
        assert_eq!(SealedBy::of(&old).unwrap(), SealedBy::Unnamed);
        assert_eq!(key(7).open(&old, b"row:1").unwrap().as_slice(), b"legacy");
        let both = MasterKey::from_list(&format!("{},{}", b64(8), b64(7))).unwrap();
        let (plain, id) = both.open_with_id(&old, b"row:1").unwrap();
        assert_eq!((plain.as_slice(), id), (&b"legacy"[..], key(7).newest()));
        assert_eq!(both.open(&old, b"row:2"), Err(EnvelopeError::WrongKey));
        assert_eq!(key(8).open(&old, b"row:1"), Err(EnvelopeError::WrongKey));
    }

    #[test]
    fn a_list_seals_with_its_first_key_and_opens_with_all() {
        let old = key(7).seal(b"v", b"c").unwrap();
        let list = MasterKey::from_list(&format!(" {}\n{} ", b64(8), b64(7))).unwrap();
        assert_eq!(list.ids(), vec![key(8).newest(), key(7).newest()]);
        assert_eq!(list.open(&old, b"c").unwrap().as_slice(), b"v");
        let new = list.seal(b"v", b"c").unwrap();
        assert_eq!(SealedBy::of(&new).unwrap(), SealedBy::Key(key(8).newest()));
        assert_eq!(
            key(7).open(&new, b"c"),
            Err(EnvelopeError::MissingKey(key(8).newest()))
        );
        let resealed = list.reseal(&old, b"c").unwrap().unwrap();
        assert_eq!(key(8).open(&resealed, b"c").unwrap().as_slice(), b"v");
        assert_eq!(list.reseal(&resealed, b"c").unwrap(), None);
        assert_eq!(list.reseal(&old, b"other"), Err(EnvelopeError::WrongKey));
    }

    #[test]
    fn the_header_is_authenticated() {
        let both = MasterKey::from_list(&format!("{},{}", b64(8), b64(7))).unwrap();
        let mut sealed = both.seal(b"v", b"c").unwrap();
        // Pointing the header at the other listed key does not open it.
        sealed[1..V2_HEADER].copy_from_slice(&key(7).newest().0);
        assert_eq!(both.open(&sealed, b"c"), Err(EnvelopeError::WrongKey));
        // Nor does rewriting it as a v1 value.
        let v2 = both.seal(b"v", b"c").unwrap();
        let mut as_v1 = vec![V1];
        as_v1.extend_from_slice(&v2[V2_HEADER..]);
        assert_eq!(both.open(&as_v1, b"c"), Err(EnvelopeError::WrongKey));
    }

    #[test]
    fn bad_lists_are_refused() {
        assert_eq!(
            MasterKey::from_list(" , ").unwrap_err(),
            EnvelopeError::NoMasterKey
        );
        assert_eq!(
            MasterKey::from_list(&format!("{},{}", b64(7), b64(7))).unwrap_err(),
            EnvelopeError::DuplicateMasterKey(key(7).newest())
        );
        assert_eq!(
            MasterKey::from_list(&format!("{},short", b64(7))).unwrap_err(),
            EnvelopeError::BadMasterKey
        );
    }
}
