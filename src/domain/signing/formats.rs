//! The wire formats of Latchkey's HMAC-SHA256 signatures (RFC 2104), written
//! so that a receiver with nothing but a standard HMAC function can check them
//! (README "Signatures"). Pure functions: keys and times are parameters.
//!
//! - Signature header (webhooks and signed requests):
//!   `t=<unix seconds>,v1=<hex>[,v1=<hex>…]`, where each `v1` is the lower-case
//!   hex HMAC-SHA256 of `"<t>.<payload>"` under one secret version.
//! - Signed URL (the consent-flow format): every query parameter except
//!   `signature`, percent-decoded, sorted by key, joined as `key=value&…`;
//!   HMAC-SHA256 of that, lower-case hex, appended as `signature`; `timestamp`
//!   is ISO 8601 UTC (`2024-01-15T10:30:00.000Z`).
//! - Signed URL, strict form (`strict_url::strict_url_canonical`):
//!   also signs scheme, host and path, and re-encodes every component, so
//!   that no decoded `&`, `=` or `/` can pass for a boundary.
//! - Signed request: the signature header's `v1` is computed over the
//!   canonical request of [`canonical_request`] instead of a body.

use chrono::{DateTime, Datelike, Timelike, Utc};

pub use super::strict_url::{
    STRICT_URL_SCHEME, UrlForm, sign_url_as, strict_url_canonical, url_signature_as,
};
use crate::crypto::mac::{hmac_sha256, parse_hex32};
use crate::crypto::{ct_eq, hex};
use crate::domain::model::Millis;

/// Longest signature header accepted; a real one is ~80 bytes per version.
pub const MAX_HEADER_LEN: usize = 1024;
/// Most `v1` entries one header may carry.
pub const MAX_SIGNATURES: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("the signature header is longer than {MAX_HEADER_LEN} bytes")]
    HeaderTooLong,
    #[error("the signature header has no `t=<unix seconds>` element")]
    MissingTimestamp,
    #[error("the signature header has more than one `t=` element")]
    DuplicateTimestamp,
    #[error("`t` must be unix seconds (1 to 12 digits)")]
    BadTimestamp,
    #[error("the signature header has no `v1=<hex>` element")]
    MissingSignature,
    #[error("a `v1` element is not 64 hex digits")]
    BadSignature,
    #[error("the signature header has more than {MAX_SIGNATURES} `v1` elements")]
    TooManySignatures,
    #[error("the signature header element `{0}` is not `key=value`")]
    BadElement(String),
    #[error("the URL has no `?` query to sign")]
    NoQuery,
    #[error("query parameter `{0}` appears more than once")]
    DuplicateParameter(String),
    #[error("query parameter `{0}` is not valid percent-encoded UTF-8")]
    BadEncoding(String),
    #[error("the URL has a `#` fragment; fragments are not sent to servers and cannot be signed")]
    Fragment,
    #[error("the URL has no `signature` parameter")]
    NoUrlSignature,
    #[error("the URL has no `timestamp` parameter")]
    NoUrlTimestamp,
    #[error("`timestamp` is not an ISO 8601 UTC time like 2024-01-15T10:30:00.000Z")]
    BadUrlTimestamp,
    #[error("the URL already carries a `{0}` parameter; Latchkey sets it when signing")]
    Reserved(&'static str),
    /// The seed's canonical form joins decoded values with `&` and `=`: a
    /// value holding either could move bytes between parameters and still
    /// verify, so it cannot be signed or verified in that form.
    #[error(
        "query parameter `{0}` decodes to a value with `&` or `=`, which the signed-URL form cannot tell apart from a parameter boundary"
    )]
    Ambiguous(String),
    /// The strict form signs where a URL points: it must be absolute.
    #[error("the URL must be an absolute http(s) URL to be signed in the strict form: {0}")]
    NotAbsolute(&'static str),
}

/// A parsed signature header. `t_text` is kept as sent: it is what was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader<'a> {
    pub t: i64,
    pub t_text: &'a str,
    pub v1: Vec<[u8; 32]>,
}

