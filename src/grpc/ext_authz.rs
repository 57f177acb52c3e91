//! `envoy.service.auth.v3.Authorization/Check`: Envoy's external
//! authorization, decided by the same engine as `latchkey.v1.CheckService`.
//!
//! A denial is a normal `CheckResponse` carrying an HTTP response for Envoy
//! to send; a gRPC error only when Latchkey cannot decide (see `respond.rs`,
//! the one table from reason to answer).

mod principal;
mod request;
mod respond;
mod wire;

use std::net::IpAddr;
use std::sync::Arc;

use tonic::Status;

use principal::PRINCIPAL_FIELDS;
use request::{AddressKind, CheckRequest, Headers};
use respond::{Answer, answer};
pub use wire::AuthorizationService;
use wire::Reply;

use super::state::GrpcState;
use crate::domain::cache::SlotOwner;
use crate::domain::check::{CheckInput, Decision, RequestFacts};
use crate::domain::credential::strip_bearer;
use crate::domain::network::parse_ip_loose;
use crate::domain::permissions::Permission;
use crate::domain::reason::Reason;
use crate::domain::routes::{RouteMatcher, RouteRule, normalize_path};
use crate::domain::services::Services;

/// Validated `[ext_authz]` settings.
#[derive(Debug, Clone)]
pub struct ExtAuthzSettings {
    pub api_key_header: String,
    pub query_param: Option<String>,
    pub strip_credential: bool,
    pub header_prefix: String,
    /// Parsed `public_routes`: (method, path template).
    pub public_routes: Vec<(String, String)>,
    pub trusted_hops: u8,
    pub dynamic_metadata: bool,
}

pub struct ExtAuthzApi {
    /// This adapter's entries in the per-thread principal cache (the
    /// principal depends on its settings).
    owner: SlotOwner,
    services: Arc<Services>,
    /// The header naming a store, checked against the key's account.
    store_header: Option<String>,
    settings: ExtAuthzSettings,
    public: RouteMatcher,
    /// The principal headers' full names, built once: account, key, mode, scopes, plan.
    names: [String; 5],
}

impl ExtAuthzApi {
    pub fn new(state: &GrpcState) -> Result<Self, crate::domain::routes::RouteError> {
        let settings = state.ext_authz.clone();
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
        let names = PRINCIPAL_FIELDS.map(|f| format!("{}{f}", settings.header_prefix));
        Ok(Self {
            owner: SlotOwner::next(),
            names,
            public: RouteMatcher::new(&rules)?,
            services: state.services.clone(),
            store_header: state.store_header.clone(),
            settings,
        })
    }
}

struct HttpView<'a> {
    method: &'a str,
    path: &'a str,
    host: &'a str,
    headers: Headers<'a>,
    source: Option<&'a str>,
    /// The body Envoy forwarded (`with_request_body`); `None` when it sent
    /// none. A truncated body hashes to something the client did not sign, so
    /// a partial body denies a signed request rather than passing it.
    body: Option<&'a [u8]>,
}

fn view(req: &CheckRequest) -> Option<HttpView<'_>> {
    let attrs = req.attributes.as_ref()?;
    let http = attrs.request.as_ref()?.http.as_ref()?;
    let source = attrs
        .source
        .as_ref()
        .and_then(|p| p.address.as_ref())
        .and_then(|a| a.address.as_ref())
        .and_then(|a| match a {
            AddressKind::SocketAddress(s) => Some(s.address.as_str()),
            _ => None,
        });
    let headers = Headers(&http.headers);
    let host = if http.host.is_empty() {
        headers.get(":authority").unwrap_or_default()
    } else {
        http.host.as_str()
    };
    Some(HttpView {
        method: &http.method,
        path: &http.path,
        host,
        headers,
        source,
        body: if !http.raw_body.is_empty() {
            Some(&http.raw_body)
        } else if !http.body.is_empty() {
            Some(http.body.as_bytes())
        } else {
            None
        },
    })
}

/// The client's address: Envoy's source address, or with `trusted_hops = N`
/// the N-th `X-Forwarded-For` entry from the right (the one the outermost
/// trusted proxy appended).
fn client_ip(view: &HttpView<'_>, trusted_hops: u8) -> Option<IpAddr> {
    if trusted_hops == 0 {
        return view.source.and_then(parse_ip_loose);
    }
    let xff = view.headers.get("x-forwarded-for")?;
    let hops: Vec<&str> = xff.split(',').collect();
    let i = hops.len().checked_sub(usize::from(trusted_hops))?;
    parse_ip_loose(hops[i])
}

