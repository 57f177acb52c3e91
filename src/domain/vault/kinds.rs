//! The integration kinds: which credential fields each needs, how each
//! authenticates its connection test, and how credentials are masked.
//!
//! - `woocommerce`: `GET {base_url}/wp-json/wc/v3/system_status`, HTTP Basic
//!   with the consumer key and secret (WooCommerce REST API over HTTPS).
//! - `economic`: `GET {base_url}/self` with `X-AppSecretToken` and
//!   `X-AgreementGrantToken` (e-conomic REST API).
//! - `bearer`, `basic`, `header`, `hmac`: `GET {base_url}{settings.test_path}`
//!   (default `/`) with `Authorization: Bearer`, HTTP Basic, the named header,
//!   or `X-Latchkey-Timestamp` + `X-Latchkey-Signature: v1=<hex
//!   HMAC-SHA256(secret, "<timestamp>.GET.<path>")>`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::crypto::{hex, mac::hmac_sha256, secret::Secret};
use crate::domain::error::{Error, Result};
use crate::domain::model::ProbeRequest;

/// Each kind and its credential fields, all required, none other allowed.
pub const KINDS: [(&str, &[&str]); 6] = [
    ("woocommerce", &["consumer_key", "consumer_secret"]),
    ("economic", &["app_secret_token", "agreement_grant_token"]),
    ("bearer", &["token"]),
    ("basic", &["username", "password"]),
    ("header", &["header_name", "header_value"]),
    ("hmac", &["secret"]),
];

const MAX_VALUE_LEN: usize = 4096;
const MAX_SETTINGS: usize = 32;
const MAX_SETTING_LEN: usize = 1024;
const MAX_URL_LEN: usize = 2048;

pub fn fields(kind: &str) -> Option<&'static [&'static str]> {
    KINDS.iter().find(|(k, _)| *k == kind).map(|(_, f)| *f)
}

pub fn validate_kind(kind: &str) -> Result<&'static [&'static str]> {
    if kind.is_empty() {
        return Err(Error::invalid("kind", "is required"));
    }
    fields(kind).ok_or_else(|| {
        let names: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
        Error::invalid(
            "kind",
            format!("`{kind}` is not one of {}", names.join(", ")),
        )
    })
}

fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Every field of the kind present and well-formed, and no other. The error
/// names the field, never its value.
pub fn validate_credentials(kind: &str, credentials: &BTreeMap<String, String>) -> Result<()> {
    let wanted = validate_kind(kind)?;
    if let Some(extra) = credentials.keys().find(|k| !wanted.contains(&k.as_str())) {
        return Err(Error::invalid(
            "credentials",
            format!(
                "`{extra}` is not a credential field of kind `{kind}` (it takes {})",
                wanted.join(", ")
            ),
        ));
    }
    for field in wanted {
        let value = credentials.get(*field).map_or("", String::as_str);
        let message = if value.is_empty() {
            Some(format!("`{field}` is required for kind `{kind}`"))
        } else if value.len() > MAX_VALUE_LEN {
            Some(format!("`{field}` must be at most {MAX_VALUE_LEN} bytes"))
        } else if value.chars().any(char::is_control) {
            Some(format!("`{field}` must not contain control characters"))
        } else if *field == "header_name" && !value.chars().all(token_char) {
            Some("`header_name` is not an HTTP header name".to_owned())
        } else if *field == "username" && value.contains(':') {
            Some("`username` must not contain `:`".to_owned())
        } else {
            None
        };
        if let Some(message) = message {
            return Err(Error::invalid("credentials", message));
        }
    }
    Ok(())
}

pub fn validate_settings(settings: &BTreeMap<String, String>) -> Result<()> {
    if settings.len() > MAX_SETTINGS {
        return Err(Error::invalid(
            "settings",
            format!("at most {MAX_SETTINGS} entries"),
        ));
    }
    for (k, v) in settings {
        if k.is_empty()
            || k.len() > 64
            || !k
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(Error::invalid(
                "settings",
                format!("`{k}` is not a setting name (a-z, 0-9, _; at most 64)"),
            ));
        }
        if v.len() > MAX_SETTING_LEN || v.chars().any(char::is_control) {
            return Err(Error::invalid(
                "settings",
                format!("`{k}` must be at most {MAX_SETTING_LEN} bytes without control characters"),
            ));
        }
    }
    if let Some(path) = settings.get("test_path")
        && (!path.starts_with('/') || path.starts_with("//") || path.contains(['#', ' ', '\\']))
    {
        return Err(Error::invalid(
            "settings",
            "`test_path` must be a path starting with a single `/`",
        ));
    }
    Ok(())
}

