//! The public OAuth2 endpoints: token (RFC 6749 §3.2, §4.1.3, §4.4, §6),
//! authorize with consent (§4.1.1, RFC 7636), introspection (RFC 7662),
//! revocation (RFC 7009), metadata (RFC 8414) and the JWKS (RFC 7517).
//!
//! Parameters are parsed by hand so that a repeated one is refused, as
//! RFC 6749 §3.1 requires. Every token response carries `Cache-Control: no-store`.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::hmac;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use zeroize::Zeroizing;

use super::HttpState;
use super::error::{json_response, no_store, oauth_error};
use crate::crypto::ct_eq;
use crate::domain::model::ClientRecord;
use crate::domain::tokens::{AuthorizeError, AuthorizeRequest, OAuthError, TokenManager};

/// How long a consent form may be submitted after it was shown.
const CSRF_TTL_SECS: i64 = 600;

pub fn routes(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/oauth2/token", post(token))
        .route(
            "/oauth2/authorize",
            get(authorize_page).post(authorize_decision),
        )
        .route("/oauth2/introspect", post(introspect))
        .route("/oauth2/revoke", post(revoke))
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/.well-known/jwks.json", get(jwks))
        .with_state(state)
}

/// Form or query parameters; `Err` names a parameter given twice.
fn params(raw: &[u8]) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(raw) {
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("the parameter `{k}` was given more than once"));
        }
    }
    Ok(out)
}

/// Client credentials from `Authorization: Basic` (RFC 6749 §2.3.1: each
/// half form-urlencoded, then base64) or from the body; never both.
enum ClientAuth {
    None,
    Basic(String, Zeroizing<String>),
    Post(String, Zeroizing<String>),
}

fn form_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn client_auth(
    headers: &HeaderMap,
    p: &mut HashMap<String, String>,
) -> Result<ClientAuth, OAuthError> {
    let basic = match headers.get(header::AUTHORIZATION) {
        Some(value) => {
            let text = value.to_str().unwrap_or_default();
            let Some(encoded) = text
                .get(..6)
                .filter(|s| s.eq_ignore_ascii_case("basic "))
                .map(|_| text[6..].trim())
            else {
                return Err(OAuthError::InvalidClient(
                    "only HTTP Basic client authentication is accepted in the Authorization header"
                        .into(),
                ));
            };
            let decoded = Zeroizing::new(
                STANDARD
                    .decode(encoded)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        OAuthError::InvalidClient(
                            "the Basic credentials are not valid base64".into(),
                        )
                    })?,
            );
            let (id, secret) = decoded.split_once(':').ok_or_else(|| {
                OAuthError::InvalidClient("the Basic credentials have no `:`".into())
            })?;
            Some((form_decode(id), Zeroizing::new(form_decode(secret))))
        }
        None => None,
    };
    let posted_secret = p.remove("client_secret").map(Zeroizing::new);
    match (basic, posted_secret) {
        (Some(_), Some(_)) => Err(OAuthError::InvalidRequest(
            "use one client authentication method, not Basic and client_secret together".into(),
        )),
        (Some((id, secret)), None) => {
            if p.get("client_id").is_some_and(|c| *c != id) {
                return Err(OAuthError::InvalidRequest(
                    "client_id differs from the authenticated client".into(),
                ));
            }
            Ok(ClientAuth::Basic(id, secret))
        }
        (None, Some(secret)) => {
            let id = p.get("client_id").cloned().unwrap_or_default();
            Ok(ClientAuth::Post(id, secret))
        }
        (None, None) => Ok(ClientAuth::None),
    }
}

impl ClientAuth {
    fn is_basic(&self) -> bool {
        matches!(self, ClientAuth::Basic(..))
    }

    async fn client(&self, tokens: &TokenManager) -> Result<Option<ClientRecord>, OAuthError> {
        match self {
            ClientAuth::None => Ok(None),
            ClientAuth::Basic(id, secret) | ClientAuth::Post(id, secret) => {
                tokens.authenticate_client(id, secret).await.map(Some)
            }
        }
    }
}

