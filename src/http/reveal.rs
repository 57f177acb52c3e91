//! One-time reveal links, made to survive link scanners: mail gateways and
//! chat previews fetch every link they see, so `GET /reveal/<token>` only
//! shows a confirmation page and redeems nothing; the secret is shown after
//! a `POST` to the same address (the page's button), or through
//! `RevealService/RevealSecret`. Every answer carries
//! `Cache-Control: no-store`, and an unknown, expired or used token gets
//! the same 404 whichever it was.
//!
//! The `POST` answers in HTML to a browser (its `Accept` names
//! `text/html`) and in JSON to anything else.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;

use super::HttpState;
use super::error::{ApiError, json_response};
use super::oauth::page::{Brand, negotiate, render, tr};
use crate::domain::error::Error;

pub fn routes(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/reveal/{token}", get(confirm).post(reveal))
        .with_state(state)
}

/// The confirmation page: a button that posts back here. No lookup, no
/// redemption: a scanner that fetches the link changes nothing.
async fn confirm(headers: HeaderMap) -> Response {
    let lang = negotiate(&headers, None);
    render(
        StatusCode::OK,
        "reveal.html",
        lang,
        &tr(lang, "reveal_title", &[]),
        &Brand::default(),
        minijinja::context! {},
    )
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

async fn reveal(
    State(state): State<Arc<HttpState>>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let html = wants_html(&headers);
    let revealed = match state.services.reveals.redeem(&token).await {
        Ok(r) => r,
        Err(Error::NotFound { .. }) if html => {
            let lang = negotiate(&headers, None);
            return Ok(render(
                StatusCode::NOT_FOUND,
                "error.html",
                lang,
                &tr(lang, "reveal_invalid_title", &[]),
                &Brand::default(),
                minijinja::context! {
                    heading => tr(lang, "reveal_invalid_title", &[]),
                    message => tr(lang, "reveal_invalid_body", &[]),
                },
            ));
        }
        Err(Error::NotFound { .. }) => {
            return Err(ApiError::not_found(
                "this reveal link is unknown, expired or already used",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(kind = %revealed.kind, subject_id = %revealed.subject_id, "reveal link redeemed");
    if html {
        let lang = negotiate(&headers, None);
        return Ok(render(
            StatusCode::OK,
            "reveal_shown.html",
            lang,
            &tr(lang, "reveal_shown_title", &[]),
            &Brand::default(),
            minijinja::context! {
                kind => &revealed.kind,
                subject => &revealed.subject_id,
                secret => revealed.secret.expose(),
            },
        ));
    }
    let body = serde_json::json!({
        "secret": revealed.secret.expose(),
        "kind": revealed.kind,
        "subject_id": revealed.subject_id,
    });
    let mut response = json_response(StatusCode::OK, body);
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(response)
}
