//! `GET/POST /oauth2/authorize`: the consent page (RFC 6749 §4.1.1, PKCE
//! per RFC 7636) and the resource owner's decision, sent back to the client
//! as a redirect (§4.1.2).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::page::{consent_policy, describe_scope, error_page, escape, page};
use super::params;
use crate::domain::tokens::{AuthorizeError, AuthorizeParams, AuthorizeRequest};
use crate::http::HttpState;
use crate::http::error::no_store;

/// `uri` with these query parameters appended (RFC 6749 §4.1.2).
fn redirect_with(uri: &str, pairs: &[(&str, &str)]) -> Response {
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
        Err(_) => error_page(StatusCode::BAD_REQUEST, "the redirect URI is not usable"),
    }
}

fn redirect_error(e: AuthorizeError) -> Response {
    match e {
        AuthorizeError::Page(message) => error_page(StatusCode::BAD_REQUEST, &message),
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
            redirect_with(&redirect_uri, &pairs)
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

fn not_signed_in(s: &HttpState) -> Response {
    error_page(
        StatusCode::UNAUTHORIZED,
        &format!(
            "You are not signed in: this page needs the `{}` header from the platform's login.",
            s.user_header
        ),
    )
}

async fn validate(
    s: &HttpState,
    p: &HashMap<String, String>,
) -> Result<AuthorizeRequest, AuthorizeError> {
    let get = |k: &str| p.get(k).map(String::as_str);
    s.tokens
        .authorize_request(AuthorizeParams {
            response_type: get("response_type"),
            client_id: get("client_id"),
            redirect_uri: get("redirect_uri"),
            scope: get("scope"),
            state: get("state"),
            code_challenge: get("code_challenge"),
            code_challenge_method: get("code_challenge_method"),
        })
        .await
}

pub(super) async fn authorize_page(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(user) = user(&s, &headers) else {
        return not_signed_in(&s);
    };
    let p = match params(query.unwrap_or_default().as_bytes()) {
        Ok(p) => p,
        Err(m) => return error_page(StatusCode::BAD_REQUEST, &m),
    };
    let request = match validate(&s, &p).await {
        Ok(r) => r,
        Err(e) => return redirect_error(e),
    };
    let hidden = |name: &str, value: &str| {
        format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
            escape(name),
            escape(value)
        )
    };
    let mut form = String::new();
    form.push_str(&hidden("response_type", "code"));
    form.push_str(&hidden("client_id", &request.client.client_id));
    form.push_str(&hidden("redirect_uri", &request.redirect_uri));
    form.push_str(&hidden("scope", &request.scope.join(" ")));
    if let Some(state) = &request.state {
        form.push_str(&hidden("state", state));
    }
    form.push_str(&hidden("code_challenge", &request.code_challenge));
    form.push_str(&hidden("code_challenge_method", "S256"));
    form.push_str(&hidden(
        "csrf_token",
        &s.csrf.token(s.services.clock.now(), &user, &request),
    ));
    let scopes: String = request
        .scope
        .iter()
        .map(|sc| {
            format!(
                "<li>{} <code>{}</code></li>\n",
                escape(&describe_scope(sc)),
                escape(sc)
            )
        })
        .collect();
    let body = format!(
        "<h1>Allow {client} to access your account?</h1>\n\
         <p>Signed in as <strong>{user}</strong>. <strong>{client}</strong> asks to:</p>\n\
         <ul>\n{scopes}</ul>\n\
         <form method=\"post\" action=\"/oauth2/authorize\">\n{form}\
         <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\n\
         <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button>\n\
         </form>",
        client = escape(&request.client.name),
        user = escape(&user),
    );
    let mut response = page(StatusCode::OK, "Authorize access", &body);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        consent_policy(&request.redirect_uri),
    );
    response
}

pub(super) async fn authorize_decision(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(user) = user(&s, &headers) else {
        return not_signed_in(&s);
    };
    let p = match params(&body) {
        Ok(p) => p,
        Err(m) => return error_page(StatusCode::BAD_REQUEST, &m),
    };
    let request = match validate(&s, &p).await {
        Ok(r) => r,
        Err(e) => return redirect_error(e),
    };
    let csrf = p.get("csrf_token").map(String::as_str).unwrap_or_default();
    if !s.csrf.verify(s.services.clock.now(), &user, &request, csrf) {
        return error_page(
            StatusCode::FORBIDDEN,
            "This form has expired or did not come from this page; go back and try again.",
        );
    }
    let state = request.state.as_deref();
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    match p.get("decision").map(String::as_str) {
        Some("allow") => match s.tokens.issue_code(&request, &user).await {
            Ok(code) => {
                tracing::info!(client_id = %request.client.client_id, "authorization granted");
                pairs.push(("code", code.expose()));
                if let Some(state) = state {
                    pairs.push(("state", state));
                }
                redirect_with(&request.redirect_uri, &pairs)
            }
            Err(e) => {
                // The redirect has room for the code only; the cause goes to the log.
                crate::telemetry::log_internal("the authorization code could not be issued", &e);
                pairs.push(("error", "server_error"));
                if let Some(state) = state {
                    pairs.push(("state", state));
                }
                redirect_with(&request.redirect_uri, &pairs)
            }
        },
        _ => {
            pairs.push(("error", "access_denied"));
            pairs.push(("error_description", "the resource owner denied the request"));
            if let Some(state) = state {
                pairs.push(("state", state));
            }
            redirect_with(&request.redirect_uri, &pairs)
        }
    }
}