fn required(client: Option<ClientRecord>) -> Result<ClientRecord, OAuthError> {
    client.ok_or_else(|| OAuthError::InvalidClient("client authentication is required".into()))
}

async fn token(State(s): State<Arc<HttpState>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut p = match params(&body) {
        Ok(p) => p,
        Err(m) => return oauth_error(&OAuthError::InvalidRequest(m), false),
    };
    let auth = match client_auth(&headers, &mut p) {
        Ok(a) => a,
        Err(e) => return oauth_error(&e, headers.contains_key(header::AUTHORIZATION)),
    };
    let basic = auth.is_basic();
    let result = async {
        let client = auth.client(&s.tokens).await?;
        let scope: Vec<String> = p.get("scope").cloned().into_iter().collect();
        match p.get("grant_type").map(String::as_str) {
            Some("client_credentials") => {
                s.tokens
                    .client_credentials(&required(client)?, &scope)
                    .await
            }
            Some("authorization_code") => {
                let code = p.get("code").ok_or_else(|| {
                    OAuthError::InvalidRequest("the `code` parameter is required".into())
                })?;
                s.tokens
                    .exchange_code(
                        &required(client)?,
                        code,
                        p.get("redirect_uri").map(String::as_str),
                        p.get("code_verifier").map(String::as_str),
                    )
                    .await
            }
            Some("refresh_token") => {
                let refresh = p.get("refresh_token").ok_or_else(|| {
                    OAuthError::InvalidRequest("the `refresh_token` parameter is required".into())
                })?;
                s.tokens.refresh(client.as_ref(), refresh, &scope).await
            }
            Some(other) => Err(OAuthError::UnsupportedGrantType(format!(
                "grant_type `{}` is not supported",
                other.chars().take(40).collect::<String>()
            ))),
            None => Err(OAuthError::InvalidRequest(
                "the `grant_type` parameter is required".into(),
            )),
        }
    }
    .await;
    match result {
        Ok(issued) => json_response(
            StatusCode::OK,
            serde_json::to_value(&issued).unwrap_or_default(),
        ),
        Err(e) => oauth_error(&e, basic),
    }
}

/// The prelude of introspection and revocation: an authenticated client and
/// the `token` parameter, or the error response.
async fn client_and_token(
    s: &HttpState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(ClientRecord, String), Response> {
    let mut p = params(body).map_err(|m| oauth_error(&OAuthError::InvalidRequest(m), false))?;
    let auth = client_auth(headers, &mut p).map_err(|e| oauth_error(&e, true))?;
    let client = auth
        .client(&s.tokens)
        .await
        .and_then(required)
        .map_err(|e| oauth_error(&e, auth.is_basic()))?;
    let token = p.remove("token").ok_or_else(|| {
        oauth_error(
            &OAuthError::InvalidRequest("the `token` parameter is required".into()),
            false,
        )
    })?;
    Ok((client, token))
}

async fn introspect(State(s): State<Arc<HttpState>>, headers: HeaderMap, body: Bytes) -> Response {
    let (client, token) = match client_and_token(&s, &headers, &body).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    // A client learns about tokens of its own account only.
    match s.tokens.introspect(&token).await {
        Some(i) if i.account_id == client.account_id => {
            let mut body = serde_json::json!({
                "active": true,
                "scope": i.scope,
                "client_id": i.client_id,
                "sub": i.sub,
                "token_type": i.token_type,
                "exp": i.exp,
                "iat": i.iat,
                "iss": i.iss,
                "aud": i.aud,
            });
            if !i.jti.is_empty() {
                body["jti"] = i.jti.into();
            }
            json_response(StatusCode::OK, body)
        }
        _ => json_response(StatusCode::OK, serde_json::json!({ "active": false })),
    }
}

async fn revoke(State(s): State<Arc<HttpState>>, headers: HeaderMap, body: Bytes) -> Response {
    let (client, token) = match client_and_token(&s, &headers, &body).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    match s.tokens.revoke(&token, Some(&client)).await {
        // RFC 7009 §2.2: 200 whether or not the token was known.
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(e) => oauth_error(&e, false),
    }
}

async fn metadata(State(s): State<Arc<HttpState>>) -> Response {
    let issuer = &s.tokens.settings().issuer;
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        serde_json::json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/oauth2/authorize"),
            "token_endpoint": format!("{issuer}/oauth2/token"),
            "introspection_endpoint": format!("{issuer}/oauth2/introspect"),
            "revocation_endpoint": format!("{issuer}/oauth2/revoke"),
            "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
        })
        .to_string(),
    )
        .into_response()
}