/// A base URL connection tests may call: `https://host[:port][/path]`, no
/// user info, query or fragment, and no literal non-public address, unless
/// `allow_insecure` (tests, development). Returned without a trailing `/`.
pub fn validate_base_url(raw: &str, allow_insecure: bool) -> Result<String> {
    let field = "base_url";
    if raw.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if raw.len() > MAX_URL_LEN {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_URL_LEN} bytes"),
        ));
    }
    let url =
        url::Url::parse(raw).map_err(|e| Error::invalid(field, format!("is not a URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_insecure => {}
        _ => return Err(Error::invalid(field, "must be an https:// URL")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::invalid(
            field,
            "must not carry user info; put credentials in `credentials`",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::invalid(field, "must not have a query or fragment"));
    }
    let host = match url.host() {
        Some(h) => h,
        None => return Err(Error::invalid(field, "must name a host")),
    };
    if !allow_insecure {
        let literal = match host {
            url::Host::Ipv4(a) => Some(IpAddr::V4(a)),
            url::Host::Ipv6(a) => Some(IpAddr::V6(a)),
            // Names are checked after resolution, when a test connects.
            url::Host::Domain(_) => None,
        };
        if let Some(ip) = literal
            && !is_public(ip)
        {
            return Err(Error::invalid(
                field,
                format!(
                    "{ip} is not a public address (loopback, private, link-local and metadata targets are refused)"
                ),
            ));
        }
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Is `ip` a public unicast address? Loopback, private (RFC 1918, unique
/// local), link-local (and so the 169.254.169.254 metadata service), CGNAT,
/// unspecified, multicast, broadcast, documentation, benchmarking, reserved
/// and NAT64 ranges are not.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            !(a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || a.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240)
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = a.segments();
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x0064 && s[1] == 0xff9b)
                || s[..6] == [0, 0, 0, 0, 0, 0])
        }
    }
}

/// The masked form of a credential value: its prefix up to the first `_`
/// (when short) and its last four characters, `ck_…4f2a`; short values show
/// nothing but `…`.
pub fn hint(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() < 12 {
        return "…".to_owned();
    }
    let prefix = match value.find('_') {
        Some(i) if i <= 4 => &value[..=i],
        _ => "",
    };
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{prefix}…{tail}")
}

pub fn hints(credentials: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    credentials
        .iter()
        .map(|(k, v)| (k.clone(), hint(v)))
        .collect()
}

fn basic(user: &str, password: &str) -> Secret<String> {
    Secret::new(format!(
        "Basic {}",
        STANDARD.encode(format!("{user}:{password}"))
    ))
}

fn path_of(url: &str) -> &str {
    url.find("://")
        .and_then(|i| url[i + 3..].find('/').map(|j| &url[i + 3 + j..]))
        .unwrap_or("/")
}

/// The kind's test request. `credentials` were validated for the kind.
pub fn probe_request(
    kind: &str,
    base_url: &str,
    credentials: &BTreeMap<String, String>,
    settings: &BTreeMap<String, String>,
    now_secs: i64,
) -> ProbeRequest {
    let c = |f: &str| credentials.get(f).cloned().unwrap_or_default();
    let test_path = settings.get("test_path").map_or("/", String::as_str);
    let (path, headers) = match kind {
        "woocommerce" => (
            "/wp-json/wc/v3/system_status",
            vec![(
                "authorization".to_owned(),
                basic(&c("consumer_key"), &c("consumer_secret")),
            )],
        ),
        "economic" => (
            "/self",
            vec![
                (
                    "x-appsecrettoken".to_owned(),
                    Secret::new(c("app_secret_token")),
                ),
                (
                    "x-agreementgranttoken".to_owned(),
                    Secret::new(c("agreement_grant_token")),
                ),
            ],
        ),
        "bearer" => (
            test_path,
            vec![(
                "authorization".to_owned(),
                Secret::new(format!("Bearer {}", c("token"))),
            )],
        ),
        "basic" => (
            test_path,
            vec![(
                "authorization".to_owned(),
                basic(&c("username"), &c("password")),
            )],
        ),
        "header" => (
            test_path,
            vec![(
                c("header_name").to_ascii_lowercase(),
                Secret::new(c("header_value")),
            )],
        ),
        _ => (test_path, Vec::new()),
    };
    let url = format!("{base_url}{path}");
    let mut headers = headers;
    if kind == "hmac" {
        let signed_path = path_of(&url).to_owned();
        let mac = hmac_sha256(
            c("secret").as_bytes(),
            &[
                now_secs.to_string().as_bytes(),
                b".GET.",
                signed_path.as_bytes(),
            ],
        );
        headers.push((
            "x-latchkey-timestamp".to_owned(),
            Secret::new(now_secs.to_string()),
        ));
        headers.push((
            "x-latchkey-signature".to_owned(),
            Secret::new(format!("v1={}", hex(&mac))),
        ));
    }
    ProbeRequest { url, headers }
}

