//! Criterion benchmark: what tracing costs a service per hop, with the subscriber the services
//! install (`switchboard_telemetry::init`: the W3C layer, the log layer at INFO writing to
//! nowhere) in three settings:
//! - `propagation`: no exporter configured (no `OTEL_EXPORTER_OTLP_ENDPOINT`): trace ids only;
//! - `sdk_no_exporter`: the OpenTelemetry layer over a tracer provider with no exporter, which
//!   is what every service ran before (spans built and dropped);
//! - `exporting`: the OpenTelemetry layer with a batch exporter that discards what it gets.
//!
//! One hop: a consumer span whose parent comes from NATS headers, a client span under it whose
//! context goes into the next headers, and (`hop_and_log`) one INFO log line inside.
//!
//! Run: `cargo bench -p switchboard-telemetry --bench spans`

use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};

#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        Ok(())
    }
}

fn hop(incoming: &async_nats::HeaderMap, log: bool) -> async_nats::HeaderMap {
    let span = tracing::info_span!(
        "webhook",
        request_id = tracing::field::Empty,
        otel.kind = "consumer"
    );
    switchboard_telemetry::set_parent_from_nats(&span, Some(incoming));
    let _in = span.enter();
    let client = tracing::info_span!("http_job.request", otel.kind = "client");
    let mut outgoing = async_nats::HeaderMap::new();
    switchboard_telemetry::inject_nats(&client, &mut outgoing);
    if log {
        tracing::info!(status = 200, "answered");
    }
    outgoing
}

fn bench(c: &mut Criterion) {
    let mut incoming = async_nats::HeaderMap::new();
    incoming.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    );
    let without_exporter = SdkTracerProvider::builder().build();
    let exporting = SdkTracerProvider::builder()
        .with_batch_exporter(Discard)
        .build();
    let settings = [
        ("propagation", None),
        ("sdk_no_exporter", Some(&without_exporter)),
        ("exporting", Some(&exporting)),
    ];
    for (workload, log) in [("hop", false), ("hop_and_log", true)] {
        let mut group = c.benchmark_group(workload);
        for (name, provider) in settings {
            let dispatch = switchboard_telemetry::bench::dispatch(provider);
            tracing::dispatcher::with_default(&dispatch, || {
                group.bench_function(name, |b| b.iter(|| hop(&incoming, log)));
            });
        }
        group.finish();
    }
    let _ = exporting.shutdown();
}

criterion_group!(benches, bench);
criterion_main!(benches);
