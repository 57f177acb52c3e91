//! `KeyExpiryStore` for `SqlStore`: the keys near their expiry that have not
//! been told yet (an anti-join on `key_notices`, read through the
//! `(status, expires_at)` index), and the claim that makes a notice go out
//! once across replicas: the notice row's primary key is inserted with
//! `ON CONFLICT DO NOTHING` in the transaction that writes the event, so a
//! replica that loses the race writes nothing (PostgreSQL makes the loser
//! wait on the winner's uncommitted row, then see the conflict; SQLite has
//! one writer).

use async_trait::async_trait;
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Statement};
use sea_orm::{QuerySelect, TransactionTrait, Value};

use super::SqlStore;
use super::entities::{api_key, key_notice};
use super::map::key_from;
use crate::domain::model::{KeyRecord, Millis, StoredKeyStatus};
use crate::ports::{ExpiryCursor, KeyExpiryStore, KeyNotice, StoreError};

/// The n-th placeholder (1-based) in the backend's syntax.
fn ph(backend: DbBackend, n: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    }
}

#[async_trait]
impl KeyExpiryStore for SqlStore {
    async fn keys_due_notice(
        &self,
        threshold_days: i64,
        from: Millis,
        to: Millis,
        after: Option<&ExpiryCursor>,
        limit: u64,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        let conn = self.conn()?;
        let backend = conn.get_database_backend();
        let p: Vec<String> = (1..=8).map(|n| ph(backend, n)).collect();
        // Without a cursor, start at `from` (every candidate is past it).
        let (after_at, after_id) = after.cloned().unwrap_or((from, String::new()));
        let sql = format!(
            "SELECT k.* FROM api_keys k \
             WHERE k.status = {} AND k.successor_id IS NULL \
             AND k.expires_at > {} AND k.expires_at <= {} \
             AND (k.expires_at > {} OR (k.expires_at = {} AND k.id > {})) \
             AND NOT EXISTS (SELECT 1 FROM key_notices n WHERE n.key_id = k.id \
                 AND n.threshold_days = {} AND n.expires_at = k.expires_at) \
             ORDER BY k.expires_at, k.id LIMIT {}",
            p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]
        );
        let values: Vec<Value> = vec![
            StoredKeyStatus::Active.tag().into(),
            from.into(),
            to.into(),
            after_at.into(),
            after_at.into(),
            after_id.into(),
            threshold_days.into(),
            i64::try_from(limit).unwrap_or(i64::MAX).into(),
        ];
        api_key::Entity::find()
            .from_raw_sql(Statement::from_sql_and_values(backend, sql, values))
            .all(conn)
            .await
            .map_err(|e| self.fail(e))?
            .into_iter()
            .map(key_from)
            .collect()
    }

    async fn claim_key_notice(&self, notice: &KeyNotice) -> Result<bool, StoreError> {
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        let backend = txn.get_database_backend();
        let sql = format!(
            "INSERT INTO key_notices (key_id, threshold_days, expires_at, sent_at) \
             VALUES ({}, {}, {}, {}) ON CONFLICT (key_id, threshold_days, expires_at) DO NOTHING",
            ph(backend, 1),
            ph(backend, 2),
            ph(backend, 3),
            ph(backend, 4)
        );
        let values: Vec<Value> = vec![
            notice.key_id.clone().into(),
            notice.threshold_days.into(),
            notice.expires_at.into(),
            notice.sent_at.into(),
        ];
        let inserted = txn
            .execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await
            .map_err(|e| self.fail(e))?
            .rows_affected();
        if inserted != 1 {
            // Sent already: dropping the transaction rolls it back, and the
            // caller's scope drops what it staged.
            return Ok(false);
        }
        self.commit(txn).await?;
        Ok(true)
    }

    async fn prune_key_notices(&self, before: Millis, limit: u64) -> Result<u64, StoreError> {
        use key_notice::Column as C;
        let conn = self.conn()?;
        let old: Vec<(String, i64, i64)> = key_notice::Entity::find()
            .select_only()
            .column(C::KeyId)
            .column(C::ThresholdDays)
            .column(C::ExpiresAt)
            .filter(C::ExpiresAt.lt(before))
            .limit(limit)
            .into_tuple()
            .all(conn)
            .await
            .map_err(|e| self.fail(e))?;
        let mut gone = 0;
        for (key_id, threshold_days, expires_at) in old {
            gone += key_notice::Entity::delete_many()
                .filter(C::KeyId.eq(key_id))
                .filter(C::ThresholdDays.eq(threshold_days))
                .filter(C::ExpiresAt.eq(expires_at))
                .exec(conn)
                .await
                .map_err(|e| self.fail(e))?
                .rows_affected;
        }
        Ok(gone)
    }
}