fn query_value<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let query = path.split_once('?')?.1.split('#').next()?;
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

impl ExtAuthzApi {
    /// Which header carried the credential (to strip it), and the credential.
    fn credential<'a>(&'a self, view: &HttpView<'a>) -> (Option<&'a str>, Option<&'a str>) {
        if let Some(auth) = view.headers.get("authorization") {
            let token = strip_bearer(auth);
            if token.len() != auth.trim().len() {
                return (Some("authorization"), Some(token));
            }
        }
        let api_key_header = self.settings.api_key_header.as_str();
        if let Some(v) = view.headers.get(api_key_header) {
            return (Some(api_key_header), Some(v));
        }
        if let Some(param) = &self.settings.query_param
            && let Some(v) = query_value(view.path, param)
        {
            return (None, Some(v));
        }
        (None, None)
    }

    fn allowed(
        &self,
        view: &HttpView<'_>,
        decision: Option<&Decision>,
        credential_header: Option<&str>,
    ) -> Reply {
        let key = decision.and_then(|d| d.key.as_ref());
        let principal = key.map_or_else(Default::default, |k| self.principal(k));
        // A client must never be able to forge a principal header: those we
        // set are overwritten, any other incoming one of ours goes.
        let mut remove: Vec<String> = view
            .headers
            .names_with_prefix(&self.settings.header_prefix)
            .into_iter()
            .filter(|h| key.is_none() || !self.names.iter().any(|n| n == h))
            .map(str::to_owned)
            .collect();
        if self.settings.strip_credential
            && let Some(h) = credential_header
        {
            remove.push(h.to_owned());
        }
        Reply::Allowed { principal, remove }
    }
}

impl ExtAuthzApi {
    /// A denial is an answer, not an error: `Err` only when the decision
    /// could not be made (then Envoy's `failure_mode_allow` decides).
    async fn check(&self, req: CheckRequest) -> Result<Reply, Status> {
        let Some(view) = view(&req) else {
            return Ok(Reply::deny(
                Reason::RequestInvalid,
                "the check request carries no HTTP request attributes",
            ));
        };
        let path = match normalize_path(view.path) {
            Ok(p) => p,
            Err(e) => {
                return Ok(Reply::deny(Reason::PathInvalid, &e.to_string()));
            }
        };
        let (credential_header, credential) = self.credential(&view);
        if self
            .public
            .find(Some(view.host), view.method, &path)
            .is_some()
        {
            return Ok(self.allowed(&view, None, credential_header));
        }
        let Some(required) =
            self.services
                .routes
                .permission_for(Some(view.host), view.method, &path)
        else {
            return Ok(Reply::deny(
                Reason::RouteNotAllowed,
                "no route rule covers this request",
            ));
        };
        let Some(credential) = credential else {
            return Ok(Reply::deny(
                Reason::CredentialMissing,
                "no credential was presented",
            ));
        };
        // Rules were validated when created; an unparsable one denies.
        let Ok(permission) = Permission::parse(&required) else {
            return Ok(Reply::deny(
                Reason::InternalError,
                "the matching rule is invalid",
            ));
        };
        let decision = self
            .services
            .checker
            .decide(CheckInput {
                credential,
                permission: Some(&permission),
                required_mode: None,
                peer_ip: client_ip(&view, self.settings.trusted_hops),
                forwarded_for: None,
                origin: view.headers.get("origin"),
                store_id: self
                    .store_header
                    .as_deref()
                    .and_then(|h| view.headers.get(h)),
                request: Some(&RequestFacts {
                    method: view.method,
                    path: view.path,
                    body_sha256: None,
                    body: view.body,
                    signature: view
                        .headers
                        .get(&self.services.signing.settings().request_header),
                }),
            })
            .await;
        let response = match answer(decision.reason) {
            Answer::Allow => self.allowed(&view, Some(&decision), credential_header),
            Answer::Refuse(_) => Reply::deny(decision.reason, &decision.message),
            Answer::Unavailable => return Err(Reply::unavailable()),
        };
        Ok(response)
    }
}
