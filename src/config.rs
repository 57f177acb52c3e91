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

use crate::crypto::keyfmt;
use crate::crypto::secret::Secret;
use crate::domain::keys::KeySettings;
use crate::domain::network::parse_cidr;
use crate::domain::permissions::{PlanDef, Policy, default_plans, default_roles};
use crate::domain::resolver::CacheSettings;

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
    /// Replaces the default plans (the five BEEP! packages) when set.
    pub plans: Option<Vec<PlanDef>>,
    /// Replaces the default roles (`read_only`, `full_access`) when set.
    pub roles: Option<BTreeMap<String, Vec<String>>>,
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
            plans: None,
            roles: None,
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
}

/// Validated ext_authz settings.
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
