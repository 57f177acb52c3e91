//! The PostgreSQL pool is opened whole at start and kept whole: a connection
//! opened on a call's path under load cost ~90 ms (TLS handshake, two
//! delayed ACKs), and every cold lookup queued behind it stalled with it.

use latchkey::crypto::secret::Secret;
use latchkey::store::{SqlStore, StoreOptions};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

use crate::common::{Backend, TestDb, eventually, postgres_admin_url};

/// Backends connected to `db` as the server sees them, from outside.
async fn backends(admin: &DatabaseConnection, db: &str) -> i64 {
    let row = admin
        .query_one_raw(Statement::from_string(
            admin.get_database_backend(),
            format!("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = '{db}'"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// A store on `url` with a pool of `max` connections, `min` kept open.
async fn connect(url: &str, max: u32, min: u32) -> SqlStore {
    let options = StoreOptions {
        max_connections: max,
        min_connections: min,
        ..StoreOptions::default()
    };
    SqlStore::connect_with(&Secret::new(url.to_owned()), options)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_is_opened_whole_at_start() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = connect(&db.url, 6, 6).await;
    // Open when connect returns, not on the first calls that need them.
    assert_eq!(store.pool_connections(), 6);
    let admin = Database::connect(&postgres_admin_url()).await.unwrap();
    assert_eq!(backends(&admin, db.pg_name()).await, 6);
    store.close().await;
    admin.close().await.unwrap();
    db.drop_database().await;
}

/// A one-shot command, or a small pool floor, opens only what it uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_floor_below_the_maximum_opens_only_the_floor() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = connect(&db.url, 6, 2).await;
    // sqlx's own background opening of the floor may race the warm-up by
    // one connection; never the whole pool.
    let open = store.pool_connections();
    assert!((2..=3).contains(&open), "{open} connections open");
    store.close().await;
    db.drop_database().await;
}

/// Back from an outage, the pool is opened whole again by the health ping
/// that finds the store back, not one connection at a time by the load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_the_pool_is_opened_whole_again() {
    use latchkey::ports::Store;

    let pg = crate::throwaway::ThrowawayPg::start();
    let store = connect(&pg.url, 5, 5).await;
    assert_eq!(store.pool_connections(), 5);
    pg.crash();
    // The health loop's pings while the store is down; each connection
    // they find dead is dropped.
    eventually("the pool to drop its dead connections", || async {
        assert!(store.ping().await.is_err(), "the store is down");
        (store.pool_connections() == 0).then_some(())
    })
    .await;
    pg.start_again();
    eventually("the store to answer again", || async {
        store.ping().await.ok()
    })
    .await;
    assert_eq!(store.pool_connections(), 5);
    store.close().await;
}

/// Backends the database ends while it stays up (an administrator, a proxy
/// restart) are found dead and replaced by the next health ping, not by the
/// calls that would otherwise meet them one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_ended_under_a_live_store_are_replaced_by_the_health_ping() {
    use latchkey::ports::Store;

    let db = TestDb::new(Backend::Postgres).await;
    let store = connect(&db.url, 5, 5).await;
    let admin = Database::connect(&postgres_admin_url()).await.unwrap();
    let pids = |admin: &DatabaseConnection| {
        let sql = format!(
            "SELECT pid FROM pg_stat_activity WHERE datname = '{}' ORDER BY pid",
            db.pg_name()
        );
        let admin = admin.clone();
        async move {
            admin
                .query_all_raw(Statement::from_string(admin.get_database_backend(), sql))
                .await
                .unwrap()
                .iter()
                .map(|r| r.try_get::<i32>("", "pid").unwrap())
                .collect::<Vec<_>>()
        }
    };
    let before = pids(&admin).await;
    assert_eq!(before.len(), 5);
    admin
        .execute_raw(Statement::from_string(
            admin.get_database_backend(),
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
                db.pg_name()
            ),
        ))
        .await
        .unwrap();
    eventually("the backends to end", || async {
        pids(&admin).await.is_empty().then_some(())
    })
    .await;
    store.ping().await.unwrap();
    eventually("five new backends", || async {
        let now = pids(&admin).await;
        (now.len() == 5).then_some(now)
    })
    .await
    .iter()
    .for_each(|pid| assert!(!before.contains(pid), "backend {pid} survived"));
    assert_eq!(store.pool_connections(), 5);
    store.close().await;
    admin.close().await.unwrap();
    db.drop_database().await;
}
