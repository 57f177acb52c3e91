//! `POST /oauth2/token`: one arm per grant (client credentials, authorization
//! code with PKCE, refresh token).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use super::client_auth::{client_auth, required};
use super::params;
use crate::domain::tokens::OAuthError;
use crate::http::HttpState;
use crate::http::error::{json_response, oauth_error};
use crate::telemetry::metrics::{Grant, metrics};

pub(super) async fn token(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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
                let issued = s
                    .tokens
                    .client_credentials(&required(client)?, &scope)
                    .await?;
                metrics().token_issued(Grant::ClientCredentials);
                Ok(issued)
            }
            Some("authorization_code") => {
                let code = p.get("code").ok_or_else(|| {
                    OAuthError::InvalidRequest("the `code` parameter is required".into())
                })?;
                let issued = s
                    .tokens
                    .exchange_code(
                        &required(client)?,
                        code,
                        p.get("redirect_uri").map(String::as_str),
                        p.get("code_verifier").map(String::as_str),
                    )
                    .await?;
                metrics().token_issued(Grant::AuthorizationCode);
                Ok(issued)
            }
            Some("refresh_token") => {
                let refresh = p.get("refresh_token").ok_or_else(|| {
                    OAuthError::InvalidRequest("the `refresh_token` parameter is required".into())
                })?;
                let issued = s.tokens.refresh(client.as_ref(), refresh, &scope).await?;
                metrics().token_issued(Grant::RefreshToken);
                Ok(issued)
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
