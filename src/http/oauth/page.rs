//! Every HTML page Latchkey shows (consent, errors, reveal links), rendered
//! from the templates in `src/http/templates/` with minijinja, HTML auto-escaping on
//! (the templates end in `.html`). One base layout (`base.html`) carries the
//! styles inline: the pages' policy allows no other resource. Every text
//! comes from a message catalogue (`src/http/templates/locales/*.toml`), English or
//! German as `Accept-Language` asks ([`negotiate`]).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::{AutoEscape, Environment, Value, context};
use serde::Serialize;

/// The languages the catalogues cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    De,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::De];

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::De => "de",
        }
    }

    /// `en`, `de` (any case, any region: `de-AT` is German).
    pub fn parse(tag: &str) -> Option<Lang> {
        let primary = tag.split(['-', '_']).next().unwrap_or_default();
        Lang::ALL
            .into_iter()
            .find(|l| primary.eq_ignore_ascii_case(l.code()))
    }
}

/// The language for a request: the best of `Accept-Language` (RFC 9110
/// §12.5.4, q-values honoured) that a catalogue covers; else `fallback`
/// (the flow configuration's default language); else English.
pub fn negotiate(headers: &HeaderMap, fallback: Option<Lang>) -> Lang {
    let header = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut best: Option<(f32, Lang)> = None;
    for item in header.split(',').take(32) {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or_default().trim();
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())
            .unwrap_or(0.0);
        if q <= 0.0 {
            continue;
        }
        let lang = if tag == "*" {
            Some(fallback.unwrap_or_default())
        } else {
            Lang::parse(tag)
        };
        if let Some(lang) = lang
            && best.is_none_or(|(bq, _)| q > bq)
        {
            best = Some((q, lang));
        }
    }
    best.map(|(_, l)| l).or(fallback).unwrap_or_default()
}

/// HTML-escapes the five characters that matter in text and quoted attributes.
pub fn escape(s: &str) -> String {
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

type Catalogue = BTreeMap<String, String>;

struct Pages {
    env: Environment<'static>,
    en: Catalogue,
    de: Catalogue,
}

const TEMPLATES: [(&str, &str); 5] = [
    ("base.html", include_str!("../templates/base.html")),
    ("consent.html", include_str!("../templates/consent.html")),
    ("error.html", include_str!("../templates/error.html")),
    ("reveal.html", include_str!("../templates/reveal.html")),
    (
        "reveal_shown.html",
        include_str!("../templates/reveal_shown.html"),
    ),
];
const EN: &str = include_str!("../templates/locales/en.toml");
const DE: &str = include_str!("../templates/locales/de.toml");

impl Pages {
    fn load() -> Result<Pages, String> {
        let mut env = Environment::new();
        // minijinja's own HTML escaping, but with the five entities of
        // `escape` (no `&#x2f;`), which every HTML parser undoes.
        env.set_formatter(|out, state, value| match value.as_str() {
            Some(text) if state.auto_escape() == AutoEscape::Html && !value.is_safe() => {
                out.write_str(&escape(text)).map_err(minijinja::Error::from)
            }
            _ => minijinja::escape_formatter(out, state, value),
        });
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .map_err(|e| format!("template {name}: {e}"))?;
        }
        let parse = |name: &str, text: &str| {
            toml::from_str::<Catalogue>(text).map_err(|e| format!("catalogue {name}: {e}"))
        };
        Ok(Pages {
            env,
            en: parse("en", EN)?,
            de: parse("de", DE)?,
        })
    }

    fn catalogue(&self, lang: Lang) -> &Catalogue {
        match lang {
            Lang::En => &self.en,
            Lang::De => &self.de,
        }
    }
}

static PAGES: LazyLock<Result<Pages, String>> = LazyLock::new(Pages::load);

