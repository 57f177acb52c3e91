//! The public HTTP side: liveness and readiness probes, the OAuth2
//! endpoints (`oauth`) and one-time reveal links (`reveal`); and, on an
//! internal listener of its own, forward auth for nginx, Traefik and Caddy
//! (`forward_auth`).

pub mod error;
pub mod forward_auth;
pub mod metrics;
pub mod oauth;
pub mod reveal;
pub mod serve;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use zeroize::Zeroizing;

use crate::domain::services::Services;
use crate::domain::tokens::TokenManager;

/// What the HTTP handlers share: the domain's services and this side's settings.
pub struct HttpState {
    pub services: Arc<Services>,
    pub tokens: Arc<TokenManager>,
    /// The trusted header naming the signed-in user on the consent page, set
    /// by the platform's login proxy.
    pub user_header: String,
    csrf: oauth::csrf::CsrfKey,
    /// Configured scope descriptions (`[scopes."x"] description = { en, de }`).
    scope_texts: HashMap<String, ScopeText>,
}

/// A scope's description on the consent page, per language; the built-in
/// wording stands in for a language left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeText {
    pub en: Option<String>,
    pub de: Option<String>,
}

impl HttpState {
    /// `csrf_secret` keys the consent form's CSRF tokens (shared by every replica).
    pub fn new(
        services: Arc<Services>,
        tokens: Arc<TokenManager>,
        user_header: String,
        csrf_secret: &Zeroizing<[u8; 32]>,
    ) -> Self {
        Self {
            services,
            tokens,
            user_header,
            csrf: oauth::csrf::CsrfKey::new(csrf_secret),
            scope_texts: HashMap::new(),
        }
    }

    /// The consent page describes these scopes in these words.
    pub fn with_scope_texts(mut self, texts: HashMap<String, ScopeText>) -> Self {
        self.scope_texts = texts;
        self
    }

    fn scope_description(&self, scope: &str, lang: oauth::page::Lang) -> Option<&str> {
        let t = self.scope_texts.get(scope)?;
        match lang {
            oauth::page::Lang::En => t.en.as_deref(),
            oauth::page::Lang::De => t.de.as_deref(),
        }
    }
}

/// Shared readiness: false while the store is unreachable or shutting down;
/// and how rate limits are enforced, for the probe's details.
#[derive(Debug, Default, Clone)]
pub struct Readiness(Arc<AtomicBool>, Arc<AtomicU8>);

/// How rate limits are enforced right now (`/readyz` `rate_limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitsMode {
    /// In memory, this replica only (no Redis configured).
    Local = 0,
    /// Shared through Redis.
    Global = 1,
    /// Redis configured but unreachable: each replica enforces its share.
    PerReplica = 2,
}

impl Readiness {
    pub fn set_limits_mode(&self, mode: LimitsMode) {
        self.1.store(mode as u8, Ordering::SeqCst);
    }

    fn limits_mode(&self) -> &'static str {
        match self.1.load(Ordering::SeqCst) {
            1 => "global",
            2 => "per_replica",
            _ => "local",
        }
    }

    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn router(ready: Readiness, state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(ready)
        .merge(oauth::routes(state.clone()))
        .merge(reveal::routes(state))
        .layer(axum::middleware::from_fn(refuse_http10))
}

/// The public port speaks HTTP/1.1 and HTTP/2 only: an HTTP/1.0 (or 0.9)
/// request gets 505 HTTP Version Not Supported, as FeedBackPro promises.
async fn refuse_http10(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if req.version() < axum::http::Version::HTTP_11 {
        return (
            StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"error":"http_version_not_supported","error_description":"use HTTP/1.1 or HTTP/2"}"#,
        )
            .into_response();
    }
    next.run(req).await
}

fn json(status: StatusCode, body: impl IntoResponse) -> impl IntoResponse {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
}

/// Liveness: the process answers.
async fn healthz() -> impl IntoResponse {
    json(StatusCode::OK, r#"{"status":"ok"}"#)
}

/// Readiness: the store answers and the process is not draining. Details:
/// how rate limits are enforced (`local`, `global`, `per_replica`).
async fn readyz(State(ready): State<Readiness>) -> impl IntoResponse {
    let limits = ready.limits_mode();
    if ready.get() {
        json(
            StatusCode::OK,
            format!(r#"{{"status":"ready","rate_limits":"{limits}"}}"#),
        )
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(r#"{{"status":"not ready","rate_limits":"{limits}"}}"#),
        )
    }
}
