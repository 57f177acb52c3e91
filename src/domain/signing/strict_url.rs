//! The strict canonical form of signed URLs, beside the seed's form in
//! [`super::formats`] (which re-exports these): it signs scheme, host, path
//! and query, every component decoded and re-encoded, so that a value can
//! never pass for a boundary and a link verifies only where it points.
//! Pure functions; chosen per use with [`UrlForm`].

use super::formats::{
    FormatError, ParsedUrl, UrlSignature, form_encode, format_iso8601, hex_val, parse_url_any,
    sign_url, signature_and_timestamp, url_signature,
};
use crate::crypto::hex;
use crate::crypto::mac::hmac_sha256;
use crate::domain::model::Millis;

pub use crate::domain::model::UrlForm;

/// The first line of every strict canonical URL: names the form and version.
pub const STRICT_URL_SCHEME: &str = "LATCHKEY-URL-V2";

/// Percent-decoding of a path segment (`+` stays `+`); any bytes.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex_val(*bytes.get(i + 1)?)?;
            let lo = hex_val(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// [`form_encode`] over bytes: all but RFC 3986 unreserved, upper-case hex.
fn encode_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `scheme`, `host[:port]` and `path` of an absolute http(s) URL without
/// its query, canonical: scheme and host lower-case, a default port
/// dropped, each path segment percent-decoded and re-encoded (so `%2F`
/// inside a segment stays apart from `/`), an empty path as `/`. No
/// userinfo, a non-ASCII host or a port that is not 1 to 65535.
fn strict_origin_and_path(base: &str) -> Result<(String, String, String), FormatError> {
    let bad = |why: &'static str| FormatError::NotAbsolute(why);
    let (scheme, rest) = base.split_once("://").ok_or(bad("it has no `scheme://`"))?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return Err(bad("its scheme is not http or https")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(bad("it carries userinfo (`user@`)"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (inside, after) = v6
            .split_once(']')
            .ok_or(bad("its IPv6 host is not closed"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(bad("its port is malformed"))?),
        };
        (format!("[{}]", inside.to_ascii_lowercase()), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
            None => (authority.to_ascii_lowercase(), None),
        }
    };
    if host.is_empty()
        || host == "[]"
        || !host
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'%' | b'/' | b'?' | b'#'))
    {
        return Err(bad("its host is empty or not plain ASCII"));
    }
    let port = match port {
        None => None,
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("its port is not a number"));
            }
            let n: u32 = p.parse().map_err(|_| bad("its port is not a number"))?;
            if n == 0 || n > 65_535 {
                return Err(bad("its port is not 1 to 65535"));
            }
            (n != default_port).then_some(n)
        }
    };
    let authority = match port {
        Some(n) => format!("{host}:{n}"),
        None => host,
    };
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        let mut segments = Vec::new();
        for segment in path.split('/') {
            let raw = percent_decode(segment)
                .ok_or_else(|| FormatError::BadEncoding("(path)".to_owned()))?;
            segments.push(encode_bytes(&raw));
        }
        segments.join("/")
    };
    Ok((scheme, authority, path))
}

/// The strict canonical form of a URL (everything but `signature`):
///
/// ```text
/// LATCHKEY-URL-V2\n
/// <scheme, lower-case>\n
/// <host, lower-case>[:<port>, unless the scheme's default]\n
/// <path: each segment percent-decoded, then re-encoded>\n
/// <query: each key and value decoded (`+` is a space), then re-encoded;
///  pairs sorted by encoded key, joined as key=value with &>
/// ```
///
/// Re-encoding leaves only RFC 3986 unreserved characters bare (upper-case
/// `%XX` for every other byte), so a decoded `&`, `=` or `/` inside a value
/// can never be read as a boundary, and every way of writing the same URL
/// gives the same string. The URL must be absolute (`https://host/…`):
/// what it grants is bound to where it points.
pub fn strict_url_canonical(url: &str) -> Result<String, FormatError> {
    let with_query;
    let url = if url.contains('?') {
        url
    } else {
        with_query = format!("{url}?");
        &with_query
    };
    let parsed = parse_url_any(url)?;
    strict_canonical_of(&parsed)
}

fn strict_canonical_of(parsed: &ParsedUrl<'_>) -> Result<String, FormatError> {
    let (scheme, authority, path) = strict_origin_and_path(parsed.base)?;
    let mut pairs: Vec<(String, String)> = parsed
        .params
        .iter()
        .filter(|(k, _)| k != "signature")
        .map(|(k, v)| (encode_bytes(k.as_bytes()), encode_bytes(v.as_bytes())))
        .collect();
    pairs.sort_unstable();
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    Ok(format!(
        "{STRICT_URL_SCHEME}\n{scheme}\n{authority}\n{path}\n{query}"
    ))
}

/// [`sign_url`] in the given form.
pub fn sign_url_as(
    form: UrlForm,
    url: &str,
    key: &[u8],
    now: Millis,
) -> Result<String, FormatError> {
    match form {
        UrlForm::Seed => sign_url(url, key, now),
        UrlForm::Strict => {
            let with_query;
            let url = if url.contains('?') {
                url
            } else {
                with_query = format!("{url}?");
                &with_query
            };
            let mut parsed = parse_url_any(url)?;
            for reserved in ["timestamp", "signature"] {
                if parsed.params.iter().any(|(k, _)| k == reserved) {
                    return Err(FormatError::Reserved(reserved));
                }
            }
            let timestamp = format_iso8601(now);
            parsed
                .params
                .push(("timestamp".to_owned(), timestamp.clone()));
            let mac = hmac_sha256(key, &[strict_canonical_of(&parsed)?.as_bytes()]);
            let sep = if parsed.raw_query.is_empty() || parsed.raw_query.ends_with('&') {
                ""
            } else {
                "&"
            };
            Ok(format!(
                "{}?{}{sep}timestamp={}&signature={}",
                parsed.base,
                parsed.raw_query,
                form_encode(&timestamp),
                hex(&mac)
            ))
        }
    }
}

/// [`url_signature`] in the given form.
pub fn url_signature_as(form: UrlForm, url: &str) -> Result<UrlSignature, FormatError> {
    match form {
        UrlForm::Seed => url_signature(url),
        UrlForm::Strict => {
            let parsed = parse_url_any(url)?;
            let (signature, timestamp) = signature_and_timestamp(&parsed)?;
            Ok(UrlSignature {
                canonical: strict_canonical_of(&parsed)?,
                signature,
                timestamp,
            })
        }
    }
}
