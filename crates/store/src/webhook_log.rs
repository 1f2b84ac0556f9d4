//! The message log's fast path: a webhook answered by a behavior that has no side effects is
//! recorded with its run in one statement, and the statements of concurrent webhooks are
//! batched into one (so one round trip and one commit serve many webhooks).
//!
//! The statement claims the `MessageSid` and stores the answer and the run together, or does
//! nothing when the `MessageSid` is already in the log: the caller then answers with the stored
//! response, so a repeated `MessageSid` still gets the first answer and records one run.
//!
//! Batching is adaptive and adds no waiting: a batch takes whatever records are queued when a
//! database slot frees up, so under light load each record is written alone at once, and under
//! heavy load the batches grow (up to `max_batch`) instead of the queue. A batch the database
//! refuses is retried record by record, so one bad record fails only its own webhook.

use std::sync::Arc;

use serde_json::value::RawValue;
use sqlx::{PgConnection, PgPool, Row as _};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::{Result, StoreError};

/// A webhook answered by a run, to record. Serialized as is in the worker's JetStream run log
/// (written behind to PostgreSQL). Its JSON parts are kept as JSON text ([`RawValue`]): the
/// record carries them without escaping them into strings, and the writer passes them on to
/// PostgreSQL without parsing them into values.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AnsweredWebhook {
    pub message_sid: String,
    pub listener_id: i64,
    pub account_sid: Option<String>,
    pub request_id: String,
    /// The request as logged.
    pub request: Box<RawValue>,
    /// The reply sent.
    pub response: Box<RawValue>,
    pub behavior_id: i64,
    pub trace_id: String,
    pub mode: String,
    pub exit_state: String,
    pub status: Option<i32>,
    /// The run's trace.
    pub trace: Box<RawValue>,
    /// The run's errors.
    pub errors: Box<RawValue>,
    pub duration_us: i64,
}

/// What recording did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The `MessageSid` was new: the answer and the run (this id) are stored.
    New { run_id: i64 },
    /// The `MessageSid` was already in the log: nothing was written.
    Duplicate,
}

type Reply = oneshot::Sender<Result<Recorded>>;

/// Records answered webhooks in batches; cheap to clone.
#[derive(Clone)]
pub struct WebhookLog {
    tx: mpsc::Sender<(AnsweredWebhook, Reply)>,
}

impl std::fmt::Debug for WebhookLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookLog").finish_non_exhaustive()
    }
}

impl WebhookLog {
    /// Starts the batcher on the current tokio runtime: at most `concurrency` statements at
    /// once, each of at most `max_batch` records. It stops when every clone is dropped.
    pub fn start(pool: PgPool, max_batch: usize, concurrency: usize) -> WebhookLog {
        let max_batch = max_batch.max(1);
        let (tx, rx) = mpsc::channel(max_batch * concurrency.max(1) * 4);
        tokio::spawn(batcher(pool, rx, max_batch, concurrency.max(1)));
        WebhookLog { tx }
    }

    /// Records `webhook` (in a batch with others) once its statement commits.
    pub async fn record(&self, webhook: AnsweredWebhook) -> Result<Recorded> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((webhook, reply))
            .await
            .map_err(|_| StoreError::Invalid("the webhook log has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Invalid("the webhook log dropped a record".into()))?
    }
}

async fn batcher(
    pool: PgPool,
    mut rx: mpsc::Receiver<(AnsweredWebhook, Reply)>,
    max_batch: usize,
    concurrency: usize,
) {
    let slots = Arc::new(Semaphore::new(concurrency));
    loop {
        // Wait for a free slot first: records queue meanwhile and make the next batch bigger.
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        let Some(first) = rx.recv().await else { break };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            write(&pool, batch).await;
            drop(slot);
        });
    }
}

