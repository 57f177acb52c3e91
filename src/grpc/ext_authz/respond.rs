//! How Envoy hears of a decision: one exhaustive table from [`Reason`] to
//! the answer, and the denial responses it sends.
//!
//! A denial is a normal `CheckResponse` carrying the HTTP response Envoy
//! sends the client. A gRPC error (UNAVAILABLE) is reserved for a decision
//! that could not be made: then Envoy's `failure_mode_allow` decides, which
//! the example configuration sets to `false`, so the request is refused.

use envoy_types::ext_authz::v3::pb::{
    CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue, HeaderValueOption,
    HttpResponse, HttpStatus,
};
use envoy_types::pb::google::rpc;
use tonic::Status;

use super::wire::Reply;
use crate::domain::limits::{RateState, rate_limit_headers};
use crate::domain::reason::Reason;

/// The limit's name in the IETF `RateLimit` fields.
pub fn limit_policy(reason: Reason) -> &'static str {
    if reason == Reason::TooManyFailures {
        "failed_auth"
    } else {
        "key"
    }
}

/// The rate-limit fields an allow adds to the downstream response.
pub fn response_headers(state: &RateState) -> Vec<HeaderValueOption> {
    rate_limit_headers("key", state)
        .into_iter()
        .map(|(name, value)| header(name, value))
        .collect()
}

/// gRPC status codes (google.rpc.Code) for the `status` field.
const RPC_INVALID_ARGUMENT: i32 = 3;
const RPC_PERMISSION_DENIED: i32 = 7;
const RPC_RESOURCE_EXHAUSTED: i32 = 8;
const RPC_UNAUTHENTICATED: i32 = 16;

/// How a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the check request itself cannot be decided on.
    BadRequest,
    /// 401 with a `WWW-Authenticate` challenge: the caller did not prove who it is.
    Unauthenticated,
    /// 403: the caller is known and not allowed.
    Forbidden,
    /// 429 with `Retry-After` and the rate-limit fields: a limit is spent.
    TooManyRequests,
}

/// What Envoy is told for a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Allow,
    Refuse(Refusal),
    /// A gRPC error: Envoy's `failure_mode_allow` decides.
    Unavailable,
}

/// The one table. Exhaustive, so a new reason cannot reach Envoy unmapped.
pub fn answer(reason: Reason) -> Answer {
    use Refusal::{BadRequest, Forbidden, TooManyRequests, Unauthenticated};
    match reason {
        Reason::RateLimited | Reason::TooManyFailures => Answer::Refuse(TooManyRequests),
        Reason::Allowed => Answer::Allow,
        Reason::InternalError => Answer::Unavailable,
        Reason::RequestInvalid | Reason::PathInvalid => Answer::Refuse(BadRequest),
        Reason::CredentialMissing
        | Reason::CredentialMalformed
        | Reason::CredentialUnknown
        | Reason::KeyRevoked
        | Reason::KeyExpired
        | Reason::KeySuspended
        | Reason::KeyRotated
        | Reason::LiveModeInactive
        | Reason::TokenUnsigned
        | Reason::TokenAlgorithmMismatch
        | Reason::TokenKeyUnknown
        | Reason::TokenSignatureInvalid
        | Reason::TokenExpired
        | Reason::TokenNotYetValid
        | Reason::TokenClaimsInvalid
        | Reason::TokenRevoked
        | Reason::SignatureMissing
        | Reason::SignatureInvalid
        | Reason::SignatureExpired => Answer::Refuse(Unauthenticated),
        Reason::ModeMismatch
        | Reason::IpNotAllowed
        | Reason::OriginNotAllowed
        | Reason::PermissionDenied
        | Reason::PlanNotEntitled
        | Reason::StoreNotAllowed
        | Reason::PathNotAllowed
        | Reason::RouteNotAllowed
        | Reason::BodyUnavailable
        | Reason::ProxyNotTrusted => Answer::Refuse(Forbidden),
    }
}

impl Refusal {
    fn http_status(self) -> u16 {
        match self {
            Refusal::BadRequest => 400,
            Refusal::Unauthenticated => 401,
            Refusal::Forbidden => 403,
            Refusal::TooManyRequests => 429,
        }
    }

    fn rpc_code(self) -> i32 {
        match self {
            Refusal::BadRequest => RPC_INVALID_ARGUMENT,
            Refusal::Unauthenticated => RPC_UNAUTHENTICATED,
            Refusal::Forbidden => RPC_PERMISSION_DENIED,
            Refusal::TooManyRequests => RPC_RESOURCE_EXHAUSTED,
        }
    }

    /// The body's `error`.
    fn error(self) -> &'static str {
        match self {
            Refusal::BadRequest => "bad_request",
            Refusal::Unauthenticated => "unauthorized",
            Refusal::Forbidden => "forbidden",
            Refusal::TooManyRequests => "too_many_requests",
        }
    }
}

