//! What a presented credential is: an API key or a JWT, after the RFC 6750
//! `Bearer` scheme (§2.1) is taken off.
//!
//! A credential is never normalised. The scheme is `Bearer` followed by
//! exactly one space (the scheme name is case-insensitive, RFC 9110 §11.1);
//! what follows must be a `b64token` (RFC 6750 §2.1: letters, digits,
//! `-._~+/`, then `=` padding), which every API key and JWT is. Anything
//! else — surrounding whitespace, CR, LF, a tab, any other control or
//! non-ASCII character, a second scheme, two values joined by a comma — is
//! malformed, never trimmed into something that might match.

use crate::crypto::jwt;

/// The kinds of credential `decide` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// Nothing was presented.
    Missing,
    /// Something was presented that is not a `b64token`; never looked up.
    Malformed(&'static str),
    /// A compact JWS: three base64url segments.
    Jwt(&'a str),
    /// Anything else is taken as an API key and parsed as one.
    ApiKey(&'a str),
}

impl<'a> Credential<'a> {
    /// Classifies a credential as presented (an optional `Bearer ` first).
    pub fn classify(presented: &'a str) -> Self {
        if presented.is_empty() {
            return Credential::Missing;
        }
        let c = strip_bearer(presented);
        if c.is_empty() {
            return Credential::Malformed("the Bearer scheme carries no credential");
        }
        if !is_b64token(c) {
            return Credential::Malformed(
                "the credential contains characters no key or token has (whitespace, control \
                 characters, a second value); it is never trimmed",
            );
        }
        if jwt::looks_like_jwt(c) {
            Credential::Jwt(c)
        } else {
            Credential::ApiKey(c)
        }
    }
}

/// Strips one `Bearer ` scheme prefix: the name in any case, exactly one
/// space after it (RFC 6750 §2.1). Nothing else is removed.
pub fn strip_bearer(credential: &str) -> &str {
    match credential.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("bearer ") => &credential[7..],
        _ => credential,
    }
}

/// Does an `Authorization` value use the Bearer scheme, however badly
/// written (leading whitespace, several spaces, a tab)? Such a value is ours
/// to judge — and to refuse if it is malformed — rather than another
/// scheme's (`Basic …`) for the upstream.
pub fn uses_bearer_scheme(value: &str) -> bool {
    let v = value.trim_start_matches(|c: char| c.is_ascii_whitespace() || c.is_control());
    match v.get(..6) {
        Some(scheme) if scheme.eq_ignore_ascii_case("bearer") => v[6..]
            .chars()
            .next()
            .is_none_or(|c| c.is_whitespace() || c.is_control()),
        _ => false,
    }
}

/// RFC 6750 §2.1 `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "lk_test_sk_4eC39HqLyjWDarjtT1zdp7dc";

    #[test]
    fn only_one_exact_scheme_prefix_is_taken_off() {
        assert_eq!(Credential::classify(KEY), Credential::ApiKey(KEY));
        assert_eq!(
            Credential::classify(&format!("Bearer {KEY}")),
            Credential::ApiKey(KEY)
        );
        assert_eq!(
            Credential::classify(&format!("bearer {KEY}")),
            Credential::ApiKey(KEY)
        );
        assert_eq!(Credential::classify(""), Credential::Missing);
        for bad in [
            format!(" {KEY}"),
            format!("{KEY} "),
            format!("{KEY}\r\n"),
            format!("{KEY}\n"),
            format!("\t{KEY}"),
            format!("{KEY}\0"),
            format!("{KEY}\u{7f}"),
            format!("{KEY}\u{a0}"),
            format!("Bearer  {KEY}"),
            format!("Bearer\t{KEY}"),
            format!(" Bearer {KEY}"),
            format!("Bearer {KEY} "),
            format!("Bearer Bearer {KEY}"),
            format!("{KEY},{KEY}"),
            format!("Bearer {KEY}, Bearer {KEY}"),
            "Bearer ".to_owned(),
            "   ".to_owned(),
        ] {
            assert!(
                matches!(Credential::classify(&bad), Credential::Malformed(_)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bearer_scheme_is_recognised_however_written() {
        assert!(uses_bearer_scheme("Bearer x"));
        assert!(uses_bearer_scheme(" bearer  x"));
        assert!(uses_bearer_scheme("BEARER\tx"));
        assert!(uses_bearer_scheme("Bearer"));
        assert!(!uses_bearer_scheme("Basic dTpw"));
        assert!(!uses_bearer_scheme("Bearerx"));
    }

    #[test]
    fn jwts_and_padding_are_b64tokens() {
        assert!(is_b64token("eyJh.eyJz.sig-_"));
        assert!(is_b64token("abc=="));
        assert!(!is_b64token("=="));
        assert!(!is_b64token("a=b"));
    }
}
