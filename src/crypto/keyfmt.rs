//! API key wire format: `<prefix>_<mode>_<kind>_<body>`.
//!
//! The body is 30 base62 characters of randomness (≈178 bits) followed by a
//! 6-character base62 CRC-32 over everything before it, the scheme GitHub uses
//! for its tokens: a typo or a guessed string is rejected before any lookup,
//! and secret scanners can recognise a leaked key with no false positives.

use std::fmt;

use super::secret::Secret;

pub const RANDOM_LEN: usize = 30;
pub const CHECKSUM_LEN: usize = 6;
pub const BODY_LEN: usize = RANDOM_LEN + CHECKSUM_LEN;
/// Longest prefix a deployment may configure.
pub const MAX_PREFIX_LEN: usize = 8;
/// No valid key is longer than this; longer input is refused without work.
pub const MAX_KEY_LEN: usize = MAX_PREFIX_LEN + 1 + 4 + 1 + 2 + 1 + BODY_LEN;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a string is not a well-formed key. Carries no part of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("credential is not of the form <prefix>_<mode>_<kind>_<body>")]
    Shape,
    #[error("credential prefix is not this deployment's")]
    Prefix,
    #[error("credential mode must be `test` or `live`")]
    Mode,
    #[error("credential kind must be `sk`, `pk`, `rk` or `fk`")]
    Kind,
    #[error("credential body is not {BODY_LEN} base62 characters")]
    Body,
    #[error("credential checksum does not match")]
    Checksum,
    #[error("the system random number generator failed")]
    Random,
}

/// The parts of a well-formed key. Mode and kind are the wire tags
/// (`test`/`live`, `sk`/`pk`/`rk`); the domain maps them to its types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyParts<'a> {
    pub mode: &'a str,
    pub kind: &'a str,
}

/// Is `prefix` usable as a deployment prefix: 1..=8 of `[a-z0-9]`, starting with a letter.
pub fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= MAX_PREFIX_LEN
        && prefix.as_bytes()[0].is_ascii_lowercase()
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Checks shape, prefix and checksum. Does no I/O and allocates nothing.
pub fn parse<'a>(key: &'a str, expected_prefix: &str) -> Result<KeyParts<'a>, KeyFormatError> {
    if key.len() > MAX_KEY_LEN || !key.is_ascii() {
        return Err(KeyFormatError::Shape);
    }
    let mut parts = key.splitn(4, '_');
    let (Some(prefix), Some(mode), Some(kind), Some(body)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(KeyFormatError::Shape);
    };
    if prefix != expected_prefix {
        return Err(KeyFormatError::Prefix);
    }
    if !matches!(mode, "test" | "live") {
        return Err(KeyFormatError::Mode);
    }
    if !matches!(kind, "sk" | "pk" | "rk" | "fk") {
        return Err(KeyFormatError::Kind);
    }
    if body.len() != BODY_LEN || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(KeyFormatError::Body);
    }
    let (signed, checksum) = key.split_at(key.len() - CHECKSUM_LEN);
    if checksum.as_bytes() != encode_checksum(signed).as_slice() {
        return Err(KeyFormatError::Checksum);
    }
    Ok(KeyParts { mode, kind })
}

/// A fresh key with the given prefix and tags. The caller validated the prefix.
pub fn generate(prefix: &str, mode: &str, kind: &str) -> Result<Secret<String>, KeyFormatError> {
    let mut key = String::with_capacity(MAX_KEY_LEN);
    key.push_str(prefix);
    key.push('_');
    key.push_str(mode);
    key.push('_');
    key.push_str(kind);
    key.push('_');
    random_base62_into(&mut key, RANDOM_LEN)?;
    let checksum = encode_checksum(&key);
    key.push_str(std::str::from_utf8(&checksum).map_err(|_| KeyFormatError::Body)?);
    Ok(Secret::new(key))
}

/// `n` unbiased base62 characters from the OS generator (rejection sampling).
pub fn random_base62_into(out: &mut String, n: usize) -> Result<(), KeyFormatError> {
    let mut produced = 0;
    let mut buf = [0u8; 64];
    while produced < n {
        getrandom::fill(&mut buf).map_err(|_| KeyFormatError::Random)?;
        for &b in &buf {
            // 248 = 4 × 62: bytes above it would bias the first characters.
            if b < 248 && produced < n {
                out.push(ALPHABET[usize::from(b % 62)] as char);
                produced += 1;
            }
        }
    }
    Ok(())
}

fn encode_checksum(signed: &str) -> [u8; CHECKSUM_LEN] {
    let mut value = crc32fast::hash(signed.as_bytes());
    let mut out = [b'0'; CHECKSUM_LEN];
    // 62^6 > 2^32, so six digits hold any CRC-32; most significant first.
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    out
}

