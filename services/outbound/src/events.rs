//! What a job tells the world once its outcome is recorded: its events on the events stream
//! ([`publish_event`], [`start_event`]), the final one also to the job's `Switchboard-Reply-To`
//! subject, and, for a job that failed, a copy on the dead-letter stream ([`dead_letter_as`]).
//! [`finish`] publishes a finished job's final event from its row; [`record_final`] and
//! [`reload_and_finish`] record the outcome first. Every publish carries a message id, so
//! publishing again after a crash stores nothing twice.

use std::future::Future;

use async_nats::HeaderMap;
use async_nats::jetstream;
use switchboard_store::outbound::{JobFailure, JobState, OutboundJob, Published};
use switchboard_wire::outbound::{
    EVENT_VERSION, EventKind, HEADER_DEAD_LETTER_ATTEMPTS, HEADER_DEAD_LETTER_CODE, HEADER_MSG_ID,
    HEADER_REPLY_TO, JobError, JobEvent, JobType, SendSmsJob,
};
use time::OffsetDateTime;

use crate::consume::{header, reply_to_allowed};
use crate::{Ctx, Disposition};

/// On dead-lettered copies: the message of the last error (with the last Twilio error, if any).
pub const HEADER_DEAD_LETTER_MESSAGE: &str = "Switchboard-Error-Message";

/// Records a final failure state and publishes it. If another delivery ended the job first, its
/// outcome is the one published.
pub(crate) async fn record_final(
    ctx: &Ctx,
    message: &jetstream::Message,
    job: &SendSmsJob,
    state: JobState,
    failure: &JobFailure<'_>,
) -> anyhow::Result<Disposition> {
    ctx.store
        .outbound_record_failure(&job.idempotency_key, state, failure)
        .await?;
    reload_and_finish(ctx, message, job).await
}

pub(crate) async fn reload_and_finish(
    ctx: &Ctx,
    message: &jetstream::Message,
    job: &SendSmsJob,
) -> anyhow::Result<Disposition> {
    let row = ctx
        .store
        .outbound_job(&job.idempotency_key)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the job's row disappeared"))?;
    if !row.state.is_final() {
        anyhow::bail!(
            "the job's row is {} after its outcome was recorded",
            row.state.as_str()
        );
    }
    finish(ctx, message, job, &row).await?;
    Ok(Disposition::Ack)
}

/// Publishes a finished job's final event (and, for failures, its dead-letter copy) from its
/// row, after its accepted event if that is not known to be published, then notes that it did.
/// Safe to repeat: the copies carry message ids the streams de-duplicate.
pub(crate) async fn finish(
    ctx: &Ctx,
    message: &jetstream::Message,
    job: &SendSmsJob,
    row: &OutboundJob,
) -> anyhow::Result<()> {
    let key = job.idempotency_key.as_str();
    let kind = match row.state {
        JobState::Sent => EventKind::Sent,
        JobState::Failed => EventKind::Failed,
        JobState::Dead => EventKind::DeadLettered,
        JobState::Queued | JobState::Sending => {
            anyhow::bail!("job {key} is not finished")
        }
    };
    if !row.accepted_published {
        // A batch publishes the accepted event without waiting for its ack before the create;
        // if that ack failed, the job ended without its accepted event: publish it first.
        let accepted = event(job, EventKind::Accepted, 0);
        publish_event(ctx, message, &accepted, &format!("{key}:accepted")).await?;
    }
    let mut event = event(job, kind, row.attempts);
    if kind == EventKind::Sent {
        event.twilio_sid = row.twilio_sid.clone();
        event.status = row.twilio_status.clone();
    } else {
        let code = row.last_error_code.clone().unwrap_or_default();
        let text = row.last_error_message.clone().unwrap_or_default();
        dead_letter(ctx, message, &code, &text, row.attempts).await?;
        event.error = Some(job_error(code, text));
    }
    publish_event(ctx, message, &event, &format!("{key}:{}", kind.as_str())).await?;
    ctx.store
        .outbound_mark_published(key, Published::Final)
        .await?;
    if !row.final_published {
        ctx.config.metrics.job("send_sms", kind.as_str());
        ctx.config
            .metrics
            .job_duration("send_sms", crate::metrics::age(message));
    }
    Ok(())
}

/// The `error` of an event: a Twilio code gets Twilio's documentation link.
pub(crate) fn job_error(code: String, message: String) -> JobError {
    let more_info = code
        .parse::<u32>()
        .is_ok()
        .then(|| format!("https://www.twilio.com/docs/errors/{code}"));
    JobError {
        code,
        message,
        more_info,
        field: None,
        problems: Vec::new(),
    }
}

