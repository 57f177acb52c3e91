//! SeaORM over SQLite (embedded default) and PostgreSQL (many replicas): one
//! set of entities and migrations for both. Implements `ports::Store`.
//!
//! On PostgreSQL every key or account change also sends a `NOTIFY` inside its
//! transaction, so every replica's cache drops the entry when it commits.

mod audit;
mod circuit;
mod consent;
pub mod entities;
mod held;
mod integrations;
mod key_notices;
mod lookup;
mod map;
pub mod migration;
mod notify;
mod pool;
mod sealed;
mod signing;
mod startup;
mod tokens;
mod usage;
mod usage_stats;
mod webhook_deliveries;
mod webhooks;

pub use pool::StoreOptions;
pub use startup::StartupLock;

use circuit::{Circuit, is_unavailable};
use map::{account_from, account_to, key_from, key_to, rule_from};

use std::time::Duration;

use async_trait::async_trait;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr, TransactionTrait,
};

use crate::crypto::hex;
use crate::domain::model::RuleRecord;
use crate::domain::model::{Account, KeyRecord, KeyStatus, Millis, StoredKeyStatus};
use crate::ports::{KeyFilter, Store, StoreError};
use entities::{account, account_store, api_key, meta, route_rule};

/// The `LISTEN`/`NOTIFY` channel for cache invalidation.
pub const INVALIDATION_CHANNEL: &str = "latchkey_invalidate";
/// Payload meaning "drop everything" (account changes).
const INVALIDATE_ALL: &str = "*";
/// Payload meaning "route rules changed".
const ROUTES_CHANGED: &str = "routes";

/// Under the health loop's own bound (one second at least), so that a ping
/// that times out still opens the circuit; the sweep of idle connections
/// and the pool's refill that follow a good ping share it.
const PING_TIMEOUT: Duration = Duration::from_millis(900);

#[derive(Clone)]
pub struct SqlStore {
    db: DatabaseConnection,
    circuit: Circuit,
    /// PostgreSQL connections kept open (0 on SQLite).
    floor: u32,
    /// PostgreSQL connections that cold lookups keep out of the pool.
    held: held::Held,
}

fn map_err(e: DbErr) -> StoreError {
    if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
        return StoreError::AlreadyExists;
    }
    if is_unavailable(&e) {
        return StoreError::Unavailable(e.to_string());
    }
    StoreError::Internal(e.to_string())
}

impl SqlStore {
    /// Fills in `store_ids` of these accounts with one query.
    async fn attach_stores(&self, accounts: &mut [Account]) -> Result<(), StoreError> {
        if accounts.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = accounts.iter().map(|a| a.id.clone()).collect();
        let rows = account_store::Entity::find()
            .filter(account_store::Column::AccountId.is_in(ids))
            .all(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?;
        for row in rows {
            if let Some(a) = accounts.iter_mut().find(|a| a.id == row.account_id) {
                a.store_ids.push(row.store_id);
            }
        }
        // Byte order, whatever the database's collation: decide() binary-searches it.
        for a in accounts.iter_mut() {
            a.store_ids.sort_unstable();
        }
        Ok(())
    }

    pub fn is_postgres(&self) -> bool {
        self.db.get_database_backend() == DbBackend::Postgres
    }

    pub async fn close(self) {
        self.held.close().await;
        if let Err(e) = self.db.close().await {
            tracing::warn!(error = %e, "closing the store failed");
        }
    }
}

/// One page of `query` in id order, after `after`: the keyset paging every
/// `list_*` shares.
async fn page<E, T>(
    db: &DatabaseConnection,
    query: sea_orm::Select<E>,
    id: E::Column,
    after: Option<&str>,
    limit: u64,
    convert: impl Fn(E::Model) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError>
where
    E: EntityTrait,
    E::Model: Send + Sync,
{
    let query = match after {
        Some(after) => query.filter(id.gt(after.to_owned())),
        None => query,
    };
    query
        .order_by_asc(id)
        .limit(limit)
        .all(db)
        .await
        .map_err(map_err)?
        .into_iter()
        .map(convert)
        .collect()
}

/// Optimistic update: writes only if the stored version is the one before `version`.
async fn update_key_in<C: ConnectionTrait>(conn: &C, key: &KeyRecord) -> Result<(), StoreError> {
    let mut row = key_to(key);
    // Last-used times are written only by the usage flusher, which never moves them back.
    row.last_used_at = sea_orm::ActiveValue::NotSet;
    let result = api_key::Entity::update_many()
        .set(row)
        .filter(api_key::Column::Id.eq(key.id.clone()))
        .filter(api_key::Column::Version.eq(key.version - 1))
        .exec(conn)
        .await
        .map_err(map_err)?;
    if result.rows_affected == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict)
    }
}

