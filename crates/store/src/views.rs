//! What the system records, read for operators (`switchboard messages | runs | jobs |
//! suppressions`): the inbound message log with the answer given, behavior runs with their
//! traces, outbound jobs with their delivery status, and the suppression lists, each filtered
//! and paged newest first by a keyset cursor. Also the operator's own suppressions (`add`,
//! `remove`). Every filter and page uses an index (migration
//! `20261127000006_operator_views.sql`); nothing here returns a credential.
//!
//! Pages: a list asks for `limit` rows and gets up to `limit + 1`, so the caller knows whether
//! there is a next page without counting; the next page starts strictly after the last row
//! shown ([`Before`]).

use sqlx::{Postgres, QueryBuilder, Row};
use time::OffsetDateTime;

use crate::{Result, Store, StoreError};

/// The largest page.
pub const MAX_LIMIT: i64 = 1000;

/// Where a newest-first page starts: rows strictly older than `at`, or as old and with a
/// smaller key (the row's unique key: a `MessageSid`, an idempotency key, `account:number`).
/// Without a key, every row of time `at` is excluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Before {
    pub at: OffsetDateTime,
    pub key: Option<String>,
}

/// A time window: `since` inclusive, `until` exclusive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
}

impl Window {
    fn push(&self, q: &mut QueryBuilder<Postgres>, column: &str) {
        if let Some(since) = self.since {
            q.push(format_args!(" AND {column} >= ")).push_bind(since);
        }
        if let Some(until) = self.until {
            q.push(format_args!(" AND {column} < ")).push_bind(until);
        }
    }
}

/// `LIMIT` for a page of `limit` rows: one more, to tell whether another page follows.
fn page_limit(limit: i64) -> i64 {
    limit.clamp(1, MAX_LIMIT) + 1
}

// ---- inbound messages ------------------------------------------------------------------------

/// `messages list` filters.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    /// Only messages to these listeners (`--listener`, or a bot's listeners); `None`: any.
    pub listener_ids: Option<Vec<i64>>,
    /// `From` or `To` equal to this number.
    pub number: Option<String>,
    pub window: Window,
    /// `Some(true)`: answered (a response is stored); `Some(false)`: still being answered.
    pub answered: Option<bool>,
    pub before: Option<Before>,
    pub limit: i64,
}

/// One logged inbound message, with the answer stored for it and what ran.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRow {
    pub message_sid: String,
    pub listener_id: i64,
    pub listener_name: Option<String>,
    pub account_sid: Option<String>,
    pub request_id: Option<String>,
    /// As the worker logs it: `method`, `query`, `params` (the form, `[name, value]` pairs in
    /// order) and `client_ip`. No headers: the signature is never logged.
    pub request: serde_json::Value,
    /// The reply given (`status`, `headers`, `body`); `None` while it is being answered.
    pub response: Option<serde_json::Value>,
    pub run_id: Option<i64>,
    pub received_at: OffsetDateTime,
    pub completed_at: Option<OffsetDateTime>,
    /// The run's behavior, else the listener's.
    pub behavior_id: Option<i64>,
    pub behavior_title: Option<String>,
    pub bot_id: Option<i64>,
    pub bot_name: Option<String>,
}

impl MessageRow {
    /// The first form parameter `name` of the request.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.request["params"]
            .as_array()?
            .iter()
            .filter_map(|pair| pair.as_array())
            .find(|pair| pair.first().and_then(|k| k.as_str()) == Some(name))
            .and_then(|pair| pair.get(1))
            .and_then(|v| v.as_str())
    }

    fn from_row(r: &sqlx::postgres::PgRow) -> MessageRow {
        MessageRow {
            message_sid: r.get("message_sid"),
            listener_id: r.get("listener_id"),
            listener_name: r.get("listener_name"),
            account_sid: r.get("account_sid"),
            request_id: r.get("request_id"),
            request: r.get("request"),
            response: r.get("response"),
            run_id: r.get("run_id"),
            received_at: r.get("received_at"),
            completed_at: r.get("completed_at"),
            behavior_id: r.get("behavior_id"),
            behavior_title: r.get("behavior_title"),
            bot_id: r.get("bot_id"),
            bot_name: r.get("bot_name"),
        }
    }
}

