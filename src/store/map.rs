//! Rows ⇄ records: how the store spells the domain's records in columns,
//! and the one parser each for the hex and enum-tag columns.

use sea_orm::ActiveValue::Set;

use super::entities::{account, api_key, route_rule};
use crate::crypto::{hex, mac::parse_hex32};
use crate::domain::model::{
    Account, KeyKind, KeyRecord, LiveStatus, Mode, RatePolicy, RuleRecord, StoredKeyStatus,
};
use crate::ports::StoreError;

pub(super) fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned())
}

pub(super) fn parse_list(field: &str, id: &str, s: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(s)
        .map_err(|e| StoreError::Internal(format!("key {id}: bad {field} column: {e}")))
}

pub(super) fn corrupt(what: &str, id: &str, value: &str) -> StoreError {
    StoreError::Internal(format!("{what} of {id} has unknown value `{value}`"))
}

pub(super) fn account_from(m: account::Model) -> Result<Account, StoreError> {
    Ok(Account {
        store_ids: Vec::new(),
        live_status: parse_tag("live_status", &m.id, &m.live_status, LiveStatus::from_tag)?,
        id: m.id,
        name: m.name,
        plan: m.plan,
        is_operator: m.is_operator,
        created_at: m.created_at,
        updated_at: m.updated_at,
        version: m.version,
    })
}

pub(super) fn account_to(a: &Account) -> account::ActiveModel {
    account::ActiveModel {
        id: Set(a.id.clone()),
        name: Set(a.name.clone()),
        plan: Set(a.plan.clone()),
        live_status: Set(a.live_status.tag().to_owned()),
        is_operator: Set(a.is_operator),
        created_at: Set(a.created_at),
        updated_at: Set(a.updated_at),
        version: Set(a.version),
    }
}

/// A SHA-256 stored as 64 hex digits: the one hex parser of the store.
pub(super) fn parse_hash(what: &str, id: &str, s: &str) -> Result<[u8; 32], StoreError> {
    parse_hex32(s).ok_or_else(|| corrupt(what, id, "(not 64 hex digits)"))
}

/// A stored enum tag (`mode`, `status`, …): the one tag parser of the store.
pub(super) fn parse_tag<T>(
    what: &str,
    id: &str,
    tag: &str,
    from_tag: fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    from_tag(tag).ok_or_else(|| corrupt(what, id, tag))
}

pub(super) fn key_from(m: api_key::Model) -> Result<KeyRecord, StoreError> {
    let rate_limit = rate_limit_from(
        &m.id,
        m.rate_limit_requests,
        m.rate_limit_per_seconds,
        m.rate_limit_burst,
    )?;
    Ok(KeyRecord {
        mode: parse_tag("mode", &m.id, &m.mode, Mode::from_tag)?,
        kind: parse_tag("kind", &m.id, &m.kind, KeyKind::from_tag)?,
        status: parse_tag("status", &m.id, &m.status, StoredKeyStatus::from_tag)?,
        key_hash: parse_hash("key_hash", &m.id, &m.key_hash)?,
        scopes: parse_list("scopes", &m.id, &m.scopes)?,
        allowed_cidrs: parse_list("allowed_cidrs", &m.id, &m.allowed_cidrs)?,
        allowed_origins: parse_list("allowed_origins", &m.id, &m.allowed_origins)?,
        id: m.id,
        account_id: m.account_id,
        name: m.name,
        masked: m.masked,
        role: m.role,
        expires_at: m.expires_at,
        created_at: m.created_at,
        updated_at: m.updated_at,
        last_used_at: m.last_used_at,
        predecessor_id: m.predecessor_id,
        successor_id: m.successor_id,
        overlap_ends_at: m.overlap_ends_at,
        version: m.version,
        rate_limit,
        suspension_cause: m.suspension_cause,
        signing_secret_id: m.signing_secret_id,
    })
}

/// A key's stored limit; one that no longer validates is corrupt, never ignored.
fn rate_limit_from(
    id: &str,
    requests: Option<i64>,
    per_seconds: Option<i64>,
    burst: Option<i64>,
) -> Result<Option<RatePolicy>, StoreError> {
    let (Some(requests), Some(per_seconds)) = (requests, per_seconds) else {
        return Ok(None);
    };
    let value = format!("{requests}/{per_seconds}/{}", burst.unwrap_or(0));
    let n = |v: i64| u64::try_from(v).map_err(|_| corrupt("rate_limit", id, &value));
    RatePolicy::new(n(requests)?, n(per_seconds)?, n(burst.unwrap_or(0))?)
        .map(Some)
        .map_err(|_| corrupt("rate_limit", id, &value))
}

/// Every value is at most 10^9 (`RatePolicy::new`), so it fits a BIGINT.
fn stored(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn key_to(k: &KeyRecord) -> api_key::ActiveModel {
    api_key::ActiveModel {
        id: Set(k.id.clone()),
        account_id: Set(k.account_id.clone()),
        mode: Set(k.mode.tag().to_owned()),
        kind: Set(k.kind.tag().to_owned()),
        name: Set(k.name.clone()),
        key_hash: Set(hex(&k.key_hash)),
        masked: Set(k.masked.clone()),
        scopes: Set(json_list(&k.scopes)),
        role: Set(k.role.clone()),
        allowed_cidrs: Set(json_list(&k.allowed_cidrs)),
        allowed_origins: Set(json_list(&k.allowed_origins)),
        status: Set(k.status.tag().to_owned()),
        expires_at: Set(k.expires_at),
        created_at: Set(k.created_at),
        updated_at: Set(k.updated_at),
        last_used_at: Set(k.last_used_at),
        predecessor_id: Set(k.predecessor_id.clone()),
        successor_id: Set(k.successor_id.clone()),
        overlap_ends_at: Set(k.overlap_ends_at),
        version: Set(k.version),
        signing_secret_id: Set(k.signing_secret_id.clone()),
        rate_limit_requests: Set(k.rate_limit.map(|p| stored(p.requests))),
        rate_limit_per_seconds: Set(k.rate_limit.map(|p| stored(p.per_seconds))),
        rate_limit_burst: Set(k.rate_limit.map(|p| stored(p.burst))),
        suspension_cause: Set(k.suspension_cause.clone()),
    }
}

pub(super) fn rule_from(m: route_rule::Model) -> RuleRecord {
    RuleRecord {
        id: m.id,
        host: (!m.host.is_empty()).then_some(m.host),
        method: m.method,
        path: m.path,
        permission: m.permission,
        created_at: m.created_at,
    }
}
