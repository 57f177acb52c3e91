//! The consent page, reached two ways: `GET/POST /oauth2/authorize`
//! (RFC 6749 §4.1.1, PKCE per RFC 7636), where the signed-in user is the
//! trusted login header (`tokens.user_header`); and a signed consent link
//! (`link.rs`). Either way the decision goes back to the client as a
//! redirect (§4.1.2), and only ever to a registered redirect URI: every
//! other problem gets a page that names it, in the user's language.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::context;
use serde::Serialize;

use super::page::{
    Brand, Lang, consent_policy, describe_scope, error_page, is_admin_scope, is_read_scope,
    negotiate, render, tr,
};
use super::params;
use crate::domain::consent::FlowConfigRecord;
use crate::domain::model::Mode;
use crate::domain::tokens::{AuthorizeError, AuthorizeParams, AuthorizeRequest};
use crate::http::HttpState;
use crate::http::error::no_store;

/// A page's language and branding, once the flow configuration is known.
pub(super) struct Look {
    lang: Lang,
    brand: Brand,
    logo_url: Option<String>,
}

impl Look {
    pub(super) fn plain(headers: &HeaderMap) -> Self {
        Self {
            lang: negotiate(headers, None),
            brand: Brand::default(),
            logo_url: None,
        }
    }

    pub(super) fn of(headers: &HeaderMap, flow: Option<&FlowConfigRecord>) -> Self {
        let Some(f) = flow else {
            return Self::plain(headers);
        };
        Self {
            lang: negotiate(headers, Lang::parse(&f.default_language)),
            brand: Brand::new(
                Some(f.display_name.clone()),
                f.logo_url.clone(),
                f.primary_color.as_deref(),
                f.support_url.clone(),
            ),
            logo_url: f.logo_url.clone(),
        }
    }

    pub(super) fn error(&self, status: StatusCode, key: &str, args: &[(&str, &str)]) -> Response {
        error_page(status, self.lang, &self.brand, &tr(self.lang, key, args))
    }
}

/// `uri` with these query parameters appended (RFC 6749 §4.1.2).
fn redirect_with(look: &Look, uri: &str, pairs: &[(&str, &str)]) -> Response {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        query.append_pair(k, v);
    }
    let sep = if uri.contains('?') { '&' } else { '?' };
    let location = format!("{uri}{sep}{}", query.finish());
    match HeaderValue::from_str(&location) {
        Ok(value) => {
            let mut response = StatusCode::FOUND.into_response();
            response.headers_mut().insert(header::LOCATION, value);
            no_store(response)
        }
        Err(_) => look.error(StatusCode::BAD_REQUEST, "error_redirect_unusable", &[]),
    }
}

/// The domain's page-only messages as catalogue keys (the domain speaks
/// English; the pages speak the user's language).
fn page_message(look: &Look, message: &str) -> Response {
    let key = if message.starts_with("unknown client") {
        "error_unknown_client"
    } else if message.contains("redirect URI is not registered") {
        "error_unregistered_redirect"
    } else if message.contains("could not be checked") {
        return look.error(StatusCode::SERVICE_UNAVAILABLE, "error_unavailable", &[]);
    } else {
        return look.error(
            StatusCode::BAD_REQUEST,
            "error_other",
            &[("detail", message)],
        );
    };
    look.error(StatusCode::BAD_REQUEST, key, &[])
}

pub(super) fn redirect_error(look: &Look, e: AuthorizeError) -> Response {
    match e {
        AuthorizeError::Page(message) => page_message(look, &message),
        AuthorizeError::Redirect {
            redirect_uri,
            error,
            description,
            state,
        } => {
            let mut pairs = vec![
                ("error", error),
                ("error_description", description.as_str()),
            ];
            if let Some(state) = state.as_deref() {
                pairs.push(("state", state));
            }
            redirect_with(look, &redirect_uri, &pairs)
        }
    }
}

