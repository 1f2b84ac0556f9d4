//! The one-job path. [`handle`] works on one delivery (a send-SMS job here, a lookup in
//! `lookup.rs`) with progress acks and answers JetStream. [`process`] takes a send-SMS job from
//! its delivery to its disposition: decode, account, the job's row (keyed by its idempotency
//! key), the accepted event, the ambiguity check after a create that may have created the
//! message (`ambiguity.rs`), the attempts and age, suppression and rate limits, the claim of the
//! attempt (a compare-and-set on the row), the create, and [`after_failure`]'s classification of
//! a failed one. Every send job the group path (`group.rs`) does not take comes here.

use std::time::Duration;

use async_nats::jetstream;
use switchboard_store::StoreError;
use switchboard_store::limits::{Suppression, SuppressionReason};
use switchboard_store::outbound::{JobFailure, JobState, Published};
use switchboard_twilio::client::{CreateMessage, Message, Sender, TwilioError};
use switchboard_twilio::{E164, MessagingServiceSid};
use switchboard_wire::outbound::{
    AccountRef, EventKind, HEADER_MSG_ID, HEADER_REPLY_TO, JobType, SendSmsJob, check_job_reply_to,
    codes, decode_send_sms,
};
use time::OffsetDateTime;
use tracing::Instrument as _;

use crate::accounts::{credentials, is_wrong_master_key};
use crate::ambiguity::{Found, find_existing, list_trusted_from};
use crate::consume::{answer, header, jittered, with_progress};
use crate::events::{
    dead_letter, event, finish, now_rfc3339, publish_event, record_final, reload_and_finish,
};
use crate::{Ctx, Disposition, limits, lookup};

/// The job type name in `outbound_jobs.job_type`.
pub(crate) const SMS_SEND: &str = "sms.send";

/// Works on one delivery of a `job`, with progress acks while it takes long, and answers
/// JetStream.
pub(crate) async fn handle(ctx: &Ctx, message: jetstream::Message, job: JobType) {
    let (seq, delivered) = message
        .info()
        .map(|i| (i.stream_sequence, i.delivered))
        .unwrap_or((0, 0));
    let span = tracing::info_span!(
        "outbound.job",
        otel.kind = "consumer",
        job_id = tracing::field::Empty,
        seq,
        delivered
    );
    switchboard_telemetry::set_parent_from_nats(&span, message.headers.as_ref());
    async {
        let outcome = with_progress(ctx, std::slice::from_ref(&message), async {
            match job {
                JobType::SmsSend => process(ctx, &message).await,
                JobType::Lookup => lookup::process(ctx, &message).await,
            }
        })
        .await;
        answer(ctx, &message, outcome).await;
    }
    .instrument(span)
    .await
}

/// The status Twilio gave a created message, if any.
pub(crate) fn message_status(created: &Message) -> Option<&str> {
    created.raw.get("status").and_then(|s| s.as_str())
}

