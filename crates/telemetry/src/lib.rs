//! Telemetry shared by every Switchboard service: `tracing` to stderr (text or JSON, each line
//! written inside a span carrying its `trace_id` and `span_id`), and OpenTelemetry traces
//! exported over OTLP/HTTP when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Trace context
//! travels between services in NATS headers and to Twilio in HTTP headers (W3C `traceparent`),
//! so a message is one trace from the CLI or the webhook through ingress, behavior-worker and
//! outbound to Twilio; without an exporter the ids propagate all the same and nothing is
//! recorded (see the `trace` module and docs/observability.md).
//!
//! Also what the services share to run as containers: the health server ([`health`]), bounded
//! shutdown ([`lifecycle`]) and the options for both ([`args`]).

pub mod args;
pub mod health;
pub mod lifecycle;
pub mod metrics;
pub mod redact;

pub use redact::{Redacted, redact_passwords};

mod trace;

pub use opentelemetry::trace::SpanContext;
pub use trace::{
    TRACE_QUERY_PARAM, add_link, http_context, inject_http, inject_http_current, inject_nats,
    link_from_http, nats_context, parse_traceparent, set_parent_from_http, set_parent_from_nats,
    set_remote_parent, span_context, trace_from_query, trace_id, traceparent, with_trace_query,
};

use std::sync::{Arc, OnceLock};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use trace::{IdStyle, W3cLayer, WithTraceIds};

/// Keeps the exporter alive; flushes spans when dropped (at shutdown).
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let Some(provider) = &self.provider else {
            return;
        };
        // Within what is left of a shutdown's bound (SHUTDOWN_TIMEOUT_SECS), if one is under way.
        let most = std::time::Duration::from_secs(5);
        let within = lifecycle::time_left().map_or(most, |left| {
            left.min(most).max(std::time::Duration::from_millis(100))
        });
        let _ = provider.shutdown_with_timeout(within);
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format '{other}' (use text or json)")),
        }
    }
}

/// Whether an OTLP endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT` or the traces-specific
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, not empty): only then are spans recorded and exported.
pub fn exporter_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()))
}

/// The tracer provider exporting over OTLP/HTTP (protobuf) in batches to the configured
/// endpoint (the standard `OTEL_EXPORTER_OTLP_*` and `OTEL_BSP_*` variables), with
/// `service_name` as the resource's `service.name` (`OTEL_RESOURCE_ATTRIBUTES` adds the rest).
pub fn tracer_provider(service_name: &str) -> anyhow::Result<SdkTracerProvider> {
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_string())
        .build();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(exporter)
        .build())
}

/// Whether log lines carry ANSI colour codes: only text logs written to a terminal, and not
/// when `NO_COLOR` is set to anything but the empty string (<https://no-color.org>). Logs a
/// container writes to a pipe or a file (Docker, Kubernetes, systemd) stay plain text.
pub fn use_ansi(
    format: LogFormat,
    stderr_is_terminal: bool,
    no_color: Option<&std::ffi::OsStr>,
) -> bool {
    let no_color = no_color.is_some_and(|v| !v.is_empty());
    format == LogFormat::Text && stderr_is_terminal && !no_color
}

/// `RUST_LOG`, or `default` when it is unset or not a valid filter.
fn env_filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
}

/// Where log lines go and how they look.
struct Logs<W> {
    format: LogFormat,
    ansi: bool,
    filter: EnvFilter,
    writer: W,
}

/// The log layer: `RUST_LOG`'s lines (its own filter), with the trace and span ids of the span
/// each line is written in.
fn log_layer<S, W>(
    logs: Logs<W>,
    dispatch: Arc<OnceLock<tracing::dispatcher::WeakDispatch>>,
) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let Logs {
        format,
        ansi,
        filter,
        writer,
    } = logs;
    match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(ansi)
            .event_format(WithTraceIds::new(
                tracing_subscriber::fmt::format().with_ansi(ansi),
                IdStyle::Text,
                dispatch,
            ))
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(writer)
            .event_format(WithTraceIds::new(
                tracing_subscriber::fmt::format().json(),
                IdStyle::Json,
                dispatch,
            ))
            .with_filter(filter)
            .boxed(),
    }
}

/// The subscriber: [`W3cLayer`] (trace context for every INFO span, nothing recorded), the
/// OpenTelemetry layer when `provider` exports (its own `RUST_LOG` filter), and the log layer.
fn dispatch<W>(
    service_name: &str,
    provider: Option<&SdkTracerProvider>,
    otel_filter: EnvFilter,
    logs: Option<Logs<W>>,
) -> tracing::Dispatch
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let cell = Arc::new(OnceLock::new());
    let otel = provider.map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(service_name.to_string()))
            .with_filter(otel_filter)
    });
    let logs = logs.map(|logs| log_layer(logs, cell.clone()));
    let subscriber = tracing_subscriber::registry()
        .with(W3cLayer.with_filter(trace::w3c_filter()))
        .with(otel)
        .with(logs);
    let dispatch = tracing::Dispatch::new(subscriber);
    let _ = cell.set(dispatch.downgrade());
    dispatch
}

