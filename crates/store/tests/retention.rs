//! Retention: the pruner with a clock the test sets (`now` is a parameter). Rows older than
//! their limit go and newer ones stay; an account's override wins over the global limits
//! (shorter and longer); an unfinished job is never deleted; runs go with their message and
//! never before it (the foreign key); statements are bounded by the batch size; one pass runs
//! at a time (advisory lock); and a webhook's insert is not held up while a prune runs.
//!
//! Needs PostgreSQL: `SWITCHBOARD_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), on which a fresh database is created.

use std::time::{Duration, Instant};

use switchboard_store::Store;
use switchboard_store::retention::{PRUNE_LOCK_KEY, PruneOutcome, PruneReport, RetentionPolicy};
use switchboard_store::sqlx::{self, PgPool};
use time::OffsetDateTime;

/// The test's clock: every row's age is counted from here.
fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_780_000_000).unwrap()
}

/// A fresh, migrated database: its pool (10 connections).
async fn fresh_database() -> PgPool {
    let admin = std::env::var("SWITCHBOARD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("sb_test_retention_{}_{nanos}", std::process::id());
    let pool = switchboard_store::connect(&admin, 1).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let pool = switchboard_store::connect(&url, 10).await.unwrap();
    switchboard_store::migrate(&pool).await.unwrap();
    pool
}

fn policy() -> RetentionPolicy {
    RetentionPolicy {
        pause: Duration::ZERO,
        ..RetentionPolicy::default()
    }
}

async fn exec(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// An account (no usable token: the pruner never reads it); its id.
async fn account(pool: &PgPool, name: &str, sid: &str, days: Option<i32>) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO connected_accounts (name, account_sid, auth_token_enc, allowed_hosts, retention_days) \
         VALUES ($1, $2, '\\x00', '{}', $3) RETURNING id",
    )
    .bind(name)
    .bind(sid)
    .bind(days)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// A message `age_days` old (by the test clock) with its run, as the worker writes them.
async fn message(pool: &PgPool, sid: &str, account_sid: Option<&str>, age_days: i64) {
    let at = now() - time::Duration::days(age_days);
    let run: i64 = sqlx::query_scalar(
        "INSERT INTO behavior_runs (behavior_id, listener_id, message_sid, mode, exit_state, trace, errors, duration_us, created_at) \
         VALUES (1, 1, $1, 'webhook', 'exit', '[]', '[]', 1, $2) RETURNING id",
    )
    .bind(sid)
    .bind(at)
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO inbound_messages (message_sid, listener_id, account_sid, request, response, run_id, received_at, completed_at) \
         VALUES ($1, 1, $2, '{}', '{}', $3, $4, $4)",
    )
    .bind(sid)
    .bind(account_sid)
    .bind(run)
    .bind(at)
    .execute(pool)
    .await
    .unwrap();
}

/// A run without a message (a macro run), `age_days` old; its id.
async fn macro_run(pool: &PgPool, age_days: i64) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO behavior_runs (behavior_id, mode, exit_state, trace, errors, duration_us, created_at) \
         VALUES (2, 'macro', 'exit', '[]', '[]', 1, $1) RETURNING id",
    )
    .bind(now() - time::Duration::days(age_days))
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn job(pool: &PgPool, key: &str, account_id: Option<i64>, state: &str, age_days: i64) {
    let at = now() - time::Duration::days(age_days);
    sqlx::query(
        "INSERT INTO outbound_jobs (idempotency_key, job_id, job_type, state, account_id, created_at, updated_at) \
         VALUES ($1, $1, 'sms.send', $2, $3, $4, $4)",
    )
    .bind(key)
    .bind(state)
    .bind(account_id)
    .bind(at)
    .execute(pool)
    .await
    .unwrap();
}

async fn keys(pool: &PgPool, sql: &str) -> Vec<String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(pool)
        .await
        .unwrap()
}

