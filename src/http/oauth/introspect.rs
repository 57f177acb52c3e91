//! `POST /oauth2/introspect` (RFC 7662) and `POST /oauth2/revoke` (RFC 7009).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::client_auth::{client_auth, required};
use super::params;
use crate::domain::model::ClientRecord;
use crate::domain::tokens::OAuthError;
use crate::http::HttpState;
use crate::http::error::{json_response, no_store, oauth_error};

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

pub(super) async fn introspect(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (client, token) = match client_and_token(&s, &headers, &body).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    // A client learns about tokens of its own account only.
    match s.tokens.introspect(&token).await {
        Err(e) => oauth_error(&e, false),
        Ok(Some(i)) if i.account_id == client.account_id => {
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

pub(super) async fn revoke(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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