/// The job's path from delivery to disposition.
async fn process(ctx: &Ctx, message: &jetstream::Message) -> anyhow::Result<Disposition> {
    let info = message
        .info()
        .map_err(|e| anyhow::anyhow!("not a JetStream delivery: {e}"))?;
    let seq = info.stream_sequence;
    let published = info.published;
    let msg_id = header(message, HEADER_MSG_ID);
    tracing::debug!(seq, delivered = info.delivered, msg_id, "job delivered");

    let decoded = check_job_reply_to(
        decode_send_sms(&message.payload, msg_id),
        JobType::SmsSend,
        &message.payload,
        msg_id,
        header(message, HEADER_REPLY_TO),
        &ctx.config.reply_to_prefixes,
    );
    let job = match decoded {
        Ok(job) => job,
        Err(rejected) => {
            let event = rejected.to_event(&format!("seq:{seq}"), &now_rfc3339());
            tracing::Span::current().record("job_id", event.job_id.as_str());
            tracing::warn!(error = %rejected, "job rejected");
            let error = &rejected.error;
            publish_event(ctx, message, &event, &format!("{}:failed", event.job_id)).await?;
            dead_letter(ctx, message, &error.code, &error.message, 0).await?;
            return Ok(Disposition::Ack);
        }
    };
    tracing::Span::current().record("job_id", job.id());
    let key = job.idempotency_key.as_str();

    // The account first, so the row records whom the job is for (`jobs list --account`).
    let account = credentials(ctx, &job.account).await;
    let known_account = match &account {
        Ok(Some((id, _))) => Some(*id),
        Ok(None) => None,
        Err(e) => match e.downcast_ref::<StoreError>() {
            Some(StoreError::WrongMasterKey { account_id, .. }) => Some(*account_id),
            _ => None,
        },
    };
    let (row, _new) = ctx
        .store
        .outbound_job_upsert(key, job.id(), SMS_SEND, known_account, Some(&job.to))
        .await?;
    if row.state.is_final() {
        if !row.final_published {
            finish(ctx, message, &job, &row).await?;
        } else {
            tracing::info!(
                state = row.state.as_str(),
                "job already done; acknowledged without sending"
            );
        }
        return Ok(Disposition::Ack);
    }
    if !row.accepted_published {
        let event = event(&job, EventKind::Accepted, 0);
        publish_event(ctx, message, &event, &format!("{key}:accepted")).await?;
        ctx.store
            .outbound_mark_published(key, Published::Accepted)
            .await?;
    }
    if row.is_leased() {
        // Another delivery of this key has a create in flight; look again when it is over.
        let left = row.lease_until.map_or(Duration::ZERO, |until| {
            Duration::try_from(until - row.now).unwrap_or(Duration::ZERO)
        });
        return Ok(Disposition::Retry(left + Duration::from_millis(100)));
    }

    let (account_id, creds) = match account {
        Ok(Some(found)) => found,
        // Retrying cannot help until the service runs with the right key: fail it now.
        Err(e) if is_wrong_master_key(&e) => {
            let text = ctx.wrong_key.report(&e);
            let failure = JobFailure {
                code: codes::CREDENTIALS_UNREADABLE,
                message: &text,
            };
            return record_final(ctx, message, &job, JobState::Failed, &failure).await;
        }
        Err(e) if crate::accounts::not_twilio(&e).is_some() => {
            let text = crate::accounts::not_twilio(&e).unwrap_or_default();
            let failure = JobFailure {
                code: codes::UNKNOWN_ACCOUNT,
                message: &text,
            };
            return record_final(ctx, message, &job, JobState::Failed, &failure).await;
        }
        Err(e) => return Err(e),
        Ok(None) => {
            let message_text = match &job.account {
                AccountRef::Id(id) => format!("no connected account with id {id}"),
                AccountRef::Name(name) => format!("no connected account named '{name}'"),
            };
            let failure = JobFailure {
                code: codes::UNKNOWN_ACCOUNT,
                message: &message_text,
            };
            return record_final(ctx, message, &job, JobState::Failed, &failure).await;
        }
    };

    let age_from = published.min(row.created_at);
    let expired = OffsetDateTime::now_utc() - age_from > ctx.config.max_age;
    let exhausted = row.attempts >= ctx.config.backoff.max_attempts;

    if row.state == JobState::Sending {
        // The last create may have created the message: look before sending again. A list read
        // too soon after it may not show the message yet; only one read `list_settle` after
        // the create ended may conclude that there is none.
        let trusted_from = list_trusted_from(&row, ctx.config.list_settle);
        match find_existing(ctx, account_id, &creds, &job, &row).await {
            Found::Yes(existing) => {
                tracing::info!(sid = %existing.sid, "ambiguous create resolved: Twilio has the message; adopted");
                let status = existing.raw.get("status").and_then(|s| s.as_str());
                ctx.store
                    .outbound_mark_sent(key, existing.sid.as_str(), status)
                    .await?;
                return reload_and_finish(ctx, message, &job).await;
            }
            Found::No if row.now >= trusted_from => {
                tracing::info!("ambiguous create resolved: Twilio has no such message");
            }
            Found::No => {
                let wait = Duration::try_from(trusted_from - row.now).unwrap_or_default();
                tracing::info!(
                    wait_ms = wait.as_millis() as u64,
                    "Twilio does not list such a message yet; listing again once its list can be trusted"
                );
                return Ok(Disposition::Retry(wait + Duration::from_millis(50)));
            }
            Found::Unknown(why) => {
                if expired || exhausted {
                    let text = format!(
                        "after {} attempts it is unknown whether Twilio created the message: {why}",
                        row.attempts
                    );
                    let failure = JobFailure {
                        code: codes::OUTCOME_UNKNOWN,
                        message: &text,
                    };
                    return record_final(ctx, message, &job, JobState::Dead, &failure).await;
                }
                tracing::warn!(reason = %why, "could not check Twilio for an earlier create; retrying later");
                return Ok(Disposition::Retry(jittered(
                    &ctx.config.backoff,
                    row.attempts.max(1),
                )));
            }
        }
    }

    if exhausted || expired {
        let last = match (&row.last_error_code, &row.last_error_message) {
            (Some(code), Some(text)) => format!("; last error {code}: {text}"),
            _ => String::new(),
        };
        let why = if exhausted {
            format!("{} attempts made{last}", row.attempts)
        } else {
            format!(
                "older than {} s after {} attempts{last}",
                ctx.config.max_age.as_secs(),
                row.attempts
            )
        };
        let failure = JobFailure {
            code: codes::RETRIES_EXHAUSTED,
            message: &why,
        };
        return record_final(ctx, message, &job, JobState::Dead, &failure).await;
    }

    let callback = traced_callback(ctx, &tracing::Span::current());
    let request = match create_request(&job, callback.as_deref()) {
        Ok(request) => request,
        Err(problem) => {
            let failure = JobFailure {
                code: codes::INVALID_JOB,
                message: &problem,
            };
            return record_final(ctx, message, &job, JobState::Failed, &failure).await;
        }
    };
    if let Some(suppressed) = ctx.store.suppression(account_id, &job.to).await? {
        ctx.config.metrics.suppressed();
        let text = suppressed_message(&suppressed);
        tracing::info!(
            reason = suppressed.reason.as_str(),
            "recipient suppressed; not sent"
        );
        let failure = JobFailure {
            code: codes::SUPPRESSED,
            message: &text,
        };
        return record_final(ctx, message, &job, JobState::Failed, &failure).await;
    }
    let mut stop = ctx.stop.clone();
    let waiting = std::time::Instant::now();
    let turn = ctx
        .limits
        .wait_turn(&ctx.store, &job, row.attempts + 1, account_id, &mut stop)
        .await?;
    if let limits::Turn::Later(delay) = turn {
        // Its wait goes on in JetStream, until the redelivery.
        ctx.config
            .metrics
            .rate_limit_wait(waiting.elapsed() + delay);
        return Ok(Disposition::Retry(delay));
    }
    ctx.config.metrics.rate_limit_wait(waiting.elapsed());
    // Taken before the claim, so waiting for it does not eat into the create's lease.
    let permit = ctx.limits.account_permit(account_id).await;
    let Some(claimed) = ctx
        .store
        .outbound_claim_attempt(&row, ctx.config.ack_wait())
        .await?
    else {
        // Another delivery of this key moved the row on; look again shortly.
        return Ok(Disposition::Retry(Duration::from_millis(200)));
    };
    let attempt = claimed.attempts;
    let mut request = request;
    request.attempt = Some(attempt);

    let created = ctx.twilio.create_message(&creds, &request).await;
    drop(permit);
    match created {
        Ok(created) => {
            let status = message_status(&created);
            tracing::info!(sid = %created.sid, attempt, "sent to Twilio");
            ctx.store
                .outbound_mark_sent(key, created.sid.as_str(), status)
                .await?;
            reload_and_finish(ctx, message, &job).await
        }
        Err(error) => after_failure(ctx, message, &job, account_id, attempt, &error).await,
    }
}

