//! The outbound service's job state (`outbound_jobs`, migration `20261125000002_outbound.sql`):
//! one row per job, keyed by its idempotency key, moved through queued → sending → sent | failed
//! | dead by compare-and-set updates, so a redelivered or re-published job is never sent twice.
//! Also the account lookup by name that jobs (`{"account": {"name": …}}`) need.

use sqlx::Row;
use time::OffsetDateTime;

use crate::{Account, AccountCredentials, Result, Store, StoreError, account_from_row};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Known, no create in flight, none made that could have succeeded.
    Queued,
    /// A create was started and its outcome is not known to have created nothing: either it is
    /// in flight (`lease_until` in the future) or it failed ambiguously or the process died.
    Sending,
    /// Twilio created the message (`twilio_sid`).
    Sent,
    /// Permanently failed (a Twilio error that repeating cannot fix, an unknown account).
    Failed,
    /// Retries or age exhausted; the job was dead-lettered.
    Dead,
}

impl JobState {
    /// The value in the `state` column.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Sending => "sending",
            JobState::Sent => "sent",
            JobState::Failed => "failed",
            JobState::Dead => "dead",
        }
    }

    /// True for the states a job never leaves.
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Sent | JobState::Failed | JobState::Dead)
    }

    fn parse(s: &str) -> Result<JobState> {
        Ok(match s {
            "queued" => JobState::Queued,
            "sending" => JobState::Sending,
            "sent" => JobState::Sent,
            "failed" => JobState::Failed,
            "dead" => JobState::Dead,
            other => return Err(StoreError::Corrupt(format!("outbound job state '{other}'"))),
        })
    }
}

/// One `outbound_jobs` row.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundJob {
    pub idempotency_key: String,
    pub job_id: String,
    /// `sms.send` (the contract's job type name).
    pub job_type: String,
    pub state: JobState,
    /// Creates started at Twilio.
    pub attempts: u32,
    /// While a create is in flight, until when it may be.
    pub lease_until: Option<OffsetDateTime>,
    pub twilio_sid: Option<String>,
    pub twilio_status: Option<String>,
    pub last_error_code: Option<String>,
    pub last_error_message: Option<String>,
    /// The `accepted` event was published.
    pub accepted_published: bool,
    /// The final event (and, for failures, the dead-letter copy) was published.
    pub final_published: bool,
    pub created_at: OffsetDateTime,
    /// When the first create started: the ambiguity check lists messages created since then.
    pub first_attempt_at: Option<OffsetDateTime>,
    pub updated_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
    /// The connected account the job sends from, once resolved (`None` for an account the
    /// job names that does not exist, and for rows written before this was recorded).
    pub account_id: Option<i64>,
    /// The job's `to`.
    pub recipient: Option<String>,
    /// The database's clock when the row was read (leases are compared with it, not ours).
    pub now: OffsetDateTime,
}

impl OutboundJob {
    /// True while another delivery holds a create in flight.
    pub fn is_leased(&self) -> bool {
        self.state == JobState::Sending && self.lease_until.is_some_and(|until| until > self.now)
    }

    fn from_row(r: &sqlx::postgres::PgRow) -> Result<OutboundJob> {
        let attempts: i32 = r.get("attempts");
        Ok(OutboundJob {
            idempotency_key: r.get("idempotency_key"),
            job_id: r.get("job_id"),
            job_type: r.get("job_type"),
            state: JobState::parse(r.get("state"))?,
            attempts: u32::try_from(attempts).unwrap_or(0),
            lease_until: r.get("lease_until"),
            twilio_sid: r.get("twilio_sid"),
            twilio_status: r.get("twilio_status"),
            last_error_code: r.get("last_error_code"),
            last_error_message: r.get("last_error_message"),
            accepted_published: r.get("accepted_published"),
            final_published: r.get("final_published"),
            created_at: r.get("created_at"),
            first_attempt_at: r.get("first_attempt_at"),
            updated_at: r.get("updated_at"),
            finished_at: r.get("finished_at"),
            account_id: r.get("account_id"),
            recipient: r.get("recipient"),
            now: r.get("db_now"),
        })
    }
}

