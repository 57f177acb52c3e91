//! Typed configuration. Precedence: defaults < TOML file < `LATCHKEY_*`
//! environment < command-line flags (the last two merged by clap).
//! Unknown fields in the file are errors; `validate` turns a `Config` into
//! the `Settings` the service runs with.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::crypto::jwt::Algorithm;
use crate::crypto::keyfmt;
use crate::crypto::secret::Secret;
use crate::domain::keys::KeySettings;
use crate::domain::network::parse_cidr;
use crate::domain::permissions::{PlanDef, Policy, default_plans, default_roles};
use crate::domain::resolver::CacheSettings;
use crate::domain::tokens::TokenSettings;
use crate::grpc::ext_authz::ExtAuthzSettings;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

fn invalid(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        message: message.into(),
    }
}

/// The configuration file's schema. Every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// gRPC listener (internal only). Default `127.0.0.1:50051`.
    pub grpc_addr: String,
    /// HTTP listener (health now; OAuth2 later). Default `127.0.0.1:8080`.
    pub http_addr: String,
    /// Where the embedded SQLite database lives. Default `./latchkey-data`.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; unset = SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// Run migrations when `serve` starts. Default true.
    pub migrate_on_start: bool,
    /// `text` or `json`. Default `text`.
    pub log_format: String,
    /// How long in-flight calls may take to finish on shutdown. Default 20.
    pub shutdown_grace_seconds: u64,
    /// How often the store is pinged for health. Default 2000.
    pub health_interval_ms: u64,
    pub keys: KeysConfig,
    pub check: CheckConfig,
    pub cache: CacheConfig,
    /// How often batched last-used times are written. Default 5000.
    pub usage_flush_interval_ms: u64,
    pub limits: LimitsConfig,
    pub ext_authz: ExtAuthzConfig,
    pub tokens: TokensConfig,
    /// Replaces the default plans (the five BEEP! packages) when set.
    pub plans: Option<Vec<PlanDef>>,
    /// Replaces the default roles (`read_only`, `full_access`) when set.
    pub roles: Option<BTreeMap<String, Vec<String>>>,
    pub signing: SigningConfig,
}

/// HMAC signatures, signed URLs, signed requests, reveal links, feed keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigningConfig {
    /// How far a signature's `t` may be from now (replay window). Default 300.
    pub tolerance_seconds: i64,
    /// How long a signed URL stays valid after its `timestamp`. Default 30.
    pub url_validity_days: i64,
    /// How long the previous version stays active after a rotation. Default 86400.
    pub default_overlap_seconds: i64,
    /// Longest overlap a rotation may ask for. Default 30.
    pub max_overlap_days: i64,
    /// Headers VerifyWebhook takes a signature from, in order.
    /// Default `["x-webhook-signature", "x-latchkey-signature"]`.
    pub webhook_headers: Vec<String>,
    /// A header inbound callbacks may pass the secret itself in (compared in
    /// constant time). Default none: only signatures are accepted.
    pub webhook_secret_header: Option<String>,
    /// Header carrying a signed request's signature. Default `x-latchkey-signature`.
    pub request_header: String,
    /// How long a one-time reveal link is valid. Default 3600.
    pub reveal_ttl_seconds: i64,
    /// Public base of reveal links (`https://auth.example.com`); the link is
    /// `<base>/reveal/<token>`. Default none: the path alone.
    pub reveal_base_url: Option<String>,
    /// Path prefix (`/feeds/`) under which feed-token keys are accepted.
    /// Default none: feed keys are refused everywhere.
    pub feed_path_prefix: Option<String>,
}

impl Default for SigningConfig {
    fn default() -> Self {
        let d = crate::domain::signing::SigningSettings::default();
        Self {
            tolerance_seconds: d.tolerance_secs,
            url_validity_days: d.url_validity_secs / 86_400,
            default_overlap_seconds: d.default_overlap_secs,
            max_overlap_days: d.max_overlap_secs / 86_400,
            webhook_headers: d.webhook_headers,
            webhook_secret_header: None,
            request_header: d.request_header,
            reveal_ttl_seconds: crate::domain::reveal::DEFAULT_TTL_SECS,
            reveal_base_url: None,
            feed_path_prefix: None,
        }
    }
}

