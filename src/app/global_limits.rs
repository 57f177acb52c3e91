//! Rate limits shared across replicas through Redis: every
//! `sync_interval` the counters this replica moved are added to their
//! global TATs in one pipelined batch (a small Lua script per counter, so
//! each addition is atomic), and the local cells move to the global state.
//! Redis unreachable → each replica enforces `limit ÷ replicas` (a log
//! line and `/readyz` say so) until a batch succeeds again.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::watch;

use crate::config::GlobalLimits;
use crate::domain::limits::{Limiter, Quota, Space, StrictCounters};
use crate::http::{LimitsMode, Readiness};
use crate::telemetry::metrics::{LimitMode, metrics};

/// Adds ARGV[2] µs to the TAT in KEYS[1] (from at least now, ARGV[1] µs)
/// and keeps it ARGV[3] ms past its end. Microseconds stay exact in Lua's
/// doubles (< 2⁵³ for centuries).
const ADD_SCRIPT: &str = r"
local now = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
tat = tat + tonumber(ARGV[2])
local ttl = math.floor((tat - now) / 1000) + tonumber(ARGV[3])
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', ttl)
return string.format('%.0f', tat)
";

/// Strict mode's GCRA step: KEYS[1] the TAT (µs); ARGV now, the cost's
/// advance and the tolerance (µs), and the idle TTL slack (ms). Returns
/// {allowed (0/1), the TAT before the step}.
const TAKE_SCRIPT: &str = r"
local now = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local new = tat + tonumber(ARGV[2])
if new - now <= tonumber(ARGV[3]) then
  local ttl = math.floor((new - now) / 1000) + tonumber(ARGV[4])
  redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', ttl)
  return {1, string.format('%.0f', tat)}
end
return {0, string.format('%.0f', tat)}
";

/// Strict mode through Redis.
struct RedisStrict {
    con: ConnectionManager,
    script: redis::Script,
}

#[async_trait::async_trait]
impl StrictCounters for RedisStrict {
    async fn take(
        &self,
        space: Space,
        id: &str,
        quota: &Quota,
        cost: u64,
        now: u64,
    ) -> Result<(bool, u64), ()> {
        let mut con = self.con.clone();
        let (allowed, tat): (u8, String) = self
            .script
            .key(redis_key(space, id))
            .arg(now / 1000)
            .arg(quota.interval.saturating_mul(cost).div_ceil(1000))
            .arg(quota.tolerance / 1000)
            .arg(1000)
            .invoke_async(&mut con)
            .await
            .map_err(|e| tracing::debug!(error = %e, "redis strict take failed"))?;
        let tat: u64 = tat.parse().map_err(|_| ())?;
        Ok((allowed == 1, tat.saturating_mul(1000)))
    }
}

fn redis_key(space: Space, id: &str) -> String {
    let family = match space {
        Space::Key => "key",
        Space::Descriptor => "descriptor",
        Space::FailedAuth => "failed_auth",
        Space::BadSignature => "bad_signature",
    };
    format!("latchkey:rl:{family}:{id}")
}

/// Connects lazily and in the background: a Redis that is down at start-up
/// leaves the limits per replica until it answers.
pub(super) async fn connect(settings: &GlobalLimits) -> Option<ConnectionManager> {
    let client = match redis::Client::open(settings.redis_url.expose().as_str()) {
        Ok(c) => c,
        Err(e) => {
            // The error names the problem, never the URL (it may carry a password).
            tracing::error!(error = ?e.kind(), "rate_limits.redis_url: cannot be used; limits stay per replica");
            return None;
        }
    };
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(2);
    match ConnectionManager::new_lazy_with_config(client, config) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!(error = ?e.kind(), "redis connection manager failed; limits stay per replica");
            None
        }
    }
}

/// One batch: every pending advance, added in one pipeline.
async fn sync_once(
    limiter: &Limiter,
    con: &mut ConnectionManager,
) -> Result<(), redis::RedisError> {
    let batch = limiter.take_pending();
    if batch.is_empty() {
        // Nothing to send; a PING keeps the connection state honest.
        let _: String = redis::cmd("PING").query_async(con).await?;
        return Ok(());
    }
    let now_us = limiter.now_nanos() / 1000;
    let mut pipe = redis::pipe();
    for p in &batch {
        pipe.cmd("EVAL")
            .arg(ADD_SCRIPT)
            .arg(1)
            .arg(redis_key(p.space, &p.id))
            .arg(now_us)
            .arg(p.advance.div_ceil(1000))
            .arg(p.tolerance / 1_000_000 + 1000);
    }
    let answers: Result<Vec<String>, _> = pipe.query_async(con).await;
    match answers {
        Ok(tats) => {
            for (p, tat) in batch.iter().zip(tats) {
                if let Ok(us) = tat.parse::<u64>() {
                    limiter.apply_global(p.space, &p.id, us.saturating_mul(1000));
                }
            }
            Ok(())
        }
        Err(e) => {
            limiter.restore_pending(batch);
            Err(e)
        }
    }
}

/// Reports the mode on `/readyz` and in `latchkey_rate_limit_mode`.
fn set_mode(readiness: &Readiness, mode: LimitsMode) {
    readiness.set_limits_mode(mode);
    metrics().set_rate_limit_mode(match mode {
        LimitsMode::Local => LimitMode::Local,
        LimitsMode::Global => LimitMode::Global,
        LimitsMode::PerReplica => LimitMode::PerReplica,
    });
}

/// Reconciles until the drain; reports the mode on `/readyz` and logs each change.
pub(super) async fn reconcile(
    limiter: Arc<Limiter>,
    settings: GlobalLimits,
    readiness: Readiness,
    mut drain: watch::Receiver<bool>,
) {
    set_mode(&readiness, LimitsMode::PerReplica);
    let Some(mut con) = connect(&settings).await else {
        return;
    };
    if settings.strict {
        limiter.set_strict(Arc::new(RedisStrict {
            con: con.clone(),
            script: redis::Script::new(TAKE_SCRIPT),
        }));
    }
    let mut ticker = tokio::time::interval(settings.sync_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut logged_down = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = drain.changed() => return,
        }
        // The connection manager's timeouts bound this; a failed batch
        // gives its advances back for the next one.
        let up = match sync_once(&limiter, &mut con).await {
            Ok(()) => true,
            Err(e) => {
                if !logged_down {
                    tracing::warn!(error = %e, "redis request failed");
                }
                false
            }
        };
        let changed = limiter.set_connected(up);
        if up {
            set_mode(&readiness, LimitsMode::Global);
            if changed {
                tracing::info!("redis reachable: rate limits are global across replicas");
            }
            logged_down = false;
        } else {
            set_mode(&readiness, LimitsMode::PerReplica);
            if changed || !logged_down {
                tracing::warn!(
                    replicas = settings.replicas,
                    "redis unreachable: each replica enforces limit / replicas until it answers"
                );
                logged_down = true;
            }
        }
    }
}
