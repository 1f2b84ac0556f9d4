//! Prometheus metrics: one registry per process, filled at start by the service's own metric
//! families and served as text at `GET /metrics` by the health server (`METRICS_ADDR`).
//!
//! Names follow the OpenTelemetry semantic conventions where one exists, written the way
//! Prometheus exporters write them (`http.server.request.duration` in seconds becomes
//! `http_server_request_duration_seconds`); Switchboard's own metrics start with
//! `switchboard_`. Every label takes values from a closed set or from what the operator
//! configured (listener ids, error codes Twilio documents): nothing an internet client chooses
//! can add a time series.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

pub use prometheus_client;

/// The content type of the text exposition format `/metrics` answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Bucket bounds (seconds) for request and run durations: 0.5 ms to about 16 s, doubling.
/// The webhook path answers in about a millisecond and Twilio gives up at 15 s.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 16)
}

/// A histogram family with [`latency_buckets`].
pub type LatencyFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// A new [`LatencyFamily`].
pub fn latency_family<L: Clone + std::hash::Hash + Eq>() -> LatencyFamily<L> {
    Family::new_with_constructor(|| Histogram::new(latency_buckets()))
}

/// A process's metrics registry. Cloning shares it.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry holding the process metrics (`process_*`: resident memory, CPU time, open
    /// file descriptors, start time) and nothing else yet.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ProcessCollector::new()));
        Metrics {
            registry: Arc::new(Mutex::new(registry)),
        }
    }

    /// Adds a metric (a clone shares its value with the one the service updates).
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.registry.lock().unwrap().register(name, help, metric);
    }

    /// Adds a metric whose name ends with its unit (`_seconds`, `_bytes`).
    pub fn register_with_unit(
        &self,
        name: &str,
        help: &str,
        unit: Unit,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.registry
            .lock()
            .unwrap()
            .register_with_unit(name, help, unit, metric);
    }

    /// Adds a collector asked for its values at each scrape.
    pub fn register_collector(&self, collector: impl Collector) {
        self.registry
            .lock()
            .unwrap()
            .register_collector(Box::new(collector));
    }

    /// Everything, in the text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let registry = self.registry.lock().unwrap();
        // Writing to a String cannot fail; an encoding error would be a bug in a metric.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            let _ = writeln!(out, "# encoding failed: {e}");
        }
        out
    }
}

/// `GET /metrics`, to merge into the health server's router ([`crate::health::router`]).
pub fn router(metrics: Metrics) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(http::header::CONTENT_TYPE, CONTENT_TYPE)],
                    metrics.encode(),
                )
            }
        }),
    )
}

/// `http.server.request.duration` (OpenTelemetry HTTP semantic conventions) with its
/// attributes as labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpServerLabels {
    /// `GET`, `POST`, …; anything else is `_OTHER`, as the conventions say.
    pub http_request_method: &'static str,
    /// The route template (`/webhooks/{guid}`), never the path itself.
    pub http_route: &'static str,
    pub http_response_status_code: u16,
}

/// The HTTP server metrics of a service facing HTTP clients.
#[derive(Clone, Debug)]
pub struct HttpServerMetrics {
    duration: LatencyFamily<HttpServerLabels>,
}

impl HttpServerMetrics {
    /// Registers `http_server_request_duration_seconds` in `metrics`.
    pub fn register(metrics: &Metrics) -> HttpServerMetrics {
        let duration = latency_family();
        metrics.register_with_unit(
            "http_server_request_duration",
            "Duration of HTTP server requests (OpenTelemetry http.server.request.duration)",
            Unit::Seconds,
            duration.clone(),
        );
        HttpServerMetrics { duration }
    }

    /// Records one request.
    pub fn observe(&self, method: &http::Method, route: &'static str, status: u16, took: Duration) {
        self.duration
            .get_or_create(&HttpServerLabels {
                http_request_method: method_label(method),
                http_route: route,
                http_response_status_code: status,
            })
            .observe(took.as_secs_f64());
    }
}

