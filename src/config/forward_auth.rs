//! `[forward_auth]`: the forward-auth endpoint for nginx, ingress-nginx,
//! Traefik and Caddy; builds its listener address and the adapter's
//! `ForwardAuthSettings`. How requests are read (public routes, credential
//! sources, trusted hops, the principal prefix) is `[ext_authz]`'s, shared.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{ConfigError, invalid};
use crate::domain::network::parse_cidr;
use crate::http::forward_auth::{Flavor, ForwardAuthSettings};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardAuthConfig {
    /// Serve `/forward-auth`. Default false; `--forward-auth-addr` turns it on.
    pub enabled: bool,
    /// Its listener: internal, never the public HTTP port. Default `127.0.0.1:8081`.
    pub addr: String,
    /// Whose description of the request is believed: `nginx` (X-Original-URI
    /// or -URL, X-Original-Method), `traefik` or `caddy` (X-Forwarded-Method,
    /// -Uri, -Host), or `auto` (whichever set is present; a request with both
    /// is refused). Default `auto`.
    pub flavor: String,
    /// Who may ask (IP addresses or CIDR blocks); anyone else is refused.
    /// Default `["127.0.0.0/8", "::1/128"]`.
    pub trusted_proxies: Vec<String>,
}

impl Default for ForwardAuthConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            addr: "127.0.0.1:8081".to_owned(),
            flavor: "auto".to_owned(),
            trusted_proxies: vec!["127.0.0.0/8".to_owned(), "::1/128".to_owned()],
        }
    }
}

/// The forward-auth listener and how it answers.
#[derive(Debug, Clone)]
pub struct ForwardAuthListener {
    pub addr: SocketAddr,
    pub settings: ForwardAuthSettings,
}

impl ForwardAuthConfig {
    /// `None` when forward auth is off. `header_prefix` is ext_authz's, validated.
    pub(super) fn validate(
        &self,
        header_prefix: &str,
    ) -> Result<Option<ForwardAuthListener>, ConfigError> {
        if !self.enabled {
            return Ok(None);
        }
        let addr = self.addr.parse::<SocketAddr>().map_err(|_| {
            invalid(
                "forward_auth.addr",
                format!("`{}` is not an address like 127.0.0.1:8081", self.addr),
            )
        })?;
        let flavor = Flavor::parse(&self.flavor).ok_or_else(|| {
            invalid(
                "forward_auth.flavor",
                format!("`{}` is not nginx, traefik, caddy or auto", self.flavor),
            )
        })?;
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .map(|s| {
                parse_cidr(s).map_err(|e| invalid("forward_auth.trusted_proxies", e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if trusted_proxies.is_empty() {
            return Err(invalid(
                "forward_auth.trusted_proxies",
                "name at least one address: nobody else may ask",
            ));
        }
        Ok(Some(ForwardAuthListener {
            addr,
            settings: ForwardAuthSettings {
                flavor,
                trusted_proxies,
                header_prefix: header_prefix.to_owned(),
            },
        }))
    }
}