/// `lk_live_sk_…4f2a`: enough to recognise a key, nothing to use it.
pub fn mask(prefix: &str, mode: &str, kind: &str, last4: &str) -> String {
    format!("{prefix}_{mode}_{kind}_…{last4}")
}

/// The last four characters of a key, kept for masked display. Characters,
/// not bytes: on a string that is not ASCII a byte offset could fall inside
/// a character and panic (found by fuzz/fuzz_targets/key_format.rs).
pub fn last4(key: &str) -> &str {
    let start = key.char_indices().rev().nth(3).map_or(0, |(i, _)| i);
    &key[start..]
}

impl fmt::Display for KeyParts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.mode, self.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last4_counts_characters_never_splitting_one() {
        assert_eq!(last4("lk_live_sk_abcdef"), "cdef");
        assert_eq!(last4("abc"), "abc");
        assert_eq!(last4(""), "");
        assert_eq!(last4("x\u{2d9}"), "x\u{2d9}");
        assert_eq!(last4("ab\u{2d9}cde"), "\u{2d9}cde");
    }
    use proptest::prelude::*;

    fn fresh(prefix: &str, mode: &str, kind: &str) -> String {
        generate(prefix, mode, kind).unwrap().expose().clone()
    }

    #[test]
    fn generated_keys_parse() {
        let key = fresh("lk", "live", "sk");
        assert!(key.starts_with("lk_live_sk_"));
        assert_eq!(key.len(), "lk_live_sk_".len() + BODY_LEN);
        assert_eq!(
            parse(&key, "lk"),
            Ok(KeyParts {
                mode: "live",
                kind: "sk"
            })
        );
    }

    #[test]
    fn wrong_prefix_mode_kind_are_named() {
        let key = fresh("bk", "test", "pk");
        assert_eq!(parse(&key, "lk"), Err(KeyFormatError::Prefix));
        assert_eq!(
            parse(&key.replacen("test", "prod", 1), "bk"),
            Err(KeyFormatError::Mode)
        );
        assert_eq!(
            parse(&key.replacen("_pk_", "_xk_", 1), "bk"),
            Err(KeyFormatError::Kind)
        );
        assert_eq!(parse("bk_test_pk_short", "bk"), Err(KeyFormatError::Body));
        assert_eq!(parse("nonsense", "bk"), Err(KeyFormatError::Shape));
        assert_eq!(parse("", "bk"), Err(KeyFormatError::Shape));
    }

    #[test]
    fn mask_shows_only_the_tail() {
        let key = fresh("lk", "live", "sk");
        let masked = mask("lk", "live", "sk", last4(&key));
        assert!(masked.starts_with("lk_live_sk_…"));
        assert!(masked.ends_with(last4(&key)));
        assert_eq!(masked.chars().count(), "lk_live_sk_…".chars().count() + 4);
    }

    #[test]
    fn prefixes() {
        assert!(valid_prefix("lk") && valid_prefix("bk") && valid_prefix("acme2"));
        assert!(!valid_prefix("") && !valid_prefix("Lk") && !valid_prefix("l_k"));
        assert!(!valid_prefix("2k") && !valid_prefix("waytoolong"));
    }

    proptest! {
        #[test]
        fn any_single_character_change_is_rejected(pos in 11usize..(11 + BODY_LEN), c in proptest::char::range('0', 'z')) {
            let key = fresh("lk", "test", "rk");
            let mut bytes = key.clone().into_bytes();
            prop_assume!(c.is_ascii_alphanumeric() && bytes[pos] != c as u8);
            bytes[pos] = c as u8;
            let typo = String::from_utf8(bytes).unwrap();
            prop_assert_eq!(parse(&typo, "lk"), Err(KeyFormatError::Checksum));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = parse(&s, "lk");
        }

        #[test]
        fn well_shaped_random_strings_fail_the_checksum(body in "[0-9A-Za-z]{36}") {
            let candidate = format!("lk_live_sk_{body}");
            // One in ~2^32 random bodies carries a valid checksum by chance.
            let ok = parse(&candidate, "lk").is_ok();
            let expected = encode_checksum(&candidate[..candidate.len() - CHECKSUM_LEN]);
            prop_assert_eq!(ok, candidate.as_bytes()[candidate.len() - CHECKSUM_LEN..] == expected[..]);
        }

        #[test]
        fn generated_keys_always_roundtrip(mode in prop::sample::select(vec!["test", "live"]), kind in prop::sample::select(vec!["sk", "pk", "rk"])) {
            let key = fresh("lk", mode, kind);
            prop_assert_eq!(parse(&key, "lk"), Ok(KeyParts { mode, kind }));
        }
    }
}
