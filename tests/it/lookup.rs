//! The cold lookup's batch statement: many hashes, one statement, the same
//! answers as one lookup each (keys, their accounts, the accounts' stores),
//! and a Check burst of never-seen keys served through it.

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use latchkey::crypto::{keyfmt, secret::Secret, sha256};
use latchkey::pb;
use latchkey::ports::Store;
use latchkey::store::{SqlStore, StoreOptions};

use crate::backend_tests;
use crate::common::{Backend, TestServer, key_request, reason};

backend_tests!(
    a_batch_answers_each_hash_as_one_lookup_would,
    a_burst_of_new_keys_is_answered_through_batches
);

async fn a_batch_answers_each_hash_as_one_lookup_would(backend: Backend) {
    let s = TestServer::start(backend).await;
    let with_stores = s.account("PRIME").await;
    let plain = s.account("PRIME").await;
    for store in ["store-b", "store-a", "store-c"] {
        s.accounts()
            .add_store(s.admin(pb::AddStoreRequest {
                account_id: with_stores.id.clone(),
                store_id: store.into(),
            }))
            .await
            .unwrap();
    }
    let mut hashes = Vec::new();
    for account in [&with_stores, &plain, &with_stores] {
        let (_, secret) = s
            .create_key(key_request(&account.id, &["feedback.read"]))
            .await;
        hashes.push(sha256(secret.as_bytes()));
    }
    let unknown = [7u8; 32];
    let store = SqlStore::connect(&Secret::new(s.db.url.clone()))
        .await
        .unwrap();
    // Unknown and repeated hashes among them, in no particular order.
    let asked = [hashes[2], unknown, hashes[0], hashes[1], hashes[0]];
    let batch = store.find_keys_by_hashes(&asked).await;
    assert_eq!(batch.len(), asked.len());
    for (hash, found) in asked.iter().zip(batch) {
        let one = store.find_key_by_hash(hash).await.unwrap();
        let found = found.unwrap();
        assert_eq!(found, one, "the batch and the single lookup disagree");
        if *hash == unknown {
            assert!(found.is_none());
            continue;
        }
        let (key, account) = found.unwrap();
        assert_eq!(key.key_hash, *hash);
        assert_eq!(key.account_id, account.id);
        if account.id == with_stores.id {
            assert_eq!(account.store_ids, ["store-a", "store-b", "store-c"]);
        } else {
            assert!(account.store_ids.is_empty());
        }
    }
    assert!(store.find_keys_by_hashes(&[]).await.is_empty());
    store.close().await;
    s.stop().await;
}

/// More never-seen keys at once than query places: every one is allowed,
/// and one unknown among them is told apart.
async fn a_burst_of_new_keys_is_answered_through_batches(backend: Backend) {
    let s = TestServer::start(backend).await;
    let account = s.account("PRIME").await;
    let mut secrets = Vec::new();
    for _ in 0..40 {
        let (_, secret) = s
            .create_key(key_request(&account.id, &["feedback.read"]))
            .await;
        secrets.push(secret);
    }
    // Well formed, checksum and all, but no key has it.
    let wrong = keyfmt::generate("lk", "test", "sk")
        .unwrap()
        .expose()
        .clone();
    let checks = secrets.iter().chain([&wrong]).map(|secret| {
        let s = &s;
        async move { s.check_perm(secret, "feedback.read").await }
    });
    let answers = futures::future::join_all(checks).await;
    let (unknown, known) = answers.split_last().unwrap();
    assert!(known.iter().all(|a| a.allowed), "{known:?}");
    assert_eq!(reason(unknown), pb::Reason::CredentialUnknown);
    s.stop().await;
}

/// Where the PostgreSQL `url` points.
fn upstream(url: &str) -> SocketAddr {
    let url = url::Url::parse(url).unwrap();
    (url.host_str().unwrap(), url.port().unwrap_or(5432))
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap()
}

