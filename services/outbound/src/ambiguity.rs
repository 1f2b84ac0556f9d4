//! The ambiguity check. After a create that may have created the message (a timeout, a 5xx, a
//! dropped connection, a process that died mid-request), [`find_existing`] lists the
//! recipient's messages at Twilio and looks for the job's own before anything is sent again.
//! Twilio's list is not read-after-write consistent: "no such message" is believed only from a
//! list read from [`list_trusted_from`] on,
//! [`list_settle`](crate::OutboundConfig::list_settle) after that create ended.

use std::time::Duration;

use switchboard_store::outbound::OutboundJob;
use switchboard_twilio::E164;
use switchboard_twilio::client::{Credentials, ListFilter, Message, TwilioClient};
use switchboard_wire::outbound::SendSmsJob;
use time::OffsetDateTime;

use crate::Ctx;

/// How far Twilio's clock may be behind ours: the ambiguity check lists messages created since
/// the first attempt less this.
const CLOCK_SKEW: Duration = Duration::from_secs(120);

/// From when a list of the recipient's messages can be trusted to show what the row's last
/// create made: `settle` after that create ended. A create ends at the latest when its failure
/// was recorded (the row's `updated_at`), or, for a process that died during it, when its lease
/// ran out (the create's request is bounded by the request timeout, shorter than the lease).
/// Later writes only move `updated_at` on, which errs on the side of waiting. Database clock.
pub(crate) fn list_trusted_from(row: &OutboundJob, settle: Duration) -> OffsetDateTime {
    let ended = match row.lease_until {
        Some(until) if until > row.updated_at => until,
        _ => row.updated_at,
    };
    ended + settle
}

/// What the ambiguity check found at Twilio.
pub(crate) enum Found {
    /// The message the earlier create made.
    Yes(Box<Message>),
    /// Twilio has no such message: the earlier create made nothing.
    No,
    /// The check could not tell.
    Unknown(String),
}

/// Lists the recipient's messages created since the job's first attempt and picks one that is
/// this job's (same recipient, sender and body, not owned by another job).
pub(crate) async fn find_existing(
    ctx: &Ctx,
    account_id: i64,
    creds: &Credentials,
    job: &SendSmsJob,
    row: &OutboundJob,
) -> Found {
    let Ok(to) = E164::parse(&job.to) else {
        return Found::Unknown("the job's to is not E.164".into());
    };
    let since = row.first_attempt_at.unwrap_or(row.created_at) - CLOCK_SKEW;
    let filter = ListFilter {
        to: Some(to),
        from: job.from.clone(),
        created_after: Some(since),
        ..Default::default()
    };
    let permit = ctx.limits.account_permit(account_id).await;
    let list = list_messages(&ctx.twilio, creds, filter).await;
    drop(permit);
    let list = match list {
        Ok(list) => list,
        Err(e) => return Found::Unknown(e),
    };
    let candidates: Vec<&Message> = list
        .messages
        .iter()
        .filter(|m| is_this_job(job, m))
        .collect();
    let sids: Vec<String> = candidates.iter().map(|m| m.sid.to_string()).collect();
    let taken = if sids.is_empty() {
        Vec::new()
    } else {
        match ctx
            .store
            .outbound_sids_taken(&sids, &job.idempotency_key)
            .await
        {
            Ok(taken) => taken,
            Err(e) => return Found::Unknown(e.to_string()),
        }
    };
    // Newest first: the last free match is the earliest, the one the first create made.
    match candidates
        .into_iter()
        .rev()
        .find(|m| !taken.iter().any(|t| t == m.sid.as_str()))
    {
        Some(found) => Found::Yes(Box::new(found.clone())),
        None if list.complete => Found::No,
        None => Found::Unknown("more messages to this recipient than one check reads".into()),
    }
}

