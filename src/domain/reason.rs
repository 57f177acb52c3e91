//! The decision vocabulary: why a request was allowed or denied. Stable
//! codes that clients switch on; shared by every adapter and by the token
//! verifier, so it depends on nothing but the model.

use super::model::KeyStatus;

/// Why a decision came out as it did. Stable: clients switch on these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Allowed,
    CredentialMissing,
    CredentialMalformed,
    CredentialUnknown,
    KeyRevoked,
    KeyExpired,
    KeySuspended,
    KeyRotated,
    ModeMismatch,
    LiveModeInactive,
    IpNotAllowed,
    OriginNotAllowed,
    PermissionDenied,
    PlanNotEntitled,
    StoreNotAllowed,
    InternalError,
    /// A JWT with `alg: none`.
    TokenUnsigned,
    /// A JWT whose `alg` is not its key's (e.g. HS256 with the public key as secret).
    TokenAlgorithmMismatch,
    /// A JWT whose `kid` names no current signing key.
    TokenKeyUnknown,
    TokenSignatureInvalid,
    TokenExpired,
    TokenNotYetValid,
    /// Wrong `iss` or `aud`.
    TokenClaimsInvalid,
    TokenRevoked,
    SignatureMissing,
    SignatureInvalid,
    SignatureExpired,
    PathNotAllowed,
    /// ext_authz: the check request carries no HTTP request attributes.
    RequestInvalid,
    /// ext_authz: the request path cannot be normalised.
    PathInvalid,
    /// ext_authz: no route rule covers the request.
    RouteNotAllowed,
    /// Forward auth: the key's requests must be signed over their body,
    /// which a forward-auth proxy never sends.
    BodyUnavailable,
    /// Forward auth: asked by an address outside `forward_auth.trusted_proxies`.
    ProxyNotTrusted,
    /// The principal's rate limit is spent for now.
    RateLimited,
    /// This client address failed to authenticate too often: it is refused,
    /// without a lookup, for a cool-down.
    TooManyFailures,
}

impl Reason {
    /// The stable code, as logged and as Envoy adapters will put it in bodies.
    pub fn code(self) -> &'static str {
        match self {
            Reason::Allowed => "ALLOWED",
            Reason::CredentialMissing => "CREDENTIAL_MISSING",
            Reason::CredentialMalformed => "CREDENTIAL_MALFORMED",
            Reason::CredentialUnknown => "CREDENTIAL_UNKNOWN",
            Reason::KeyRevoked => "KEY_REVOKED",
            Reason::KeyExpired => "KEY_EXPIRED",
            Reason::KeySuspended => "KEY_SUSPENDED",
            Reason::KeyRotated => "KEY_ROTATED",
            Reason::ModeMismatch => "MODE_MISMATCH",
            Reason::LiveModeInactive => "LIVE_MODE_INACTIVE",
            Reason::IpNotAllowed => "IP_NOT_ALLOWED",
            Reason::OriginNotAllowed => "ORIGIN_NOT_ALLOWED",
            Reason::PermissionDenied => "PERMISSION_DENIED",
            Reason::PlanNotEntitled => "PLAN_NOT_ENTITLED",
            Reason::StoreNotAllowed => "STORE_NOT_ALLOWED",
            Reason::InternalError => "INTERNAL_ERROR",
            Reason::TokenUnsigned => "TOKEN_UNSIGNED",
            Reason::TokenAlgorithmMismatch => "TOKEN_ALGORITHM_MISMATCH",
            Reason::TokenKeyUnknown => "TOKEN_KEY_UNKNOWN",
            Reason::TokenSignatureInvalid => "TOKEN_SIGNATURE_INVALID",
            Reason::TokenExpired => "TOKEN_EXPIRED",
            Reason::TokenNotYetValid => "TOKEN_NOT_YET_VALID",
            Reason::TokenClaimsInvalid => "TOKEN_CLAIMS_INVALID",
            Reason::TokenRevoked => "TOKEN_REVOKED",
            Reason::SignatureMissing => "SIGNATURE_MISSING",
            Reason::SignatureInvalid => "SIGNATURE_INVALID",
            Reason::SignatureExpired => "SIGNATURE_EXPIRED",
            Reason::PathNotAllowed => "PATH_NOT_ALLOWED",
            Reason::RequestInvalid => "REQUEST_INVALID",
            Reason::PathInvalid => "PATH_INVALID",
            Reason::RouteNotAllowed => "ROUTE_NOT_ALLOWED",
            Reason::BodyUnavailable => "BODY_UNAVAILABLE",
            Reason::ProxyNotTrusted => "PROXY_NOT_TRUSTED",
            Reason::RateLimited => "RATE_LIMITED",
            Reason::TooManyFailures => "TOO_MANY_FAILURES",
        }
    }

    /// Did the caller fail to prove who it is (as opposed to being refused)?
    pub fn is_authentication_failure(self) -> bool {
        !matches!(
            self,
            Reason::Allowed
                | Reason::PermissionDenied
                | Reason::PlanNotEntitled
                | Reason::ModeMismatch
                | Reason::IpNotAllowed
                | Reason::OriginNotAllowed
                | Reason::StoreNotAllowed
                | Reason::PathNotAllowed
                | Reason::RequestInvalid
                | Reason::PathInvalid
                | Reason::RouteNotAllowed
                | Reason::BodyUnavailable
                | Reason::ProxyNotTrusted
                | Reason::RateLimited
                | Reason::TooManyFailures
        )
    }
}

/// Why a key in this state may not be used; `None` when it is active. Shared
/// by API keys and the tokens minted from them.
pub fn key_status_denial(status: KeyStatus) -> Option<(Reason, &'static str)> {
    match status {
        KeyStatus::Active => None,
        KeyStatus::Revoked => Some((Reason::KeyRevoked, "the key was revoked")),
        KeyStatus::Suspended => Some((Reason::KeySuspended, "the key is suspended")),
        KeyStatus::Expired => Some((Reason::KeyExpired, "the key has expired")),
        KeyStatus::Rotated => Some((
            Reason::KeyRotated,
            "the key was rotated and its overlap window has ended",
        )),
    }
}
