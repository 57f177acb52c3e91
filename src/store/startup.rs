//! Replicas that start together on one PostgreSQL database take turns:
//! migrations and first-start writes (operator account, bootstrap token,
//! master-key canary, first signing key, shared secrets) run under a
//! session-level advisory lock, so the second replica finds the schema and
//! the bootstrap rows in place instead of racing to create them.

use sea_orm::{ConnectionTrait, TransactionTrait};
use sea_orm_migration::MigratorTrait;

use super::{SqlStore, circuit::is_unavailable_sqlx, map_err, migration};
use crate::ports::StoreError;

/// `pg_advisory_lock` key: "latchkey" in ASCII.
const STARTUP_LOCK_KEY: i64 = 0x6c61_7463_686b_6579;

/// Held while a replica migrates and bootstraps. Dropping it closes the
/// connection that holds the lock, which releases it (as does a crash).
pub struct StartupLock {
    _conn: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
}

impl SqlStore {
    /// Runs the migrations. On PostgreSQL, under the start-up lock (see
    /// [`SqlStore::startup_lock`]) when the caller holds it.
    ///
    /// On PostgreSQL all pending migrations run in one transaction without
    /// the statement timeout: an index built over a big table is not a hung
    /// statement, and a migration cut short leaves the schema as it was.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        if !self.is_postgres() {
            return migration::Migrator::up(&self.db, None)
                .await
                .map_err(map_err);
        }
        let txn = self.db.begin().await.map_err(map_err)?;
        txn.execute_unprepared("SET LOCAL statement_timeout = 0")
            .await
            .map_err(map_err)?;
        migration::Migrator::up(&txn, None).await.map_err(map_err)?;
        txn.commit().await.map_err(map_err)
    }

    /// Waits for the start-up lock (PostgreSQL; SQLite has one replica).
    pub async fn startup_lock(&self) -> Result<StartupLock, StoreError> {
        if !self.is_postgres() {
            return Ok(StartupLock { _conn: None });
        }
        let fail = |e: sqlx::Error| {
            if is_unavailable_sqlx(&e) {
                StoreError::Unavailable(e.to_string())
            } else {
                StoreError::Internal(e.to_string())
            }
        };
        let mut conn = self
            .db
            .get_postgres_connection_pool()
            .acquire()
            .await
            .map_err(fail)?;
        // Never back into the pool: the lock lives as long as this session.
        conn.close_on_drop();
        // Waiting out another replica's migrations is not a hung statement:
        // no statement timeout on this session (it is never pooled again).
        sqlx::query("SET statement_timeout = 0")
            .execute(&mut *conn)
            .await
            .map_err(fail)?;
        tracing::debug!("waiting for the start-up lock");
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(STARTUP_LOCK_KEY)
            .execute(&mut *conn)
            .await
            .map_err(fail)?;
        Ok(StartupLock { _conn: Some(conn) })
    }
}
