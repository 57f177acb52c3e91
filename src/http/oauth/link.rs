//! `GET/POST /oauth2/consent`: signed consent links. The link is an
//! authorization request plus `timestamp`, `uid` and `signature`, signed
//! with the client's signing secret (`signing_secret_id`) in the seed's
//! form: every parameter but `signature`, sorted by key, `key=value` joined
//! by `&`, raw values, HMAC-SHA256, lowercase hex — checked by
//! `SigningManager::verify_url`, which also honours rotation (a link is
//! checked against the version current at its timestamp). A valid link
//! stands in for the login header: the platform vouches that `uid` is the
//! user. The form posts the link back, where it is verified again; a link
//! is decided on once.
//!
//! A secret in the strict form (`LATCHKEY-URL-V2`) signs scheme, host and
//! path too, so its links are verified as the absolute URL they point at:
//! the configured public base (`tokens.issuer`, the base every OAuth2
//! endpoint in the metadata has) + `/oauth2/consent` + the query as sent.
//! The request's own `Host` header never enters it: a link signed for
//! another host or path does not verify here. The seed form signs only
//! the query, so the same URL serves both.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::consent::{
    Look, consent_page, decide, duplicate, flow_config, redirect_error, validate,
};
use super::params;
use crate::crypto::mac::parse_hex32;
use crate::domain::error::Error;
use crate::domain::signing::VerifyReason;
use crate::domain::signing::formats::parse_iso8601;
use crate::domain::tokens::AuthorizeRequest;
use crate::http::HttpState;

/// A verified signed consent link.
struct Link {
    request: AuthorizeRequest,
    uid: String,
    signature: [u8; 32],
    /// When the link stops being valid (its use is remembered until then).
    expires_at: i64,
    look: Look,
}

/// The CSRF "user" of a signed link's form: the link and its user, so that
/// a form shown for one link posts for that link only.
fn link_subject(link: &Link) -> String {
    format!(
        "signed-link:{}:{}",
        crate::crypto::hex(&link.signature),
        link.uid
    )
}

/// The URL a consent link with query `raw` was signed as: the configured
/// public base (`tokens.issuer`), never the request's `Host`.
fn link_url(s: &HttpState, raw: &str) -> String {
    format!("{}/oauth2/consent?{raw}", s.tokens.settings().issuer)
}