fn pruned(outcome: PruneOutcome) -> PruneReport {
    match outcome {
        PruneOutcome::Pruned(report) => report,
        PruneOutcome::Busy => panic!("the pass found the lock taken"),
    }
}

#[tokio::test]
async fn old_rows_go_new_ones_stay_overrides_win_and_unfinished_jobs_stay() {
    let pool = fresh_database().await;
    let store = Store::new(pool.clone(), None);
    let short = account(&pool, "short", "ACshort", Some(5)).await;
    let long = account(&pool, "long", "AClong", Some(90)).await;
    let plain = account(&pool, "plain", "ACplain", None).await;
    for (sid, acct) in [
        ("short", Some("ACshort")),
        ("long", Some("AClong")),
        ("plain", Some("ACplain")),
        ("nosid", None),
    ] {
        for age in [3, 10, 40, 100] {
            message(&pool, &format!("{sid}-{age}"), acct, age).await;
        }
    }
    let macro_new = macro_run(&pool, 10).await;
    let _macro_old = macro_run(&pool, 40).await;
    for (name, id) in [("short", short), ("long", long), ("plain", plain)] {
        for age in [3, 10, 40, 100] {
            job(&pool, &format!("{name}-sent-{age}"), Some(id), "sent", age).await;
        }
    }
    job(&pool, "none-dead-40", None, "dead", 40).await;
    job(&pool, "none-failed-10", None, "failed", 10).await;
    job(&pool, "plain-queued-100", Some(plain), "queued", 100).await;
    job(&pool, "short-sending-100", Some(short), "sending", 100).await;

    let report = pruned(store.prune(&policy(), now()).await.unwrap());

    let messages = keys(&pool, "SELECT message_sid FROM inbound_messages ORDER BY 1").await;
    assert_eq!(
        messages,
        [
            "long-10", "long-3", "long-40", // 90 days for AClong
            "nosid-10", "nosid-3", // 30 days: no account
            "plain-10", "plain-3", // 30 days: no override
            "short-3", // 5 days for ACshort
        ]
    );
    // Each message's run went with it; the runs of kept messages stay; the macro run older
    // than 30 days went, the newer one stayed.
    let runs = keys(
        &pool,
        "SELECT coalesce(message_sid, 'macro-' || id) FROM behavior_runs ORDER BY 1",
    )
    .await;
    let mut expected: Vec<String> = messages.clone();
    expected.push(format!("macro-{macro_new}"));
    expected.sort();
    assert_eq!(runs, expected);
    let jobs = keys(
        &pool,
        "SELECT idempotency_key FROM outbound_jobs ORDER BY 1",
    )
    .await;
    assert_eq!(
        jobs,
        [
            "long-sent-10",
            "long-sent-3",
            "long-sent-40",
            "none-failed-10",
            "plain-queued-100", // unfinished: kept whatever its age
            "plain-sent-10",
            "plain-sent-3",
            "short-sending-100", // unfinished: kept whatever its age
            "short-sent-3",
        ]
    );
    assert_eq!(
        (report.messages, report.runs, report.jobs),
        (8, 9, 7),
        "{report:?}"
    );

    // Nothing more to do: a second pass deletes nothing.
    let again = pruned(store.prune(&policy(), now()).await.unwrap());
    assert_eq!(again.total(), 0, "{again:?}");

    // The clock moves on 31 days: the plain account's 10-day-old rows are now 41 days old.
    let later = now() + time::Duration::days(31);
    pruned(store.prune(&policy(), later).await.unwrap());
    let messages = keys(&pool, "SELECT message_sid FROM inbound_messages ORDER BY 1").await;
    assert_eq!(messages, ["long-10", "long-3", "long-40"]);

    // A limit turned off keeps that table's rows (the overrides still apply).
    let off = RetentionPolicy {
        messages_days: None,
        runs_days: None,
        jobs_days: None,
        ..policy()
    };
    let report = pruned(
        store
            .prune(&off, now() + time::Duration::days(3650))
            .await
            .unwrap(),
    );
    assert_eq!((report.messages, report.jobs), (3, 3), "AClong's 90 days");
    assert_eq!(count(&pool, "inbound_messages").await, 0);
    let jobs = keys(
        &pool,
        "SELECT idempotency_key FROM outbound_jobs ORDER BY 1",
    )
    .await;
    assert_eq!(
        jobs,
        ["plain-queued-100", "short-sending-100"],
        "unfinished jobs are kept whatever their age"
    );
}

