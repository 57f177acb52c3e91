//! Typed configuration. Precedence: defaults < TOML file < `LATCHKEY_*`
//! environment < command-line flags (the last two merged by clap).
//! Unknown fields in the file are errors; `validate` turns a `Config` into
//! the `Settings` the service runs with.
//!
//! Part of the composition layer, with `app`: each section (one file here)
//! validates itself and builds the settings type of what it configures —
//! the domain's (`KeySettings`, `CacheSettings`, `TokenSettings`,
//! `SigningSettings`, the plan `Policy`) or an adapter's (`ExtAuthzSettings`),
//! so neither the domain nor the adapters depend on the file's shape.

mod audit;
mod cache;
mod check;
mod ext_authz;
mod forward_auth;
mod integrations;
mod keys;
mod limits;
mod metrics;
mod rate_limits;
mod scopes;
mod signing;
mod tls;
mod tokens;
mod usage;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::domain::network::ClientIpRule;
use serde::Deserialize;

use crate::crypto::secret::Secret;
use crate::domain::gate::GateSettings;
use crate::domain::keys::KeySettings;
use crate::domain::permissions::{PlanDef, Policy, default_plans, default_roles};
use crate::domain::resolver::CacheSettings;
use crate::grpc::ext_authz::ExtAuthzSettings;
use crate::store::StoreOptions;

pub use audit::{AuditConfig, AuditSettings, WebhooksConfig, WebhooksSettings};
pub use cache::CacheConfig;
pub use check::CheckConfig;
pub use ext_authz::ExtAuthzConfig;
pub use forward_auth::{ForwardAuthConfig, ForwardAuthListener};
pub use integrations::{IntegrationsConfig, IntegrationsSettings};
pub use keys::KeysConfig;
pub use limits::LimitsConfig;
pub use metrics::MetricsConfig;
pub use rate_limits::{
    DescriptorConfig, EntryConfig, GlobalLimits, RateLimitSettings, RateLimitsConfig,
};
pub use signing::{SigningConfig, SigningSection};
pub use tls::TlsConfig;
pub use tokens::{TokensConfig, TokensSettings};
pub use usage::{GeoipConfig, UsageConfig, UsageSettings};

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

