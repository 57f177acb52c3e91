//! Outages answered fast. Two parts:
//!
//! - [`is_unavailable`] sorts database errors: anything that says the
//!   database cannot be reached or went away (also in the middle of a query:
//!   a reset socket, a server shutting down, a crashed backend) is
//!   `StoreError::Unavailable`, which callers answer as UNAVAILABLE / 503,
//!   never as an internal error.
//! - A [`Circuit`]: once the store is known to be down (the database refused
//!   a connection, or the health loop's ping failed), every call fails at once
//!   instead of waiting for the pool's acquire timeout. Only the health
//!   loop's ping, which bypasses it, closes it again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sea_orm::{DatabaseConnection, DbErr, RuntimeErr};

use super::{SqlStore, map_err};
use crate::ports::StoreError;

/// `true` = open: the store is known to be down.
#[derive(Debug, Clone, Default)]
pub(super) struct Circuit(Arc<AtomicBool>);

impl Circuit {
    pub(super) fn is_open(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    pub(super) fn set_open(&self, open: bool) {
        let was = self.0.swap(open, Ordering::AcqRel);
        if was != open {
            if open {
                tracing::warn!("store circuit open: calls that need the store fail fast");
            } else {
                tracing::info!("store circuit closed: the store answers again");
            }
        }
    }
}

/// PostgreSQL SQLSTATEs that mean "not reachable now" rather than "wrong".
fn unavailable_state(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || matches!(
            code,
            "57P01" // admin_shutdown
            | "57P02" // crash_shutdown
            | "57P03" // cannot_connect_now
            | "53300" // too_many_connections
            | "5" // SQLite: SQLITE_BUSY
            | "6" // SQLite: SQLITE_LOCKED
        )
}

pub(super) fn is_unavailable(e: &DbErr) -> bool {
    match e {
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            is_unavailable_sqlx(e)
        }
        _ => false,
    }
}

pub(super) fn is_unavailable_sqlx(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| unavailable_state(&c)),
        _ => false,
    }
}

impl SqlStore {
    /// The connection, unless the store is known to be down.
    pub(super) fn conn(&self) -> Result<&DatabaseConnection, StoreError> {
        if self.circuit.is_open() {
            return Err(StoreError::Unavailable(
                "the store is down (failing fast until the health check reaches it again)".into(),
            ));
        }
        Ok(&self.db)
    }

    /// Maps a database error; one that says the database refused or lost
    /// the connection opens the circuit. An acquire timeout does not: a
    /// pool that is busy under load is not a database that is down (the
    /// health loop's ping tells those apart), and neither does one
    /// connection lost mid-query (UNAVAILABLE all the same).
    pub(super) fn fail(&self, e: DbErr) -> StoreError {
        if matches!(e, DbErr::Conn(_)) {
            self.circuit.set_open(true);
        }
        map_err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_states_are_unavailable_and_others_are_not() {
        for code in ["08006", "08001", "57P01", "57P02", "57P03", "53300"] {
            assert!(unavailable_state(code), "{code}");
        }
        for code in ["23505", "42P01", "40P01", "22P02"] {
            assert!(!unavailable_state(code), "{code}");
        }
    }

    #[test]
    fn lost_connections_mid_query_are_unavailable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let lost = DbErr::Query(RuntimeErr::SqlxError(Arc::new(sqlx::Error::Io(io))));
        assert!(is_unavailable(&lost));
        assert!(matches!(map_err(lost), StoreError::Unavailable(_)));
        let bad = DbErr::Query(RuntimeErr::SqlxError(Arc::new(sqlx::Error::RowNotFound)));
        assert!(!is_unavailable(&bad));
    }
}
