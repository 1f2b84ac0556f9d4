//! Delivery status of outbound messages (migration `20261125000004_status.sql`): Twilio's status
//! callbacks move a job's `delivery_status` forward, never back. Callbacks are not ordered
//! (docs/twilio.md §1.4: a `sent` can arrive after `delivered`), so each status has a rank and an
//! update applies only when it ranks above what the row holds; the comparison is one `UPDATE`, so
//! two callbacks handled at once cannot both win.

use sqlx::Row;

use crate::{Result, Store};

/// Twilio's message statuses in the order a message goes through them (`message_enum_status`).
/// Terminal statuses share a rank, so none replaces another; `read` (WhatsApp) follows
/// `delivered`. Statuses not listed (inbound ones, names Twilio adds later) rank 0 and never
/// apply.
pub const STATUS_RANKS: &[(&str, i32)] = &[
    ("scheduled", 1),
    ("accepted", 1),
    ("queued", 2),
    ("sending", 3),
    ("sent", 4),
    ("partially_delivered", 5),
    ("delivered", 6),
    ("undelivered", 6),
    ("failed", 6),
    ("canceled", 6),
    ("read", 7),
];

/// The rank of a status (0 for one this table does not know).
pub fn status_rank(status: &str) -> i32 {
    STATUS_RANKS
        .iter()
        .find(|(name, _)| *name == status)
        .map_or(0, |(_, rank)| *rank)
}

/// True for the statuses no callback moves a message out of (`read` aside).
pub fn is_terminal(status: &str) -> bool {
    status_rank(status) >= 6
}

/// The SQL expression ranking the row's current status, from [`STATUS_RANKS`].
fn current_rank_sql() -> String {
    let arms: String = STATUS_RANKS
        .iter()
        .map(|(name, rank)| format!(" WHEN '{name}' THEN {rank}"))
        .collect();
    format!("(CASE coalesce(delivery_status, twilio_status, ''){arms} ELSE 0 END)")
}

/// One status callback's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate<'a> {
    pub message_sid: &'a str,
    /// `MessageStatus`.
    pub status: &'a str,
    /// `ErrorCode`, on `failed` and `undelivered`.
    pub error_code: Option<&'a str>,
    /// `ErrorMessage`, when Twilio sends one.
    pub error_message: Option<&'a str>,
}

/// The job a status callback was about, after the update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRecord {
    pub idempotency_key: String,
    pub job_id: String,
    /// Creates made for the job.
    pub attempts: u32,
    /// The status the row holds now (the callback's when it applied).
    pub status: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// Whether this callback moved the status.
    pub applied: bool,
}

impl StatusRecord {
    fn from_row(r: &sqlx::postgres::PgRow, applied: bool) -> StatusRecord {
        let attempts: i32 = r.get("attempts");
        StatusRecord {
            idempotency_key: r.get("idempotency_key"),
            job_id: r.get("job_id"),
            attempts: u32::try_from(attempts).unwrap_or(0),
            status: r.get("status"),
            error_code: r.get("delivery_error_code"),
            error_message: r.get("delivery_error_message"),
            applied,
        }
    }
}

const RETURNED: &str = "idempotency_key, job_id, attempts, \
    coalesce(delivery_status, twilio_status) AS status, delivery_error_code, delivery_error_message";

impl Store {
    /// Records a delivery status of the outbound job whose message is `update.message_sid`, if
    /// it ranks above the job's current status. `None` when no job has that message (not sent
    /// by the outbound service, or its SID is not recorded yet). Durable ([`Store::durable`]):
    /// Twilio calls back once per status, so a status lost in a crash would not come again.
    ///
    /// Only a job of `account_id` (the connected account whose token signed the callback) is
    /// updated or read: an account's callbacks never touch another account's messages.
    pub async fn outbound_record_status(
        &self,
        update: &StatusUpdate<'_>,
        account_id: i64,
    ) -> Result<Option<StatusRecord>> {
        let rank = status_rank(update.status);
        let mut tx = self.durable().await?;
        let applied = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE outbound_jobs SET delivery_status = $2, delivery_error_code = $3, \
               delivery_error_message = $4, delivery_updated_at = now(), updated_at = now() \
             WHERE twilio_sid = $1 AND account_id = $6 AND $5 > {} RETURNING {RETURNED}",
            current_rank_sql()
        )))
        .bind(update.message_sid)
        .bind(update.status)
        .bind(update.error_code)
        .bind(update.error_message)
        .bind(rank)
        .bind(account_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = applied {
            tx.commit().await?;
            return Ok(Some(StatusRecord::from_row(&row, true)));
        }
        let current = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RETURNED} FROM outbound_jobs WHERE twilio_sid = $1 AND account_id = $2"
        )))
        .bind(update.message_sid)
        .bind(account_id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(current.map(|row| StatusRecord::from_row(&row, false)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_rank_in_delivery_order() {
        let order = ["accepted", "queued", "sending", "sent", "delivered", "read"];
        for pair in order.windows(2) {
            assert!(status_rank(pair[0]) < status_rank(pair[1]), "{pair:?}");
        }
        for terminal in ["delivered", "undelivered", "failed", "canceled", "read"] {
            assert!(is_terminal(terminal), "{terminal}");
            assert!(status_rank("sent") < status_rank(terminal));
        }
        assert!(!is_terminal("sent"));
        assert_eq!(status_rank("received"), 0);
        assert_eq!(status_rank("something_new"), 0);
        assert!(current_rank_sql().contains("WHEN 'delivered' THEN 6"));
    }
}
