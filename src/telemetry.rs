//! Logging set-up: structured logs on stderr, filtered by `LATCHKEY_LOG`
//! (or `RUST_LOG`), with the chatty transport crates turned down.

use tracing_subscriber::EnvFilter;

const DEFAULT_FILTER: &str = "info,h2=warn,hyper=warn,hyper_util=warn,tower=warn,tonic=warn,sqlx=warn,sea_orm=warn,sea_orm_migration=warn";

pub fn init(json: bool) {
    let filter = std::env::var("LATCHKEY_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    // A second init (tests starting several servers) keeps the first subscriber.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Logs an internal `cause` under a fresh correlation id and returns the id:
/// the one way every transport reports a fault it cannot show its caller
/// (the wire carries the id, the log the cause).
pub fn log_internal(summary: &str, cause: &dyn std::fmt::Display) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    tracing::error!(correlation_id = %id, %cause, "{summary}");
    id
}
