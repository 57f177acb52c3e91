//! The public HTTP side. For now: liveness and readiness probes. The OAuth2
//! endpoints join this router later.

pub mod reveal;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// Shared readiness: false while the store is unreachable or shutting down.
#[derive(Debug, Default, Clone)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn router(ready: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(ready)
}

fn json(status: StatusCode, body: &'static str) -> impl IntoResponse {
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

/// Readiness: the store answers and the process is not draining.
async fn readyz(State(ready): State<Readiness>) -> impl IntoResponse {
    if ready.get() {
        json(StatusCode::OK, r#"{"status":"ready"}"#)
    } else {
        json(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"not ready"}"#)
    }
}