/// `url` pointed at `addr` instead, its connections named `application_name`.
fn via(url: &str, addr: SocketAddr, application_name: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_host(Some(&addr.ip().to_string())).unwrap();
    url.set_port(Some(addr.port())).unwrap();
    url.query_pairs_mut()
        .append_pair("application_name", application_name);
    url.into()
}

/// A server on PostgreSQL with one key, and the key's hash.
async fn one_key() -> (TestServer, [u8; 32]) {
    let s = TestServer::start(Backend::Postgres).await;
    let account = s.account("PRIME").await;
    let (_, secret) = s
        .create_key(key_request(&account.id, &["feedback.read"]))
        .await;
    (s, sha256(secret.as_bytes()))
}

/// A pool of two, both kept open: the held connections are taken from it.
fn two_connections() -> StoreOptions {
    StoreOptions {
        max_connections: 2,
        min_connections: 2,
        ..StoreOptions::default()
    }
}

/// A cold lookup on PostgreSQL is one round trip: its connection is not
/// pinged as the pool hands it out and again as it takes it back (three
/// round trips per statement, each a wake-up of the database).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_lookup_on_postgres_is_one_round_trip() {
    let (s, hash) = one_key().await;
    let proxy = Proxy::start(upstream(&s.db.url));
    let url = via(&s.db.url, proxy.addr, "lookup-round-trips");
    let options = two_connections();
    let store = SqlStore::connect_with(&Secret::new(url), options)
        .await
        .unwrap();
    // The first lookups take their connection, and the pool opens others.
    for _ in 0..2 {
        assert!(store.find_key_by_hash(&hash).await.unwrap().is_some());
    }
    let before = proxy.quiet().await;
    const LOOKUPS: usize = 20;
    for i in 0..LOOKUPS {
        let found = if i % 2 == 0 {
            store.find_key_by_hash(&hash).await.unwrap()
        } else {
            store.find_keys_by_hashes(&[hash]).await.remove(0).unwrap()
        };
        assert_eq!(found.unwrap().0.key_hash, hash);
    }
    // With whatever the pool would still send for them (its ping on release).
    let flights = proxy.quiet().await - before;
    assert!(
        flights <= LOOKUPS + 2,
        "{flights} round trips for {LOOKUPS} lookups"
    );
    store.close().await;
    s.stop().await;
}

/// Connections that lookups keep out of the pool, ended under a live store
/// (an administrator, a proxy's restart): the next lookup is answered all
/// the same, whether the connection was just used or had sat unused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_connection_ended_under_the_store_fails_no_lookup() {
    use sea_orm::{ConnectionTrait, Database, Statement};

    let (s, hash) = one_key().await;
    let url = via(&s.db.url, upstream(&s.db.url), "ended-lookups");
    let options = two_connections();
    let store = SqlStore::connect_with(&Secret::new(url), options)
        .await
        .unwrap();
    let admin = Database::connect(&crate::common::postgres_admin_url())
        .await
        .unwrap();
    let end_all = || async {
        let ended = admin
            .query_all_raw(Statement::from_string(
                admin.get_database_backend(),
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
                 WHERE application_name = 'ended-lookups'",
            ))
            .await
            .unwrap();
        assert!(!ended.is_empty());
    };
    for pause_ms in [0, 1200] {
        assert!(store.find_key_by_hash(&hash).await.unwrap().is_some());
        assert!(store.find_keys_by_hashes(&[hash]).await[0].is_ok());
        end_all().await;
        tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
        let one = store.find_key_by_hash(&hash).await;
        assert!(matches!(one, Ok(Some(_))), "after {pause_ms} ms: {one:?}");
        let many = store.find_keys_by_hashes(&[hash, hash]).await;
        assert!(
            many.iter().all(|found| matches!(found, Ok(Some(_)))),
            "after {pause_ms} ms: {many:?}"
        );
    }
    store.close().await;
    admin.close().await.unwrap();
    s.stop().await;
}