#[tokio::test]
async fn set_retention_sets_and_clears_the_override() {
    let pool = fresh_database().await;
    let store = Store::new(pool.clone(), None);
    let id = account(&pool, "a", "ACa", None).await;
    store.set_account_retention(id, Some(7)).await.unwrap();
    assert_eq!(store.account_retentions().await.unwrap(), [(id, Some(7))]);
    store.set_account_retention(id, None).await.unwrap();
    assert_eq!(store.account_retentions().await.unwrap(), [(id, None)]);
    assert!(store.set_account_retention(id, Some(0)).await.is_err());
    assert!(store.set_account_retention(id + 1, Some(3)).await.is_err());
}

#[tokio::test]
async fn statements_delete_at_most_one_batch() {
    let pool = fresh_database().await;
    let store = Store::new(pool.clone(), None);
    // 2,500 old messages with their runs, 2,500 old finished jobs.
    exec(
        &pool,
        "WITH r AS (
            INSERT INTO behavior_runs (behavior_id, listener_id, message_sid, mode, exit_state, trace, errors, duration_us, created_at)
            SELECT 1, 1, 'SM' || i, 'webhook', 'exit', '[]', '[]', 1, '2020-01-01' FROM generate_series(1, 2500) i
            RETURNING id, message_sid)
         INSERT INTO inbound_messages (message_sid, listener_id, request, run_id, received_at)
         SELECT message_sid, 1, '{}', id, '2020-01-01' FROM r;
         INSERT INTO outbound_jobs (idempotency_key, job_id, job_type, state, created_at, updated_at)
         SELECT 'k' || i, 'k' || i, 'sms.send', 'sent', '2020-01-01', '2020-01-01' FROM generate_series(1, 2500) i;",
    )
    .await;
    let report = pruned(
        store
            .prune(
                &RetentionPolicy {
                    batch_size: 1000,
                    ..policy()
                },
                now(),
            )
            .await
            .unwrap(),
    );
    assert_eq!(
        (report.messages, report.runs, report.jobs),
        (2500, 2500, 2500)
    );
    assert_eq!(report.largest_batch, 1000, "{report:?}");
    // Messages 1000+1000+500, runs (went with them) one empty check, jobs 1000+1000+500.
    assert_eq!(report.batches, 7, "{report:?}");
    for table in ["inbound_messages", "behavior_runs", "outbound_jobs"] {
        assert_eq!(count(&pool, table).await, 0, "{table}");
    }
}

