//! The PostgreSQL pool: opened whole, in parallel, at start, and kept whole
//! (SQLite: a small pool). A connection opened on a call's path under load
//! cost ~90 ms (the TLS handshake waits out two delayed ACKs: sqlx 0.9.0
//! does not set `TCP_NODELAY`), and every cold lookup queued behind it
//! stalled with it.

use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DbErr};

use super::circuit::Circuit;
use super::{SqlStore, map_err};
use crate::crypto::secret::{Secret, redact_url};
use crate::ports::StoreError;

/// How the store connects. The acquire timeout bounds how long a call waits
/// for a connection when the database is down: short, so that an outage is
/// answered fast, not after the pool's default of many seconds.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    pub connect_timeout: Duration,
    pub acquire_timeout: Duration,
    /// PostgreSQL pool size (SQLite always uses a small pool).
    pub max_connections: u32,
    /// PostgreSQL connections opened at start and kept open: a connection
    /// opened on demand under load cost ~90 ms (TLS, and sqlx 0.9.0 does not
    /// set `TCP_NODELAY`, so two delayed ACKs), and the cold lookups queued
    /// behind it stalled together.
    pub min_connections: u32,
    /// Longest one statement may run: PostgreSQL's `statement_timeout` on
    /// every pooled connection, SQLite's `busy_timeout` (how long a
    /// statement waits for the write lock). A hung query fails, and frees
    /// its connection, instead of holding it.
    pub statement_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_millis(1000),
            max_connections: 16,
            min_connections: 16,
            statement_timeout: Duration::from_secs(5),
        }
    }
}

/// Connections kept open: at least one, at most the pool.
fn pool_floor(options: StoreOptions) -> u32 {
    options
        .min_connections
        .clamp(1, options.max_connections.max(1))
}

/// A connection-level sqlx error as SeaORM reports one (`DbErr::Conn`).
pub(super) fn sqlx_conn_err(e: sqlx::Error) -> DbErr {
    DbErr::Conn(sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(e)))
}

/// Rounds `SqlStore::warm` makes at most, and its first pause between two;
/// each pause doubles (5 ms, then 10 ms, … 160 ms: 315 ms in all).
const WARM_ROUNDS: u32 = 7;
const WARM_FIRST_PAUSE: Duration = Duration::from_millis(5);

fn map_sqlx_err(e: sqlx::Error) -> StoreError {
    map_err(sqlx_conn_err(e))
}

impl SqlStore {
    /// Connects (creating a SQLite file if needed). Does not migrate.
    pub async fn connect(url: &Secret<String>) -> Result<Self, StoreError> {
        Self::connect_with(url, StoreOptions::default()).await
    }

    pub async fn connect_with(
        url: &Secret<String>,
        options: StoreOptions,
    ) -> Result<Self, StoreError> {
        let is_sqlite = url.expose().starts_with("sqlite:");
        let mut opts = ConnectOptions::new(url.expose().clone());
        opts.sqlx_logging(false)
            .connect_timeout(options.connect_timeout)
            .acquire_timeout(options.acquire_timeout);
        let statement_timeout = options.statement_timeout;
        if is_sqlite {
            // One writer at a time is SQLite's nature; a small pool avoids lock churn.
            opts.max_connections(4).min_connections(1);
            // Per connection, so on every connection of the pool (a PRAGMA
            // run once would set only the one connection that ran it).
            opts.map_sqlx_sqlite_opts(move |o| {
                o.journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .foreign_keys(true)
                    .busy_timeout(statement_timeout)
            });
        } else {
            // The pool is opened whole (below) and kept whole: no idle
            // reaping, no lifetime recycling, a lost connection reopened in
            // the background (sqlx keeps `min_connections`), so that no call
            // waits for a connection to be opened once the service runs.
            opts.max_connections(options.max_connections)
                .min_connections(pool_floor(options))
                .idle_timeout(None)
                .max_lifetime(None)
                // Opened by `warm`, in parallel: sqlx opens `min_connections`
                // one after another, within one acquire timeout.
                .connect_lazy(true);
            // Sent in the startup packet: the session default of every
            // pooled connection, restored by RESET (see startup.rs).
            let ms = statement_timeout.as_millis().to_string();
            opts.map_sqlx_postgres_opts(move |o| o.options([("statement_timeout", ms.as_str())]));
        }
        tracing::info!(database = %redact_url(url.expose()), "connecting to the store");
        let db = Database::connect(opts).await.map_err(map_err)?;
        let store = Self {
            db,
            circuit: Circuit::default(),
            floor: if is_sqlite { 0 } else { pool_floor(options) },
            held: super::held::Held::new(statement_timeout),
        };
        if store.floor > 0 {
            store.warm(store.floor).await?;
        }
        Ok(store)
    }