/// Every column, plus the database clock.
const COLUMNS: &str = "idempotency_key, job_id, job_type, state, attempts, lease_until, twilio_sid, \
    twilio_status, last_error_code, last_error_message, accepted_published, final_published, \
    created_at, first_attempt_at, updated_at, finished_at, account_id, recipient, \
    now() AS db_now";

/// A failure to record against a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure<'a> {
    /// A Twilio code as a decimal string, or one of the contract's own codes.
    pub code: &'a str,
    pub message: &'a str,
}

/// Which event flag to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    Accepted,
    Final,
}

/// A new send-SMS job to claim in a batch ([`Store::outbound_claim_new`]).
#[derive(Debug, Clone, Copy)]
pub struct NewJob<'a> {
    pub idempotency_key: &'a str,
    pub job_id: &'a str,
    /// The connected account the job sends from (its suppression list applies).
    pub account_id: i64,
    /// The recipient, as the job gives it (the suppression list's form).
    pub to: &'a str,
}

/// A create Twilio answered, to record in a batch ([`Store::outbound_record_sent_batch`]).
#[derive(Debug, Clone, Copy)]
pub struct SentJob<'a> {
    pub idempotency_key: &'a str,
    pub twilio_sid: &'a str,
    pub twilio_status: Option<&'a str>,
    /// Both the job's events (accepted and sent) are in the events stream.
    pub events_published: bool,
}