const MESSAGE_SELECT: &str = "SELECT m.message_sid, m.listener_id, l.name AS listener_name, \
       m.account_sid, m.request_id, m.request, m.response, m.run_id, m.received_at, \
       m.completed_at, b.id AS behavior_id, b.title AS behavior_title, bot.id AS bot_id, \
       bot.name AS bot_name \
     FROM inbound_messages m \
     LEFT JOIN webhook_listeners l ON l.id = m.listener_id \
     LEFT JOIN behavior_runs r ON r.id = m.run_id \
     LEFT JOIN behaviors b ON b.id = coalesce(r.behavior_id, l.behavior_id) \
     LEFT JOIN bots bot ON bot.id = b.bot_id";

// ---- behavior runs ---------------------------------------------------------------------------

/// `runs list` filters.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only runs of these behaviors (`--behavior`, or a bot's behaviors); `None`: any.
    pub behavior_ids: Option<Vec<i64>>,
    pub listener_id: Option<i64>,
    pub window: Window,
    /// `complete`, `stop`, `suspend` or `aborted`.
    pub exit_state: Option<String>,
    /// `Some(true)`: only runs that recorded errors; `Some(false)`: only runs without.
    pub with_errors: Option<bool>,
    /// Runs recorded before this run (its id).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// One behavior run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub id: i64,
    pub behavior_id: i64,
    pub behavior_title: Option<String>,
    pub bot_id: Option<i64>,
    pub bot_name: Option<String>,
    pub listener_id: Option<i64>,
    pub listener_name: Option<String>,
    pub message_sid: Option<String>,
    pub request_id: Option<String>,
    /// OpenTelemetry trace id (empty when tracing was off).
    pub trace_id: String,
    pub mode: String,
    pub exit_state: String,
    /// The HTTP status a webhook run answered with.
    pub status: Option<i32>,
    /// The engine's `RunError`s.
    pub errors: serde_json::Value,
    pub duration_us: i64,
    pub created_at: OffsetDateTime,
    /// The engine's `TraceEvent`s; read by [`Store::view_run`] only (lists leave it out).
    pub trace: Option<serde_json::Value>,
}

impl RunRow {
    fn from_row(r: &sqlx::postgres::PgRow, with_trace: bool) -> RunRow {
        RunRow {
            id: r.get("id"),
            behavior_id: r.get("behavior_id"),
            behavior_title: r.get("behavior_title"),
            bot_id: r.get("bot_id"),
            bot_name: r.get("bot_name"),
            listener_id: r.get("listener_id"),
            listener_name: r.get("listener_name"),
            message_sid: r.get("message_sid"),
            request_id: r.get("request_id"),
            trace_id: r.get("trace_id"),
            mode: r.get("mode"),
            exit_state: r.get("exit_state"),
            status: r.get("status"),
            errors: r.get("errors"),
            duration_us: r.get("duration_us"),
            created_at: r.get("created_at"),
            trace: with_trace.then(|| r.get("trace")),
        }
    }
}

const RUN_COLUMNS: &str = "r.id, r.behavior_id, b.title AS behavior_title, bot.id AS bot_id, \
       bot.name AS bot_name, r.listener_id, l.name AS listener_name, r.message_sid, r.request_id, \
       r.trace_id, r.mode, r.exit_state, r.status, r.errors, r.duration_us, r.created_at";

const RUN_JOINS: &str = " FROM behavior_runs r \
     LEFT JOIN behaviors b ON b.id = r.behavior_id \
     LEFT JOIN bots bot ON bot.id = b.bot_id \
     LEFT JOIN webhook_listeners l ON l.id = r.listener_id";

// ---- outbound jobs ---------------------------------------------------------------------------

/// `jobs list` filters.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// `queued`, `sending`, `sent`, `failed` or `dead`.
    pub state: Option<String>,
    /// The job's recipient (`to`).
    pub recipient: Option<String>,
    pub account_id: Option<i64>,
    pub window: Window,
    pub before: Option<Before>,
    pub limit: i64,
}

/// One outbound job's row (`outbound_jobs`), with its delivery status.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub idempotency_key: String,
    pub job_id: String,
    pub job_type: String,
    pub state: String,
    pub attempts: i32,
    pub lease_until: Option<OffsetDateTime>,
    pub twilio_sid: Option<String>,
    /// The status Twilio answered the create with.
    pub twilio_status: Option<String>,
    /// The latest status from Twilio's status callbacks (only ever moves forward).
    pub delivery_status: Option<String>,
    pub delivery_error_code: Option<String>,
    pub delivery_error_message: Option<String>,
    pub delivery_updated_at: Option<OffsetDateTime>,
    pub last_error_code: Option<String>,
    pub last_error_message: Option<String>,
    pub accepted_published: bool,
    pub final_published: bool,
    pub created_at: OffsetDateTime,
    pub first_attempt_at: Option<OffsetDateTime>,
    pub updated_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
    /// Whom the job was for, where the row records it.
    pub account_id: Option<i64>,
    pub account_name: Option<String>,
    pub recipient: Option<String>,
}

