//! Usage analytics as callers read them (`UsageService.GetUsage`): the
//! per-minute counts the outcome worker wrote, summed into minute, hour or
//! day buckets; and their retention (`usage.retention_days`), purged in
//! small batches so that no purge holds a long transaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::error::{Error, Result};
use super::model::Millis;
use crate::ports::{Clock, UsageQuery, UsageStore};

const DAY_MS: Millis = 86_400_000;
/// Most buckets one series may span.
pub const MAX_BUCKETS: i64 = 10_000;
/// Most rows one series returns (buckets × keys × permissions × outcomes).
const MAX_ROWS: u64 = 100_000;
/// Rows deleted per purge statement.
pub const PURGE_BATCH: u64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Minute,
    Hour,
    Day,
}

impl Granularity {
    pub fn millis(self) -> Millis {
        match self {
            Granularity::Minute => 60_000,
            Granularity::Hour => 3_600_000,
            Granularity::Day => DAY_MS,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageSubject {
    Key(String),
    Account(String),
}

/// One bucket of one key and permission.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsagePoint {
    pub start: Millis,
    pub key_id: String,
    pub permission: String,
    pub allowed: i64,
    /// Denials by reason code.
    pub denied: BTreeMap<String, i64>,
    /// Requests by source country (ISO code), when a GeoIP database is configured.
    pub countries: BTreeMap<String, i64>,
}

pub struct UsageReports {
    store: Arc<dyn UsageStore>,
    clock: Arc<dyn Clock>,
    retention_days: i64,
}

impl UsageReports {
    pub fn new(store: Arc<dyn UsageStore>, clock: Arc<dyn Clock>, retention_days: i64) -> Self {
        Self {
            store,
            clock,
            retention_days,
        }
    }

    pub async fn series(
        &self,
        subject: UsageSubject,
        from: Millis,
        to: Millis,
        granularity: Granularity,
    ) -> Result<Vec<UsagePoint>> {
        if to <= from {
            return Err(Error::invalid("to", "must be after `from`"));
        }
        let bucket = granularity.millis();
        let buckets = (to - from + bucket - 1) / bucket;
        if buckets > MAX_BUCKETS {
            return Err(Error::invalid(
                "granularity",
                format!(
                    "the range spans {buckets} buckets; at most {MAX_BUCKETS} (choose a coarser granularity or a shorter range)"
                ),
            ));
        }
        let (key_id, account_id) = match subject {
            UsageSubject::Key(k) => (Some(k), None),
            UsageSubject::Account(a) => (None, Some(a)),
        };
        let query = UsageQuery {
            key_id,
            account_id,
            from,
            to,
            bucket_ms: bucket,
        };
        let rows = self.store.usage_series(&query, MAX_ROWS + 1).await?;
        if rows.len() as u64 > MAX_ROWS {
            return Err(Error::invalid(
                "from",
                "the range holds too much usage for one answer; ask for a shorter range or one key",
            ));
        }
        let mut points: BTreeMap<(Millis, String, String), UsagePoint> = BTreeMap::new();
        for row in rows {
            let point = points
                .entry((row.minute, row.key_id.clone(), row.permission.clone()))
                .or_insert_with(|| UsagePoint {
                    start: row.minute,
                    key_id: row.key_id,
                    permission: row.permission,
                    ..UsagePoint::default()
                });
            if row.outcome == "ALLOWED" {
                point.allowed += row.count;
            } else {
                *point.denied.entry(row.outcome).or_insert(0) += row.count;
            }
            if !row.country.is_empty() {
                *point.countries.entry(row.country).or_insert(0) += row.count;
            }
        }
        Ok(points.into_values().collect())
    }

    /// Deletes usage older than the retention, batch by batch; how many rows.
    /// A crash between batches loses nothing inside the window.
    pub async fn purge(&self) -> Result<u64> {
        let before = self.clock.now() - self.retention_days * DAY_MS;
        let mut total = 0;
        loop {
            let n = self.store.purge_usage(before, PURGE_BATCH).await?;
            total += n;
            if n < PURGE_BATCH {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }
}
