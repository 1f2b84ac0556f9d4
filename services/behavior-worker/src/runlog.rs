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
//!   `webhook-bench --seconds 170 --connections 64` (8,000 webhooks/s, about 960,000 ids in the
//!   window, each worker writing its own records): nats-server's RSS grew through the first two
//!   minutes of load, then read 334–403 MiB, about 440 bytes per id of the window, the Go heap's
//!   headroom included (when a reader of the stream also kept recent blocks cached, 385–476 MiB
//!   at 5,827 webhooks/s); a day at that rate needs no more. Disk holds the records not yet
//!   written to PostgreSQL, and about 15 s more: the sweeper's checkpoint trails by 5 s, and it
//!   purges what PostgreSQL has every 10 s. [`RunLogOptions::max_bytes`] bounds it
//!   (publishes are refused when it is full: the webhook gets 503 and Twilio its fallback URL,
//!   nothing is dropped silently).
//!
//! ## Writing PostgreSQL behind
//! - **Each worker writes what it logged** ([`write_own`]), after the reply: it holds the record
//!   already, so nothing is read back through nats-server. Its writer gathers the records that
//!   arrive within [`RunLogOptions::linger`] (50 ms) of a batch's first, up to
//!   [`RunLogOptions::batch`], and writes them in one transaction with a note of their stream
//!   sequences (`runlog_written`): one statement for the records, idempotent, since a
//!   `MessageSid` already in the log writes nothing. The webhook path never waits for it: a
//!   record it cannot take (it is behind) or a batch PostgreSQL fails is left in the stream.
//! - **A sweeper writes what no worker wrote.** Every worker runs one and one at a time sweeps
//!   ([`RunLogWriter`]: it holds a lock in PostgreSQL, on its own connection; the others stand
//!   by and try every 2 seconds, each on one connection it keeps). Every second it looks at the
//!   stream's records up to the last one that was there [`SWEEP_AFTER`] (5 s) ago, by when
//!   their workers have written them: the sequences after its checkpoint that no note covers
//!   (their worker died between the ack and its write, or PostgreSQL was down) it reads from the
//!   stream (direct gets for a few, an ordered consumer for a run) and writes, and it moves the
//!   checkpoint (kept in PostgreSQL, in the same transaction, which also deletes the notes it
//!   passed). Then it purges the stream up to the checkpoint, at most once every 10 s.
//!
//! - **Why the worker writes, not a reader of the stream:** the first versions' writer read every
//!   record back from the stream, which cost nats-server (delivering it) and the worker
//!   (decoding it) for each webhook, and kept recent blocks in nats-server's memory. Measured with
//!   `scripts/bench-webhooks` in one session, same machine, 2 and 5 runs: 20–23% → 22–34% of
//!   the bare baseline at 64 connections, nats-server 48–57 → 30–40 µs of CPU per webhook,
//!   p99 at 16 connections 8.9–11.0 → 6.2–7.4 ms, nats-server's peak RSS 324–375 → 71–109 MiB
//!   (docs/benchmarks.md).
//! - **Why linger:** PostgreSQL's cost per record falls with the size of the statement (its
//!   fixed cost per statement, and per transaction, is shared by more records). Without it,
//!   batches held what happened to be queued, about 50 records at the benchmark's rate, and
//!   PostgreSQL spent 70 µs of CPU per webhook; with 50 ms, about 600 records and 45 µs.
//! - **Why not a durable consumer with acks** (as the first version did, on a work-queue
//!   stream): every record then cost an ack and a deletion in nats-server, about 30 µs of its
//!   CPU per webhook, more than the publish itself (measured with `scripts/bench-webhooks`).
//!   With the checkpoint and the notes in the same transactions as the rows, PostgreSQL says
//!   what is written and NATS needs to be told nothing per record.
//! - **Failures.** While PostgreSQL is down nothing can be written, and the records wait in the
//!   stream; the sweeper tries again, backing off to 5 s, and writes them from its checkpoint
//!   once it can. A sweeper that dies hands over at once (PostgreSQL drops its lock with its
//!   connection); one that is cut off from PostgreSQL cannot commit, so nothing is written
//!   twice. A record written both by its worker and by the sweeper is stored once (its
//!   `MessageSid` is the message log's key). The lag (records in the stream that no one has
//!   written yet) is the metric `switchboard_runlog_lag`, and is logged every 10 s while there
//!   is one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt as _;
use serde_json::value::RawValue;
use switchboard_store::sqlx::{PgConnection, PgPool};
use switchboard_store::webhook_log::{self, AnsweredWebhook, RunLogWriter};
use switchboard_twilio::MessageSid;
use tokio::sync::mpsc;

