//! `[ext_authz]`: how the requests a proxy describes are read (the gate's
//! `GateSettings`, shared by Envoy's ext_authz and forward auth) and what
//! Envoy's answers carry (the adapter's `ExtAuthzSettings`).

use serde::Deserialize;

use super::{ConfigError, header_name, invalid};
use crate::domain::gate::GateSettings;
use crate::domain::routes::PathParams;
use crate::grpc::ext_authz::ExtAuthzSettings;

/// Envoy external authorization (`envoy.service.auth.v3.Authorization`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtAuthzConfig {
    /// A header that may carry the API key besides `Authorization: Bearer`. Default `x-api-key`.
    pub api_key_header: String,
    /// A query parameter that may carry the API key. Off by default: URLs end up in logs.
    pub query_param: Option<String>,
    /// Remove the credential header before the request goes upstream. Default false.
    pub strip_credential: bool,
    /// Prefix of the principal headers added on allow (and stripped from requests). Default `x-latchkey-`.
    pub header_prefix: String,
    /// Routes served without a credential, as `METHOD /path/template`. Default none.
    pub public_routes: Vec<String>,
    /// How many proxies in front of Envoy (or of the forward-auth proxy,
    /// or of the caller of `CheckService/Check`) append to
    /// `X-Forwarded-For`, whatever their addresses; 0 = use Envoy's source
    /// address (behind forward auth: the entry the proxy appended). One
    /// rule with `check.trusted_proxies` (`network::ClientIpRule`). Default 0.
    pub trusted_hops: u8,
    /// What a `;` in a request path does: `refuse` (400, `PATH_INVALID`) or
    /// `strip` (each segment's `;…` is cut off before matching, as servlet
    /// containers do). Default `refuse`.
    pub path_parameters: String,
    /// Also return the principal as dynamic metadata (for Envoy's logs and other
    /// filters). Encoded once per key, so it costs next to nothing per call. Default true.
    pub dynamic_metadata: bool,
}

impl Default for ExtAuthzConfig {
    fn default() -> Self {
        Self {
            api_key_header: "x-api-key".to_owned(),
            query_param: None,
            strip_credential: false,
            header_prefix: "x-latchkey-".to_owned(),
            public_routes: Vec::new(),
            trusted_hops: 0,
            path_parameters: "refuse".to_owned(),
            dynamic_metadata: true,
        }
    }
}

impl ExtAuthzConfig {
    /// `store_header` is `[check]`'s, validated.
    pub(super) fn validate(
        &self,
        store_header: Option<String>,
    ) -> Result<(GateSettings, ExtAuthzSettings), ConfigError> {
        let public_routes = self
            .public_routes
            .iter()
            .map(|r| {
                let (method, path) = r.trim().split_once(' ').ok_or_else(|| {
                    invalid(
                        "ext_authz.public_routes",
                        format!("`{r}` is not `METHOD /path`"),
                    )
                })?;
                let method = crate::domain::routes::validate_method(method)
                    .map_err(|e| invalid("ext_authz.public_routes", e.to_string()))?;
                crate::domain::routes::validate_template(path.trim())
                    .map_err(|e| invalid("ext_authz.public_routes", e.to_string()))?;
                Ok((method, path.trim().to_owned()))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let prefix = header_name(
            "ext_authz.header_prefix",
            self.header_prefix.trim_end_matches('-'),
        )?;
        if !prefix.starts_with("x-") {
            return Err(invalid("ext_authz.header_prefix", "must start with `x-`"));
        }
        let gate = GateSettings {
            api_key_header: header_name("ext_authz.api_key_header", &self.api_key_header)?,
            query_param: self
                .query_param
                .as_deref()
                .map(|q| header_name("ext_authz.query_param", q).map(|_| q.to_owned()))
                .transpose()?,
            public_routes,
            store_header,
            path_params: PathParams::parse(&self.path_parameters).ok_or_else(|| {
                invalid(
                    "ext_authz.path_parameters",
                    format!("`{}` is not `refuse` or `strip`", self.path_parameters),
                )
            })?,
        };
        let envoy = ExtAuthzSettings {
            strip_credential: self.strip_credential,
            header_prefix: format!("{prefix}-"),
            dynamic_metadata: self.dynamic_metadata,
        };
        Ok((gate, envoy))
    }
}
