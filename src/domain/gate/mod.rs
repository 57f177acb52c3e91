//! The gate: may this HTTP request pass? One request as a proxy describes
//! it (method, host, path, headers, where it came from), judged by the route
//! rules and the decision engine (DESIGN.md §4).
//!
//! Every proxy adapter asks here — Envoy's ext_authz and the forward-auth
//! endpoint for nginx, Traefik and Caddy — so a request is judged the same
//! way whichever proxy is in front: the same path normalisation, public
//! routes, route rules, credential sources and client-address rule. The
//! adapters only read their wire format and write the answer.
//!
//! The steps, in order; the first that fails decides:
//! 1. normalise the path (an encoded separator is refused: `PATH_INVALID`);
//! 2. a public route passes without a credential;
//! 3. a request no rule covers is refused (`ROUTE_NOT_ALLOWED`), with or
//!    without a credential;
//! 4. the credential: `Authorization: Bearer`, else the API-key header,
//!    else (when configured) the query parameter;
//! 5. the decision engine, for the rule's permission (its last step is the
//!    key's rate limit, which both verdicts carry for the headers).

mod request;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::sync::Arc;

pub use request::{CredentialSource, Headers};
use request::{client_ip, credential};

use super::check::{CheckInput, RequestFacts};
use super::limits::RateState;
use super::permissions::Permission;
use super::reason::Reason;
use super::resolver::ResolvedKey;
use super::routes::{RouteError, RouteMatcher, RouteRule, normalize_path};
use super::services::Services;

/// How requests are read, whichever proxy describes them.
#[derive(Debug, Clone)]
pub struct GateSettings {
    /// A header that may carry the API key besides `Authorization: Bearer`.
    pub api_key_header: String,
    /// A query parameter that may carry the API key (off when `None`).
    pub query_param: Option<String>,
    /// Routes served without a credential: (method, path template).
    pub public_routes: Vec<(String, String)>,
    /// How many proxies in front of the asking one append to
    /// `X-Forwarded-For`; 0 = the asking proxy's view of the client.
    pub trusted_hops: u8,
    /// The header naming a store, checked against the key's account.
    pub store_header: Option<String>,
}

/// The body of the request being judged, as far as the gate can know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a> {
    /// The proxy sent none: the body is empty (or was not forwarded, which
    /// a signature over it then shows).
    Absent,
    Bytes(&'a [u8]),
    /// The proxy never sends the body (forward auth): a key whose requests
    /// are signed over their body is refused here.
    Withheld,
}

/// One request as the proxy describes it. Borrowed: nothing is copied.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a, H> {
    pub method: &'a str,
    /// Host or `:authority` (a port is ignored).
    pub host: &'a str,
    /// Path and query, as the client sent them.
    pub path: &'a str,
    pub headers: H,
    /// Where the asking proxy saw the request come from, when it says so
    /// itself (Envoy's source address).
    pub source: Option<&'a str>,
    /// `X-Forwarded-For` entries the asking proxy itself appended: 0 for
    /// Envoy (whose view is `source`), 1 behind a forward-auth proxy.
    pub own_hops: u8,
    pub body: Body<'a>,
}

/// What the gate says.
#[derive(Debug)]
pub enum Verdict {
    /// Pass, with the key's principal (none on a public route).
    Allow {
        key: Option<Arc<ResolvedKey>>,
        /// Where the credential was found (to strip it), if one was.
        credential: Option<CredentialSource>,
        /// The key's limit, for the headers on the downstream response.
        rate_limit: Option<RateState>,
    },
    /// Refuse, for this reason. Never secret: the message is for the caller.
    Deny {
        reason: Reason,
        message: Cow<'static, str>,
        /// The limit that refused (`RATE_LIMITED`, `TOO_MANY_FAILURES`) or
        /// where the key's limit stands.
        rate_limit: Option<RateState>,
    },
    /// The decision could not be made (the store is unreachable): the
    /// adapter answers so that the proxy fails closed.
    Unavailable,
}

impl Verdict {
    fn deny(reason: Reason, message: impl Into<Cow<'static, str>>) -> Self {
        Verdict::Deny {
            reason,
            message: message.into(),
            rate_limit: None,
        }
    }
}

pub struct Gate {
    services: Arc<Services>,
    settings: GateSettings,
    public: RouteMatcher,
}

impl Gate {
    /// Fails only on a public route that is not a valid rule (config
    /// validation has checked them already).
    pub fn new(services: Arc<Services>, settings: GateSettings) -> Result<Self, RouteError> {
        let rules: Vec<RouteRule> = settings
            .public_routes
            .iter()
            .enumerate()
            .map(|(i, (method, path))| RouteRule {
                id: format!("public-{i}"),
                host: None,
                method: method.clone(),
                path: path.clone(),
                // Never checked: a public route needs no permission.
                permission: "public.route".to_owned(),
            })
            .collect();
        Ok(Self {
            public: RouteMatcher::new(&rules)?,
            services,
            settings,
        })
    }

    pub fn settings(&self) -> &GateSettings {
        &self.settings
    }

    /// The header a signed request's signature travels in.
    pub fn signature_header(&self) -> &str {
        &self.services.signing.settings().request_header
    }

    /// Judges `req`. A denial is an answer; [`Verdict::Unavailable`] only
    /// when the decision could not be made.
    pub async fn decide<H: Headers>(&self, req: &Request<'_, H>) -> Verdict {
        let path = match normalize_path(req.path) {
            Ok(p) => p,
            Err(e) => return Verdict::deny(Reason::PathInvalid, e.to_string()),
        };
        let (source, presented) = credential(&req.headers, req.path, &self.settings);
        if self
            .public
            .find(Some(req.host), req.method, &path)
            .is_some()
        {
            return Verdict::Allow {
                key: None,
                credential: source,
                rate_limit: None,
            };
        }
        let Some(required) = self
            .services
            .routes
            .permission_for(Some(req.host), req.method, &path)
        else {
            return Verdict::deny(Reason::RouteNotAllowed, "no route rule covers this request");
        };
        let Some(presented) = presented else {
            return Verdict::deny(Reason::CredentialMissing, "no credential was presented");
        };
        // Rules were validated when created; an unparsable one denies.
        let Ok(permission) = Permission::parse(&required) else {
            return Verdict::deny(Reason::InternalError, "the matching rule is invalid");
        };
        let (body, body_withheld) = match req.body {
            Body::Absent => (None, false),
            Body::Bytes(b) => (Some(b), false),
            Body::Withheld => (None, true),
        };
        let hops = self.settings.trusted_hops.saturating_add(req.own_hops);
        let decision = self
            .services
            .checker
            .decide(CheckInput {
                credential: presented,
                permission: Some(&permission),
                required_mode: None,
                peer_ip: client_ip(req.source, &req.headers, hops),
                forwarded_for: None,
                origin: req.headers.get("origin"),
                store_id: self
                    .settings
                    .store_header
                    .as_deref()
                    .and_then(|h| req.headers.get(h)),
                request: Some(&RequestFacts {
                    method: req.method,
                    path: req.path,
                    body_sha256: None,
                    body,
                    body_withheld,
                    signature: req.headers.get(self.signature_header()),
                }),
            })
            .await;
        match decision.reason {
            Reason::Allowed => Verdict::Allow {
                key: decision.key,
                credential: source,
                rate_limit: decision.rate_limit,
            },
            Reason::InternalError => Verdict::Unavailable,
            reason => Verdict::Deny {
                reason,
                message: decision.message,
                rate_limit: decision.rate_limit,
            },
        }
    }
}
