//! Last-used times, written so that they can never block or delay a key
//! mutation:
//!
//! - they live in `key_usage`, a narrow table that no key mutation touches
//!   (and without a foreign key, whose check would lock the key row);
//! - a flush is a series of short statements of at most [`BATCH`] keys, each
//!   its own transaction, with the keys in id order so that two replicas
//!   flushing overlapping keys take their row locks in the same order and
//!   cannot deadlock;
//! - on PostgreSQL a row that another writer holds is skipped
//!   (`FOR UPDATE SKIP LOCKED`): that writer is storing a time as recent;
//! - a time is written only when the stored one is more than
//!   [`RESOLUTION_MS`] older, so a busy key costs one row version a minute,
//!   not one per flush (this is what bloated the table).

use std::collections::HashMap;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Statement, Value,
};

use super::SqlStore;
use super::entities::key_usage;
use crate::domain::model::{KeyRecord, Millis};
use crate::ports::StoreError;

/// Keys per statement.
const BATCH: usize = 500;
/// Last-used times are accurate to this much.
pub const RESOLUTION_MS: Millis = 60_000;

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
            for statement in usage_statements(backend, batch) {
                self.conn()?
                    .execute_raw(statement)
                    .await
                    .map_err(|e| self.fail(e))?;
            }
        }
        Ok(())
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

/// The statements that write one batch (sorted by key id, no duplicates).
fn usage_statements(backend: DbBackend, batch: &[&(String, Millis)]) -> Vec<Statement> {
    let mut values: Vec<Value> = Vec::with_capacity(batch.len() * 2 + 1);
    for (id, at) in batch {
        values.push(id.clone().into());
        values.push((*at).into());
    }
    match backend {
        DbBackend::Postgres => {
            let rows = placeholders(batch.len(), |i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2));
            let window = format!("${}", 2 * batch.len() + 1);
            // New keys first: DO NOTHING neither locks nor waits for a row
            // lock on a key that is there already.
            let insert = format!(
                "INSERT INTO key_usage (key_id, last_used_at) \
                 SELECT key_id, t FROM (VALUES {rows}) AS v(key_id, t) ORDER BY key_id \
                 ON CONFLICT (key_id) DO NOTHING"
            );
            let update = format!(
                "WITH v(key_id, t) AS (VALUES {rows}), \
                 free AS (SELECT u.key_id FROM key_usage u JOIN v ON v.key_id = u.key_id \
                          WHERE u.last_used_at < v.t - {window} \
                          ORDER BY u.key_id FOR UPDATE OF u SKIP LOCKED) \
                 UPDATE key_usage u SET last_used_at = v.t FROM v JOIN free ON free.key_id = v.key_id \
                 WHERE u.key_id = v.key_id"
            );
            let mut with_window = values.clone();
            with_window.push(RESOLUTION_MS.into());
            vec![
                Statement::from_sql_and_values(backend, insert, values),
                Statement::from_sql_and_values(backend, update, with_window),
            ]
        }
        _ => {
            // SQLite has one writer at a time: nothing to skip, one upsert.
            let rows = placeholders(batch.len(), |_| "(?, ?)".to_owned());
            let upsert = format!(
                "INSERT INTO key_usage (key_id, last_used_at) VALUES {rows} \
                 ON CONFLICT (key_id) DO UPDATE SET last_used_at = excluded.last_used_at \
                 WHERE key_usage.last_used_at < excluded.last_used_at - ?"
            );
            values.push(RESOLUTION_MS.into());
            vec![Statement::from_sql_and_values(backend, upsert, values)]
        }
    }
}

fn placeholders(n: usize, one: impl Fn(usize) -> String) -> String {
    (0..n).map(one).collect::<Vec<_>>().join(", ")
}
