//! The run log: answered webhooks recorded in JetStream before the reply, with PostgreSQL
//! written behind (issue 11). The webhook path of a behavior without side effects then needs
//! NATS only, so the bot keeps answering while PostgreSQL is down.
//!
//! ## Shape, and why
//! One work-queue stream, `<PREFIX>_RUNLOG` (file storage, replicas configurable), with one
//! subject per answered message: `<prefix>.runlog.<listener id>.<MessageSid>`. Each message is
//! the whole record the message log needs (the request, the answer, the run with its trace:
//! [`AnsweredWebhook`] as JSON), published with `Nats-Msg-Id: <listener id>.<MessageSid>` and
//! acked by the server before the worker replies.
//!
//! - **Exactly one answer per (listener, MessageSid).** The stream's de-duplication window
//!   ([`RunLogOptions::duplicate_window`], 2 minutes by default) makes a second publish of the
//!   same id a no-op the ack reports as a duplicate, whichever replica sends it; the worker then
//!   answers with the first record's answer (a direct get of the last message on the subject, or
//!   the message log once the writer has copied it there). Twilio's retries and its fallback URL
//!   come within that window; a delivery later than that runs again, and PostgreSQL's primary
//!   key on `inbound_messages.message_sid` keeps the first record (the writer drops the second).
//!   Only behaviors without side effects take this path, so a second run changes nothing.
//! - **Why not a key-value bucket of claims:** a KV `create` is a second write per webhook (the
//!   claim, then the record), and NATS 2.9 has no per-key expiry to let claims go; the stream's
//!   de-duplication gives the same guarantee with the one write every durable design needs.
//! - **Cost in nats-server:** the de-duplication window keeps every id of the last 2 minutes in
//!   memory (about 100 bytes each: 36 MB at 3,000 webhooks/s sustained); a work-queue stream
//!   deletes each record once the writer has acked it, so disk holds only the writer's lag,
//!   bounded by [`RunLogOptions::max_bytes`] (publishes are refused when it is full: the
//!   webhook gets 503 and Twilio its fallback URL, nothing is dropped silently).
//!
//! ## The writer
//! Every worker replica runs a writer on the one durable pull consumer `runlog-writer`: it pulls
//! batches, writes them with the message log's batched statement (one statement for many
//! records; idempotent, since a `MessageSid` already in the log writes nothing), and acks each
//! record once its statement committed. While PostgreSQL is down nothing is acked and the
//! records wait in the stream; the writer logs its lag (records not yet in PostgreSQL) every
//! 10 s while there is one.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt as _;
use switchboard_store::webhook_log::{AnsweredWebhook, Recorded, WebhookLog};
use switchboard_twilio::MessageSid;

/// The durable consumer of the writer, shared by every replica.
pub const WRITER: &str = "runlog-writer";

/// Where and how answered webhooks are logged.
#[derive(Debug, Clone)]
pub struct RunLogOptions {
    /// Replicas of the stream when the worker creates it (1 for one server, 3 for a cluster).
    pub replicas: usize,
    /// How long a repeated `MessageSid` is recognised by the stream.
    pub duplicate_window: Duration,
    /// Most bytes of records not yet written to PostgreSQL.
    pub max_bytes: i64,
    /// Most records the writer pulls and writes at once.
    pub batch: usize,
}

impl Default for RunLogOptions {
    fn default() -> Self {
        RunLogOptions {
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            max_bytes: 1 << 30,
            batch: 256,
        }
    }
}

