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

use sqlx::{PgPool, Row as _};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::{Result, StoreError};

/// A webhook answered by a run, to record. Serialized as is in the worker's JetStream run log
/// (written behind to PostgreSQL).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AnsweredWebhook {
    pub message_sid: String,
    pub listener_id: i64,
    pub account_sid: Option<String>,
    pub request_id: String,
    /// The request as logged (JSON text).
    pub request: String,
    /// The reply sent (JSON text).
    pub response: String,
    pub behavior_id: i64,
    pub trace_id: String,
    pub mode: String,
    pub exit_state: String,
    pub status: Option<i32>,
    /// The run's trace (JSON text).
    pub trace: String,
    /// The run's errors (JSON text).
    pub errors: String,
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

/// One statement for the whole batch: each record's run id is drawn first, the `MessageSid`
/// claims insert with it (a conflict, also with an earlier record of the same batch, inserts
/// nothing), and only the runs whose claim went in are inserted. Answers in input order.
async fn insert(pool: &PgPool, items: &[AnsweredWebhook]) -> Result<Vec<Recorded>> {
    let col = |f: fn(&AnsweredWebhook) -> &str| items.iter().map(f).collect::<Vec<_>>();
    // JSON columns without U+0000, which jsonb refuses (crate::jsonb).
    let json = |f: fn(&AnsweredWebhook) -> &str| {
        items
            .iter()
            .map(|w| crate::jsonb::text(f(w)))
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
            SELECT input.*, nextval(pg_get_serial_sequence('behavior_runs', 'id')) AS run_id FROM input ORDER BY ord \
         ), claimed AS ( \
            INSERT INTO inbound_messages (message_sid, listener_id, account_sid, request_id, request, response, run_id, completed_at) \
            SELECT message_sid, listener_id, account_sid, request_id, request::jsonb, response::jsonb, run_id, now() \
            FROM numbered ORDER BY ord \
            ON CONFLICT (message_sid) DO NOTHING \
            RETURNING run_id \
         ), runs AS ( \
            INSERT INTO behavior_runs (id, behavior_id, listener_id, message_sid, request_id, trace_id, mode, exit_state, status, trace, errors, duration_us) \
            SELECT n.run_id, n.behavior_id, n.listener_id, n.message_sid, n.request_id, n.trace_id, n.mode, n.exit_state, n.status, \
                   n.trace::jsonb, n.errors::jsonb, n.duration_us \
            FROM numbered n JOIN claimed c ON c.run_id = n.run_id \
            RETURNING id \
         ) \
         SELECT n.ord, n.run_id, EXISTS (SELECT 1 FROM runs r WHERE r.id = n.run_id) AS inserted \
         FROM numbered n ORDER BY n.ord",
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
    .fetch_all(pool)
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
