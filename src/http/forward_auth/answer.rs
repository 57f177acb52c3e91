//! How a proxy hears of the gate's verdict: one exhaustive table from
//! [`Reason`] to the HTTP answer, and the answers themselves.
//!
//! - allow: 200 with the principal headers, for the proxy to copy upstream
//!   (all five, empty on a public route: Caddy 2.6 would otherwise copy a
//!   literal placeholder for a missing one);
//! - a missing or bad credential: 401 with `WWW-Authenticate` (RFC 6750 §3);
//! - not permitted: 403; a request that cannot be judged: 400;
//! - the decision could not be made: 503, which every proxy turns into a
//!   refusal.
//!
//! Denials carry the JSON body ext_authz sends. For nginx (see
//! [`Style::Nginx`]) a status other than 401 and 403 is sent as 403 and
//! the real one in `x-latchkey-status`, the body also in
//! `x-latchkey-denial`, which the example configuration's `error_page`
//! locations turn back into the real answer.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::describe::Style;
use crate::domain::limits::{RateState, rate_limit_headers};
use crate::domain::reason::Reason;
use crate::domain::resolver::ResolvedKey;

/// How a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the request cannot be judged as described.
    BadRequest,
    /// 401 with a `WWW-Authenticate` challenge: the caller did not prove who it is.
    Unauthenticated,
    /// 403: the caller is known and not allowed, or the asker is not a trusted proxy.
    Forbidden,
    /// 429 with `Retry-After` and the rate-limit fields: a limit is spent.
    TooManyRequests,
}

/// What the proxy is told for a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Allow,
    Refuse(Refusal),
    /// 503: the proxy refuses the request.
    Unavailable,
}

/// The one table. Exhaustive, so a new reason cannot reach a proxy unmapped.
pub fn answer(reason: Reason) -> Answer {
    use Refusal::{BadRequest, Forbidden, TooManyRequests, Unauthenticated};
    match reason {
        Reason::RateLimited | Reason::TooManyFailures => Answer::Refuse(TooManyRequests),
        Reason::Allowed => Answer::Allow,
        Reason::InternalError => Answer::Unavailable,
        Reason::RequestInvalid | Reason::PathInvalid => Answer::Refuse(BadRequest),
        Reason::CredentialMissing
        | Reason::CredentialMalformed
        | Reason::CredentialUnknown
        | Reason::KeyRevoked
        | Reason::KeyExpired
        | Reason::KeySuspended
        | Reason::KeyRotated
        | Reason::LiveModeInactive
        | Reason::TokenUnsigned
        | Reason::TokenAlgorithmMismatch
        | Reason::TokenKeyUnknown
        | Reason::TokenSignatureInvalid
        | Reason::TokenExpired
        | Reason::TokenNotYetValid
        | Reason::TokenClaimsInvalid
        | Reason::TokenRevoked
        | Reason::SignatureMissing
        | Reason::SignatureInvalid
        | Reason::SignatureExpired => Answer::Refuse(Unauthenticated),
        Reason::ModeMismatch
        | Reason::IpNotAllowed
        | Reason::OriginNotAllowed
        | Reason::PermissionDenied
        | Reason::PlanNotEntitled
        | Reason::StoreNotAllowed
        | Reason::PathNotAllowed
        | Reason::RouteNotAllowed
        | Reason::BodyUnavailable
        | Reason::ProxyNotTrusted => Answer::Refuse(Forbidden),
    }
}

