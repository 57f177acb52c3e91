//! The cold lookup of Check: a key by its hash, with its account and the
//! account's stores, in one round trip (one statement joining the three
//! tables: a row per store, at least one).

use sea_orm::{
    ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, IdenStatic, Iterable, Statement,
};

use super::SqlStore;
use super::entities::{account, api_key};
use super::map::{account_from, key_from};
use crate::crypto::hex;
use crate::domain::model::{Account, KeyRecord};
use crate::ports::StoreError;

/// `alias.col AS prefixcol, …` for every column of `E`.
fn columns<E: EntityTrait>(alias: &str, prefix: &str) -> String {
    E::Column::iter()
        .map(|c| format!("{alias}.{col} AS {prefix}{col}", col = c.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn lookup_sql(backend: DbBackend) -> String {
    let param = if backend == DbBackend::Postgres {
        "$1"
    } else {
        "?"
    };
    format!(
        "SELECT {}, {}, s.store_id AS s_store_id \
         FROM api_keys k \
         LEFT JOIN accounts a ON a.id = k.account_id \
         LEFT JOIN account_stores s ON s.account_id = k.account_id \
         WHERE k.key_hash = {param}",
        columns::<api_key::Entity>("k", "k_"),
        columns::<account::Entity>("a", "a_"),
    )
}

impl SqlStore {
    pub(super) async fn lookup_key(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<(KeyRecord, Account)>, StoreError> {
        let backend = self.db.get_database_backend();
        let rows = self
            .conn()?
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                lookup_sql(backend),
                [hex(hash).into()],
            ))
            .await
            .map_err(|e| self.fail(e))?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let bad = |e: sea_orm::DbErr| StoreError::Internal(e.to_string());
        let key = key_from(api_key::Model::from_query_result(first, "k_").map_err(bad)?)?;
        let Some(account) = account::Model::from_query_result_optional(first, "a_").map_err(bad)?
        else {
            return Err(StoreError::Internal(format!(
                "key {} has no account",
                key.id
            )));
        };
        let mut account = account_from(account)?;
        for row in &rows {
            if let Some(store) = row
                .try_get::<Option<String>>("", "s_store_id")
                .map_err(bad)?
            {
                account.store_ids.push(store);
            }
        }
        // Byte order, whatever the database's collation: decide() binary-searches it.
        account.store_ids.sort_unstable();
        Ok(Some((key, account)))
    }
}
