//! Browser Origin allowlists for publishable keys (RFC 6454 origins).
//!
//! Patterns: `https://shop.example.com`, `https://*.example.com`,
//! `*.example.com` (any scheme), `http://localhost:3000`. A `*.` wildcard
//! matches one or more labels and never the bare domain.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an origin pattern like `https://shop.example.com` or `*.example.com`")]
pub struct OriginError(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`, stored as `.example.com`.
    Subdomains(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: Option<String>,
    host: HostPattern,
    port: Option<u16>,
}

/// A parsed `Origin` header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    }
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Splits `host[:port]`, dropping a port that is the scheme's default.
fn split_host_port(s: &str, scheme: Option<&str>) -> Option<(String, Option<u16>)> {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse::<u16>().ok().filter(|p| *p != 0)?)),
        None => (s, None),
    };
    let port = match (port, scheme.and_then(default_port)) {
        (Some(p), Some(d)) if p == d => None,
        (p, _) => p,
    };
    Some((host.to_ascii_lowercase(), port))
}

fn split_scheme(s: &str) -> Option<(Option<&str>, &str)> {
    match s.split_once("://") {
        Some((scheme, rest)) if matches!(scheme, "http" | "https") => Some((Some(scheme), rest)),
        Some(_) => None,
        None => Some((None, s)),
    }
}

impl OriginPattern {
    pub fn parse(s: &str) -> Result<Self, OriginError> {
        let err = || OriginError(s.to_owned());
        let lower = s.trim().to_ascii_lowercase();
        let (scheme, rest) = split_scheme(&lower).ok_or_else(err)?;
        if rest.contains(['/', '?', '#', '@', ' ']) {
            return Err(err());
        }
        let (host, port) = split_host_port(rest, scheme).ok_or_else(err)?;
        let host = match host.strip_prefix("*.") {
            Some(domain) if valid_host(domain) && domain.contains('.') => {
                HostPattern::Subdomains(format!(".{domain}"))
            }
            Some(_) => return Err(err()),
            None if valid_host(&host) => HostPattern::Exact(host),
            None => return Err(err()),
        };
        Ok(Self {
            scheme: scheme.map(str::to_owned),
            host,
            port,
        })
    }

    pub fn matches(&self, origin: &Origin) -> bool {
        if self.scheme.as_deref().is_some_and(|s| s != origin.scheme) || self.port != origin.port {
            return false;
        }
        match &self.host {
            HostPattern::Exact(h) => *h == origin.host,
            HostPattern::Subdomains(suffix) => {
                origin.host.len() > suffix.len() && origin.host.ends_with(suffix.as_str())
            }
        }
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.scheme {
            write!(f, "{s}://")?;
        }
        match &self.host {
            HostPattern::Exact(h) => f.write_str(h)?,
            HostPattern::Subdomains(suffix) => write!(f, "*{suffix}")?,
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

impl Origin {
    /// Parses a serialised origin (`scheme://host[:port]`); `null` and anything
    /// with a path are not origins.
    pub fn parse(s: &str) -> Option<Self> {
        let lower = s.trim().to_ascii_lowercase();
        let (Some(scheme), rest) = split_scheme(&lower)? else {
            return None;
        };
        if rest.contains(['/', '?', '#', '@', ' ', '*']) {
            return None;
        }
        let (host, port) = split_host_port(rest, Some(scheme))?;
        let host_ok = valid_host(&host) || host.parse::<std::net::IpAddr>().is_ok();
        host_ok.then(|| Self {
            scheme: scheme.to_owned(),
            host,
            port,
        })
    }
}

pub fn allowed(origin: Option<&str>, patterns: &[OriginPattern]) -> bool {
    origin
        .and_then(Origin::parse)
        .is_some_and(|o| patterns.iter().any(|p| p.matches(&o)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pats(list: &[&str]) -> Vec<OriginPattern> {
        list.iter()
            .map(|p| OriginPattern::parse(p).unwrap())
            .collect()
    }

    #[test]
    fn exact_origins() {
        let p = pats(&["https://shop.example.com"]);
        assert!(allowed(Some("https://shop.example.com"), &p));
        assert!(allowed(Some("https://SHOP.example.com:443"), &p));
        assert!(!allowed(Some("http://shop.example.com"), &p));
        assert!(!allowed(Some("https://shop.example.com:8443"), &p));
        assert!(!allowed(Some("https://shop.example.com.evil.io"), &p));
        assert!(!allowed(Some("https://evilshop.example.com"), &p));
        assert!(!allowed(Some("null"), &p));
        assert!(!allowed(None, &p));
    }

    #[test]
    fn subdomain_wildcards() {
        let p = pats(&["*.example.com"]);
        assert!(allowed(Some("https://a.example.com"), &p));
        assert!(allowed(Some("http://a.b.example.com"), &p));
        assert!(!allowed(Some("https://example.com"), &p));
        assert!(!allowed(Some("https://badexample.com"), &p));
        assert!(!allowed(Some("https://example.com.evil.io"), &p));
        let https_only = pats(&["https://*.example.com"]);
        assert!(!allowed(Some("http://a.example.com"), &https_only));
    }

    #[test]
    fn ports_and_localhost() {
        let p = pats(&["http://localhost:3000"]);
        assert!(allowed(Some("http://localhost:3000"), &p));
        assert!(!allowed(Some("http://localhost:3001"), &p));
        assert!(!allowed(Some("http://localhost"), &p));
    }

    #[test]
    fn bad_patterns() {
        for bad in [
            "",
            "*",
            "*.com",
            "https://a.com/path",
            "ftp://a.com",
            "https://*",
            "a..com",
            "https://a.com:0",
            "*.*.com",
        ] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            OriginPattern::parse("HTTPS://*.Example.com:443")
                .unwrap()
                .to_string(),
            "https://*.example.com"
        );
    }

    proptest! {
        #[test]
        fn wildcard_matches_every_subdomain_and_nothing_else(sub in "[a-z0-9]{1,10}", other in "[a-z0-9]{1,10}") {
            let p = pats(&["https://*.example.com"]);
            let sub_origin = format!("https://{sub}.example.com");
            let other_origin = format!("https://{other}example.com");
            prop_assert!(allowed(Some(&sub_origin), &p));
            prop_assert!(!allowed(Some(&other_origin), &p));
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,60}") {
            let _ = OriginPattern::parse(&s);
            let _ = Origin::parse(&s);
        }
    }
}
