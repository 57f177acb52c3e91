//! Reading a request: its headers (however the adapter holds them), where
//! its credential is, and who the client is.

use super::GateSettings;
use crate::domain::credential::{is_b64token, uses_bearer_scheme};

/// The request's headers, looked up by lower-case name.
pub trait Headers {
    /// The value of `name`; of its last occurrence if it repeats (as a map
    /// keeps the last entry).
    fn get(&self, name: &str) -> Option<&str>;

    /// `name` as a credential header must be: present once, readable.
    /// Names compare case-insensitively here, so that `Authorization` and
    /// `authorization` cannot be two headers.
    fn only(&self, name: &str) -> Field<'_>;
}

/// A header that must occur at most once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'a> {
    Absent,
    One(&'a str),
    /// Present more than once: which one counts is never guessed.
    Repeated,
    /// Present once, but not text (bytes that are not UTF-8 or not visible ASCII).
    Unreadable,
}

/// Where a credential was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    /// `Authorization: Bearer …`.
    Authorization,
    /// The configured API-key header.
    ApiKeyHeader,
    /// The configured query parameter.
    QueryParam,
}

/// What the request presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    None,
    /// As presented, for `decide` to classify (an `Authorization` value
    /// keeps its `Bearer ` scheme, which is taken off exactly once there).
    Credential(CredentialSource, &'a str),
    /// Refused before any lookup (`CREDENTIAL_MALFORMED`).
    Malformed(CredentialSource, &'static str),
}

/// Where the credential is and what it is: `Authorization: Bearer`, else
/// the API-key header, else the query parameter if one is configured. A
/// credential header that repeats or cannot be read is malformed; a
/// non-Bearer `Authorization` (`Basic …`) is the upstream's, not ours.
pub fn credential<'a, H: Headers>(
    headers: &'a H,
    path: &'a str,
    settings: &GateSettings,
) -> Presented<'a> {
    use CredentialSource::{ApiKeyHeader, Authorization, QueryParam};
    match headers.only("authorization") {
        Field::Repeated => {
            return Presented::Malformed(Authorization, "the `authorization` header is repeated");
        }
        Field::Unreadable => {
            return Presented::Malformed(Authorization, "the `authorization` header is not text");
        }
        Field::One(v) if uses_bearer_scheme(v) => return Presented::Credential(Authorization, v),
        Field::One(_) | Field::Absent => {}
    }
    match headers.only(&settings.api_key_header) {
        Field::Repeated => {
            return Presented::Malformed(ApiKeyHeader, "the API-key header is repeated");
        }
        Field::Unreadable => {
            return Presented::Malformed(ApiKeyHeader, "the API-key header is not text");
        }
        // The header carries a bare key: a scheme (or any space) in it is
        // malformed, never taken off.
        Field::One(v) if !v.is_empty() && !is_b64token(v) => {
            return Presented::Malformed(
                ApiKeyHeader,
                "the API-key header holds characters no key has (whitespace, control \
                 characters, a scheme, a second value); it is never trimmed",
            );
        }
        Field::One(v) if !v.is_empty() => return Presented::Credential(ApiKeyHeader, v),
        Field::One(_) | Field::Absent => {}
    }
    if let Some(param) = &settings.query_param
        && let Some(v) = query_value(path, param)
    {
        return if is_b64token(v) {
            Presented::Credential(QueryParam, v)
        } else {
            Presented::Malformed(QueryParam, "the API-key query parameter is not a key")
        };
    }
    Presented::None
}

/// The first non-empty value of query parameter `name` (raw, undecoded).
pub fn query_value<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let query = path.split_once('?')?.1.split('#').next()?;
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}