async fn jwks(State(s): State<Arc<HttpState>>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/jwk-set+json"),
            // Short: after a rotation, verifiers should see the new key soon.
            (header::CACHE_CONTROL, "public, max-age=60"),
        ],
        s.tokens.jwks_json(),
    )
        .into_response()
}

// ---- authorize ------------------------------------------------------------

fn escape(s: &str) -> String {
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

fn page(status: StatusCode, title: &str, body: &str) -> Response {
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
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn error_page(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Authorization error",
        &format!("<h1>Authorization error</h1>\n<p>{}</p>", escape(message)),
    )
}

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

/// A scope in plain words, for people deciding whether to allow it.
fn describe_scope(scope: &str) -> String {
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
        .authorize_request(
            get("response_type"),
            get("client_id"),
            get("redirect_uri"),
            get("scope"),
            get("state"),
            get("code_challenge"),
            get("code_challenge_method"),
        )
        .await
}

/// The CSRF token binds the signed-in user, the exact request and a time.
fn csrf_mac(s: &HttpState, user: &str, r: &AuthorizeRequest, issued: i64) -> String {
    let mut msg = String::new();
    for part in [
        "consent-v1",
        user,
        &r.client.client_id,
        &r.redirect_uri,
        &r.scope.join(" "),
        r.state.as_deref().unwrap_or(""),
        &r.code_challenge,
        &issued.to_string(),
    ] {
        msg.push_str(&part.len().to_string());
        msg.push(':');
        msg.push_str(part);
    }
    URL_SAFE_NO_PAD.encode(hmac::sign(&s.csrf_key, msg.as_bytes()).as_ref())
}

fn csrf_token(s: &HttpState, user: &str, r: &AuthorizeRequest) -> String {
    let issued = s.services.clock.now() / 1000;
    format!("{issued}.{}", csrf_mac(s, user, r, issued))
}

fn csrf_ok(s: &HttpState, user: &str, r: &AuthorizeRequest, token: &str) -> bool {
    let Some((issued, mac)) = token.split_once('.') else {
        return false;
    };
    let Ok(issued) = issued.parse::<i64>() else {
        return false;
    };
    let now = s.services.clock.now() / 1000;
    (issued..=issued + CSRF_TTL_SECS).contains(&now)
        && ct_eq(csrf_mac(s, user, r, issued).as_bytes(), mac.as_bytes())
}

async fn authorize_page(
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
    form.push_str(&hidden("csrf_token", &csrf_token(&s, &user, &request)));
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
    page(StatusCode::OK, "Authorize access", &body)
}

async fn authorize_decision(
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
    if !csrf_ok(&s, &user, &request, csrf) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused() {
        assert!(params(b"a=1&b=2").is_ok());
        assert!(params(b"a=1&a=2").unwrap_err().contains("`a`"));
    }

    #[test]
    fn scopes_read_as_plain_words() {
        assert_eq!(describe_scope("surveys.read"), "View your surveys");
        assert_eq!(
            describe_scope("feeds.write"),
            "Create and change your feeds"
        );
        assert_eq!(describe_scope("orders.*"), "Full access to your orders");
        assert_eq!(describe_scope("*"), "Everything your plan allows");
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
    }
}
