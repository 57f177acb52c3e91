//! Errors of the management operations. Each transport maps them in one table
//! (`grpc/status.rs`, `http/error.rs`); the messages are safe to show a caller.

use crate::ports::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{field}: {message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    #[error("{what} `{id}` not found")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("the {0} was changed concurrently; read it again and retry")]
    Conflict(&'static str),
    #[error(transparent)]
    Store(StoreError),
    /// A fault inside the process (cryptography, randomness, a worker pool):
    /// not the store's, and not the caller's. The text (with `cause`) is for
    /// logs: transports show the caller only a correlation id.
    #[error("internal error while {what}: {cause}")]
    Internal { what: &'static str, cause: String },
}

impl Error {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            message: message.into(),
        }
    }

    pub fn internal(what: &'static str, cause: impl std::fmt::Display) -> Self {
        Self::Internal {
            what,
            cause: cause.to_string(),
        }
    }

    pub fn not_found(what: &'static str, id: &str) -> Self {
        Self::NotFound {
            what,
            id: id.to_owned(),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;
