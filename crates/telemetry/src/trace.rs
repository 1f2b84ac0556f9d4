//! Trace context: which trace a span belongs to, how that crosses NATS and HTTP, and the ids
//! on log lines.
//!
//! A span gets its W3C trace context in one of two ways:
//! - with an exporter configured (`OTEL_EXPORTER_OTLP_ENDPOINT`), tracing-opentelemetry's layer
//!   records the span and the SDK gives it its ids; it is exported when it ends;
//! - otherwise, and for a span `RUST_LOG` keeps from that layer, [`W3cLayer`] keeps it alive and
//!   it gets ids without anything being built: a span id drawn when first asked for, and the
//!   trace id, flags and trace state of its parent (the remote one set with
//!   [`set_remote_parent`], else the nearest span around it), or a new trace id for a root.
//!   Nothing is recorded or exported, but `traceparent` headers, run records and log lines
//!   carry the same ids as if it were.

use std::fmt;
use std::sync::{Arc, OnceLock};

use opentelemetry::Context as OtelContext;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use tracing::span::Id;
use tracing::{Dispatch, Event, Metadata, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::{LookupSpan, Registry};

/// The spans that get a trace context whatever `RUST_LOG` says: every span at INFO or above
/// (the services' own spans are INFO; dependencies' are DEBUG and TRACE).
pub(crate) fn traced(meta: &Metadata<'_>) -> bool {
    meta.is_span() && *meta.level() <= tracing::Level::INFO
}

/// The filter of [`W3cLayer`]: the [`traced`] spans. Its callsites are "sometimes" interesting,
/// so each span and event passes through every per-layer filter when it is created: a filter
/// pass that no span or event follows (a `log_enabled!` through the `log` bridge, which sqlx
/// makes for each statement) leaves stale per-layer filter state on its thread, which would
/// otherwise disable the next span for the OpenTelemetry and log layers. Its level hint (INFO)
/// keeps the `log` bridge from reporting levels nothing will show.
pub(crate) fn w3c_filter<S>() -> impl tracing_subscriber::layer::Filter<S> + Send + Sync + 'static
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_subscriber::filter::DynFilterFn::new(|meta, _| traced(meta))
        .with_callsite_filter(|meta| match traced(meta) {
            true => tracing::subscriber::Interest::sometimes(),
            false => tracing::subscriber::Interest::never(),
        })
        .with_max_level_hint(tracing::level_filters::LevelFilter::INFO)
}

/// Keeps the [`traced`] spans alive when no other layer wants them, so their trace context
/// propagates (its filter is [`w3c_filter`]; it records nothing itself).
pub(crate) struct W3cLayer;

impl<S> Layer<S> for W3cLayer where S: Subscriber + for<'a> LookupSpan<'a> {}

/// The trace context of a span that no OpenTelemetry layer records, in its extensions.
#[derive(Debug, Clone)]
enum W3cSpan {
    /// Set by [`set_remote_parent`] before the context was first asked for.
    RemoteParent(SpanContext),
    /// Its own context, fixed once asked for.
    Known(SpanContext),
}

/// A child of `parent`: its trace id, flags and state and a new span id; a new sampled trace
/// when `parent` is not valid.
fn child_of(parent: &SpanContext) -> SpanContext {
    let ids = RandomIdGenerator::default();
    if parent.is_valid() {
        SpanContext::new(
            parent.trace_id(),
            ids.new_span_id(),
            parent.trace_flags(),
            false,
            parent.trace_state().clone(),
        )
    } else {
        SpanContext::new(
            ids.new_trace_id(),
            ids.new_span_id(),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        )
    }
}