/// The message `key` in `lang` (English, then the key itself, when missing),
/// with each `{name}` of `args` filled in. The result is plain text: the
/// templates escape it.
pub fn tr(lang: Lang, key: &str, args: &[(&str, &str)]) -> String {
    let text = match PAGES.as_ref() {
        Ok(p) => p
            .catalogue(lang)
            .get(key)
            .or_else(|| p.en.get(key))
            .map_or(key, String::as_str),
        Err(_) => key,
    };
    args.iter().fold(text.to_owned(), |t, (k, v)| {
        t.replace(&format!("{{{k}}}"), v)
    })
}

/// The branding of a page: a flow configuration's, or the plain default.
#[derive(Debug, Clone, Serialize)]
pub struct Brand {
    pub display_name: Option<String>,
    pub logo_url: Option<String>,
    /// `#rrggbb`, validated where it is stored.
    pub primary: String,
    /// Black or white, whichever contrasts more with `primary`.
    pub on_primary: &'static str,
    pub support_url: Option<String>,
}

/// Blue 700: 6.7:1 against white.
const DEFAULT_PRIMARY: &str = "#1d4ed8";

impl Default for Brand {
    fn default() -> Self {
        Self {
            display_name: None,
            logo_url: None,
            primary: DEFAULT_PRIMARY.into(),
            on_primary: "#ffffff",
            support_url: None,
        }
    }
}

impl Brand {
    /// `primary` must be `#rrggbb`; anything else falls back to the default.
    pub fn new(
        display_name: Option<String>,
        logo_url: Option<String>,
        primary: Option<&str>,
        support_url: Option<String>,
    ) -> Self {
        let (primary, on_primary) = match primary.and_then(rgb) {
            Some(c) => (primary.unwrap_or(DEFAULT_PRIMARY).to_owned(), text_on(c)),
            None => (DEFAULT_PRIMARY.to_owned(), "#ffffff"),
        };
        Self {
            display_name,
            logo_url,
            primary,
            on_primary,
            support_url,
        }
    }
}

/// `#rrggbb` as three bytes.
pub fn rgb(s: &str) -> Option<[u8; 3]> {
    let hex = s.strip_prefix('#').filter(|h| h.len() == 6)?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    Some([byte(0)?, byte(2)?, byte(4)?])
}

/// WCAG 2 relative luminance.
fn luminance([r, g, b]: [u8; 3]) -> f64 {
    let lin = |c: u8| {
        let c = f64::from(c) / 255.0;
        if c <= 0.039_28 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)
}

/// The text colour (black or white) with the higher contrast on `bg`.
fn text_on(bg: [u8; 3]) -> &'static str {
    let l = luminance(bg);
    let on_white = 1.05 / (l + 0.05);
    let on_black = (l + 0.05) / 0.05;
    if on_white >= on_black {
        "#ffffff"
    } else {
        "#000000"
    }
}

/// Every page's policy: no scripts, no foreign resources, never framed, and
/// forms post only back here.
pub(super) const BASE_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'";

/// `scheme://host[:port]` of `uri` as CSP's host-source grammar can write it,
/// rebuilt from the URI as a browser parses it (so nothing in a URI can add
/// a source or a directive); an IPv6 literal gets its scheme alone (CSP
/// cannot write one); `None` for anything else.
fn host_source(uri: &str, schemes: &[&str]) -> Option<String> {
    let u = url::Url::parse(uri).ok()?;
    let scheme = u.scheme();
    if !schemes.contains(&scheme) {
        return None;
    }
    let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
    match u.host()? {
        url::Host::Ipv6(_) => Some(format!("{scheme}:")),
        url::Host::Ipv4(ip) => Some(format!("{scheme}://{ip}{port}")),
        url::Host::Domain(d)
            if d.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }) =>
        {
            Some(format!("{scheme}://{d}{port}"))
        }
        url::Host::Domain(_) => None,
    }
}

