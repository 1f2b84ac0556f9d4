//! The service's configuration ([`OutboundConfig`], built by `cli.rs` from the environment) and
//! its defaults.

use std::time::Duration;

use switchboard_telemetry::health::ReadyFlag;
use switchboard_twilio::client::Backoff;
use switchboard_wire::outbound::JobSubjects;

use crate::limits;

/// Default of [`OutboundConfig::list_settle`] (`OUTBOUND_LIST_SETTLE_MS`).
pub const DEFAULT_LIST_SETTLE: Duration = Duration::from_secs(30);

/// Default of [`StreamLimits::events_max_age`] (`OUTBOUND_EVENTS_MAX_AGE_SECS`): 7 days.
pub const DEFAULT_EVENTS_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Default of [`StreamLimits::dlq_max_age`] (`OUTBOUND_DLQ_MAX_AGE_SECS`): 30 days.
pub const DEFAULT_DLQ_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Default of [`StreamLimits::events_max_bytes`] and [`StreamLimits::dlq_max_bytes`]: 1 GiB.
pub const DEFAULT_STREAM_MAX_BYTES: i64 = 1 << 30;

/// How much the events and dead-letter streams keep: messages older than the age or beyond the
/// size (oldest first) are removed by JetStream. A zero age or size means no limit of that kind.
/// Applied when the streams are created and set again on existing streams at every start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    pub events_max_age: Duration,
    pub events_max_bytes: i64,
    pub dlq_max_age: Duration,
    pub dlq_max_bytes: i64,
}

impl Default for StreamLimits {
    fn default() -> StreamLimits {
        StreamLimits {
            events_max_age: DEFAULT_EVENTS_MAX_AGE,
            events_max_bytes: DEFAULT_STREAM_MAX_BYTES,
            dlq_max_age: DEFAULT_DLQ_MAX_AGE,
            dlq_max_bytes: DEFAULT_STREAM_MAX_BYTES,
        }
    }
}

/// Path of ingress's status callback route (`STATUS_CALLBACK_BASE_URL` + this).
pub const STATUS_CALLBACK_PATH: &str = "/twilio/status";

/// How the service behaves; [`OutboundConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct OutboundConfig {
    /// Subjects and stream names.
    pub subjects: JobSubjects,
    /// Jobs worked on at once (the semaphore) and the consumer's max ack pending.
    pub max_in_flight: usize,
    /// Retry delays and the number of creates per job.
    pub backoff: Backoff,
    /// A job older than this (since publication) is dead-lettered instead of tried again.
    pub max_age: Duration,
    /// The Twilio client's request timeout; the consumer's ack wait is set well above it.
    pub request_timeout: Duration,
    /// At shutdown, how long in-flight jobs may take to finish before they are abandoned (they
    /// are redelivered after the ack wait).
    pub drain_timeout: Duration,
    /// How long one pull request waits for jobs; also bounds how long a shutdown waits for a
    /// pull to end.
    pub fetch_wait: Duration,
    /// Per-sender rates and the account concurrency cap ([`limits`]).
    pub limits: limits::LimitsConfig,
    /// `StatusCallback` of every create whose job has no `status_callback` of its own: ingress's
    /// status route, so delivery updates come back as `status` events. `None`: none is set.
    pub status_callback_url: Option<String>,
    /// Replicas of each stream the service creates (1 on a single server, 3 in a production
    /// cluster); an existing stream keeps its own (a warning says so when they differ).
    pub replicas: usize,
    /// After a create that may have created the message (timeout, 5xx, dropped connection, a
    /// process that died mid-request), how long after it ended a list of the recipient's
    /// messages must have been read before "Twilio lists no such message" is believed and the
    /// message created again. Twilio documents no bound on how soon a created message appears
    /// in its list, so a list read sooner that does not show it proves nothing: the job is
    /// listed again once this has passed. A message Twilio lists only later than this is sent
    /// twice. Default [`DEFAULT_LIST_SETTLE`].
    pub list_settle: Duration,
    /// Age and size limits of the events and dead-letter streams.
    pub stream_limits: StreamLimits,
    /// The prefixes a job's `Switchboard-Reply-To` subject must start with (default `_INBOX.`,
    /// [`switchboard_wire::outbound::REPLY_TO_PREFIX`]): a job naming another subject is
    /// rejected, so no publisher can make this service publish to Switchboard's own subjects.
    pub reply_to_prefixes: Vec<String>,
    /// Readiness of the consumers: set once they are created and fetching, cleared when
    /// shutdown begins (`/readyz`; detached by default).
    pub ready: ReadyFlag,
    /// Where jobs, Twilio errors, retries and the consumers' backlog are counted (`/metrics`;
    /// detached by default).
    pub metrics: crate::OutboundMetrics,
}

impl OutboundConfig {
    /// Defaults for a subject prefix.
    pub fn new(prefix: &str) -> OutboundConfig {
        OutboundConfig {
            subjects: JobSubjects::new(prefix),
            max_in_flight: 32,
            backoff: Backoff {
                base: Duration::from_millis(500),
                cap: Duration::from_secs(60),
                max_attempts: 8,
            },
            max_age: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            fetch_wait: Duration::from_secs(5),
            limits: limits::LimitsConfig::default(),
            status_callback_url: None,
            replicas: 1,
            list_settle: DEFAULT_LIST_SETTLE,
            stream_limits: StreamLimits::default(),
            reply_to_prefixes: vec![switchboard_wire::outbound::REPLY_TO_PREFIX.to_owned()],
            ready: ReadyFlag::default(),
            metrics: Default::default(),
        }
    }

    /// The consumer's ack wait: the request timeout plus room for the store and NATS. Jobs also
    /// send progress acks while they work, so a slow list check does not trigger a redelivery.
    pub fn ack_wait(&self) -> Duration {
        self.request_timeout + Duration::from_secs(30)
    }
}
