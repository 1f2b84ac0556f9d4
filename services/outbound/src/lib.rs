//! `outbound`: consumes send-SMS jobs (`docs/jobs.md`) from NATS JetStream with the durable pull
//! consumer `outbound` and sends them through Twilio's Messages API, never losing a job and never
//! sending one twice; lookup jobs have their own consumer (`lookup.rs`), and behaviors' HTTP
//! requests are answered over NATS request/reply ([`http`]).
//!
//! How: every job has a row in `outbound_jobs` (its idempotency key). A create starts only after
//! the row is marked `sending` with the attempt (a compare-and-set, so two deliveries of one key
//! cannot both send); a row that already has a SID is acknowledged without sending; a create that
//! failed ambiguously (5xx, timeout, unreadable 201, or a process that died mid-request) is
//! followed by a list of the recipient's messages at Twilio before anything is sent again, and a
//! match is adopted; "no match" is believed only from a list read
//! [`OutboundConfig::list_settle`] after that create ended (Twilio's list is not
//! read-after-write consistent). The JetStream message is acknowledged only after its outcome is
//! recorded and its final event published; retries are NAKs with a delay from
//! [`Backoff`](switchboard_twilio::client::Backoff).
//!
//! [`run`] does everything; `main.rs` only reads the configuration ([`cli`], which builds the
//! [`OutboundConfig`] of `config.rs`) and connects.
//!
//! # A send job's way through the modules
//!
//! 1. `streams.rs`: at start, [`setup`] creates or updates the job, dead-letter and event
//!    streams and the durable consumer (`lookup.rs` adds the lookup consumer).
//! 2. `consume.rs`: [`run`] fetches from each consumer until shutdown, with at most
//!    [`OutboundConfig::max_in_flight`] of its jobs in flight, and at shutdown NAKs what it
//!    fetched but did not start and drains the rest. The send jobs of one pull go to the group path, each
//!    lookup to the one-job path.
//! 3. `group.rs`, the group path: the new jobs of a pull (with rate limits off) are claimed in
//!    one statement, created concurrently and recorded in one statement; every other delivery
//!    goes to the one-job path.
//! 4. `job.rs`, the one-job path: decode, the account's credentials (`accounts.rs`), the job's
//!    row, the accepted event, the rate limits and the account's concurrency cap ([`limits`]),
//!    the claim of the attempt, the create, and the classification of a failed create.
//!    `ambiguity.rs`: after a create that may have created the message, the list of the
//!    recipient's messages at Twilio that comes before any new create.
//! 5. `events.rs`: a finished job's outcome is recorded on its row, then its final event (also
//!    to the job's reply subject) and, for a failure, its dead-letter copy are published.
//! 6. `consume.rs` again: only then is the delivery answered, an ack or a NAK with the delay of
//!    its retry (a `Disposition`); while a job works, progress acks keep JetStream from
//!    delivering it again.
//!
//! Every path works with one `Ctx` (below): the configuration, the store, NATS, the Twilio
//! client and the limits. `metrics.rs` holds what the paths count (`/metrics` on
//! `METRICS_ADDR`).

mod accounts;
mod ambiguity;
pub mod cli;
mod config;
mod consume;
mod events;
mod group;
pub mod http;
mod job;
pub mod limits;
mod lookup;
mod metrics;
mod streams;

pub use config::{
    DEFAULT_DLQ_MAX_AGE, DEFAULT_EVENTS_MAX_AGE, DEFAULT_LIST_SETTLE, DEFAULT_STREAM_MAX_BYTES,
    OutboundConfig, STATUS_CALLBACK_PATH, StreamLimits,
};
pub use consume::run;
pub use events::HEADER_DEAD_LETTER_MESSAGE;
pub use metrics::OutboundMetrics;
pub use streams::{setup, stream_configs};

use std::time::Duration;

use async_nats::jetstream;
use switchboard_store::Store;
use switchboard_twilio::client::TwilioClient;
use tokio::sync::watch;

use crate::accounts::WrongKeyAccounts;

/// What the service needs while it runs.
struct Ctx {
    config: OutboundConfig,
    store: Store,
    nats: async_nats::Client,
    js: jetstream::Context,
    twilio: TwilioClient,
    limits: limits::Limits,
    /// Becomes true at shutdown (a job waiting for its send slot gives it back then).
    stop: watch::Receiver<bool>,
    /// Accounts whose credentials the master key does not decrypt, logged once each.
    wrong_key: WrongKeyAccounts,
}

/// What to tell JetStream about a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disposition {
    /// Done (its outcome is recorded and published).
    Ack,
    /// Deliver again after this delay.
    Retry(Duration),
}
