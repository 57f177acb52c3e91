//! Cross-replica cache invalidation over PostgreSQL `LISTEN`/`NOTIFY`: every
//! key, account or rule change sends a notice inside its transaction; each
//! replica's listener hands it to the composition root's [`Invalidations`].

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement};

use super::{INVALIDATION_CHANNEL, ROUTES_CHANGED, SqlStore, map_err};
use crate::crypto::mac::parse_hex32;
use crate::ports::{Invalidations, StoreError};

impl SqlStore {
    /// Listens for invalidations from other replicas (PostgreSQL only) until
    /// the task is aborted. Notices may be missed while the connection is
    /// down, so the whole cache is dropped each time listening (re)starts.
    pub fn spawn_invalidation_listener(
        &self,
        invalidations: Arc<dyn Invalidations>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if !self.is_postgres() {
            return None;
        }
        let pool = self.db.get_postgres_connection_pool().clone();
        Some(tokio::spawn(async move {
            loop {
                let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "cache invalidation listener cannot connect; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if let Err(e) = listener.listen(INVALIDATION_CHANNEL).await {
                    tracing::warn!(error = %e, "LISTEN failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                // Notices sent before LISTEN took effect (at start, or while the
                // connection was down) were missed: start from an empty cache.
                invalidations.all_keys();
                invalidations.routes();
                loop {
                    match listener.try_recv().await {
                        Ok(Some(n)) if n.payload() == ROUTES_CHANGED => invalidations.routes(),
                        Ok(Some(n)) => apply_invalidation(invalidations.as_ref(), n.payload()),
                        // While disconnected, cached entries still age out by their TTL;
                        // the cache is dropped once we are listening again.
                        Ok(None) => {
                            tracing::warn!("cache invalidation connection lost; reconnecting");
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cache invalidation listener failed; reconnecting");
                            break;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }))
    }

    pub(super) async fn notify<C: ConnectionTrait>(
        &self,
        conn: &C,
        payload: &str,
    ) -> Result<(), StoreError> {
        if !self.is_postgres() {
            return Ok(());
        }
        conn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [INVALIDATION_CHANNEL.into(), payload.into()],
        ))
        .await
        .map(|_| ())
        .map_err(map_err)
    }
}

/// A key's hash in hex drops that key; anything else (`*` after an account
/// change, or a payload this version does not understand) drops every key:
/// never a panic, never a stale entry kept.
fn apply_invalidation(invalidations: &dyn Invalidations, payload: &str) {
    match parse_hex32(payload) {
        Some(hash) => invalidations.key(&hash),
        None => invalidations.all_keys(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);

    impl Invalidations for Seen {
        fn key(&self, hash: &[u8; 32]) {
            self.0.lock().unwrap().push(crate::crypto::hex(hash));
        }
        fn all_keys(&self) {
            self.0.lock().unwrap().push("all".into());
        }
        fn routes(&self) {
            self.0.lock().unwrap().push("routes".into());
        }
    }

    #[test]
    fn payloads_map_to_invalidations_and_junk_drops_everything() {
        let seen = Seen::default();
        let hash = "ab".repeat(32);
        for payload in [
            hash.as_str(),
            "*",
            "",
            "zz",
            "é",
            &"a".repeat(63),
            &"ab".repeat(33),
        ] {
            apply_invalidation(&seen, payload);
        }
        let got = seen.0.into_inner().unwrap();
        assert_eq!(got[0], hash);
        assert!(got[1..].iter().all(|s| s == "all"), "{got:?}");
    }

    proptest::proptest! {
        /// Whatever arrives on the channel (another version's payload, a
        /// hand-sent NOTIFY), the listener never panics: a payload it does
        /// not understand drops every key.
        #[test]
        fn no_payload_panics_the_listener(payload in "\\PC{0,80}|[0-9a-fA-F]{64}") {
            let seen = Seen::default();
            apply_invalidation(&seen, &payload);
            let got = seen.0.into_inner().unwrap();
            proptest::prop_assert_eq!(got.len(), 1);
        }
    }
}
