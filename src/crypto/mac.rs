//! HMAC-SHA256 (RFC 2104) and the random secrets it is keyed with.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::secret::Secret;

/// HMAC-SHA256 of the concatenation of `parts` under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes a key of any length (RFC 2104 §2), so this cannot fail.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        return [0; 32];
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Decodes 64 hex digits (either case) into 32 bytes.
pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// `<prefix>` followed by 32 random bytes in unpadded base64url: 256 bits, printable,
/// safe in URLs and headers. The whole string is the HMAC key.
pub fn random_secret(prefix: &str) -> Result<Secret<String>, getrandom::Error> {
    use base64::Engine;
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut())?;
    let mut s = String::with_capacity(prefix.len() + 43);
    s.push_str(prefix);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(bytes.as_ref(), &mut s);
    Ok(Secret::new(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_test_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            crate::crypto::hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hex32_round_trips_and_rejects_junk() {
        let bytes = [0xabu8; 32];
        assert_eq!(parse_hex32(&crate::crypto::hex(&bytes)), Some(bytes));
        assert_eq!(parse_hex32(&"AB".repeat(32)), Some(bytes));
        assert_eq!(parse_hex32(&"ab".repeat(31)), None);
        assert_eq!(parse_hex32(&format!("{}zz", "ab".repeat(31))), None);
        assert_eq!(parse_hex32(&format!("{}+f", "ab".repeat(31))), None);
    }

    #[test]
    fn random_secrets_differ_and_carry_the_prefix() {
        let a = random_secret("whsec_").unwrap();
        let b = random_secret("whsec_").unwrap();
        assert!(a.expose().starts_with("whsec_"));
        assert_eq!(a.expose().len(), 6 + 43);
        assert_ne!(a.expose(), b.expose());
    }
}
