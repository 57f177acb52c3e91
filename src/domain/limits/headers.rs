//! The HTTP fields that announce a limit, in both conventions clients know:
//! `X-RateLimit-Limit/Remaining/Reset` (GitHub's, Stripe's; `Reset` in
//! seconds from now) and the IETF structured fields `RateLimit-Policy` /
//! `RateLimit` (draft-ietf-httpapi-ratelimit-headers: `q` the quota, `w`
//! its window, `r` what remains, `t` seconds until it is whole again), plus
//! `Retry-After` (RFC 9110 §10.2.3) on a refusal. Every proxy adapter and
//! the rate-limit service write the same fields from this one list.

use super::gcra::RateState;

/// `(name, value)` pairs, lower-case names, for an answer under `state`.
/// `policy` names the limit in the IETF fields (`key`, `failed_auth`, …).
pub fn rate_limit_headers(policy: &str, state: &RateState) -> Vec<(&'static str, String)> {
    let mut h = Vec::with_capacity(6);
    h.push(("x-ratelimit-limit", state.limit.to_string()));
    h.push(("x-ratelimit-remaining", state.remaining.to_string()));
    h.push(("x-ratelimit-reset", state.reset_seconds.to_string()));
    h.push((
        "ratelimit-policy",
        format!(
            "\"{policy}\";q={};w={}",
            state.policy.requests, state.policy.per_seconds
        ),
    ));
    h.push((
        "ratelimit",
        format!(
            "\"{policy}\";r={};t={}",
            state.remaining, state.reset_seconds
        ),
    ));
    if !state.allowed {
        h.push(("retry-after", state.retry_after_seconds.max(1).to_string()));
    }
    h
}
