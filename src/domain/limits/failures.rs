//! Failed authentications, budgeted per client address. Past the budget an
//! address is refused for a cool-down before any lookup, so a flood of
//! guessed or unknown credentials costs no store work; since only the
//! address is counted, a stranger can block only themselves, never the
//! owner of the key they guess at.

use std::net::IpAddr;

use super::gcra::{RatePolicy, RateState, nanos};
use super::{Limiter, Space};
use crate::domain::reason::Reason;

/// `[rate_limits] failed_auth`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureBudget {
    pub policy: RatePolicy,
    pub cooldown_seconds: u64,
}

/// Does this denial count against the address's budget? Credentials that
/// prove nothing: malformed, unknown, revoked, forged or unsigned tokens.
pub fn counts_as_failure(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::CredentialMalformed
            | Reason::CredentialUnknown
            | Reason::KeyRevoked
            | Reason::TokenUnsigned
            | Reason::TokenAlgorithmMismatch
            | Reason::TokenKeyUnknown
            | Reason::TokenSignatureInvalid
            | Reason::TokenRevoked
    )
}

/// The address as text, written into a stack buffer: checking an address
/// on every request allocates nothing. (The longest IPv6 text is 45 bytes.)
fn id(ip: IpAddr, buf: &mut [u8; 48]) -> &str {
    use std::io::Write as _;
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{ip}");
    let len = usize::try_from(cursor.position()).unwrap_or(0);
    std::str::from_utf8(&buf[..len]).unwrap_or_default()
}

impl Limiter {
    /// `Some` while `ip` is cooling down: it is refused without a lookup.
    pub fn failures_blocked(&self, budget: &FailureBudget, ip: IpAddr) -> Option<RateState> {
        // Nobody is cooling down: the common case costs one atomic load.
        if !self.any_held(nanos(self.clock.now())) {
            return None;
        }
        let mut buf = [0u8; 48];
        let state = self.peek(Space::FailedAuth, id(ip, &mut buf), &budget.policy.quota());
        (state.remaining == 0).then_some(state)
    }

    /// Counts a failed authentication from `ip`; the one that spends the
    /// budget starts the cool-down.
    pub fn failed(&self, budget: &FailureBudget, ip: IpAddr) {
        let mut buf = [0u8; 48];
        let id = id(ip, &mut buf);
        let quota = budget.policy.quota();
        let state = self.take(Space::FailedAuth, id, &quota);
        if state.remaining == 0 {
            let now = nanos(self.clock.now());
            let until = now
                .saturating_add(quota.tolerance)
                .saturating_add(budget.cooldown_seconds.saturating_mul(1_000_000_000));
            self.hold(Space::FailedAuth, id, until);
        }
    }
}
