//! The cold lookup of Check: keys by their hashes, with their accounts and
//! the accounts' stores, in one round trip (one statement joining the three
//! tables: a row per store, at least one per key). The batch form takes many
//! hashes in one statement (PostgreSQL `= ANY($1)`, SQLite `IN (json_each)`),
//! so its text, and so the prepared statement the driver caches per
//! connection, is the same whatever the batch's size.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::LazyLock;

use sea_orm::{
    ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, IdenStatic, Iterable, QueryResult,
    Statement, Value,
};

use super::SqlStore;
use super::entities::{account, api_key};
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

/// The key and account of a key's first row (its stores come after).
fn key_and_account(row: &QueryResult) -> Result<(KeyRecord, Account), StoreError> {
    let key = key_from(api_key::Model::from_query_result(row, "k_").map_err(bad)?)?;
    let Some(account) = account::Model::from_query_result_optional(row, "a_").map_err(bad)? else {
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
        let hash: String = row.try_get("", "k_key_hash").map_err(bad)?;
        let store: Option<String> = row.try_get("", "s_store_id").map_err(bad)?;
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
    async fn lookup_rows(&self, sql: &str, param: Value) -> Result<Vec<QueryResult>, StoreError> {
        let backend = self.db.get_database_backend();
        self.conn()?
            .query_all_raw(Statement::from_sql_and_values(backend, sql, [param]))
            .await
            .map_err(|e| self.fail(e))
    }

    pub(super) async fn lookup_key(&self, hash: &[u8; 32]) -> Found {
        let sql = Sql::of(self.db.get_database_backend());
        let hash = hex(hash);
        let rows = self.lookup_rows(&sql.one, hash.clone().into()).await?;
        keys_by_hash(&rows)?.remove(&hash).transpose()
    }

    /// One answer per hash, in order. A failed statement fails every hash.
    pub(super) async fn lookup_keys(&self, hashes: &[[u8; 32]]) -> Vec<Found> {
        let hexes: Vec<String> = hashes.iter().map(|h| hex(h)).collect();
        let found = self.lookup_many(&hexes).await;
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

    async fn lookup_many(&self, hexes: &[String]) -> Result<Keys, StoreError> {
        let backend = self.db.get_database_backend();
        let param: Value = if backend == DbBackend::Postgres {
            hexes.to_vec().into()
        } else {
            serde_json::to_string(hexes)
                .map_err(|e| StoreError::Internal(e.to_string()))?
                .into()
        };
        let rows = self.lookup_rows(&Sql::of(backend).many, param).await?;
        keys_by_hash(&rows)
    }
}