/// The configuration file's schema. Every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// gRPC listener (internal only). Default `127.0.0.1:50051`.
    pub grpc_addr: String,
    /// HTTP listener (health, OAuth2, JWKS, reveal links). Default `127.0.0.1:8080`.
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
    /// How long to keep serving after health turns NOT_SERVING at shutdown,
    /// so that load balancers stop routing here first. Default 0.
    pub shutdown_delay_seconds: u64,
    /// How often the store is pinged for health. Default 2000.
    pub health_interval_ms: u64,
    /// How long a call waits for a database connection before the store
    /// counts as unavailable (then calls fail fast until the health check
    /// reaches it again). Default 1000.
    pub store_acquire_timeout_ms: u64,
    /// Longest a store statement may run (PostgreSQL `statement_timeout`,
    /// SQLite's busy wait). Default 5000.
    pub store_statement_timeout_ms: u64,
    /// PostgreSQL pool connections per replica at most; cold lookups keep
    /// up to two more of their own (see store/held.rs). Default 16.
    pub store_max_connections: u32,
    /// PostgreSQL connections opened at start and kept open (reopened in
    /// the background when one is lost). Default: `store_max_connections`.
    pub store_min_connections: Option<u32>,
    pub keys: KeysConfig,
    pub check: CheckConfig,
    pub cache: CacheConfig,
    /// How often batched last-used times are written. Default 5000.
    pub usage_flush_interval_ms: u64,
    pub limits: LimitsConfig,
    pub ext_authz: ExtAuthzConfig,
    pub forward_auth: ForwardAuthConfig,
    pub tokens: TokensConfig,
    /// Replaces the default plans (the five BEEP! packages) when set.
    pub plans: Option<Vec<PlanDef>>,
    /// Replaces the default roles (`read_only`, `full_access`) when set.
    pub roles: Option<BTreeMap<String, Vec<String>>>,
    pub signing: SigningConfig,
    pub integrations: IntegrationsConfig,
    pub rate_limits: RateLimitsConfig,
    pub metrics: MetricsConfig,
    pub tls: TlsConfig,
    /// How the consent page describes scopes (`[scopes."x"] description = { en, de }`).
    pub scopes: BTreeMap<String, scopes::ScopeConfig>,
    pub audit: AuditConfig,
    pub webhooks: WebhooksConfig,
    /// Outcome recording, usage analytics and the advisor.
    pub usage: UsageConfig,
    /// The country database for unusual-location events.
    pub geoip: GeoipConfig,
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
            shutdown_delay_seconds: 0,
            health_interval_ms: 2000,
            store_acquire_timeout_ms: 1000,
            store_statement_timeout_ms: 5000,
            store_max_connections: 16,
            store_min_connections: None,
            keys: KeysConfig::default(),
            check: CheckConfig::default(),
            cache: CacheConfig::default(),
            usage_flush_interval_ms: 5000,
            limits: LimitsConfig::default(),
            ext_authz: ExtAuthzConfig::default(),
            forward_auth: ForwardAuthConfig::default(),
            tokens: TokensConfig::default(),
            plans: None,
            roles: None,
            signing: SigningConfig::default(),
            integrations: IntegrationsConfig::default(),
            rate_limits: RateLimitsConfig::default(),
            metrics: MetricsConfig::default(),
            tls: TlsConfig::default(),
            scopes: BTreeMap::new(),
            audit: AuditConfig::default(),
            webhooks: WebhooksConfig::default(),
            usage: UsageConfig::default(),
            geoip: GeoipConfig::default(),
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
    pub shutdown_delay: Duration,
    pub health_interval: Duration,
    pub store: StoreOptions,
    pub keys: KeySettings,
    pub check_requires_auth: bool,
    /// The one `X-Forwarded-For` rule (`check.trusted_proxies`, `ext_authz.trusted_hops`).
    pub client_ip: ClientIpRule,
    pub store_header: Option<String>,
    pub cache: CacheSettings,
    pub usage_flush_interval: Duration,
    pub max_list_items: usize,
    pub max_message_bytes: usize,
    /// The public HTTP port's slow-client and body limits.
    pub http_limits: crate::http::serve::HttpLimits,
    pub policy: Policy,
    pub bootstrap_admin_token: Option<Secret<String>>,
    /// `LATCHKEY_MASTER_KEY` (base64); unset = development key file in `data_dir`.
    pub master_key: Option<Secret<String>>,
    /// How the requests a proxy describes are read (ext_authz and forward auth).
    pub gate: GateSettings,
    pub ext_authz: ExtAuthzSettings,
    /// `None` when forward auth is off.
    pub forward_auth: Option<ForwardAuthListener>,
    pub tokens: TokensSettings,
    pub signing: SigningSection,
    /// Connection tests of stored integrations.
    pub integrations: IntegrationsSettings,
    pub rate_limits: RateLimitSettings,
    /// The Prometheus listener; `None` when it is off.
    pub metrics_addr: Option<SocketAddr>,
    /// TLS on both ports; `None` = plaintext.
    pub tls: Option<crate::tls::TlsSettings>,
    /// Configured scope descriptions for the consent page.
    pub scope_texts: std::collections::HashMap<String, crate::http::ScopeText>,
    /// Audit-trail retention.
    pub audit: AuditSettings,
    /// Webhook deliveries.
    pub webhooks: WebhooksSettings,
    /// `[usage]` and `[geoip]`.
    pub usage: UsageSettings,
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
        let keys = self.keys.validate()?;
        let trusted_proxies = self.check.trusted_proxies()?;
        let cache = self.cache.validate()?;
        if self.usage_flush_interval_ms < 10 {
            return Err(invalid("usage_flush_interval_ms", "must be at least 10"));
        }
        if self.health_interval_ms < 10 {
            return Err(invalid("health_interval_ms", "must be at least 10"));
        }
        if self.shutdown_delay_seconds > 3600 {
            return Err(invalid("shutdown_delay_seconds", "must be at most 3600"));
        }
        if !(10..=60_000).contains(&self.store_acquire_timeout_ms) {
            return Err(invalid(
                "store_acquire_timeout_ms",
                "must be between 10 and 60000",
            ));
        }
        if !(100..=600_000).contains(&self.store_statement_timeout_ms) {
            return Err(invalid(
                "store_statement_timeout_ms",
                "must be between 100 and 600000",
            ));
        }
        if !(1..=1000).contains(&self.store_max_connections) {
            return Err(invalid(
                "store_max_connections",
                "must be between 1 and 1000",
            ));
        }
        let store_min_connections = self
            .store_min_connections
            .unwrap_or(self.store_max_connections);
        if store_min_connections > self.store_max_connections {
            return Err(invalid(
                "store_min_connections",
                "must be at most store_max_connections",
            ));
        }
        self.limits.validate()?;
        let plans = self.plans.clone().unwrap_or_else(default_plans);
        let roles = self.roles.clone().unwrap_or_else(default_roles);
        let policy = Policy::new(&plans, &roles).map_err(|e| invalid("plans", e.to_string()))?;
        let rate_limits = self.rate_limits.validate(&plans)?;
        let grpc_addr = addr("grpc_addr", &self.grpc_addr)?;
        let http_addr = addr("http_addr", &self.http_addr)?;
        let store_header = self.check.store_header()?;
        let (gate, ext_authz) = self.ext_authz.validate(store_header.clone())?;
        let forward_auth = self.forward_auth.validate(&ext_authz.header_prefix)?;
        let metrics_addr = self.metrics.validate()?;
        if let Some(m) = metrics_addr
            && m.port() != 0
            && (m == http_addr || m == grpc_addr)
        {
            return Err(invalid(
                "metrics.addr",
                "must be a listener of its own, never the public HTTP port (nor the gRPC one)",
            ));
        }
        if let Some(fa) = &forward_auth
            && fa.addr.port() != 0
            && (fa.addr == http_addr || fa.addr == grpc_addr)
        {
            return Err(invalid(
                "forward_auth.addr",
                "must be a listener of its own, never the public HTTP port (nor the gRPC one)",
            ));
        }
        Ok(Settings {
            grpc_addr,
            http_addr,
            data_dir: self.data_dir.clone(),
            database_url,
            migrate_on_start: self.migrate_on_start,
            json_logs,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
            shutdown_delay: Duration::from_secs(self.shutdown_delay_seconds),
            health_interval: Duration::from_millis(self.health_interval_ms),
            store: StoreOptions {
                acquire_timeout: Duration::from_millis(self.store_acquire_timeout_ms),
                statement_timeout: Duration::from_millis(self.store_statement_timeout_ms),
                max_connections: self.store_max_connections,
                min_connections: store_min_connections,
                ..StoreOptions::default()
            },
            keys,
            check_requires_auth: self.check.require_auth,
            store_header,
            client_ip: ClientIpRule {
                trusted_proxies,
                trusted_hops: self.ext_authz.trusted_hops,
            },
            cache,
            usage_flush_interval: Duration::from_millis(self.usage_flush_interval_ms),
            max_list_items: self.limits.max_list_items,
            max_message_bytes: self.limits.max_message_bytes,
            http_limits: self.limits.http(),
            policy,
            bootstrap_admin_token: None,
            master_key: None,
            gate,
            ext_authz,
            forward_auth,
            tokens: self.tokens.validate()?,
            signing: self.signing.validate()?,
            integrations: self.integrations.validate()?,
            rate_limits,
            metrics_addr,
            tls: self.tls.validate()?,
            scope_texts: scopes::validate(&self.scopes)?,
            usage: self.usage.validate(&self.geoip)?,
            audit: self.audit.validate()?,
            webhooks: self.webhooks.validate()?,
        })
    }
}

#[cfg(test)]
mod tests;
