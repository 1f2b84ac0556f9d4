//! The run log: answered webhooks recorded in JetStream before the reply, with PostgreSQL
//! written behind (issue 11). The webhook path of a behavior without side effects then needs
//! NATS only, so the bot keeps answering while PostgreSQL is down.
//!
//! ## Shape, and why
//! One stream, `<PREFIX>_RUNLOG` (file storage, replicas configurable, limits retention), with
//! one subject per listener: `<prefix>.runlog.<listener id>`. Each message
//! is the whole record the message log needs (the request, the answer, the run with its trace:
//! [`AnsweredWebhook`] as JSON, its JSON parts embedded as they are), published with
//! `Nats-Msg-Id: <listener id>.<MessageSid>` and acked by the server before the worker replies.
//!
//! - **Exactly one answer per (listener, MessageSid).** The stream's de-duplication window
//!   ([`RunLogOptions::duplicate_window`], 2 minutes by default) makes a second publish of the
//!   same id a no-op the ack reports as a duplicate, whichever replica sends it; the worker then
//!   answers with the first record's answer (a direct get of the sequence the ack names, or
//!   the message log once the writer has copied it there). Twilio's retries and its fallback URL
//!   come within that window; a delivery later than that runs again, and PostgreSQL's primary
//!   key on `inbound_messages.message_sid` keeps the first record (the writer drops the second).
//!   Only behaviors without side effects take this path, so a second run changes nothing.
//! - **Why not a key-value bucket of claims:** a KV `create` is a second write per webhook (the
//!   claim, then the record), and NATS 2.9 has no per-key expiry to let claims go; the stream's
//!   de-duplication gives the same guarantee with the one write every durable design needs.
//! - **Cost in nats-server:** the de-duplication window keeps every id of the last 2 minutes in
//!   memory, so its memory follows the rate, not the time it runs. Measured with
//!   `webhook-bench --seconds 170 --connections 64` (5,827 webhooks/s, about 700,000 ids in the
//!   window): nats-server's RSS grew through the first two minutes of load, then held at
//!   385–476 MiB (peak 509 MiB), with the file store's cache of recent blocks and the Go heap's
//!   headroom in it; at most about 700 bytes per webhook of the window, so a day at that rate
//!   needs no more. Disk holds the records not yet written to PostgreSQL, and about 10 s more:
//!   the writer purges what PostgreSQL has every 10 s. [`RunLogOptions::max_bytes`] bounds it
//!   (publishes are refused when it is full: the webhook gets 503 and Twilio its fallback URL,
//!   nothing is dropped silently).
//!
//! ## The writer
//! Every worker replica runs a writer; one at a time writes ([`RunLogWriter`]: it holds a lock in
//! PostgreSQL, on its own connection, and the others stand by and try every 2 seconds, each on one
//! connection it keeps). It reads the stream in order from the checkpoint kept in PostgreSQL (an
//! ordered consumer: no acks, no state in NATS), and writes each batch of records, those that
//! arrive within [`RunLogOptions::linger`] (50 ms) of the first, up to [`RunLogOptions::batch`],
//! with the checkpoint in one transaction: one statement for the records, idempotent, since a
//! `MessageSid` already in the log writes nothing. Then it purges the stream up to the checkpoint,
//! at most once every 10 s.
//!
//! - **Why linger:** PostgreSQL's cost per record falls with the size of the statement (its
//!   fixed cost per statement, and per transaction, is shared by more records). Without it,
//!   batches held what the consumer happened to have buffered, about 50 records at the
//!   benchmark's rate, and PostgreSQL spent 70 µs of CPU per webhook; with 50 ms, about 600
//!   records and 45 µs (`scripts/bench-webhooks`, 64 connections).
//!
//! - **Why not a durable consumer with acks** (as the first version did, on a work-queue
//!   stream): every record then cost an ack and a deletion in nats-server, about 30 µs of its
//!   CPU per webhook, more than the publish itself (measured with `scripts/bench-webhooks`).
//!   Acking a whole batch at once (`AckAll`) is unsafe with several writers pulling from one
//!   consumer (one writer's ack covers another's unwritten records); with one writer, and the
//!   checkpoint in the same transaction as the rows, PostgreSQL says what is written and NATS
//!   needs to be told nothing per record.
//! - **Failures.** While PostgreSQL is down the writer cannot write, and the records wait in
//!   the stream; it tries again, backing off to 5 s, and resumes from the checkpoint. A writer
//!   that dies hands over at once (PostgreSQL drops its lock with its connection); one that is
//!   cut off from PostgreSQL cannot commit, so nothing is written twice. Its lag (records in
//!   the stream after the checkpoint) is logged every 10 s while there is one, and is the
//!   metric `switchboard_runlog_lag`.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt as _;
use serde_json::value::RawValue;
use switchboard_store::sqlx::{PgConnection, PgPool};
use switchboard_store::webhook_log::{AnsweredWebhook, RunLogWriter};
use switchboard_twilio::MessageSid;

