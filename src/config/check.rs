//! `[check]`: how `CheckService/Check` is guarded, and what it trusts.

use ipnet::IpNet;
use serde::Deserialize;

use super::{ConfigError, header_name, invalid};
use crate::domain::network::parse_cidr;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckConfig {
    /// Require an admin token holding `admin.check` on `CheckService/Check`. Default false.
    pub require_auth: bool,
    /// Proxies whose `X-Forwarded-For` entry is believed (CIDRs), on
    /// `CheckService/Check`, ext_authz and forward auth alike: one rule with
    /// `ext_authz.trusted_hops` (`network::ClientIpRule`). Default none.
    pub trusted_proxies: Vec<String>,
    /// A request header naming a store (`x-beep-store-id` in the BEEP! set-up);
    /// when a request carries it, the store must belong to the key's account. Default none.
    pub store_header: Option<String>,
}

impl CheckConfig {
    pub(super) fn trusted_proxies(&self) -> Result<Vec<IpNet>, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|s| parse_cidr(s).map_err(|e| invalid("check.trusted_proxies", e.to_string())))
            .collect()
    }

    pub(super) fn store_header(&self) -> Result<Option<String>, ConfigError> {
        self.store_header
            .as_deref()
            .map(|h| header_name("check.store_header", h))
            .transpose()
    }
}