/// The name of the sweeper's consumers (followed by a random part: each is ephemeral, and
/// nats-server removes it 30 s after it stops reading).
pub const WRITER: &str = "runlog-writer";

/// How long a standing-by writer waits before it tries to become the writer again.
const STANDBY: Duration = Duration::from_secs(2);

/// How often the sweeper looks for records no worker wrote.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// How long after a record is in the stream the sweeper writes it if no worker has: its worker
/// writes it within the linger and a statement, unless it died or PostgreSQL failed it.
const SWEEP_AFTER: Duration = Duration::from_secs(5);

/// Ranges of missing records shorter than this are read with direct gets, one request each;
/// longer ones with a consumer.
const DIRECT_GETS: u64 = 32;

/// How often a lag is logged (it is the metric at every sweep).
const LAG_LOG_EVERY: Duration = Duration::from_secs(10);

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

/// A stream's identity, its creation time in nanoseconds: a stream made again under the same
/// name starts its sequences anew.
fn created_ns(info: &stream::Info) -> i64 {
    i64::try_from(info.created.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

/// What logging a webhook found.
#[derive(Debug)]
pub enum Logged {
    /// This record is the first for its (listener, MessageSid): its answer stands. It is at
    /// this stream sequence; hand it to [`RunLog::write_later`].
    New(u64),
    /// Another delivery was logged first; its answer (JSON of the reply), when still found.
    Duplicate(Option<Box<RawValue>>),
}

/// A record this worker logged, at its stream sequence, for this worker to write.
type Published = (u64, AnsweredWebhook);

/// The run log of one worker.
#[derive(Clone)]
pub struct RunLog {
    js: jetstream::Context,
    stream: stream::Stream,
    name: String,
    prefix: String,
    /// The stream's creation time: its identity (a stream made again starts its sequences anew).
    created_ns: i64,
    /// To this worker's own writer ([`write_own`]); full, a record is left to the sweeper.
    published: mpsc::Sender<Published>,
    /// Its other end, taken by [`write_behind`].
    own: Arc<Mutex<Option<mpsc::Receiver<Published>>>>,
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
        let created_ns = created_ns(stream.cached_info());
        let (published, own) = mpsc::channel(opts.batch.max(1) * 4);
        Ok(RunLog {
            js,
            stream,
            name,
            prefix: prefix.to_owned(),
            created_ns,
            published,
            own: Arc::new(Mutex::new(Some(own))),
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
            return Ok(Logged::New(ack.sequence));
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

    /// Hands a [new](Logged::New) record to this worker's writer, which writes it to
    /// PostgreSQL soon after the reply. Never waits: while the writer is behind (PostgreSQL
    /// slow or down) the record is left in the stream, where the sweeper finds it.
    pub fn write_later(&self, seq: u64, record: AnsweredWebhook) {
        if self.published.try_send((seq, record)).is_err() {
            tracing::debug!(
                seq,
                "run log: this worker's writer is behind; the record is left to the sweeper"
            );
        }
    }
}

/// Logs and exports the lag while the sweeper cannot write: records in the stream after
/// `done`, its last checkpoint.
async fn report_lag(runlog: &RunLog, done: u64, metrics: &crate::WorkerMetrics) {
    if let Ok(info) = runlog.stream.clone().info().await {
        let lag = info.state.last_sequence.saturating_sub(done);
        metrics.runlog_lag(lag);
        if lag > 0 {
            tracing::info!(lag, "run log: records not yet written to PostgreSQL");
        }
    }
}

/// This worker's own writer: writes the records this worker logged, in batches (those that
/// arrive within [`RunLogOptions::linger`] of the first, up to [`RunLogOptions::batch`]), each
/// with the note of their sequences, until `stop`; then writes what it still holds. A batch
/// PostgreSQL does not take is dropped here: its records are in the stream, and the sweeper
/// writes them from there.
async fn write_own(
    runlog: RunLog,
    mut own: mpsc::Receiver<Published>,
    pool: PgPool,
    opts: RunLogOptions,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let batch_max = opts.batch.max(1);
    // Failures in a row, to log the first and then every 100th.
    let mut failing = 0u64;
    loop {
        let first = tokio::select! {
            biased;
            published = own.recv() => match published {
                Some(p) => p,
                None => return,
            },
            _ = stop.changed() => break,
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + opts.linger;
        while batch.len() < batch_max {
            match tokio::time::timeout_at(deadline, own.recv()).await {
                Ok(Some(p)) => batch.push(p),
                Ok(None) | Err(_) => break,
            }
        }
        write_published(&runlog, &pool, batch, &mut failing).await;
    }
    // Stopping: what was logged and answered before is written now, not 5 s later by a sweeper.
    loop {
        let mut batch = Vec::new();
        while batch.len() < batch_max {
            match own.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            return;
        }
        write_published(&runlog, &pool, batch, &mut failing).await;
    }
}

async fn write_published(runlog: &RunLog, pool: &PgPool, batch: Vec<Published>, failing: &mut u64) {
    let (seqs, records): (Vec<u64>, Vec<AnsweredWebhook>) = batch.into_iter().unzip();
    match webhook_log::write_published(pool, &runlog.name, runlog.created_ns, &seqs, &records).await
    {
        Ok(_) => {
            if *failing > 0 {
                tracing::info!(
                    failed_batches = *failing,
                    "run log: this worker writes its records to PostgreSQL again"
                );
            }
            *failing = 0;
        }
        Err(e) => {
            if failing.is_multiple_of(100) {
                tracing::warn!(
                    error = %e,
                    records = records.len(),
                    failed_batches = *failing + 1,
                    "run log: writing this worker's records to PostgreSQL failed; they stay in the stream for the sweeper"
                );
            }
            *failing += 1;
        }
    }
}

/// What a turn at leading the writer ended with.
enum Led {
    Stopped,
    /// Another worker's writer writes.
    Standby,
}

/// Runs the writers until `stop`: this worker's own writer, which writes the records it logged,
/// and the sweeper, which writes from the stream what no worker wrote (on a connection of its
/// own; `pool` gives the address) whenever no other worker's sweeper does.
pub async fn write_behind(
    runlog: RunLog,
    pool: PgPool,
    opts: RunLogOptions,
    metrics: crate::WorkerMetrics,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let own = runlog.own.lock().unwrap_or_else(|e| e.into_inner()).take();
    let own = own.map(|own| {
        tokio::spawn(write_own(
            runlog.clone(),
            own,
            pool.clone(),
            opts.clone(),
            stop.clone(),
        ))
    });
    sweep(runlog, pool, opts, metrics, stop).await;
    if let Some(own) = own {
        let _ = own.await;
    }
}

/// The sweeper: [`lead`] whenever no other worker's sweeper does, until `stop`.
async fn sweep(
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
    let created_ns = created_ns(info);
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
    *written = Some(writer.last_seq());
    tracing::info!(
        from_seq = writer.last_seq() + 1,
        "run log sweeper: this worker writes to PostgreSQL what no worker wrote of the run log"
    );
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The stream's last sequence as seen at each tick: the sweep goes up to what was there
    // SWEEP_AFTER ago, by when its workers have written what they will.
    let mut seen: VecDeque<(Instant, u64)> = VecDeque::new();
    let mut lag_logged = Instant::now() - LAG_LOG_EVERY;
    let mut purged = Instant::now() - PURGE_EVERY;
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(Led::Stopped),
            _ = tick.tick() => {}
        }
        let last = stream
            .info()
            .await
            .context("reading the run log stream")?
            .state
            .last_sequence;
        let now = Instant::now();
        seen.push_back((now, last));
        let mut horizon = None;
        while let Some(&(at, seq)) = seen.front() {
            if now.duration_since(at) < SWEEP_AFTER {
                break;
            }
            horizon = Some(seq);
            seen.pop_front();
        }
        let covered = writer
            .written_by_workers()
            .await
            .context("reading what the workers wrote of the run log")?;
        let lag = uncovered(writer.last_seq(), last, &covered);
        metrics.runlog_lag(lag);
        if lag > 0 && lag_logged.elapsed() >= LAG_LOG_EVERY {
            lag_logged = Instant::now();
            tracing::info!(lag, "run log: records not yet written to PostgreSQL");
        }
        let Some(horizon) = horizon.filter(|&h| h > writer.last_seq()) else {
            continue;
        };
        let missing = webhook_log::gaps(writer.last_seq(), horizon, &covered);
        let Some(swept) = write_missing(runlog, &mut writer, opts, &missing, stop).await? else {
            return Ok(Led::Stopped);
        };
        if swept > 0 {
            metrics.runlog_swept(swept);
            tracing::info!(
                records = swept,
                "run log sweeper: wrote records from the stream that no worker had written"
            );
        }
        if writer.last_seq() < horizon {
            writer
                .write(horizon, &[])
                .await
                .context("moving the run log checkpoint")?;
        }
        *written = Some(horizon);
        if purged.elapsed() >= PURGE_EVERY {
            purged = Instant::now();
            // Everything up to the checkpoint is in PostgreSQL (committed above).
            if let Err(e) = stream.purge().sequence(horizon + 1).await {
                tracing::warn!(error = %e, "run log: purging what PostgreSQL has failed; tried again later");
            }
        }
    }
}

/// How many of the sequences after `after` through `last` the merged ranges `covered` leave out.
fn uncovered(after: u64, last: u64, covered: &[(u64, u64)]) -> u64 {
    webhook_log::gaps(after, last, covered)
        .iter()
        .map(|(from, to)| to - from + 1)
        .sum()
}

/// Writes the records at the sequences of `missing` (sorted inclusive ranges after the
/// checkpoint) from the stream, in order, in batches that each move the checkpoint. Short
/// ranges are read with direct gets, longer ones with an ordered consumer. Answers how many
/// records were written, or `None` when `stop` came first: the checkpoint is then where the
/// last written batch left it, and must not be moved past what was not read.
async fn write_missing(
    runlog: &RunLog,
    writer: &mut RunLogWriter,
    opts: &RunLogOptions,
    missing: &[(u64, u64)],
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<usize>> {
    let batch_max = opts.batch.max(1);
    let mut batch = Vec::new();
    let mut through = writer.last_seq();
    let mut swept = 0;
    for &(from, to) in missing {
        if to - from < DIRECT_GETS {
            for seq in from..=to {
                match runlog.stream.direct_get(seq).await {
                    Ok(m) => {
                        if let Some(record) = readable(seq, &m.subject, &m.payload) {
                            batch.push(record);
                        }
                    }
                    // Not in the stream (purged by hand): nothing to write.
                    Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => {}
                    Err(e) => return Err(e).context("reading the run log"),
                }
                through = seq;
            }
        } else {
            let consumer = runlog
                .stream
                .create_consumer(consumer::pull::OrderedConfig {
                    name: Some(format!("{WRITER}-{}", uuid::Uuid::new_v4().simple())),
                    description: Some("Switchboard: the run log sweeper, reading in order".into()),
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: from,
                    },
                    ..Default::default()
                })
                .await
                .context("creating the run log sweeper's consumer")?;
            let mut records = consumer.messages().await.context("reading the run log")?;
            loop {
                let m = tokio::select! {
                    _ = stop.changed() => return Ok(None),
                    m = records.next() => m.context("the run log sweeper's consumer ended")?,
                };
                let m = m.context("reading the run log")?;
                let info = m
                    .info()
                    .map_err(|e| anyhow::anyhow!("a run log message without its sequence: {e}"))?;
                let (seq, pending) = (info.stream_sequence, info.pending);
                if seq > to {
                    break;
                }
                if let Some(record) = readable(seq, &m.subject, &m.payload) {
                    batch.push(record);
                }
                through = seq;
                if seq == to || pending == 0 {
                    break;
                }
                if batch.len() >= batch_max {
                    swept += write_swept(writer, through, &mut batch).await?;
                }
            }
            through = through.max(to);
        }
        if batch.len() >= batch_max {
            swept += write_swept(writer, through, &mut batch).await?;
        }
    }
    if !batch.is_empty() || through > writer.last_seq() {
        swept += write_swept(writer, through, &mut batch).await?;
    }
    Ok(Some(swept))
}

/// Writes (and empties) `batch`, moving the checkpoint to `through`; answers how many records
/// it held.
async fn write_swept(
    writer: &mut RunLogWriter,
    through: u64,
    batch: &mut Vec<AnsweredWebhook>,
) -> anyhow::Result<usize> {
    writer
        .write(through, batch)
        .await
        .context("writing the run log to PostgreSQL")?;
    let written = batch.len();
    batch.clear();
    Ok(written)
}

/// A record read back from the stream, or `None` (logged) for one no worker of this version can
/// read: written by another version, it would never be readable.
fn readable(seq: u64, subject: &str, payload: &[u8]) -> Option<AnsweredWebhook> {
    match serde_json::from_slice::<AnsweredWebhook>(payload) {
        Ok(record) => Some(record),
        Err(e) => {
            tracing::error!(
                seq,
                subject,
                error = %e,
                "run log record not readable; left out of the message log"
            );
            None
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
