//! Outbound limits shared by every outbound replica (migration `20261125000003_limits.sql`):
//! the per-sender send schedule (virtual scheduling / GCRA on the database clock, so two
//! replicas share one schedule), the reservations that let a redelivered job keep its slot,
//! the pauses Twilio's throttling answers cause, and the per-account suppression list.

use std::time::Duration;

use sqlx::Row;
use time::OffsetDateTime;

use crate::{Result, Store, StoreError};

/// A send slot: when the job's create may start, and the database clock when it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub at: OffsetDateTime,
    pub now: OffsetDateTime,
    /// True when an earlier delivery of the same job reserved it.
    pub reused: bool,
}

impl Slot {
    /// How long to wait (by the database clock) until the slot.
    pub fn wait(&self) -> Duration {
        Duration::try_from(self.at - self.now).unwrap_or(Duration::ZERO)
    }
}

/// What a job asks of the schedule.
#[derive(Debug, Clone, Copy)]
pub struct SlotRequest<'a> {
    /// The job (a redelivery finds its reservation by it).
    pub idempotency_key: &'a str,
    /// The create attempt the slot is for (`outbound_jobs.attempts + 1`).
    pub attempt: u32,
    pub account_id: i64,
    /// The `from` or the Messaging Service SID.
    pub sender: &'a str,
    pub segments: u32,
    /// `segments / rate`: how much of the sender's time the message takes.
    pub cost: Duration,
    /// A reservation whose slot passed longer ago than this is not reused: the sender's time
    /// went by unused and later jobs hold the time after it, so sending in it now would exceed
    /// the rate.
    pub stale_after: Duration,
}

/// The sender's state when a job's slot came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderState {
    /// Twilio throttled the sender: nothing may start before this.
    pub paused_until: Option<OffsetDateTime>,
    pub now: OffsetDateTime,
}

impl SenderState {
    /// How long the pause still lasts, if one does.
    pub fn paused_for(&self) -> Option<Duration> {
        self.paused_until
            .filter(|until| *until > self.now)
            .map(|until| Duration::try_from(until - self.now).unwrap_or(Duration::ZERO))
    }
}

/// Why a number is suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuppressionReason {
    /// The recipient texted an opt-out keyword.
    Keyword,
    /// Twilio refused a send with 21610.
    Twilio21610,
    /// An operator added it (`switchboard suppressions add`); `detail` is the reason given.
    Operator,
}

impl SuppressionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionReason::Keyword => "keyword",
            SuppressionReason::Twilio21610 => "twilio_21610",
            SuppressionReason::Operator => "operator",
        }
    }

    fn parse(s: &str) -> Result<SuppressionReason> {
        match s {
            "keyword" => Ok(SuppressionReason::Keyword),
            "twilio_21610" => Ok(SuppressionReason::Twilio21610),
            "operator" => Ok(SuppressionReason::Operator),
            other => Err(StoreError::Corrupt(format!("suppression reason '{other}'"))),
        }
    }
}

