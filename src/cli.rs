//! The `latchkey` command line: `serve`, `migrate`, `admin`, `config`, `master-key`,
//! `explain`.
//! Flags override `LATCHKEY_*` variables, which override the config file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

mod explain;
mod master_key;

use crate::config::{Config, Settings};
use crate::crypto::keyfmt;
use crate::crypto::secret::Secret;
use crate::domain::permissions::Scope;
use crate::ports::SystemClock;

#[derive(Debug, Parser)]
#[command(
    name = "latchkey",
    version,
    about = "gRPC authorization service: API keys and the Check decision"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (gRPC + HTTP). Migrates the store first unless told not to.
    Serve(ServeArgs),
    /// Apply pending migrations and exit.
    Migrate(StoreArgs),
    /// Operator tasks.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Configuration tasks.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Master-key status and rotation.
    #[command(subcommand)]
    MasterKey(master_key::MasterKeyCommand),
    /// Why a credential is allowed or denied, step by step, from a running
    /// server (CheckService/Explain; credential on stdin).
    Explain(explain::ExplainArgs),
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// TOML configuration file.
    #[arg(long, env = "LATCHKEY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded SQLite database [default: ./latchkey-data].
    #[arg(long, env = "LATCHKEY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// `sqlite://…` or `postgres://…` [default: SQLite in the data directory].
    #[arg(long, env = "LATCHKEY_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// gRPC listen address [default: 127.0.0.1:50051].
    #[arg(long, env = "LATCHKEY_GRPC_ADDR")]
    pub grpc_addr: Option<String>,
    /// HTTP listen address [default: 127.0.0.1:8080].
    #[arg(long, env = "LATCHKEY_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// Serve forward auth (nginx, Traefik, Caddy) on this internal address,
    /// never the public HTTP port [default when `forward_auth.enabled`: 127.0.0.1:8081].
    #[arg(long, env = "LATCHKEY_FORWARD_AUTH_ADDR")]
    pub forward_auth_addr: Option<String>,
    /// Serve Prometheus metrics (`GET /metrics`) on this internal address,
    /// never the public HTTP port [default when `metrics.enabled`: 127.0.0.1:9464].
    #[arg(long, env = "LATCHKEY_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Key prefix (`lk` in `lk_live_sk_…`) [default: lk].
    #[arg(long, env = "LATCHKEY_KEY_PREFIX")]
    pub key_prefix: Option<String>,
    /// Do not run migrations at start-up.
    #[arg(long, env = "LATCHKEY_NO_MIGRATE")]
    pub no_migrate: bool,
    /// `text` or `json` [default: text].
    #[arg(long, env = "LATCHKEY_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Share rate limits across replicas through this Redis (`redis://…`).
    #[arg(long, env = "LATCHKEY_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an admin token in the store and print it once on stdout.
    CreateToken {
        #[command(flatten)]
        store: StoreArgs,
        /// A name to recognise the token by.
        #[arg(long, default_value = "admin")]
        name: String,
        /// Scopes to grant (repeatable) [default: admin.*].
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Lifetime in days [default: the configured maximum key lifetime].
        #[arg(long)]
        ttl_days: Option<i64>,
        /// Key prefix [default: as configured].
        #[arg(long, env = "LATCHKEY_KEY_PREFIX")]
        key_prefix: Option<String>,
    },
    /// Print a fresh, well-formed admin token without storing it, for
    /// `LATCHKEY_BOOTSTRAP_ADMIN_TOKEN` (registered when `serve` starts).
    GenerateToken {
        #[arg(long, env = "LATCHKEY_KEY_PREFIX", default_value = "lk")]
        key_prefix: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file and print the effective settings.
    Check {
        /// The file to check.
        file: PathBuf,
    },
}

/// The configuration of a one-shot command (migrate, admin, master-key):
/// one store connection is enough, not the service's whole pool.
pub(crate) fn load_one_shot(store: &StoreArgs) -> Result<Config, String> {
    let mut config = load(store)?;
    config.store_min_connections = Some(1);
    Ok(config)
}