/// Classifies a failed create: permanent → `failed`; retryable → NAK with a delay (`queued`, or
/// `sending` when the message may exist); out of attempts → `dead`.
pub(crate) async fn after_failure(
    ctx: &Ctx,
    message: &jetstream::Message,
    job: &SendSmsJob,
    account_id: i64,
    attempt: u32,
    error: &TwilioError,
) -> anyhow::Result<Disposition> {
    let key = job.idempotency_key.as_str();
    let (code, text) = error_code_and_message(error);
    ctx.config.metrics.twilio_error(&code);
    let throttled = error.is_throttled();
    let too_many = error
        .api_error()
        .is_some_and(|e| e.status == 429 || e.code == 20429);
    if throttled || too_many {
        // The sender slows down: no job of it calls Twilio before the pause ends.
        ctx.limits
            .throttled(&ctx.store, job, account_id, error.retry_after())
            .await?;
    }
    if error.is_opt_out() {
        let newly = ctx
            .store
            .suppress(account_id, &job.to, SuppressionReason::Twilio21610, &text)
            .await?;
        tracing::info!(
            newly,
            "Twilio answered 21610: the recipient is suppressed for the account"
        );
    }
    let retryable = error.is_retryable() || throttled;
    if !retryable {
        if let TwilioError::Setup(_) = error {
            anyhow::bail!("Twilio client: {error}");
        }
        tracing::warn!(attempt, code = %code, error = %text, "permanent Twilio error");
        let failure = JobFailure {
            code: &code,
            message: &text,
        };
        return record_final(ctx, message, job, JobState::Failed, &failure).await;
    }
    let ambiguous = error.is_ambiguous();
    let state = if ambiguous {
        JobState::Sending
    } else {
        JobState::Queued
    };
    let failure = JobFailure {
        code: &code,
        message: &text,
    };
    ctx.store
        .outbound_record_failure(key, state, &failure)
        .await?;
    let delay = ctx
        .config
        .backoff
        .delay(attempt, error.retry_after(), &mut rand::rng());
    tracing::warn!(attempt, ambiguous, code = %code, error = %text, retry_ms = delay.map(|d| d.as_millis() as u64), "Twilio create failed");
    let reason = match (throttled || too_many, ambiguous) {
        (true, _) => "throttled",
        (false, true) => "ambiguous",
        (false, false) => "transient",
    };
    match delay {
        Some(delay) => {
            ctx.config.metrics.retry("send_sms", reason);
            Ok(Disposition::Retry(delay))
        }
        // Out of attempts. An ambiguous failure is checked first (the next delivery lists,
        // then dead-letters); otherwise nothing was created and the job is dead now.
        None if ambiguous => {
            ctx.config.metrics.retry("send_sms", reason);
            Ok(Disposition::Retry(ctx.config.backoff.base))
        }
        None => {
            let why = format!("{attempt} attempts made; last error {code}: {text}");
            let failure = JobFailure {
                code: codes::RETRIES_EXHAUSTED,
                message: &why,
            };
            record_final(ctx, message, job, JobState::Dead, &failure).await
        }
    }
}