/// Checks a signed consent link, `raw` being its query as sent. `Err` is
/// the page to show: nothing unsigned, tampered or expired is redirected.
async fn open_link(s: &HttpState, headers: &HeaderMap, raw: &str) -> Result<Link, Response> {
    let plain = Look::plain(headers);
    let p = params(raw.as_bytes()).map_err(|m| duplicate(&plain, &m))?;
    let missing = |name: &str| {
        plain.error(
            StatusCode::BAD_REQUEST,
            "error_missing_parameter",
            &[("name", name)],
        )
    };
    let Some(signature) = p.get("signature").filter(|v| !v.is_empty()) else {
        return Err(plain.error(StatusCode::BAD_REQUEST, "error_link_unsigned", &[]));
    };
    let Some(signature) = parse_hex32(signature) else {
        return Err(plain.error(
            StatusCode::BAD_REQUEST,
            "error_link_malformed",
            &[("name", "signature")],
        ));
    };
    let Some(client_id) = p.get("client_id").filter(|v| !v.is_empty()) else {
        return Err(missing("client_id"));
    };
    let client = match s.tokens.get_client(client_id).await {
        Ok(c) => c,
        Err(Error::InvalidArgument { .. }) | Err(Error::NotFound { .. }) => {
            return Err(plain.error(StatusCode::BAD_REQUEST, "error_unknown_client", &[]));
        }
        Err(e) => {
            crate::telemetry::log_internal("the client could not be read", &e);
            return Err(plain.error(StatusCode::SERVICE_UNAVAILABLE, "error_unavailable", &[]));
        }
    };
    let Some(secret_id) = client.signing_secret_id.as_deref() else {
        return Err(plain.error(StatusCode::BAD_REQUEST, "error_link_no_secret", &[]));
    };
    let verification = match s
        .services
        .signing
        .verify_url(secret_id, &link_url(s, raw))
        .await
    {
        Ok(v) => v,
        Err(e) => {
            crate::telemetry::log_internal("a consent link could not be verified", &e);
            return Err(plain.error(StatusCode::SERVICE_UNAVAILABLE, "error_unavailable", &[]));
        }
    };
    if !verification.valid() {
        tracing::info!(client_id = %client.client_id, reason = verification.reason.code(), "consent link refused");
        let (key, name) = match verification.reason {
            VerifyReason::Missing => ("error_link_unsigned", ""),
            VerifyReason::Malformed => ("error_link_malformed", "timestamp"),
            VerifyReason::Expired => ("error_link_expired", ""),
            VerifyReason::SecretRevoked => ("error_link_revoked", ""),
            VerifyReason::Invalid if verification.message.contains("future") => {
                ("error_link_future", "")
            }
            VerifyReason::Invalid | VerifyReason::Valid => ("error_link_tampered", ""),
        };
        let status = if verification.reason == VerifyReason::Expired {
            StatusCode::GONE
        } else {
            StatusCode::FORBIDDEN
        };
        return Err(plain.error(status, key, &[("name", name)]));
    }
    let Some(uid) = p.get("uid").map(|u| u.trim()).filter(|u| !u.is_empty()) else {
        return Err(missing("uid"));
    };
    if uid.len() > 256 || uid.chars().any(char::is_control) {
        return Err(plain.error(
            StatusCode::BAD_REQUEST,
            "error_invalid_parameter",
            &[("name", "uid")],
        ));
    }
    // verify_url has parsed it: a valid link has a readable timestamp.
    let signed_at = p
        .get("timestamp")
        .and_then(|t| parse_iso8601(t))
        .unwrap_or_else(|| s.services.clock.now());
    let settings = s.services.signing.settings();
    let expires_at =
        signed_at + (settings.url_validity_secs + settings.tolerance_secs.max(0)) * 1000;
    match s.services.consent.link_used(&signature).await {
        Ok(false) => {}
        Ok(true) => return Err(plain.error(StatusCode::GONE, "error_link_used", &[])),
        Err(e) => {
            crate::telemetry::log_internal("a consent link's use could not be read", &e);
            return Err(plain.error(StatusCode::SERVICE_UNAVAILABLE, "error_unavailable", &[]));
        }
    }
    let request = validate(s, &p, Some("code"), true)
        .await
        .map_err(|e| redirect_error(&plain, e))?;
    let flow = flow_config(s, headers, &request.client.account_id, &p).await?;
    Ok(Link {
        request,
        uid: uid.to_owned(),
        signature,
        expires_at,
        look: Look::of(headers, flow.as_ref()),
    })
}

/// `GET /oauth2/consent?…&signature=…`: a signed consent link.
pub(super) async fn link_page(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let raw = query.unwrap_or_default();
    let link = match open_link(&s, &headers, &raw).await {
        Ok(l) => l,
        Err(page) => return page,
    };
    let fields = vec![
        ("link".to_owned(), raw),
        (
            "csrf_token".to_owned(),
            s.csrf
                .token(s.services.clock.now(), &link_subject(&link), &link.request),
        ),
    ];
    consent_page(
        &s,
        &link.look,
        &link.request,
        &link.uid,
        "/oauth2/consent",
        fields,
    )
    .await
}

/// `POST /oauth2/consent`: the decision on a signed link's page. The link
/// is verified again, and decided on once only.
pub(super) async fn link_decision(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let plain = Look::plain(&headers);
    let p = match params(&body) {
        Ok(p) => p,
        Err(m) => return duplicate(&plain, &m),
    };
    let Some(raw) = p.get("link") else {
        return plain.error(
            StatusCode::BAD_REQUEST,
            "error_missing_parameter",
            &[("name", "link")],
        );
    };
    let link = match open_link(&s, &headers, raw).await {
        Ok(l) => l,
        Err(page) => return page,
    };
    let csrf = p.get("csrf_token").map(String::as_str).unwrap_or_default();
    if !s.csrf.verify(
        s.services.clock.now(),
        &link_subject(&link),
        &link.request,
        csrf,
    ) {
        return link.look.error(StatusCode::FORBIDDEN, "error_csrf", &[]);
    }
    match s
        .services
        .consent
        .use_link(
            &link.signature,
            &link.request.client.client_id,
            link.expires_at,
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => return link.look.error(StatusCode::GONE, "error_link_used", &[]),
        Err(e) => {
            crate::telemetry::log_internal("a consent link's use could not be recorded", &e);
            return link
                .look
                .error(StatusCode::SERVICE_UNAVAILABLE, "error_unavailable", &[]);
        }
    }
    decide(
        &s,
        &link.look,
        &link.request,
        &link.uid,
        p.get("decision").map(String::as_str),
    )
    .await
}
