//! proto ⇄ domain. All validation of wire input happens here, and every
//! error names the field it is about.

mod explain;
pub mod webhook;

pub use explain::{ExplainParts, explain_parts, explanation_out};

use std::net::IpAddr;

use prost_types::Timestamp;

use crate::domain::accounts::ACCOUNT_ID_PREFIX;
use crate::domain::check::Decision;
use crate::domain::error::{Error, Result};
use crate::domain::keys::{KEY_ID_PREFIX, KeyChanges, NewKey};
use crate::domain::limits::RateState;
use crate::domain::model::{
    Account, KeyKind, KeyRecord, KeyStatus, LiveStatus, Millis, Mode, RatePolicy, valid_id,
};
use crate::domain::network::{parse_allowlist, parse_ip_loose};
use crate::domain::origin::OriginPattern;
use crate::domain::permissions::{Permission, Scope};
use crate::domain::reason::Reason;
use crate::pb;
use crate::ports::KeyFilter;

pub const DEFAULT_PAGE_SIZE: u64 = 50;
pub const MAX_PAGE_SIZE: u64 = 1000;

pub fn timestamp(ms: Millis) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub fn account_id(field: &'static str, id: &str) -> Result<String> {
    if id.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if !valid_id(id, ACCOUNT_ID_PREFIX) {
        return Err(Error::invalid(field, "is not an account id (acct_…)"));
    }
    Ok(id.to_owned())
}

pub fn key_id(field: &'static str, id: &str) -> Result<String> {
    if id.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if !valid_id(id, KEY_ID_PREFIX) {
        return Err(Error::invalid(field, "is not a key id (key_…)"));
    }
    Ok(id.to_owned())
}

/// `(limit, after)` from a page size and token; `limit` is what the caller gets.
pub fn page(page_size: u32, token: &str, id_prefix: &str) -> Result<(u64, Option<String>)> {
    let size = match u64::from(page_size) {
        0 => DEFAULT_PAGE_SIZE,
        n if n > MAX_PAGE_SIZE => {
            return Err(Error::invalid(
                "page_size",
                format!("must be at most {MAX_PAGE_SIZE}"),
            ));
        }
        n => n,
    };
    let after = if token.is_empty() {
        None
    } else if valid_id(token, id_prefix) {
        Some(token.to_owned())
    } else {
        return Err(Error::invalid(
            "page_token",
            "is not a token from a previous page",
        ));
    };
    Ok((size, after))
}

/// Trims one extra row fetched to learn whether another page exists.
pub fn next_page<T>(mut rows: Vec<T>, limit: u64, id: impl Fn(&T) -> &str) -> (Vec<T>, String) {
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let token = if more {
        rows.last().map(|r| id(r).to_owned()).unwrap_or_default()
    } else {
        String::new()
    };
    (rows, token)
}

pub fn mode_in(field: &'static str, value: i32) -> Result<Option<Mode>> {
    match pb::Mode::try_from(value) {
        Ok(pb::Mode::Unspecified) => Ok(None),
        Ok(pb::Mode::Test) => Ok(Some(Mode::Test)),
        Ok(pb::Mode::Live) => Ok(Some(Mode::Live)),
        Err(_) => Err(Error::invalid(field, format!("{value} is not a Mode"))),
    }
}

pub fn required_mode(field: &'static str, value: i32) -> Result<Mode> {
    mode_in(field, value)?
        .ok_or_else(|| Error::invalid(field, "is required (MODE_TEST or MODE_LIVE)"))
}

fn kind_in(value: i32) -> Result<KeyKind> {
    match pb::KeyKind::try_from(value) {
        Ok(pb::KeyKind::Secret) => Ok(KeyKind::Secret),
        Ok(pb::KeyKind::Publishable) => Ok(KeyKind::Publishable),
        Ok(pb::KeyKind::Restricted) => Ok(KeyKind::Restricted),
        Ok(pb::KeyKind::Feed) => Ok(KeyKind::Feed),
        Ok(pb::KeyKind::Unspecified) => Err(Error::invalid(
            "kind",
            "is required (KEY_KIND_SECRET, KEY_KIND_PUBLISHABLE, KEY_KIND_RESTRICTED or KEY_KIND_FEED)",
        )),
        Err(_) => Err(Error::invalid("kind", format!("{value} is not a KeyKind"))),
    }
}

