//! A decision as the operator sees it: counted by API and reason, timed,
//! and written on the request's span (reason, account and key ids, never the
//! credential). One function, so every adapter reports decisions alike.

use std::time::Instant;

use super::reason::Reason;
use super::resolver::ResolvedKey;
use crate::telemetry::metrics::{Api, metrics};
use crate::telemetry::traces;

/// Records a decision `api` made for `reason`, begun at `started`.
pub fn decided(api: Api, reason: Reason, key: Option<&ResolvedKey>, started: Instant) {
    let m = metrics();
    if m.is_on() {
        // The discriminant is the metric's slot; the code names it.
        m.decision(api, reason as usize, reason.code(), started.elapsed());
    }
    traces::record_decision(
        reason.code(),
        key.map(|k| k.account.id.as_str()),
        key.map(|k| k.record.id.as_str()),
    );
}
