//! What `decide` is asked, and what it answers. Borrowed from the request:
//! the hot path copies nothing.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use crate::domain::limits::RateState;
use crate::domain::model::Mode;
use crate::domain::permissions::Permission;
use crate::domain::reason::Reason;
use crate::domain::resolver::ResolvedKey;

/// What is being asked. Borrowed from the request: the hot path copies nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct CheckInput<'a> {
    /// As presented; a leading `Bearer ` is accepted.
    pub credential: &'a str,
    pub permission: Option<&'a Permission<'a>>,
    pub required_mode: Option<Mode>,
    /// The immediate peer of whoever is asking about the request.
    pub peer_ip: Option<IpAddr>,
    pub forwarded_for: Option<&'a str>,
    pub origin: Option<&'a str>,
    /// The store the request names (the configured store header), if any.
    pub store_id: Option<&'a str>,
    /// The HTTP request being authorized, when the caller knows it: needed
    /// for keys whose requests must be signed, and for feed keys.
    pub request: Option<&'a RequestFacts<'a>>,
}

/// What signed-request and feed-key checks need to know about the request.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a str,
    /// Path and query, as sent.
    pub path: &'a str,
    /// SHA-256 of the body, when the caller hashed it.
    pub body_sha256: Option<[u8; 32]>,
    /// The body itself, hashed only if a signature needs it. Neither this
    /// nor `body_sha256` = the body is empty.
    pub body: Option<&'a [u8]>,
    /// The asker never sees the body (forward auth): a key whose requests
    /// are signed over it is refused, since no signature can be checked.
    pub body_withheld: bool,
    /// The signature header's value (`signing.request_header`), if present.
    pub signature: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub reason: Reason,
    /// The resolved key, when the credential got that far.
    pub key: Option<Arc<ResolvedKey>>,
    /// Why it was denied, for humans (empty when allowed); never contains secret material.
    pub message: Cow<'static, str>,
    /// The principal's rate limit after this request (`None` when unlimited,
    /// or when no principal was found).
    pub rate_limit: Option<RateState>,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.reason == Reason::Allowed
    }

    pub(super) fn deny(reason: Reason, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            reason,
            key: None,
            message: message.into(),
            rate_limit: None,
        }
    }

    pub(super) fn deny_key(
        reason: Reason,
        key: &Arc<ResolvedKey>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            reason,
            key: Some(key.clone()),
            message: message.into(),
            rate_limit: None,
        }
    }
}
