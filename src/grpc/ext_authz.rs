//! `envoy.service.auth.v3.Authorization/Check`: Envoy's external
//! authorization. The request Envoy describes is judged by the gate
//! (`domain::gate`: route rules, path normalisation, credential sources,
//! the client-address rule, then the same engine as
//! `latchkey.v1.CheckService`), which forward auth for nginx, Traefik and
//! Caddy shares; this adapter reads Envoy's message and writes its answer.
//!
//! A denial is a normal `CheckResponse` carrying an HTTP response for Envoy
//! to send; a gRPC error only when Latchkey cannot decide (see `respond.rs`,
//! the one table from reason to answer).

mod principal;
mod request;
mod respond;
mod wire;

use std::sync::Arc;

use tonic::Status;

use principal::PRINCIPAL_FIELDS;
use request::{AddressKind, CheckRequest, Headers};
pub use wire::AuthorizationService;
use wire::Reply;

use super::state::GrpcState;
use crate::domain::cache::SlotOwner;
use crate::domain::gate::{self, Body, CredentialSource, Gate, Verdict};
use crate::domain::limits::RateState;
use crate::domain::observe;
use crate::domain::reason::Reason;
use crate::domain::resolver::ResolvedKey;
use crate::telemetry::metrics::Api;

/// Validated `[ext_authz]` settings that only Envoy's answers use; how a
/// request is read is the gate's (`domain::gate::GateSettings`).
#[derive(Debug, Clone)]
pub struct ExtAuthzSettings {
    pub strip_credential: bool,
    pub header_prefix: String,
    pub dynamic_metadata: bool,
}

pub struct ExtAuthzApi {
    /// This adapter's entries in the per-thread principal cache (the
    /// principal depends on its settings).
    owner: SlotOwner,
    gate: Arc<Gate>,
    settings: ExtAuthzSettings,
    /// The principal headers' full names, built once: account, key, mode, scopes, plan.
    names: [String; 5],
}

impl ExtAuthzApi {
    pub fn new(state: &GrpcState) -> Self {
        let settings = state.ext_authz.clone();
        let names = PRINCIPAL_FIELDS.map(|f| format!("{}{f}", settings.header_prefix));
        Self {
            owner: SlotOwner::next(),
            names,
            gate: state.gate.clone(),
            settings,
        }
    }
}

impl gate::Headers for Headers<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        Headers::get(self, name)
    }

    fn only(&self, name: &str) -> gate::Field<'_> {
        Headers::only(self, name)
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

/// The lean decoder end to end, for `fuzz/fuzz_targets/ext_authz_decode.rs`:
/// decode as the codec does (raw headers folded in), then read every field
/// the adapter reads. Never panics on any input; returns whether an HTTP
/// request was found.
#[doc(hidden)]
pub fn decode_for_fuzzing(bytes: &[u8]) -> bool {
    use prost::Message as _;
    let Ok(mut req) = CheckRequest::decode(bytes) else {
        return false;
    };
    req.fold_raw_headers();
    let Some(v) = view(&req) else {
        return false;
    };
    for name in [
        "authorization",
        "x-api-key",
        ":authority",
        "origin",
        "x-forwarded-for",
    ] {
        let _ = v.headers.get(name);
        let _ = v.headers.only(name);
    }
    let _ = v.headers.names_with_prefix("x-");
    !v.method.is_empty()
        || !v.path.is_empty()
        || !v.host.is_empty()
        || v.source.is_some()
        || v.body.is_some()
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

impl ExtAuthzApi {
    fn allowed(
        &self,
        view: &HttpView<'_>,
        key: Option<&Arc<ResolvedKey>>,
        credential: Option<CredentialSource>,
        rate_limit: Option<&RateState>,
    ) -> Reply {
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
        if self.settings.strip_credential {
            match credential {
                Some(CredentialSource::Authorization) => remove.push("authorization".to_owned()),
                Some(CredentialSource::ApiKeyHeader) => {
                    remove.push(self.gate.settings().api_key_header.clone());
                }
                Some(CredentialSource::QueryParam) | None => {}
            }
        }
        // The limit's fields go to the downstream response, so that clients
        // can slow down before they are refused.
        let add = rate_limit
            .map(respond::response_headers)
            .unwrap_or_default();
        Reply::Allowed {
            principal,
            remove,
            add,
        }
    }
}

impl ExtAuthzApi {
    /// A denial is an answer, not an error: `Err` only when the decision
    /// could not be made (then Envoy's `failure_mode_allow` decides).
    async fn check(&self, req: CheckRequest) -> Result<Reply, Status> {
        let started = std::time::Instant::now();
        let Some(view) = view(&req) else {
            observe::decided(Api::ExtAuthz, Reason::RequestInvalid, None, started);
            return Ok(Reply::deny(
                Reason::RequestInvalid,
                "the check request carries no HTTP request attributes",
            ));
        };
        let request = gate::Request {
            method: view.method,
            host: view.host,
            path: view.path,
            headers: view.headers,
            source: view.source,
            own_hops: 0,
            body: view.body.map_or(Body::Absent, Body::Bytes),
        };
        let verdict = self.gate.decide(&request).await;
        match &verdict {
            Verdict::Allow { key, .. } => {
                observe::decided(Api::ExtAuthz, Reason::Allowed, key.as_deref(), started);
            }
            Verdict::Deny { reason, .. } => observe::decided(Api::ExtAuthz, *reason, None, started),
            Verdict::Unavailable => {
                observe::decided(Api::ExtAuthz, Reason::InternalError, None, started);
            }
        }
        match verdict {
            Verdict::Allow {
                key,
                credential,
                rate_limit,
            } => Ok(self.allowed(&view, key.as_ref(), credential, rate_limit.as_ref())),
            Verdict::Deny {
                reason,
                message,
                rate_limit,
            } => Ok(Reply::deny_limited(reason, &message, rate_limit.as_ref())),
            Verdict::Unavailable => Err(Reply::unavailable()),
        }
    }
}