/// [`TwilioClient::list_messages`] on a blocking thread of the runtime: its future is not
/// `Send` (it holds a `form_urlencoded::Serializer` across awaits), so it cannot run inside a
/// spawned job task directly. It still uses the runtime's IO through `Handle::block_on`.
async fn list_messages(
    twilio: &TwilioClient,
    creds: &Credentials,
    filter: ListFilter,
) -> Result<switchboard_twilio::client::MessageList, String> {
    let (twilio, creds) = (twilio.clone(), creds.clone());
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        runtime.block_on(async move { twilio.list_messages(&creds, &filter).await })
    })
    .await
    .map_err(|e| format!("list task failed: {e}"))?
    .map_err(|e| e.to_string())
}

/// Whether a listed message is what this job would have created.
fn is_this_job(job: &SendSmsJob, m: &Message) -> bool {
    let outbound = m
        .direction
        .as_deref()
        .is_none_or(|d| d.starts_with("outbound"));
    let to = m.to.as_deref() == Some(job.to.as_str());
    let sender = match (&job.from, &job.messaging_service_sid) {
        (Some(from), _) => m.from.as_deref() == Some(from.as_str()),
        (None, Some(sid)) => m.messaging_service_sid.as_deref() == Some(sid.as_str()),
        (None, None) => false,
    };
    let body = match (&job.body, &m.body) {
        (Some(want), Some(got)) => want == got,
        _ => true,
    };
    outbound && to && sender && body
}

#[cfg(test)]
mod tests {
    use switchboard_store::outbound::JobState;

    use super::*;
    use crate::job::SMS_SEND;
    use crate::job::tests::job;
    use crate::{DEFAULT_LIST_SETTLE, OutboundConfig};

    fn message(json: serde_json::Value) -> Message {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_listed_message_matches_on_recipient_sender_and_body() {
        let j = job(Some("+15005550006"), None, Some("hello"));
        let base = serde_json::json!({
            "sid": "SM0123456789abcdef0123456789abcdef", "to": "+14155551234",
            "from": "+15005550006", "body": "hello", "direction": "outbound-api",
        });
        assert!(is_this_job(&j, &message(base.clone())));
        for (field, value) in [
            ("to", "+14155559999"),
            ("from", "+15005550007"),
            ("body", "hello!"),
            ("direction", "inbound"),
        ] {
            let mut other = base.clone();
            other[field] = value.into();
            assert!(!is_this_job(&j, &message(other)), "{field}");
        }
        let mss = "MG0123456789abcdef0123456789abcdef";
        let j = job(None, Some(mss), Some("hello"));
        let mut via_service = base.clone();
        via_service["from"] = "+15550001111".into();
        via_service["messaging_service_sid"] = mss.into();
        assert!(is_this_job(&j, &message(via_service)));
        assert!(!is_this_job(&j, &message(base)));
    }

    #[test]
    fn an_empty_list_is_trusted_only_once_the_create_has_settled() {
        let at = |s: i64| OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(s);
        let row = OutboundJob {
            idempotency_key: "k".into(),
            job_id: "j".into(),
            job_type: SMS_SEND.into(),
            state: JobState::Sending,
            attempts: 1,
            lease_until: None,
            twilio_sid: None,
            twilio_status: None,
            last_error_code: Some("timeout".into()),
            last_error_message: None,
            accepted_published: true,
            final_published: false,
            created_at: at(0),
            first_attempt_at: Some(at(0)),
            updated_at: at(10),
            finished_at: None,
            account_id: Some(1),
            recipient: Some("+14155551234".into()),
            now: at(11),
        };
        let settle = Duration::from_secs(30);
        // A recorded ambiguous failure: from its record on.
        assert_eq!(list_trusted_from(&row, settle), at(40));
        // A process that died mid-create: from the end of its lease.
        let crashed = OutboundJob {
            lease_until: Some(at(70)),
            ..row.clone()
        };
        assert_eq!(list_trusted_from(&crashed, settle), at(100));
        assert_eq!(
            list_trusted_from(&row, Duration::ZERO),
            at(10),
            "no settle: trusted at once"
        );
        assert_eq!(OutboundConfig::new("x").list_settle, DEFAULT_LIST_SETTLE);
    }
}
