//! The message log's batched fast path (`switchboard_store::webhook_log`) against a real
//! PostgreSQL: each `MessageSid` is claimed once, also within one batch, with exactly one run;
//! a record the database refuses fails alone.

use switchboard_e2e::*;
use switchboard_store::webhook_log::{AnsweredWebhook, Recorded};

pub(crate) fn raw(json: impl Into<String>) -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::from_string(json.into()).unwrap()
}

pub(crate) fn answered(
    listener_id: i64,
    behavior_id: i64,
    sid: &str,
    body: &str,
) -> AnsweredWebhook {
    AnsweredWebhook {
        message_sid: sid.into(),
        listener_id,
        account_sid: Some(ACCOUNT_SID.into()),
        request_id: unique("req"),
        request: raw(
            serde_json::json!({ "method": "POST", "params": [["Body", body]] }).to_string(),
        ),
        response: raw(
            serde_json::json!({ "status": 200, "headers": [], "body": format!("echo {body}") })
                .to_string(),
        ),
        behavior_id,
        trace_id: String::new(),
        mode: "real".into(),
        exit_state: "return".into(),
        status: Some(200),
        trace: raw("[]"),
        errors: raw("[]"),
        duration_us: 1,
    }
}

/// The seed's webhook listener and behavior.
pub(crate) async fn seed_ids(stack: &Stack) -> (i64, i64) {
    let listener_id: i64 = sqlx::query_scalar("SELECT id FROM webhook_listeners")
        .fetch_one(stack.store.pool())
        .await
        .unwrap();
    (listener_id, stack.webhook_behavior_id)
}

