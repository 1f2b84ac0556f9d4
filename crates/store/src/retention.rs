//! Retention: how long the message log (`inbound_messages`), behavior runs (`behavior_runs`) and
//! finished outbound jobs (`outbound_jobs`) are kept, and the pruner that deletes older rows.
//!
//! How the rules map to the tables:
//!
//! - A global limit per table ([`RetentionPolicy`]; `None`: kept forever), and a per-account
//!   override (`connected_accounts.retention_days`, `switchboard accounts set-retention`) that
//!   wins over all three global limits for that account's rows, shorter or longer.
//! - `inbound_messages` belong to an account by their `account_sid` (the `AccountSid` Twilio
//!   posted); when several connected accounts share that SID, the shortest override applies.
//!   Age: `received_at`.
//! - `behavior_runs` follow the message they answered: a run is deleted in the same statement as
//!   its message when it is older than the runs limit of the message's account, and a run whose
//!   message is still kept is never deleted (the foreign key `inbound_messages.run_id`, and
//!   the run is that message's record), so runs are kept at least as long as their messages.
//!   Runs without a message (macro runs, `switchboard run`, or whose message is gone) follow the
//!   global runs limit. Age: `created_at`.
//! - `outbound_jobs` belong to an account by `account_id`; only finished jobs (`sent`, `failed`,
//!   `dead`) are deleted, never `queued` or `sending` ones, and only when both `created_at` and
//!   `updated_at` are older than the limit.
//!
//! The pruner deletes in batches of [`RetentionPolicy::batch_size`] rows per statement, each its
//! own short transaction, with [`RetentionPolicy::pause`] between full batches; candidate rows
//! are locked with `SKIP LOCKED`, so a row a webhook is writing is left for the next pass and
//! no webhook waits on the pruner. One pruner runs at a time across every replica: a pass
//! holds a session-level PostgreSQL advisory lock ([`PRUNE_LOCK_KEY`]) and a pass that cannot
//! take it returns [`PruneOutcome::Busy`] at once.

use std::time::Duration;

use serde::Serialize;
use sqlx::Row;
use time::OffsetDateTime;

use crate::{Result, Store, StoreError};

/// Default of each global limit: 30 days.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;

/// Default [`RetentionPolicy::batch_size`].
pub const DEFAULT_BATCH_SIZE: u32 = 1000;

/// Default [`RetentionPolicy::pause`].
pub const DEFAULT_PAUSE: Duration = Duration::from_millis(50);

/// The advisory lock (`pg_try_advisory_lock`) a pruning pass holds: "SBPRUNE" in ASCII.
pub const PRUNE_LOCK_KEY: i64 = 0x0053_4250_5255_4e45;

/// The finished states of an outbound job: the only ones the pruner deletes.
pub const FINISHED_JOB_STATES: [&str; 3] = ["sent", "failed", "dead"];

/// How long rows are kept, and how the pruner deletes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Days inbound messages are kept; `None`: forever (account overrides still apply).
    pub messages_days: Option<u32>,
    /// Days behavior runs are kept; `None`: forever (account overrides still apply).
    pub runs_days: Option<u32>,
    /// Days finished outbound jobs are kept; `None`: forever (account overrides still apply).
    pub jobs_days: Option<u32>,
    /// Most rows one DELETE statement removes.
    pub batch_size: u32,
    /// Pause after each full batch, so webhooks and the WAL get room.
    pub pause: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> RetentionPolicy {
        RetentionPolicy {
            messages_days: Some(DEFAULT_RETENTION_DAYS),
            runs_days: Some(DEFAULT_RETENTION_DAYS),
            jobs_days: Some(DEFAULT_RETENTION_DAYS),
            batch_size: DEFAULT_BATCH_SIZE,
            pause: DEFAULT_PAUSE,
        }
    }
}

