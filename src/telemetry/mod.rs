//! Telemetry, one leaf module that imports nothing of ours: structured logs
//! on stderr (filtered by `LATCHKEY_LOG` or `RUST_LOG`, the chatty transport
//! crates turned down), OTLP traces when the `OTEL_*` variables ask for them
//! (`otlp`, `traces`), and the process's metrics (`metrics`, served as
//! Prometheus text by `prometheus`).

pub mod metrics;
mod otlp;
mod otlp_metrics;
pub mod prometheus;
mod sampling;
pub mod traces;

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

const DEFAULT_FILTER: &str = "info,h2=warn,hyper=warn,hyper_util=warn,tower=warn,tonic=warn,sqlx=warn,sea_orm=warn,sea_orm_migration=warn";

/// The request spans' target: exported over OTLP, kept out of the log lines.
const TRACE_TARGET: &str = "latchkey::trace";

/// Flushes buffered spans when the process stops. Dropping it without
/// [`Telemetry::shutdown`] loses what was not yet exported.
#[must_use]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    /// The OTLP metrics exporter: its stop signal and task.
    metrics: Option<(
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    )>,
}

impl Telemetry {
    /// Whether request spans are being made and exported.
    pub fn tracing(&self) -> bool {
        self.tracer.is_some()
    }

    /// Exports every span still buffered and the metrics once more, then
    /// stops the exporters.
    pub async fn shutdown(self) {
        if let Some((stop, task)) = self.metrics {
            let _ = stop.send(true);
            let _ = task.await;
        }
        if let Some(provider) = self.tracer {
            // The SDK's shutdown blocks until its export thread is done.
            let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(e)) = done {
                tracing::warn!(error = %e, "could not flush spans at shutdown");
            }
        }
    }
}

fn log_filter() -> EnvFilter {
    let filter = std::env::var("LATCHKEY_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    match format!("{TRACE_TARGET}=off").parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

/// Sets up logging and, when the environment asks for it, trace export.
/// Call inside the Tokio runtime. A second call (tests starting several
/// servers) keeps the first subscriber and exports nothing more.
pub fn init(json: bool) -> Telemetry {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs: Box<dyn Layer<Registry> + Send + Sync> = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .boxed()
    };
    let logs = logs.with_filter(log_filter());
    let mut problem = None;
    let provider = if otlp::traces_requested() {
        match otlp::tracer_provider() {
            Ok(p) => Some(p),
            Err(e) => {
                problem = Some(e);
                None
            }
        }
    } else {
        None
    };
    let spans = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(otlp::tracer(p))
            .with_location(false)
            .with_threads(false)
            .with_level(false)
            .with_tracked_inactivity(false)
            .with_filter(Targets::new().with_target(TRACE_TARGET, LevelFilter::INFO))
    });
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init()
        .is_ok();
    if let Some(e) = problem {
        tracing::error!(error = %e, "trace export is off");
    }
    let tracer = provider.filter(|_| installed);
    if tracer.is_some() {
        // Sampling happens in the request layers, before any span is made.
        sampling::install(sampling::HeadSampler::from_env());
        traces::enable();
        tracing::info!("exporting traces over OTLP");
    }
    let metrics = otlp_metrics::endpoint().and_then(|endpoint| {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        match otlp_metrics::spawn(endpoint, stopped) {
            Ok(task) => {
                tracing::info!("exporting metrics over OTLP");
                Some((stop, task))
            }
            Err(e) => {
                tracing::error!(error = %e, "metric export is off");
                None
            }
        }
    });
    Telemetry { tracer, metrics }
}

/// Logs an internal `cause` under a fresh correlation id and returns the id:
/// the one way every transport reports a fault it cannot show its caller
/// (the wire carries the id, the log the cause).
pub fn log_internal(summary: &str, cause: &dyn std::fmt::Display) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    tracing::error!(correlation_id = %id, %cause, "{summary}");
    id
}
