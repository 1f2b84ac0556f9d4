//! What the behavior worker counts (served at `/metrics` on `METRICS_ADDR`): webhooks by
//! listener and result, engine runs by kind and outcome with their duration, message-log
//! writes, status callbacks. Label values are closed sets or configured listener ids: an
//! unknown guid is counted under `listener=""`, so a flood of invented URLs adds no series.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;
use switchboard_engine::{ExitState, RunOutput};
use switchboard_telemetry::metrics::{CounterFamily, LatencyFamily, Metrics, latency_family};

/// What became of a webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookResult {
    /// The behavior's answer (whatever status it chose).
    Answered,
    /// A repeated `MessageSid`, answered with the stored answer.
    Duplicate,
    /// Signature verification failed (403).
    Forbidden,
    /// No such listener, or it has no webhook behavior (404).
    NotFound,
    /// Disabled bot or behavior, or a repeated `MessageSid` still being answered (503).
    Unavailable,
    /// Failed (database, NATS…): 503, the cause in the log.
    Error,
    /// Not a webhook message ingress sends (400).
    Malformed,
}

impl WebhookResult {
    fn label(self) -> &'static str {
        match self {
            WebhookResult::Answered => "answered",
            WebhookResult::Duplicate => "duplicate",
            WebhookResult::Forbidden => "forbidden",
            WebhookResult::NotFound => "not_found",
            WebhookResult::Unavailable => "unavailable",
            WebhookResult::Error => "error",
            WebhookResult::Malformed => "malformed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    /// The listener's id; empty for a guid that names none.
    listener: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    /// `webhook` or `macro`.
    kind: &'static str,
    /// The run's exit state (`complete`, `stop`, `suspend`, `aborted` at a run limit).
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The worker's metrics. Cloning shares them.
#[derive(Clone, Debug)]
pub struct WorkerMetrics {
    /// False for [`WorkerMetrics::default`]: nothing is recorded (no `METRICS_ADDR`).
    on: bool,
    webhooks: CounterFamily<WebhookLabels>,
    runs: LatencyFamily<RunLabels>,
    run_errors: CounterFamily<RunLabels>,
    log_writes: Histogram,
    statuses: CounterFamily<ResultLabels>,
    runlog_lag: prometheus_client::metrics::gauge::Gauge,
    runlog_swept: prometheus_client::metrics::counter::Counter,
}

impl Default for WorkerMetrics {
    /// Off: nothing is recorded (a worker without `METRICS_ADDR`, most tests).
    fn default() -> Self {
        WorkerMetrics {
            on: false,
            ..WorkerMetrics::register(&Metrics::new())
        }
    }
}

impl WorkerMetrics {
    /// Registers the worker's metrics in `metrics`.
    pub fn register(metrics: &Metrics) -> WorkerMetrics {
        let m = WorkerMetrics {
            on: true,
            webhooks: CounterFamily::default(),
            runs: latency_family(),
            run_errors: CounterFamily::default(),
            log_writes: Histogram::new(switchboard_telemetry::metrics::latency_buckets()),
            statuses: CounterFamily::default(),
            runlog_lag: Default::default(),
            runlog_swept: Default::default(),
        };
        metrics.register(
            "switchboard_webhooks",
            "Webhooks handled, by listener id (empty: no such listener) and result",
            m.webhooks.clone(),
        );
        metrics.register_with_unit(
            "switchboard_engine_run_duration",
            "Duration of behavior runs by the engine, by kind (webhook, macro) and exit state",
            Unit::Seconds,
            m.runs.clone(),
        );
        metrics.register(
            "switchboard_engine_run_errors",
            "Node errors recorded by behavior runs (the run goes on), by kind and exit state",
            m.run_errors.clone(),
        );
        metrics.register_with_unit(
            "switchboard_message_log_write_duration",
            "From an answered webhook handed to the message log to its batch committed in PostgreSQL: the lag of the message log",
            Unit::Seconds,
            m.log_writes.clone(),
        );
        metrics.register(
            "switchboard_status_callbacks",
            "Delivery status callbacks, by result (recorded, stale, unknown_message, forbidden, rejected, error)",
            m.statuses.clone(),
        );
        metrics.register(
            "switchboard_runlog_lag",
            "Answered webhooks in the JetStream run log not yet written to PostgreSQL (set every second by the replica whose sweeper leads)",
            m.runlog_lag.clone(),
        );
        metrics.register(
            "switchboard_runlog_swept_records",
            "Run log records the sweeper wrote to PostgreSQL from the stream because no worker had (a worker died after the ack, or PostgreSQL failed its batch)",
            m.runlog_swept.clone(),
        );
        m
    }

    /// Counts records the run log's sweeper wrote from the stream.
    pub fn runlog_swept(&self, records: usize) {
        if self.on {
            self.runlog_swept.inc_by(records as u64);
        }
    }

    /// Sets the run log's lag (records not yet in PostgreSQL).
    pub fn runlog_lag(&self, records: u64) {
        if self.on {
            self.runlog_lag
                .set(i64::try_from(records).unwrap_or(i64::MAX));
        }
    }

    /// Counts one webhook.
    pub fn webhook(&self, listener: Option<i64>, result: WebhookResult) {
        if !self.on {
            return;
        }
        let listener = listener.map(|id| id.to_string()).unwrap_or_default();
        self.webhooks
            .get_or_create(&WebhookLabels {
                listener,
                result: result.label(),
            })
            .inc();
    }

    /// Records one engine run.
    pub fn run(&self, kind: &'static str, output: &RunOutput, took: Duration) {
        if !self.on {
            return;
        }
        let labels = RunLabels {
            kind,
            outcome: exit_label(output.exit),
        };
        if !output.errors.is_empty() {
            self.run_errors
                .get_or_create(&labels)
                .inc_by(output.errors.len() as u64);
        }
        self.runs.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// Records how long a message-log write took.
    pub fn log_write(&self, took: Duration) {
        if !self.on {
            return;
        }
        self.log_writes.observe(took.as_secs_f64());
    }

    /// Counts one status callback.
    pub fn status(&self, result: &'static str) {
        if !self.on {
            return;
        }
        self.statuses.get_or_create(&ResultLabels { result }).inc();
    }
}

fn exit_label(exit: ExitState) -> &'static str {
    match exit {
        ExitState::Complete => "complete",
        ExitState::Stop => "stop",
        ExitState::Suspend => "suspend",
        ExitState::Aborted => "aborted",
    }
}