/// Twilio's code as a decimal string, or a name for failures without one.
pub(crate) fn error_code_and_message(error: &TwilioError) -> (String, String) {
    match error {
        TwilioError::Api { error, .. } => (error.code.to_string(), error.message.clone()),
        TwilioError::Connect { .. } => ("connect_failed".into(), error.to_string()),
        TwilioError::Timeout { .. } => ("timeout".into(), error.to_string()),
        TwilioError::Io { .. } => ("connection_lost".into(), error.to_string()),
        TwilioError::Decode { .. } => ("unreadable_answer".into(), error.to_string()),
        TwilioError::Setup(_) => ("setup".into(), error.to_string()),
    }
}

/// Why a send to a suppressed recipient fails, naming the number, the reason and since when.
fn suppressed_message(s: &Suppression) -> String {
    let since = s
        .created_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let why = match s.reason {
        SuppressionReason::Keyword => format!("the recipient texted '{}'", s.detail),
        SuppressionReason::Twilio21610 => {
            format!("Twilio refused a send with 21610 ({})", s.detail)
        }
        SuppressionReason::Operator => format!("an operator added it ({})", s.detail),
    };
    format!(
        "{} is on the account's suppression list since {since}: {why}; Twilio was not called (an opt-in keyword, START, YES or UNSTOP, lifts it)",
        s.number
    )
}