#[tokio::test]
async fn one_pass_at_a_time() {
    let pool = fresh_database().await;
    let store = Store::new(pool.clone(), None);
    // Another process's pass holds the lock: this one does nothing and says so.
    let mut other = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(PRUNE_LOCK_KEY)
        .execute(&mut *other)
        .await
        .unwrap();
    message(&pool, "old", None, 100).await;
    assert_eq!(
        store.prune(&policy(), now()).await.unwrap(),
        PruneOutcome::Busy
    );
    assert_eq!(count(&pool, "inbound_messages").await, 1, "nothing deleted");
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(PRUNE_LOCK_KEY)
        .execute(&mut *other)
        .await
        .unwrap();
    drop(other);

    // Two passes at once, as two replicas would start them: one runs, the other is busy.
    exec(
        &pool,
        "INSERT INTO outbound_jobs (idempotency_key, job_id, job_type, state, created_at, updated_at)
         SELECT 'k' || i, 'k' || i, 'sms.send', 'sent', '2020-01-01', '2020-01-01' FROM generate_series(1, 2000) i;",
    )
    .await;
    let slow = RetentionPolicy {
        batch_size: 200,
        pause: Duration::from_millis(30),
        ..policy()
    };
    let (a, b) = tokio::join!(store.prune(&slow, now()), store.prune(&slow, now()));
    let outcomes = [a.unwrap(), b.unwrap()];
    let busy = outcomes
        .iter()
        .filter(|o| **o == PruneOutcome::Busy)
        .count();
    assert_eq!(busy, 1, "{outcomes:?}");
    let ran: Vec<&PruneReport> = outcomes
        .iter()
        .filter_map(|o| match o {
            PruneOutcome::Pruned(r) => Some(r),
            PruneOutcome::Busy => None,
        })
        .collect();
    assert_eq!(ran[0].jobs, 2000);
    assert_eq!(ran[0].messages, 1);
    // The lock was released: the next pass runs.
    assert!(matches!(
        store.prune(&policy(), now()).await.unwrap(),
        PruneOutcome::Pruned(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_inserts_are_not_held_up_by_a_prune() {
    let pool = fresh_database().await;
    let store = Store::new(pool.clone(), None);
    exec(
        &pool,
        "WITH r AS (
            INSERT INTO behavior_runs (behavior_id, listener_id, message_sid, mode, exit_state, trace, errors, duration_us, created_at)
            SELECT 1, 1, 'SMold' || i, 'webhook', 'exit', '[]', '[]', 1, '2020-01-01' FROM generate_series(1, 20000) i
            RETURNING id, message_sid)
         INSERT INTO inbound_messages (message_sid, listener_id, request, run_id, received_at)
         SELECT message_sid, 1, '{}', id, '2020-01-01' FROM r;",
    )
    .await;
    let pruner = store.clone();
    let prune = tokio::spawn(async move {
        let policy = RetentionPolicy {
            batch_size: 1000,
            pause: Duration::from_millis(10),
            ..RetentionPolicy::default()
        };
        pruner.prune(&policy, now()).await
    });
    // Webhooks arrive meanwhile: claim the MessageSid, record the run and the answer.
    let mut slowest = Duration::ZERO;
    let mut during = 0;
    let mut inserted = 0i64;
    for i in 0..200 {
        if prune.is_finished() {
            break;
        }
        let sid = format!("SMnew{i}");
        let started = Instant::now();
        store
            .claim_message(
                &sid,
                1,
                Some("ACx"),
                "req",
                &serde_json::json!({"Body": "hi"}),
                Duration::from_secs(120),
            )
            .await
            .unwrap();
        let run = switchboard_store::RunRecord {
            behavior_id: 1,
            listener_id: Some(1),
            message_sid: Some(sid.clone()),
            request_id: None,
            trace_id: String::new(),
            mode: "webhook".into(),
            exit_state: "exit".into(),
            status: Some(200),
            trace: serde_json::json!([]),
            errors: serde_json::json!([]),
            duration_us: 1,
        };
        store
            .complete_run(&run, Some(&serde_json::json!({"status": 200})))
            .await
            .unwrap();
        slowest = slowest.max(started.elapsed());
        inserted += 1;
        if !prune.is_finished() {
            during += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let report = pruned(prune.await.unwrap().unwrap());
    assert_eq!(report.messages, 20000);
    assert!(during >= 3, "only {during} webhooks while the prune ran");
    assert!(
        slowest < Duration::from_millis(500),
        "a webhook's writes took {slowest:?} during the prune"
    );
    // Every old row went; every webhook's row stayed.
    assert_eq!(count(&pool, "inbound_messages").await, inserted);
    assert_eq!(count(&pool, "behavior_runs").await, inserted);
}
