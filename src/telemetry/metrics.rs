//! Latchkey's metrics: one process-wide set of atomics, read by the
//! Prometheus listener (`prometheus.rs`) and by the OTLP exporter (`otlp.rs`).
//!
//! Recording is a relaxed `fetch_add` on a fixed slot: no lock, no
//! allocation, no map lookup. Labels are fixed sets chosen at compile time
//! (the API, the grant, the outcome) or a slot per decision reason, named
//! by the first decision that uses it (this leaf module does not know the
//! domain's reasons). The set is process-wide like the `tracing` dispatcher: a
//! counter is a fact about the process, not configuration.
//!
//! Hooks for the parts other work adds (rate limits, the audit buffer, the
//! webhook outbox, replica notifications) are the `pub` methods at the end;
//! each one is a single atomic operation, safe on any hot path.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Which decision API answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `latchkey.v1.CheckService/Check`.
    Check = 0,
    /// `envoy.service.auth.v3.Authorization/Check`.
    ExtAuthz = 1,
    /// `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`.
    Rls = 2,
    /// `/forward-auth` for nginx, Traefik and Caddy.
    ForwardAuth = 3,
}

impl Api {
    pub const ALL: [Api; 4] = [Api::Check, Api::ExtAuthz, Api::Rls, Api::ForwardAuth];

    pub fn label(self) -> &'static str {
        match self {
            Api::Check => "check",
            Api::ExtAuthz => "ext_authz",
            Api::Rls => "rls",
            Api::ForwardAuth => "forward_auth",
        }
    }
}

/// OAuth2 grants that issue tokens (and the gRPC secret exchange).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    ClientCredentials = 0,
    AuthorizationCode = 1,
    RefreshToken = 2,
    /// `TokenService/ExchangeSecret`: an API key traded for a JWT.
    KeyExchange = 3,
}

impl Grant {
    pub const ALL: [Grant; 4] = [
        Grant::ClientCredentials,
        Grant::AuthorizationCode,
        Grant::RefreshToken,
        Grant::KeyExchange,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::AuthorizationCode => "authorization_code",
            Grant::RefreshToken => "refresh_token",
            Grant::KeyExchange => "key_exchange",
        }
    }
}

/// Store operations whose latency and errors are counted: the ones the
/// service makes on its own (the management API's writes are the caller's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// The health ping.
    Ping = 0,
    /// Keys looked up by hash on cache misses: one statement, for one miss
    /// or a batch of them (the hot path's one store call).
    FindKey = 1,
    /// A batch of last-used times written.
    RecordUsage = 2,
}

impl StoreOp {
    pub const ALL: [StoreOp; 3] = [StoreOp::Ping, StoreOp::FindKey, StoreOp::RecordUsage];

    pub fn label(self) -> &'static str {
        match self {
            StoreOp::Ping => "ping",
            StoreOp::FindKey => "find_key",
            StoreOp::RecordUsage => "record_usage",
        }
    }
}

/// What became of one webhook delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Delivered = 0,
    /// Failed; will be retried.
    Retrying = 1,
    /// Failed for the last time.
    GaveUp = 2,
}

impl Delivery {
    pub const ALL: [Delivery; 3] = [Delivery::Delivered, Delivery::Retrying, Delivery::GaveUp];

    pub fn label(self) -> &'static str {
        match self {
            Delivery::Delivered => "delivered",
            Delivery::Retrying => "retrying",
            Delivery::GaveUp => "gave_up",
        }
    }
}

/// Which family of rate limit refused a request (the domain's limit spaces;
/// a key's limit applies on every decision API, so the API is not known
/// where the limit is taken).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A key's own, plan or default rate.
    Key = 0,
    /// An Envoy rate-limit descriptor rule.
    Descriptor = 1,
    /// Failed authentications from one client address.
    FailedAuth = 2,
    /// Bad request signatures for one key.
    BadSignature = 3,
}

impl Limit {
    pub const ALL: [Limit; 4] = [
        Limit::Key,
        Limit::Descriptor,
        Limit::FailedAuth,
        Limit::BadSignature,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Limit::Key => "key",
            Limit::Descriptor => "descriptor",
            Limit::FailedAuth => "failed_auth",
            Limit::BadSignature => "bad_signature",
        }
    }
}

/// Where the rate limits are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitMode {
    /// In memory, this replica only (no Redis configured).
    Local = 0,
    /// Shared across replicas through Redis.
    Global = 1,
    /// Redis configured but unreachable: each replica enforces its share.
    PerReplica = 2,
}

impl LimitMode {
    pub const ALL: [LimitMode; 3] = [LimitMode::Local, LimitMode::Global, LimitMode::PerReplica];

