//! `UsageStore` for `SqlStore`: per-minute usage counts, key countries and
//! advisor marks. Raw SQL for the upserts that add counts (the ORM has no
//! "add to the stored value" conflict action); placeholders are `$n` on
//! PostgreSQL and `?` on SQLite. Batches are sorted by their conflict key so
//! that two replicas flushing overlapping rows take row locks in the same
//! order and cannot deadlock (as `usage.rs` does for last-used times).

use std::borrow::Cow;
use std::collections::BTreeMap;

use async_trait::async_trait;
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait, Value};

use super::SqlStore;
use super::map::parse_tag;
use crate::domain::model::{Millis, Mode};
use crate::ports::{CountrySighting, StoreError, UsageQuery, UsageRow, UsageStore};

/// Rows per INSERT on SQLite (8 values each: well under its parameter limit).
const CHUNK: usize = 100;

/// The `n`-th (1-based) placeholder.
fn ph(backend: DbBackend, n: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    }
}

fn stmt(backend: DbBackend, sql: String, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(backend, sql, values)
}

/// The row's conflict key (the primary key of `usage_minutes`).
fn conflict_key(r: &UsageRow) -> (Millis, &str, &str, &str, &str) {
    (
        r.minute,
        r.key_id.as_str(),
        r.permission.as_str(),
        r.outcome.as_str(),
        r.country.as_str(),
    )
}

/// The rows in conflict key order with equal keys summed into one (one
/// INSERT may not touch a row twice; the order is the one row locks are
/// taken in). The outcome worker hands out a round's rows so already, and
/// then they are used as they are, neither sorted nor copied again.
fn merged(rows: &[UsageRow]) -> Cow<'_, [UsageRow]> {
    if rows
        .windows(2)
        .all(|w| conflict_key(&w[0]) < conflict_key(&w[1]))
    {
        return Cow::Borrowed(rows);
    }
    let mut by_key: BTreeMap<(Millis, &str, &str, &str, &str), UsageRow> = BTreeMap::new();
    for r in rows {
        by_key
            .entry(conflict_key(r))
            .and_modify(|m| m.count += r.count)
            .or_insert_with(|| r.clone());
    }
    Cow::Owned(by_key.into_values().collect())
}

const UPSERT_CONFLICT: &str = "ON CONFLICT (minute, key_id, permission, outcome, country) \
     DO UPDATE SET count = usage_minutes.count + excluded.count";

/// Rows per statement on PostgreSQL, where a chunk is one array a column.
const PG_CHUNK: usize = 1000;

/// One chunk on PostgreSQL: a column an array, so that the statement's text
/// (and the prepared statement the connection keeps) is the same whatever
/// the chunk's size, and it is parsed once per connection, not per flush.
fn postgres_upsert(chunk: &[UsageRow]) -> Statement {
    let texts = |f: fn(&UsageRow) -> &str| -> Value {
        chunk
            .iter()
            .map(|r| f(r).to_owned())
            .collect::<Vec<String>>()
            .into()
    };
    let values: Vec<Value> = vec![
        chunk
            .iter()
            .map(|r| r.minute)
            .collect::<Vec<Millis>>()
            .into(),
        texts(|r| &r.key_id),
        texts(|r| &r.account_id),
        texts(|r| r.mode.tag()),
        texts(|r| &r.permission),
        texts(|r| &r.outcome),
        texts(|r| &r.country),
        chunk.iter().map(|r| r.count).collect::<Vec<i64>>().into(),
    ];
    let sql = format!(
        "INSERT INTO usage_minutes \
         (minute, key_id, account_id, mode, permission, outcome, country, count) \
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], \
         $5::text[], $6::text[], $7::text[], $8::bigint[]) {UPSERT_CONFLICT}"
    );
    stmt(DbBackend::Postgres, sql, values)
}

/// One chunk on SQLite: a placeholder a value.
fn sqlite_upsert(chunk: &[UsageRow]) -> Statement {
    let backend = DbBackend::Sqlite;
    let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 8);
    let mut tuples = Vec::with_capacity(chunk.len());
    for (i, r) in chunk.iter().enumerate() {
        let cols: Vec<String> = (1..=8).map(|c| ph(backend, i * 8 + c)).collect();
        tuples.push(format!("({})", cols.join(", ")));
        values.extend([
            r.minute.into(),
            r.key_id.clone().into(),
            r.account_id.clone().into(),
            r.mode.tag().into(),
            r.permission.clone().into(),
            r.outcome.clone().into(),
            r.country.clone().into(),
            r.count.into(),
        ]);
    }
    let sql = format!(
        "INSERT INTO usage_minutes \
         (minute, key_id, account_id, mode, permission, outcome, country, count) \
         VALUES {} {UPSERT_CONFLICT}",
        tuples.join(", ")
    );
    stmt(backend, sql, values)
}