/// One `sms_suppressions` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    pub account_id: i64,
    pub number: String,
    pub reason: SuppressionReason,
    /// The keyword as received, Twilio's error message, or the operator's reason.
    pub detail: String,
    pub created_at: OffsetDateTime,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl Store {
    /// The job's slot for its next create: the one an earlier delivery reserved for the same
    /// attempt if it has not gone stale, else a new one from the sender's schedule (from
    /// max(next free time, now, pause end), moving the next free time on by the cost).
    /// Deliveries of one job are serialized by a transaction-scoped advisory lock on its key,
    /// so a job never holds two slots.
    pub async fn rate_reserve(&self, request: &SlotRequest<'_>) -> Result<Slot> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))")
            .bind(request.idempotency_key)
            .execute(&mut *tx)
            .await?;
        let attempt = i32::try_from(request.attempt).unwrap_or(i32::MAX);
        let existing = sqlx::query(
            "SELECT slot_at, statement_timestamp() AS db_now FROM outbound_rate_reservations \
             WHERE idempotency_key = $1 AND attempt = $2 AND account_id = $3 AND sender = $4 \
               AND slot_at > statement_timestamp() - make_interval(secs => $5::double precision / 1e6)",
        )
        .bind(request.idempotency_key)
        .bind(attempt)
        .bind(request.account_id)
        .bind(request.sender)
        .bind(micros(request.stale_after))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            tx.commit().await?;
            return Ok(Slot {
                at: row.get("slot_at"),
                now: row.get("db_now"),
                reused: true,
            });
        }
        let row = sqlx::query(
            "INSERT INTO outbound_sender_schedule AS s (account_id, sender, next_free) \
               VALUES ($1, $2, statement_timestamp() + make_interval(secs => $3::double precision / 1e6)) \
             ON CONFLICT (account_id, sender) DO UPDATE SET \
               next_free = greatest(s.next_free, statement_timestamp(), s.paused_until) \
                 + make_interval(secs => $3::double precision / 1e6), \
               updated_at = statement_timestamp() \
             RETURNING next_free - make_interval(secs => $3::double precision / 1e6) AS slot_at, \
               statement_timestamp() AS db_now",
        )
        .bind(request.account_id)
        .bind(request.sender)
        .bind(micros(request.cost))
        .fetch_one(&mut *tx)
        .await?;
        let slot = Slot {
            at: row.get("slot_at"),
            now: row.get("db_now"),
            reused: false,
        };
        sqlx::query(
            "INSERT INTO outbound_rate_reservations \
               (idempotency_key, attempt, account_id, sender, segments, slot_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (idempotency_key) DO UPDATE SET attempt = $2, account_id = $3, \
               sender = $4, segments = $5, slot_at = $6, created_at = now()",
        )
        .bind(request.idempotency_key)
        .bind(attempt)
        .bind(request.account_id)
        .bind(request.sender)
        .bind(i32::try_from(request.segments).unwrap_or(i32::MAX))
        .bind(slot.at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(slot)
    }

    /// At the slot: gives the job's reservation up (its create starts now, or it waits out a
    /// pause and reserves again) and answers whether the sender is paused. Also sweeps
    /// reservations of jobs that never came back (older than an hour).
    pub async fn rate_take_slot(
        &self,
        idempotency_key: &str,
        account_id: i64,
        sender: &str,
    ) -> Result<SenderState> {
        let row = sqlx::query(
            "WITH gone AS (DELETE FROM outbound_rate_reservations \
               WHERE idempotency_key = $1 OR slot_at < now() - interval '1 hour') \
             SELECT (SELECT paused_until FROM outbound_sender_schedule \
                      WHERE account_id = $2 AND sender = $3) AS paused_until, \
                    statement_timestamp() AS db_now",
        )
        .bind(idempotency_key)
        .bind(account_id)
        .bind(sender)
        .fetch_one(&self.pool)
        .await?;
        Ok(SenderState {
            paused_until: row.get("paused_until"),
            now: row.get("db_now"),
        })
    }

    /// Twilio throttled the sender: nothing starts before now + `pause` (a longer pause already
    /// set stays). Answers the pause's end.
    pub async fn rate_pause(
        &self,
        account_id: i64,
        sender: &str,
        pause: Duration,
    ) -> Result<OffsetDateTime> {
        let row = sqlx::query(
            "INSERT INTO outbound_sender_schedule AS s (account_id, sender, next_free, paused_until) \
               VALUES ($1, $2, statement_timestamp(), \
                       statement_timestamp() + make_interval(secs => $3::double precision / 1e6)) \
             ON CONFLICT (account_id, sender) DO UPDATE SET \
               paused_until = greatest(s.paused_until, \
                 statement_timestamp() + make_interval(secs => $3::double precision / 1e6)), \
               updated_at = statement_timestamp() \
             RETURNING paused_until",
        )
        .bind(account_id)
        .bind(sender)
        .bind(micros(pause))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.get("paused_until"))
    }

    /// Suppresses `number` for the account (a row already there keeps its first reason and
    /// time). Answers whether the number was newly suppressed. Durable ([`Store::durable`]): a
    /// STOP once recorded survives a crash of the database server.
    pub async fn suppress(
        &self,
        account_id: i64,
        number: &str,
        reason: SuppressionReason,
        detail: &str,
    ) -> Result<bool> {
        let mut tx = self.durable().await?;
        let done = sqlx::query(
            "INSERT INTO sms_suppressions (account_id, number, reason, detail) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, number) DO NOTHING",
        )
        .bind(account_id)
        .bind(number)
        .bind(reason.as_str())
        .bind(detail)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Lifts a suppression (an opt-in keyword). Answers whether there was one. Durable
    /// ([`Store::durable`]), like [`Store::suppress`].
    pub async fn unsuppress(&self, account_id: i64, number: &str) -> Result<bool> {
        let mut tx = self.durable().await?;
        let done =
            sqlx::query("DELETE FROM sms_suppressions WHERE account_id = $1 AND number = $2")
                .bind(account_id)
                .bind(number)
                .execute(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// The suppression of `number` for the account, if any.
    pub async fn suppression(&self, account_id: i64, number: &str) -> Result<Option<Suppression>> {
        let row = sqlx::query(
            "SELECT account_id, number, reason, detail, created_at FROM sms_suppressions \
             WHERE account_id = $1 AND number = $2",
        )
        .bind(account_id)
        .bind(number)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Suppression {
                account_id: r.get("account_id"),
                number: r.get("number"),
                reason: SuppressionReason::parse(r.get("reason"))?,
                detail: r.get("detail"),
                created_at: r.get("created_at"),
            })
        })
        .transpose()
    }
}