/// Validated `[signing]` settings.
#[derive(Debug, Clone)]
pub struct SigningSection {
    pub signing: crate::domain::signing::SigningSettings,
    pub reveal_ttl_secs: i64,
    pub reveal_base_url: Option<String>,
}

impl SigningConfig {
    fn validate(&self) -> Result<SigningSection, ConfigError> {
        if !(1..=3600).contains(&self.tolerance_seconds) {
            return Err(invalid(
                "signing.tolerance_seconds",
                "must be between 1 and 3600",
            ));
        }
        if !(1..=365).contains(&self.url_validity_days) {
            return Err(invalid(
                "signing.url_validity_days",
                "must be between 1 and 365",
            ));
        }
        if !(0..=365).contains(&self.max_overlap_days) {
            return Err(invalid(
                "signing.max_overlap_days",
                "must be between 0 and 365",
            ));
        }
        if self.default_overlap_seconds < 0
            || self.default_overlap_seconds > self.max_overlap_days * 86_400
        {
            return Err(invalid(
                "signing.default_overlap_seconds",
                "must be between 0 and signing.max_overlap_days",
            ));
        }
        if !(60..=86_400).contains(&self.reveal_ttl_seconds) {
            return Err(invalid(
                "signing.reveal_ttl_seconds",
                "must be between 60 and 86400",
            ));
        }
        if self.webhook_headers.is_empty() {
            return Err(invalid(
                "signing.webhook_headers",
                "must name at least one header",
            ));
        }
        let webhook_headers = self
            .webhook_headers
            .iter()
            .map(|h| header_name("signing.webhook_headers", h))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(base) = &self.reveal_base_url
            && !(base.starts_with("https://") || base.starts_with("http://"))
        {
            return Err(invalid(
                "signing.reveal_base_url",
                "must start with https:// or http://",
            ));
        }
        if let Some(prefix) = &self.feed_path_prefix
            && (!prefix.starts_with('/') || prefix.len() < 2 || prefix.contains(['?', '#']))
        {
            return Err(invalid(
                "signing.feed_path_prefix",
                "must be a path like /feeds/ (starting with /, not just /)",
            ));
        }
        Ok(SigningSection {
            signing: crate::domain::signing::SigningSettings {
                tolerance_secs: self.tolerance_seconds,
                url_validity_secs: self.url_validity_days * 86_400,
                default_overlap_secs: self.default_overlap_seconds,
                max_overlap_secs: self.max_overlap_days * 86_400,
                webhook_headers,
                webhook_secret_header: self
                    .webhook_secret_header
                    .as_deref()
                    .map(|h| header_name("signing.webhook_secret_header", h))
                    .transpose()?,
                request_header: header_name("signing.request_header", &self.request_header)?,
                feed_path_prefix: self.feed_path_prefix.clone(),
            },
            reveal_ttl_secs: self.reveal_ttl_seconds,
            reveal_base_url: self
                .reveal_base_url
                .as_deref()
                .map(|b| b.trim_end_matches('/').to_owned()),
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// The `lk` in `lk_live_sk_…`: 1–8 of `[a-z0-9]`, starting with a letter.
    pub prefix: String,
    /// Default 90.
    pub default_ttl_days: i64,
    /// Longest lifetime a key may be given. Default 1825 (5 years).
    pub max_ttl_days: i64,
    /// Default rotation overlap. Default 604800 (7 days).
    pub default_overlap_seconds: i64,
    /// Default 30.
    pub max_overlap_days: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckConfig {
    /// Require an admin token holding `admin.check` on `CheckService/Check`. Default false.
    pub require_auth: bool,
    /// Peers whose `X-Forwarded-For` is believed (CIDRs). Default none.
    pub trusted_proxies: Vec<String>,
    /// A request header naming a store (`x-beep-store-id` in the BEEP! set-up);
    /// when a request carries it, the store must belong to the key's account. Default none.
    pub store_header: Option<String>,
}

/// JWT access tokens and the OAuth2 endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    /// `iss` of every token and the metadata's `issuer`: the public URL of
    /// the HTTP side. Default `http://<the bound http address>`.
    pub issuer: Option<String>,
    /// `aud` of every token. Default `latchkey`.
    pub audience: String,
    /// `RS256`, `ES256` or `EdDSA`, for new signing keys. Default `RS256`.
    pub algorithm: String,
    /// Default 3600.
    pub access_ttl_seconds: i64,
    /// Default 2592000 (30 days).
    pub refresh_ttl_seconds: i64,
    /// Default 60.
    pub code_ttl_seconds: i64,
    /// Lifetime of tokens minted by `ExchangeSecret`. Default 900.
    pub exchange_ttl_seconds: i64,
    /// Clock skew allowed on `exp` and `nbf`. Default 30.
    pub leeway_seconds: i64,
    /// The trusted header naming the signed-in user on the consent page, set
    /// by the platform's login proxy (oauth2-proxy sets `X-Forwarded-User`).
    pub user_header: String,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: "latchkey".into(),
            algorithm: "RS256".into(),
            access_ttl_seconds: 3600,
            refresh_ttl_seconds: 30 * 86_400,
            code_ttl_seconds: 60,
            exchange_ttl_seconds: 900,
            leeway_seconds: 30,
            user_header: "x-forwarded-user".into(),
        }
    }
}

/// Validated token settings; `issuer` `None` = derived from the bound HTTP address.
#[derive(Debug, Clone)]
pub struct TokensSettings {
    pub issuer: Option<String>,
    pub tokens: TokenSettings,
    pub user_header: String,
}

impl TokensConfig {
    fn validate(&self) -> Result<TokensSettings, ConfigError> {
        let range = |field: &'static str, v: i64, min: i64, max: i64| {
            if (min..=max).contains(&v) {
                Ok(v)
            } else {
                Err(invalid(field, format!("must be between {min} and {max}")))
            }
        };
        let issuer = match self.issuer.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(i) if i.starts_with("https://") || i.starts_with("http://") => {
                Some(i.trim_end_matches('/').to_owned())
            }
            Some(_) => return Err(invalid("tokens.issuer", "must be an http(s) URL")),
        };
        if self.audience.trim().is_empty() {
            return Err(invalid("tokens.audience", "must not be empty"));
        }
        let algorithm = Algorithm::from_name(&self.algorithm)
            .ok_or_else(|| invalid("tokens.algorithm", "must be RS256, ES256 or EdDSA"))?;
        let access = range(
            "tokens.access_ttl_seconds",
            self.access_ttl_seconds,
            60,
            86_400,
        )?;
        Ok(TokensSettings {
            issuer,
            tokens: TokenSettings {
                issuer: String::new(),
                audience: self.audience.trim().to_owned(),
                algorithm,
                access_ttl_secs: access,
                refresh_ttl_secs: range(
                    "tokens.refresh_ttl_seconds",
                    self.refresh_ttl_seconds,
                    60,
                    365 * 86_400,
                )?,
                code_ttl_secs: range("tokens.code_ttl_seconds", self.code_ttl_seconds, 10, 600)?,
                exchange_ttl_secs: range(
                    "tokens.exchange_ttl_seconds",
                    self.exchange_ttl_seconds,
                    60,
                    access,
                )?,
                leeway_secs: range("tokens.leeway_seconds", self.leeway_seconds, 0, 300)?,
            },
            user_header: header_name("tokens.user_header", &self.user_header)?,
        })
    }
}

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
    /// How many proxies in front of Envoy append to `X-Forwarded-For`; 0 = use
    /// Envoy's source address. Default 0.
    pub trusted_hops: u8,
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
            dynamic_metadata: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Default 100000.
    pub max_entries: u64,
    /// Upper bound on how long a key stays cached without a change notice. Default 60.
    pub ttl_seconds: u64,
    /// How long an unknown key is remembered as unknown. Default 5.
    pub negative_ttl_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Most scopes, CIDRs or origins one key may carry. Default 100.
    pub max_list_items: usize,
    /// Largest gRPC request accepted. Default 262144 (256 KiB).
    pub max_message_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grpc_addr: "127.0.0.1:50051".to_owned(),
            http_addr: "127.0.0.1:8080".to_owned(),
            data_dir: PathBuf::from("./latchkey-data"),
            database_url: None,
            migrate_on_start: true,
            log_format: "text".to_owned(),
            shutdown_grace_seconds: 20,
            health_interval_ms: 2000,
            keys: KeysConfig::default(),
            check: CheckConfig::default(),
            cache: CacheConfig::default(),
            usage_flush_interval_ms: 5000,
            limits: LimitsConfig::default(),
            ext_authz: ExtAuthzConfig::default(),
            tokens: TokensConfig::default(),
            plans: None,
            roles: None,
            signing: SigningConfig::default(),
        }
    }
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            prefix: "lk".to_owned(),
            default_ttl_days: 90,
            max_ttl_days: 1825,
            default_overlap_seconds: 7 * 24 * 3600,
            max_overlap_days: 30,
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            ttl_seconds: 60,
            negative_ttl_seconds: 5,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_list_items: 100,
            max_message_bytes: 256 * 1024,
        }
    }
}

