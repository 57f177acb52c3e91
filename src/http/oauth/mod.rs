//! The public OAuth2 endpoints: token (RFC 6749 §3.2, §4.1.3, §4.4, §6),
//! authorize with consent (§4.1.1, RFC 7636), introspection (RFC 7662),
//! revocation (RFC 7009), metadata (RFC 8414) and the JWKS (RFC 7517).
//!
//! Parameters are parsed by hand so that a repeated one is refused, as
//! RFC 6749 §3.1 requires. Every token response carries `Cache-Control: no-store`.
//!
//! - `token`: the token endpoint, one arm per grant;
//! - `client_auth`: client authentication (RFC 6749 §2.3.1);
//! - `introspect`: introspection and revocation;
//! - `discovery`: server metadata and the JWKS;
//! - `consent`: the authorize endpoint and the consent page (`csrf`);
//! - `link`: signed consent links (`/oauth2/consent`);
//! - `page`: every HTML page, from `templates/`, in English or German.

mod client_auth;
mod consent;
pub mod csrf;
mod discovery;
mod introspect;
mod link;
pub mod page;
mod token;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use super::HttpState;

pub fn routes(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/oauth2/token", post(token::token))
        .route(
            "/oauth2/authorize",
            get(consent::authorize_page).post(consent::authorize_decision),
        )
        .route(
            "/oauth2/consent",
            get(link::link_page).post(link::link_decision),
        )
        .route("/oauth2/introspect", post(introspect::introspect))
        .route("/oauth2/revoke", post(introspect::revoke))
        .route(
            "/.well-known/oauth-authorization-server",
            get(discovery::metadata),
        )
        .route("/.well-known/jwks.json", get(discovery::jwks))
        .with_state(state)
}

/// Form or query parameters; `Err` names a parameter given twice.
pub(super) fn params(raw: &[u8]) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(raw) {
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("the parameter `{k}` was given more than once"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
