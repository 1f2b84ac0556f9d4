//! Which writes wait for the disk. With `synchronous_commit` off (the behavior worker's default
//! pool, the outbound service's relaxed pool), a commit returns before its WAL is flushed, and
//! a crash of the database server can lose it. That is harmless for the message log, run
//! records and the outbound writes that are redone or resolved after a crash, but not for an
//! opt-out (a forgotten STOP lets the next job text someone who unsubscribed), a delivery
//! status (Twilio calls back once), or the outbound claims and outcomes that stand between a
//! create and a double send. Those run with `SET LOCAL synchronous_commit = on` whatever the
//! pool says.
//!
//! How it is seen: triggers on the tables record `current_setting('synchronous_commit')` in the
//! writing transaction, for a store whose every connection has it off, as the worker's has.
//!
//! Needs PostgreSQL: `SWITCHBOARD_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), on which a fresh database is created.

use std::time::Duration;

use secrecy::SecretString;
use switchboard_store::limits::SuppressionReason;
use switchboard_store::outbound::{NewJob, Published, SentJob};
use switchboard_store::sqlx;
use switchboard_store::status::StatusUpdate;
use switchboard_store::{MasterKey, Store};

const MASTER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// A fresh, migrated database; its URL.
async fn fresh_database() -> String {
    let admin = std::env::var("SWITCHBOARD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("sb_test_durable_{}_{nanos}", std::process::id());
    let pool = switchboard_store::connect(&admin, 1).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let pool = switchboard_store::connect(&url, 1).await.unwrap();
    switchboard_store::migrate(&pool).await.unwrap();
    // The probe: every row written records the setting its transaction commits with.
    sqlx::raw_sql(
        "CREATE TABLE commit_settings (tbl TEXT, op TEXT, setting TEXT);
         CREATE FUNCTION record_commit_setting() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           INSERT INTO commit_settings VALUES
             (TG_TABLE_NAME, TG_OP, current_setting('synchronous_commit'));
           RETURN NULL;
         END $$;
         CREATE TRIGGER record_commit_setting AFTER INSERT OR UPDATE OR DELETE ON sms_suppressions
           FOR EACH ROW EXECUTE FUNCTION record_commit_setting();
         CREATE TRIGGER record_commit_setting AFTER INSERT OR UPDATE OR DELETE ON outbound_jobs
           FOR EACH ROW EXECUTE FUNCTION record_commit_setting();",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    url
}

/// The settings recorded since the last call (and forgets them).
async fn settings(store: &Store) -> Vec<String> {
    let rows: Vec<(String,)> = sqlx::query_as("DELETE FROM commit_settings RETURNING setting")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert!(!rows.is_empty(), "the statement wrote nothing");
    let mut settings: Vec<String> = rows.into_iter().map(|(s,)| s).collect();
    settings.dedup();
    settings
}

#[tokio::test]
async fn promises_are_written_with_synchronous_commit_on_whatever_the_pool_says() {
    let url = fresh_database().await;
    // As the behavior worker connects by default (WORKER_SYNCHRONOUS_COMMIT=false): every
    // connection has synchronous_commit off; the relaxed pool is the same pool.
    let pool = switchboard_store::connect_with(&url, 2, false)
        .await
        .unwrap();
    let store = Store::new(pool, Some(MasterKey::parse(MASTER_KEY).unwrap()));
    let on = vec!["on".to_owned()];
    let off = vec!["off".to_owned()];

    let account = store
        .add_account(
            "acme",
            "AC0123456789abcdef0123456789abcdef",
            &SecretString::from("t"),
        )
        .await
        .unwrap();
    let number = "+14155550100";

    // Opt-out and opt-in, by keyword (the worker) or Twilio's 21610 (outbound).
    assert!(
        store
            .suppress(account.id, number, SuppressionReason::Keyword, "STOP")
            .await
            .unwrap()
    );
    assert_eq!(settings(&store).await, on, "an opt-out");
    assert!(store.unsuppress(account.id, number).await.unwrap());
    assert_eq!(settings(&store).await, on, "an opt-in");
    // The operator's (switchboard suppressions add|remove).
    store
        .operator_suppress(account.id, number, "asked by phone")
        .await
        .unwrap();
    assert_eq!(settings(&store).await, on, "an operator's suppression");
    store
        .operator_unsuppress(account.id, number)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(settings(&store).await, on, "an operator's removal");

    // Outbound rows: what may be lost is written with the pool's setting (the control: it is
    // off here), what stands between a create and a double send is not.
    let (row, _) = store
        .outbound_job_upsert("k-1", "j-1", "sms.send", Some(account.id), Some(number))
        .await
        .unwrap();
    assert_eq!(
        settings(&store).await,
        off,
        "a job's row: re-created on redelivery"
    );
    store
        .outbound_mark_published("k-1", Published::Accepted)
        .await
        .unwrap();
    assert_eq!(
        settings(&store).await,
        off,
        "the accepted mark: republished, de-duplicated"
    );
    let claimed = store
        .outbound_claim_attempt(&row, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(settings(&store).await, on, "the claim before a create");
    let sid = "SM0123456789abcdef0123456789abcdef";
    assert!(
        store
            .outbound_mark_sent(&claimed.idempotency_key, sid, Some("queued"))
            .await
            .unwrap()
    );
    assert_eq!(
        settings(&store).await,
        off,
        "sent: a lost one is listed at Twilio, not resent"
    );
    store
        .outbound_mark_published("k-1", Published::Final)
        .await
        .unwrap();
    assert_eq!(
        settings(&store).await,
        on,
        "the final mark before the JetStream ack"
    );

    // Delivery status from Twilio's callbacks (the worker).
    let recorded = store
        .outbound_record_status(
            &StatusUpdate {
                message_sid: sid,
                status: "delivered",
                error_code: None,
                error_message: None,
            },
            account.id,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(recorded.status.as_deref(), Some("delivered"));
    assert_eq!(settings(&store).await, on, "a delivery status");

    // The batch path: the claim of new jobs and the record of what Twilio created.
    let claimed = store
        .outbound_claim_new(
            &[NewJob {
                idempotency_key: "k-2",
                job_id: "j-2",
                account_id: account.id,
                to: "+14155550101",
            }],
            "sms.send",
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(claimed, ["k-2"]);
    assert_eq!(
        settings(&store).await,
        on,
        "the batch claim before the creates"
    );
    let recorded = store
        .outbound_record_sent_batch(&[SentJob {
            idempotency_key: "k-2",
            twilio_sid: "SM1123456789abcdef0123456789abcdef",
            twilio_status: Some("queued"),
            events_published: true,
        }])
        .await
        .unwrap();
    assert_eq!(recorded, ["k-2"]);
    assert_eq!(
        settings(&store).await,
        on,
        "the batch record before the acks"
    );
    let failure = switchboard_store::outbound::JobFailure {
        code: "timeout",
        message: "m",
    };
    let (_, _) = store
        .outbound_job_upsert("k-3", "j-3", "sms.send", None, None)
        .await
        .unwrap();
    settings(&store).await;
    store
        .outbound_record_failure(
            "k-3",
            switchboard_store::outbound::JobState::Queued,
            &failure,
        )
        .await
        .unwrap();
    assert_eq!(
        settings(&store).await,
        off,
        "a retryable failure: the job is retried anyway"
    );

    // The setting stays local to those transactions: the pool's connections keep theirs.
    let (setting,): (String,) = sqlx::query_as("SELECT current_setting('synchronous_commit')")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(setting, "off");
}
