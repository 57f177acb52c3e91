//! The cold lookup of Check: keys by their hashes, with their accounts and
//! the accounts' stores, in one round trip (one statement joining the three
//! tables: a row per store, at least one per key). The batch form takes many
//! hashes in one statement (PostgreSQL `= ANY($1)`, SQLite `IN (json_each)`),
//! so its text, and so the prepared statement the driver caches per
//! connection, is the same whatever the batch's size.
//!
//! Rows are read by column index, in select order: read by name, each of a
//! row's 34 columns cost a formatted name and a search of the row's names,
//! and a fifth of the server's CPU under a burst of cold lookups went there.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::LazyLock;

use sea_orm::{
    ConnectionTrait, DbBackend, EntityTrait, IdenStatic, Iterable, QueryResult, Statement,
    TryGetable, Value,
};

use super::SqlStore;
use super::entities::{account, api_key};
use super::held::{Hashes, Missed};
use super::map::{account_from, key_from};
use crate::crypto::hex;
use crate::domain::model::{Account, KeyRecord};
use crate::ports::StoreError;

type Found = Result<Option<(KeyRecord, Account)>, StoreError>;
/// Keys by the hex hash they were found under; a corrupt one is its error.
type Keys = HashMap<String, Result<(KeyRecord, Account), StoreError>>;

/// `alias.col AS prefixcol, …` for every column of `E`.
fn columns<E: EntityTrait>(alias: &str, prefix: &str) -> String {
    E::Column::iter()
        .map(|c| format!("{alias}.{col} AS {prefix}{col}", col = c.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The statements, built once per backend (not on every lookup).
struct Sql {
    /// One hash.
    one: String,
    /// Many hashes in one parameter.
    many: String,
}

/// Where a row's parts start: the key's columns, then its account's, then
/// one store id.
struct Layout {
    key_hash: usize,
    account: usize,
    store: usize,
}

static LAYOUT: LazyLock<Layout> = LazyLock::new(|| {
    let key_columns = api_key::Column::iter().count();
    Layout {
        key_hash: api_key::Column::iter()
            .position(|c| matches!(c, api_key::Column::KeyHash))
            .unwrap_or(usize::MAX),
        account: key_columns,
        store: key_columns + account::Column::iter().count(),
    }
});

impl Sql {
    fn new(backend: DbBackend) -> Self {
        let select = format!(
            "SELECT {}, {}, s.store_id AS s_store_id \
             FROM api_keys k \
             LEFT JOIN accounts a ON a.id = k.account_id \
             LEFT JOIN account_stores s ON s.account_id = k.account_id \
             WHERE k.key_hash",
            columns::<api_key::Entity>("k", "k_"),
            columns::<account::Entity>("a", "a_"),
        );
        if backend == DbBackend::Postgres {
            Self {
                one: format!("{select} = $1"),
                many: format!("{select} = ANY($1)"),
            }
        } else {
            Self {
                one: format!("{select} = ?"),
                many: format!("{select} IN (SELECT value FROM json_each(?))"),
            }
        }
    }

    fn of(backend: DbBackend) -> &'static Sql {
        static POSTGRES: LazyLock<Sql> = LazyLock::new(|| Sql::new(DbBackend::Postgres));
        static SQLITE: LazyLock<Sql> = LazyLock::new(|| Sql::new(DbBackend::Sqlite));
        if backend == DbBackend::Postgres {
            &POSTGRES
        } else {
            &SQLITE
        }
    }
}

fn bad(e: sea_orm::DbErr) -> StoreError {
    StoreError::Internal(e.to_string())
}

/// A row's columns read one after another from `next` on, in select order.
struct Cursor<'r> {
    row: &'r QueryResult,
    next: usize,
}

impl Cursor<'_> {
    fn take<T: TryGetable>(&mut self) -> Result<T, StoreError> {
        self.next += 1;
        self.row.try_get_by_index(self.next - 1).map_err(bad)
    }
}