/// Validated settings: what the service actually runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Secret<String>,
    pub migrate_on_start: bool,
    pub json_logs: bool,
    pub shutdown_grace: Duration,
    pub health_interval: Duration,
    pub keys: KeySettings,
    pub check_requires_auth: bool,
    pub trusted_proxies: Vec<IpNet>,
    pub store_header: Option<String>,
    pub cache: CacheSettings,
    pub usage_flush_interval: Duration,
    pub max_list_items: usize,
    pub max_message_bytes: usize,
    pub policy: Policy,
    pub bootstrap_admin_token: Option<Secret<String>>,
    /// `LATCHKEY_MASTER_KEY` (base64); unset = development key file in `data_dir`.
    pub master_key: Option<Secret<String>>,
    pub ext_authz: ExtAuthzSettings,
    pub tokens: TokensSettings,
    pub signing: SigningSection,
}

fn header_name(field: &'static str, s: &str) -> Result<String, ConfigError> {
    let lower = s.to_ascii_lowercase();
    if lower.is_empty()
        || !lower
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid(field, format!("`{s}` is not a header name")));
    }
    Ok(lower)
}

impl ExtAuthzConfig {
    fn validate(&self) -> Result<ExtAuthzSettings, ConfigError> {
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
        Ok(ExtAuthzSettings {
            api_key_header: header_name("ext_authz.api_key_header", &self.api_key_header)?,
            query_param: self
                .query_param
                .as_deref()
                .map(|q| header_name("ext_authz.query_param", q).map(|_| q.to_owned()))
                .transpose()?,
            strip_credential: self.strip_credential,
            header_prefix: format!("{prefix}-"),
            public_routes,
            trusted_hops: self.trusted_hops,
            dynamic_metadata: self.dynamic_metadata,
        })
    }
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// The database URL in effect: the configured one, or SQLite in the data directory.
    pub fn effective_database_url(&self) -> Secret<String> {
        match &self.database_url {
            Some(url) => Secret::new(url.clone()),
            None => Secret::new(format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("latchkey.db").display()
            )),
        }
    }

    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let addr = |field: &'static str, s: &str| {
            s.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    field,
                    format!("`{s}` is not an address like 127.0.0.1:50051"),
                )
            })
        };
        let database_url = self.effective_database_url();
        let url = database_url.expose();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database_url",
                "must start with sqlite:, postgres:// or postgresql://",
            ));
        }
        let json_logs = match self.log_format.as_str() {
            "text" => false,
            "json" => true,
            other => {
                return Err(invalid(
                    "log_format",
                    format!("`{other}` is not `text` or `json`"),
                ));
            }
        };
        let k = &self.keys;
        if !keyfmt::valid_prefix(&k.prefix) {
            return Err(invalid(
                "keys.prefix",
                "must be 1-8 lower-case letters or digits, starting with a letter",
            ));
        }
        if k.max_ttl_days <= 0 || k.max_ttl_days > 36_500 {
            return Err(invalid("keys.max_ttl_days", "must be between 1 and 36500"));
        }
        if k.default_ttl_days <= 0 || k.default_ttl_days > k.max_ttl_days {
            return Err(invalid(
                "keys.default_ttl_days",
                "must be between 1 and keys.max_ttl_days",
            ));
        }
        if k.max_overlap_days < 0 || k.max_overlap_days > 365 {
            return Err(invalid(
                "keys.max_overlap_days",
                "must be between 0 and 365",
            ));
        }
        if k.default_overlap_seconds < 0 || k.default_overlap_seconds > k.max_overlap_days * 86_400
        {
            return Err(invalid(
                "keys.default_overlap_seconds",
                "must be between 0 and keys.max_overlap_days",
            ));
        }
        let trusted_proxies = self
            .check
            .trusted_proxies
            .iter()
            .map(|s| parse_cidr(s).map_err(|e| invalid("check.trusted_proxies", e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        if self.cache.max_entries == 0 {
            return Err(invalid("cache.max_entries", "must be positive"));
        }
        if self.cache.ttl_seconds == 0 || self.cache.ttl_seconds > 3600 {
            return Err(invalid("cache.ttl_seconds", "must be between 1 and 3600"));
        }
        if self.cache.negative_ttl_seconds > 60 {
            return Err(invalid("cache.negative_ttl_seconds", "must be at most 60"));
        }
        if self.usage_flush_interval_ms < 10 {
            return Err(invalid("usage_flush_interval_ms", "must be at least 10"));
        }
        if self.health_interval_ms < 10 {
            return Err(invalid("health_interval_ms", "must be at least 10"));
        }
        if self.limits.max_list_items == 0 || self.limits.max_list_items > 1000 {
            return Err(invalid(
                "limits.max_list_items",
                "must be between 1 and 1000",
            ));
        }
        if self.limits.max_message_bytes < 1024 || self.limits.max_message_bytes > 16 * 1024 * 1024
        {
            return Err(invalid(
                "limits.max_message_bytes",
                "must be between 1024 and 16777216",
            ));
        }
        let plans = self.plans.clone().unwrap_or_else(default_plans);
        let roles = self.roles.clone().unwrap_or_else(default_roles);
        let policy = Policy::new(&plans, &roles).map_err(|e| invalid("plans", e.to_string()))?;
        Ok(Settings {
            grpc_addr: addr("grpc_addr", &self.grpc_addr)?,
            http_addr: addr("http_addr", &self.http_addr)?,
            data_dir: self.data_dir.clone(),
            database_url,
            migrate_on_start: self.migrate_on_start,
            json_logs,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
            health_interval: Duration::from_millis(self.health_interval_ms),
            keys: KeySettings {
                prefix: k.prefix.clone(),
                default_ttl_secs: k.default_ttl_days * 86_400,
                max_ttl_secs: k.max_ttl_days * 86_400,
                default_overlap_secs: k.default_overlap_seconds,
                max_overlap_secs: k.max_overlap_days * 86_400,
            },
            check_requires_auth: self.check.require_auth,
            store_header: self
                .check
                .store_header
                .as_deref()
                .map(|h| header_name("check.store_header", h))
                .transpose()?,
            trusted_proxies,
            cache: CacheSettings {
                max_entries: self.cache.max_entries,
                ttl: Duration::from_secs(self.cache.ttl_seconds),
                negative_ttl: Duration::from_secs(self.cache.negative_ttl_seconds),
            },
            usage_flush_interval: Duration::from_millis(self.usage_flush_interval_ms),
            max_list_items: self.limits.max_list_items,
            max_message_bytes: self.limits.max_message_bytes,
            policy,
            bootstrap_admin_token: None,
            master_key: None,
            ext_authz: self.ext_authz.validate()?,
            tokens: self.tokens.validate()?,
            signing: self.signing.validate()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        let s = Config::default().validate().unwrap();
        assert_eq!(s.grpc_addr.to_string(), "127.0.0.1:50051");
        assert!(s.database_url.expose().starts_with("sqlite://"));
        assert_eq!(s.keys.default_ttl_secs, 90 * 86_400);
        assert!(s.policy.plan("PRIME").is_some());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = toml::from_str::<Config>("grpc_adr = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("grpc_adr"), "{err}");
        let err = toml::from_str::<Config>("[keys]\nprefx = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("prefx"), "{err}");
    }

    #[test]
    fn bad_values_name_their_field() {
        let mut c = Config::default();
        c.keys.prefix = "Bad_Prefix".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("keys.prefix")
        );
        let mut c = Config::default();
        c.check.trusted_proxies = vec!["not-an-ip".into()];
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("check.trusted_proxies")
        );
        let c = Config {
            database_url: Some("mysql://x".into()),
            ..Config::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("database_url")
        );
    }

    #[test]
    fn signing_section_is_validated() {
        let s = Config::default().validate().unwrap();
        assert_eq!(s.signing.signing.tolerance_secs, 300);
        assert_eq!(s.signing.signing.url_validity_secs, 30 * 86_400);
        assert_eq!(s.signing.reveal_ttl_secs, 3600);
        let c: Config = toml::from_str(
            "[signing]\ntolerance_seconds = 60\nfeed_path_prefix = \"/feeds/\"\nwebhook_headers = [\"X-Hook-Sig\"]",
        )
        .unwrap();
        let s = c.validate().unwrap();
        assert_eq!(s.signing.signing.tolerance_secs, 60);
        assert_eq!(s.signing.signing.webhook_headers, ["x-hook-sig"]);
        assert_eq!(
            s.signing.signing.feed_path_prefix.as_deref(),
            Some("/feeds/")
        );
        for (toml, field) in [
            (
                "[signing]\ntolerance_seconds = 0",
                "signing.tolerance_seconds",
            ),
            (
                "[signing]\nfeed_path_prefix = \"feeds\"",
                "signing.feed_path_prefix",
            ),
            (
                "[signing]\nreveal_base_url = \"ftp://x\"",
                "signing.reveal_base_url",
            ),
            (
                "[signing]\ndefault_overlap_seconds = -1",
                "signing.default_overlap_seconds",
            ),
            ("[signing]\nwebhook_headers = []", "signing.webhook_headers"),
        ] {
            let err = toml::from_str::<Config>(toml)
                .unwrap()
                .validate()
                .unwrap_err();
            assert!(err.to_string().starts_with(field), "{toml}: {err}");
        }
        assert!(toml::from_str::<Config>("[signing]\ntolerance = 1").is_err());
    }

    #[test]
    fn plans_from_a_file_replace_the_defaults() {
        let c: Config = toml::from_str(
            r#"
            [[plans]]
            name = "basic"
            permissions = ["feedback.read"]
            [[plans]]
            name = "pro"
            extends = "basic"
            permissions = ["feedback.*", "webhooks.manage"]
            "#,
        )
        .unwrap();
        let s = c.validate().unwrap();
        assert!(s.policy.plan("PRIME").is_none());
        assert_eq!(s.policy.plan_names(), ["basic", "pro"]);
    }
}
