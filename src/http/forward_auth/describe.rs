//! Which request the proxy is asking about, from the headers of its flavor.
//!
//! - nginx `auth_request` (the example in deploy/nginx): `X-Original-URI`
//!   (the request target as sent), `X-Original-Method`, `X-Forwarded-Host`;
//!   ingress-nginx's `auth-url`: `X-Original-URL` (an absolute URL) and
//!   `X-Original-Method`.
//! - Traefik `ForwardAuth` and Caddy `forward_auth`: `X-Forwarded-Method`,
//!   `X-Forwarded-Uri`, `X-Forwarded-Host` (Caddy also keeps `Host`).
//!
//! Every one of these proxies passes the client's own headers along too, so
//! a client can add the *other* flavor's headers. A pinned flavor never reads
//! them; `auto` refuses a request described both ways (and nginx's two ways,
//! URI and URL, are refused together as well) rather than pick one.

use axum::http::HeaderMap;

use super::HeaderView;

/// Which proxy's header set is believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Nginx,
    Traefik,
    Caddy,
    /// Whichever set is present; refused when both are.
    Auto,
}

impl Flavor {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "nginx" => Some(Flavor::Nginx),
            "traefik" => Some(Flavor::Traefik),
            "caddy" => Some(Flavor::Caddy),
            "auto" => Some(Flavor::Auto),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Flavor::Nginx => "nginx",
            Flavor::Traefik => "traefik",
            Flavor::Caddy => "caddy",
            Flavor::Auto => "auto",
        }
    }
}

/// How the answer must be written for the asking proxy to pass it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Traefik and Caddy return a denial to the client as it is.
    Plain,
    /// nginx's `auth_request` understands only 2xx, 401 and 403, and never
    /// passes the body: the real status and the body travel in headers too.
    Nginx,
}

/// The original request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Original<'a> {
    pub method: &'a str,
    pub host: &'a str,
    /// Path and query, as the client sent them.
    pub target: &'a str,
}

/// Why the proxy's description was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undescribed(pub String);

/// The answer style for `flavor` before the headers are read.
pub fn style_of(flavor: Flavor, headers: &HeaderMap) -> Style {
    match flavor {
        Flavor::Nginx => Style::Nginx,
        Flavor::Traefik | Flavor::Caddy => Style::Plain,
        Flavor::Auto if has_nginx(headers) => Style::Nginx,
        Flavor::Auto => Style::Plain,
    }
}

fn has_nginx(headers: &HeaderMap) -> bool {
    headers.contains_key("x-original-uri") || headers.contains_key("x-original-url")
}

fn has_forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key("x-forwarded-uri") || headers.contains_key("x-forwarded-method")
}

/// The original request as `flavor` describes it.
pub fn describe<'a>(
    flavor: Flavor,
    headers: &'a HeaderMap,
) -> Result<(Original<'a>, Style), Undescribed> {
    let view = HeaderView(headers);
    match flavor {
        Flavor::Nginx => nginx(view).map(|o| (o, Style::Nginx)),
        Flavor::Traefik | Flavor::Caddy => forwarded(view).map(|o| (o, Style::Plain)),
        Flavor::Auto => match (has_nginx(headers), has_forwarded(headers)) {
            (true, true) => Err(Undescribed(
                "the request is described both by X-Original-* (nginx) and by X-Forwarded-Uri/-Method \
                 (Traefik, Caddy) headers; set forward_auth.flavor to the proxy in front"
                    .to_owned(),
            )),
            (true, false) => nginx(view).map(|o| (o, Style::Nginx)),
            (false, true) => forwarded(view).map(|o| (o, Style::Plain)),
            (false, false) => Err(Undescribed(
                "the proxy did not describe the request: X-Original-URI or X-Original-URL with \
                 X-Original-Method (nginx), or X-Forwarded-Uri with X-Forwarded-Method (Traefik, Caddy)"
                    .to_owned(),
            )),
        },
    }
}

fn required<'a>(view: HeaderView<'a>, name: &str) -> Result<&'a str, Undescribed> {
    match view.value(name) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(Undescribed(format!(
            "the proxy did not send {name}, which describes the request"
        ))),
    }
}

/// `Host` of the original request: `X-Forwarded-Host`, else `Host`.
fn host<'a>(view: HeaderView<'a>) -> &'a str {
    view.value("x-forwarded-host")
        .or_else(|| view.value("host"))
        .unwrap_or_default()
}

