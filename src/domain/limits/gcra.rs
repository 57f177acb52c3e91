//! The generic cell rate algorithm (GCRA), as redis-cell and governor run it.
//!
//! One number per counted thing: its theoretical arrival time (TAT), in
//! nanoseconds. A request at `now` is allowed when, after it, the TAT is no
//! more than the tolerance ahead of `now`; each allowed request moves the TAT
//! on by one emission interval. The result is smooth: at most `burst`
//! requests at once, then one per interval, and never the doubled burst a
//! fixed window lets through at its boundary.

pub use crate::domain::model::{MAX_PER_SECONDS, MAX_REQUESTS, PolicyError, RatePolicy};

const NANOS_PER_SEC: u64 = 1_000_000_000;

impl RatePolicy {
    /// The limit compiled for the algorithm.
    pub fn quota(&self) -> Quota {
        let interval = (u128::from(self.per_seconds) * u128::from(NANOS_PER_SEC)
            / u128::from(self.requests.max(1)))
        .max(1);
        let tolerance = interval.saturating_mul(u128::from(self.capacity()));
        Quota {
            interval: u64::try_from(interval).unwrap_or(u64::MAX),
            tolerance: u64::try_from(tolerance).unwrap_or(u64::MAX),
            limit: self.capacity(),
            policy: *self,
        }
    }
}

/// A policy as the algorithm uses it (nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Emission interval: the time one request costs.
    pub interval: u64,
    /// How far the TAT may run ahead of now: `interval × burst`.
    pub tolerance: u64,
    /// The burst, reported as the limit.
    pub limit: u64,
    pub policy: RatePolicy,
}

/// What one request learned about its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    pub allowed: bool,
    pub limit: u64,
    /// Requests that could still be made right now.
    pub remaining: u64,
    /// Seconds until the limit is fully available again.
    pub reset_seconds: u64,
    /// Seconds until a request would be allowed (0 when one is).
    pub retry_after_seconds: u64,
    pub policy: RatePolicy,
}

fn ceil_secs(nanos: u64) -> u64 {
    nanos.div_ceil(NANOS_PER_SEC)
}

impl Quota {
    /// Takes `cost` requests at `now` from a cell whose TAT is `tat`:
    /// the new TAT when allowed (`None` when not), and what to report.
    pub fn take(&self, tat: u64, now: u64, cost: u64) -> (Option<u64>, RateState) {
        let base = tat.max(now);
        let new_tat = base.saturating_add(self.interval.saturating_mul(cost));
        let ahead = new_tat - now;
        if ahead <= self.tolerance {
            (Some(new_tat), self.state(true, new_tat, now))
        } else {
            let mut state = self.state(false, base, now);
            // Allowed once the TAT has fallen back to where `cost` more fit.
            state.retry_after_seconds = ceil_secs(ahead - self.tolerance).max(1);
            (None, state)
        }
    }

    /// What the cell says at `now`, consuming nothing.
    pub fn peek(&self, tat: u64, now: u64) -> RateState {
        let state = self.state(true, tat.max(now), now);
        RateState {
            allowed: state.remaining > 0,
            ..state
        }
    }

    fn state(&self, allowed: bool, tat: u64, now: u64) -> RateState {
        let ahead = tat.saturating_sub(now);
        let remaining = self.tolerance.saturating_sub(ahead) / self.interval.max(1);
        RateState {
            allowed,
            limit: self.limit,
            remaining: remaining.min(self.limit),
            reset_seconds: ceil_secs(ahead),
            retry_after_seconds: if remaining > 0 {
                0
            } else {
                ceil_secs((ahead + self.interval).saturating_sub(self.tolerance)).max(1)
            },
            policy: self.policy,
        }
    }
}

/// Milliseconds since the epoch (the `Clock`) as the algorithm's nanoseconds.
pub fn nanos(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000)
}