/// The stream's name for a subject prefix: `SWITCHBOARD_RUNLOG` for `switchboard`.
pub fn stream_name(prefix: &str) -> String {
    let stem: String = prefix
        .chars()
        .map(|c| match c {
            '.' | '-' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect();
    format!("{stem}_RUNLOG")
}

/// What logging a webhook found.
#[derive(Debug, PartialEq)]
pub enum Logged {
    /// This record is the first for its (listener, MessageSid): its answer stands.
    New,
    /// Another delivery was logged first; its answer (JSON of the reply), when still found.
    Duplicate(Option<String>),
}

/// The run log of one worker.
#[derive(Clone)]
pub struct RunLog {
    js: jetstream::Context,
    stream: stream::Stream,
    prefix: String,
}

impl RunLog {
    /// Creates the stream if missing (idempotent across replicas) and opens it.
    pub async fn open(
        nats: &async_nats::Client,
        prefix: &str,
        opts: &RunLogOptions,
    ) -> anyhow::Result<RunLog> {
        let js = jetstream::new(nats.clone());
        let name = stream_name(prefix);
        let stream = js
            .get_or_create_stream(stream::Config {
                name: name.clone(),
                description: Some(
                    "Switchboard: answered webhooks, until written to PostgreSQL".into(),
                ),
                subjects: vec![format!("{prefix}.runlog.>")],
                retention: stream::RetentionPolicy::WorkQueue,
                discard: stream::DiscardPolicy::New,
                storage: stream::StorageType::File,
                num_replicas: opts.replicas.max(1),
                duplicate_window: opts.duplicate_window,
                max_bytes: opts.max_bytes,
                allow_direct: true,
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating the run log stream {name}"))?;
        Ok(RunLog {
            js,
            stream,
            prefix: prefix.to_owned(),
        })
    }

    /// [`RunLog::open`], retried until NATS answers; each failure is logged.
    pub async fn open_retrying(
        nats: &async_nats::Client,
        prefix: &str,
        opts: &RunLogOptions,
    ) -> RunLog {
        let mut pause = Duration::from_millis(250);
        loop {
            match RunLog::open(nats, prefix, opts).await {
                Ok(log) => return log,
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "the run log stream is not available yet; retrying"
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Whether this webhook can be logged here: its `MessageSid` is a message SID (it becomes a
    /// subject token).
    pub fn accepts(message_sid: &str) -> bool {
        MessageSid::parse(message_sid).is_ok()
    }

    fn subject(&self, listener_id: i64, message_sid: &str) -> String {
        format!("{}.runlog.{listener_id}.{message_sid}", self.prefix)
    }

    /// Logs `record` durably (the server's ack) and says whether it was the first for its
    /// (listener, MessageSid). `record.message_sid` must be [accepted](RunLog::accepts).
    pub async fn log(&self, record: &AnsweredWebhook) -> anyhow::Result<Logged> {
        let subject = self.subject(record.listener_id, &record.message_sid);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            "Nats-Msg-Id",
            format!("{}.{}", record.listener_id, record.message_sid).as_str(),
        );
        let payload = serde_json::to_vec(record).context("encoding the run log record")?;
        let ack = self
            .js
            .publish_with_headers(subject.clone(), headers, payload.into())
            .await
            .context("publishing to the run log")?
            .await
            .context("the run log did not confirm the record")?;
        if !ack.duplicate {
            return Ok(Logged::New);
        }
        // The first record's answer: still in the stream unless the writer has copied it.
        let first = match self.stream.direct_get_last_for_subject(subject).await {
            Ok(message) => serde_json::from_slice::<AnsweredWebhook>(&message.payload)
                .ok()
                .map(|r| r.response),
            Err(_) => None,
        };
        Ok(Logged::Duplicate(first))
    }
}

/// Runs the writer until `stop`: copies the run log into PostgreSQL through `log`.
pub async fn write_behind(
    runlog: RunLog,
    log: WebhookLog,
    opts: RunLogOptions,
    metrics: crate::WorkerMetrics,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let consumer = loop {
        match writer_consumer(&runlog.stream).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "the run log writer cannot bind its consumer yet; retrying"
                );
                tokio::select! {
                    _ = stop.changed() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let mut last_lag_log = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return;
        }
        let batch = consumer
            .batch()
            .max_messages(opts.batch.max(1))
            .expires(Duration::from_secs(1))
            .messages()
            .await;
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "pulling from the run log failed; trying again");
                tokio::select! {
                    _ = stop.changed() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let mut messages = Vec::new();
        while let Some(m) = batch.next().await {
            match m {
                Ok(m) => messages.push(m),
                Err(e) => tracing::warn!(error = %e, "reading a run log batch failed"),
            }
        }
        let written = write_batch(&log, &messages).await;
        if written.failed > 0 {
            // PostgreSQL refused or is unreachable: the unacked records come back after the
            // consumer's ack wait; pause, growing, so an outage is not hammered.
            tokio::select! {
                _ = stop.changed() => return,
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        } else {
            pause = Duration::from_millis(100);
        }
        if last_lag_log.elapsed() >= Duration::from_secs(10) {
            last_lag_log = tokio::time::Instant::now();
            if let Ok(info) = consumer.clone().info().await {
                let lag = info.num_pending + info.num_ack_pending as u64;
                metrics.runlog_lag(lag);
                if lag > 0 {
                    tracing::info!(lag, "run log: records not yet written to PostgreSQL");
                }
            }
        }
    }
}

struct Written {
    failed: usize,
}

/// Writes one pulled batch (concurrently, so the message log batches them into few statements)
/// and acks what was written. A record that cannot be decoded is terminated with a log line
/// (it was written by a worker of another version; it is never retried forever).
async fn write_batch(log: &WebhookLog, messages: &[jetstream::Message]) -> Written {
    let records = messages.iter().map(|m| async move {
        let record = match serde_json::from_slice::<AnsweredWebhook>(&m.payload) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(subject = %m.subject, error = %e, "run log record not readable; terminated");
                let _ = m.ack_with(jetstream::AckKind::Term).await;
                return true;
            }
        };
        match log.record(record).await {
            Ok(Recorded::New { .. } | Recorded::Duplicate) => {
                if let Err(e) = m.ack().await {
                    tracing::warn!(error = %e, "acking a written run log record failed (it is written again, harmlessly)");
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "writing a run log record to PostgreSQL failed; it stays in the run log");
                false
            }
        }
    });
    let results = futures::future::join_all(records).await;
    Written {
        failed: results.iter().filter(|ok| !**ok).count(),
    }
}

async fn writer_consumer(stream: &stream::Stream) -> anyhow::Result<consumer::PullConsumer> {
    stream
        .get_or_create_consumer(
            WRITER,
            consumer::pull::Config {
                durable_name: Some(WRITER.into()),
                description: Some(
                    "Switchboard behavior workers: the run log written to PostgreSQL".into(),
                ),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_deliver: -1,
                max_ack_pending: 10_000,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("binding the consumer {WRITER}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_follow_the_prefix_and_only_message_sids_become_subjects() {
        assert_eq!(stream_name("switchboard"), "SWITCHBOARD_RUNLOG");
        assert_eq!(stream_name("t.1-a"), "T_1_A_RUNLOG");
        assert!(RunLog::accepts("SM0123456789abcdef0123456789abcdef"));
        assert!(RunLog::accepts("MM0123456789abcdef0123456789abcdef"));
        for bad in [
            "",
            "SM1",
            "SM0123456789abcdef0123456789abcdef.x",
            "a.b",
            ">",
            "*",
        ] {
            assert!(!RunLog::accepts(bad), "{bad:?}");
        }
    }
}