/// Writes a batch and answers each record; a refused batch is retried one by one.
async fn write(pool: &PgPool, batch: Vec<(AnsweredWebhook, Reply)>) {
    let (items, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    match insert(pool, &items).await {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(e) if items.len() == 1 => {
            let _ = replies.into_iter().next().map(|r| r.send(Err(e)));
        }
        Err(e) => {
            tracing::debug!(error = %e, records = items.len(), "a webhook log batch failed: writing its records one by one");
            for (item, reply) in items.iter().zip(replies) {
                let outcome = insert(pool, std::slice::from_ref(item)).await.map(|o| o[0]);
                let _ = reply.send(outcome);
            }
        }
    }
}

/// One statement for the whole batch: each record's run id is drawn first (the sequence is
/// looked up once, in a sub-select, not for every row: that lookup was 5% of the statement's
/// time in `perf`), the `MessageSid`
/// claims insert with it (a conflict, also with an earlier record of the same batch, inserts
/// nothing), and only the runs whose claim went in are inserted. Answers in input order.
async fn insert<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    items: &[AnsweredWebhook],
) -> Result<Vec<Recorded>> {
    let col = |f: fn(&AnsweredWebhook) -> &str| items.iter().map(f).collect::<Vec<_>>();
    // JSON columns without U+0000, which jsonb refuses (crate::jsonb).
    let json = |f: fn(&AnsweredWebhook) -> &RawValue| {
        items
            .iter()
            .map(|w| crate::jsonb::text(f(w).get()))
            .collect::<Vec<_>>()
    };
    let (request, response, trace, errors) = (
        json(|w| &w.request),
        json(|w| &w.response),
        json(|w| &w.trace),
        json(|w| &w.errors),
    );
    fn refs<'a>(v: &'a [std::borrow::Cow<'_, str>]) -> Vec<&'a str> {
        v.iter().map(|c| c.as_ref()).collect()
    }
    let rows = sqlx::query(
        "WITH input AS ( \
            SELECT * FROM unnest($1::int[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], \
                                 $8::bigint[], $9::text[], $10::text[], $11::text[], $12::int[], $13::text[], $14::text[], $15::bigint[]) \
            AS t(ord, message_sid, listener_id, account_sid, request_id, request, response, \
                 behavior_id, trace_id, mode, exit_state, status, trace, errors, duration_us) \
         ), numbered AS MATERIALIZED ( \
            SELECT input.*, nextval((SELECT pg_get_serial_sequence('behavior_runs', 'id'))) AS run_id FROM input ORDER BY ord \
         ), claimed AS ( \
            INSERT INTO inbound_messages (message_sid, listener_id, account_sid, request_id, request, response, run_id, completed_at) \
            SELECT message_sid, listener_id, account_sid, request_id, request::jsonb, response::jsonb, run_id, now() \
            FROM numbered ORDER BY ord \
            ON CONFLICT (message_sid) DO NOTHING \
            RETURNING run_id \
         ), runs AS ( \
            INSERT INTO behavior_runs (id, behavior_id, listener_id, message_sid, request_id, trace_id, mode, exit_state, status, trace, errors, duration_us) \
            SELECT n.run_id, n.behavior_id, n.listener_id, n.message_sid, n.request_id, n.trace_id, n.mode, n.exit_state, n.status, \
                   n.trace::json, n.errors::jsonb, n.duration_us \
            FROM numbered n JOIN claimed c ON c.run_id = n.run_id \
            RETURNING id \
         ) \
         SELECT n.ord, n.run_id, r.id IS NOT NULL AS inserted \
         FROM numbered n LEFT JOIN runs r ON r.id = n.run_id ORDER BY n.ord",
    )
    .bind((0..items.len() as i32).collect::<Vec<_>>())
    .bind(col(|w| &w.message_sid))
    .bind(items.iter().map(|w| w.listener_id).collect::<Vec<_>>())
    .bind(
        items
            .iter()
            .map(|w| w.account_sid.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(col(|w| &w.request_id))
    .bind(refs(&request))
    .bind(refs(&response))
    .bind(items.iter().map(|w| w.behavior_id).collect::<Vec<_>>())
    .bind(col(|w| &w.trace_id))
    .bind(col(|w| &w.mode))
    .bind(col(|w| &w.exit_state))
    .bind(items.iter().map(|w| w.status).collect::<Vec<_>>())
    .bind(refs(&trace))
    .bind(refs(&errors))
    .bind(items.iter().map(|w| w.duration_us).collect::<Vec<_>>())
    .fetch_all(executor)
    .await?;
    if rows.len() != items.len() {
        return Err(StoreError::Corrupt(format!(
            "the webhook log answered {} rows for {} records",
            rows.len(),
            items.len()
        )));
    }
    Ok(rows
        .iter()
        .map(|r| {
            if r.get::<bool, _>("inserted") {
                Recorded::New {
                    run_id: r.get("run_id"),
                }
            } else {
                Recorded::Duplicate
            }
        })
        .collect())
}

/// The writer of a JetStream run log (services/behavior-worker/src/runlog.rs): the one
/// connection that copies the stream `stream` into the message log, with its checkpoint.
///
/// - **One writer at a time.** It holds a session advisory lock on its own connection (outside
///   any pool, so the lock never goes back to one). PostgreSQL releases the lock when the
///   connection ends, so a writer that dies, or loses its connection, hands over at once.
/// - **Each record once.** The records of a batch and the checkpoint (the last stream sequence
///   written) commit in one transaction on that connection: a writer can write only while it
///   holds the lock, and the next one starts after the checkpoint, whatever NATS was told.
pub struct RunLogWriter {
    conn: PgConnection,
    stream: String,
    created_ns: i64,
    last_seq: u64,
}

/// What a written batch held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WrittenBatch {
    /// Records whose `MessageSid` was new: stored with their run.
    pub new: usize,
    /// Records whose `MessageSid` was in the message log already: nothing written.
    pub duplicates: usize,
    /// Records the database refused (each logged): the others of the batch are written.
    pub refused: usize,
}

impl RunLogWriter {
    /// Becomes the writer of `stream`, or answers `None` while another writer is. The stream's
    /// identity is its creation time, `stream_created_ns`; its oldest record is `first_seq`.
    /// Writing resumes after the checkpoint of that stream, or at `first_seq` for a stream not
    /// seen before (or made again since).
    pub async fn lead(
        pool: &PgPool,
        stream: &str,
        stream_created_ns: i64,
        first_seq: u64,
    ) -> Result<Option<RunLogWriter>> {
        use sqlx::Connection as _;
        let conn = PgConnection::connect_with(&pool.connect_options()).await?;
        match RunLogWriter::lead_on(conn, stream, stream_created_ns, first_seq).await? {
            Ok(writer) => Ok(Some(writer)),
            Err(standby) => {
                standby.close().await?;
                Ok(None)
            }
        }
    }

    /// [`RunLogWriter::lead`] on a connection of the caller's (one of its own, outside any
    /// pool): while another writer writes, the connection comes back (`Err`), for the next try
    /// (a writer standing by keeps one connection rather than making one every try).
    pub async fn lead_on(
        mut conn: PgConnection,
        stream: &str,
        stream_created_ns: i64,
        first_seq: u64,
    ) -> Result<std::result::Result<RunLogWriter, PgConnection>> {
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
                .bind(format!("switchboard.runlog-writer/{stream}"))
                .fetch_one(&mut conn)
                .await?;
        if !locked {
            return Ok(Err(conn));
        }
        let first_unwritten = first_seq.saturating_sub(1);
        let stored: Option<(i64, i64)> = sqlx::query_as(
            "SELECT stream_created_ns, last_seq FROM runlog_checkpoints WHERE stream = $1",
        )
        .bind(stream)
        .fetch_optional(&mut conn)
        .await?;
        let last_seq = match stored {
            Some((created, last)) if created == stream_created_ns => {
                let last = u64::try_from(last).unwrap_or(0);
                if last < first_unwritten {
                    // Records between the checkpoint and the stream's oldest are gone from the
                    // stream without having been written (it was purged by hand).
                    tracing::error!(
                        stream,
                        checkpoint = last,
                        first_seq,
                        "run log: records after the checkpoint are no longer in the stream; writing from its oldest record"
                    );
                    first_unwritten
                } else {
                    last
                }
            }
            Some(_) => {
                tracing::warn!(
                    stream,
                    first_seq,
                    "run log: the stream was made again since the last checkpoint; writing from its oldest record"
                );
                first_unwritten
            }
            None => first_unwritten,
        };
        sqlx::query(
            "INSERT INTO runlog_checkpoints (stream, stream_created_ns, last_seq) VALUES ($1, $2, $3) \
             ON CONFLICT (stream) DO UPDATE SET stream_created_ns = EXCLUDED.stream_created_ns, \
                 last_seq = EXCLUDED.last_seq, updated_at = now()",
        )
        .bind(stream)
        .bind(stream_created_ns)
        .bind(seq(last_seq)?)
        .execute(&mut conn)
        .await?;
        Ok(Ok(RunLogWriter {
            conn,
            stream: stream.to_owned(),
            created_ns: stream_created_ns,
            last_seq,
        }))
    }

    /// The last stream sequence written: the next record to write comes after it.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Writes `items`, the records after [`RunLogWriter::last_seq`] through the stream
    /// sequence `through`, and moves the checkpoint to `through`: all in one transaction. A
    /// record the database refuses is logged and left out (it would be refused again on every
    /// retry); any other failure writes nothing, and the batch can be written again.
    pub async fn write(&mut self, through: u64, items: &[AnsweredWebhook]) -> Result<WrittenBatch> {
        use sqlx::Connection as _;
        let mut tx = self.conn.begin().await?;
        let written = insert_each(&mut tx, items).await?;
        let moved = sqlx::query(
            "UPDATE runlog_checkpoints SET last_seq = $3, updated_at = now() \
             WHERE stream = $1 AND last_seq = $2",
        )
        .bind(&self.stream)
        .bind(seq(self.last_seq)?)
        .bind(seq(through)?)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 {
            return Err(StoreError::Invalid(format!(
                "the run log checkpoint of {} is no longer at {}: another writer has written",
                self.stream, self.last_seq
            )));
        }
        // What workers wrote themselves up to the checkpoint is passed: its notes go (and any
        // of a stream of that name made before this one).
        sqlx::query(
            "DELETE FROM runlog_written WHERE stream = $1 AND (last_seq <= $2 OR stream_created_ns <> $3)",
        )
        .bind(&self.stream)
        .bind(seq(through)?)
        .bind(self.created_ns)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.last_seq = through;
        Ok(written)
    }

    /// The sequences after the checkpoint that workers wrote themselves
    /// ([`write_published`]), as sorted, merged, inclusive ranges.
    pub async fn written_by_workers(&mut self) -> Result<Vec<(u64, u64)>> {
        let rows: Vec<Vec<i64>> = sqlx::query_scalar(
            "SELECT ranges FROM runlog_written \
             WHERE stream = $1 AND stream_created_ns = $2 AND last_seq > $3",
        )
        .bind(&self.stream)
        .bind(self.created_ns)
        .bind(seq(self.last_seq)?)
        .fetch_all(&mut self.conn)
        .await?;
        let mut ranges = Vec::new();
        for row in rows {
            for pair in row.chunks_exact(2) {
                let (from, to) = (pair[0].max(0) as u64, pair[1].max(0) as u64);
                if to > self.last_seq && from <= to {
                    ranges.push((from.max(self.last_seq + 1), to));
                }
            }
        }
        Ok(merge_ranges(ranges))
    }
}

/// Writes records a worker published to the run log stream `stream` (made at
/// `stream_created_ns`), `items[i]` at the stream sequence `seqs[i]`, and notes the sequences
/// as written, in one transaction: the run log's writer then reads none of them back from the
/// stream. Idempotent as [`RunLogWriter::write`] is (a `MessageSid` already in the log writes
/// nothing), so a record written here and by the writer too is stored once. A record the
/// database refuses is logged and left out, and counts as written (it would be refused again).
pub async fn write_published(
    pool: &PgPool,
    stream: &str,
    stream_created_ns: i64,
    seqs: &[u64],
    items: &[AnsweredWebhook],
) -> Result<WrittenBatch> {
    use sqlx::Connection as _;
    if seqs.len() != items.len() {
        return Err(StoreError::Invalid(format!(
            "{} sequences for {} run log records",
            seqs.len(),
            items.len()
        )));
    }
    let ranges = merge_ranges(seqs.iter().map(|&s| (s, s)).collect());
    let Some(&(_, last)) = ranges.last() else {
        return Ok(WrittenBatch::default());
    };
    let flat = ranges
        .iter()
        .flat_map(|&(from, to)| [seq(from), seq(to)])
        .collect::<Result<Vec<i64>>>()?;
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let written = insert_each(&mut tx, items).await?;
    sqlx::query(
        "INSERT INTO runlog_written (stream, stream_created_ns, last_seq, ranges) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(stream)
    .bind(stream_created_ns)
    .bind(seq(last)?)
    .bind(flat)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(written)
}

/// Inclusive ranges sorted and merged (overlapping or adjacent ones become one).
pub fn merge_ranges(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.retain(|(from, to)| from <= to);
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (from, to) in ranges {
        match merged.last_mut() {
            Some(last) if from <= last.1.saturating_add(1) => last.1 = last.1.max(to),
            _ => merged.push((from, to)),
        }
    }
    merged
}

/// The sequences after `after` through `through` that the sorted, merged `covered` ranges leave
/// out, as inclusive ranges.
pub fn gaps(after: u64, through: u64, covered: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut gaps = Vec::new();
    let mut next = after + 1;
    for &(from, to) in covered {
        if next > through {
            break;
        }
        if to < next {
            continue;
        }
        if from > next {
            gaps.push((next, (from - 1).min(through)));
        }
        next = next.max(to.saturating_add(1));
    }
    if next <= through {
        gaps.push((next, through));
    }
    gaps
}

/// Inserts `items` in one statement within the caller's transaction (a savepoint); if the
/// database refuses the batch, record by record, each refused one logged and left out.
async fn insert_each(conn: &mut PgConnection, items: &[AnsweredWebhook]) -> Result<WrittenBatch> {
    use sqlx::Connection as _;
    let mut written = WrittenBatch::default();
    let batch = {
        let mut savepoint = conn.begin().await?;
        match insert(&mut *savepoint, items).await {
            Ok(outcomes) => {
                savepoint.commit().await?;
                Some(outcomes)
            }
            Err(StoreError::Database(sqlx::Error::Database(e))) => {
                tracing::debug!(error = %e, records = items.len(), "a run log batch was refused: writing its records one by one");
                savepoint.rollback().await?;
                None
            }
            Err(e) => return Err(e),
        }
    };
    let outcomes = match batch {
        Some(outcomes) => outcomes.into_iter().map(Some).collect(),
        None => {
            let mut outcomes = Vec::with_capacity(items.len());
            for item in items {
                let mut savepoint = conn.begin().await?;
                match insert(&mut *savepoint, std::slice::from_ref(item)).await {
                    Ok(o) => {
                        savepoint.commit().await?;
                        outcomes.push(Some(o[0]));
                    }
                    Err(StoreError::Database(sqlx::Error::Database(e))) => {
                        savepoint.rollback().await?;
                        tracing::error!(
                            message_sid = %item.message_sid,
                            listener_id = item.listener_id,
                            error = %e,
                            "run log: PostgreSQL refused a record; it is left out of the message log"
                        );
                        outcomes.push(None);
                    }
                    Err(e) => return Err(e),
                }
            }
            outcomes
        }
    };
    for outcome in outcomes {
        match outcome {
            Some(Recorded::New { .. }) => written.new += 1,
            Some(Recorded::Duplicate) => written.duplicates += 1,
            None => written.refused += 1,
        }
    }
    Ok(written)
}

fn seq(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| StoreError::Invalid(format!("stream sequence {n} out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_when_they_overlap_or_touch() {
        assert_eq!(merge_ranges(vec![]), vec![]);
        assert_eq!(
            merge_ranges(vec![
                (7, 7),
                (1, 1),
                (3, 3),
                (2, 2),
                (9, 12),
                (8, 8),
                (20, 19)
            ]),
            vec![(1, 3), (7, 12)]
        );
        assert_eq!(merge_ranges(vec![(5, 10), (6, 7), (11, 11)]), vec![(5, 11)]);
        assert_eq!(
            merge_ranges(vec![(0, u64::MAX), (3, 4)]),
            vec![(0, u64::MAX)]
        );
    }

    #[test]
    fn gaps_are_what_the_covered_ranges_leave_out_after_the_checkpoint() {
        // Nothing covered: all of it.
        assert_eq!(gaps(10, 20, &[]), vec![(11, 20)]);
        // Nothing after the checkpoint.
        assert_eq!(gaps(20, 20, &[]), vec![]);
        assert_eq!(gaps(20, 10, &[(1, 5)]), vec![]);
        // Covered ranges before, inside, across and after the span.
        assert_eq!(
            gaps(10, 30, &[(1, 9), (12, 14), (15, 15), (20, 25), (29, 40)]),
            vec![(11, 11), (16, 19), (26, 28)]
        );
        assert_eq!(gaps(10, 30, &[(5, 35)]), vec![]);
        assert_eq!(gaps(0, 5, &[(1, 5)]), vec![]);
        assert_eq!(gaps(0, 5, &[(2, 3)]), vec![(1, 1), (4, 5)]);
    }
}