/// Held lookup connections that stop answering (a NAT or a proxy dropped
/// them without a reset) are not waited on for the minutes TCP takes to
/// give up: one that went silent while unused is found out by a ping within
/// the acquire timeout, one that goes silent under a statement is given up
/// a second after the statement timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_connection_that_stopped_answering_is_not_waited_on() {
    use std::time::Duration;

    let (s, hash) = one_key().await;
    let proxy = Proxy::start(upstream(&s.db.url));
    let url = via(&s.db.url, proxy.addr, "silent-lookups");
    let options = StoreOptions {
        acquire_timeout: Duration::from_millis(300),
        statement_timeout: Duration::from_millis(500),
        ..two_connections()
    };
    // Silent while unused for longer than a held connection is trusted
    // without a ping; then silent at once, under the next statement.
    for unused in [Duration::from_millis(1200), Duration::ZERO] {
        // A store of its own: its connections are new, so forwarded.
        let store = SqlStore::connect_with(&Secret::new(url.clone()), options)
            .await
            .unwrap();
        assert!(store.find_key_by_hash(&hash).await.unwrap().is_some());
        // The pool's replacement of the connection the lookup took is open
        // (else it might open after the freeze and answer).
        proxy.quiet().await;
        proxy.freeze();
        tokio::time::sleep(unused).await;
        let answer = tokio::time::timeout(Duration::from_secs(10), store.find_key_by_hash(&hash))
            .await
            .unwrap_or_else(|_| panic!("unused for {unused:?}: the lookup waited"));
        // The pool's connections stopped answering too (its ping on
        // acquire times out): denied as unavailable.
        assert!(
            matches!(answer, Err(latchkey::ports::StoreError::Unavailable(_))),
            "unused for {unused:?}: {answer:?}"
        );
        drop(store);
    }
    s.stop().await;
}

/// A TCP proxy in front of PostgreSQL. It counts what clients send (one
/// read per flight of messages, so one per round trip a client makes), and
/// can stop forwarding on the connections it has, as a NAT or a proxy that
/// dropped them without a reset would, while it forwards new ones.
struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    flights: AtomicUsize,
    accepted: AtomicUsize,
    /// Connections accepted before this many are no longer forwarded.
    frozen_below: AtomicUsize,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let server = TcpStream::connect(upstream).unwrap();
                for s in [&client, &server] {
                    s.set_nodelay(true).unwrap();
                }
                let number = accepting.accepted.fetch_add(1, Ordering::SeqCst);
                let (client2, server2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (up, down) = (accepting.clone(), accepting.clone());
                std::thread::spawn(move || pipe(client, server, &up, number, true));
                std::thread::spawn(move || pipe(server2, client2, &down, number, false));
            }
        });
        Self { addr, shared }
    }

    fn flights(&self) -> usize {
        self.shared.flights.load(Ordering::SeqCst)
    }

    /// The flights so far, once clients have sent nothing for 300 ms (the
    /// pool opening a connection in the background is done).
    async fn quiet(&self) -> usize {
        let mut seen = self.flights();
        for _ in 0..100 {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let now = self.flights();
            if now == seen {
                return now;
            }
            seen = now;
        }
        panic!("clients kept sending for 30 s");
    }

    /// The connections open now stop forwarding, both ways, and stay open.
    fn freeze(&self) {
        let accepted = self.shared.accepted.load(Ordering::SeqCst);
        self.shared.frozen_below.store(accepted, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` (counting reads if `upstream`) until `from` ends;
/// then ends `to`. Connection `number`'s data is dropped once it is frozen.
fn pipe(mut from: TcpStream, mut to: TcpStream, shared: &Shared, number: usize, upstream: bool) {
    use std::io::{Read, Write};
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        if number < shared.frozen_below.load(Ordering::SeqCst) {
            continue;
        }
        if upstream {
            shared.flights.fetch_add(1, Ordering::SeqCst);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}
