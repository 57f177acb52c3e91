//! The cold lookup's batch statement: many hashes, one statement, the same
//! answers as one lookup each (keys, their accounts, the accounts' stores),
//! and a Check burst of never-seen keys served through it.

use latchkey::crypto::{keyfmt, secret::Secret, sha256};
use latchkey::pb;
use latchkey::ports::Store;
use latchkey::store::SqlStore;

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