pub(crate) fn event(job: &SendSmsJob, kind: EventKind, attempt: u32) -> JobEvent {
    JobEvent {
        version: EVENT_VERSION,
        job_id: job.id().to_owned(),
        job: JobType::SmsSend,
        kind,
        at: now_rfc3339(),
        attempt,
        twilio_sid: None,
        status: None,
        error: None,
        result: None,
        metadata: job.metadata.clone(),
    }
}

/// Publishes an event to its subject (stored by the events stream, which de-duplicates by
/// `event_id`) and, for a final event, to the job's `Switchboard-Reply-To` subject, and waits
/// for the stream's ack.
pub(crate) async fn publish_event(
    ctx: &Ctx,
    message: &jetstream::Message,
    event: &JobEvent,
    event_id: &str,
) -> anyhow::Result<()> {
    start_event(ctx, message, event, event_id).await?.await
}

/// [`publish_event`] up to the point where only the stream's ack is left to wait for, so that
/// several events can be in flight at once; answers that wait.
pub(crate) async fn start_event(
    ctx: &Ctx,
    message: &jetstream::Message,
    event: &JobEvent,
    event_id: &str,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>> + Send + use<>> {
    let payload = bytes::Bytes::from(switchboard_wire::encode(event));
    let mut headers = HeaderMap::new();
    headers.insert(HEADER_MSG_ID, event_id);
    switchboard_telemetry::inject_nats(&tracing::Span::current(), &mut headers);
    let subject = ctx.config.subjects.event(event.job, event.kind);
    let ack = ctx
        .js
        .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
        .await
        .map_err(|e| anyhow::anyhow!("publishing to {subject}: {e}"))?;
    // The publisher's reply goes once the event is stored.
    // Only to an allowed reply subject, even for the failed event of a job rejected for its own.
    let reply_to = header(message, HEADER_REPLY_TO)
        .filter(|_| event.kind.is_final() && reply_to_allowed(ctx, message))
        .map(str::to_owned);
    let nats = ctx.nats.clone();
    Ok(async move {
        ack.await
            .map_err(|e| anyhow::anyhow!("publishing to {subject}: {e}"))?;
        if let Some(reply_to) = reply_to {
            nats.publish_with_headers(reply_to.clone(), headers, payload)
                .await
                .map_err(|e| anyhow::anyhow!("publishing to the reply subject {reply_to}: {e}"))?;
        }
        Ok(())
    })
}

/// [`dead_letter_as`] for a send-SMS job.
pub(crate) async fn dead_letter(
    ctx: &Ctx,
    message: &jetstream::Message,
    code: &str,
    text: &str,
    attempts: u32,
) -> anyhow::Result<()> {
    dead_letter_as(ctx, message, JobType::SmsSend, code, text, attempts).await
}

/// Copies the job, byte for byte and with its headers, to the dead-letter subject of its type,
/// adding the error and the attempts.
pub(crate) async fn dead_letter_as(
    ctx: &Ctx,
    message: &jetstream::Message,
    job: JobType,
    code: &str,
    text: &str,
    attempts: u32,
) -> anyhow::Result<()> {
    let mut headers = HeaderMap::new();
    if let Some(original) = &message.headers {
        for (name, values) in original.iter() {
            for value in values {
                headers.append(name.clone(), value.clone());
            }
        }
    }
    // The id de-duplicates repeated copies of one job; one without a header is named by its
    // sequence number.
    if header(message, HEADER_MSG_ID).is_none() {
        let seq = message.info().map(|i| i.stream_sequence).unwrap_or(0);
        headers.insert(HEADER_MSG_ID, format!("seq:{seq}").as_str());
    }
    headers.insert(HEADER_DEAD_LETTER_CODE, code);
    headers.insert(HEADER_DEAD_LETTER_ATTEMPTS, attempts.to_string().as_str());
    // Header values are single lines.
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    headers.insert(HEADER_DEAD_LETTER_MESSAGE, one_line.as_str());
    let subject = ctx.config.subjects.dead_letter(job);
    ctx.js
        .publish_with_headers(subject.clone(), headers, message.payload.clone())
        .await
        .map_err(|e| anyhow::anyhow!("publishing to {subject}: {e}"))?
        .await
        .map_err(|e| anyhow::anyhow!("publishing to {subject}: {e}"))?;
    ctx.config.metrics.dead_letter(code);
    Ok(())
}

/// RFC 3339 UTC timestamp for events.
pub(crate) fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
