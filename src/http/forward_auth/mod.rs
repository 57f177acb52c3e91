//! Forward auth: `/forward-auth` (any method) on an internal listener
//! (`--forward-auth-addr`, never the public HTTP port) answers nginx
//! `auth_request`, ingress-nginx `auth-url`, Traefik `ForwardAuth` and Caddy
//! `forward_auth`: may the request the proxy describes pass?
//!
//! The proxy's description is read by its flavor (`describe.rs`), judged by
//! the same gate as Envoy's ext_authz (`domain::gate`: route rules, path
//! normalisation, credential sources, the client-address rule), and
//! answered as the proxy understands it (`answer.rs`). Only the addresses in
//! `forward_auth.trusted_proxies` are believed; anyone else is refused,
//! since whoever can ask can describe any request.
//!
//! The client address is the `X-Forwarded-For` entry the proxy appended
//! (the rightmost), or with `ext_authz.trusted_hops = N` the one N entries
//! further left. The body never reaches this endpoint: keys whose requests
//! are signed over their body are refused here (`BODY_UNAVAILABLE`).

mod answer;
mod describe;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::any;
use ipnet::IpNet;

use answer::Names;
pub use describe::Flavor;
use describe::{Style, Undescribed, describe, style_of};

use crate::domain::gate::{Body, Gate, Headers, Request, Verdict};
use crate::domain::network;
use crate::domain::reason::Reason;

/// Validated `[forward_auth]` settings.
#[derive(Debug, Clone)]
pub struct ForwardAuthSettings {
    pub flavor: Flavor,
    pub trusted_proxies: Vec<IpNet>,
    /// The principal headers' prefix (`ext_authz.header_prefix`).
    pub header_prefix: String,
}

pub struct ForwardAuth {
    gate: Arc<Gate>,
    settings: ForwardAuthSettings,
    names: Names,
}

/// An axum header map, read as the gate reads headers.
#[derive(Debug, Clone, Copy)]
pub struct HeaderView<'a>(pub &'a HeaderMap);

impl<'a> HeaderView<'a> {
    /// The value of `name`, of its last occurrence if it repeats; `None`
    /// also when it is not visible ASCII (which can only deny).
    pub fn value(self, name: &str) -> Option<&'a str> {
        self.0.get_all(name).iter().next_back()?.to_str().ok()
    }
}

impl Headers for HeaderView<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.value(name)
    }
}

pub fn router(forward_auth: Arc<ForwardAuth>) -> Router {
    Router::new()
        .route("/forward-auth", any(check))
        .with_state(forward_auth)
}

async fn check(
    State(fa): State<Arc<ForwardAuth>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    fa.check(peer.ip(), &headers).await
}

impl ForwardAuth {
    pub fn new(gate: Arc<Gate>, settings: ForwardAuthSettings) -> Result<Self, String> {
        Ok(Self {
            names: Names::new(&settings.header_prefix)?,
            gate,
            settings,
        })
    }

    /// The answer for the request `headers` describe, asked by `peer`.
    pub async fn check(&self, peer: IpAddr, headers: &HeaderMap) -> Response {
        let flavor = self.settings.flavor;
        if !network::allowed(peer, &self.settings.trusted_proxies) {
            return answer::denied(
                &self.names,
                style_of(flavor, headers),
                Reason::ProxyNotTrusted,
                "the asking address is not in forward_auth.trusted_proxies",
            );
        }
        let (original, style) = match describe(flavor, headers) {
            Ok(d) => d,
            Err(Undescribed(message)) => {
                return answer::denied(
                    &self.names,
                    style_of(flavor, headers),
                    Reason::RequestInvalid,
                    &message,
                );
            }
        };
        if style == Style::Nginx
            && let Some(name) = headers.keys().find(|n| {
                n.as_str().starts_with(&self.settings.header_prefix)
                    && n.as_str() != self.gate.signature_header()
            })
        {
            // nginx cannot remove headers by pattern, and only the five it
            // is told to set would be replaced: refuse, so that the app
            // never sees a client's own header in Latchkey's namespace (but
            // the client's signature, which is its own to send).
            let message = format!(
                "the request carries `{name}`, a header only Latchkey sets, which nginx cannot remove"
            );
            return answer::denied(&self.names, style, Reason::RequestInvalid, &message);
        }
        let request = Request {
            method: original.method,
            host: original.host,
            path: original.target,
            headers: HeaderView(headers),
            source: None,
            own_hops: 1,
            body: Body::Withheld,
        };
        match self.gate.decide(&request).await {
            Verdict::Allow {
                key, rate_limit, ..
            } => answer::allowed(&self.names, style, key.as_deref(), rate_limit.as_ref()),
            Verdict::Deny {
                reason,
                message,
                rate_limit,
            } => answer::denied_limited(&self.names, style, reason, &message, rate_limit.as_ref()),
            Verdict::Unavailable => answer::unavailable(&self.names, style),
        }
    }
}
