//! What the outbound service counts (served at `/metrics` on `METRICS_ADDR`): jobs by kind and
//! outcome, Twilio's errors by code, retries, rate-limit waits, suppressed sends, dead letters,
//! the Twilio API's latency and the JetStream consumers' backlog. Label values are closed sets:
//! job kinds, outcomes and error names of this service, Twilio's numeric error codes, the
//! configured API hosts.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;
use switchboard_telemetry::metrics::{
    CounterFamily, LatencyFamily, Metrics, latency_buckets, latency_family, method_label,
};
use switchboard_twilio::client::{Observe, Observed};
use tokio::sync::watch;

/// How often the consumers' backlog is read from JetStream.
const CONSUMER_POLL: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    /// `send_sms`, `lookup` or `http`.
    kind: &'static str,
    /// The job's final event (`sent`, `completed`, `failed`, `dead_lettered`; for HTTP jobs
    /// `response` or `error`).
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    /// Twilio's error code, or this service's name for a failure without one (`timeout`,
    /// `connect_failed`, …).
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetryLabels {
    kind: &'static str,
    /// `throttled` (429 / 20429 / 14107), `ambiguous` (the message may exist), `transient`
    /// (another retryable Twilio error), `service` (PostgreSQL or NATS trouble here).
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    /// The dead-lettered job's error code.
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClientLabels {
    http_request_method: &'static str,
    server_address: String,
    /// 0 when no answer came (connection failed, timed out).
    http_response_status_code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabels {
    consumer: String,
}

/// The outbound service's metrics. Cloning shares them.
#[derive(Clone, Debug)]
pub struct OutboundMetrics {
    jobs: CounterFamily<JobLabels>,
    durations: LatencyFamily<KindLabels>,
    twilio_errors: CounterFamily<CodeLabels>,
    retries: CounterFamily<RetryLabels>,
    rate_limit_waits: Histogram,
    suppressed: Counter,
    dead_letters: CounterFamily<ReasonLabels>,
    client: LatencyFamily<ClientLabels>,
    pending: Family<ConsumerLabels, Gauge>,
    ack_pending: Family<ConsumerLabels, Gauge>,
}

impl Default for OutboundMetrics {
    /// Counted in a registry nothing serves (tests; a service without `METRICS_ADDR`).
    fn default() -> Self {
        OutboundMetrics::register(&Metrics::new())
    }
}

impl OutboundMetrics {
    /// Registers the service's metrics in `metrics`.
    pub fn register(metrics: &Metrics) -> OutboundMetrics {
        let m = OutboundMetrics {
            jobs: CounterFamily::default(),
            durations: latency_family(),
            twilio_errors: CounterFamily::default(),
            retries: CounterFamily::default(),
            rate_limit_waits: Histogram::new(latency_buckets()),
            suppressed: Counter::default(),
            dead_letters: CounterFamily::default(),
            client: latency_family(),
            pending: Family::default(),
            ack_pending: Family::default(),
        };
        metrics.register(
            "switchboard_outbound_jobs",
            "Jobs finished, by kind (send_sms, lookup, http) and outcome (the final event)",
            m.jobs.clone(),
        );
        metrics.register_with_unit(
            "switchboard_outbound_job_duration",
            "From a job's first delivery to its outcome, by kind (HTTP jobs: the request)",
            Unit::Seconds,
            m.durations.clone(),
        );
        metrics.register(
            "switchboard_twilio_errors",
            "Failed Twilio API calls by Twilio error code (or timeout, connect_failed, connection_lost, unreadable_answer)",
            m.twilio_errors.clone(),
        );
        metrics.register(
            "switchboard_outbound_retries",
            "Jobs put back for a later delivery, by kind and reason",
            m.retries.clone(),
        );
        metrics.register_with_unit(
            "switchboard_outbound_rate_limit_wait",
            "Time send jobs waited for their sender's rate limit or the account's concurrency cap",
            Unit::Seconds,
            m.rate_limit_waits.clone(),
        );
        metrics.register(
            "switchboard_outbound_suppressed",
            "Sends refused because the recipient is on the account's suppression list (opt-out), Twilio not called",
            m.suppressed.clone(),
        );
        metrics.register(
            "switchboard_outbound_dead_letters",
            "Jobs copied to the dead-letter stream, by error code",
            m.dead_letters.clone(),
        );
        metrics.register_with_unit(
            "http_client_request_duration",
            "Duration of Twilio API requests (OpenTelemetry http.client.request.duration)",
            Unit::Seconds,
            m.client.clone(),
        );
        metrics.register(
            "switchboard_jetstream_consumer_pending",
            "Jobs in the stream not yet delivered to the consumer (read every 10 s)",
            m.pending.clone(),
        );
        metrics.register(
            "switchboard_jetstream_consumer_ack_pending",
            "Jobs delivered and not yet acknowledged (in flight or awaiting redelivery)",
            m.ack_pending.clone(),
        );
        m
    }

    /// A job ended with its final event `outcome`.
    pub(crate) fn job(&self, kind: &'static str, outcome: &'static str) {
        self.jobs.get_or_create(&JobLabels { kind, outcome }).inc();
    }

    /// A job took `took` from its first delivery to its outcome.
    pub(crate) fn job_duration(&self, kind: &'static str, took: Duration) {
        self.durations
            .get_or_create(&KindLabels { kind })
            .observe(took.as_secs_f64());
    }

    /// A Twilio call failed with `code` (from `job::error_code_and_message`).
    pub(crate) fn twilio_error(&self, code: &str) {
        // Twilio's codes are numbers; the other names are this service's own. Anything else
        // (a malformed answer's code) is one series, not one each.
        let known = code.len() <= 6 && code.bytes().all(|b| b.is_ascii_digit())
            || matches!(
                code,
                "connect_failed" | "timeout" | "connection_lost" | "unreadable_answer" | "setup"
            );
        let code = if known { code } else { "other" };
        self.twilio_errors
            .get_or_create(&CodeLabels { code: code.into() })
            .inc();
    }

    /// A job was put back for a later delivery.
    pub(crate) fn retry(&self, kind: &'static str, reason: &'static str) {
        self.retries
            .get_or_create(&RetryLabels { kind, reason })
            .inc();
    }

    /// A send waited `took` for its rate limit.
    pub(crate) fn rate_limit_wait(&self, took: Duration) {
        self.rate_limit_waits.observe(took.as_secs_f64());
    }

    /// A send to a suppressed recipient was refused.
    pub(crate) fn suppressed(&self) {
        self.suppressed.inc();
    }

    /// A job was dead-lettered with error `code`.
    pub(crate) fn dead_letter(&self, code: &str) {
        // Error codes are this service's constants or Twilio's numbers (see `twilio_error`).
        let code = if code.len() <= 40
            && code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            code
        } else {
            "other"
        };
        self.dead_letters
            .get_or_create(&ReasonLabels {
                reason: code.into(),
            })
            .inc();
    }

    /// The hook the Twilio client calls after each request.
    pub fn twilio_observer(&self) -> Observe {
        let client = self.client.clone();
        Observe(Arc::new(move |o: &Observed<'_>| {
            let method =
                reqwest::Method::from_bytes(o.method.as_bytes()).unwrap_or(reqwest::Method::GET);
            client
                .get_or_create(&ClientLabels {
                    http_request_method: method_label(&method),
                    server_address: o.host.to_owned(),
                    http_response_status_code: o.status.unwrap_or(0),
                })
                .observe(o.took.as_secs_f64());
        }))
    }

    /// Reads each consumer's backlog every 10 s until `stop` turns true.
    pub(crate) fn watch_consumers(
        &self,
        consumers: Vec<(String, jetstream::consumer::PullConsumer)>,
        mut stop: watch::Receiver<bool>,
    ) {
        let metrics = self.clone();
        tokio::spawn(async move {
            let mut consumers = consumers;
            loop {
                for (name, consumer) in &mut consumers {
                    // A failed read (NATS away) leaves the last values.
                    let Ok(info) = consumer.info().await else {
                        continue;
                    };
                    let labels = ConsumerLabels {
                        consumer: name.clone(),
                    };
                    metrics
                        .pending
                        .get_or_create(&labels)
                        .set(i64::try_from(info.num_pending).unwrap_or(i64::MAX));
                    metrics
                        .ack_pending
                        .get_or_create(&labels)
                        .set(i64::try_from(info.num_ack_pending).unwrap_or(i64::MAX));
                }
                tokio::select! {
                    () = tokio::time::sleep(CONSUMER_POLL) => {}
                    _ = stop.changed() => {}
                }
                if *stop.borrow() {
                    break;
                }
            }
        });
    }
}

/// How long ago the job was published (JetStream's timestamp of the message); zero if unknown.
pub(crate) fn age(message: &jetstream::Message) -> Duration {
    message
        .info()
        .ok()
        .and_then(|info| {
            let age = time::OffsetDateTime::now_utc() - info.published;
            Duration::try_from(age).ok()
        })
        .unwrap_or_default()
}
