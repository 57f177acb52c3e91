//! Rate-limit policies as keys and plans carry them (the algorithm that
//! enforces them is `domain::limits`).

use std::fmt;

/// Most requests a policy may name, and the longest window (30 days).
pub const MAX_REQUESTS: u64 = 1_000_000_000;
pub const MAX_PER_SECONDS: u64 = 30 * 86_400;

/// A limit as users write it: `requests` per `per_seconds`, at most `burst`
/// at once (0 = `requests`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RatePolicy {
    pub requests: u64,
    pub per_seconds: u64,
    pub burst: u64,
}

/// Why a policy was refused; the caller names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("`{0}` is not a rate like `1200/min` (units: s, min, h, day)")]
    Syntax(String),
    #[error("requests must be between 1 and {MAX_REQUESTS}")]
    Requests,
    #[error("per_seconds must be between 1 and {MAX_PER_SECONDS}")]
    Window,
    #[error("burst must be between 0 (= requests) and {MAX_REQUESTS}")]
    Burst,
}

impl RatePolicy {
    /// A checked policy.
    pub fn new(requests: u64, per_seconds: u64, burst: u64) -> Result<Self, PolicyError> {
        if requests == 0 || requests > MAX_REQUESTS {
            return Err(PolicyError::Requests);
        }
        if per_seconds == 0 || per_seconds > MAX_PER_SECONDS {
            return Err(PolicyError::Window);
        }
        if burst > MAX_REQUESTS {
            return Err(PolicyError::Burst);
        }
        Ok(Self {
            requests,
            per_seconds,
            burst,
        })
    }

    /// `1200/min`, `20/s`, `50000/h`, `100000/day`; `None` for `unlimited`.
    pub fn parse(s: &str) -> Result<Option<Self>, PolicyError> {
        let text = s.trim();
        if text.eq_ignore_ascii_case("unlimited") {
            return Ok(None);
        }
        let syntax = || PolicyError::Syntax(s.to_owned());
        let (n, unit) = text.split_once('/').ok_or_else(syntax)?;
        let n = n.trim();
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let requests: u64 = n.parse().map_err(|_| PolicyError::Requests)?;
        let per_seconds = match unit.trim() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            "d" | "day" => 86_400,
            _ => return Err(syntax()),
        };
        Self::new(requests, per_seconds, 0).map(Some)
    }

    /// The burst in effect: `requests` when none was set.
    pub fn capacity(&self) -> u64 {
        if self.burst == 0 {
            self.requests
        } else {
            self.burst
        }
    }
}

impl fmt::Display for RatePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.requests, self.per_seconds)?;
        if self.burst != 0 {
            write!(f, " burst {}", self.burst)?;
        }
        Ok(())
    }
}