impl SqlStore {
    async fn query_rows(&self, s: Statement) -> Result<Vec<sea_orm::QueryResult>, StoreError> {
        self.conn()?
            .query_all_raw(s)
            .await
            .map_err(|e| self.fail(e))
    }
}

fn get<T: sea_orm::TryGetable>(row: &sea_orm::QueryResult, col: &str) -> Result<T, StoreError> {
    row.try_get::<T>("", col)
        .map_err(|e| StoreError::Internal(format!("usage row: {col}: {e}")))
}

#[async_trait]
impl UsageStore for SqlStore {
    async fn add_usage(&self, rows: &[UsageRow]) -> Result<(), StoreError> {
        let rows = merged(rows);
        if rows.is_empty() {
            return Ok(());
        }
        let backend = self.db.get_database_backend();
        let tx = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        let statements: Vec<Statement> = if backend == DbBackend::Postgres {
            rows.chunks(PG_CHUNK).map(postgres_upsert).collect()
        } else {
            rows.chunks(CHUNK).map(sqlite_upsert).collect()
        };
        for statement in statements {
            tx.execute_raw(statement).await.map_err(|e| self.fail(e))?;
        }
        tx.commit().await.map_err(|e| self.fail(e))
    }

    async fn usage_series(&self, q: &UsageQuery, limit: u64) -> Result<Vec<UsageRow>, StoreError> {
        let backend = self.db.get_database_backend();
        let (column, subject) = match (&q.key_id, &q.account_id) {
            (Some(k), _) => ("key_id", k.clone()),
            (None, Some(a)) => ("account_id", a.clone()),
            (None, None) => return Ok(Vec::new()),
        };
        let [p1, p2, p3, p4, p5, p6, p7] = [1, 2, 3, 4, 5, 6, 7].map(|n| ph(backend, n));
        // The bucket start: `from` plus whole buckets (integer division).
        let sql = format!(
            "SELECT {p1} + ((minute - {p2}) / {p3}) * {p4} AS bucket, key_id, account_id, mode, \
             permission, outcome, country, CAST(SUM(count) AS BIGINT) AS total FROM usage_minutes \
             WHERE {column} = {p5} AND minute >= {p6} AND minute < {p7} \
             GROUP BY bucket, key_id, account_id, mode, permission, outcome, country \
             ORDER BY bucket, key_id, permission, outcome, country LIMIT {}",
            limit.min(i64::MAX as u64)
        );
        let values: Vec<Value> = vec![
            q.from.into(),
            q.from.into(),
            q.bucket_ms.into(),
            q.bucket_ms.into(),
            subject.into(),
            q.from.into(),
            q.to.into(),
        ];
        let mut out = Vec::new();
        for row in self.query_rows(stmt(backend, sql, values)).await? {
            let key_id: String = get(&row, "key_id")?;
            let mode: String = get(&row, "mode")?;
            out.push(UsageRow {
                minute: get(&row, "bucket")?,
                mode: parse_tag("mode", &key_id, &mode, Mode::from_tag)?,
                key_id,
                account_id: get(&row, "account_id")?,
                permission: get(&row, "permission")?,
                outcome: get(&row, "outcome")?,
                country: get(&row, "country")?,
                count: get(&row, "total")?,
            });
        }
        Ok(out)
    }

    async fn purge_usage(&self, before: Millis, batch: u64) -> Result<u64, StoreError> {
        let backend = self.db.get_database_backend();
        let (p1, p2) = (ph(backend, 1), ph(backend, 2));
        let sql = format!(
            "DELETE FROM usage_minutes WHERE (minute, key_id, permission, outcome, country) IN \
             (SELECT minute, key_id, permission, outcome, country FROM usage_minutes \
              WHERE minute < {p1} ORDER BY minute LIMIT {p2})"
        );
        let batch = i64::try_from(batch).unwrap_or(i64::MAX);
        let done = self
            .conn()?
            .execute_raw(stmt(backend, sql, vec![before.into(), batch.into()]))
            .await
            .map_err(|e| self.fail(e))?;
        Ok(done.rows_affected())
    }

    async fn exercised(&self, key_id: &str) -> Result<Vec<(String, Millis)>, StoreError> {
        let backend = self.db.get_database_backend();
        let sql = format!(
            "SELECT permission, MAX(minute) AS last FROM usage_minutes \
             WHERE key_id = {} AND outcome = 'ALLOWED' AND permission <> '' \
             GROUP BY permission ORDER BY permission",
            ph(backend, 1)
        );
        let rows = self
            .query_rows(stmt(backend, sql, vec![key_id.into()]))
            .await?;
        rows.iter()
            .map(|r| Ok((get(r, "permission")?, get(r, "last")?)))
            .collect()
    }