/// The trace context of span `id` of `dispatch`: OpenTelemetry's when its layer records the
/// span, else the W3C context [`W3cLayer`] keeps (see the module documentation). A span neither
/// knows (a DEBUG span enabled for the logs only) has its nearest traced ancestor's context.
pub(crate) fn context_of(dispatch: &Dispatch, id: &Id) -> SpanContext {
    if let Some(cx) = tracing_opentelemetry::get_otel_context(id, dispatch) {
        let sc = cx.span().span_context().clone();
        if sc.is_valid() {
            return sc;
        }
    }
    let Some(registry) = dispatch.downcast_ref::<Registry>() else {
        return SpanContext::empty_context();
    };
    let Some(span) = registry.span(id) else {
        return SpanContext::empty_context();
    };
    let remote = match span.extensions().get::<W3cSpan>() {
        Some(W3cSpan::Known(sc)) => return sc.clone(),
        Some(W3cSpan::RemoteParent(sc)) => Some(sc.clone()),
        None => None,
    };
    let parent = match remote {
        Some(remote) => remote,
        None => match span.parent() {
            Some(parent) => context_of(dispatch, &parent.id()),
            None => SpanContext::empty_context(),
        },
    };
    if !traced(span.metadata()) {
        return parent;
    }
    let mine = child_of(&parent);
    let mut extensions = span.extensions_mut();
    match extensions.get_mut::<W3cSpan>() {
        // Another thread asked at the same moment and won.
        Some(W3cSpan::Known(sc)) => sc.clone(),
        Some(state) => {
            *state = W3cSpan::Known(mine.clone());
            mine
        }
        None => {
            extensions.insert(W3cSpan::Known(mine.clone()));
            mine
        }
    }
}

/// The W3C trace context of `span` (not valid for a disabled span).
pub fn span_context(span: &tracing::Span) -> SpanContext {
    span.with_subscriber(|(id, dispatch)| context_of(dispatch, id))
        .unwrap_or_else(SpanContext::empty_context)
}

/// Makes `span` a child of `parent`, a context from another process. Call it right after
/// creating the span, before anything asks for its context (entering it, a log line inside it,
/// an injection): from then on its context is fixed. Ignored when `parent` is not valid.
pub fn set_remote_parent(span: &tracing::Span, parent: &SpanContext) {
    if !parent.is_valid() {
        return;
    }
    let _ = span.set_parent(OtelContext::new().with_remote_span_context(parent.clone()));
    span.with_subscriber(|(id, dispatch)| {
        let span = dispatch
            .downcast_ref::<Registry>()
            .and_then(|registry| registry.span(id));
        if let Some(span) = span {
            let mut extensions = span.extensions_mut();
            match extensions.get_mut::<W3cSpan>() {
                Some(W3cSpan::Known(_)) => {}
                Some(state) => *state = W3cSpan::RemoteParent(parent.clone()),
                None => extensions.insert(W3cSpan::RemoteParent(parent.clone())),
            }
        }
    });
}

/// Adds a link from `span` to `other` (another trace, or a span that is not its parent). Links
/// are exported with the span; without an exporter there is nothing to add them to.
pub fn add_link(span: &tracing::Span, other: &SpanContext) {
    if other.is_valid() {
        span.add_link(other.clone());
    }
}

/// The trace id of `span` as 32 hex digits (empty for a disabled span).
pub fn trace_id(span: &tracing::Span) -> String {
    let sc = span_context(span);
    if sc.is_valid() {
        sc.trace_id().to_string()
    } else {
        String::new()
    }
}

/// The `traceparent` value of a context (`00-{trace id}-{span id}-{flags}`), none when it is
/// not valid.
pub fn traceparent(sc: &SpanContext) -> Option<String> {
    let mut found = None;
    inject(sc, &mut |key: &str, value: String| {
        if key == "traceparent" {
            found = Some(value);
        }
    });
    found
}

/// The context a `traceparent` value names (and its `tracestate`, if any), none when the value
/// is not a valid W3C `traceparent`.
pub fn parse_traceparent(traceparent: &str, tracestate: Option<&str>) -> Option<SpanContext> {
    let pairs: Vec<(&str, &str)> = std::iter::once(("traceparent", traceparent))
        .chain(tracestate.map(|s| ("tracestate", s)))
        .collect();
    extract(&Pairs(&pairs))
}