/// Parses `t=…,v1=…`. Elements with other names (`v0`, future schemes) are
/// ignored, as Stripe's receivers do, so a new scheme can be added later.
pub fn parse_header(header: &str) -> Result<SignatureHeader<'_>, FormatError> {
    if header.len() > MAX_HEADER_LEN {
        return Err(FormatError::HeaderTooLong);
    }
    let mut t = None;
    let mut v1 = Vec::new();
    for element in header.split(',') {
        let element = element.trim();
        if element.is_empty() {
            continue;
        }
        let Some((name, value)) = element.split_once('=') else {
            return Err(FormatError::BadElement(element.chars().take(32).collect()));
        };
        match name.trim() {
            "t" => {
                if t.is_some() {
                    return Err(FormatError::DuplicateTimestamp);
                }
                let value = value.trim();
                if value.is_empty()
                    || value.len() > 12
                    || !value.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(FormatError::BadTimestamp);
                }
                let secs = value
                    .parse::<i64>()
                    .map_err(|_| FormatError::BadTimestamp)?;
                t = Some((secs, value));
            }
            "v1" => {
                if v1.len() == MAX_SIGNATURES {
                    return Err(FormatError::TooManySignatures);
                }
                v1.push(parse_hex32(value.trim()).ok_or(FormatError::BadSignature)?);
            }
            _ => {}
        }
    }
    let (t, t_text) = t.ok_or(FormatError::MissingTimestamp)?;
    if v1.is_empty() {
        return Err(FormatError::MissingSignature);
    }
    Ok(SignatureHeader { t, t_text, v1 })
}

/// `t=<t>,v1=<hmac(key, "<t>.<payload>")>` for each key, in the order given.
pub fn sign_header(t: i64, keys: &[&[u8]], payload: &[u8]) -> String {
    let t_text = t.to_string();
    let mut out = format!("t={t_text}");
    for key in keys {
        let mac = hmac_sha256(key, &[t_text.as_bytes(), b".", payload]);
        out.push_str(",v1=");
        out.push_str(&hex(&mac));
    }
    out
}

/// The index of the first key for which some `v1` in `header` is the HMAC of
/// `"<t>.<payload>"`. Every comparison is constant-time.
pub fn match_header(header: &SignatureHeader<'_>, keys: &[&[u8]], payload: &[u8]) -> Option<usize> {
    keys.iter().position(|key| {
        let mac = hmac_sha256(key, &[header.t_text.as_bytes(), b".", payload]);
        // Fold without short-circuiting, so timing does not say which entry matched.
        header
            .v1
            .iter()
            .fold(false, |found, sig| ct_eq(sig, &mac) | found)
    })
}

/// Where a timestamp stands against a tolerance window around `now`.
pub fn within_tolerance(t_secs: i64, now: Millis, tolerance_secs: i64) -> bool {
    let now_secs = now.div_euclid(1000);
    now_secs.abs_diff(t_secs) <= tolerance_secs.unsigned_abs()
}

// ---------------------------------------------------------------------------
// Signed requests

/// The first line of every canonical request: names the scheme and version.
pub const REQUEST_SCHEME: &str = "LATCHKEY-HMAC-SHA256";

/// The string a signed request's `v1` is computed over (after `"<t>."`):
///
/// ```text
/// LATCHKEY-HMAC-SHA256\n
/// <METHOD, upper-case>\n
/// <path, as sent, without the query>\n
/// <query: raw `key=value` pairs sorted by key then value, joined by `&`>\n
/// <lower-case hex SHA-256 of the body (of nothing, when there is none)>
/// ```
pub fn canonical_request(method: &str, path_and_query: &str, body_sha256: &[u8; 32]) -> String {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, q.split('#').next().unwrap_or_default()),
        None => (path_and_query.split('#').next().unwrap_or_default(), ""),
    };
    let mut pairs: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    pairs.sort_unstable();
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!(
        "{REQUEST_SCHEME}\n{}\n{path}\n{query}\n{}",
        method.to_ascii_uppercase(),
        hex(body_sha256)
    )
}

// ---------------------------------------------------------------------------
// Signed URLs

/// A URL split for signing: the part before `?`, the raw query, and its
/// decoded parameters in order of appearance.
#[derive(Debug)]
pub struct ParsedUrl<'a> {
    pub base: &'a str,
    pub raw_query: &'a str,
    pub params: Vec<(String, String)>,
}

pub(super) fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space), as Python's
/// `parse_qsl` and browsers' URLSearchParams do.
pub fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex_val(*bytes.get(i + 1)?)?;
                let lo = hex_val(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Splits a signed URL and decodes its query, refusing what the seed form
/// cannot sign unambiguously (a decoded `&` or `=`).
pub fn parse_url(url: &str) -> Result<ParsedUrl<'_>, FormatError> {
    let parsed = parse_url_any(url)?;
    if let Some((key, _)) = parsed
        .params
        .iter()
        .find(|(k, v)| k.contains(['&', '=']) || v.contains(['&', '=']))
    {
        return Err(FormatError::Ambiguous(key.chars().take(40).collect()));
    }
    Ok(parsed)
}

