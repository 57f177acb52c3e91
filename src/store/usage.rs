//! Last-used times, written so that they can never block or delay a key
//! mutation:
//!
//! - they live in `key_usage`, a narrow table that no key mutation touches
//!   (and without a foreign key, whose check would lock the key row);
//! - a flush is a series of short statements of at most [`BATCH`] keys, each
//!   its own transaction, with the keys in id order so that two replicas
//!   flushing overlapping keys take their row locks in the same order and
//!   cannot deadlock (the periodic flush also pauses between two of them:
//!   `UsageRecorder::flush`);
//! - on PostgreSQL a row that another writer holds is skipped
//!   (`FOR UPDATE SKIP LOCKED`): that writer is storing a time as recent;
//! - a time is written only when the stored one is at least
//!   [`RESOLUTION_MS`] older, so a busy key costs one row version a minute,
//!   not one per flush (this is what bloated the table).

use std::collections::HashMap;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Statement, TransactionTrait,
    Value,
};

use super::SqlStore;
use super::entities::key_usage;
use crate::domain::model::{KeyRecord, LAST_USED_RESOLUTION_MS as RESOLUTION_MS, Millis};
use crate::ports::StoreError;

/// Keys per statement.
const BATCH: usize = 500;

impl SqlStore {
    pub(super) async fn write_usage(&self, used: &[(String, Millis)]) -> Result<(), StoreError> {
        let mut sorted: Vec<&(String, Millis)> = used.iter().collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        sorted.dedup_by(|later, earlier| {
            if later.0 == earlier.0 {
                // keep the newer time in `earlier`, which stays
                if later.1 > earlier.1 {
                    std::mem::swap(later, earlier);
                }
                true
            } else {
                false
            }
        });
        let backend = self.db.get_database_backend();
        for batch in sorted.chunks(BATCH) {
            match backend {
                DbBackend::Postgres => self.write_usage_postgres(batch).await?,
                _ => {
                    self.conn()?
                        .execute_raw(sqlite_upsert(batch))
                        .await
                        .map_err(|e| self.fail(e))?;
                }
            }
        }
        Ok(())
    }

    /// One batch on PostgreSQL: new keys inserted (`DO NOTHING` neither
    /// locks nor waits for a row lock on a key that is there already), then
    /// stale times of the others updated, skipping rows another writer holds.
    ///
    /// The update joins the batch with `key_usage`, and its plan must follow
    /// the table as it grows: a plan the connection cached while the table
    /// was small (a hash join over a sequential scan) stays in use otherwise,
    /// until something invalidates it, and at a million keys it read the
    /// whole table for every batch (a quarter of a second each, on a busy
    /// database). So it runs in a transaction of its own that plans it afresh
    /// (`plan_cache_mode = force_custom_plan`, for this transaction only).
    async fn write_usage_postgres(&self, batch: &[&(String, Millis)]) -> Result<(), StoreError> {
        let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
        let times: Vec<Millis> = batch.iter().map(|(_, at)| *at).collect();
        let insert = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO key_usage (key_id, last_used_at) \
             SELECT key_id, t FROM unnest($1::text[], $2::bigint[]) AS v(key_id, t) \
             ORDER BY key_id ON CONFLICT (key_id) DO NOTHING",
            [ids.clone().into(), times.clone().into()],
        );
        let inserted = self
            .conn()?
            .execute_raw(insert)
            .await
            .map_err(|e| self.fail(e))?
            .rows_affected();
        if u64::try_from(batch.len()).ok() == Some(inserted) {
            // Every key was new (a burst of first uses): nothing to update.
            return Ok(());
        }
        let update = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "WITH v(key_id, t) AS (SELECT * FROM unnest($1::text[], $2::bigint[])), \
             free AS (SELECT u.key_id FROM key_usage u JOIN v ON v.key_id = u.key_id \
                      WHERE u.last_used_at <= v.t - $3 \
                      ORDER BY u.key_id FOR UPDATE OF u SKIP LOCKED) \
             UPDATE key_usage u SET last_used_at = v.t FROM v JOIN free ON free.key_id = v.key_id \
             WHERE u.key_id = v.key_id",
            [ids.into(), times.into(), RESOLUTION_MS.into()],
        );
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        txn.execute_unprepared("SET LOCAL plan_cache_mode = force_custom_plan")
            .await
            .map_err(|e| self.fail(e))?;
        txn.execute_raw(update).await.map_err(|e| self.fail(e))?;
        txn.commit().await.map_err(|e| self.fail(e))
    }

    /// Fills in `last_used_at` of these keys from `key_usage`.
    pub(super) async fn attach_usage(&self, keys: &mut [KeyRecord]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = keys.iter().map(|k| k.id.clone()).collect();
        let used: HashMap<String, Millis> = key_usage::Entity::find()
            .filter(key_usage::Column::KeyId.is_in(ids))
            .all(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?
            .into_iter()
            .map(|row| (row.key_id, row.last_used_at))
            .collect();
        for key in keys.iter_mut() {
            if let Some(at) = used.get(&key.id) {
                key.last_used_at = Some(key.last_used_at.map_or(*at, |old| old.max(*at)));
            }
        }
        Ok(())
    }
}

/// One batch on SQLite, which has one writer at a time: nothing to skip, one upsert.
fn sqlite_upsert(batch: &[&(String, Millis)]) -> Statement {
    let mut values: Vec<Value> = Vec::with_capacity(batch.len() * 2 + 1);
    for (id, at) in batch {
        values.push(id.clone().into());
        values.push((*at).into());
    }
    values.push(RESOLUTION_MS.into());
    let rows = placeholders(batch.len(), |_| "(?, ?)".to_owned());
    let upsert = format!(
        "INSERT INTO key_usage (key_id, last_used_at) VALUES {rows} \
         ON CONFLICT (key_id) DO UPDATE SET last_used_at = excluded.last_used_at \
         WHERE key_usage.last_used_at <= excluded.last_used_at - ?"
    );
    Statement::from_sql_and_values(DbBackend::Sqlite, upsert, values)
}

fn placeholders(n: usize, one: impl Fn(usize) -> String) -> String {
    (0..n).map(one).collect::<Vec<_>>().join(", ")
}