fn user(s: &HttpState, headers: &HeaderMap) -> Option<String> {
    headers
        .get(s.user_header.as_str())
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|u| !u.is_empty() && u.len() <= 256)
        .map(str::to_owned)
}

fn not_signed_in(s: &HttpState, look: &Look) -> Response {
    look.error(
        StatusCode::UNAUTHORIZED,
        "error_not_signed_in",
        &[("header", &s.user_header)],
    )
}

pub(super) fn duplicate(look: &Look, message: &str) -> Response {
    // `params` names the parameter between backticks.
    let name = message.split('`').nth(1).unwrap_or("?");
    look.error(
        StatusCode::BAD_REQUEST,
        "error_duplicate_parameter",
        &[("name", name)],
    )
}

pub(super) async fn validate(
    s: &HttpState,
    p: &HashMap<String, String>,
    default_response_type: Option<&'static str>,
    pkce_optional: bool,
) -> Result<AuthorizeRequest, AuthorizeError> {
    let get = |k: &str| p.get(k).map(String::as_str);
    s.tokens
        .authorize_request(AuthorizeParams {
            response_type: get("response_type").or(default_response_type),
            client_id: get("client_id"),
            redirect_uri: get("redirect_uri"),
            scope: get("scope"),
            state: get("state"),
            code_challenge: get("code_challenge"),
            code_challenge_method: get("code_challenge_method"),
            pkce_optional,
        })
        .await
}

/// The flow configuration `flow_config` names in the client's account.
pub(super) async fn flow_config(
    s: &HttpState,
    headers: &HeaderMap,
    account_id: &str,
    p: &HashMap<String, String>,
) -> Result<Option<FlowConfigRecord>, Response> {
    let Some(name) = p.get("flow_config").filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    match s.services.consent.find(account_id, name).await {
        Ok(Some(f)) => Ok(Some(f)),
        Ok(None) => Err(Look::plain(headers).error(
            StatusCode::BAD_REQUEST,
            "error_unknown_flow_config",
            &[("name", name)],
        )),
        Err(e) => {
            crate::telemetry::log_internal("the flow configuration could not be read", &e);
            Err(Look::plain(headers).error(
                StatusCode::SERVICE_UNAVAILABLE,
                "error_unavailable",
                &[],
            ))
        }
    }
}

#[derive(Serialize)]
struct ScopeLine {
    scope: String,
    description: String,
    admin: bool,
}

/// The consent page for `request`, shown to `user`; the form posts
/// `fields` (plus the decision) to `action`.
pub(super) async fn consent_page(
    s: &HttpState,
    look: &Look,
    request: &AuthorizeRequest,
    user: &str,
    action: &str,
    fields: Vec<(String, String)>,
) -> Response {
    let lang = look.lang;
    let account = match s.services.accounts.get(&request.client.account_id).await {
        Ok(a) => a.name,
        Err(_) => request.client.account_id.clone(),
    };
    let line = |sc: &String| ScopeLine {
        description: describe_scope(lang, sc, s.scope_description(sc, lang)),
        admin: is_admin_scope(sc),
        scope: sc.clone(),
    };
    let read: Vec<ScopeLine> = request
        .scope
        .iter()
        .filter(|sc| is_read_scope(sc))
        .map(line)
        .collect();
    let change: Vec<ScopeLine> = request
        .scope
        .iter()
        .filter(|sc| !is_read_scope(sc))
        .map(line)
        .collect();
    let redirect_host = url::Url::parse(&request.redirect_uri)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| request.redirect_uri.clone());
    let mut response = render(
        StatusCode::OK,
        "consent.html",
        lang,
        &tr(lang, "consent_title", &[]),
        &look.brand,
        context! {
            client => &request.client.name,
            account => account,
            test_mode => request.client.mode == Mode::Test,
            user => user,
            read_scopes => read,
            change_scopes => change,
            action => action,
            fields => fields,
            redirect_host => redirect_host,
        },
    );
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        consent_policy(&request.redirect_uri, look.logo_url.as_deref()),
    );
    response
}