/// What one pruning pass deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    pub messages: u64,
    pub runs: u64,
    pub jobs: u64,
    /// DELETE statements run.
    pub batches: u64,
    /// The most rows of one table one statement deleted (at most the batch size).
    pub largest_batch: u64,
}

impl PruneReport {
    pub fn total(&self) -> u64 {
        self.messages + self.runs + self.jobs
    }

    fn batch(&mut self, rows: u64) {
        self.batches += 1;
        self.largest_batch = self.largest_batch.max(rows);
    }
}

/// The result of [`Store::prune`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PruneOutcome {
    /// This pass ran and deleted this.
    Pruned(PruneReport),
    /// Another pass (this or another process) holds the lock; nothing was done.
    Busy,
}

/// Days as PostgreSQL's `make_interval(days => …)` takes them.
fn days(d: Option<u32>) -> Option<i32> {
    d.map(|d| i32::try_from(d).unwrap_or(i32::MAX))
}

/// Messages (with the runs that go with them), one batch. `$1` now, `$2` messages default days,
/// `$3` runs default days, `$4` batch size.
const PRUNE_MESSAGES: &str = "\
WITH acct AS (
    SELECT account_sid, min(retention_days) AS days FROM connected_accounts
    WHERE retention_days IS NOT NULL GROUP BY account_sid
), victims AS (
    SELECT m.message_sid FROM inbound_messages m LEFT JOIN acct a ON a.account_sid = m.account_sid
    WHERE m.received_at < $1 - make_interval(days => LEAST($2::int, (SELECT min(days) FROM acct)))
      AND m.received_at < $1 - make_interval(days => COALESCE(a.days, $2::int))
    LIMIT $4 FOR UPDATE OF m SKIP LOCKED
), gone AS (
    DELETE FROM inbound_messages m USING victims v WHERE m.message_sid = v.message_sid
    RETURNING m.run_id, m.account_sid
), runs AS (
    DELETE FROM behavior_runs r USING gone g LEFT JOIN acct a ON a.account_sid = g.account_sid
    WHERE r.id = g.run_id
      AND r.created_at < $1 - make_interval(days => COALESCE(a.days, $3::int))
      AND NOT EXISTS (SELECT 1 FROM inbound_messages o
                      WHERE o.run_id = r.id AND o.message_sid NOT IN (SELECT message_sid FROM victims))
    RETURNING r.id
)
SELECT (SELECT count(*) FROM gone) AS messages, (SELECT count(*) FROM runs) AS runs";

/// Runs no kept message points at, one batch. `$1` now, `$2` runs default days, `$3` batch size.
const PRUNE_RUNS: &str = "\
WITH victims AS (
    SELECT r.id FROM behavior_runs r
    WHERE r.created_at < $1 - make_interval(days => $2::int)
      AND NOT EXISTS (SELECT 1 FROM inbound_messages m WHERE m.run_id = r.id)
      AND (r.message_sid IS NULL
           OR NOT EXISTS (SELECT 1 FROM inbound_messages m WHERE m.message_sid = r.message_sid))
    LIMIT $3 FOR UPDATE OF r SKIP LOCKED
)
DELETE FROM behavior_runs r USING victims v WHERE r.id = v.id";

/// Finished jobs, one batch. `$1` now, `$2` jobs default days, `$3` batch size.
const PRUNE_JOBS: &str = "\
WITH victims AS (
    SELECT j.idempotency_key FROM outbound_jobs j LEFT JOIN connected_accounts a ON a.id = j.account_id
    WHERE j.state IN ('sent', 'failed', 'dead')
      AND j.created_at < $1 - make_interval(days =>
            LEAST($2::int, (SELECT min(retention_days) FROM connected_accounts)))
      AND j.created_at < $1 - make_interval(days => COALESCE(a.retention_days, $2::int))
      AND j.updated_at < $1 - make_interval(days => COALESCE(a.retention_days, $2::int))
    LIMIT $3 FOR UPDATE OF j SKIP LOCKED
)
DELETE FROM outbound_jobs j USING victims v
WHERE j.idempotency_key = v.idempotency_key AND j.state IN ('sent', 'failed', 'dead')";

