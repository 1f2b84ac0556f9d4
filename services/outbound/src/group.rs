//! The group path: send-SMS deliveries that arrive together (from one pull, see `consume.rs`)
//! share their store statements and event publishes. [`handle_group`] takes the new jobs among
//! them through [`claim_group`] and [`send_claimed`], and sends every other delivery to the
//! one-job path (`job.rs`); a failed create is classified as on that path
//! ([`after_failure`]).

use async_nats::jetstream;
use switchboard_store::outbound::{NewJob, Published, SentJob};
use switchboard_twilio::client::{CreateMessage, Credentials, Message};
use switchboard_wire::outbound::{
    AccountRef, EventKind, HEADER_MSG_ID, JobType, SendSmsJob, decode_send_sms,
};
use time::OffsetDateTime;
use tracing::Instrument as _;

use crate::accounts::{credentials, is_wrong_master_key};
use crate::consume::{answer, header, reply_to_allowed, with_progress};
use crate::events::{event, reload_and_finish, start_event};
use crate::job::{
    SMS_SEND, after_failure, create_request, handle, message_status, traced_callback,
};
use crate::{Ctx, Disposition};

/// A send job of a group that can take the group's path: new (its row is created already
/// claimed for its first create), its account known, its create request valid.
struct Claimed {
    /// The job's own span (child of the publisher's trace, like [`handle`]'s), for its create
    /// and its events.
    span: tracing::Span,
    message: jetstream::Message,
    job: SendSmsJob,
    account_id: i64,
    creds: Credentials,
    request: CreateMessage,
}

/// Works on send-SMS deliveries that arrived together. The new jobs among them, with rate limits
/// off, go through the group path: one statement claims them all (their rows created as
/// `sending`, attempt 1, unless the recipient is suppressed), their accepted events are
/// published before the creates without waiting for each ack in turn, the creates run
/// concurrently, one statement records the messages created, the sent events are published
/// together, and one synchronous statement notes them published before the acks. Everything
/// else (redeliveries, invalid or suppressed jobs, failed creates, rate limits on) takes the
/// one-job path, `job::process`, with the same guarantees as always.
pub(crate) async fn handle_group(ctx: &Ctx, messages: Vec<jetstream::Message>) {
    if ctx.limits.config.enabled || ctx.config.backoff.max_attempts == 0 {
        futures::future::join_all(
            messages
                .into_iter()
                .map(|message| handle(ctx, message, JobType::SmsSend)),
        )
        .await;
        return;
    }
    let span = tracing::info_span!("outbound.group", jobs = messages.len());
    async {
        let started = std::time::Instant::now();
        let (claimed, single) = with_progress(ctx, &messages, claim_group(ctx, &messages)).await;
        tracing::debug!(
            jobs = messages.len(),
            claimed = claimed.len(),
            claim_ms = started.elapsed().as_secs_f64() * 1e3,
            "group claimed"
        );
        let mut messages: Vec<Option<jetstream::Message>> =
            messages.into_iter().map(Some).collect();
        let claimed: Vec<Claimed> = claimed
            .into_iter()
            .filter_map(|(i, job, account_id, creds, request)| {
                let message = messages[i].take()?;
                let (seq, delivered) = message
                    .info()
                    .map(|i| (i.stream_sequence, i.delivered))
                    .unwrap_or((0, 0));
                let span = tracing::info_span!(
                    "outbound.job",
                    otel.kind = "consumer",
                    job_id = job.id(),
                    seq,
                    delivered
                );
                switchboard_telemetry::set_parent_from_nats(&span, message.headers.as_ref());
                Some(Claimed {
                    span,
                    message,
                    job,
                    account_id,
                    creds,
                    request,
                })
            })
            .collect();
        debug_assert!(single.iter().all(|&i| messages[i].is_some()));
        let one_by_one = futures::future::join_all(
            messages
                .into_iter()
                .flatten()
                .map(|message| handle(ctx, message, JobType::SmsSend)),
        );
        tokio::join!(one_by_one, send_claimed(ctx, claimed));
    }
    .instrument(span)
    .await
}

/// What [`claim_group`] found: the claimed jobs (index in the group, job, account id and
/// credentials, create request) and the indexes of the deliveries left to the one-job path.
type Triage = (
    Vec<(usize, SendSmsJob, i64, Credentials, CreateMessage)>,
    Vec<usize>,
);