/// Writes `sc` as `traceparent` (and `tracestate` when it has one) through `set`.
fn inject(sc: &SpanContext, set: &mut dyn FnMut(&str, String)) {
    if !sc.is_valid() {
        return;
    }
    struct Set<'a>(&'a mut dyn FnMut(&str, String));
    impl Injector for Set<'_> {
        fn set(&mut self, key: &str, value: String) {
            (self.0)(key, value)
        }
    }
    let cx = OtelContext::new().with_remote_span_context(sc.clone());
    TraceContextPropagator::new().inject_context(&cx, &mut Set(set));
}

/// Whether `value` is a `traceparent` as W3C Trace Context writes it: version, 32 and 16
/// lower-case hex digits, flags (the propagator alone takes a trace id one digit short).
fn well_formed(value: &str) -> bool {
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let parts: Vec<&str> = value.trim().split('-').collect();
    parts.len() >= 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && (parts[0] != "00" || parts.len() == 4)
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
}

/// The remote context carried by `carrier`, if valid.
fn extract(carrier: &dyn Extractor) -> Option<SpanContext> {
    if !carrier.get("traceparent").is_some_and(well_formed) {
        return None;
    }
    let cx = TraceContextPropagator::new().extract(carrier);
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

struct Pairs<'a>(&'a [(&'a str, &'a str)]);

impl Extractor for Pairs<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| *v)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| *k).collect()
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

/// Writes `span`'s trace context into NATS headers (`traceparent`, and `tracestate` when
/// there is one).
pub fn inject_nats(span: &tracing::Span, headers: &mut async_nats::HeaderMap) {
    inject(&span_context(span), &mut |key, value| {
        headers.insert(key, value.as_str());
    });
}

/// The trace context NATS headers carry, if any.
pub fn nats_context(headers: Option<&async_nats::HeaderMap>) -> Option<SpanContext> {
    headers.and_then(|h| extract(&NatsExtractor(h)))
}

/// Makes `span` a child of the trace context carried in NATS headers, if any (see
/// [`set_remote_parent`] for when to call it).
pub fn set_parent_from_nats(span: &tracing::Span, headers: Option<&async_nats::HeaderMap>) {
    if let Some(parent) = nats_context(headers) {
        set_remote_parent(span, &parent);
    }
}

/// Writes `span`'s trace context into HTTP request headers, replacing any there.
pub fn inject_http(span: &tracing::Span, headers: &mut http::HeaderMap) {
    inject(&span_context(span), &mut |key, value| {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            headers.insert(name, value);
        }
    });
}

/// [`inject_http`] for the current span: the shape HTTP clients take as a hook (the Twilio
/// client's `ClientConfig::propagate`).
pub fn inject_http_current(headers: &mut http::HeaderMap) {
    inject_http(&tracing::Span::current(), headers)
}

/// The trace context of an incoming HTTP request's W3C `traceparent`/`tracestate`, if valid.
pub fn http_context(headers: &http::HeaderMap) -> Option<SpanContext> {
    extract(&HttpExtractor(headers))
}

/// Makes `span` a child of an incoming HTTP request's W3C `traceparent`, if any: for callers
/// whose trace context is trusted (behind a proxy that sets or checks it).
pub fn set_parent_from_http(span: &tracing::Span, headers: &http::HeaderMap) {
    if let Some(parent) = http_context(headers) {
        set_remote_parent(span, &parent);
    }
}

/// Links `span` to an incoming HTTP request's W3C `traceparent`, if any, leaving it the root of
/// its own trace: for callers from the internet, whose trace ids, flags and state are theirs to
/// choose. Answers whether there was one.
pub fn link_from_http(span: &tracing::Span, headers: &http::HeaderMap) -> bool {
    match http_context(headers) {
        Some(theirs) => {
            add_link(span, &theirs);
            true
        }
        None => false,
    }
}

/// The query parameter of a callback URL that carries the trace context of the span that gave
/// the URL out ([`with_trace_query`]), for the callback's span to link to ([`trace_from_query`]).
pub const TRACE_QUERY_PARAM: &str = "traceparent";