fn nginx(view: HeaderView<'_>) -> Result<Original<'_>, Undescribed> {
    let method = required(view, "x-original-method")?;
    match (view.value("x-original-uri"), view.value("x-original-url")) {
        (Some(_), Some(_)) => Err(Undescribed(
            "both X-Original-URI and X-Original-URL are present; the proxy sets one".to_owned(),
        )),
        (Some(target), None) if !target.is_empty() => Ok(Original {
            method,
            host: host(view),
            target,
        }),
        (None, Some(url)) if !url.is_empty() => {
            let (host, target) = split_url(url).ok_or_else(|| {
                Undescribed("X-Original-URL is not an absolute http(s) URL".to_owned())
            })?;
            Ok(Original {
                method,
                host,
                target,
            })
        }
        _ => Err(Undescribed(
            "the proxy did not send X-Original-URI or X-Original-URL, which describe the request"
                .to_owned(),
        )),
    }
}

fn forwarded(view: HeaderView<'_>) -> Result<Original<'_>, Undescribed> {
    Ok(Original {
        method: required(view, "x-forwarded-method")?,
        target: required(view, "x-forwarded-uri")?,
        host: host(view),
    })
}

/// `https://api.example:8443/v2/x?y` → (`api.example:8443`, `/v2/x?y`).
/// The target is left exactly as written: normalising it is the gate's job.
fn split_url(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    // `https://host` has an empty path, which is `/`. (`https://host?q`
    // stays `?q`: not a path, so the gate refuses it. ingress-nginx builds
    // the URL from `$request_uri`, which always starts with `/`.)
    Some((authority, if target.is_empty() { "/" } else { target }))
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderName, HeaderValue};

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    fn original<'a>(method: &'a str, host: &'a str, target: &'a str) -> Original<'a> {
        Original {
            method,
            host,
            target,
        }
    }

    #[test]
    fn nginx_uri_and_url() {
        let h = map(&[
            ("host", "latchkey_forward_auth"),
            ("x-original-uri", "/v2/a/../b?x=1"),
            ("x-original-method", "POST"),
            ("x-forwarded-host", "api.example"),
        ]);
        assert_eq!(
            describe(Flavor::Nginx, &h),
            Ok((
                original("POST", "api.example", "/v2/a/../b?x=1"),
                Style::Nginx
            ))
        );
        let h = map(&[
            ("host", "latchkey.svc:8081"),
            ("x-original-url", "https://api.example:8443/v2/x%2Fy?z"),
            ("x-original-method", "GET"),
        ]);
        assert_eq!(
            describe(Flavor::Nginx, &h),
            Ok((
                original("GET", "api.example:8443", "/v2/x%2Fy?z"),
                Style::Nginx
            ))
        );
        let h = map(&[
            ("x-original-url", "http://api.example"),
            ("x-original-method", "GET"),
        ]);
        assert_eq!(describe(Flavor::Nginx, &h).map(|(o, _)| o.target), Ok("/"));
        for url in ["ftp://x/y", "/v2/x", "https:///x", "https://u@h/x"] {
            let h = map(&[("x-original-url", url), ("x-original-method", "GET")]);
            assert!(describe(Flavor::Nginx, &h).is_err(), "{url}");
        }
    }

    #[test]
    fn nginx_needs_one_description_and_a_method() {
        let both = map(&[
            ("x-original-uri", "/public"),
            ("x-original-url", "https://h/admin"),
            ("x-original-method", "GET"),
        ]);
        assert!(describe(Flavor::Nginx, &both).is_err());
        let no_method = map(&[("x-original-uri", "/x")]);
        assert!(describe(Flavor::Nginx, &no_method).is_err());
        let none = map(&[("x-original-method", "GET")]);
        assert!(describe(Flavor::Nginx, &none).is_err());
        // A pinned flavor never reads the other one's headers.
        let forwarded = map(&[("x-forwarded-uri", "/x"), ("x-forwarded-method", "GET")]);
        assert!(describe(Flavor::Nginx, &forwarded).is_err());
    }

    #[test]
    fn traefik_and_caddy() {
        let h = map(&[
            ("host", "auth:8081"),
            ("x-forwarded-method", "DELETE"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "api.example"),
            ("x-forwarded-uri", "/v2/x?y=1"),
            ("x-forwarded-for", "203.0.113.9"),
            // A client's own nginx-style header is not read.
            ("x-original-uri", "/v2/public"),
        ]);
        for flavor in [Flavor::Traefik, Flavor::Caddy] {
            assert_eq!(
                describe(flavor, &h),
                Ok((original("DELETE", "api.example", "/v2/x?y=1"), Style::Plain))
            );
        }
        // Caddy keeps the original Host when X-Forwarded-Host is absent.
        let h = map(&[
            ("host", "api.example"),
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/"),
        ]);
        assert_eq!(
            describe(Flavor::Caddy, &h).map(|(o, _)| o.host),
            Ok("api.example")
        );
        let no_uri = map(&[("x-forwarded-method", "GET")]);
        assert!(describe(Flavor::Traefik, &no_uri).is_err());
        let empty_uri = map(&[("x-forwarded-method", "GET"), ("x-forwarded-uri", "")]);
        assert!(describe(Flavor::Caddy, &empty_uri).is_err());
    }

    #[test]
    fn auto_takes_the_one_set_present_and_refuses_two() {
        let nginx = map(&[("x-original-uri", "/a"), ("x-original-method", "GET")]);
        assert_eq!(
            describe(Flavor::Auto, &nginx).map(|(_, s)| s),
            Ok(Style::Nginx)
        );
        let traefik = map(&[("x-forwarded-uri", "/a"), ("x-forwarded-method", "GET")]);
        assert_eq!(
            describe(Flavor::Auto, &traefik).map(|(_, s)| s),
            Ok(Style::Plain)
        );
        let both = map(&[
            ("x-original-uri", "/admin"),
            ("x-original-method", "GET"),
            ("x-forwarded-uri", "/public"),
        ]);
        assert!(describe(Flavor::Auto, &both).is_err());
        assert_eq!(style_of(Flavor::Auto, &both), Style::Nginx);
        assert!(describe(Flavor::Auto, &map(&[])).is_err());
        assert_eq!(style_of(Flavor::Auto, &map(&[])), Style::Plain);
    }

    #[test]
    fn flavor_names_round_trip() {
        for f in [Flavor::Nginx, Flavor::Traefik, Flavor::Caddy, Flavor::Auto] {
            assert_eq!(Flavor::parse(f.name()), Some(f));
        }
        assert_eq!(Flavor::parse("envoy"), None);
    }
}