#[tokio::test]
async fn a_batch_claims_each_message_sid_once_and_a_refused_record_fails_alone() {
    let stack = Stack::new().await.unwrap();
    let pool = stack.store.pool();
    let (listener_id, behavior) = seed_ids(&stack).await;
    // One statement at a time, so records queued together share a batch.
    let log = stack.store.webhook_log(64, 1);
    let (a, b, c, d, e) = (
        message_sid(),
        message_sid(),
        message_sid(),
        message_sid(),
        message_sid(),
    );

    let first = log
        .record(answered(listener_id, behavior, &a, "first"))
        .await
        .unwrap();
    assert!(matches!(first, Recorded::New { .. }), "{first:?}");

    let outcomes = futures::future::join_all([
        log.record(answered(listener_id, behavior, &a, "again")),
        log.record(answered(listener_id, behavior, &b, "one")),
        log.record(answered(listener_id, behavior, &b, "two")),
        log.record(answered(listener_id, behavior, &c, "three")),
    ])
    .await;
    // A record the database refuses (its errors hold a lone surrogate, which jsonb refuses)
    // fails, and only that one; a NUL, which jsonb cannot hold, is stored as U+FFFD instead of
    // failing.
    let mut broken = answered(listener_id, behavior, &d, "broken");
    broken.errors = raw(r#"["\ud800"]"#);
    let f = message_sid();
    let refused = futures::future::join_all([
        log.record(broken),
        log.record(answered(listener_id, behavior, &e, "fine")),
        log.record(answered(listener_id, behavior, &f, "nul\u{0}")),
    ])
    .await;
    assert_eq!(outcomes[0].as_ref().unwrap(), &Recorded::Duplicate);
    let b_new = outcomes[1..3]
        .iter()
        .filter(|o| matches!(o, Ok(Recorded::New { .. })))
        .count();
    let b_dup = outcomes[1..3]
        .iter()
        .filter(|o| matches!(o, Ok(Recorded::Duplicate)))
        .count();
    assert_eq!((b_new, b_dup), (1, 1), "{outcomes:?}");
    let Ok(Recorded::New { run_id: c_run }) = outcomes[3] else {
        panic!("{:?}", outcomes[3]);
    };
    assert!(refused[0].is_err(), "{refused:?}");
    assert!(
        matches!(refused[1], Ok(Recorded::New { .. })),
        "{refused:?}"
    );
    assert!(
        matches!(refused[2], Ok(Recorded::New { .. })),
        "{refused:?}"
    );
    let nul_body: String =
        sqlx::query_scalar("SELECT response->>'body' FROM inbound_messages WHERE message_sid = $1")
            .bind(&f)
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(nul_body, "echo nul\u{FFFD}");

    // Exactly one run per claimed MessageSid, linked from the log with the stored answer.
    for (sid, runs) in [(&a, 1i64), (&b, 1), (&c, 1), (&d, 0), (&e, 1), (&f, 1)] {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM behavior_runs WHERE message_sid = $1")
                .bind(sid)
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(n, runs, "runs of {sid}");
    }
    let (run_id, body): (i64, String) = sqlx::query_as(
        "SELECT run_id, response->>'body' FROM inbound_messages WHERE message_sid = $1",
    )
    .bind(&c)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!((run_id, body.as_str()), (c_run, "echo three"));
    let stored = stack
        .store
        .stored_response(&a)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(stored["body"], "echo first");
    assert_eq!(stack.store.stored_response(&d).await.unwrap(), None);
    // Run traces are compressed with lz4, not the default pglz (migration 0005).
    let compression: String = sqlx::query_scalar(
        "SELECT attcompression::text FROM pg_attribute \
         WHERE attrelid = 'behavior_runs'::regclass AND attname = 'trace'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(compression, "l");
}

/// The run log's writer side (`RunLogWriter`): one writer per stream at a time, handing over
/// when its connection ends; records and checkpoint in one transaction, a refused record left
/// out alone; a stream made again is written from its first record.
#[tokio::test]
async fn one_run_log_writer_at_a_time_resumes_from_the_checkpoint() {
    use switchboard_store::webhook_log::{RunLogWriter, WrittenBatch};
    let stack = Stack::new().await.unwrap();
    let pool = stack.store.pool();
    let (listener_id, behavior) = seed_ids(&stack).await;
    let stream = unique("RUNLOG");

    // A stream not seen before: written from its first record.
    let mut first = RunLogWriter::lead(pool, &stream, 1, 1)
        .await
        .unwrap()
        .expect("the first writer leads");
    assert_eq!(first.last_seq(), 0);
    assert!(
        RunLogWriter::lead(pool, &stream, 1, 1)
            .await
            .unwrap()
            .is_none(),
        "a second writer stands by while the first holds the lock"
    );
    // A writer standing by keeps its connection between tries: it comes back each time.
    let standby = {
        use sqlx::Connection as _;
        sqlx::PgConnection::connect_with(&pool.connect_options())
            .await
            .unwrap()
    };
    let mut standby = RunLogWriter::lead_on(standby, &stream, 1, 1)
        .await
        .unwrap()
        .err()
        .expect("stands by while the first holds the lock");
    let standby_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut standby)
        .await
        .unwrap();
    let (a, b, c) = (message_sid(), message_sid(), message_sid());
    let mut refused = answered(listener_id, behavior, &b, "refused");
    refused.errors = raw(r#"["\ud800"]"#);
    let written = first
        .write(
            3,
            &[
                answered(listener_id, behavior, &a, "a"),
                refused,
                answered(listener_id, behavior, &c, "c"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        written,
        WrittenBatch {
            new: 2,
            duplicates: 0,
            refused: 1
        }
    );
    assert_eq!(first.last_seq(), 3);
    // Written again (a writer that died before anything told NATS): nothing new.
    let again = first
        .write(4, &[answered(listener_id, behavior, &a, "a again")])
        .await
        .unwrap();
    assert_eq!(again.duplicates, 1);
    drop(first);

    // Its connection ended: the writer standing by leads on the connection it kept, from the
    // checkpoint.
    let next = lead_on_within_5s(standby, &stream, 1).await;
    assert_eq!(next.last_seq(), 4);
    let holds_the_lock: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = $1)",
    )
    .bind(standby_pid)
    .fetch_one(pool)
    .await
    .unwrap();
    assert!(
        holds_the_lock,
        "the writer leads on the connection it kept while standing by"
    );
    drop(next);
    let runs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM behavior_runs WHERE message_sid = ANY($1)")
            .bind([&a, &b, &c])
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(runs, 2);

    // The stream was deleted and made again (another creation time): its sequences start anew.
    assert_eq!(lead_within_5s(pool, &stream, 2).await.last_seq(), 0);
}

/// What workers write themselves (`write_published`): their records with a note of the stream
/// sequences, which the writer counts as written; it writes the rest (a record written by both
/// is stored once), and moving its checkpoint past a note deletes it.
#[tokio::test]
async fn records_written_by_their_workers_are_noted_and_the_checkpoint_clears_the_notes() {
    use switchboard_store::webhook_log::{RunLogWriter, WrittenBatch, gaps, write_published};
    let stack = Stack::new().await.unwrap();
    let pool = stack.store.pool();
    let (listener_id, behavior) = seed_ids(&stack).await;
    let stream = unique("RUNLOG");
    let mut writer = RunLogWriter::lead(pool, &stream, 1, 1)
        .await
        .unwrap()
        .expect("the writer leads");
    let sids: Vec<String> = (0..=8).map(|_| message_sid()).collect();
    let rec = |i: usize| answered(listener_id, behavior, &sids[i], "x");

    // Two workers' batches, their sequences out of order; 3 and 6 written by no worker.
    let one = write_published(pool, &stream, 1, &[1, 4, 2], &[rec(1), rec(4), rec(2)])
        .await
        .unwrap();
    assert_eq!(
        one,
        WrittenBatch {
            new: 3,
            duplicates: 0,
            refused: 0
        }
    );
    let mut refused = rec(5);
    refused.errors = raw(r#"["\ud800"]"#);
    let two = write_published(pool, &stream, 1, &[5, 7], &[refused, rec(7)])
        .await
        .unwrap();
    assert_eq!(
        two,
        WrittenBatch {
            new: 1,
            duplicates: 0,
            refused: 1
        },
        "a refused record is left out and counts as written: it would be refused again"
    );
    // A note of an earlier stream of that name (another creation time) covers nothing here.
    let other = answered(listener_id, behavior, &message_sid(), "old stream");
    write_published(pool, &stream, 0, &[3, 6], &[other.clone(), other])
        .await
        .unwrap();
    assert!(
        write_published(pool, &stream, 1, &[9], &[]).await.is_err(),
        "as many sequences as records"
    );

    let covered = writer.written_by_workers().await.unwrap();
    assert_eq!(covered, vec![(1, 2), (4, 5), (7, 7)]);
    assert_eq!(gaps(writer.last_seq(), 7, &covered), vec![(3, 3), (6, 6)]);
    // The writer writes the gaps; 7 with them is already stored (its worker wrote it): once.
    let swept = writer.write(7, &[rec(3), rec(6), rec(7)]).await.unwrap();
    assert_eq!(
        swept,
        WrittenBatch {
            new: 2,
            duplicates: 1,
            refused: 0
        }
    );
    // A note after the checkpoint stays; those it passed, and the old stream's, are gone.
    write_published(pool, &stream, 1, &[8], &[rec(8)])
        .await
        .unwrap();
    assert_eq!(writer.written_by_workers().await.unwrap(), vec![(8, 8)]);
    writer.write(7, &[]).await.unwrap();
    let notes: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT stream_created_ns, last_seq FROM runlog_written WHERE stream = $1 ORDER BY last_seq",
    )
    .bind(&stream)
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(notes, vec![(1, 8)]);
    let runs: Vec<(String, i64)> = sqlx::query_as(
        "SELECT message_sid, count(*) FROM behavior_runs WHERE message_sid = ANY($1) \
         GROUP BY message_sid ORDER BY message_sid",
    )
    .bind(&sids)
    .fetch_all(pool)
    .await
    .unwrap();
    let mut expected: Vec<(String, i64)> = [1, 2, 3, 4, 6, 7, 8]
        .iter()
        .map(|&i| (sids[i].clone(), 1))
        .collect();
    expected.sort();
    assert_eq!(
        runs, expected,
        "one run for each record but the refused one"
    );
}

/// Leads the writing of `stream` once the last writer's connection has ended (PostgreSQL drops
/// its lock with it), on a connection of its own.
async fn lead_within_5s(
    pool: &sqlx::PgPool,
    stream: &str,
    created_ns: i64,
) -> switchboard_store::webhook_log::RunLogWriter {
    use sqlx::Connection as _;
    let conn = sqlx::PgConnection::connect_with(&pool.connect_options())
        .await
        .unwrap();
    lead_on_within_5s(conn, stream, created_ns).await
}

/// [`lead_within_5s`] on `conn`, which stands by (keeps trying the lock) until it leads.
async fn lead_on_within_5s(
    mut conn: sqlx::PgConnection,
    stream: &str,
    created_ns: i64,
) -> switchboard_store::webhook_log::RunLogWriter {
    use switchboard_store::webhook_log::RunLogWriter;
    for _ in 0..50 {
        match RunLogWriter::lead_on(conn, stream, created_ns, 1)
            .await
            .unwrap()
        {
            Ok(writer) => return writer,
            Err(standby) => conn = standby,
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the run log writer's lock was not handed over within 5 s");
}