fn status_in(value: i32) -> Result<Option<KeyStatus>> {
    match pb::KeyStatus::try_from(value) {
        Ok(pb::KeyStatus::Unspecified) => Ok(None),
        Ok(pb::KeyStatus::Active) => Ok(Some(KeyStatus::Active)),
        Ok(pb::KeyStatus::Suspended) => Ok(Some(KeyStatus::Suspended)),
        Ok(pb::KeyStatus::Revoked) => Ok(Some(KeyStatus::Revoked)),
        Ok(pb::KeyStatus::Expired) => Ok(Some(KeyStatus::Expired)),
        Ok(pb::KeyStatus::Rotated) => Ok(Some(KeyStatus::Rotated)),
        Err(_) => Err(Error::invalid(
            "status",
            format!("{value} is not a KeyStatus"),
        )),
    }
}

fn bounded<'a>(field: &'static str, items: &'a [String], max: usize) -> Result<&'a [String]> {
    if items.len() > max {
        return Err(Error::invalid(
            field,
            format!("at most {max} entries are allowed, got {}", items.len()),
        ));
    }
    Ok(items)
}

fn scopes(items: &[String], max: usize) -> Result<Vec<Scope>> {
    bounded("scopes", items, max)?
        .iter()
        .map(|s| Scope::parse(s).map_err(|e| Error::invalid("scopes", format!("scope {e}"))))
        .collect()
}

fn cidrs(items: &[String], max: usize) -> Result<Vec<ipnet::IpNet>> {
    parse_allowlist(bounded("allowed_cidrs", items, max)?)
        .map_err(|e| Error::invalid("allowed_cidrs", e.to_string()))
}

fn origins(items: &[String], max: usize) -> Result<Vec<OriginPattern>> {
    bounded("allowed_origins", items, max)?
        .iter()
        .map(|s| {
            OriginPattern::parse(s).map_err(|e| Error::invalid("allowed_origins", e.to_string()))
        })
        .collect()
}

