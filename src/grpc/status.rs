//! The one table from errors to gRPC statuses: domain errors, OAuth2 errors
//! and admin-token failures, as `From` impls so that handlers use `?`.
//! Internal causes go to the log under a correlation id; the caller sees the
//! id, never the cause.

use tonic::{Code, Status};

use super::auth::AdminAuthError;
use crate::domain::error::Error;
use crate::domain::tokens::OAuthError;
use crate::ports::StoreError;

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidArgument { .. } => Status::invalid_argument(e.to_string()),
            Error::NotFound { .. } => Status::not_found(e.to_string()),
            Error::FailedPrecondition(_) => Status::failed_precondition(e.to_string()),
            Error::PermissionDenied(_) => Status::permission_denied(e.to_string()),
            Error::Unauthenticated(_) => Status::unauthenticated(e.to_string()),
            Error::Conflict(_) => Status::aborted(e.to_string()),
            Error::Store(StoreError::AlreadyExists) => {
                Status::already_exists("the record exists already")
            }
            Error::Store(StoreError::Conflict) => {
                Status::aborted("the record was changed concurrently; retry")
            }
            Error::Store(StoreError::Unavailable(cause)) => {
                internal(Code::Unavailable, "the store is unavailable", &cause)
            }
            Error::Store(StoreError::Internal(cause)) => {
                internal(Code::Internal, "internal error", &cause)
            }
            Error::Internal { what, cause } => internal(
                Code::Internal,
                "internal error",
                &format!("{what}: {cause}"),
            ),
        }
    }
}

/// OAuth2 errors on the gRPC side: the RFC 6749 §5.2 code leads the message.
impl From<OAuthError> for Status {
    fn from(e: OAuthError) -> Self {
        let code = match &e {
            OAuthError::InvalidClient(_) => Code::Unauthenticated,
            OAuthError::UnauthorizedClient(_) => Code::PermissionDenied,
            OAuthError::InvalidGrant(_) => Code::FailedPrecondition,
            OAuthError::ServerError | OAuthError::TemporarilyUnavailable => Code::Unavailable,
            OAuthError::InvalidRequest(_)
            | OAuthError::UnsupportedGrantType(_)
            | OAuthError::InvalidScope(_) => Code::InvalidArgument,
        };
        Status::new(code, format!("{}: {e}", e.code()))
    }
}

/// A management call whose admin token did not pass.
impl From<AdminAuthError> for Status {
    fn from(e: AdminAuthError) -> Self {
        match e {
            AdminAuthError::Missing => {
                Status::unauthenticated("missing `authorization: Bearer <admin token>` metadata")
            }
            AdminAuthError::NotAscii => {
                Status::unauthenticated("the authorization metadata is not ASCII")
            }
            AdminAuthError::Undecided => {
                Status::new(Code::Unavailable, "cannot verify the admin token right now")
            }
            AdminAuthError::Rejected(reason) => {
                Status::unauthenticated(format!("the admin token was rejected ({})", reason.code()))
            }
            AdminAuthError::NotGranted(permission) => {
                Status::permission_denied(format!("the admin token does not grant `{permission}`"))
            }
        }
    }
}

/// Logs `cause` under a fresh correlation id and returns a status naming only the id.
fn internal(code: Code, summary: &str, cause: &str) -> Status {
    let id = crate::telemetry::log_internal(summary, &cause);
    Status::new(code, format!("{summary} (correlation id {id})"))
}