/// Decodes a group, looks up its accounts (once each), and claims the new jobs in one
/// statement. Any doubt sends a delivery to the one-job path.
async fn claim_group(ctx: &Ctx, messages: &[jetstream::Message]) -> Triage {
    let mut single = Vec::new();
    let mut candidates: Vec<(usize, SendSmsJob, CreateMessage)> = Vec::new();
    let mut keys = std::collections::HashSet::new();
    let now = OffsetDateTime::now_utc();
    for (i, message) in messages.iter().enumerate() {
        let Ok(info) = message.info() else {
            single.push(i);
            continue;
        };
        let fresh = now - info.published <= ctx.config.max_age;
        let job = decode_send_sms(&message.payload, header(message, HEADER_MSG_ID))
            .ok()
            // A reply subject the service refuses is the one-job path's to reject.
            .filter(|_| reply_to_allowed(ctx, message));
        let request = job
            .as_ref()
            .and_then(|job| create_request(job, ctx.config.status_callback_url.as_deref()).ok());
        match (job, request) {
            (Some(job), Some(request)) if fresh && keys.insert(job.idempotency_key.clone()) => {
                candidates.push((i, job, request));
            }
            _ => single.push(i),
        }
    }
    // Each account once per group, read fresh: no cache to go stale.
    let mut accounts: Vec<(AccountRef, Option<(i64, Credentials)>)> = Vec::new();
    for (_, job, _) in &candidates {
        if !accounts.iter().any(|(a, _)| *a == job.account) {
            let found = credentials(ctx, &job.account).await.unwrap_or_else(|e| {
                // A key that does not decrypt it, or an account that is not Twilio's, is the
                // one-job path's to report and fail.
                if !is_wrong_master_key(&e) && crate::accounts::not_twilio(&e).is_none() {
                    tracing::warn!(error = format!("{e:#}"), "reading the account failed");
                }
                None
            });
            accounts.push((job.account.clone(), found));
        }
    }
    let mut ready = Vec::new();
    for (i, job, request) in candidates {
        match accounts.iter().find(|(a, _)| *a == job.account) {
            Some((_, Some((account_id, creds)))) => {
                ready.push((i, job, *account_id, creds.clone(), request));
            }
            _ => single.push(i),
        }
    }
    let new_jobs: Vec<NewJob<'_>> = ready
        .iter()
        .map(|(_, job, account_id, _, _)| NewJob {
            idempotency_key: &job.idempotency_key,
            job_id: job.id(),
            account_id: *account_id,
            to: &job.to,
        })
        .collect();
    let claimed = match ctx
        .store
        .outbound_claim_new(&new_jobs, SMS_SEND, ctx.config.ack_wait())
        .await
    {
        Ok(keys) => keys,
        Err(e) => {
            tracing::warn!(error = %e, "claiming a group of jobs failed; handling them one by one");
            Vec::new()
        }
    };
    drop(new_jobs);
    let claimed: std::collections::HashSet<String> = claimed.into_iter().collect();
    let (ready, rest): (Vec<_>, Vec<_>) = ready
        .into_iter()
        .partition(|(_, job, ..)| claimed.contains(&job.idempotency_key));
    single.extend(rest.into_iter().map(|(i, ..)| i));
    (ready, single)
}

/// Sends the claimed jobs of a group and answers JetStream for each.
async fn send_claimed(ctx: &Ctx, claimed: Vec<Claimed>) {
    if claimed.is_empty() {
        return;
    }
    let messages: Vec<jetstream::Message> = claimed.iter().map(|c| c.message.clone()).collect();
    let outcomes = with_progress(ctx, &messages, send_claimed_work(ctx, &claimed)).await;
    futures::future::join_all(
        claimed
            .iter()
            .zip(outcomes)
            .map(|(c, outcome)| answer(ctx, &c.message, outcome).instrument(c.span.clone())),
    )
    .await;
}

