//! The one table from domain errors to gRPC statuses. Internal causes go to
//! the log under a correlation id; the caller sees the id, never the cause.

use tonic::{Code, Status};

use crate::domain::error::Error;
use crate::ports::StoreError;

pub fn to_status(e: Error) -> Status {
    match e {
        Error::InvalidArgument { .. } => Status::invalid_argument(e.to_string()),
        Error::NotFound { .. } => Status::not_found(e.to_string()),
        Error::FailedPrecondition(_) => Status::failed_precondition(e.to_string()),
        Error::PermissionDenied(_) => Status::permission_denied(e.to_string()),
        Error::Unauthenticated(_) => Status::unauthenticated(e.to_string()),
        Error::Conflict(_) => Status::aborted(e.to_string()),
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

/// Logs `cause` under a fresh correlation id and returns a status naming only the id.
pub fn internal(code: Code, summary: &str, cause: &str) -> Status {
    let id = uuid::Uuid::new_v4().simple().to_string();
    tracing::error!(correlation_id = %id, %cause, "{summary}");
    Status::new(code, format!("{summary} (correlation id {id})"))
}
