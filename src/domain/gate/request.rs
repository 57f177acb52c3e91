//! Reading a request: its headers (however the adapter holds them), where
//! its credential is, and who the client is.

use std::net::IpAddr;

use super::GateSettings;
use crate::domain::credential::strip_bearer;
use crate::domain::network::parse_ip_loose;

/// The request's headers, looked up by lower-case name.
pub trait Headers {
    /// The value of `name`; of its last occurrence if it repeats (as a map
    /// keeps the last entry).
    fn get(&self, name: &str) -> Option<&str>;
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

/// Where the credential is and what it is: `Authorization: Bearer`, else
/// the API-key header, else the query parameter if one is configured.
pub fn credential<'a, H: Headers>(
    headers: &'a H,
    path: &'a str,
    settings: &GateSettings,
) -> (Option<CredentialSource>, Option<&'a str>) {
    if let Some(auth) = headers.get("authorization") {
        let token = strip_bearer(auth);
        if token.len() != auth.trim().len() {
            return (Some(CredentialSource::Authorization), Some(token));
        }
    }
    if let Some(v) = headers.get(&settings.api_key_header) {
        return (Some(CredentialSource::ApiKeyHeader), Some(v));
    }
    if let Some(param) = &settings.query_param
        && let Some(v) = query_value(path, param)
    {
        return (Some(CredentialSource::QueryParam), Some(v));
    }
    (None, None)
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

/// The client's address: with `hops = 0` the asking proxy's own view
/// (`source`), else the `hops`-th `X-Forwarded-For` entry from the right,
/// the one the outermost trusted proxy appended. Entries further left were
/// written by whoever sent the request and are never believed.
pub fn client_ip<H: Headers>(source: Option<&str>, headers: &H, hops: u8) -> Option<IpAddr> {
    if hops == 0 {
        return source.and_then(parse_ip_loose);
    }
    let xff = headers.get("x-forwarded-for")?;
    xff.rsplit(',')
        .nth(usize::from(hops) - 1)
        .and_then(parse_ip_loose)
}