/// The Messages create form of a job. The job's own `status_callback` wins over the service's
/// `default_callback` (Twilio takes one URL per message).
/// The service's default `StatusCallback` (none when not configured) with the W3C
/// `traceparent` of `span`, the job's, in its query: Twilio calls it back signed, URL and all,
/// and the worker links each callback's trace to the job's (docs/observability.md). A job's own
/// `status_callback` is left as it is.
pub(crate) fn traced_callback(ctx: &Ctx, span: &tracing::Span) -> Option<String> {
    let url = ctx.config.status_callback_url.as_deref()?;
    Some(switchboard_telemetry::with_trace_query(url, span))
}

pub(crate) fn create_request(
    job: &SendSmsJob,
    default_callback: Option<&str>,
) -> Result<CreateMessage, String> {
    let to = E164::parse(&job.to).map_err(|e| format!("to: {e}"))?;
    let sender = match (&job.from, &job.messaging_service_sid) {
        (Some(from), _) => Sender::From(from.clone()),
        (None, Some(sid)) => Sender::MessagingService(
            MessagingServiceSid::parse(sid).map_err(|e| format!("messaging_service_sid: {e}"))?,
        ),
        (None, None) => return Err("from: give from or messaging_service_sid".into()),
    };
    let mut request = CreateMessage::new(to, sender);
    request.body = job.body.clone();
    request.media_urls = job.media_urls.clone();
    request.status_callback = job
        .status_callback
        .clone()
        .or_else(|| default_callback.map(str::to_owned));
    request.validity_period = job.validity_period;
    Ok(request)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn job(from: Option<&str>, mss: Option<&str>, body: Option<&str>) -> SendSmsJob {
        let mut doc = serde_json::json!({
            "version": 1, "idempotency_key": "k1", "account": {"id": 1}, "to": "+14155551234",
        });
        if let Some(from) = from {
            doc["from"] = from.into();
        }
        if let Some(mss) = mss {
            doc["messaging_service_sid"] = mss.into();
        }
        doc["body"] = body.unwrap_or("hi").into();
        serde_json::from_value(doc).unwrap()
    }

    #[test]
    fn create_requests_carry_the_job() {
        let j = job(
            None,
            Some("MG0123456789abcdef0123456789abcdef"),
            Some("hi & bye"),
        );
        let form = create_request(&j, None).unwrap().to_form();
        assert_eq!(
            form,
            "To=%2B14155551234&MessagingServiceSid=MG0123456789abcdef0123456789abcdef&Body=hi+%26+bye"
        );
        let with_default = create_request(&j, Some("https://in.example/twilio/status"))
            .unwrap()
            .to_form();
        assert!(
            with_default.contains("StatusCallback=https%3A%2F%2Fin.example%2Ftwilio%2Fstatus"),
            "{with_default}"
        );
        let mut own = j.clone();
        own.status_callback = Some("https://mine.example/cb".into());
        let form = create_request(&own, Some("https://in.example/twilio/status"))
            .unwrap()
            .to_form();
        assert!(
            form.contains("mine.example") && !form.contains("in.example"),
            "the job's own URL wins: {form}"
        );
    }

    #[test]
    fn failures_name_their_codes() {
        let error = TwilioError::Api {
            op: switchboard_twilio::client::Operation::CreateMessage,
            error: switchboard_twilio::ApiError::from_response(
                400,
                br#"{"code": 21610, "message": "Attempt to send to unsubscribed recipient"}"#,
            ),
            retry_after: None,
        };
        assert_eq!(
            error_code_and_message(&error),
            (
                "21610".to_owned(),
                "Attempt to send to unsubscribed recipient".to_owned()
            )
        );
    }
}
