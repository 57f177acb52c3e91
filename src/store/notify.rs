//! Cross-replica cache invalidation over PostgreSQL `LISTEN`/`NOTIFY`: every
//! key, account or rule change sends a notice inside its transaction; each
//! replica's listener hands it to the composition root's [`Invalidations`].
//!
//! A notice is `<what>@<unix millis>`: what changed (a key's hash in hex,
//! `*`, `routes`) and when the sender committed it, from which each
//! receiver measures the notification lag (`latchkey_notification_lag_seconds`;
//! across hosts it includes their clock difference). A notice without the
//! time (an older version's) is still applied; anything this version does
//! not understand drops every cached key.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement};

use super::{INVALIDATION_CHANNEL, ROUTES_CHANGED, SqlStore, map_err};
use crate::crypto::mac::parse_hex32;
use crate::ports::{Clock, Invalidations, StoreError, SystemClock};
use crate::telemetry::metrics::metrics;

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
            let mut listened_before = false;
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
                if listened_before {
                    metrics().notification_reconnect();
                    metrics().cache_dropped_after_lost_notifications();
                    tracing::warn!(
                        "cache invalidation listener reconnected: the key cache and route rules \
                         were dropped, since notices sent meanwhile were missed"
                    );
                }
                listened_before = true;
                loop {
                    match listener.try_recv().await {
                        Ok(Some(n)) => {
                            let notice = Notice::parse(n.payload());
                            if let Some(sent) = notice.sent_at {
                                metrics().notification_lag(lag(sent, SystemClock.now()));
                            }
                            apply_invalidation(invalidations.as_ref(), notice.what);
                        }
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
        // Sent just before the commit: the receiver's lag includes the commit.
        let payload = format!("{payload}@{}", SystemClock.now());
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

/// One notice, split into what changed and (when the sender said) when.
#[derive(Debug, PartialEq, Eq)]
struct Notice<'a> {
    what: &'a str,
    sent_at: Option<i64>,
}

impl<'a> Notice<'a> {
    /// `<what>@<millis>`; without a well-formed time suffix the whole
    /// payload is `what` (an older sender's notice, or junk).
    fn parse(payload: &'a str) -> Self {
        if let Some((what, at)) = payload.rsplit_once('@')
            && !at.is_empty()
            && at.len() <= 15
            && at.bytes().all(|b| b.is_ascii_digit())
            && let Ok(sent) = at.parse::<i64>()
        {
            return Self {
                what,
                sent_at: Some(sent),
            };
        }
        Self {
            what: payload,
            sent_at: None,
        }
    }
}

/// Sender's time to ours; a sender whose clock runs ahead reads as no lag.
fn lag(sent: i64, now: i64) -> Duration {
    Duration::from_millis(u64::try_from(now.saturating_sub(sent)).unwrap_or(0))
}

/// A key's hash in hex drops that key; `routes` reloads the route rules;
/// anything else (`*` after an account change, or a payload this version
/// does not understand) drops every key: never a panic, never a stale
/// entry kept.
fn apply_invalidation(invalidations: &dyn Invalidations, what: &str) {
    if what == ROUTES_CHANGED {
        return invalidations.routes();
    }
    match parse_hex32(what) {
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

    #[test]
    fn notices_carry_their_send_time_and_old_ones_still_apply() {
        let hash = "ab".repeat(32);
        let stamped = format!("{hash}@1764600000000");
        assert_eq!(
            Notice::parse(&stamped),
            Notice {
                what: &hash,
                sent_at: Some(1_764_600_000_000)
            }
        );
        assert_eq!(Notice::parse("routes@5").what, "routes");
        assert_eq!(Notice::parse("*@5").what, "*");
        // An older replica's notice: no time, still applied as before.
        assert_eq!(
            Notice::parse(&hash),
            Notice {
                what: &hash,
                sent_at: None
            }
        );
        for junk in [
            "x@",
            "x@-5",
            "x@1e9",
            "x@9999999999999999999",
            "@",
            "x@1@",
            "routes@ 1",
        ] {
            assert_eq!(Notice::parse(junk).sent_at, None, "{junk}");
        }
        let seen = Seen::default();
        for payload in [stamped.as_str(), "routes@5", "*@5", "zz@5", "routes"] {
            apply_invalidation(&seen, Notice::parse(payload).what);
        }
        assert_eq!(
            seen.0.into_inner().unwrap(),
            [hash.as_str(), "routes", "all", "all", "routes"]
        );
        assert_eq!(lag(1_000, 1_250), Duration::from_millis(250));
        assert_eq!(lag(2_000, 1_000), Duration::ZERO);
    }

    proptest::proptest! {
        /// Whatever arrives on the channel (another version's payload, a
        /// hand-sent NOTIFY), the listener never panics: a payload it does
        /// not understand drops every key.
        #[test]
        fn no_payload_panics_the_listener(payload in "\\PC{0,80}|[0-9a-fA-F]{64}") {
            let seen = Seen::default();
            apply_invalidation(&seen, Notice::parse(&payload).what);
            let got = seen.0.into_inner().unwrap();
            proptest::prop_assert_eq!(got.len(), 1);
        }
    }
}
