//! Telemetry shared by every Switchboard service: `tracing` to stderr (text or JSON), and
//! OpenTelemetry traces exported over OTLP/HTTP when the standard `OTEL_EXPORTER_OTLP_ENDPOINT`
//! is set. Trace context travels between services in NATS headers (W3C `traceparent`), so one
//! webhook is one trace across ingress and behavior-worker.
//!
//! Also what the services share to run as containers: the health server ([`health`]), bounded
//! shutdown ([`lifecycle`]) and the options for both ([`args`]).

pub mod args;
pub mod health;
pub mod lifecycle;
pub mod metrics;
pub mod redact;

pub use redact::{Redacted, redact_passwords};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Keeps the exporter alive; flushes spans when dropped (at shutdown).
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        // Within what is left of a shutdown's bound (SHUTDOWN_TIMEOUT_SECS), if one is under way.
        let most = std::time::Duration::from_secs(5);
        let within = lifecycle::time_left().map_or(most, |left| {
            left.min(most).max(std::time::Duration::from_millis(100))
        });
        let _ = self.provider.shutdown_with_timeout(within);
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

/// The tracer provider: exporting over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the
/// traces-specific variable) is set, otherwise recording spans without exporting them (trace
/// ids still flow through NATS headers and the run log).
pub fn tracer_provider(service_name: &str) -> anyhow::Result<SdkTracerProvider> {
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_string())
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    let endpoint_set = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()));
    if endpoint_set {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    Ok(builder.build())
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

/// Installs the global subscriber and propagator. Call once, first thing in `main`.
pub fn init(service_name: &str, format: LogFormat) -> anyhow::Result<Telemetry> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = tracer_provider(service_name)?;
    let tracer = provider.tracer(service_name.to_string());
    opentelemetry::global::set_tracer_provider(provider.clone());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = use_ansi(
        format,
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let fmt = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    // RUST_LOG filters the log lines only; spans always reach OpenTelemetry so a quiet log
    // level does not break traces.
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(EnvFilter::new("info")),
        )
        .try_init()?;
    Ok(Telemetry { provider })
}

/// Installs a subscriber for tests (idempotent): spans get real trace ids, nothing is exported.
pub fn init_for_tests() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder().build();
        let tracer = provider.tracer("switchboard-tests");
        opentelemetry::global::set_tracer_provider(provider);
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
        let _ = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_test_writer()
                    .with_filter(filter),
            )
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_filter(EnvFilter::new("info")),
            )
            .try_init();
    });
}

struct NatsInjector<'a>(&'a mut async_nats::HeaderMap);

impl Injector for NatsInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct NatsExtractor<'a>(&'a async_nats::HeaderMap);

impl Extractor for NatsExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

struct HttpExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HttpExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Writes the current span's trace context into NATS headers.
pub fn inject_nats(span: &tracing::Span, headers: &mut async_nats::HeaderMap) {
    let cx = span.context();
    TraceContextPropagator::new().inject_context(&cx, &mut NatsInjector(headers));
}

/// Makes `span` a child of the trace context carried in NATS headers, if any.
pub fn set_parent_from_nats(span: &tracing::Span, headers: Option<&async_nats::HeaderMap>) {
    if let Some(h) = headers {
        let cx = TraceContextPropagator::new().extract(&NatsExtractor(h));
        if cx.span().span_context().is_valid() {
            let _ = span.set_parent(cx);
        }
    }
}

/// Makes `span` a child of an incoming HTTP request's W3C `traceparent`, if any.
pub fn set_parent_from_http(span: &tracing::Span, headers: &http::HeaderMap) {
    let cx = TraceContextPropagator::new().extract(&HttpExtractor(headers));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// The trace id of `span` as 32 hex digits (empty when tracing is not active).
pub fn trace_id(span: &tracing::Span) -> String {
    let id = span.context().span().span_context().trace_id();
    if id == opentelemetry::trace::TraceId::INVALID {
        String::new()
    } else {
        id.to_string()
    }
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