impl Store {
    /// An account by its unique name, without its secret.
    pub async fn account_by_name(&self, name: &str) -> Result<Option<Account>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM connected_accounts WHERE name = $1",
            crate::ACCOUNT_COLUMNS
        )))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(account_from_row))
    }

    /// An account with its decrypted token, by name.
    pub async fn credentials_by_name(&self, name: &str) -> Result<Option<AccountCredentials>> {
        match self.account_by_name(name).await? {
            Some(account) => self.credentials(account.id).await,
            None => Ok(None),
        }
    }

    /// The job's row, created `queued` if it is new, with whom the job is for: the connected
    /// account it sends from (`None` when the account it names does not exist) and its
    /// recipient (`switchboard jobs list --account/--number` filter on them). An existing row
    /// that lacks them (an earlier delivery could not resolve the account) gets them; otherwise
    /// it is not written. The flag says whether this call created the row.
    pub async fn outbound_job_upsert(
        &self,
        idempotency_key: &str,
        job_id: &str,
        job_type: &str,
        account_id: Option<i64>,
        recipient: Option<&str>,
    ) -> Result<(OutboundJob, bool)> {
        let written = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO outbound_jobs (idempotency_key, job_id, job_type, account_id, recipient) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (idempotency_key) DO UPDATE SET \
               account_id = coalesce(outbound_jobs.account_id, EXCLUDED.account_id), \
               recipient = coalesce(outbound_jobs.recipient, EXCLUDED.recipient) \
             WHERE (outbound_jobs.account_id IS NULL AND EXCLUDED.account_id IS NOT NULL) \
                OR (outbound_jobs.recipient IS NULL AND EXCLUDED.recipient IS NOT NULL) \
             RETURNING {COLUMNS}, (xmax = 0) AS inserted"
        )))
        .bind(idempotency_key)
        .bind(job_id)
        .bind(job_type)
        .bind(account_id)
        .bind(recipient)
        .fetch_optional(&self.relaxed)
        .await?;
        if let Some(row) = written {
            return Ok((OutboundJob::from_row(&row)?, row.get("inserted")));
        }
        let job = self
            .outbound_job(idempotency_key)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("outbound job '{idempotency_key}'")))?;
        Ok((job, false))
    }

    /// Creates the rows of new jobs directly in their first create attempt (`sending`,
    /// attempts 1, leased for `lease`): what [`Store::outbound_job_upsert`] followed by
    /// [`Store::outbound_claim_attempt`] does for a job seen for the first time, for a whole
    /// batch in one statement. A job whose key already has a row, or whose recipient is on its
    /// account's suppression list, gets no row here; the caller handles it one by one. Answers
    /// the keys claimed. Keys must be distinct. The rows record each job's account and
    /// recipient. Durable ([`Store::durable`]): the claim is on disk before any create starts,
    /// so a crash of the database cannot forget that a create may have happened.
    pub async fn outbound_claim_new(
        &self,
        jobs: &[NewJob<'_>],
        job_type: &str,
        lease: std::time::Duration,
    ) -> Result<Vec<String>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let keys: Vec<&str> = jobs.iter().map(|j| j.idempotency_key).collect();
        let job_ids: Vec<&str> = jobs.iter().map(|j| j.job_id).collect();
        let accounts: Vec<i64> = jobs.iter().map(|j| j.account_id).collect();
        let recipients: Vec<&str> = jobs.iter().map(|j| j.to).collect();
        let mut tx = self.durable().await?;
        let rows = sqlx::query(
            "INSERT INTO outbound_jobs (idempotency_key, job_id, job_type, state, attempts, \
               lease_until, first_attempt_at, account_id, recipient) \
             SELECT u.key, u.job_id, $5, 'sending', 1, \
               now() + make_interval(secs => $6::double precision / 1000), now(), \
               u.account_id, u.recipient \
             FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) \
               AS u(key, job_id, account_id, recipient) \
             WHERE NOT EXISTS (SELECT 1 FROM sms_suppressions s \
                               WHERE s.account_id = u.account_id AND s.number = u.recipient) \
             ON CONFLICT (idempotency_key) DO NOTHING \
             RETURNING idempotency_key",
        )
        .bind(&keys)
        .bind(&job_ids)
        .bind(&accounts)
        .bind(&recipients)
        .bind(job_type)
        .bind(lease_ms)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows.iter().map(|r| r.get("idempotency_key")).collect())
    }

    /// Records the messages Twilio created for a batch of jobs, in one durable statement:
    /// each job becomes `sent` with its SID and, where `events_published`, both its events are
    /// noted published (so its JetStream ack may follow). Answers the keys recorded (a job that
    /// had already ended is left as it was and is not among them).
    pub async fn outbound_record_sent_batch(&self, jobs: &[SentJob<'_>]) -> Result<Vec<String>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<&str> = jobs.iter().map(|j| j.idempotency_key).collect();
        let sids: Vec<&str> = jobs.iter().map(|j| j.twilio_sid).collect();
        let statuses: Vec<Option<&str>> = jobs.iter().map(|j| j.twilio_status).collect();
        let published: Vec<bool> = jobs.iter().map(|j| j.events_published).collect();
        let mut tx = self.durable().await?;
        let rows = sqlx::query(
            "UPDATE outbound_jobs o SET state = 'sent', twilio_sid = u.sid, \
               twilio_status = u.status, lease_until = NULL, updated_at = now(), \
               finished_at = now(), \
               accepted_published = o.accepted_published OR u.published, \
               final_published = o.final_published OR u.published \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[]) \
               AS u(key, sid, status, published) \
             WHERE o.idempotency_key = u.key AND o.state IN ('queued', 'sending') \
             RETURNING o.idempotency_key",
        )
        .bind(&keys)
        .bind(&sids)
        .bind(&statuses)
        .bind(&published)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows.iter().map(|r| r.get("idempotency_key")).collect())
    }

    /// The job's row.
    pub async fn outbound_job(&self, idempotency_key: &str) -> Result<Option<OutboundJob>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM outbound_jobs WHERE idempotency_key = $1"
        )))
        .bind(idempotency_key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(OutboundJob::from_row).transpose()
    }

    /// Starts create attempt `seen.attempts + 1`: `sending`, leased for `lease`, if the row is
    /// still as `seen` left it (same state and attempts, not leased). `None` when another
    /// delivery changed it first; it must not send then. Durable ([`Store::durable`]): the
    /// claim is on disk before the create starts.
    pub async fn outbound_claim_attempt(
        &self,
        seen: &OutboundJob,
        lease: std::time::Duration,
    ) -> Result<Option<OutboundJob>> {
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let mut tx = self.durable().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE outbound_jobs SET state = 'sending', attempts = attempts + 1, \
               lease_until = now() + make_interval(secs => $4::double precision / 1000), \
               first_attempt_at = coalesce(first_attempt_at, now()), updated_at = now() \
             WHERE idempotency_key = $1 AND state = $2 AND attempts = $3 \
               AND (lease_until IS NULL OR lease_until <= now()) \
             RETURNING {COLUMNS}"
        )))
        .bind(&seen.idempotency_key)
        .bind(seen.state.as_str())
        .bind(i32::try_from(seen.attempts).unwrap_or(i32::MAX))
        .bind(lease_ms)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.as_ref().map(OutboundJob::from_row).transpose()
    }

    /// Records the message Twilio created (or the one the ambiguity check found): `sent`.
    /// `false` when the job had already ended (another delivery recorded its outcome first).
    pub async fn outbound_mark_sent(
        &self,
        idempotency_key: &str,
        twilio_sid: &str,
        twilio_status: Option<&str>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE outbound_jobs SET state = 'sent', twilio_sid = $2, twilio_status = $3, \
               lease_until = NULL, updated_at = now(), finished_at = now() \
             WHERE idempotency_key = $1 AND state IN ('queued', 'sending')",
        )
        .bind(idempotency_key)
        .bind(twilio_sid)
        .bind(twilio_status)
        .execute(&self.relaxed)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a failure and the state it leaves the job in: `queued` (retry; nothing was
    /// created), `sending` (retry after checking; something may have been created), `failed` or
    /// `dead` (final). Releases the lease. `false` when the job had already ended.
    pub async fn outbound_record_failure(
        &self,
        idempotency_key: &str,
        state: JobState,
        failure: &JobFailure<'_>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE outbound_jobs SET state = $2, last_error_code = $3, last_error_message = $4, \
               lease_until = NULL, updated_at = now(), \
               finished_at = CASE WHEN $2 IN ('failed', 'dead') THEN now() ELSE NULL END \
             WHERE idempotency_key = $1 AND state IN ('queued', 'sending')",
        )
        .bind(idempotency_key)
        .bind(state.as_str())
        .bind(failure.code)
        .bind(failure.message)
        .execute(&self.relaxed)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Notes that an event was published.
    pub async fn outbound_mark_published(
        &self,
        idempotency_key: &str,
        which: Published,
    ) -> Result<()> {
        let sql = match which {
            Published::Accepted => {
                "UPDATE outbound_jobs SET accepted_published = TRUE, updated_at = now() WHERE idempotency_key = $1"
            }
            // The final event is published only after the accepted one (`finish`).
            Published::Final => {
                "UPDATE outbound_jobs SET accepted_published = TRUE, final_published = TRUE, updated_at = now() WHERE idempotency_key = $1"
            }
        };
        // The final mark is the job's last write before its JetStream ack: durable, so the
        // outcome (and every earlier relaxed write of the job) is on disk before the ack.
        match which {
            Published::Accepted => {
                sqlx::query(sql)
                    .bind(idempotency_key)
                    .execute(&self.relaxed)
                    .await?;
            }
            Published::Final => {
                let mut tx = self.durable().await?;
                sqlx::query(sql)
                    .bind(idempotency_key)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Which of `sids` another job (not `idempotency_key`) already owns.
    pub async fn outbound_sids_taken(
        &self,
        sids: &[String],
        idempotency_key: &str,
    ) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT twilio_sid FROM outbound_jobs WHERE twilio_sid = ANY($1) AND idempotency_key <> $2",
        )
        .bind(sids)
        .bind(idempotency_key)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get("twilio_sid")).collect())
    }

    /// Jobs by state, for operators and tests.
    pub async fn outbound_count_by_state(&self) -> Result<Vec<(JobState, i64)>> {
        let rows = sqlx::query(
            "SELECT state, count(*) AS n FROM outbound_jobs GROUP BY state ORDER BY state",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((JobState::parse(r.get("state"))?, r.get("n"))))
            .collect()
    }
}