/// The key's columns, in `api_key::Column` order (the select list's).
fn key_model(c: &mut Cursor<'_>) -> Result<api_key::Model, StoreError> {
    Ok(api_key::Model {
        id: c.take()?,
        account_id: c.take()?,
        mode: c.take()?,
        kind: c.take()?,
        name: c.take()?,
        key_hash: c.take()?,
        masked: c.take()?,
        scopes: c.take()?,
        role: c.take()?,
        allowed_cidrs: c.take()?,
        allowed_origins: c.take()?,
        status: c.take()?,
        expires_at: c.take()?,
        created_at: c.take()?,
        updated_at: c.take()?,
        last_used_at: c.take()?,
        predecessor_id: c.take()?,
        successor_id: c.take()?,
        overlap_ends_at: c.take()?,
        version: c.take()?,
        signing_secret_id: c.take()?,
        rate_limit_requests: c.take()?,
        rate_limit_per_seconds: c.take()?,
        rate_limit_burst: c.take()?,
        suspension_cause: c.take()?,
    })
}

/// The account's columns, in `account::Column` order; `None` if the join
/// found no account (its id is NULL).
fn account_model(c: &mut Cursor<'_>) -> Result<Option<account::Model>, StoreError> {
    let Some(id) = c.take::<Option<String>>()? else {
        return Ok(None);
    };
    Ok(Some(account::Model {
        id,
        name: c.take()?,
        plan: c.take()?,
        live_status: c.take()?,
        is_operator: c.take()?,
        created_at: c.take()?,
        updated_at: c.take()?,
        version: c.take()?,
    }))
}

/// The key and account of a key's first row (its stores come after).
fn key_and_account(row: &QueryResult) -> Result<(KeyRecord, Account), StoreError> {
    let key = key_from(key_model(&mut Cursor { row, next: 0 })?)?;
    let mut at_account = Cursor {
        row,
        next: LAYOUT.account,
    };
    let Some(account) = account_model(&mut at_account)? else {
        return Err(StoreError::Internal(format!(
            "key {} has no account",
            key.id
        )));
    };
    Ok((key, account_from(account)?))
}

/// Rows grouped into keys, by the hex hash they were found under. A key
/// whose row is corrupt fails alone, not the other keys of its batch.
fn keys_by_hash(rows: &[QueryResult]) -> Result<Keys, StoreError> {
    let mut keys = Keys::new();
    for row in rows {
        let hash: String = row.try_get_by_index(LAYOUT.key_hash).map_err(bad)?;
        let store: Option<String> = row.try_get_by_index(LAYOUT.store).map_err(bad)?;
        let key = match keys.entry(hash) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(key_and_account(row)),
        };
        if let (Ok((_, account)), Some(store)) = (key, store) {
            account.store_ids.push(store);
        }
    }
    // Byte order, whatever the database's collation: decide() binary-searches it.
    for (_, account) in keys.values_mut().flatten() {
        account.store_ids.sort_unstable();
    }
    Ok(keys)
}

impl SqlStore {
    /// The rows of the lookup statement for `hashes`. On PostgreSQL on a
    /// held connection (see held.rs) when there is one, else the pool's.
    async fn lookup_rows(&self, hashes: Hashes<'_>) -> Result<Vec<QueryResult>, StoreError> {
        let db = self.conn()?;
        let backend = db.get_database_backend();
        let sql = Sql::of(backend);
        let text = match hashes {
            Hashes::One(_) => &sql.one,
            Hashes::Many(_) => &sql.many,
        };
        if backend == DbBackend::Postgres {
            let pool = db.get_postgres_connection_pool();
            match self.held.query(pool, text, hashes).await {
                Ok(rows) => return Ok(rows),
                Err(Missed::Failed(e)) => return Err(self.fail(e)),
                Err(Missed::UsePool) => {}
            }
        }
        let param: Value = match hashes {
            Hashes::One(hash) => hash.into(),
            Hashes::Many(hexes) if backend == DbBackend::Postgres => hexes.to_vec().into(),
            Hashes::Many(hexes) => serde_json::to_string(hexes)
                .map_err(|e| StoreError::Internal(e.to_string()))?
                .into(),
        };
        db.query_all_raw(Statement::from_sql_and_values(backend, text, [param]))
            .await
            .map_err(|e| self.fail(e))
    }