/// A header Envoy sets (or overwrites) on the request or the denial.
pub fn header(name: &str, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_owned(),
            value,
            raw_value: Vec::new(),
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

impl Reply {
    /// The denial for `reason`, as [`answer`] says. A reason that is not a
    /// denial (an allow, or a decision that could not be made) is refused
    /// with 403 here: deny by default, as for a stored rule that no longer parses.
    pub fn deny(reason: Reason, message: &str) -> Self {
        Self::deny_limited(reason, message, None)
    }

    /// A denial that also says where the caller's limit stands (and, for a
    /// spent one, when to retry).
    pub fn deny_limited(reason: Reason, message: &str, limit: Option<&RateState>) -> Self {
        let refusal = match answer(reason) {
            Answer::Refuse(r) => r,
            Answer::Allow | Answer::Unavailable => Refusal::Forbidden,
        };
        Self::refuse(refusal, reason, message, limit)
    }

    /// The decision could not be made: not an answer but a gRPC error, so
    /// Envoy's `failure_mode_allow` decides.
    pub fn unavailable() -> Status {
        Status::unavailable("the decision could not be made")
    }

    fn refuse(refusal: Refusal, reason: Reason, message: &str, limit: Option<&RateState>) -> Self {
        let code = reason.code();
        let body =
            serde_json::json!({ "error": refusal.error(), "reason": code, "message": message })
                .to_string();
        let mut headers = vec![header("content-type", "application/json".to_owned())];
        if refusal == Refusal::Unauthenticated {
            // RFC 6750 §3.1: a request with no credential gets no error code.
            let challenge = if reason == Reason::CredentialMissing {
                "Bearer realm=\"latchkey\"".to_owned()
            } else {
                format!(
                    "Bearer realm=\"latchkey\", error=\"invalid_token\", error_description=\"{code}\""
                )
            };
            headers.push(header("www-authenticate", challenge));
        }
        if let Some(state) = limit {
            let policy = limit_policy(reason);
            headers.extend(
                rate_limit_headers(policy, state)
                    .into_iter()
                    .map(|(name, value)| header(name, value)),
            );
        }
        CheckResponse {
            status: Some(rpc::Status {
                code: refusal.rpc_code(),
                message: code.to_owned(),
                details: Vec::new(),
            }),
            http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                status: Some(HttpStatus {
                    code: i32::from(refusal.http_status()),
                }),
                headers,
                body,
            })),
            dynamic_metadata: None,
        }
        .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Reason; 35] = [
        Reason::Allowed,
        Reason::CredentialMissing,
        Reason::CredentialMalformed,
        Reason::CredentialUnknown,
        Reason::KeyRevoked,
        Reason::KeyExpired,
        Reason::KeySuspended,
        Reason::KeyRotated,
        Reason::ModeMismatch,
        Reason::LiveModeInactive,
        Reason::IpNotAllowed,
        Reason::OriginNotAllowed,
        Reason::PermissionDenied,
        Reason::PlanNotEntitled,
        Reason::StoreNotAllowed,
        Reason::InternalError,
        Reason::TokenUnsigned,
        Reason::TokenAlgorithmMismatch,
        Reason::TokenKeyUnknown,
        Reason::TokenSignatureInvalid,
        Reason::TokenExpired,
        Reason::TokenNotYetValid,
        Reason::TokenClaimsInvalid,
        Reason::TokenRevoked,
        Reason::SignatureMissing,
        Reason::SignatureInvalid,
        Reason::SignatureExpired,
        Reason::PathNotAllowed,
        Reason::RequestInvalid,
        Reason::PathInvalid,
        Reason::RouteNotAllowed,
        Reason::BodyUnavailable,
        Reason::ProxyNotTrusted,
        Reason::RateLimited,
        Reason::TooManyFailures,
    ];

    /// 401 exactly where the gRPC side says UNAUTHENTICATED for an admin token.
    #[test]
    fn a_401_is_an_authentication_failure() {
        for r in ALL {
            let unauthenticated = answer(r) == Answer::Refuse(Refusal::Unauthenticated);
            let expected = r.is_authentication_failure() && r != Reason::InternalError;
            assert_eq!(unauthenticated, expected, "{r:?}");
        }
    }

    fn denied(reply: &Reply) -> (i32, i32, Vec<String>, String) {
        let Reply::Message(m) = reply else {
            panic!("not a denial: {reply:?}");
        };
        let Some(HttpResponse::DeniedResponse(d)) = &m.http_response else {
            panic!("no denied response");
        };
        let headers = d
            .headers
            .iter()
            .filter_map(|h| h.header.as_ref())
            .map(|h| format!("{}: {}", h.key, h.value))
            .collect();
        (
            m.status.as_ref().map_or(0, |s| s.code),
            d.status.as_ref().map_or(0, |s| s.code),
            headers,
            d.body.clone(),
        )
    }

    #[test]
    fn denials_carry_status_challenge_and_body() {
        let (rpc, http, headers, body) = denied(&Reply::deny(Reason::CredentialMissing, "none"));
        assert_eq!((rpc, http), (16, 401));
        assert_eq!(
            headers,
            [
                "content-type: application/json",
                "www-authenticate: Bearer realm=\"latchkey\""
            ]
        );
        assert_eq!(
            body,
            r#"{"error":"unauthorized","message":"none","reason":"CREDENTIAL_MISSING"}"#
        );
        let (rpc, http, headers, _) = denied(&Reply::deny(Reason::KeyRevoked, "revoked"));
        assert_eq!((rpc, http), (16, 401));
        assert!(headers[1].ends_with("error=\"invalid_token\", error_description=\"KEY_REVOKED\""));
        let (rpc, http, headers, body) = denied(&Reply::deny(Reason::PathInvalid, "bad"));
        assert_eq!((rpc, http, headers.len()), (3, 400, 1));
        assert!(body.contains(r#""error":"bad_request""#), "{body}");
        let (rpc, http, headers, body) = denied(&Reply::deny(Reason::RouteNotAllowed, "no"));
        assert_eq!((rpc, http, headers.len()), (7, 403, 1));
        assert!(body.contains(r#""error":"forbidden""#), "{body}");
        // Not a denial, yet asked for as one: refused all the same.
        let (rpc, http, _, body) = denied(&Reply::deny(Reason::InternalError, "rule"));
        assert_eq!((rpc, http), (7, 403));
        assert!(body.contains("INTERNAL_ERROR"), "{body}");
        assert_eq!(Reply::unavailable().code(), tonic::Code::Unavailable);
    }
}