/// The name of the writer's consumer (followed by a random part: each writer reads with its
/// own ephemeral consumer, which nats-server removes 30 s after it stops reading).
pub const WRITER: &str = "runlog-writer";

/// How long a standing-by writer waits before it tries to become the writer again.
const STANDBY: Duration = Duration::from_secs(2);

/// How often the writer purges from the stream what PostgreSQL has. A purge in the middle of a
/// block makes nats-server rewrite the rest of the block: once a second it cost about 28 µs of
/// nats-server CPU per webhook at the benchmark's rate; every 10 s, a tenth of that.
const PURGE_EVERY: Duration = Duration::from_secs(10);

/// Where and how answered webhooks are logged.
#[derive(Debug, Clone)]
pub struct RunLogOptions {
    /// Replicas of the stream when the worker creates it (1 for one server, 3 for a cluster).
    pub replicas: usize,
    /// How long a repeated `MessageSid` is recognised by the stream.
    pub duplicate_window: Duration,
    /// Most bytes of records not yet written to PostgreSQL.
    pub max_bytes: i64,
    /// Most records the writer writes in one transaction.
    pub batch: usize,
    /// How long the writer waits for more records after the first of a batch (fewer, larger
    /// statements: PostgreSQL's cost per record falls as the batch grows).
    pub linger: Duration,
}