    pub fn label(self) -> &'static str {
        match self {
            LimitMode::Local => "local",
            LimitMode::Global => "global",
            LimitMode::PerReplica => "per_replica",
        }
    }
}

/// Room for the decision reasons (the domain has ~35); an index past it is
/// counted in the last slot, which is reported as `OTHER`.
pub const MAX_REASONS: usize = 64;
const APIS: usize = Api::ALL.len();

/// Upper bounds, in seconds, of the latency histograms' buckets. A decision
/// from the cache takes microseconds; one that reads the store, milliseconds.
pub const LATENCY_BOUNDS: [f64; 16] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
];
/// Upper bounds, in seconds, of the notification-lag histogram's buckets.
pub const LAG_BOUNDS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const fn zeros<const N: usize>() -> [AtomicU64; N] {
    [const { AtomicU64::new(0) }; N]
}

/// A fixed-bucket histogram of durations: one atomic per bucket (plus the
/// overflow bucket), the sum in nanoseconds, and the count.
pub struct Histogram<const B: usize> {
    bounds_nanos: [u64; B],
    /// Non-cumulative; the last slot holds what exceeds every bound.
    buckets: [AtomicU64; 17],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

/// A snapshot of a histogram, cumulative as Prometheus and OTLP want it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub bounds: Vec<f64>,
    /// Cumulative count at or below each bound.
    pub cumulative: Vec<u64>,
    /// Per-bucket counts (OTLP's shape), the overflow bucket last.
    pub per_bucket: Vec<u64>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl<const B: usize> Histogram<B> {
    const fn new(bounds: [f64; B]) -> Self {
        let mut bounds_nanos = [0u64; B];
        let mut i = 0;
        while i < B {
            bounds_nanos[i] = (bounds[i] * 1e9) as u64;
            i += 1;
        }
        Self {
            bounds_nanos,
            buckets: zeros(),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn record(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let slot = self
            .bounds_nanos
            .iter()
            .position(|b| nanos <= *b)
            .unwrap_or(B);
        self.buckets[slot].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(nanos, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self, bounds: &[f64; B]) -> HistogramSnapshot {
        let per_bucket: Vec<u64> = self.buckets[..=B].iter().map(|b| b.load(Relaxed)).collect();
        let mut running = 0u64;
        let cumulative = per_bucket[..B]
            .iter()
            .map(|n| {
                running = running.saturating_add(*n);
                running
            })
            .collect();
        let total: u64 = per_bucket.iter().sum();
        HistogramSnapshot {
            bounds: bounds.to_vec(),
            cumulative,
            per_bucket,
            sum_seconds: self.sum_nanos.load(Relaxed) as f64 / 1e9,
            // The bucket counts and the count are read apart; report the
            // buckets' total so the two always agree.
            count: total,
        }
    }
}

/// Every metric Latchkey records.
pub struct Metrics {
    /// Whether anything reads the hot path's metrics (a metrics listener);
    /// until then recording them is one load and a branch.
    on: AtomicBool,
    decisions: [[AtomicU64; MAX_REASONS]; APIS],
    decision_latency: [Histogram<16>; APIS],
    rate_limited: [AtomicU64; Limit::ALL.len()],
    rate_limit_mode: AtomicU8,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    store_latency: [Histogram<16>; StoreOp::ALL.len()],
    store_errors: [AtomicU64; StoreOp::ALL.len()],
    tokens_issued: [AtomicU64; Grant::ALL.len()],
    audit_buffer_depth: AtomicI64,
    audit_dropped: AtomicU64,
    webhook_backlog: AtomicI64,
    webhook_deliveries: [AtomicU64; Delivery::ALL.len()],
    notification_lag: Histogram<12>,
    notification_reconnects: AtomicU64,
    cache_drops_after_lost_notifications: AtomicU64,
    /// The code of each reason slot, set by its first decision.
    reason_codes: [OnceLock<&'static str>; MAX_REASONS],
    cache_size: OnceLock<Box<dyn Fn() -> u64 + Send + Sync>>,
}

static METRICS: Metrics = Metrics::new();

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    const fn new() -> Self {
        Self {
            on: AtomicBool::new(false),
            decisions: [const { zeros() }; APIS],
            decision_latency: [const { Histogram::new(LATENCY_BOUNDS) }; APIS],
            rate_limited: zeros(),
            rate_limit_mode: AtomicU8::new(LimitMode::Local as u8),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            store_latency: [const { Histogram::new(LATENCY_BOUNDS) }; StoreOp::ALL.len()],
            store_errors: zeros(),
            tokens_issued: zeros(),
            audit_buffer_depth: AtomicI64::new(0),
            audit_dropped: AtomicU64::new(0),
            webhook_backlog: AtomicI64::new(0),
            webhook_deliveries: zeros(),
            notification_lag: Histogram::new(LAG_BOUNDS),
            notification_reconnects: AtomicU64::new(0),
            cache_drops_after_lost_notifications: AtomicU64::new(0),
            reason_codes: [const { OnceLock::new() }; MAX_REASONS],
            cache_size: OnceLock::new(),
        }
    }

    /// Starts recording the hot path's metrics (decisions, key cache,
    /// store calls); called when a metrics listener starts. Never turned off.
    pub fn switch_on(&self) {
        self.on.store(true, Relaxed);
    }

    pub fn is_on(&self) -> bool {
        self.on.load(Relaxed)
    }

    /// How the key cache's size is read at scrape time.
    pub fn register_cache_size(&self, read: Box<dyn Fn() -> u64 + Send + Sync>) {
        let _ = self.cache_size.set(read);
    }

    /// One decision: which API, why (the reason's slot, below
    /// [`MAX_REASONS`], and its code), and how long it took.
    pub fn decision(&self, api: Api, slot: usize, code: &'static str, elapsed: Duration) {
        if !self.is_on() {
            return;
        }
        let a = api as usize;
        let slot = slot.min(MAX_REASONS - 1);
        // One atomic load once the slot is named.
        if self.reason_codes[slot].get().is_none() {
            let _ = self.reason_codes[slot].set(code);
        }
        self.decisions[a][slot].fetch_add(1, Relaxed);
        self.decision_latency[a].record(elapsed);
    }

    pub fn cache_hit(&self) {
        if !self.is_on() {
            return;
        }
        self.cache_hits.fetch_add(1, Relaxed);
    }

    pub fn cache_miss(&self) {
        if !self.is_on() {
            return;
        }
        self.cache_misses.fetch_add(1, Relaxed);
    }

    pub fn store_call(&self, op: StoreOp, elapsed: Duration, ok: bool) {
        if !self.is_on() {
            return;
        }
        self.store_latency[op as usize].record(elapsed);
        if !ok {
            self.store_errors[op as usize].fetch_add(1, Relaxed);
        }
    }

    pub fn token_issued(&self, grant: Grant) {
        self.tokens_issued[grant as usize].fetch_add(1, Relaxed);
    }

    // ---- hooks for rate limits, audit, webhooks and replicas -------------

    /// A request refused by a rate limit (also counted as a decision).
    pub fn rate_limited(&self, limit: Limit) {
        self.rate_limited[limit as usize].fetch_add(1, Relaxed);
    }

    /// Where the rate limits are counted now (Redis reachable or not).
    pub fn set_rate_limit_mode(&self, mode: LimitMode) {
        self.rate_limit_mode.store(mode as u8, Relaxed);
    }

    /// Audit events waiting in the buffer to be written.
    pub fn set_audit_buffer_depth(&self, depth: i64) {
        self.audit_buffer_depth.store(depth, Relaxed);
    }

    /// Audit events dropped because the buffer was full.
    pub fn audit_dropped(&self, n: u64) {
        self.audit_dropped.fetch_add(n, Relaxed);
    }

    /// Webhook events in the outbox not yet delivered.
    pub fn set_webhook_backlog(&self, backlog: i64) {
        self.webhook_backlog.store(backlog, Relaxed);
    }

    pub fn webhook_delivery(&self, outcome: Delivery) {
        self.webhook_deliveries[outcome as usize].fetch_add(1, Relaxed);
    }

    /// Time from a change's commit on some replica to its notice here.
    pub fn notification_lag(&self, lag: Duration) {
        self.notification_lag.record(lag);
    }

    /// The notification connection was lost and made again.
    pub fn notification_reconnect(&self) {
        self.notification_reconnects.fetch_add(1, Relaxed);
    }

    /// The key cache was dropped because notices may have been missed while
    /// the notification connection was down.
    pub fn cache_dropped_after_lost_notifications(&self) {
        self.cache_drops_after_lost_notifications
            .fetch_add(1, Relaxed);
    }

    // ---- reading ----------------------------------------------------------

    /// A consistent-enough copy for one scrape or export.
    pub fn snapshot(&self) -> Snapshot {
        let mut decisions = Vec::new();
        for api in Api::ALL {
            for (i, n) in self.decisions[api as usize].iter().enumerate() {
                let n = n.load(Relaxed);
                if n == 0 {
                    continue;
                }
                let reason = if i == MAX_REASONS - 1 {
                    "OTHER"
                } else {
                    self.reason_codes[i].get().copied().unwrap_or("OTHER")
                };
                decisions.push((api, reason, n));
            }
        }
        Snapshot {
            decisions,
            decision_latency: Api::ALL
                .map(|a| {
                    (
                        a,
                        self.decision_latency[a as usize].snapshot(&LATENCY_BOUNDS),
                    )
                })
                .to_vec(),
            rate_limited: Limit::ALL
                .map(|l| (l, self.rate_limited[l as usize].load(Relaxed)))
                .to_vec(),
            rate_limit_mode: LimitMode::ALL
                .into_iter()
                .find(|m| *m as u8 == self.rate_limit_mode.load(Relaxed))
                .unwrap_or(LimitMode::Local),
            cache_hits: self.cache_hits.load(Relaxed),
            cache_misses: self.cache_misses.load(Relaxed),
            cache_size: self.cache_size.get().map_or(0, |read| read()),
            store_latency: StoreOp::ALL
                .map(|o| (o, self.store_latency[o as usize].snapshot(&LATENCY_BOUNDS)))
                .to_vec(),
            store_errors: StoreOp::ALL
                .map(|o| (o, self.store_errors[o as usize].load(Relaxed)))
                .to_vec(),
            tokens_issued: Grant::ALL
                .map(|g| (g, self.tokens_issued[g as usize].load(Relaxed)))
                .to_vec(),
            audit_buffer_depth: self.audit_buffer_depth.load(Relaxed),
            audit_dropped: self.audit_dropped.load(Relaxed),
            webhook_backlog: self.webhook_backlog.load(Relaxed),
            webhook_deliveries: Delivery::ALL
                .map(|d| (d, self.webhook_deliveries[d as usize].load(Relaxed)))
                .to_vec(),
            notification_lag: self.notification_lag.snapshot(&LAG_BOUNDS),
            notification_reconnects: self.notification_reconnects.load(Relaxed),
            cache_drops_after_lost_notifications: self
                .cache_drops_after_lost_notifications
                .load(Relaxed),
        }
    }
}

/// What one scrape or export reports.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Only the (api, reason) pairs seen at least once.
    pub decisions: Vec<(Api, &'static str, u64)>,
    pub decision_latency: Vec<(Api, HistogramSnapshot)>,
    pub rate_limited: Vec<(Limit, u64)>,
    pub rate_limit_mode: LimitMode,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_size: u64,
    pub store_latency: Vec<(StoreOp, HistogramSnapshot)>,
    pub store_errors: Vec<(StoreOp, u64)>,
    pub tokens_issued: Vec<(Grant, u64)>,
    pub audit_buffer_depth: i64,
    pub audit_dropped: u64,
    pub webhook_backlog: i64,
    pub webhook_deliveries: Vec<(Delivery, u64)>,
    pub notification_lag: HistogramSnapshot,
    pub notification_reconnects: u64,
    pub cache_drops_after_lost_notifications: u64,
}

/// The build this process runs, for `latchkey_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_count_overflow() {
        let h = Histogram::new(LATENCY_BOUNDS);
        h.record(Duration::from_micros(5));
        h.record(Duration::from_micros(30));
        h.record(Duration::from_secs(3));
        let s = h.snapshot(&LATENCY_BOUNDS);
        assert_eq!(s.count, 3);
        assert_eq!(s.cumulative[0], 1, "5µs ≤ 10µs");
        assert_eq!(s.cumulative[2], 2, "30µs ≤ 50µs");
        assert_eq!(*s.cumulative.last().unwrap(), 2, "3 s exceeds every bound");
        assert_eq!(*s.per_bucket.last().unwrap(), 1);
        assert!((s.sum_seconds - 3.000_035).abs() < 1e-9);
    }

    #[test]
    fn decisions_are_labelled_by_their_reason_codes() {
        let m = Metrics::new();
        m.decision(Api::Check, 0, "ALLOWED", Duration::from_micros(1));
        assert!(
            m.snapshot().decisions.is_empty(),
            "nothing recorded while off"
        );
        m.switch_on();
        m.decision(Api::ExtAuthz, 1, "KEY_REVOKED", Duration::from_micros(1));
        m.decision(Api::ExtAuthz, 1, "KEY_REVOKED", Duration::from_micros(1));
        m.decision(Api::Check, 0, "ALLOWED", Duration::from_micros(1));
        m.decision(Api::Check, 999, "SOMETHING_NEW", Duration::from_micros(1));
        let s = m.snapshot();
        assert!(s.decisions.contains(&(Api::ExtAuthz, "KEY_REVOKED", 2)));
        assert!(s.decisions.contains(&(Api::Check, "ALLOWED", 1)));
        assert!(s.decisions.contains(&(Api::Check, "OTHER", 1)));
        assert_eq!(s.decisions.len(), 3);
    }
}
