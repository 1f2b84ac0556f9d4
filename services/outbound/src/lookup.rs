//! Lookup jobs (`docs/jobs.md`): a second durable pull consumer, `outbound-lookup`, filtered to
//! `{prefix}.jobs.lookup` (NATS 2.9 has no multi-filter consumers, and the filters of a
//! work-queue stream's consumers must not overlap), asks Twilio's Lookup v1 or v2 about the
//! number and answers with a `completed` event carrying the result.
//!
//! A lookup is a read: repeating it changes nothing at Twilio, so there is no job row and no
//! ambiguity check. Retryable failures (429, 5xx, network) are NAKed with a delay; the
//! JetStream delivery count is the attempt number, bounded by the same attempts and age as
//! send-SMS jobs. A number Twilio does not know is an answer (`found: false`), not a failure.

use async_nats::jetstream::{self, consumer};
use serde_json::{Value as Json, json};
use switchboard_twilio::client::{Lookup, TwilioError};
use switchboard_wire::outbound::{
    AccountRef, EVENT_VERSION, EventKind, HEADER_MSG_ID, HEADER_REPLY_TO, JobEvent, JobType,
    LookupApi, LookupJob, check_job_reply_to, codes, decode_lookup,
};
use time::OffsetDateTime;

use crate::accounts::{credentials, is_wrong_master_key};
use crate::consume::header;
use crate::events::{dead_letter_as, job_error, now_rfc3339, publish_event};
use crate::job::error_code_and_message;
use crate::{Ctx, Disposition, OutboundConfig};

/// Durable consumer of lookup jobs on the job stream.
pub const LOOKUP_CONSUMER: &str = "outbound-lookup";

/// Creates (or updates) the lookup consumer; the streams are [`crate::setup`]'s.
pub async fn setup(
    js: &jetstream::Context,
    config: &OutboundConfig,
) -> anyhow::Result<consumer::PullConsumer> {
    let subjects = &config.subjects;
    let jobs = js
        .get_stream(subjects.job_stream())
        .await
        .map_err(|e| anyhow::anyhow!("getting the stream {}: {e}", subjects.job_stream()))?;
    crate::streams::durable_consumer(
        &jobs,
        config,
        LOOKUP_CONSUMER,
        "Switchboard outbound service: lookup jobs",
        subjects.lookup(),
    )
    .await
}

/// A lookup job's path from delivery to disposition.
pub(crate) async fn process(
    ctx: &Ctx,
    message: &jetstream::Message,
) -> anyhow::Result<Disposition> {
    let info = message
        .info()
        .map_err(|e| anyhow::anyhow!("not a JetStream delivery: {e}"))?;
    let (seq, published) = (info.stream_sequence, info.published);
    // Each delivery makes one call to Twilio: the delivery count is the attempt.
    let attempt = u32::try_from(info.delivered).unwrap_or(u32::MAX).max(1);
    let msg_id = header(message, HEADER_MSG_ID);
    tracing::debug!(seq, attempt, msg_id, "lookup job delivered");

    let decoded = check_job_reply_to(
        decode_lookup(&message.payload, msg_id),
        JobType::Lookup,
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
            tracing::warn!(error = %rejected, "lookup job rejected");
            let error = &rejected.error;
            publish_event(
                ctx,
                message,
                &event,
                &event_id(&event.job_id, EventKind::Failed),
            )
            .await?;
            dead_letter_as(
                ctx,
                message,
                JobType::Lookup,
                &error.code,
                &error.message,
                0,
            )
            .await?;
            return Ok(Disposition::Ack);
        }
    };
    tracing::Span::current().record("job_id", job.id());
    if attempt == 1 {
        let accepted = event(&job, EventKind::Accepted, 0);
        publish_event(
            ctx,
            message,
            &accepted,
            &event_id(&job.idempotency_key, EventKind::Accepted),
        )
        .await?;
    }

    let found = match credentials(ctx, &job.account).await {
        Ok(found) => found,
        // Retrying cannot help until the service runs with the right key: fail it now.
        Err(e) if is_wrong_master_key(&e) => {
            let text = ctx.wrong_key.report(&e);
            return fail(
                ctx,
                message,
                &job,
                EventKind::Failed,
                codes::CREDENTIALS_UNREADABLE,
                &text,
                0,
            )
            .await;
        }
        Err(e) if crate::accounts::not_twilio(&e).is_some() => {
            let text = crate::accounts::not_twilio(&e).unwrap_or_default();
            return fail(
                ctx,
                message,
                &job,
                EventKind::Failed,
                codes::UNKNOWN_ACCOUNT,
                &text,
                0,
            )
            .await;
        }
        Err(e) => return Err(e),
    };
    let Some((_account_id, creds)) = found else {
        let text = match &job.account {
            AccountRef::Id(id) => format!("no connected account with id {id}"),
            AccountRef::Name(name) => format!("no connected account named '{name}'"),
        };
        return fail(
            ctx,
            message,
            &job,
            EventKind::Failed,
            codes::UNKNOWN_ACCOUNT,
            &text,
            0,
        )
        .await;
    };

    let answer = match &job.api {
        LookupApi::V1 { types } => {
            let types: Vec<&str> = types.iter().map(String::as_str).collect();
            ctx.twilio
                .lookup_v1(&creds, &job.number, &types)
                .await
                .map(|l| result(raw(l, |v| v.raw)))
        }
        LookupApi::V2 { fields } => {
            let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
            ctx.twilio
                .lookup_v2(&creds, &job.number, &fields)
                .await
                .map(|l| result(raw(l, |v| v.raw)))
        }
    };
    match answer {
        Ok(result) => {
            tracing::info!(
                attempt,
                found = result["found"].as_bool(),
                "lookup completed"
            );
            let mut completed = event(&job, EventKind::Completed, attempt);
            completed.result = Some(result);
            let id = event_id(&job.idempotency_key, EventKind::Completed);
            publish_event(ctx, message, &completed, &id).await?;
            ctx.config
                .metrics
                .job("lookup", EventKind::Completed.as_str());
            ctx.config
                .metrics
                .job_duration("lookup", crate::metrics::age(message));
            Ok(Disposition::Ack)
        }
        Err(error) => after_failure(ctx, message, &job, attempt, published, &error).await,
    }
}