impl JobRow {
    fn from_row(r: &sqlx::postgres::PgRow) -> JobRow {
        JobRow {
            idempotency_key: r.get("idempotency_key"),
            job_id: r.get("job_id"),
            job_type: r.get("job_type"),
            state: r.get("state"),
            attempts: r.get("attempts"),
            lease_until: r.get("lease_until"),
            twilio_sid: r.get("twilio_sid"),
            twilio_status: r.get("twilio_status"),
            delivery_status: r.get("delivery_status"),
            delivery_error_code: r.get("delivery_error_code"),
            delivery_error_message: r.get("delivery_error_message"),
            delivery_updated_at: r.get("delivery_updated_at"),
            last_error_code: r.get("last_error_code"),
            last_error_message: r.get("last_error_message"),
            accepted_published: r.get("accepted_published"),
            final_published: r.get("final_published"),
            created_at: r.get("created_at"),
            first_attempt_at: r.get("first_attempt_at"),
            updated_at: r.get("updated_at"),
            finished_at: r.get("finished_at"),
            account_id: r.get("account_id"),
            account_name: r.get("account_name"),
            recipient: r.get("recipient"),
        }
    }

    /// The delivery status when a callback reported one, else the create's.
    pub fn status(&self) -> Option<&str> {
        self.delivery_status
            .as_deref()
            .or(self.twilio_status.as_deref())
    }
}

const JOB_SELECT: &str = "SELECT j.idempotency_key, j.job_id, j.job_type, j.state, j.attempts, \
       j.lease_until, j.twilio_sid, j.twilio_status, j.delivery_status, j.delivery_error_code, \
       j.delivery_error_message, j.delivery_updated_at, j.last_error_code, j.last_error_message, \
       j.accepted_published, j.final_published, j.created_at, j.first_attempt_at, j.updated_at, \
       j.finished_at, j.account_id, a.name AS account_name, j.recipient \
     FROM outbound_jobs j LEFT JOIN connected_accounts a ON a.id = j.account_id";

// ---- suppressions ----------------------------------------------------------------------------

/// `suppressions list` filters.
#[derive(Debug, Clone, Default)]
pub struct SuppressionFilter {
    pub account_id: Option<i64>,
    pub number: Option<String>,
    /// `keyword`, `twilio_21610` or `operator`.
    pub reason: Option<String>,
    pub window: Window,
    /// Its key is `account_id:number`.
    pub before: Option<Before>,
    pub limit: i64,
}

/// One suppressed number of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressionRow {
    pub account_id: i64,
    pub account_name: String,
    pub number: String,
    /// `keyword`, `twilio_21610` or `operator`.
    pub reason: String,
    /// The keyword as received, Twilio's error message, or the operator's reason.
    pub detail: String,
    pub created_at: OffsetDateTime,
}

impl SuppressionRow {
    /// The row's cursor key: `account_id:number`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.account_id, self.number)
    }

    fn from_row(r: &sqlx::postgres::PgRow) -> SuppressionRow {
        SuppressionRow {
            account_id: r.get("account_id"),
            account_name: r.get("account_name"),
            number: r.get("number"),
            reason: r.get("reason"),
            detail: r.get("detail"),
            created_at: r.get("created_at"),
        }
    }
}

const SUPPRESSION_SELECT: &str = "SELECT s.account_id, a.name AS account_name, s.number, \
       s.reason, s.detail, s.created_at \
     FROM sms_suppressions s JOIN connected_accounts a ON a.id = s.account_id";

impl Store {
    // ---- names --------------------------------------------------------------------------------