impl Default for RunLogOptions {
    fn default() -> Self {
        RunLogOptions {
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            max_bytes: 1 << 30,
            batch: 1024,
            linger: Duration::from_millis(50),
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
#[derive(Debug)]
pub enum Logged {
    /// This record is the first for its (listener, MessageSid): its answer stands.
    New,
    /// Another delivery was logged first; its answer (JSON of the reply), when still found.
    Duplicate(Option<Box<RawValue>>),
}

/// The run log of one worker.
#[derive(Clone)]
pub struct RunLog {
    js: jetstream::Context,
    stream: stream::Stream,
    name: String,
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
        let config = stream::Config {
            name: name.clone(),
            description: Some("Switchboard: answered webhooks, until written to PostgreSQL".into()),
            subjects: vec![format!("{prefix}.runlog.>")],
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::New,
            storage: stream::StorageType::File,
            num_replicas: opts.replicas.max(1),
            duplicate_window: opts.duplicate_window,
            max_bytes: opts.max_bytes,
            allow_direct: true,
            ..Default::default()
        };
        let mut stream = js
            .get_or_create_stream(config.clone())
            .await
            .with_context(|| format!("creating the run log stream {name}"))?;
        let info = stream.info().await.context("reading the run log stream")?;
        if info.config.retention == stream::RetentionPolicy::WorkQueue {
            // The first version's stream: its writer acked and deleted each record. Made again
            // with this shape once it is empty (its records are all in PostgreSQL).
            let waiting = info.state.messages;
            anyhow::ensure!(
                waiting == 0,
                "the run log stream {name} is the work queue of an earlier version and still holds {waiting} records not in PostgreSQL: run that version's workers until its writer lag is 0, then start this one"
            );
            tracing::info!(stream = %name, "run log: remaking the earlier version's (empty) work-queue stream");
            js.delete_stream(&name)
                .await
                .with_context(|| format!("deleting the earlier run log stream {name}"))?;
            stream = js
                .create_stream(config)
                .await
                .with_context(|| format!("creating the run log stream {name}"))?;
        }
        Ok(RunLog {
            js,
            stream,
            name,
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

    /// Whether this webhook can be logged here: its `MessageSid` is a message SID (it is part of
    /// the de-duplication id).
    pub fn accepts(message_sid: &str) -> bool {
        MessageSid::parse(message_sid).is_ok()
    }

    /// One subject per listener: nats-server keeps a little state per subject in a stream,
    /// which a subject per message would grow by one entry per webhook.
    fn subject(&self, listener_id: i64) -> String {
        format!("{}.runlog.{listener_id}", self.prefix)
    }

    /// Logs `record` durably (the server's ack) and says whether it was the first for its
    /// (listener, MessageSid). `record.message_sid` must be [accepted](RunLog::accepts).
    pub async fn log(&self, record: &AnsweredWebhook) -> anyhow::Result<Logged> {
        let subject = self.subject(record.listener_id);
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
        // The first record's answer: the ack of a duplicate names the first record's sequence,
        // still in the stream unless the writer has copied it to PostgreSQL and purged it.
        let first = match self.stream.direct_get(ack.sequence).await {
            Ok(message) => serde_json::from_slice::<AnsweredWebhook>(&message.payload)
                .ok()
                .filter(|first| {
                    first.listener_id == record.listener_id
                        && first.message_sid == record.message_sid
                })
                .map(|first| first.response),
            Err(_) => None,
        };
        Ok(Logged::Duplicate(first))
    }
}

/// Logs and exports the lag: records in the stream after `done`, the last one written.
async fn report_lag(runlog: &RunLog, done: u64, metrics: &crate::WorkerMetrics) {
    if let Ok(info) = runlog.stream.clone().info().await {
        let lag = info.state.last_sequence.saturating_sub(done);
        metrics.runlog_lag(lag);
        if lag > 0 {
            tracing::info!(lag, "run log: records not yet written to PostgreSQL");
        }
    }
}

/// What a turn at leading the writer ended with.
enum Led {
    Stopped,
    /// Another worker's writer writes.
    Standby,
}

/// Runs the writer until `stop`: copies the run log into PostgreSQL (`pool` gives it the
/// address; it writes on a connection of its own) whenever no other worker's writer does.
pub async fn write_behind(
    runlog: RunLog,
    pool: PgPool,
    opts: RunLogOptions,
    metrics: crate::WorkerMetrics,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut pause = Duration::from_millis(250);
    // The last checkpoint this worker wrote, to report the lag while it cannot write.
    let mut written = None;
    // The connection a writer standing by tries the lock on, kept between tries.
    let mut standby = None;
    loop {
        if *stop.borrow() {
            return;
        }
        let last_written = written;
        let turn = lead(
            &runlog,
            &pool,
            &opts,
            &metrics,
            &mut stop,
            &mut written,
            &mut standby,
        );
        let wait = match turn.await {
            Ok(Led::Stopped) => return,
            Ok(Led::Standby) => STANDBY,
            Err(e) => {
                if written != last_written {
                    pause = Duration::from_millis(250);
                }
                // PostgreSQL is down, mostly: the lag grows meanwhile, and must show.
                if let Some(done) = written {
                    report_lag(&runlog, done, &metrics).await;
                }
                tracing::warn!(
                    error = format!("{e:#}"),
                    retry_in_ms = pause.as_millis() as u64,
                    "run log writer stopped; it resumes from its checkpoint"
                );
                let wait = pause;
                pause = (pause * 2).min(Duration::from_secs(5));
                wait
            }
        };
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// One turn at writing: takes the writer's lock (or answers [`Led::Standby`], leaving its
/// connection in `standby` for the next turn) and writes until `stop` or a failure.
async fn lead(
    runlog: &RunLog,
    pool: &PgPool,
    opts: &RunLogOptions,
    metrics: &crate::WorkerMetrics,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    written: &mut Option<u64>,
    standby: &mut Option<PgConnection>,
) -> anyhow::Result<Led> {
    use switchboard_store::sqlx::Connection as _;
    let mut stream = runlog.stream.clone();
    let info = stream.info().await.context("reading the run log stream")?;
    let created_ns = i64::try_from(info.created.unix_timestamp_nanos()).unwrap_or(i64::MAX);
    let first_seq = info.state.first_sequence;
    let conn = match standby.take() {
        Some(conn) => conn,
        None => PgConnection::connect_with(&pool.connect_options())
            .await
            .context("connecting to PostgreSQL for the run log writer")?,
    };
    let led = RunLogWriter::lead_on(conn, &runlog.name, created_ns, first_seq)
        .await
        .context("becoming the run log writer in PostgreSQL")?;
    let mut writer = match led {
        Ok(writer) => writer,
        Err(conn) => {
            *standby = Some(conn);
            return Ok(Led::Standby);
        }
    };
    tracing::info!(
        from_seq = writer.last_seq() + 1,
        "run log writer: this worker writes the run log to PostgreSQL"
    );
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            name: Some(format!("{WRITER}-{}", uuid::Uuid::new_v4().simple())),
            description: Some("Switchboard: the run log writer, reading in order".into()),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: writer.last_seq() + 1,
            },
            ..Default::default()
        })
        .await
        .context("creating the run log writer's consumer")?;
    let mut records = consumer
        .messages()
        .await
        .context("reading the run log")?
        .ready_chunks(opts.batch.max(1));
    let mut lag_tick = tokio::time::interval(Duration::from_secs(10));
    let mut purged = Instant::now() - PURGE_EVERY;
    loop {
        let chunk = tokio::select! {
            _ = stop.changed() => return Ok(Led::Stopped),
            _ = lag_tick.tick() => {
                report_lag(runlog, writer.last_seq(), metrics).await;
                continue;
            }
            chunk = records.next() => chunk.context("the run log writer's consumer ended")?,
        };
        // Whatever else arrives within the linger joins the batch: per record, one statement
        // of 500 costs PostgreSQL about half of what a statement of 50 does.
        let mut chunk = chunk;
        let deadline = tokio::time::Instant::now() + opts.linger;
        while chunk.len() < opts.batch {
            match tokio::time::timeout_at(deadline, records.next()).await {
                Ok(Some(more)) => chunk.extend(more),
                Ok(None) => anyhow::bail!("the run log writer's consumer ended"),
                Err(_) => break,
            }
        }
        let mut batch = Vec::with_capacity(chunk.len());
        let mut through = writer.last_seq();
        for m in chunk {
            let m = m.context("reading the run log")?;
            let seq = m
                .info()
                .map_err(|e| anyhow::anyhow!("a run log message without its sequence: {e}"))?
                .stream_sequence;
            if seq <= through {
                continue;
            }
            through = seq;
            match serde_json::from_slice::<AnsweredWebhook>(&m.payload) {
                Ok(record) => batch.push(record),
                // Written by a worker of another version: it would never be readable.
                Err(e) => tracing::error!(
                    seq,
                    subject = %m.subject,
                    error = %e,
                    "run log record not readable; left out of the message log"
                ),
            }
        }
        if through == writer.last_seq() {
            continue;
        }
        let batch_written = writer
            .write(through, &batch)
            .await
            .context("writing the run log to PostgreSQL")?;
        *written = Some(through);
        if batch_written.duplicates > 0 {
            tracing::debug!(
                duplicates = batch_written.duplicates,
                "run log: records already in the message log were left out"
            );
        }
        if purged.elapsed() >= PURGE_EVERY {
            purged = Instant::now();
            // Everything up to the checkpoint is in PostgreSQL (committed above).
            if let Err(e) = stream.purge().sequence(through + 1).await {
                tracing::warn!(error = %e, "run log: purging what PostgreSQL has failed; tried again later");
            }
        }
    }
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