/// The consent page's policy: [`BASE_POLICY`] with the origin of this
/// request's redirect URI beside 'self' in `form-action` (Chrome applies it
/// to the redirect that follows the form's POST as well), and, for a branded
/// page, `img-src` of the logo's host only (https).
pub(super) fn consent_policy(redirect_uri: &str, logo_url: Option<&str>) -> HeaderValue {
    let mut policy = BASE_POLICY.to_owned();
    if let Some(target) = host_source(redirect_uri, &["https", "http"]) {
        policy = policy.replacen(
            "form-action 'self'",
            &format!("form-action 'self' {target}"),
            1,
        );
    }
    if let Some(logo) = logo_url.and_then(|l| host_source(l, &["https"]))
        && !logo.ends_with(':')
    {
        policy.push_str(&format!("; img-src {logo}"));
    }
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static(BASE_POLICY))
}

/// A rendered page with its security headers: never cached, never framed,
/// no referrer, the base policy (callers may widen it for the consent page).
pub fn render(
    status: StatusCode,
    template: &str,
    lang: Lang,
    title: &str,
    brand: &Brand,
    extra: Value,
) -> Response {
    let rendered = PAGES.as_ref().map_err(Clone::clone).and_then(|p| {
        let ctx = context! {
            lang => lang.code(),
            t => Value::from_serialize(p.catalogue(lang)),
            title => title,
            brand => Value::from_serialize(brand),
            ..extra
        };
        p.env
            .get_template(template)
            .and_then(|t| t.render(ctx))
            .map_err(|e| format!("{template}: {e}"))
    });
    let (status, html) = match rendered {
        Ok(html) => (status, html),
        Err(e) => {
            // A template bug, not the caller's: no half page, a plain answer.
            let id = crate::telemetry::log_internal("a page could not be rendered", &e);
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "<!doctype html><html lang=\"en\"><title>Error</title><p>Error {id}</p></html>"
                ),
            )
        }
    };
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    // No page may be framed (clickjacking) or run foreign scripts.
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(BASE_POLICY),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_LANGUAGE,
        HeaderValue::from_static(lang.code()),
    );
    response
}

/// An error page: `message` (already in `lang`) under the common heading.
pub fn error_page(status: StatusCode, lang: Lang, brand: &Brand, message: &str) -> Response {
    render(
        status,
        "error.html",
        lang,
        &tr(lang, "error_title", &[]),
        brand,
        context! {
            heading => tr(lang, "error_heading", &[]),
            message => message,
            hint => tr(lang, "error_go_back", &[]),
        },
    )
}

/// A scope in plain words, for people deciding whether to allow it:
/// `configured` (the `[scopes]` table's description in `lang`) when there is
/// one, the built-in wording otherwise.
pub fn describe_scope(lang: Lang, scope: &str, configured: Option<&str>) -> String {
    if let Some(text) = configured.filter(|t| !t.trim().is_empty()) {
        return text.to_owned();
    }
    if scope == "*" {
        return tr(lang, "scope_everything", &[]);
    }
    let (resource, action) = scope.rsplit_once('.').unwrap_or((scope, "*"));
    let resource = resource.replace(['.', '_'], " ");
    let args = |a: &str| [("resource", resource.clone()), ("action", a.to_owned())];
    let key = match action {
        "read" => "scope_read",
        "write" => "scope_write",
        "delete" => "scope_delete",
        "*" => "scope_all",
        _ => "scope_other",
    };
    let action = capitalize(&action.replace('_', " "));
    let owned = args(&action);
    let pairs: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    tr(lang, key, &pairs)
}

/// Does `scope` only read? (`*.read`; everything else changes something.)
pub fn is_read_scope(scope: &str) -> bool {
    scope.rsplit_once('.').is_some_and(|(_, a)| a == "read")
}

/// An administrative scope: `admin` as a segment, or everything (`*`).
pub fn is_admin_scope(scope: &str) -> bool {
    scope == "*" || scope.split('.').any(|s| s == "admin")
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

#[cfg(test)]
pub(super) fn catalogues() -> (Vec<String>, Vec<String>) {
    match PAGES.as_ref() {
        Ok(p) => (
            p.en.keys().cloned().collect(),
            p.de.keys().cloned().collect(),
        ),
        Err(e) => panic!("{e}"),
    }
}
