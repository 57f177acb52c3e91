//! Connections that cold lookups keep to themselves (PostgreSQL only).
//!
//! Through the pool, each lookup statement cost three round trips: sqlx
//! pings a connection as it hands it out and again as it takes it back, and
//! the database wakes for each. A held connection is out of the pool
//! (detached, so the pool opens a replacement): a statement on it is one
//! round trip. What the pool's pings were for is kept another way:
//!
//! - A connection that failed as a connection does (a reset, a crashed
//!   backend) is dropped, and the caller runs its statement once more
//!   through the pool, whose ping finds out whether the store is up.
//! - One unused for longer than [`FRESH`] is pinged before it is used (within
//!   the pool's acquire timeout), as the pool would: a connection ended
//!   while it sat unused fails that ping, not a call's statement.
//! - A statement cancelled halfway (its future dropped) drops its connection
//!   with it: one left mid-exchange is never used again.
//! - A statement that gets no answer (the connection went silent: a NAT or a
//!   proxy dropped it without a reset) is given up [`GRACE`] after the
//!   database's own `statement_timeout` would have ended it, so that the
//!   loader's few statements in flight are never held for the many minutes
//!   TCP takes to give up.
//!
//! A held connection also plans its lookup statement once, not once per
//! call: it is set to `plan_cache_mode = force_generic_plan` as it is taken.
//! Left to choose, PostgreSQL kept planning the `= ANY($1)` lookup afresh
//! on every call (it costs a generic plan as ten hashes, more than the few
//! a batch usually holds), and planning took 112–134 µs of the database's
//! CPU per statement where running it took 61–72 (`pg_stat_statements`,
//! `bench/scale.sh`). The generic plan reads the `key_hash` index for any
//! number of hashes. Nothing else runs on a held connection, and it never
//! goes back to the pool. The setting is the session's: behind a pooler
//! that hands one server connection to many clients (PgBouncer's
//! transaction mode) it would reach their statements too.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sea_orm::{ConnAcquireErr, DbErr, QueryResult, RuntimeErr};
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Connection, Postgres};

use super::circuit::is_unavailable_sqlx;
use super::pool::sqlx_conn_err;

/// Held connections at most: as many as the key loader runs statements at
/// once (`domain::loader::MAX_QUERIES`, a test holds them equal); a lookup
/// beyond them uses the pool.
const HELD_MAX: usize = 2;

/// Unused for longer, a held connection is pinged before it is used.
const FRESH: Duration = Duration::from_secs(1);

/// How much longer than the statement timeout a statement is waited for.
const GRACE: Duration = Duration::from_secs(1);

/// Run on a connection as it becomes a held one (see the module's doc).
const PLAN_ONCE: &str = "SET plan_cache_mode = force_generic_plan";

struct State {
    /// Connections not in use, each with when it was last used.
    idle: Vec<(PgConnection, Instant)>,
    /// Connections held, in use or not.
    count: usize,
}

#[derive(Clone)]
pub(super) struct Held {
    state: Arc<Mutex<State>>,
    /// Longest a statement is waited for: the statement timeout and [`GRACE`].
    answer_within: Duration,
}

/// A place among the [`HELD_MAX`], taken by a connection in use: given back
/// with the connection by [`Held::put`], else freed when dropped (the
/// connection failed, or its statement was cancelled and dropped it).
struct Place<'h> {
    held: &'h Held,
    back: bool,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if !self.back {
            self.held.lock().count -= 1;
        }
    }
}

/// Why a statement on a held connection gave no rows.
pub(super) enum Missed {
    /// No connection is free to hold, or the one used failed as a
    /// connection does: the statement is for the pool to run.
    UsePool,
    /// The statement failed, or no connection could be had from the pool:
    /// running it through the pool would fail the same way.
    Failed(DbErr),
}

/// What a lookup statement is asked: one hash, or many as one parameter.
#[derive(Clone, Copy)]
pub(super) enum Hashes<'a> {
    One(&'a str),
    Many(&'a [String]),
}

/// As SeaORM maps the pool's errors: a busy pool is not a store that is
/// down (only `DbErr::Conn` opens the circuit).
fn acquire_err(e: sqlx::Error) -> DbErr {
    match e {
        sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        sqlx::Error::PoolClosed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
        e => sqlx_conn_err(e),
    }
}

/// A statement's error as SeaORM reports one (`DbErr::Query`).
fn query_err(e: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(e)))
}

