//! Discovery: the server metadata (RFC 8414) and the JWKS (RFC 7517).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::http::HttpState;

pub(super) async fn metadata(State(s): State<Arc<HttpState>>) -> Response {
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

pub(super) async fn jwks(State(s): State<Arc<HttpState>>) -> Response {
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