    pub(super) async fn lookup_key(&self, hash: &[u8; 32]) -> Found {
        let hash = hex(hash);
        let rows = self.lookup_rows(Hashes::One(&hash)).await?;
        keys_by_hash(&rows)?.remove(&hash).transpose()
    }

    /// One answer per hash, in order. A failed statement fails every hash.
    pub(super) async fn lookup_keys(&self, hashes: &[[u8; 32]]) -> Vec<Found> {
        let hexes: Vec<String> = hashes.iter().map(|h| hex(h)).collect();
        let found = match self.lookup_rows(Hashes::Many(&hexes)).await {
            Ok(rows) => keys_by_hash(&rows),
            Err(e) => Err(e),
        };
        let mut keys = match found {
            Ok(keys) => keys,
            Err(e) => return hashes.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut sorted = hashes.to_vec();
        sorted.sort_unstable();
        let repeated = sorted.windows(2).any(|w| w[0] == w[1]);
        hexes
            .iter()
            .map(|hash| {
                // A repeated hash gets a copy each; else the row moves out.
                let key = if repeated {
                    keys.get(hash).cloned()
                } else {
                    keys.remove(hash)
                };
                key.transpose()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ActiveModelTrait, IntoActiveModel};

    use super::super::entities::account_store;
    use super::*;
    use crate::crypto::secret::Secret;
    use crate::crypto::sha256;

    /// Every column a different value, so that two columns read in each
    /// other's place cannot go unnoticed.
    fn stored_key(account_id: &str, hash: &[u8; 32]) -> api_key::Model {
        api_key::Model {
            id: "key_1".into(),
            account_id: account_id.into(),
            mode: "test".into(),
            kind: "sk".into(),
            name: "the name".into(),
            key_hash: hex(hash),
            masked: "lk_test_sk_…abcd".into(),
            scopes: r#"["feedback.read"]"#.into(),
            role: Some("the role".into()),
            allowed_cidrs: r#"["10.0.0.0/8"]"#.into(),
            allowed_origins: r#"["https://a.example"]"#.into(),
            status: "suspended".into(),
            expires_at: 9_000_000,
            created_at: 1_000,
            updated_at: 2_000,
            last_used_at: Some(3_000),
            predecessor_id: Some("key_0".into()),
            successor_id: Some("key_2".into()),
            overlap_ends_at: Some(4_000),
            version: 7,
            signing_secret_id: Some("sig_1".into()),
            rate_limit_requests: Some(100),
            rate_limit_per_seconds: Some(60),
            rate_limit_burst: Some(5),
            suspension_cause: Some("the cause".into()),
        }
    }

    #[tokio::test]
    async fn a_lookup_reads_every_column_into_its_own_field() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = SqlStore::connect(&Secret::new(url)).await.unwrap();
        store.migrate().await.unwrap();
        let account = account::Model {
            id: "acct_1".into(),
            name: "the account".into(),
            plan: "PRIME".into(),
            live_status: "pending_review".into(),
            is_operator: true,
            created_at: 5_000,
            updated_at: 6_000,
            version: 8,
        };
        account
            .clone()
            .into_active_model()
            .insert(&store.db)
            .await
            .unwrap();
        let hash = sha256(b"the secret");
        let key = stored_key(&account.id, &hash);
        key.clone()
            .into_active_model()
            .insert(&store.db)
            .await
            .unwrap();
        for store_id in ["store-b", "store-a"] {
            account_store::Model {
                store_id: store_id.into(),
                account_id: account.id.clone(),
                created_at: 1,
            }
            .into_active_model()
            .insert(&store.db)
            .await
            .unwrap();
        }
        let (found_key, found_account) = store.lookup_key(&hash).await.unwrap().unwrap();
        assert_eq!(found_key, key_from(key).unwrap());
        let mut expected = account_from(account).unwrap();
        expected.store_ids = vec!["store-a".into(), "store-b".into()];
        assert_eq!(found_account, expected);
        assert_eq!(store.lookup_key(&sha256(b"other")).await.unwrap(), None);
        store.close().await;
    }
}