impl Held {
    pub(super) fn new(statement_timeout: Duration) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                idle: Vec::new(),
                count: 0,
            })),
            answer_within: statement_timeout + GRACE,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `sql` (one parameter: `hashes`) on a held connection.
    pub(super) async fn query(
        &self,
        pool: &PgPool,
        sql: &'static str,
        hashes: Hashes<'_>,
    ) -> Result<Vec<QueryResult>, Missed> {
        let (place, mut conn) = self.take(pool).await?;
        let query = sqlx::query::<Postgres>(sql);
        let query = match hashes {
            Hashes::One(hash) => query.bind(hash),
            Hashes::Many(hashes) => query.bind(hashes),
        };
        let answer = tokio::time::timeout(self.answer_within, query.fetch_all(&mut conn)).await;
        let Ok(answer) = answer else {
            // It and its place go with this return: never used again.
            tracing::warn!(
                ms = self.answer_within.as_millis(),
                "a lookup statement got no answer; its connection is dropped"
            );
            let silent = std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the lookup statement got no answer from the store",
            );
            return Err(Missed::Failed(query_err(sqlx::Error::Io(silent))));
        };
        match answer {
            Ok(rows) => {
                self.put(place, conn);
                Ok(rows.into_iter().map(QueryResult::from).collect())
            }
            Err(e) if is_unavailable_sqlx(&e) => {
                tracing::debug!(error = %e, "a held store connection failed; the pool runs the lookup");
                Err(Missed::UsePool)
            }
            Err(e) => {
                // The exchange ended (an error response is followed by
                // ReadyForQuery): the connection stays good.
                self.put(place, conn);
                Err(Missed::Failed(query_err(e)))
            }
        }
    }

    /// An idle held connection (pinged first if it was idle long), or one
    /// taken out of the pool if fewer than [`HELD_MAX`] are held.
    async fn take(&self, pool: &PgPool) -> Result<(Place<'_>, PgConnection), Missed> {
        let idle = {
            let mut state = self.lock();
            let idle = state.idle.pop();
            if idle.is_none() {
                if state.count == HELD_MAX {
                    return Err(Missed::UsePool);
                }
                state.count += 1;
            }
            idle
        };
        let place = Place {
            held: self,
            back: false,
        };
        match idle {
            Some((mut conn, used)) => {
                if used.elapsed() > FRESH {
                    let bound = pool.options().get_acquire_timeout();
                    if !matches!(tokio::time::timeout(bound, conn.ping()).await, Ok(Ok(()))) {
                        return Err(Missed::UsePool);
                    }
                }
                Ok((place, conn))
            }
            None => {
                let mut conn = match pool.acquire().await {
                    Ok(conn) => conn.detach(),
                    Err(e) => return Err(Missed::Failed(acquire_err(e))),
                };
                let bound = pool.options().get_acquire_timeout();
                let set = tokio::time::timeout(bound, sqlx::raw_sql(PLAN_ONCE).execute(&mut conn));
                match set.await {
                    Ok(Ok(_)) => Ok((place, conn)),
                    Ok(Err(e)) if !is_unavailable_sqlx(&e) => Err(Missed::Failed(query_err(e))),
                    // Gone or silent as soon as it was taken: the pool's
                    // own connections answer the statement.
                    Ok(Err(_)) | Err(_) => Err(Missed::UsePool),
                }
            }
        }
    }

    fn put(&self, mut place: Place<'_>, conn: PgConnection) {
        place.back = true;
        self.lock().idle.push((conn, Instant::now()));
    }

    /// Closes the idle held connections (the store is closing).
    pub(super) async fn close(&self) {
        let idle = {
            let mut state = self.lock();
            state.count -= state.idle.len();
            std::mem::take(&mut state.idle)
        };
        for (conn, _) in idle {
            let _ = conn.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::ConnectionTrait;

    use crate::crypto::secret::Secret;
    use crate::store::SqlStore;

    /// One held connection for each lookup statement the loader runs at
    /// once: fewer would send some through the pool's pings, more would
    /// sit unused.
    #[test]
    fn as_many_held_connections_as_lookup_statements_in_flight() {
        assert_eq!(super::HELD_MAX, crate::domain::loader::MAX_QUERIES);
    }

    /// PostgreSQL plans the lookup statement once per held connection: the
    /// calls after it, whatever their batches' sizes, reuse that plan. Left
    /// to choose, it planned at least the first five afresh (here: 5 of 8),
    /// and under load, with batches of a few hashes, every one.
    #[tokio::test]
    async fn a_held_connection_plans_its_lookup_once() {
        let admin = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        // Named as the test command's databases are, so that it drops a leftover.
        let name = format!("lk_test_{}", uuid::Uuid::now_v7().simple());
        let server = sea_orm::Database::connect(&admin).await.unwrap();
        server
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let mut url = url::Url::parse(&admin).unwrap();
        url.set_path(&name);
        let store = SqlStore::connect(&Secret::new(url.to_string()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        // One after another: each takes the one held connection there is.
        for n in 1..=8u8 {
            let hashes: Vec<[u8; 32]> = (0..n).map(|i| [i; 32]).collect();
            for found in store.lookup_keys(&hashes).await {
                assert_eq!(found, Ok(None));
            }
        }
        let pool = store.db.get_postgres_connection_pool();
        let Ok((place, mut conn)) = store.held.take(pool).await else {
            panic!("no held connection");
        };
        let plans: (i64, i64) = sqlx::query_as(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements \
             WHERE statement LIKE '%= ANY($1)'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(plans, (8, 0), "(generic, custom) plans of 8 lookups");
        drop((place, conn));
        store.close().await;
        server
            .execute_unprepared(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .await
            .unwrap();
    }
}