/// `url` with the `traceparent` of `span` added to its query (unchanged when the span has no
/// context): for a callback URL handed to another system (Twilio's `StatusCallback`), so the
/// callback can link back to this trace.
pub fn with_trace_query(url: &str, span: &tracing::Span) -> String {
    let Some(value) = traceparent(&span_context(span)) else {
        return url.to_owned();
    };
    let (base, fragment) = match url.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (url, None),
    };
    let sep = match base.split_once('?') {
        None => "?",
        Some((_, "")) => "",
        Some((_, query)) if query.ends_with('&') => "",
        Some(_) => "&",
    };
    let mut out = format!("{base}{sep}{TRACE_QUERY_PARAM}={value}");
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// The trace context a callback's query carries ([`with_trace_query`]), if one is well formed.
pub fn trace_from_query(query: &str) -> Option<SpanContext> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == TRACE_QUERY_PARAM)
        .and_then(|(_, value)| parse_traceparent(value, None))
}

/// How a log line carries the ids of the span it was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdStyle {
    /// ` trace_id=… span_id=…` at the end of the line.
    Text,
    /// `"trace_id":"…","span_id":"…"` first in the object.
    Json,
}

/// An event format that adds the trace and span ids of the event's span to the lines of
/// `inner`, for the lines written inside a span (explicit parent or current span), whatever
/// `RUST_LOG` lets the logs show of that span.
pub(crate) struct WithTraceIds<F> {
    inner: F,
    style: IdStyle,
    /// The subscriber this format belongs to, set once it is built (a format cannot reach its
    /// subscriber while it writes: the dispatcher guards against reentrance).
    dispatch: Arc<OnceLock<tracing::dispatcher::WeakDispatch>>,
}

impl<F> WithTraceIds<F> {
    pub(crate) fn new(
        inner: F,
        style: IdStyle,
        dispatch: Arc<OnceLock<tracing::dispatcher::WeakDispatch>>,
    ) -> Self {
        WithTraceIds {
            inner,
            style,
            dispatch,
        }
    }
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let span = match event.parent() {
            Some(id) => Some(id.clone()),
            None if event.is_contextual() => ctx.current_span().id().cloned(),
            None => None,
        };
        let sc = span.and_then(|id| {
            let dispatch = self.dispatch.get()?.upgrade()?;
            Some(context_of(&dispatch, &id)).filter(SpanContext::is_valid)
        });
        let Some(sc) = sc else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let (trace_id, span_id) = (sc.trace_id(), sc.span_id());
        match self.style {
            IdStyle::Json if line.starts_with('{') => {
                let ids = format!("\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\",");
                line.insert_str(1, &ids);
            }
            IdStyle::Json => {}
            IdStyle::Text => {
                let end = line.trim_end_matches('\n').len();
                line.insert_str(end, &format!(" trace_id={trace_id} span_id={span_id}"));
            }
        }
        writer.write_str(&line)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use opentelemetry::trace::{SpanId, TraceId};
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
    use tracing_subscriber::EnvFilter;

    use super::*;
    use crate::{LogFormat, Logs, dispatch};

