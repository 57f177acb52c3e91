//! Usage bookkeeping (last-used times) can never block or delay a key
//! mutation, and two replicas flushing the same keys never deadlock.
//! PostgreSQL only: row locks and deadlocks are what is being tested.

use std::sync::Arc;
use std::time::Duration;

use latchkey::crypto::secret::Secret;
use latchkey::pb;
use latchkey::ports::{Clock, Store};
use latchkey::store::SqlStore;
use pb::Reason;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement, TransactionTrait};

use crate::common::{Backend, TestDb, TestServer, eventually, reason};

async fn last_used(s: &TestServer, id: &str) -> Option<i64> {
    s.keys()
        .get_key(s.admin(pb::GetKeyRequest { id: id.to_owned() }))
        .await
        .unwrap()
        .into_inner()
        .last_used_at
        .map(|t| t.seconds)
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap()
}

/// A flush that is stuck holding a key's usage row (here: a transaction the
/// test keeps open on it) delays neither that key's revocation on another
/// replica nor the flushing replica's other keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_usage_row_blocks_no_mutation_and_no_other_flush() {
    let db = Arc::new(TestDb::new(Backend::Postgres).await);
    let a = TestServer::start_on(db.clone(), |c| c.cache.ttl_seconds = 3600, None).await;
    let b = TestServer::start_on(db.clone(), |_| {}, None).await;
    let (busy, busy_secret) = a.simple_key("PRIME", &["feedback.read"]).await;
    let (other, other_secret) = a.simple_key("PRIME", &["feedback.read"]).await;
    assert!(a.check_perm(&busy_secret, "feedback.read").await.allowed);
    eventually("the first last-used time", || async {
        last_used(&a, &busy.id).await
    })
    .await;

    let sql = Database::connect(&db.url).await.unwrap();
    let held = sql.begin().await.unwrap();
    held.execute_unprepared(&format!(
        "SELECT * FROM key_usage WHERE key_id = '{}' FOR UPDATE",
        busy.id
    ))
    .await
    .unwrap();

    // Later uses, far enough apart that the flusher wants to write both rows.
    a.clock.advance_secs(600);
    assert!(a.check_perm(&busy_secret, "feedback.read").await.allowed);
    assert!(a.check_perm(&other_secret, "feedback.read").await.allowed);
    // The other key was never used before: its first time lands although
    // the flush meets the held row on the way.
    eventually(
        "the other key's time to be flushed past the held row",
        || async { last_used(&a, &other.id).await },
    )
    .await;

    // The mutation does not wait for the usage row: it is answered while
    // the row is still held. (The timeout only turns a hang into a failure.)
    tokio::time::timeout(
        Duration::from_secs(30),
        b.keys().revoke_key(b.admin(pb::RevokeKeyRequest {
            id: busy.id.clone(),
        })),
    )
    .await
    .expect("the revocation waited for the usage row")
    .unwrap();
    eventually("a to deny the revoked key", || async {
        (reason(&a.check_perm(&busy_secret, "feedback.read").await) == Reason::KeyRevoked)
            .then_some(())
    })
    .await;
    held.rollback().await.unwrap();
    sql.close().await.unwrap();
    a.stop_keep_db().await;
    b.stop().await;
}

/// Two replicas flush overlapping keys in opposite orders, round after round:
/// no flush fails and PostgreSQL counts no deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_flushing_overlapping_keys_do_not_deadlock() {
    let s = TestServer::start(Backend::Postgres).await;
    let account = s.account("PRIME").await;
    let mut ids = Vec::new();
    for _ in 0..60 {
        let (key, _) = s
            .create_key(crate::common::key_request(&account.id, &["feedback.read"]))
            .await;
        ids.push(key.id);
    }
    let url = Secret::new(s.db.url.clone());
    let one = Arc::new(SqlStore::connect(&url).await.unwrap());
    let two = Arc::new(SqlStore::connect(&url).await.unwrap());
    let start = latchkey::ports::SystemClock.now();
    let mut flushes = Vec::new();
    for (n, store) in [one.clone(), two.clone()].into_iter().enumerate() {
        let ids = ids.clone();
        flushes.push(tokio::spawn(async move {
            for round in 0..30_i64 {
                // A minute and more between rounds: every row is written each time.
                let at = start + round * 120_000 + i64::try_from(n).unwrap();
                let mut batch: Vec<(String, i64)> = ids.iter().map(|id| (id.clone(), at)).collect();
                if n == 1 {
                    batch.reverse();
                }
                store.record_key_usage(&batch).await?;
            }
            Ok::<_, latchkey::ports::StoreError>(())
        }));
    }
    for flush in flushes {
        flush.await.unwrap().expect("a flush failed");
    }
    // Backends report their statistics when they end.
    Arc::try_unwrap(one).ok().unwrap().close().await;
    Arc::try_unwrap(two).ok().unwrap().close().await;
    let sql = Database::connect(&s.db.url).await.unwrap();
    let deadlocks = scalar(
        &sql,
        &format!(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = '{}'",
            s.db.pg_name()
        ),
    )
    .await;
    assert_eq!(deadlocks, 0, "PostgreSQL detected deadlocks");
    let written = scalar(
        &sql,
        &format!(
            "SELECT COUNT(*) FROM key_usage WHERE last_used_at >= {}",
            start + 29 * 120_000
        ),
    )
    .await;
    assert_eq!(written, 60, "every key carries a time of the last round");
    sql.close().await.unwrap();
    s.stop().await;
}

/// The flush's update keeps to the index as `key_usage` grows. Its plan is
/// made afresh each time: one that a connection cached while the table was
/// small (a hash join over a sequential scan) would read the whole table
/// for every batch once it holds a million keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_update_follows_the_table_as_it_grows() {
    let s = TestServer::start(Backend::Postgres).await;
    let url = Secret::new(s.db.url.clone());
    let store = SqlStore::connect(&url).await.unwrap();
    let ids: Vec<String> = (0..10).map(|i| format!("key_plan_{i}")).collect();
    let start = latchkey::ports::SystemClock.now();
    let batch = |round: i64| -> Vec<(String, i64)> {
        ids.iter()
            .map(|id| (id.clone(), start + round * 120_000))
            .collect()
    };
    // Many flushes while the table is small: enough for every pooled
    // connection that ran the update to have cached a plan for it.
    for round in 0..20 {
        store.record_key_usage(&batch(round)).await.unwrap();
    }
    let sql = Database::connect(&s.db.url).await.unwrap();
    sql.execute_unprepared(
        "INSERT INTO key_usage (key_id, last_used_at) \
         SELECT 'key_grown_' || i, 0 FROM generate_series(1, 100000) AS i",
    )
    .await
    .unwrap();
    for round in 20..30 {
        store.record_key_usage(&batch(round)).await.unwrap();
    }
    // Backends report their statistics when they end.
    store.close().await;
    let read = scalar(
        &sql,
        "SELECT COALESCE(seq_tup_read, 0) FROM pg_stat_user_tables WHERE relname = 'key_usage'",
    )
    .await;
    assert!(
        read < 100_000,
        "the flush read key_usage sequentially ({read} rows) after it grew"
    );
    let stored = scalar(
        &sql,
        &format!(
            "SELECT COUNT(*) FROM key_usage WHERE last_used_at = {}",
            start + 29 * 120_000
        ),
    )
    .await;
    assert_eq!(stored, 10, "the last round's times are stored");
    sql.close().await.unwrap();
    s.stop().await;
}
