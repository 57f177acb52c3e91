//! What a presented credential is: an API key or a JWT, after the RFC 6750
//! `Bearer` scheme (§2.1) is taken off.

use crate::crypto::jwt;

/// The kinds of credential `decide` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// Nothing was presented.
    Missing,
    /// A compact JWS: three base64url segments.
    Jwt(&'a str),
    /// Anything else is taken as an API key and parsed as one.
    ApiKey(&'a str),
}

impl<'a> Credential<'a> {
    /// Classifies a credential as presented (an optional `Bearer ` first).
    pub fn classify(presented: &'a str) -> Self {
        let c = strip_bearer(presented);
        if c.is_empty() {
            Credential::Missing
        } else if jwt::looks_like_jwt(c) {
            Credential::Jwt(c)
        } else {
            Credential::ApiKey(c)
        }
    }
}

/// Strips an optional `Bearer ` scheme (RFC 6750 §2.1; the scheme is case-insensitive).
pub fn strip_bearer(credential: &str) -> &str {
    let c = credential.trim();
    match c.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("bearer ") => c[7..].trim_start(),
        _ => c,
    }
}