fn role(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

pub fn new_key(r: pb::CreateKeyRequest, max_items: usize) -> Result<NewKey> {
    Ok(NewKey {
        account_id: account_id("account_id", &r.account_id)?,
        mode: required_mode("mode", r.mode)?,
        kind: kind_in(r.kind)?,
        scopes: scopes(&r.scopes, max_items)?,
        allowed_cidrs: cidrs(&r.allowed_cidrs, max_items)?,
        allowed_origins: origins(&r.allowed_origins, max_items)?,
        role: role(&r.role),
        expires_in_secs: r.expires_in_seconds,
        rate_limit: r
            .rate_limit
            .as_ref()
            .map(|p| rate_policy_in("rate_limit", p))
            .transpose()?,
        name: r.name,
    })
}

pub fn key_changes(r: &pb::UpdateKeyRequest, max_items: usize) -> Result<KeyChanges> {
    Ok(KeyChanges {
        name: r.name.clone(),
        scopes: r
            .scopes
            .as_ref()
            .map(|l| scopes(&l.values, max_items))
            .transpose()?,
        role: r.role.as_deref().map(role),
        allowed_cidrs: r
            .allowed_cidrs
            .as_ref()
            .map(|l| cidrs(&l.values, max_items))
            .transpose()?,
        allowed_origins: r
            .allowed_origins
            .as_ref()
            .map(|l| origins(&l.values, max_items))
            .transpose()?,
        expires_in_secs: r.expires_in_seconds,
        // An empty policy clears the key's own limit.
        rate_limit: r
            .rate_limit
            .as_ref()
            .map(|p| {
                if *p == pb::RateLimitPolicy::default() {
                    Ok(None)
                } else {
                    rate_policy_in("rate_limit", p).map(Some)
                }
            })
            .transpose()?,
    })
}

pub fn key_filter(r: &pb::ListKeysRequest) -> Result<KeyFilter> {
    Ok(KeyFilter {
        account_id: if r.account_id.is_empty() {
            None
        } else {
            Some(account_id("account_id", &r.account_id)?)
        },
        mode: mode_in("mode", r.mode)?,
        status: status_in(r.status)?,
    })
}

pub fn mode_out(m: Mode) -> pb::Mode {
    match m {
        Mode::Test => pb::Mode::Test,
        Mode::Live => pb::Mode::Live,
    }
}

fn kind_out(k: KeyKind) -> pb::KeyKind {
    match k {
        KeyKind::Secret => pb::KeyKind::Secret,
        KeyKind::Publishable => pb::KeyKind::Publishable,
        KeyKind::Restricted => pb::KeyKind::Restricted,
        KeyKind::Feed => pb::KeyKind::Feed,
    }
}

fn status_out(s: KeyStatus) -> pb::KeyStatus {
    match s {
        KeyStatus::Active => pb::KeyStatus::Active,
        KeyStatus::Suspended => pb::KeyStatus::Suspended,
        KeyStatus::Revoked => pb::KeyStatus::Revoked,
        KeyStatus::Expired => pb::KeyStatus::Expired,
        KeyStatus::Rotated => pb::KeyStatus::Rotated,
    }
}

fn live_out(s: LiveStatus) -> pb::LiveStatus {
    match s {
        LiveStatus::NotRequested => pb::LiveStatus::NotRequested,
        LiveStatus::PendingReview => pb::LiveStatus::PendingReview,
        LiveStatus::Active => pb::LiveStatus::Active,
        LiveStatus::Rejected => pb::LiveStatus::Rejected,
    }
}

pub fn account_out(a: &Account) -> pb::Account {
    pb::Account {
        id: a.id.clone(),
        name: a.name.clone(),
        plan: a.plan.clone(),
        live_status: live_out(a.live_status).into(),
        created_at: Some(timestamp(a.created_at)),
        store_ids: a.store_ids.clone(),
    }
}

pub fn key_out(k: &KeyRecord, now: Millis) -> pb::Key {
    pb::Key {
        id: k.id.clone(),
        account_id: k.account_id.clone(),
        mode: mode_out(k.mode).into(),
        kind: kind_out(k.kind).into(),
        name: k.name.clone(),
        masked: k.masked.clone(),
        scopes: k.scopes.clone(),
        status: status_out(k.status_at(now)).into(),
        expires_at: Some(timestamp(k.expires_at)),
        allowed_cidrs: k.allowed_cidrs.clone(),
        allowed_origins: k.allowed_origins.clone(),
        role: k.role.clone().unwrap_or_default(),
        created_at: Some(timestamp(k.created_at)),
        last_used_at: k.last_used_at.map(timestamp),
        successor_id: k.successor_id.clone().unwrap_or_default(),
        overlap_ends_at: k.overlap_ends_at.map(timestamp),
        predecessor_id: k.predecessor_id.clone().unwrap_or_default(),
        signing_secret_id: k.signing_secret_id.clone().unwrap_or_default(),
        rate_limit: k.rate_limit.as_ref().map(rate_policy_out),
        suspension_cause: k.suspension_cause.clone().unwrap_or_default(),
    }
}

/// The parts of a `CheckRequest` that need parsing, owned by the handler.
pub struct CheckParts<'a> {
    pub permission: Option<Permission<'a>>,
    pub mode: Option<Mode>,
    pub peer_ip: Option<IpAddr>,
    /// `context.body_sha256`, decoded.
    pub body_sha256: Option<[u8; 32]>,
}

pub fn check_parts(r: &pb::CheckRequest) -> Result<CheckParts<'_>> {
    let permission = if r.permission.is_empty() {
        None
    } else {
        Some(
            Permission::parse(&r.permission)
                .map_err(|e| Error::invalid("permission", e.to_string()))?,
        )
    };
    let peer_ip = match r.context.as_ref().map(|c| c.client_ip.as_str()) {
        None | Some("") => None,
        Some(s) => Some(
            parse_ip_loose(s)
                .ok_or_else(|| Error::invalid("context.client_ip", "is not an IP address"))?,
        ),
    };
    let body_sha256 = match r.context.as_ref().map(|c| c.body_sha256.as_str()) {
        None | Some("") => None,
        Some(s) => Some(crate::crypto::mac::parse_hex32(s).ok_or_else(|| {
            Error::invalid("context.body_sha256", "must be 64 hex digits (SHA-256)")
        })?),
    };
    Ok(CheckParts {
        permission,
        mode: mode_in("mode", r.mode)?,
        peer_ip,
        body_sha256,
    })
}