/// The request's own fields, as the form carries them back.
fn request_fields(request: &AuthorizeRequest) -> Vec<(String, String)> {
    let mut f = vec![
        ("response_type".to_owned(), "code".to_owned()),
        ("client_id".to_owned(), request.client.client_id.clone()),
        ("redirect_uri".to_owned(), request.redirect_uri.clone()),
        ("scope".to_owned(), request.scope.join(" ")),
    ];
    if let Some(state) = &request.state {
        f.push(("state".to_owned(), state.clone()));
    }
    f.push(("code_challenge".to_owned(), request.code_challenge.clone()));
    f.push(("code_challenge_method".to_owned(), "S256".to_owned()));
    f
}

/// Allow or deny, sent to the client's (registered) redirect URI.
pub(super) async fn decide(
    s: &HttpState,
    look: &Look,
    request: &AuthorizeRequest,
    user: &str,
    decision: Option<&str>,
) -> Response {
    let state = request.state.as_deref();
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    match decision {
        Some("allow") => match s.tokens.issue_code(request, user).await {
            Ok(code) => {
                tracing::info!(client_id = %request.client.client_id, "authorization granted");
                pairs.push(("code", code.expose()));
                if let Some(state) = state {
                    pairs.push(("state", state));
                }
                redirect_with(look, &request.redirect_uri, &pairs)
            }
            Err(e) => {
                // The redirect has room for the code only; the cause goes to the log.
                crate::telemetry::log_internal("the authorization code could not be issued", &e);
                pairs.push(("error", "server_error"));
                if let Some(state) = state {
                    pairs.push(("state", state));
                }
                redirect_with(look, &request.redirect_uri, &pairs)
            }
        },
        _ => {
            pairs.push(("error", "access_denied"));
            pairs.push(("error_description", "the resource owner denied the request"));
            if let Some(state) = state {
                pairs.push(("state", state));
            }
            redirect_with(look, &request.redirect_uri, &pairs)
        }
    }
}

pub(super) async fn authorize_page(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let plain = Look::plain(&headers);
    let Some(user) = user(&s, &headers) else {
        return not_signed_in(&s, &plain);
    };
    let p = match params(query.unwrap_or_default().as_bytes()) {
        Ok(p) => p,
        Err(m) => return duplicate(&plain, &m),
    };
    let request = match validate(&s, &p, None, false).await {
        Ok(r) => r,
        Err(e) => return redirect_error(&plain, e),
    };
    let flow = match flow_config(&s, &headers, &request.client.account_id, &p).await {
        Ok(f) => f,
        Err(page) => return page,
    };
    let look = Look::of(&headers, flow.as_ref());
    let mut fields = request_fields(&request);
    if let Some(f) = &flow {
        fields.push(("flow_config".to_owned(), f.name.clone()));
    }
    fields.push((
        "csrf_token".to_owned(),
        s.csrf.token(s.services.clock.now(), &user, &request),
    ));
    consent_page(&s, &look, &request, &user, "/oauth2/authorize", fields).await
}

pub(super) async fn authorize_decision(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let plain = Look::plain(&headers);
    let Some(user) = user(&s, &headers) else {
        return not_signed_in(&s, &plain);
    };
    let p = match params(&body) {
        Ok(p) => p,
        Err(m) => return duplicate(&plain, &m),
    };
    let request = match validate(&s, &p, None, false).await {
        Ok(r) => r,
        Err(e) => return redirect_error(&plain, e),
    };
    let csrf = p.get("csrf_token").map(String::as_str).unwrap_or_default();
    if !s.csrf.verify(s.services.clock.now(), &user, &request, csrf) {
        return plain.error(StatusCode::FORBIDDEN, "error_csrf", &[]);
    }
    decide(
        &s,
        &plain,
        &request,
        &user,
        p.get("decision").map(String::as_str),
    )
    .await
}