    async fn permissions_seen(&self, since: Millis) -> Result<Vec<String>, StoreError> {
        let backend = self.db.get_database_backend();
        let sql = format!(
            "SELECT DISTINCT permission FROM usage_minutes \
             WHERE minute >= {} AND outcome = 'ALLOWED' AND permission <> '' ORDER BY permission",
            ph(backend, 1)
        );
        let rows = self
            .query_rows(stmt(backend, sql, vec![since.into()]))
            .await?;
        rows.iter().map(|r| get(r, "permission")).collect()
    }

    async fn key_countries(&self, key_id: &str) -> Result<Vec<CountrySighting>, StoreError> {
        let backend = self.db.get_database_backend();
        let sql = format!(
            "SELECT country, last_seen, alerted_day FROM usage_countries WHERE key_id = {} \
             ORDER BY country",
            ph(backend, 1)
        );
        let rows = self
            .query_rows(stmt(backend, sql, vec![key_id.into()]))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(CountrySighting {
                    country: get(r, "country")?,
                    last_seen: get(r, "last_seen")?,
                    alerted_day: get(r, "alerted_day")?,
                })
            })
            .collect()
    }

    async fn note_country(
        &self,
        key_id: &str,
        country: &str,
        seen_at: Millis,
        alert_day: Option<i64>,
    ) -> Result<bool, StoreError> {
        let backend = self.db.get_database_backend();
        let [p1, p2, p3] = [1, 2, 3].map(|n| ph(backend, n));
        let upsert = format!(
            "INSERT INTO usage_countries (key_id, country, last_seen) VALUES ({p1}, {p2}, {p3}) \
             ON CONFLICT (key_id, country) DO UPDATE SET last_seen = excluded.last_seen \
             WHERE usage_countries.last_seen < excluded.last_seen"
        );
        let conn = self.conn()?;
        conn.execute_raw(stmt(
            backend,
            upsert,
            vec![key_id.into(), country.into(), seen_at.into()],
        ))
        .await
        .map_err(|e| self.fail(e))?;
        let Some(day) = alert_day else {
            return Ok(false);
        };
        let [p1, p2, p3, p4] = [1, 2, 3, 4].map(|n| ph(backend, n));
        // Claimed by exactly one writer: the row lock serialises the updates.
        let claim = format!(
            "UPDATE usage_countries SET alerted_day = {p1} WHERE key_id = {p2} AND country = {p3} \
             AND (alerted_day IS NULL OR alerted_day <> {p4})"
        );
        let done = conn
            .execute_raw(stmt(
                backend,
                claim,
                vec![day.into(), key_id.into(), country.into(), day.into()],
            ))
            .await
            .map_err(|e| self.fail(e))?;
        Ok(done.rows_affected() == 1)
    }

    async fn mark_scope_unused(&self, key_id: &str, at: Millis) -> Result<bool, StoreError> {
        let backend = self.db.get_database_backend();
        let sql = format!(
            "INSERT INTO usage_advice (key_id, scope_unused_at) VALUES ({}, {}) \
             ON CONFLICT (key_id) DO NOTHING",
            ph(backend, 1),
            ph(backend, 2)
        );
        let done = self
            .conn()?
            .execute_raw(stmt(backend, sql, vec![key_id.into(), at.into()]))
            .await
            .map_err(|e| self.fail(e))?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(minute: Millis, key_id: &str, count: i64) -> UsageRow {
        UsageRow {
            minute,
            key_id: key_id.to_owned(),
            account_id: "acc".to_owned(),
            mode: Mode::Test,
            permission: "feedback.read".to_owned(),
            outcome: "ALLOWED".to_owned(),
            country: String::new(),
            count,
        }
    }

    /// Rows already in conflict key order and distinct (as the outcome
    /// worker hands them out) are used as given; others are ordered and
    /// equal keys summed.
    #[test]
    fn rows_are_merged_only_when_they_need_it() {
        let ordered = [
            row(0, "key_a", 1),
            row(0, "key_b", 2),
            row(60_000, "key_a", 3),
        ];
        assert!(matches!(merged(&ordered), Cow::Borrowed(_)));
        let mixed = [
            row(60_000, "key_a", 3),
            row(0, "key_b", 2),
            row(0, "key_b", 5),
        ];
        let out = merged(&mixed);
        assert!(matches!(out, Cow::Owned(_)));
        let got: Vec<(Millis, &str, i64)> = out
            .iter()
            .map(|r| (r.minute, r.key_id.as_str(), r.count))
            .collect();
        assert_eq!(got, [(0, "key_b", 7), (60_000, "key_a", 3)]);
    }
}