/// The group path after the claim; answers each job's disposition, in order.
async fn send_claimed_work(ctx: &Ctx, claimed: &[Claimed]) -> Vec<anyhow::Result<Disposition>> {
    let started = std::time::Instant::now();
    // Accepted events first, in order, before any create; their acks come back meanwhile.
    let mut accepted = Vec::with_capacity(claimed.len());
    for c in claimed {
        let key = &c.job.idempotency_key;
        let event = event(&c.job, EventKind::Accepted, 0);
        let id = format!("{key}:accepted");
        let started = start_event(ctx, &c.message, &event, &id)
            .instrument(c.span.clone())
            .await;
        accepted.push(started);
    }
    let accepted = futures::future::join_all(accepted.into_iter().map(|started| async move {
        match started {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        }
    }));
    let creates = futures::future::join_all(claimed.iter().map(|c| async move {
        let mut request = c.request.clone();
        request.attempt = Some(1);
        if c.job.status_callback.is_none() {
            request.status_callback = traced_callback(ctx, &c.span);
        }
        let permit = ctx.limits.account_permit(c.account_id).await;
        let created = ctx
            .twilio
            .create_message(&c.creds, &request)
            .instrument(c.span.clone())
            .await;
        drop(permit);
        created
    }));
    let (accepted, created) = tokio::join!(accepted, creates);
    let created_at = started.elapsed();

    let mut outcomes: Vec<Option<anyhow::Result<Disposition>>> =
        claimed.iter().map(|_| None).collect();
    // The sent events of the created messages whose accepted event is in the stream go out
    // first; then one synchronous statement records every created message, with whether both
    // its events are out, before any ack. A crash in between leaves the row `sending`: its
    // redelivery finds the message at Twilio before any create, records it and publishes the
    // sent event again under the same id (the events stream drops the duplicate).
    let sent: Vec<(usize, &Message)> = created
        .iter()
        .enumerate()
        .filter_map(|(i, created)| Some((i, created.as_ref().ok()?)))
        .collect();
    let mut finals = Vec::new();
    for &(i, created) in &sent {
        let c = &claimed[i];
        tracing::debug!(job_id = c.job.id(), sid = %created.sid, "sent to Twilio");
        if accepted[i].is_err() {
            continue;
        }
        let mut event = event(&c.job, EventKind::Sent, 1);
        event.twilio_sid = Some(created.sid.to_string());
        event.status = message_status(created).map(str::to_owned);
        let id = format!("{}:{}", c.job.idempotency_key, EventKind::Sent.as_str());
        let started = start_event(ctx, &c.message, &event, &id)
            .instrument(c.span.clone())
            .await;
        finals.push((i, started));
    }
    let mut sent_published: Vec<Option<anyhow::Result<()>>> =
        claimed.iter().map(|_| None).collect();
    for (i, started) in finals {
        sent_published[i] = Some(match started {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        });
    }
    let published_at = started.elapsed();
    let batch: Vec<SentJob<'_>> = sent
        .iter()
        .map(|&(i, created)| SentJob {
            idempotency_key: &claimed[i].job.idempotency_key,
            twilio_sid: created.sid.as_str(),
            twilio_status: message_status(created),
            events_published: matches!(sent_published[i], Some(Ok(()))),
        })
        .collect();
    let recorded = ctx.store.outbound_record_sent_batch(&batch).await;
    tracing::debug!(
        jobs = claimed.len(),
        creates_ms = created_at.as_secs_f64() * 1e3,
        published_ms = published_at.as_secs_f64() * 1e3,
        recorded_ms = started.elapsed().as_secs_f64() * 1e3,
        "group sent"
    );
    for &(i, _) in &sent {
        let c = &claimed[i];
        outcomes[i] = Some(match (&recorded, &accepted[i], &sent_published[i]) {
            (Err(e), ..) => Err(anyhow::anyhow!("recording the sent message: {e}")),
            (Ok(keys), ..) if !keys.contains(&c.job.idempotency_key) => {
                // Another delivery ended the job first: publish what its row says.
                reload_and_finish(ctx, &c.message, &c.job)
                    .instrument(c.span.clone())
                    .await
            }
            // Its redelivery publishes what is missing from the row (`finish`).
            (Ok(_), Err(e), _) | (Ok(_), Ok(()), Some(Err(e))) => Err(anyhow::anyhow!("{e:#}")),
            (Ok(_), Ok(()), _) => {
                ctx.config.metrics.job("send_sms", EventKind::Sent.as_str());
                ctx.config
                    .metrics
                    .job_duration("send_sms", crate::metrics::age(&c.message));
                Ok(Disposition::Ack)
            }
        });
    }

    // Failed creates: the one-job path's classification.
    for (i, created) in created.iter().enumerate() {
        let Err(error) = created else { continue };
        let c = &claimed[i];
        let outcome = after_failure(ctx, &c.message, &c.job, c.account_id, 1, error)
            .instrument(c.span.clone())
            .await;
        if accepted[i].is_ok()
            && let Ok(Disposition::Retry(_)) = outcome
            && let Err(e) = ctx
                .store
                .outbound_mark_published(&c.job.idempotency_key, Published::Accepted)
                .await
        {
            // Only an optimisation: the redelivery publishes it again, de-duplicated.
            tracing::debug!(error = %e, "noting the accepted event failed");
        }
        outcomes[i] = Some(outcome);
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(anyhow::anyhow!("no outcome"))))
        .collect()
}