    /// Opens what the pool lacks of `floor` connections, all at once: a
    /// round holds every idle connection and one new one per missing
    /// connection at the same time (so never waits for a connection in use),
    /// then puts them back. sqlx puts a connection back from a task of its
    /// own, so one on its way back can be taken instead of a new one, and an
    /// open can fail while a restarted server finishes starting: rounds are
    /// made, each after a longer pause, until the pool holds the floor or
    /// `WARM_ROUNDS` have been made. Fails only when none could be had (the
    /// store is unreachable); a shortfall is logged, and calls open the rest
    /// when they need them.
    pub(super) async fn warm(&self, floor: u32) -> Result<(), StoreError> {
        let pool = self.db.get_postgres_connection_pool();
        let started = std::time::Instant::now();
        let mut failure = None;
        for round in 0..WARM_ROUNDS {
            if pool.size() >= floor {
                break;
            }
            if round > 0 {
                // Time for the connections just put back to reach the idle queue.
                tokio::time::sleep(WARM_FIRST_PAUSE * (1 << (round - 1))).await;
            }
            let missing = floor.saturating_sub(pool.size());
            let n = missing + u32::try_from(pool.num_idle()).unwrap_or(0);
            let held = futures::future::join_all((0..n).map(|_| pool.acquire())).await;
            let had = held.iter().filter(|c| c.is_ok()).count();
            if let Some(e) = held.into_iter().find_map(Result::err) {
                if had == 0 && pool.size() == 0 {
                    return Err(map_sqlx_err(e));
                }
                failure = Some(map_sqlx_err(e));
            }
        }
        if pool.size() >= floor {
            tracing::info!(
                connections = pool.size(),
                ms = started.elapsed().as_millis(),
                "store pool opened"
            );
        } else {
            tracing::warn!(
                error = failure.as_ref().map(tracing::field::display),
                open = pool.size(),
                wanted = floor,
                "could not open the whole store pool; calls open the rest as they need it"
            );
        }
        Ok(())
    }

    /// Pings every idle connection at once, each until `deadline`, and takes
    /// each that does not answer out of the pool; how many went. A
    /// connection that the database or something on the way ended while the
    /// store stayed up (a terminated backend, a proxy's restart, a NAT's
    /// idle timeout) is found here, by the health loop, instead of on a
    /// call's path, where replacing it costs that call a connection open;
    /// and the pings keep idle connections from reaching such timeouts.
    /// Not through sqlx's own test on acquire: a connection that stops
    /// answering mid-ping would be returned to the pool, and the ping sqlx
    /// makes on the way back has no bound.
    pub(super) async fn drop_dead_idle(&self, deadline: tokio::time::Instant) -> usize {
        use sqlx::Connection;
        let pool = self.db.get_postgres_connection_pool();
        let idle: Vec<_> = std::iter::from_fn(|| pool.try_acquire())
            .take(pool.num_idle())
            .collect();
        let answered = futures::future::join_all(idle.into_iter().map(|mut conn| async move {
            match tokio::time::timeout_at(deadline, conn.ping()).await {
                Ok(Ok(())) => true,
                _ => {
                    drop(conn.detach());
                    false
                }
            }
        }))
        .await;
        let dead = answered.iter().filter(|ok| !**ok).count();
        if dead > 0 {
            tracing::warn!(
                dead,
                "dropped idle store connections that did not answer a ping"
            );
        }
        dead
    }

    /// PostgreSQL connections open now (idle or in use); 0 on SQLite.
    pub fn pool_connections(&self) -> u32 {
        if self.is_postgres() {
            self.db.get_postgres_connection_pool().size()
        } else {
            0
        }
    }
}
