//! `GET /reveal/<token>`: redeems a one-time reveal link. The answer is never
//! cached (`Cache-Control: no-store`), and an unknown, expired or used token
//! gets the same 404 whichever it was.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;

use super::HttpState;
use super::error::{ApiError, json_response};
use crate::domain::error::Error;

pub fn routes(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/reveal/{token}", get(reveal))
        .with_state(state)
}

async fn reveal(
    State(state): State<Arc<HttpState>>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let revealed = state
        .services
        .reveals
        .redeem(&token)
        .await
        .map_err(|e| match e {
            Error::NotFound { .. } => {
                ApiError::not_found("this reveal link is unknown, expired or already used")
            }
            e => e.into(),
        })?;
    tracing::info!(kind = %revealed.kind, subject_id = %revealed.subject_id, "reveal link redeemed");
    let body = serde_json::json!({
        "secret": revealed.secret.expose(),
        "kind": revealed.kind,
        "subject_id": revealed.subject_id,
    });
    let mut response = json_response(StatusCode::OK, body);
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(response)
}