/// Splits a URL and decodes its query: no fragment, no parameter twice.
pub fn parse_url_any(url: &str) -> Result<ParsedUrl<'_>, FormatError> {
    if url.contains('#') {
        return Err(FormatError::Fragment);
    }
    let (base, raw_query) = url.split_once('?').ok_or(FormatError::NoQuery)?;
    let mut params: Vec<(String, String)> = Vec::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key =
            form_decode(k).ok_or_else(|| FormatError::BadEncoding(k.chars().take(40).collect()))?;
        let value = form_decode(v).ok_or_else(|| FormatError::BadEncoding(key.clone()))?;
        if params.iter().any(|(seen, _)| *seen == key) {
            return Err(FormatError::DuplicateParameter(key));
        }
        params.push((key, value));
    }
    Ok(ParsedUrl {
        base,
        raw_query,
        params,
    })
}

/// `key=value&…` over every parameter but `signature`, sorted by key, with
/// decoded (raw) values: the string a signed URL's HMAC is computed over.
pub fn url_canonical(params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> =
        params.iter().filter(|(k, _)| k != "signature").collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Adds `timestamp` (now) and `signature` to `url`, keeping its own query as
/// written (a URL without one gets one). The URL must not carry either already.
pub fn sign_url(url: &str, key: &[u8], now: Millis) -> Result<String, FormatError> {
    let with_query;
    let url = if url.contains('?') {
        url
    } else {
        with_query = format!("{url}?");
        &with_query
    };
    let mut parsed = parse_url(url)?;
    for reserved in ["timestamp", "signature"] {
        if parsed.params.iter().any(|(k, _)| k == reserved) {
            return Err(FormatError::Reserved(reserved));
        }
    }
    let timestamp = format_iso8601(now);
    parsed
        .params
        .push(("timestamp".to_owned(), timestamp.clone()));
    let mac = hmac_sha256(key, &[url_canonical(&parsed.params).as_bytes()]);
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

/// A signed URL's parts that verification needs.
#[derive(Debug)]
pub struct UrlSignature {
    pub canonical: String,
    pub signature: [u8; 32],
    pub timestamp: Millis,
}

pub fn url_signature(url: &str) -> Result<UrlSignature, FormatError> {
    let parsed = parse_url(url)?;
    let (signature, timestamp) = signature_and_timestamp(&parsed)?;
    Ok(UrlSignature {
        canonical: url_canonical(&parsed.params),
        signature,
        timestamp,
    })
}

/// The `signature` and `timestamp` parameters of a signed URL.
pub(super) fn signature_and_timestamp(
    parsed: &ParsedUrl<'_>,
) -> Result<([u8; 32], Millis), FormatError> {
    let find = |name: &str| {
        parsed
            .params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let signature = find("signature").ok_or(FormatError::NoUrlSignature)?;
    let signature = parse_hex32(signature).ok_or(FormatError::BadSignature)?;
    let timestamp = find("timestamp").ok_or(FormatError::NoUrlTimestamp)?;
    let timestamp = parse_iso8601(timestamp).ok_or(FormatError::BadUrlTimestamp)?;
    Ok((signature, timestamp))
}

// ---------------------------------------------------------------------------
// ISO 8601 (RFC 3339 profile), UTC

/// `2024-01-15T10:30:00.000Z`. A time beyond chrono's range (about ±262 000
/// years, so never a clock's) is written as the range's nearest end.
pub fn format_iso8601(ms: Millis) -> String {
    let at = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or(if ms < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    });
    // Written field by field rather than with `%Y`, which would add a `+` to
    // years past 9999: the text stays what it has always been.
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        at.month(),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.timestamp_subsec_millis()
    )
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` → unix milliseconds (a
/// fraction past the millisecond is cut off, not rounded).
pub fn parse_iso8601(s: &str) -> Option<Millis> {
    if !in_profile(s) {
        return None;
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|at| at.timestamp_millis())
}

/// The shape Latchkey accepts, narrower than what chrono's RFC 3339 parser
/// takes: `T` (or `t`) between date and time, never a space; no leap second
/// (`:60`); a fraction of 1 to 9 digits; `Z` (or `z`) or `±HH:MM` with an
/// ASCII sign. Whether the fields are a real date, time and offset is
/// chrono's to say.
fn in_profile(s: &str) -> bool {
    let Some((head, tail)) = s.split_at_checked(19) else {
        return false;
    };
    let fixed = head.bytes().enumerate().all(|(i, c)| match i {
        4 | 7 => c == b'-',
        10 => matches!(c, b'T' | b't'),
        13 | 16 => c == b':',
        _ => c.is_ascii_digit(),
    });
    if !fixed || head.ends_with("60") {
        return false;
    }
    let zone = match tail.strip_prefix('.') {
        Some(fraction) => {
            let rest = fraction.trim_start_matches(|c: char| c.is_ascii_digit());
            if !(1..=9).contains(&(fraction.len() - rest.len())) {
                return false;
            }
            rest
        }
        None => tail,
    };
    matches!(
        zone.as_bytes(),
        [b'Z' | b'z'] | [b'+' | b'-', _, _, b':', _, _]
    )
}