fn status_condition(status: KeyStatus, now: Millis) -> sea_orm::Condition {
    use api_key::Column as C;
    use sea_orm::Condition;
    let active = C::Status.eq(StoredKeyStatus::Active.tag());
    let not_rotated = Condition::any()
        .add(C::OverlapEndsAt.is_null())
        .add(C::OverlapEndsAt.gt(now));
    match status {
        KeyStatus::Suspended => {
            Condition::all().add(C::Status.eq(StoredKeyStatus::Suspended.tag()))
        }
        KeyStatus::Revoked => Condition::all().add(C::Status.eq(StoredKeyStatus::Revoked.tag())),
        KeyStatus::Rotated => Condition::all().add(active).add(C::OverlapEndsAt.lte(now)),
        KeyStatus::Expired => Condition::all()
            .add(active)
            .add(not_rotated)
            .add(C::ExpiresAt.lte(now)),
        KeyStatus::Active => Condition::all()
            .add(active)
            .add(not_rotated)
            .add(C::ExpiresAt.gt(now)),
    }
}

impl SqlStore {
    /// One ping. On PostgreSQL a connection whose ping fails is taken out of
    /// the pool and dropped: returned to the pool, sqlx would ping it once
    /// more on the way, and for a connection broken mid-exchange that ping
    /// does not return, so it stays counted in the pool and holds a place.
    async fn ping_once(&self) -> Result<(), sea_orm::DbErr> {
        if !self.is_postgres() {
            return self.db.ping().await;
        }
        use sqlx::Connection;
        let pool = self.db.get_postgres_connection_pool();
        let mut conn = pool.acquire().await.map_err(pool::sqlx_conn_err)?;
        conn.ping().await.map_err(|e| {
            drop(conn.detach());
            pool::sqlx_conn_err(e)
        })
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        // The one call that bypasses the circuit: it is how the health loop
        // finds out that the store is back, and closes it.
        let deadline = tokio::time::Instant::now() + PING_TIMEOUT;
        let result = match tokio::time::timeout_at(deadline, self.ping_once()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Unavailable(e.to_string())),
            Err(_) => Err(StoreError::Unavailable("the ping timed out".into())),
        };
        let was_open = self.circuit.is_open();
        self.circuit.set_open(result.is_err());
        // Back from an outage the pool lost its connections (each found dead
        // was dropped); up all along, it may hold some that were ended under
        // it. Either way what is missing is opened now, before load needs it;
        // within the ping's bound, so that the health loop never takes a
        // slow refill for a store that is down (what is not open by then,
        // calls and sqlx's own upkeep open).
        if result.is_ok() && self.floor > 0 {
            let short = was_open || self.drop_dead_idle(deadline).await > 0;
            if short {
                let _ = tokio::time::timeout_at(deadline, self.warm(self.floor)).await;
            }
        }
        result
    }

    async fn insert_account(&self, a: &Account) -> Result<(), StoreError> {
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        account::Entity::insert(account_to(a))
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        self.commit(txn).await
    }

    async fn get_account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        let Some(m) = account::Entity::find_by_id(id.to_owned())
            .one(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?
        else {
            return Ok(None);
        };
        let mut accounts = vec![account_from(m)?];
        self.attach_stores(&mut accounts).await?;
        Ok(accounts.pop())
    }

    async fn list_accounts(
        &self,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<Account>, StoreError> {
        let tenants = account::Entity::find().filter(account::Column::IsOperator.eq(false));
        let mut accounts = page(
            self.conn()?,
            tenants,
            account::Column::Id,
            after,
            limit,
            account_from,
        )
        .await?;
        self.attach_stores(&mut accounts).await?;
        Ok(accounts)
    }

    async fn update_account(&self, a: &Account) -> Result<(), StoreError> {
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        let result = account::Entity::update_many()
            .set(account_to(a))
            .filter(account::Column::Id.eq(a.id.clone()))
            .filter(account::Column::Version.eq(a.version - 1))
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        if result.rows_affected != 1 {
            return Err(StoreError::Conflict);
        }
        self.notify(&txn, INVALIDATE_ALL).await?;
        self.commit(txn).await
    }

    async fn add_store(
        &self,
        account_id: &str,
        store_id: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        account_store::Entity::insert(account_store::ActiveModel {
            store_id: Set(store_id.to_owned()),
            account_id: Set(account_id.to_owned()),
            created_at: Set(now),
        })
        .exec(&txn)
        .await
        .map_err(|e| self.fail(e))?;
        self.notify(&txn, INVALIDATE_ALL).await?;
        self.commit(txn).await
    }

    async fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(meta::Entity::find_by_id(name.to_owned())
            .one(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?
            .map(|m| m.value))
    }

    async fn insert_meta(&self, name: &str, value: &[u8]) -> Result<bool, StoreError> {
        let inserted = meta::Entity::insert(meta::ActiveModel {
            name: Set(name.to_owned()),
            value: Set(value.to_vec()),
        })
        .exec(self.conn()?)
        .await
        .map_err(|e| self.fail(e));
        match inserted {
            Ok(_) => Ok(true),
            Err(StoreError::AlreadyExists) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn remove_store(&self, account_id: &str, store_id: &str) -> Result<bool, StoreError> {
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        let result = account_store::Entity::delete_many()
            .filter(account_store::Column::StoreId.eq(store_id.to_owned()))
            .filter(account_store::Column::AccountId.eq(account_id.to_owned()))
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        if result.rows_affected == 0 {
            // Nothing changed: no notice, and no audit event either.
            return Ok(false);
        }
        self.notify(&txn, INVALIDATE_ALL).await?;
        self.commit(txn).await?;
        Ok(result.rows_affected == 1)
    }

    async fn insert_key(&self, k: &KeyRecord) -> Result<(), StoreError> {
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        api_key::Entity::insert(key_to(k))
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        self.commit(txn).await
    }

    async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let Some(key) = api_key::Entity::find_by_id(id.to_owned())
            .one(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?
        else {
            return Ok(None);
        };
        let mut keys = [key_from(key)?];
        self.attach_usage(&mut keys).await?;
        let [key] = keys;
        Ok(Some(key))
    }

    async fn list_keys(
        &self,
        f: &KeyFilter,
        now: Millis,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        let mut q = api_key::Entity::find();
        if let Some(account_id) = &f.account_id {
            q = q.filter(api_key::Column::AccountId.eq(account_id.clone()));
        }
        if let Some(mode) = f.mode {
            q = q.filter(api_key::Column::Mode.eq(mode.tag()));
        }
        if let Some(status) = f.status {
            q = q.filter(status_condition(status, now));
        }
        let mut keys = page(self.conn()?, q, api_key::Column::Id, after, limit, key_from).await?;
        self.attach_usage(&mut keys).await?;
        Ok(keys)
    }

    async fn update_key(&self, k: &KeyRecord) -> Result<(), StoreError> {
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        update_key_in(&txn, k).await?;
        self.notify(&txn, &hex(&k.key_hash)).await?;
        self.commit(txn).await
    }

    async fn rotate_key(
        &self,
        old: &KeyRecord,
        successor: &KeyRecord,
        predecessor: Option<&KeyRecord>,
    ) -> Result<(), StoreError> {
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        update_key_in(&txn, old).await?;
        if let Some(p) = predecessor {
            update_key_in(&txn, p).await?;
            self.notify(&txn, &hex(&p.key_hash)).await?;
        }
        api_key::Entity::insert(key_to(successor))
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        self.notify(&txn, &hex(&old.key_hash)).await?;
        self.commit(txn).await
    }

    async fn find_key_by_hash(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<(KeyRecord, Account)>, StoreError> {
        self.lookup_key(hash).await
    }

    async fn find_keys_by_hashes(
        &self,
        hashes: &[[u8; 32]],
    ) -> Vec<Result<Option<(KeyRecord, Account)>, StoreError>> {
        self.lookup_keys(hashes).await
    }

    async fn record_key_usage(&self, used: &[(String, Millis)]) -> Result<(), StoreError> {
        self.write_usage(used).await
    }

    async fn insert_rule(&self, rule: &RuleRecord) -> Result<(), StoreError> {
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        route_rule::Entity::insert(route_rule::ActiveModel {
            id: Set(rule.id.clone()),
            host: Set(rule.host.clone().unwrap_or_default()),
            method: Set(rule.method.clone()),
            path: Set(rule.path.clone()),
            permission: Set(rule.permission.clone()),
            created_at: Set(rule.created_at),
            case_insensitive: Set(rule.case_insensitive),
            match_key: Set(Some(rule.match_key())),
        })
        .exec(&txn)
        .await
        .map_err(|e| self.fail(e))?;
        self.notify(&txn, ROUTES_CHANGED).await?;
        self.commit(txn).await
    }

    async fn list_rules(
        &self,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<RuleRecord>, StoreError> {
        let rules = route_rule::Entity::find();
        page(
            self.conn()?,
            rules,
            route_rule::Column::Id,
            after,
            limit,
            |m| Ok(rule_from(m)),
        )
        .await
    }

    async fn all_rules(&self) -> Result<Vec<RuleRecord>, StoreError> {
        Ok(route_rule::Entity::find()
            .order_by_asc(route_rule::Column::Id)
            .all(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?
            .into_iter()
            .map(rule_from)
            .collect())
    }

    async fn delete_rule(&self, id: &str) -> Result<bool, StoreError> {
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        let result = route_rule::Entity::delete_by_id(id.to_owned())
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        if result.rows_affected == 0 {
            // Nothing changed: no notice, and no audit event either.
            return Ok(false);
        }
        self.notify(&txn, ROUTES_CHANGED).await?;
        self.commit(txn).await?;
        Ok(result.rows_affected == 1)
    }
}

#[cfg(test)]
mod statement_timeout_tests {
    use std::time::Instant;

    use super::*;
    use crate::crypto::secret::Secret;

    fn options(ms: u64) -> StoreOptions {
        StoreOptions {
            statement_timeout: Duration::from_millis(ms),
            ..StoreOptions::default()
        }
    }

    /// Every pooled PostgreSQL connection carries `statement_timeout`: a
    /// statement that runs longer is cancelled, not waited for.
    #[tokio::test]
    async fn postgres_cancels_a_statement_over_the_timeout() {
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let store = SqlStore::connect_with(&Secret::new(url), options(300))
            .await
            .unwrap();
        // More than one connection of the pool: all of them carry it.
        let (a, b) = tokio::join!(
            store.db.execute_unprepared("SELECT pg_sleep(3)"),
            store.db.execute_unprepared("SELECT pg_sleep(3)")
        );
        for r in [a, b] {
            let e = r.unwrap_err().to_string();
            assert!(e.contains("statement timeout"), "{e}");
        }
        store.db.execute_unprepared("SELECT 1").await.unwrap();
        store.close().await;
    }

    /// SQLite: a write that waits for another writer's lock gives up after
    /// the statement timeout, not SQLite's default of never (or sqlx's 5 s).
    #[tokio::test]
    async fn sqlite_gives_up_waiting_for_the_write_lock() {
        use sqlx::Connection as _;

        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = SqlStore::connect_with(&Secret::new(url.clone()), options(300))
            .await
            .unwrap();
        store
            .db
            .execute_unprepared("CREATE TABLE t (x INTEGER)")
            .await
            .unwrap();
        let mut holder = sqlx::sqlite::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut holder)
            .await
            .unwrap();
        let started = Instant::now();
        let e = store
            .db
            .execute_unprepared("INSERT INTO t VALUES (1)")
            .await
            .unwrap_err()
            .to_string();
        let waited = started.elapsed();
        assert!(e.contains("locked"), "{e}");
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
            "waited {waited:?}"
        );
        drop(holder);
        store.close().await;
    }
}