/// Permanent → `failed`; retryable → NAK with a delay, until the attempts or the age run out
/// (`dead_lettered`).
async fn after_failure(
    ctx: &Ctx,
    message: &jetstream::Message,
    job: &LookupJob,
    attempt: u32,
    published: OffsetDateTime,
    error: &TwilioError,
) -> anyhow::Result<Disposition> {
    if let TwilioError::Setup(_) = error {
        anyhow::bail!("Twilio client: {error}");
    }
    let (code, text) = error_code_and_message(error);
    ctx.config.metrics.twilio_error(&code);
    let throttled = error.is_throttled();
    if !(error.is_retryable() || throttled) {
        tracing::warn!(attempt, code = %code, error = %text, "permanent Twilio error");
        return fail(ctx, message, job, EventKind::Failed, &code, &text, attempt).await;
    }
    let expired = OffsetDateTime::now_utc() - published > ctx.config.max_age;
    let delay = ctx
        .config
        .backoff
        .delay(attempt, error.retry_after(), &mut rand::rng())
        .filter(|_| !expired);
    tracing::warn!(attempt, code = %code, error = %text, retry_ms = delay.map(|d| d.as_millis() as u64), "Twilio lookup failed");
    match delay {
        Some(delay) => {
            let reason = if throttled { "throttled" } else { "transient" };
            ctx.config.metrics.retry("lookup", reason);
            Ok(Disposition::Retry(delay))
        }
        None => {
            let why = if expired {
                format!(
                    "older than {} s after {attempt} attempts; last error {code}: {text}",
                    ctx.config.max_age.as_secs()
                )
            } else {
                format!("{attempt} attempts made; last error {code}: {text}")
            };
            let kind = EventKind::DeadLettered;
            fail(
                ctx,
                message,
                job,
                kind,
                codes::RETRIES_EXHAUSTED,
                &why,
                attempt,
            )
            .await
        }
    }
}

/// Ends a job that will not complete: its dead-letter copy, then its final event.
async fn fail(
    ctx: &Ctx,
    message: &jetstream::Message,
    job: &LookupJob,
    kind: EventKind,
    code: &str,
    text: &str,
    attempt: u32,
) -> anyhow::Result<Disposition> {
    dead_letter_as(ctx, message, JobType::Lookup, code, text, attempt).await?;
    let mut event = event(job, kind, attempt);
    event.error = Some(job_error(code.to_owned(), text.to_owned()));
    publish_event(ctx, message, &event, &event_id(&job.idempotency_key, kind)).await?;
    ctx.config.metrics.job("lookup", kind.as_str());
    ctx.config
        .metrics
        .job_duration("lookup", crate::metrics::age(message));
    Ok(Disposition::Ack)
}

/// Twilio's JSON of a lookup answer; `None` for a number Twilio does not know.
fn raw<T>(lookup: Lookup<T>, json: impl FnOnce(T) -> Json) -> Option<Json> {
    match lookup {
        Lookup::Found(value) => Some(json(value)),
        Lookup::NotFound(_) => None,
    }
}

/// `result` of a `completed` event: `{"found": true, "lookup": <Twilio's JSON>}`, or
/// `{"found": false, "lookup": null}` for a number Twilio does not know (v1's 404).
fn result(lookup: Option<Json>) -> Json {
    match lookup {
        Some(raw) => json!({"found": true, "lookup": raw}),
        None => json!({"found": false, "lookup": null}),
    }
}

/// Event ids of lookups have their own namespace: a send-SMS job may use the same key.
fn event_id(key: &str, kind: EventKind) -> String {
    format!("lookup:{key}:{}", kind.as_str())
}

fn event(job: &LookupJob, kind: EventKind, attempt: u32) -> JobEvent {
    JobEvent {
        version: EVENT_VERSION,
        job_id: job.id().to_owned(),
        job: JobType::Lookup,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_say_whether_twilio_knows_the_number() {
        let found = result(raw(
            Lookup::Found(json!({"phone_number": "+14155551234"})),
            |v| v,
        ));
        assert_eq!(
            found,
            json!({"found": true, "lookup": {"phone_number": "+14155551234"}})
        );
        let unknown = switchboard_twilio::ApiError::from_response(
            404,
            br#"{"code": 20404, "message": "not found"}"#,
        );
        assert_eq!(
            result(raw(Lookup::<Json>::NotFound(unknown), |v| v)),
            json!({"found": false, "lookup": null})
        );
        assert_eq!(
            event_id("k", EventKind::Completed),
            "lookup:k:completed".to_owned()
        );
    }
}