fn reason_out(r: Reason) -> pb::Reason {
    match r {
        Reason::Allowed => pb::Reason::Allowed,
        Reason::CredentialMissing => pb::Reason::CredentialMissing,
        Reason::CredentialMalformed => pb::Reason::CredentialMalformed,
        Reason::CredentialUnknown => pb::Reason::CredentialUnknown,
        Reason::KeyRevoked => pb::Reason::KeyRevoked,
        Reason::KeyExpired => pb::Reason::KeyExpired,
        Reason::KeySuspended => pb::Reason::KeySuspended,
        Reason::KeyRotated => pb::Reason::KeyRotated,
        Reason::ModeMismatch => pb::Reason::ModeMismatch,
        Reason::LiveModeInactive => pb::Reason::LiveModeInactive,
        Reason::IpNotAllowed => pb::Reason::IpNotAllowed,
        Reason::OriginNotAllowed => pb::Reason::OriginNotAllowed,
        Reason::PermissionDenied => pb::Reason::PermissionDenied,
        Reason::PlanNotEntitled => pb::Reason::PlanNotEntitled,
        Reason::StoreNotAllowed => pb::Reason::StoreNotAllowed,
        Reason::InternalError => pb::Reason::InternalError,
        Reason::TokenUnsigned => pb::Reason::TokenUnsigned,
        Reason::TokenAlgorithmMismatch => pb::Reason::TokenAlgorithmMismatch,
        Reason::TokenKeyUnknown => pb::Reason::TokenKeyUnknown,
        Reason::TokenSignatureInvalid => pb::Reason::TokenSignatureInvalid,
        Reason::TokenExpired => pb::Reason::TokenExpired,
        Reason::TokenNotYetValid => pb::Reason::TokenNotYetValid,
        Reason::TokenClaimsInvalid => pb::Reason::TokenClaimsInvalid,
        Reason::TokenRevoked => pb::Reason::TokenRevoked,
        Reason::SignatureMissing => pb::Reason::SignatureMissing,
        Reason::SignatureInvalid => pb::Reason::SignatureInvalid,
        Reason::SignatureExpired => pb::Reason::SignatureExpired,
        Reason::PathNotAllowed => pb::Reason::PathNotAllowed,
        Reason::RateLimited => pb::Reason::RateLimited,
        Reason::TooManyFailures => pb::Reason::TooManyFailures,
        // Only the proxy adapters (ext_authz, forward auth) decide these:
        // they have the HTTP request. Check, which speaks this enum, never
        // meets them.
        Reason::RequestInvalid
        | Reason::PathInvalid
        | Reason::RouteNotAllowed
        | Reason::BodyUnavailable
        | Reason::ProxyNotTrusted => pb::Reason::Unspecified,
    }
}

pub fn decision_out(d: &Decision) -> pb::CheckResponse {
    // A key that no longer works says whose it was, and nothing of what it
    // could do: whoever holds a revoked, suspended, expired or rotated-out
    // secret learns no scopes, plan, mode or kind from it.
    let dead = matches!(
        d.reason,
        Reason::KeyRevoked | Reason::KeySuspended | Reason::KeyExpired | Reason::KeyRotated
    );
    pb::CheckResponse {
        allowed: d.allowed(),
        reason: reason_out(d.reason).into(),
        principal: d.key.as_ref().map(|k| {
            if dead {
                return pb::Principal {
                    account_id: k.record.account_id.clone(),
                    key_id: k.record.id.clone(),
                    ..Default::default()
                };
            }
            pb::Principal {
                account_id: k.record.account_id.clone(),
                key_id: k.record.id.clone(),
                mode: mode_out(k.record.mode).into(),
                scopes: k.scope_strings.to_vec(),
                plan: k.account.plan.clone(),
                kind: kind_out(k.record.kind).into(),
            }
        }),
        message: d.message.to_string(),
        rate_limit: d.rate_limit.as_ref().map(rate_limit_out),
    }
}

pub fn rate_limit_out(s: &RateState) -> pb::RateLimit {
    pb::RateLimit {
        limit: s.limit,
        remaining: s.remaining,
        reset_seconds: s.reset_seconds,
        retry_after_seconds: s.retry_after_seconds,
    }
}

/// A policy as sent; the error names the field.
fn rate_policy_in(field: &'static str, p: &pb::RateLimitPolicy) -> Result<RatePolicy> {
    RatePolicy::new(p.requests, p.per_seconds, p.burst)
        .map_err(|e| Error::invalid(field, e.to_string()))
}

fn rate_policy_out(p: &RatePolicy) -> pb::RateLimitPolicy {
    pb::RateLimitPolicy {
        requests: p.requests,
        per_seconds: p.per_seconds,
        burst: p.burst,
    }
}