    /// Log lines written by a test's subscriber.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Lines {
        type Writer = Lines;
        fn make_writer(&'w self) -> Lines {
            self.clone()
        }
    }

    impl Lines {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
        fn json(&self) -> Vec<serde_json::Value> {
            self.text()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        }
    }

    /// Spans an SDK exported, kept.
    #[derive(Debug, Clone, Default)]
    struct Exported(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Exported {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    impl Exported {
        fn named(&self, name: &str) -> SpanData {
            let spans = self.0.lock().unwrap();
            let found: Vec<&SpanData> = spans.iter().filter(|s| s.name == name).collect();
            assert_eq!(found.len(), 1, "one {name} span: {spans:#?}");
            found[0].clone()
        }
        fn names(&self) -> Vec<String> {
            let spans = self.0.lock().unwrap();
            spans.iter().map(|s| s.name.to_string()).collect()
        }
    }

    fn logs(format: LogFormat, filter: &str, lines: &Lines) -> Logs<Lines> {
        Logs {
            format,
            ansi: false,
            filter: EnvFilter::new(filter),
            writer: lines.clone(),
        }
    }

    /// A subscriber without an exporter, logging `format` at `filter` to the answered lines.
    fn without_exporter(format: LogFormat, filter: &str) -> (Dispatch, Lines) {
        let lines = Lines::default();
        let dispatch = dispatch(
            "test",
            None,
            EnvFilter::new("off"),
            Some(logs(format, filter, &lines)),
        );
        (dispatch, lines)
    }

    /// A subscriber exporting spans `otel_filter` lets through to the answered store.
    fn with_exporter(otel_filter: &str) -> (Dispatch, Lines, Exported, SdkTracerProvider) {
        let exported = Exported::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exported.clone())
            .build();
        let lines = Lines::default();
        let dispatch = dispatch(
            "test",
            Some(&provider),
            EnvFilter::new(otel_filter),
            Some(logs(LogFormat::Json, "info", &lines)),
        );
        (dispatch, lines, exported, provider)
    }

    const THEIRS: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn http_headers(traceparent: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("traceparent", traceparent.parse().unwrap());
        h
    }

    #[test]
    fn without_an_exporter_ids_propagate_and_reach_the_log_lines() {
        let (dispatch, lines) = without_exporter(LogFormat::Json, "info");
        tracing::dispatcher::with_default(&dispatch, || {
            // One hop: a root, its child, the context into NATS headers.
            let root = tracing::info_span!("ingress");
            let child = root.in_scope(|| tracing::info_span!("publish"));
            let (root_cx, child_cx) = (span_context(&root), span_context(&child));
            assert!(root_cx.is_valid() && child_cx.is_valid());
            assert_eq!(root_cx.trace_id(), child_cx.trace_id());
            assert_ne!(root_cx.span_id(), child_cx.span_id());
            assert!(root_cx.is_sampled(), "a new trace is sampled");
            assert_eq!(span_context(&child), child_cx, "a span's context is fixed");
            let mut headers = async_nats::HeaderMap::new();
            inject_nats(&child, &mut headers);
            let sent = headers.get("traceparent").unwrap().to_string();
            assert_eq!(sent, traceparent(&child_cx).unwrap());
            assert_eq!(
                sent,
                format!("00-{}-{}-01", child_cx.trace_id(), child_cx.span_id())
            );

            // The next hop: its span continues the trace as a child of the sender's span.
            let worker = tracing::info_span!("worker");
            set_parent_from_nats(&worker, Some(&headers));
            let worker_cx = span_context(&worker);
            assert_eq!(worker_cx.trace_id(), child_cx.trace_id());
            assert_ne!(worker_cx.span_id(), child_cx.span_id());
            assert_eq!(trace_id(&worker), child_cx.trace_id().to_string());
            worker.in_scope(|| tracing::info!(n = 1, "inside"));
            tracing::warn!(parent: &root, "explicit parent");
            tracing::info!("outside");
            let lines = lines.json();
            assert_eq!(lines.len(), 3, "{lines:#?}");
            assert_eq!(lines[0]["trace_id"], worker_cx.trace_id().to_string());
            assert_eq!(lines[0]["span_id"], worker_cx.span_id().to_string());
            assert_eq!(lines[0]["fields"]["message"], "inside");
            assert_eq!(lines[0]["span"]["name"], "worker");
            assert_eq!(lines[1]["span_id"], root_cx.span_id().to_string());
            assert!(lines[2].get("trace_id").is_none(), "{}", lines[2]);
        });
    }

    #[test]
    fn text_lines_end_with_the_ids_and_quiet_logs_do_not_stop_propagation() {
        // RUST_LOG=warn: the INFO spans are not logged, yet they exist and propagate.
        let (dispatch, lines) = without_exporter(LogFormat::Text, "warn,detail=debug");
        let cx = tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!("webhook", guid = "abc");
            let _in = span.enter();
            let cx = span_context(&span);
            assert!(cx.is_valid());
            let mut headers = http::HeaderMap::new();
            inject_http(&span, &mut headers);
            assert_eq!(
                headers["traceparent"].to_str().unwrap(),
                traceparent(&cx).unwrap()
            );
            tracing::info!("not logged");
            tracing::warn!(reason = "x", "logged");
            // A DEBUG span the logs show (not traced) has the context of the traced span
            // around it.
            let debug = tracing::debug_span!(target: "detail", "detail");
            assert!(!debug.is_disabled());
            assert_eq!(span_context(&debug), cx);
            cx
        });
        let text = lines.text();
        assert_eq!(text.lines().count(), 1, "{text}");
        let line = text.lines().next().unwrap();
        assert!(
            line.ends_with(&format!(
                "logged reason=\"x\" trace_id={} span_id={}",
                cx.trace_id(),
                cx.span_id()
            )),
            "{line}"
        );
        assert!(!text.contains("not logged"));
    }

    #[test]
    fn with_an_exporter_spans_carry_their_parents_and_an_internet_traceparent_is_a_link() {
        let (dispatch, lines, exported, provider) = with_exporter("info");
        let theirs = parse_traceparent(THEIRS, None).unwrap();
        let (ingress_cx, worker_cx, trusted_cx) =
            tracing::dispatcher::with_default(&dispatch, || {
                let ingress = tracing::info_span!("ingress.webhook", otel.kind = "server");
                assert!(link_from_http(&ingress, &http_headers(THEIRS)));
                let mut headers = async_nats::HeaderMap::new();
                ingress.in_scope(|| {
                    tracing::info!("forwarding");
                    inject_nats(&tracing::Span::current(), &mut headers);
                });
                let worker = tracing::info_span!("webhook", otel.kind = "consumer");
                set_parent_from_nats(&worker, Some(&headers));
                worker.in_scope(|| tracing::info!("answered"));
                let trusted = tracing::info_span!("trusted");
                set_parent_from_http(&trusted, &http_headers(THEIRS));
                let cxs = (
                    span_context(&ingress),
                    span_context(&worker),
                    span_context(&trusted),
                );
                drop((ingress, worker, trusted));
                cxs
            });
        let _ = provider.force_flush();
        let ingress = exported.named("ingress.webhook");
        assert_eq!(ingress.span_context, ingress_cx);
        assert_ne!(ingress_cx.trace_id(), theirs.trace_id(), "not adopted");
        assert_eq!(ingress.parent_span_id, SpanId::INVALID, "a root");
        assert_eq!(ingress.links.len(), 1);
        assert_eq!(ingress.links[0].span_context.trace_id(), theirs.trace_id());
        assert_eq!(ingress.links[0].span_context.span_id(), theirs.span_id());
        assert_eq!(ingress.span_kind, opentelemetry::trace::SpanKind::Server);
        let worker = exported.named("webhook");
        assert_eq!(worker.span_context, worker_cx);
        assert_eq!(worker.span_context.trace_id(), ingress_cx.trace_id());
        assert_eq!(worker.parent_span_id, ingress_cx.span_id());
        assert!(worker.parent_span_is_remote);
        let trusted = exported.named("trusted");
        assert_eq!(trusted_cx.trace_id(), theirs.trace_id(), "adopted");
        assert_eq!(trusted.parent_span_id, theirs.span_id());
        // The log lines name the exported spans.
        let lines = lines.json();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert_eq!(lines[0]["span_id"], ingress_cx.span_id().to_string());
        assert_eq!(lines[1]["span_id"], worker_cx.span_id().to_string());
        assert_eq!(lines[1]["trace_id"], ingress_cx.trace_id().to_string());
    }

    #[test]
    fn the_exporter_respects_rust_log_and_what_it_leaves_out_still_propagates() {
        // RUST_LOG=warn,kept=info: spans of other targets are not exported.
        let (dispatch, _lines, exported, provider) = with_exporter("warn,kept=info");
        let (outer_cx, hidden_cx, kept_cx) = tracing::dispatcher::with_default(&dispatch, || {
            let outer = tracing::info_span!(target: "kept", "outer");
            let (hidden, kept) = outer.in_scope(|| {
                let hidden = tracing::info_span!(target: "hidden", "hidden");
                let kept = hidden.in_scope(|| tracing::info_span!(target: "kept", "inner"));
                (hidden, kept)
            });
            let cxs = (
                span_context(&outer),
                span_context(&hidden),
                span_context(&kept),
            );
            drop((outer, hidden, kept));
            cxs
        });
        let _ = provider.force_flush();
        let mut names = exported.names();
        names.sort();
        assert_eq!(names, ["inner", "outer"]);
        assert!(hidden_cx.is_valid(), "the hidden span still has a context");
        assert_eq!(hidden_cx.trace_id(), outer_cx.trace_id());
        assert_eq!(kept_cx.trace_id(), outer_cx.trace_id());
        assert_eq!(exported.named("inner").parent_span_id, outer_cx.span_id());
    }

    #[test]
    fn callback_urls_carry_the_trace_that_gave_them_out() {
        let (dispatch, _lines) = without_exporter(LogFormat::Text, "off");
        tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!("outbound.job");
            let tp = traceparent(&span_context(&span)).unwrap();
            for (url, expected) in [
                (
                    "https://in.example/twilio/status",
                    format!("https://in.example/twilio/status?traceparent={tp}"),
                ),
                (
                    "https://in.example/s?a=1",
                    format!("https://in.example/s?a=1&traceparent={tp}"),
                ),
                (
                    "https://in.example/s?",
                    format!("https://in.example/s?traceparent={tp}"),
                ),
                (
                    "https://in.example/s?a=1#f",
                    format!("https://in.example/s?a=1&traceparent={tp}#f"),
                ),
            ] {
                assert_eq!(with_trace_query(url, &span), expected);
            }
            let url = with_trace_query("https://in.example/s?a=1", &span);
            let query = url.split_once('?').unwrap().1;
            assert_eq!(
                trace_from_query(query),
                Some(span_context(&span)).map(|sc| {
                    SpanContext::new(
                        sc.trace_id(),
                        sc.span_id(),
                        sc.trace_flags(),
                        true,
                        sc.trace_state().clone(),
                    )
                })
            );
            assert_eq!(trace_from_query("a=1&traceparent=nonsense"), None);
            assert_eq!(trace_from_query(""), None);
            assert_eq!(
                with_trace_query("https://x/s", &tracing::Span::none()),
                "https://x/s"
            );
        });
    }

    #[test]
    fn a_filter_pass_without_an_event_does_not_disable_the_next_span() {
        // What the `log` bridge does for sqlx's `log_enabled!` on every statement: a filter
        // pass (here for a DEBUG span nothing wants) that no span or event follows.
        let permissive = tracing::Dispatch::new(tracing_subscriber::registry());
        let unwanted = tracing::dispatcher::with_default(&permissive, || {
            tracing::debug_span!(target: "sqlx::query", "statement")
                .metadata()
                .unwrap()
        });
        let (dispatch, lines, exported, provider) = with_exporter("info");
        tracing::dispatcher::with_default(&dispatch, || {
            for _ in 0..3 {
                // Enabled as far as the registry is concerned: every per-layer filter said
                // no, yet it answers yes and leaves the skipping to each layer.
                let _ = dispatch.enabled(unwanted);
                let span = tracing::info_span!("webhook");
                span.in_scope(|| tracing::info!("answered"));
            }
        });
        let _ = provider.force_flush();
        assert_eq!(exported.names(), ["webhook", "webhook", "webhook"]);
        let lines = lines.json();
        assert_eq!(lines.len(), 3);
        for line in lines {
            assert_eq!(line["span"]["name"], "webhook", "{line}");
        }
    }

    #[test]
    fn traceparent_values_are_checked() {
        let cx = parse_traceparent(THEIRS, Some("vendor=1")).unwrap();
        assert_eq!(
            cx.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert_eq!(cx.trace_state().header(), "vendor=1");
        assert!(cx.is_remote());
        assert_eq!(traceparent(&cx).as_deref(), Some(THEIRS));
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad, None).is_none(), "{bad}");
        }
        assert!(traceparent(&SpanContext::empty_context()).is_none());
        // A later version may add fields.
        let v1 = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
        assert!(parse_traceparent(v1, None).is_some());
    }
}
