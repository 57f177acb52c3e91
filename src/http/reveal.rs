//! `GET /reveal/<token>`: redeems a one-time reveal link. The answer is never
//! cached (`Cache-Control: no-store`), and an unknown, expired or used token
//! gets the same 404 whichever it was.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::app::Core;
use crate::domain::error::Error;

pub fn router(core: Arc<Core>) -> Router {
    Router::new()
        .route("/reveal/{token}", get(reveal))
        .with_state(core)
}

fn answer(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

async fn reveal(State(core): State<Arc<Core>>, Path(token): Path<String>) -> Response {
    match core.reveals.redeem(&token).await {
        Ok(revealed) => {
            tracing::info!(kind = %revealed.kind, subject_id = %revealed.subject_id, "reveal link redeemed");
            let body = serde_json::json!({
                "secret": revealed.secret.expose(),
                "kind": revealed.kind,
                "subject_id": revealed.subject_id,
            });
            answer(StatusCode::OK, body.to_string())
        }
        Err(e @ Error::InvalidArgument { .. }) => answer(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "invalid_request", "message": e.to_string()}).to_string(),
        ),
        Err(Error::NotFound { .. }) => answer(
            StatusCode::NOT_FOUND,
            r#"{"error":"not_found","message":"this reveal link is unknown, expired or already used"}"#.to_owned(),
        ),
        Err(e) => {
            let id = uuid::Uuid::new_v4().simple().to_string();
            tracing::error!(correlation_id = %id, error = %e, "reveal failed");
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(r#"{{"error":"unavailable","correlation_id":"{id}"}}"#),
            )
        }
    }
}