/// The method as the conventions label it: the known ones by name, the rest `_OTHER`, so a
/// client inventing methods adds no series.
pub fn method_label(method: &http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        "TRACE" => "TRACE",
        "CONNECT" => "CONNECT",
        _ => "_OTHER",
    }
}

/// A counter family keyed by one closed-set label: the common shape of the domain metrics.
pub type CounterFamily<L> = Family<L, Counter>;

/// The process metrics Prometheus's own clients export, read from `/proc` at each scrape
/// (Linux; elsewhere only the start time).
#[derive(Debug)]
struct ProcessCollector {
    start_time: f64,
}

impl ProcessCollector {
    fn new() -> ProcessCollector {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        ProcessCollector {
            // The process's own start: close enough, as the registry is built at start.
            start_time: now,
        }
    }
}

/// What `/proc/self` says: resident bytes, CPU seconds (user + system), open descriptors.
fn read_proc() -> Option<(u64, f64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line (11 and 12 after the name and state).
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let rss_pages: u64 = fields.get(21)?.parse().ok()?;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    let fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Some((rss_pages * page, (utime + stime) / ticks.max(1.0), fds))
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let start = ConstGauge::new(self.start_time);
        let m = encoder.encode_descriptor(
            "process_start_time",
            "Start time of the process since the Unix epoch",
            Some(&Unit::Seconds),
            start.metric_type(),
        )?;
        start.encode(m)?;
        if let Some((rss, cpu, fds)) = read_proc() {
            let rss = ConstGauge::new(rss as i64);
            let m = encoder.encode_descriptor(
                "process_resident_memory",
                "Resident memory size",
                Some(&Unit::Bytes),
                rss.metric_type(),
            )?;
            rss.encode(m)?;
            let cpu = ConstCounter::new(cpu);
            let m = encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent",
                Some(&Unit::Seconds),
                cpu.metric_type(),
            )?;
            cpu.encode(m)?;
            let fds = ConstGauge::new(fds as i64);
            let m = encoder.encode_descriptor(
                "process_open_fds",
                "Number of open file descriptors",
                None,
                fds.metric_type(),
            )?;
            fds.encode(m)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the one sample whose line starts with `series` (name and labels).
    pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn process_metrics_are_read_from_proc() {
        let text = Metrics::new().encode();
        let rss = sample(&text, "process_resident_memory_bytes").expect(&text);
        assert!(rss > 1_000_000.0, "{rss}");
        let fds = sample(&text, "process_open_fds").expect(&text);
        assert!(fds >= 3.0, "{fds}");
        assert!(
            sample(&text, "process_cpu_seconds_total").is_some(),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn http_server_durations_by_method_route_and_status() {
        let metrics = Metrics::new();
        let http = HttpServerMetrics::register(&metrics);
        http.observe(
            &http::Method::POST,
            "/webhooks/{guid}",
            200,
            Duration::from_millis(3),
        );
        http.observe(
            &http::Method::POST,
            "/webhooks/{guid}",
            200,
            Duration::from_millis(1),
        );
        let odd = http::Method::from_bytes(b"BREW").unwrap();
        http.observe(&odd, "/webhooks/{guid}", 404, Duration::from_millis(1));
        let text = metrics.encode();
        let series = "http_server_request_duration_seconds_count{http_request_method=\"POST\",http_route=\"/webhooks/{guid}\",http_response_status_code=\"200\"}";
        assert_eq!(sample(&text, series), Some(2.0), "{text}");
        let bucket = "http_server_request_duration_seconds_bucket{le=\"0.002\",http_request_method=\"POST\",http_route=\"/webhooks/{guid}\",http_response_status_code=\"200\"}";
        assert_eq!(sample(&text, bucket), Some(1.0), "{text}");
        assert!(text.contains("http_request_method=\"_OTHER\""), "{text}");
        assert!(!text.contains("BREW"), "{text}");
    }
}
