//! The one table from errors to HTTP responses, the twin of `grpc/status.rs`:
//! domain errors as `{"error", "message"}` JSON, OAuth2 errors as RFC 6749
//! §5.2 bodies. A fault the caller cannot act on is logged under a
//! correlation id (`telemetry::log_internal`, as on the gRPC side) and only
//! the id is shown.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::domain::error::Error;
use crate::domain::tokens::OAuthError;

/// `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1), on
/// every answer that may carry a secret or an error about one.
pub fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// A JSON body that no cache keeps.
pub fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    json_text(status, body.to_string())
}

fn json_text(status: StatusCode, body: String) -> Response {
    no_store((status, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A domain error as the public side shows it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: String,
}

impl ApiError {
    /// A 404 whose message says no more than `message` (e.g. which of
    /// unknown, expired or used a link was).
    pub fn not_found(message: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            body: serde_json::json!({ "error": "not_found", "message": message }).to_string(),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidArgument { .. } => Self {
                status: StatusCode::BAD_REQUEST,
                body: serde_json::json!({ "error": "invalid_request", "message": e.to_string() })
                    .to_string(),
            },
            Error::NotFound { .. } => Self::not_found(&e.to_string()),
            // Nothing else is the caller's to fix: the cause goes to the log.
            Error::FailedPrecondition(_)
            | Error::PermissionDenied(_)
            | Error::Unauthenticated(_)
            | Error::Conflict(_)
            | Error::Store(_)
            | Error::Internal { .. } => {
                let id = crate::telemetry::log_internal("the request failed", &e);
                Self {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    body: format!(r#"{{"error":"unavailable","correlation_id":"{id}"}}"#),
                }
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json_text(self.status, self.body);
        response.headers_mut().insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        response
    }
}

/// What a 503 during a store outage asks the client to wait (RFC 9110 §10.2.3).
pub const RETRY_AFTER_SECS: &str = "2";

/// RFC 6749 §5.2. `basic` = the client tried HTTP Basic, so a 401 names the scheme.
pub fn oauth_error(e: &OAuthError, basic: bool) -> Response {
    let status = match e {
        OAuthError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
        OAuthError::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        OAuthError::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        OAuthError::InvalidRequest(_)
        | OAuthError::InvalidGrant(_)
        | OAuthError::UnauthorizedClient(_)
        | OAuthError::UnsupportedGrantType(_)
        | OAuthError::InvalidScope(_) => StatusCode::BAD_REQUEST,
    };
    let mut response = json_response(
        status,
        serde_json::json!({ "error": e.code(), "error_description": e.to_string() }),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
    }
    if status == StatusCode::UNAUTHORIZED {
        let scheme = if basic {
            r#"Basic realm="latchkey""#
        } else {
            r#"Basic realm="latchkey", error="invalid_client""#
        };
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(scheme));
    }
    response
}
