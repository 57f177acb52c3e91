//! The internal metrics listener's one route: `GET /metrics`, Prometheus
//! text. It has its own listener (`--metrics-addr`) and is never merged into
//! the public router.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::telemetry::{metrics, prometheus};

pub fn router() -> Router {
    Router::new().route("/metrics", get(scrape))
}

async fn scrape() -> impl IntoResponse {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, prometheus::CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        prometheus::render(&metrics::metrics().snapshot()),
    )
}