    /// Resolves a webhook listener given by id, by name, or by guid (case-insensitive); a name
    /// must then be unique.
    pub async fn resolve_listener(&self, given: &str) -> Result<i64> {
        let given = given.trim();
        if let Ok(id) = given.parse::<i64>() {
            let found = sqlx::query("SELECT id FROM webhook_listeners WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?;
            return found
                .map(|_| id)
                .ok_or_else(|| StoreError::NotFound(format!("listener {id}")));
        }
        let rows = sqlx::query(
            "SELECT id FROM webhook_listeners WHERE name = $1 OR lower(guid) = lower($1) ORDER BY id",
        )
        .bind(given)
        .fetch_all(self.pool())
        .await?;
        match rows.as_slice() {
            [] => Err(StoreError::NotFound(format!("listener '{given}'"))),
            [one] => Ok(one.get("id")),
            several => Err(StoreError::Invalid(format!(
                "{} listeners are named '{given}'; give the id instead: {}",
                several.len(),
                several
                    .iter()
                    .map(|r| r.get::<i64, _>("id").to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// The listeners whose behavior belongs to `bot_id`.
    pub async fn bot_listener_ids(&self, bot_id: i64) -> Result<Vec<i64>> {
        let rows = sqlx::query(
            "SELECT l.id FROM webhook_listeners l JOIN behaviors b ON b.id = l.behavior_id \
             WHERE b.bot_id = $1 ORDER BY l.id",
        )
        .bind(bot_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(|r| r.get("id")).collect())
    }

    /// The behaviors of `bot_id`.
    pub async fn bot_behavior_ids(&self, bot_id: i64) -> Result<Vec<i64>> {
        let rows = sqlx::query("SELECT id FROM behaviors WHERE bot_id = $1 ORDER BY id")
            .bind(bot_id)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(|r| r.get("id")).collect())
    }

    // ---- inbound messages ---------------------------------------------------------------------

    /// A page of logged inbound messages, newest first (up to `limit + 1` rows).
    pub async fn view_messages(&self, f: &MessageFilter) -> Result<Vec<MessageRow>> {
        let mut q = QueryBuilder::<Postgres>::new(MESSAGE_SELECT);
        q.push(" WHERE TRUE");
        if let Some(ids) = &f.listener_ids {
            q.push(" AND m.listener_id = ANY(")
                .push_bind(ids.clone())
                .push(")");
        }
        f.window.push(&mut q, "m.received_at");
        match f.answered {
            Some(true) => q.push(" AND m.response IS NOT NULL"),
            Some(false) => q.push(" AND m.response IS NULL"),
            None => &mut q,
        };
        if let Some(number) = &f.number {
            // `params` is a list of [name, value] pairs: containment finds the pair.
            q.push(" AND (m.request->'params' @> jsonb_build_array(jsonb_build_array('From'::text, ")
                .push_bind(number.clone())
                .push(
                    "::text)) OR m.request->'params' @> jsonb_build_array(jsonb_build_array('To'::text, ",
                )
                .push_bind(number.clone())
                .push("::text)))");
        }
        if let Some(before) = &f.before {
            match &before.key {
                Some(sid) => q
                    .push(" AND (m.received_at, m.message_sid) < (")
                    .push_bind(before.at)
                    .push(", ")
                    .push_bind(sid.clone())
                    .push(")"),
                None => q.push(" AND m.received_at < ").push_bind(before.at),
            };
        }
        q.push(" ORDER BY m.received_at DESC, m.message_sid DESC LIMIT ")
            .push_bind(page_limit(f.limit));
        let rows = q.build().fetch_all(self.pool()).await?;
        Ok(rows.iter().map(MessageRow::from_row).collect())
    }

    /// One logged inbound message by its `MessageSid`.
    pub async fn view_message(&self, message_sid: &str) -> Result<Option<MessageRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{MESSAGE_SELECT} WHERE m.message_sid = $1"
        )))
        .bind(message_sid)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(MessageRow::from_row))
    }

    // ---- behavior runs ------------------------------------------------------------------------

    /// A page of behavior runs, newest first (up to `limit + 1` rows), without their traces.
    pub async fn view_runs(&self, f: &RunFilter) -> Result<Vec<RunRow>> {
        let before = match f.before_id {
            Some(id) => Some(
                sqlx::query("SELECT created_at FROM behavior_runs WHERE id = $1")
                    .bind(id)
                    .fetch_optional(self.pool())
                    .await?
                    .map(|r| r.get::<OffsetDateTime, _>("created_at"))
                    .map(|at| (at, id))
                    .ok_or_else(|| StoreError::NotFound(format!("run {id}")))?,
            ),
            None => None,
        };
        let mut q = QueryBuilder::<Postgres>::new(format!("SELECT {RUN_COLUMNS}{RUN_JOINS}"));
        q.push(" WHERE TRUE");
        if let Some(ids) = &f.behavior_ids {
            q.push(" AND r.behavior_id = ANY(")
                .push_bind(ids.clone())
                .push(")");
        }
        if let Some(id) = f.listener_id {
            q.push(" AND r.listener_id = ").push_bind(id);
        }
        f.window.push(&mut q, "r.created_at");
        if let Some(state) = &f.exit_state {
            q.push(" AND r.exit_state = ").push_bind(state.clone());
        }
        match f.with_errors {
            Some(true) => q.push(" AND r.errors <> '[]'::jsonb"),
            Some(false) => q.push(" AND r.errors = '[]'::jsonb"),
            None => &mut q,
        };
        if let Some((at, id)) = before {
            q.push(" AND (r.created_at, r.id) < (")
                .push_bind(at)
                .push(", ")
                .push_bind(id)
                .push(")");
        }
        q.push(" ORDER BY r.created_at DESC, r.id DESC LIMIT ")
            .push_bind(page_limit(f.limit));
        let rows = q.build().fetch_all(self.pool()).await?;
        Ok(rows.iter().map(|r| RunRow::from_row(r, false)).collect())
    }

    /// One run with its trace. The trace column may be stored compressed (lz4, migration
    /// `20261126000005_run_trace_lz4.sql`); PostgreSQL decompresses it on read.
    pub async fn view_run(&self, id: i64) -> Result<Option<RunRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS}, r.trace{RUN_JOINS} WHERE r.id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(|r| RunRow::from_row(r, true)))
    }

    /// The run that answered a message, if any.
    pub async fn run_of_message(&self, message_sid: &str) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT run_id FROM inbound_messages WHERE message_sid = $1 AND run_id IS NOT NULL",
        )
        .bind(message_sid)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| r.get("run_id")))
    }

    // ---- outbound jobs ------------------------------------------------------------------------

    /// A page of outbound jobs, newest first (up to `limit + 1` rows).
    pub async fn view_jobs(&self, f: &JobFilter) -> Result<Vec<JobRow>> {
        let mut q = QueryBuilder::<Postgres>::new(JOB_SELECT);
        q.push(" WHERE TRUE");
        if let Some(state) = &f.state {
            q.push(" AND j.state = ").push_bind(state.clone());
        }
        if let Some(to) = &f.recipient {
            q.push(" AND j.recipient = ").push_bind(to.clone());
        }
        if let Some(id) = f.account_id {
            q.push(" AND j.account_id = ").push_bind(id);
        }
        f.window.push(&mut q, "j.created_at");
        if let Some(before) = &f.before {
            match &before.key {
                Some(key) => q
                    .push(" AND (j.created_at, j.idempotency_key) < (")
                    .push_bind(before.at)
                    .push(", ")
                    .push_bind(key.clone())
                    .push(")"),
                None => q.push(" AND j.created_at < ").push_bind(before.at),
            };
        }
        q.push(" ORDER BY j.created_at DESC, j.idempotency_key DESC LIMIT ")
            .push_bind(page_limit(f.limit));
        let rows = q.build().fetch_all(self.pool()).await?;
        Ok(rows.iter().map(JobRow::from_row).collect())
    }

    /// One outbound job by its idempotency key, else by its job id (when exactly one job has
    /// it).
    pub async fn view_job(&self, key_or_job_id: &str) -> Result<Option<JobRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{JOB_SELECT} WHERE j.idempotency_key = $1"
        )))
        .bind(key_or_job_id)
        .fetch_optional(self.pool())
        .await?;
        if let Some(row) = row {
            return Ok(Some(JobRow::from_row(&row)));
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{JOB_SELECT} WHERE j.job_id = $1 ORDER BY j.created_at DESC LIMIT 2"
        )))
        .bind(key_or_job_id)
        .fetch_all(self.pool())
        .await?;
        match rows.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(JobRow::from_row(one))),
            _ => Err(StoreError::Invalid(format!(
                "several jobs have job id '{key_or_job_id}'; give the idempotency key (see `switchboard jobs list`)"
            ))),
        }
    }

    // ---- suppressions -------------------------------------------------------------------------

    /// A page of suppressed numbers, newest first (up to `limit + 1` rows).
    pub async fn view_suppressions(&self, f: &SuppressionFilter) -> Result<Vec<SuppressionRow>> {
        let mut q = QueryBuilder::<Postgres>::new(SUPPRESSION_SELECT);
        q.push(" WHERE TRUE");
        if let Some(id) = f.account_id {
            q.push(" AND s.account_id = ").push_bind(id);
        }
        if let Some(number) = &f.number {
            q.push(" AND s.number = ").push_bind(number.clone());
        }
        if let Some(reason) = &f.reason {
            q.push(" AND s.reason = ").push_bind(reason.clone());
        }
        f.window.push(&mut q, "s.created_at");
        if let Some(before) = &f.before {
            match before.key.as_deref().and_then(|k| k.split_once(':')) {
                Some((account, number)) => {
                    let account: i64 = account.parse().map_err(|_| {
                        StoreError::Invalid(format!(
                            "suppression cursor key '{}' is not ACCOUNT:NUMBER",
                            before.key.as_deref().unwrap_or_default()
                        ))
                    })?;
                    q.push(" AND (s.created_at, s.account_id, s.number) < (")
                        .push_bind(before.at)
                        .push(", ")
                        .push_bind(account)
                        .push(", ")
                        .push_bind(number.to_owned())
                        .push(")")
                }
                None => q.push(" AND s.created_at < ").push_bind(before.at),
            };
        }
        q.push(" ORDER BY s.created_at DESC, s.account_id DESC, s.number DESC LIMIT ")
            .push_bind(page_limit(f.limit));
        let rows = q.build().fetch_all(self.pool()).await?;
        Ok(rows.iter().map(SuppressionRow::from_row).collect())
    }

    /// Suppresses `number` for the account on an operator's word (reason `operator`, `detail`
    /// the reason given). A number already suppressed keeps its row (its first reason and time):
    /// answers that row and whether this call added it. Durable ([`Store::durable`]).
    pub async fn operator_suppress(
        &self,
        account_id: i64,
        number: &str,
        detail: &str,
    ) -> Result<(SuppressionRow, bool)> {
        let mut tx = self.durable().await?;
        let added = sqlx::query(
            "INSERT INTO sms_suppressions (account_id, number, reason, detail) \
             VALUES ($1, $2, 'operator', $3) ON CONFLICT (account_id, number) DO NOTHING",
        )
        .bind(account_id)
        .bind(number)
        .bind(detail)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SUPPRESSION_SELECT} WHERE s.account_id = $1 AND s.number = $2"
        )))
        .bind(account_id)
        .bind(number)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| {
            StoreError::NotFound(format!("suppression of {number} for account {account_id}"))
        })?;
        tx.commit().await?;
        Ok((SuppressionRow::from_row(&row), added))
    }

    /// Lifts the suppression of `number` for the account, whatever its reason; answers the row
    /// removed, if there was one. Durable ([`Store::durable`]).
    pub async fn operator_unsuppress(
        &self,
        account_id: i64,
        number: &str,
    ) -> Result<Option<SuppressionRow>> {
        let mut tx = self.durable().await?;
        let row = sqlx::query(
            "WITH gone AS (DELETE FROM sms_suppressions WHERE account_id = $1 AND number = $2 \
                           RETURNING account_id, number, reason, detail, created_at) \
             SELECT g.account_id, a.name AS account_name, g.number, g.reason, g.detail, \
                    g.created_at \
             FROM gone g JOIN connected_accounts a ON a.id = g.account_id",
        )
        .bind(account_id)
        .bind(number)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row.as_ref().map(SuppressionRow::from_row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_ask_for_one_more_row_within_the_bounds() {
        assert_eq!(page_limit(50), 51);
        assert_eq!(page_limit(0), 2);
        assert_eq!(page_limit(5000), MAX_LIMIT + 1);
    }

    #[test]
    fn a_message_knows_its_form_parameters() {
        let row = MessageRow {
            message_sid: "SM1".into(),
            listener_id: 1,
            listener_name: None,
            account_sid: None,
            request_id: None,
            request: serde_json::json!({"params": [["To", "+2"], ["From", "+1"], ["From", "+3"]]}),
            response: None,
            run_id: None,
            received_at: OffsetDateTime::UNIX_EPOCH,
            completed_at: None,
            behavior_id: None,
            behavior_title: None,
            bot_id: None,
            bot_name: None,
        };
        assert_eq!(row.param("From"), Some("+1"));
        assert_eq!(row.param("To"), Some("+2"));
        assert_eq!(row.param("Body"), None);
    }
}