/// The subscribers `benches/spans.rs` compares, as the services build them (not an API).
#[doc(hidden)]
pub mod bench {
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::EnvFilter;

    use crate::{LogFormat, Logs};

    /// A service's subscriber, logging text at INFO to nowhere, with `provider` when given
    /// (none: no exporter configured).
    pub fn dispatch(provider: Option<&SdkTracerProvider>) -> tracing::Dispatch {
        let logs = Logs {
            format: LogFormat::Text,
            ansi: false,
            filter: EnvFilter::new("info"),
            writer: std::io::sink,
        };
        crate::dispatch("bench", provider, EnvFilter::new("info"), Some(logs))
    }
}

/// Installs `dispatch` as the global subscriber, with the W3C propagator.
fn install(dispatch: tracing::Dispatch) -> anyhow::Result<()> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    dispatch.try_init()?;
    Ok(())
}

/// Installs the global subscriber and propagator of a service. Call once, first thing in
/// `main`. Log lines (to stderr, filtered by `RUST_LOG`, default `info`) carry the trace and
/// span ids of the span they are written in. Spans are recorded and exported only when an OTLP
/// endpoint is configured ([`exporter_configured`]), filtered by `RUST_LOG` too; without one
/// nothing is built for them, and trace ids propagate all the same.
pub fn init(service_name: &str, format: LogFormat) -> anyhow::Result<Telemetry> {
    let provider = match exporter_configured() {
        true => Some(tracer_provider(service_name)?),
        false => None,
    };
    let ansi = use_ansi(
        format,
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let logs = Logs {
        format,
        ansi,
        filter: env_filter("info"),
        writer: std::io::stderr,
    };
    let otel_filter = env_filter("info");
    install(dispatch(
        service_name,
        provider.as_ref(),
        otel_filter,
        Some(logs),
    ))?;
    if let Some(provider) = &provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    Ok(Telemetry { provider })
}

/// [`init`] for a command-line tool: spans (and their export, when an OTLP endpoint is
/// configured) as for a service, but log lines only when `RUST_LOG` is set: the tool's output
/// is its own.
pub fn init_cli(service_name: &str) -> anyhow::Result<Telemetry> {
    let provider = match exporter_configured() {
        true => Some(tracer_provider(service_name)?),
        false => None,
    };
    let logs = std::env::var_os("RUST_LOG").map(|_| Logs {
        format: LogFormat::Text,
        ansi: use_ansi(
            LogFormat::Text,
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR").as_deref(),
        ),
        filter: env_filter("warn"),
        writer: std::io::stderr,
    });
    let otel_filter = env_filter("info");
    install(dispatch(service_name, provider.as_ref(), otel_filter, logs))?;
    Ok(Telemetry { provider })
}

/// Installs a subscriber for tests (idempotent): spans get real trace ids, nothing is recorded
/// or exported; log lines (`RUST_LOG`, default `warn`) go to the test's output.
pub fn init_for_tests() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let logs = Logs {
            format: LogFormat::Text,
            ansi: false,
            filter: env_filter("warn"),
            writer: tracing_subscriber::fmt::TestWriter::new(),
        };
        let _ = install(dispatch(
            "switchboard-tests",
            None,
            EnvFilter::new("off"),
            Some(logs),
        ));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_for_text_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(use_ansi(LogFormat::Text, true, None));
        assert!(
            use_ansi(LogFormat::Text, true, Some(OsStr::new(""))),
            "an empty NO_COLOR does not count"
        );
        assert!(!use_ansi(LogFormat::Text, false, None), "a pipe or a file");
        assert!(!use_ansi(LogFormat::Text, true, Some(OsStr::new("1"))));
        assert!(!use_ansi(LogFormat::Json, true, None));
        assert!(!use_ansi(LogFormat::Json, false, None));
    }

    #[test]
    fn trace_context_survives_a_nats_hop() {
        init_for_tests();
        let outer = tracing::info_span!("ingress");
        let mut headers = async_nats::HeaderMap::new();
        inject_nats(&outer, &mut headers);
        assert!(
            headers.get("traceparent").is_some(),
            "traceparent header written"
        );
        let inner = tracing::info_span!("worker");
        set_parent_from_nats(&inner, Some(&headers));
        assert_eq!(trace_id(&inner), trace_id(&outer));
        assert_eq!(trace_id(&outer).len(), 32);
    }

    #[test]
    fn http_traceparent_is_adopted() {
        init_for_tests();
        let mut h = http::HeaderMap::new();
        h.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let span = tracing::info_span!("ingress");
        set_parent_from_http(&span, &h);
        assert_eq!(trace_id(&span), "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