const EXCERPT_CHARS: usize = 512;

/// The start of a response body for the record: at most 512 characters,
/// each stored credential value replaced by its hint, and any long run of
/// token-like characters (a key, a token) masked too.
pub fn excerpt(body: &[u8], credentials: &BTreeMap<String, String>) -> String {
    let mut text = String::from_utf8_lossy(body).into_owned();
    for value in credentials.values().filter(|v| v.len() >= 4) {
        text = text.replace(value.as_str(), &hint(value));
    }
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.chars().count() >= 20 {
            out.push_str(&hint(word));
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for ch in text.chars() {
        if ch.is_ascii_alphanumeric() || ch == '_' || ch == '-' {
            word.push(ch);
        } else {
            flush(&mut word, &mut out);
            out.push(ch);
        }
    }
    flush(&mut word, &mut out);
    out.chars().take(EXCERPT_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn hints_keep_the_prefix_and_the_last_four() {
        assert_eq!(hint("ck_0123456789abcdef4f2a"), "ck_…4f2a");
        assert_eq!(hint("0123456789abcdef4f2a"), "…4f2a");
        assert_eq!(hint("short"), "…");
    }

    #[test]
    fn credentials_are_checked_per_kind() {
        let ok = map(&[("consumer_key", "ck_1"), ("consumer_secret", "cs_1")]);
        assert!(validate_credentials("woocommerce", &ok).is_ok());
        let e = validate_credentials("woocommerce", &map(&[("consumer_key", "ck_1")])).unwrap_err();
        assert!(e.to_string().contains("consumer_secret"), "{e}");
        let e = validate_credentials("ftp", &ok).unwrap_err();
        assert!(e.to_string().starts_with("kind:"), "{e}");
        let mut extra = ok.clone();
        extra.insert("password".into(), "hunter2-secret".into());
        let e = validate_credentials("woocommerce", &extra).unwrap_err();
        assert!(e.to_string().contains("`password`"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn base_urls_must_be_https_and_public() {
        assert_eq!(
            validate_base_url("https://shop.example.com/", false).unwrap(),
            "https://shop.example.com"
        );
        for bad in [
            "http://shop.example.com",
            "https://127.0.0.1",
            "https://10.1.2.3",
            "https://169.254.169.254/latest",
            "https://[::1]",
            "https://[fd00:ec2::254]",
            "https://user:pw@shop.example.com",
            "https://shop.example.com/?a=1",
            "ftp://shop.example.com",
        ] {
            let e = validate_base_url(bad, false).unwrap_err();
            assert!(e.to_string().starts_with("base_url:"), "{bad}: {e}");
        }
        assert!(validate_base_url("http://127.0.0.1:9", true).is_ok());
    }

    #[test]
    fn public_means_public() {
        for ip in ["8.8.8.8", "2a00:1450::1"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fc00::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn excerpts_mask_credentials() {
        let creds = map(&[("token", "tok_abcdefghijklmnop")]);
        let body =
            br#"{"echo":"tok_abcdefghijklmnop","other":"ABCDEFGHIJKLMNOPQRSTUVWX","ok":true}"#;
        let e = excerpt(body, &creds);
        assert!(!e.contains("abcdefghijklmnop"), "{e}");
        assert!(!e.contains("ABCDEFGHIJKLMNOPQRSTUVWX"), "{e}");
        assert!(e.contains("\"ok\":true"), "{e}");
    }

    #[test]
    fn the_hmac_kind_signs_timestamp_method_and_path() {
        let r = probe_request(
            "hmac",
            "https://api.example.com/base",
            &map(&[("secret", "s3cret")]),
            &map(&[("test_path", "/ping")]),
            1_700_000_000,
        );
        assert_eq!(r.url, "https://api.example.com/base/ping");
        let mac = hmac_sha256(b"s3cret", &[b"1700000000.GET./base/ping"]);
        let sig = r
            .headers
            .iter()
            .find(|(n, _)| n == "x-latchkey-signature")
            .unwrap();
        assert_eq!(sig.1.expose(), &format!("v1={}", hex(&mac)));
    }
}
