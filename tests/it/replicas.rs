//! Several replicas on one PostgreSQL database: a revocation on one reaches
//! every other replica's cache through LISTEN/NOTIFY, well before the TTL.

use std::sync::Arc;

use latchkey::pb;
use pb::Reason;

use crate::common::{Backend, TestDb, TestServer, eventually, reason};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_other_replicas() {
    let db = Arc::new(TestDb::new(Backend::Postgres).await);
    // A cache TTL far longer than the test: only the notification can do it.
    let a = TestServer::start_on(db.clone(), |c| c.cache.ttl_seconds = 3600, None).await;
    let b = TestServer::start_on(db, |c| c.cache.ttl_seconds = 3600, None).await;
    let (key, secret) = a.simple_key("PRIME", &["feedback.read"]).await;
    assert!(
        b.check_perm(&secret, "feedback.read").await.allowed,
        "cached on b"
    );
    a.keys()
        .revoke_key(a.admin(pb::RevokeKeyRequest { id: key.id.clone() }))
        .await
        .unwrap();
    eventually("b to see the revocation", || async {
        (reason(&b.check_perm(&secret, "feedback.read").await) == Reason::KeyRevoked).then_some(())
    })
    .await;
    a.stop_keep_db().await;
    b.stop().await;
}