impl Store {
    /// Sets (`Some(days)`, at least 1) or clears (`None`: the global limits apply) an account's
    /// retention override.
    pub async fn set_account_retention(&self, account_id: i64, days: Option<u32>) -> Result<()> {
        if days == Some(0) {
            return Err(StoreError::Invalid(
                "retention days must be at least 1".into(),
            ));
        }
        let done = sqlx::query("UPDATE connected_accounts SET retention_days = $2 WHERE id = $1")
            .bind(account_id)
            .bind(self::days(days))
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("account {account_id}")));
        }
        Ok(())
    }

    /// Each account's retention override, by account id (`None`: the global limits).
    pub async fn account_retentions(&self) -> Result<Vec<(i64, Option<u32>)>> {
        let rows = sqlx::query("SELECT id, retention_days FROM connected_accounts ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let d: Option<i32> = r.get("retention_days");
                (r.get("id"), d.map(|d| d.max(0) as u32))
            })
            .collect())
    }

    /// One pruning pass as of `now` (the clock is the caller's): deletes, in batches, the rows
    /// older than their limit (module docs). Returns [`PruneOutcome::Busy`] at once when another
    /// pass holds the advisory lock.
    pub async fn prune(
        &self,
        policy: &RetentionPolicy,
        now: OffsetDateTime,
    ) -> Result<PruneOutcome> {
        let mut lock = self.pool.acquire().await?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(PRUNE_LOCK_KEY)
            .fetch_one(&mut *lock)
            .await?;
        if !got {
            return Ok(PruneOutcome::Busy);
        }
        let result = self.prune_locked(policy, now).await;
        let unlocked = sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
            .bind(PRUNE_LOCK_KEY)
            .fetch_one(&mut *lock)
            .await;
        if !matches!(unlocked, Ok(true)) {
            // Closing the session is what releases a lock it may still hold.
            let _ = lock.detach();
        }
        result.map(PruneOutcome::Pruned)
    }

    async fn prune_locked(
        &self,
        policy: &RetentionPolicy,
        now: OffsetDateTime,
    ) -> Result<PruneReport> {
        let batch = i64::from(policy.batch_size.max(1));
        let full = |rows: u64| rows >= batch as u64;
        let mut report = PruneReport::default();
        let (messages_days, runs_days, jobs_days) = (
            days(policy.messages_days),
            days(policy.runs_days),
            days(policy.jobs_days),
        );
        // Messages first: they free the runs they point at.
        loop {
            let r = sqlx::query(PRUNE_MESSAGES)
                .bind(now)
                .bind(messages_days)
                .bind(runs_days)
                .bind(batch)
                .fetch_one(&self.relaxed)
                .await?;
            let (messages, runs) = (
                r.get::<i64, _>("messages") as u64,
                r.get::<i64, _>("runs") as u64,
            );
            report.messages += messages;
            report.runs += runs;
            report.batch(messages);
            if !full(messages) {
                break;
            }
            tokio::time::sleep(policy.pause).await;
        }
        if runs_days.is_some() {
            loop {
                let runs = sqlx::query(PRUNE_RUNS)
                    .bind(now)
                    .bind(runs_days)
                    .bind(batch)
                    .execute(&self.relaxed)
                    .await?
                    .rows_affected();
                report.runs += runs;
                report.batch(runs);
                if !full(runs) {
                    break;
                }
                tokio::time::sleep(policy.pause).await;
            }
        }
        loop {
            let jobs = sqlx::query(PRUNE_JOBS)
                .bind(now)
                .bind(jobs_days)
                .bind(batch)
                .execute(&self.relaxed)
                .await?
                .rows_affected();
            report.jobs += jobs;
            report.batch(jobs);
            if !full(jobs) {
                break;
            }
            tokio::time::sleep(policy.pause).await;
        }
        Ok(report)
    }
}
