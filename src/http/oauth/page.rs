//! The HTML the authorize endpoint shows: the page frame with its security
//! headers, error pages, and scopes in plain words.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Every page's policy: no scripts, no foreign resources, never framed, and
/// forms post only back here.
const BASE_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'";

/// The consent page's policy: [`BASE_POLICY`] with the origin of this
/// request's redirect URI beside 'self' in `form-action`, which Chrome applies
/// to the redirect that follows the form's POST as well. The origin is rebuilt
/// from the URI as a browser parses it and written only when it fits CSP's
/// host-source grammar, so nothing in a URI can add a source or a directive.
/// CSP cannot write an IPv6 literal (Chrome drops `http://[::1]:8000`), so
/// such a URI gets its scheme; anything else gets 'self' alone.
pub(super) fn consent_policy(redirect_uri: &str) -> HeaderValue {
    let target = url::Url::parse(redirect_uri).ok().and_then(|u| {
        let scheme = u.scheme();
        let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
        match (scheme, u.host()?) {
            ("https" | "http", url::Host::Ipv6(_)) => Some(format!(" {scheme}:")),
            ("https" | "http", url::Host::Ipv4(ip)) => Some(format!(" {scheme}://{ip}{port}")),
            ("https" | "http", url::Host::Domain(d))
                if d.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                }) =>
            {
                Some(format!(" {scheme}://{d}{port}"))
            }
            _ => None,
        }
    });
    let Some(target) = target else {
        return HeaderValue::from_static(BASE_POLICY);
    };
    let policy = BASE_POLICY.replacen(
        "form-action 'self'",
        &format!("form-action 'self'{target}"),
        1,
    );
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static(BASE_POLICY))
}

pub(crate) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{}</title></head><body>\n{body}\n</body></html>\n",
        escape(title)
    );
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The consent page must not be framed (clickjacking) or run foreign scripts.
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(BASE_POLICY),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

pub(super) fn error_page(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Authorization error",
        &format!("<h1>Authorization error</h1>\n<p>{}</p>", escape(message)),
    )
}

/// A scope in plain words, for people deciding whether to allow it.
pub(super) fn describe_scope(scope: &str) -> String {
    if scope == "*" {
        return "Everything your plan allows".into();
    }
    let (resource, action) = scope.rsplit_once('.').unwrap_or((scope, "*"));
    let resource = resource.replace(['.', '_'], " ");
    match action {
        "read" => format!("View your {resource}"),
        "write" => format!("Create and change your {resource}"),
        "delete" => format!("Delete your {resource}"),
        "*" => format!("Full access to your {resource}"),
        other => format!("{} your {resource}", capitalize(&other.replace('_', " "))),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}