impl Refusal {
    fn status(self) -> StatusCode {
        match self {
            Refusal::BadRequest => StatusCode::BAD_REQUEST,
            Refusal::Unauthenticated => StatusCode::UNAUTHORIZED,
            Refusal::Forbidden => StatusCode::FORBIDDEN,
            Refusal::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The body's `error`, as ext_authz writes it.
    fn error(self) -> &'static str {
        match self {
            Refusal::BadRequest => "bad_request",
            Refusal::Unauthenticated => "unauthorized",
            Refusal::Forbidden => "forbidden",
            Refusal::TooManyRequests => "too_many_requests",
        }
    }
}

/// The header names an answer uses, built once from the principal prefix.
#[derive(Debug, Clone)]
pub struct Names {
    /// account, key, mode, scopes, plan.
    principal: [HeaderName; 5],
    /// nginx style: the real status, and the body.
    status: HeaderName,
    denial: HeaderName,
}

const PRINCIPAL_FIELDS: [&str; 5] = ["account-id", "key-id", "mode", "scopes", "plan"];

impl Names {
    /// `prefix` is a validated header-name prefix (`x-latchkey-`).
    pub fn new(prefix: &str) -> Result<Self, String> {
        let name = |field: &str| {
            HeaderName::from_bytes(format!("{prefix}{field}").as_bytes())
                .map_err(|_| format!("`{prefix}{field}` is not a header name"))
        };
        let mut principal = Vec::with_capacity(PRINCIPAL_FIELDS.len());
        for f in PRINCIPAL_FIELDS {
            principal.push(name(f)?);
        }
        let principal: [HeaderName; 5] = principal
            .try_into()
            .map_err(|_| "five principal headers".to_owned())?;
        Ok(Self {
            principal,
            status: name("status")?,
            denial: name("denial")?,
        })
    }
}

/// The rate-limit fields, as ext_authz sends them.
fn add_limit(headers: &mut HeaderMap, reason: Reason, limit: Option<&RateState>) {
    let Some(state) = limit else { return };
    let policy = if reason == Reason::TooManyFailures {
        "failed_auth"
    } else {
        "key"
    };
    for (name, value) in rate_limit_headers(policy, state) {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

/// 200, with the principal headers (empty without a key) and the key's
/// rate-limit fields, for a proxy that passes them on.
pub fn allowed(
    names: &Names,
    style: Style,
    key: Option<&ResolvedKey>,
    limit: Option<&RateState>,
) -> Response {
    let mut headers = HeaderMap::with_capacity(names.principal.len() + 6);
    add_limit(&mut headers, Reason::Allowed, limit);
    match key {
        Some(key) => {
            let values = [
                key.record.account_id.as_str(),
                key.record.id.as_str(),
                key.record.mode.tag(),
                &key.scope_strings.join(","),
                key.account.plan.as_str(),
            ];
            for (name, value) in names.principal.iter().zip(values) {
                let Ok(value) = HeaderValue::from_str(value) else {
                    // Only a plan name with characters a header cannot
                    // carry gets here: deny rather than drop the field.
                    tracing::error!(header = %name, "a principal field cannot be sent as a header; denying");
                    return unavailable(names, style);
                };
                headers.insert(name.clone(), value);
            }
        }
        None => {
            for name in &names.principal {
                headers.insert(name.clone(), HeaderValue::from_static(""));
            }
        }
    }
    (StatusCode::OK, headers).into_response()
}

/// The denial for `reason`, as [`answer`] says. A reason that is not a
/// denial (an allow, or a decision that could not be made) is refused with
/// 403 here: deny by default, as for a stored rule that no longer parses.
pub fn denied(names: &Names, style: Style, reason: Reason, message: &str) -> Response {
    denied_limited(names, style, reason, message, None)
}

/// A denial that also says where the caller's limit stands.
pub fn denied_limited(
    names: &Names,
    style: Style,
    reason: Reason,
    message: &str,
    limit: Option<&RateState>,
) -> Response {
    let refusal = match answer(reason) {
        Answer::Refuse(r) => r,
        Answer::Allow | Answer::Unavailable => Refusal::Forbidden,
    };
    let code = reason.code();
    let body = json_ascii(
        &serde_json::json!({ "error": refusal.error(), "reason": code, "message": message })
            .to_string(),
    );
    let mut headers = HeaderMap::new();
    if refusal == Refusal::Unauthenticated {
        // RFC 6750 §3.1: a request with no credential gets no error code.
        let challenge = if reason == Reason::CredentialMissing {
            HeaderValue::from_static("Bearer realm=\"latchkey\"")
        } else {
            HeaderValue::from_str(&format!(
                "Bearer realm=\"latchkey\", error=\"invalid_token\", error_description=\"{code}\""
            ))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer realm=\"latchkey\""))
        };
        headers.insert(header::WWW_AUTHENTICATE, challenge);
    }
    add_limit(&mut headers, reason, limit);
    respond(names, style, refusal.status(), headers, body)
}

/// 503: the decision could not be made. Every proxy refuses on it.
pub fn unavailable(names: &Names, style: Style) -> Response {
    let body = r#"{"error":"unavailable","message":"the decision could not be made","reason":"INTERNAL_ERROR"}"#;
    respond(
        names,
        style,
        StatusCode::SERVICE_UNAVAILABLE,
        HeaderMap::new(),
        body.to_owned(),
    )
}

/// A JSON denial with `status`, written for `style`.
fn respond(
    names: &Names,
    style: Style,
    status: StatusCode,
    mut headers: HeaderMap,
    body: String,
) -> Response {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let mut sent = status;
    if style == Style::Nginx {
        // `json_ascii` leaves only visible ASCII: always a valid value.
        if let Ok(denial) = HeaderValue::from_str(&body) {
            headers.insert(names.denial.clone(), denial);
        }
        headers.insert(names.status.clone(), HeaderValue::from(status.as_u16()));
        if !matches!(
            status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::SERVICE_UNAVAILABLE
        ) {
            sent = StatusCode::FORBIDDEN;
        }
    }
    (sent, headers, Body::from(body)).into_response()
}

/// `json` with every character outside visible ASCII written as a `\u`
/// escape, so that it can also travel as a header value. Outside strings
/// serde_json writes ASCII only, so this escapes inside strings alone.
fn json_ascii(json: &str) -> String {
    if json.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return json.to_owned();
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if (' '..='~').contains(&c) {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reason, for the table's tests.
    const ALL: [Reason; 35] = [
        Reason::Allowed,
        Reason::CredentialMissing,
        Reason::CredentialMalformed,
        Reason::CredentialUnknown,
        Reason::KeyRevoked,
        Reason::KeyExpired,
        Reason::KeySuspended,
        Reason::KeyRotated,
        Reason::ModeMismatch,
        Reason::LiveModeInactive,
        Reason::IpNotAllowed,
        Reason::OriginNotAllowed,
        Reason::PermissionDenied,
        Reason::PlanNotEntitled,
        Reason::StoreNotAllowed,
        Reason::InternalError,
        Reason::TokenUnsigned,
        Reason::TokenAlgorithmMismatch,
        Reason::TokenKeyUnknown,
        Reason::TokenSignatureInvalid,
        Reason::TokenExpired,
        Reason::TokenNotYetValid,
        Reason::TokenClaimsInvalid,
        Reason::TokenRevoked,
        Reason::SignatureMissing,
        Reason::SignatureInvalid,
        Reason::SignatureExpired,
        Reason::PathNotAllowed,
        Reason::RequestInvalid,
        Reason::PathInvalid,
        Reason::RouteNotAllowed,
        Reason::BodyUnavailable,
        Reason::ProxyNotTrusted,
        Reason::RateLimited,
        Reason::TooManyFailures,
    ];

    /// 401 exactly where the caller failed to prove who it is.
    #[test]
    fn a_401_is_an_authentication_failure() {
        for r in ALL {
            let unauthenticated = answer(r) == Answer::Refuse(Refusal::Unauthenticated);
            let expected = r.is_authentication_failure() && r != Reason::InternalError;
            assert_eq!(unauthenticated, expected, "{r:?}");
        }
    }

    fn names() -> Names {
        Names::new("x-latchkey-").unwrap()
    }

    async fn parts(r: Response) -> (u16, HeaderMap, String) {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    fn get<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
        h.get(name).map(|v| v.to_str().unwrap())
    }

    #[tokio::test]
    async fn plain_denials_carry_status_challenge_and_the_ext_authz_body() {
        let n = names();
        let (status, h, body) =
            parts(denied(&n, Style::Plain, Reason::CredentialMissing, "none")).await;
        assert_eq!(status, 401);
        assert_eq!(
            get(&h, "www-authenticate"),
            Some("Bearer realm=\"latchkey\"")
        );
        assert_eq!(get(&h, "content-type"), Some("application/json"));
        assert_eq!(
            body,
            r#"{"error":"unauthorized","message":"none","reason":"CREDENTIAL_MISSING"}"#
        );
        assert_eq!(get(&h, "x-latchkey-status"), None);
        assert_eq!(get(&h, "x-latchkey-denial"), None);

        let (status, h, _) = parts(denied(&n, Style::Plain, Reason::KeyRevoked, "revoked")).await;
        assert_eq!(status, 401);
        assert!(
            get(&h, "www-authenticate")
                .unwrap()
                .ends_with("error=\"invalid_token\", error_description=\"KEY_REVOKED\"")
        );
        for (reason, status, error) in [
            (Reason::PathInvalid, 400, "bad_request"),
            (Reason::RouteNotAllowed, 403, "forbidden"),
            (Reason::BodyUnavailable, 403, "forbidden"),
            (Reason::ProxyNotTrusted, 403, "forbidden"),
            // Not a denial, yet asked for as one: refused all the same.
            (Reason::InternalError, 403, "forbidden"),
            (Reason::Allowed, 403, "forbidden"),
        ] {
            let (got, h, body) = parts(denied(&n, Style::Plain, reason, "m")).await;
            assert_eq!(got, status, "{reason:?}");
            assert_eq!(get(&h, "www-authenticate"), None, "{reason:?}");
            let body: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["error"], error, "{reason:?}");
            assert_eq!(body["reason"], reason.code(), "{reason:?}");
        }
    }

    #[tokio::test]
    async fn nginx_denials_carry_the_real_status_and_body_in_headers() {
        let n = names();
        let (status, h, body) = parts(denied(&n, Style::Nginx, Reason::PathInvalid, "bad")).await;
        assert_eq!(status, 403, "auth_request passes only 401 and 403");
        assert_eq!(get(&h, "x-latchkey-status"), Some("400"));
        assert_eq!(get(&h, "x-latchkey-denial"), Some(body.as_str()));
        let (status, h, _) = parts(denied(&n, Style::Nginx, Reason::CredentialUnknown, "u")).await;
        assert_eq!((status, get(&h, "x-latchkey-status")), (401, Some("401")));
        assert!(get(&h, "www-authenticate").is_some());
        let (status, h, body) = parts(unavailable(&n, Style::Nginx)).await;
        assert_eq!((status, get(&h, "x-latchkey-status")), (503, Some("503")));
        assert_eq!(get(&h, "x-latchkey-denial"), Some(body.as_str()));
        let (status, h, _) = parts(unavailable(&n, Style::Plain)).await;
        assert_eq!((status, get(&h, "x-latchkey-denial")), (503, None));
    }

    #[tokio::test]
    async fn a_body_outside_ascii_still_fits_a_header() {
        let (_, h, body) = parts(denied(
            &names(),
            Style::Nginx,
            Reason::PlanNotEntitled,
            "the plan `Grün 🌱` does not include\u{7f} this",
        ))
        .await;
        assert!(body.is_ascii(), "{body}");
        assert_eq!(get(&h, "x-latchkey-denial"), Some(body.as_str()));
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            parsed["message"],
            "the plan `Grün 🌱` does not include\u{7f} this"
        );
    }

    #[tokio::test]
    async fn an_allow_without_a_key_sends_the_five_headers_empty() {
        let (status, h, body) = parts(allowed(&names(), Style::Plain, None, None)).await;
        assert_eq!((status, body.as_str()), (200, ""));
        for f in PRINCIPAL_FIELDS {
            assert_eq!(get(&h, &format!("x-latchkey-{f}")), Some(""), "{f}");
        }
    }

    #[test]
    fn names_follow_the_prefix() {
        let n = Names::new("x-acme-").unwrap();
        assert_eq!(n.principal[0].as_str(), "x-acme-account-id");
        assert_eq!(n.denial.as_str(), "x-acme-denial");
        assert!(Names::new("bad prefix ").is_err());
    }
}