fn load(store: &StoreArgs) -> Result<Config, String> {
    let mut config = match &store.config {
        Some(path) => Config::from_file(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if let Some(dir) = &store.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(url) = &store.database_url {
        config.database_url = Some(url.clone());
    }
    Ok(config)
}

fn settings_for_serve(args: &ServeArgs) -> Result<Settings, String> {
    let mut config = load(&args.store)?;
    if let Some(a) = &args.grpc_addr {
        config.grpc_addr = a.clone();
    }
    if let Some(a) = &args.http_addr {
        config.http_addr = a.clone();
    }
    if let Some(a) = &args.forward_auth_addr {
        config.forward_auth.addr = a.clone();
        config.forward_auth.enabled = true;
    }
    if let Some(a) = &args.metrics_addr {
        config.metrics.addr = a.clone();
        config.metrics.enabled = true;
    }
    if let Some(p) = &args.key_prefix {
        config.keys.prefix = p.clone();
    }
    if args.no_migrate {
        config.migrate_on_start = false;
    }
    if let Some(u) = &args.redis_url {
        config.rate_limits.redis_url = Some(u.clone());
    }
    if let Some(f) = &args.log_format {
        config.log_format = f.clone();
    }
    let mut settings = config.validate().map_err(|e| e.to_string())?;
    settings.bootstrap_admin_token = std::env::var("LATCHKEY_BOOTSTRAP_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .map(Secret::new);
    settings.master_key = master_key_from_env()?;
    Ok(settings)
}

/// `LATCHKEY_MASTER_KEYS` (newest first) or `LATCHKEY_MASTER_KEY`; both at
/// once is ambiguous and refused.
fn master_key_from_env() -> Result<Option<Secret<String>>, String> {
    use crate::app::master_key::{ENV_VAR, LIST_ENV_VAR};
    let read = |name| std::env::var(name).ok().filter(|k| !k.is_empty());
    match (read(LIST_ENV_VAR), read(ENV_VAR)) {
        (Some(_), Some(_)) => Err(format!(
            "{LIST_ENV_VAR} and {ENV_VAR} are both set: set only {LIST_ENV_VAR} (newest key first)"
        )),
        (list, one) => Ok(list.or(one).map(Secret::new)),
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("latchkey: {message}");
    ExitCode::from(2)
}

pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Migrate(store) => migrate(store).await,
        Command::Admin(AdminCommand::CreateToken {
            store,
            name,
            scopes,
            ttl_days,
            key_prefix,
        }) => create_token(store, name, scopes, ttl_days, key_prefix).await,
        Command::Admin(AdminCommand::GenerateToken { key_prefix }) => {
            if !keyfmt::valid_prefix(&key_prefix) {
                return fail(
                    "--key-prefix must be 1-8 lower-case letters or digits, starting with a letter",
                );
            }
            match keyfmt::generate(&key_prefix, "live", "sk") {
                Ok(token) => {
                    println!("{}", token.expose());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::MasterKey(command) => master_key::run(command).await,
        Command::Explain(args) => explain::run(args).await,
        Command::Config(ConfigCommand::Check { file }) => {
            match Config::from_file(&file).and_then(|c| c.validate()) {
                Ok(s) => {
                    println!(
                        "ok: grpc {} http {} database {} plans [{}] key prefix `{}`",
                        s.grpc_addr,
                        s.http_addr,
                        crate::crypto::secret::redact_url(s.database_url.expose()),
                        s.policy.plan_names().join(", "),
                        s.keys.prefix
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
    let settings = match settings_for_serve(&args) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let telemetry = crate::telemetry::init(settings.json_logs);
    let signal = match crate::app::shutdown_signal() {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot listen for SIGTERM/SIGINT: {e}")),
    };
    let running = match crate::app::start(settings, Arc::new(SystemClock), signal).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "start-up failed");
            return fail(e);
        }
    };
    // Lines on stdout, for scripts and tests that start on port 0; the
    // forward-auth one (when on) first, so the main line comes last.
    if let Some(addr) = running.forward_auth_addr {
        println!("latchkey listening forward-auth={addr}");
    }
    if let Some(addr) = running.metrics_addr {
        println!("latchkey listening metrics={addr}");
    }
    println!(
        "latchkey listening grpc={} http={}",
        running.grpc_addr, running.http_addr
    );
    tracing::info!(grpc = %running.grpc_addr, http = %running.http_addr, "serving");
    let outcome = running.wait().await;
    // Spans of the last calls, drained above, are exported before exit.
    telemetry.shutdown().await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(store: StoreArgs) -> ExitCode {
    let _logs = crate::telemetry::init(false);
    let settings = match load_one_shot(&store).and_then(|c| c.validate().map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let db = match crate::app::open_store(&settings).await {
        Ok(db) => db,
        Err(e) => return fail(e),
    };
    // Not beside a replica that is migrating or bootstrapping right now.
    let result = match db.startup_lock().await {
        Ok(lock) => {
            let result = db.migrate().await;
            drop(lock);
            result
        }
        Err(e) => Err(e),
    };
    db.close().await;
    match result {
        Ok(()) => {
            eprintln!("latchkey: migrations applied");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

async fn create_token(
    store: StoreArgs,
    name: String,
    scopes: Vec<String>,
    ttl_days: Option<i64>,
    key_prefix: Option<String>,
) -> ExitCode {
    let mut config = match load_one_shot(&store) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if let Some(p) = key_prefix {
        config.keys.prefix = p;
    }
    let mut settings = match config.validate() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    settings.master_key = match master_key_from_env() {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let scopes = if scopes.is_empty() {
        vec!["admin.*".to_owned()]
    } else {
        scopes
    };
    let scopes = match scopes
        .iter()
        .map(|s| Scope::parse(s))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(s) => s,
        Err(e) => return fail(format!("--scope: scope {e}")),
    };
    let db = match crate::app::open_store(&settings).await {
        Ok(db) => db,
        Err(e) => return fail(e),
    };
    let lock = match db.startup_lock().await {
        Ok(lock) => lock,
        Err(e) => return fail(e),
    };
    if let Err(e) = db.migrate().await {
        return fail(e);
    }
    let result = match crate::app::offline_services(&settings, &db).await {
        Ok(services) => services
            .keys
            .create_operator_key(&name, scopes, ttl_days.map(|d| d.saturating_mul(86_400)))
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    drop(lock);
    db.close().await;
    match result {
        Ok(issued) => {
            println!("{}", issued.secret.expose());
            eprintln!(
                "latchkey: admin token {} created ({}); it is shown only once",
                issued.record.id, issued.record.masked
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
