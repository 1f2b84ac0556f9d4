//! Twilio's delivery status callbacks (docs/twilio.md §1.4), which ingress forwards from
//! `/twilio/status` on `{prefix}.webhook.status`: the signature is verified like a webhook's
//! (with the token of a connected account whose Account SID is the posted `AccountSid`; 403 and
//! nothing recorded otherwise), the status of the outbound job whose message it is moves forward
//! (never back: callbacks are not ordered), and a `status` event is published on
//! `{prefix}.events.sms.status`, correlated by job id and message SID.
//!
//! Twilio is answered 200 with an empty `<Response/>` whenever the request was genuine, also for
//! a MessageSid no outbound job sent (logged): Twilio cannot do anything about those.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_store::status::{StatusRecord, StatusUpdate, status_rank};
use switchboard_twilio::MessageSid;
use switchboard_wire::outbound::{
    EVENT_VERSION, EventKind, HEADER_MSG_ID, JobError, JobEvent, JobSubjects, JobType,
};
use switchboard_wire::{self as wire, WebhookReply, WebhookRequest};
use tracing::field;

use crate::webhook::{Webhook, form_param};
use crate::{Worker, serve_request};

/// How often a callback for a MessageSid not recorded yet looks again.
const STATUS_POLL: Duration = Duration::from_millis(100);

impl Worker {
    /// Answers one status callback request from ingress.
    pub(crate) async fn handle_status(self: Arc<Self>, request: async_nats::service::Request) {
        let span = tracing::info_span!(
            "status_callback",
            request_id = field::Empty,
            message_sid = field::Empty,
            message_status = field::Empty,
            status = field::Empty,
            otel.kind = "consumer",
        );
        serve_request(request, span, "status callback", |req| async move {
            let mut result = "recorded";
            let reply = match self.answer_status(req, &mut result).await {
                Ok(reply) => reply,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "status callback failed");
                    result = "error";
                    WebhookReply::status(503)
                }
            };
            self.opts.metrics.status(result);
            reply
        })
        .await;
    }

    /// Answers a status callback; `result` says what became of it (for the metrics).
    async fn answer_status(
        &self,
        req: WebhookRequest,
        result: &mut &'static str,
    ) -> anyhow::Result<WebhookReply> {
        *result = "rejected";
        if !req.method.eq_ignore_ascii_case("POST") {
            return Ok(WebhookReply::status(405));
        }
        let hook = Webhook::decode(req);
        if !hook.is_form_post() {
            tracing::warn!("rejected a status callback: not a form post");
            return Ok(WebhookReply::status(415));
        }
        let account_id = match self.callback_signature_ok(&hook).await? {
            Ok(id) => id,
            Err(reason) => {
                tracing::warn!(
                    reason,
                    "rejected a status callback: signature verification failed"
                );
                *result = "forbidden";
                return Ok(WebhookReply::status(403));
            }
        };
        // The URL outbound gave Twilio names the trace of the job that sent the message (and
        // Twilio signed it with the rest): this callback's trace links to that one.
        if let Some(job) = switchboard_telemetry::trace_from_query(&hook.req.query) {
            switchboard_telemetry::add_link(&tracing::Span::current(), &job);
        }
        let update = match parse_callback(&hook.form) {
            Ok(update) => update,
            Err(problem) => {
                tracing::warn!(problem, "rejected a signed status callback");
                return Ok(WebhookReply::status(400));
            }
        };
        let span = tracing::Span::current();
        span.record("message_sid", update.message_sid);
        span.record("message_status", update.status);
        if status_rank(update.status) == 0 {
            tracing::warn!(
                "status callback with a status that is not an outbound delivery status; not recorded"
            );
            return Ok(empty_response());
        }
        let Some(record) = self.record_status(&update, account_id).await? else {
            tracing::info!(
                account_id,
                "status callback for a message no outbound job of this account sent; ignored"
            );
            *result = "unknown_message";
            return Ok(empty_response());
        };
        *result = if record.applied { "recorded" } else { "stale" };
        if !record.applied {
            tracing::info!(
                recorded = record.status.as_deref(),
                "status callback not applied: the recorded status is as far or further"
            );
        }
        // Published when the row holds this status: the first time, and again for a repeated
        // callback (the events stream drops the copy by its id), so a failed publish is made
        // good by Twilio's retry.
        if record.status.as_deref() == Some(update.status) {
            self.publish_status(&record, update.message_sid).await?;
        }
        Ok(empty_response())
    }

    /// Records the status, waiting up to `status_wait` for a MessageSid the outbound service
    /// may not have stored yet (Twilio can call back before the create's answer is recorded).
    async fn record_status(
        &self,
        update: &StatusUpdate<'_>,
        account_id: i64,
    ) -> anyhow::Result<Option<StatusRecord>> {
        let started = Instant::now();
        loop {
            if let Some(record) = self
                .store
                .outbound_record_status(update, account_id)
                .await?
            {
                return Ok(Some(record));
            }
            if started.elapsed() >= self.opts.status_wait {
                return Ok(None);
            }
            tokio::time::sleep(STATUS_POLL).await;
        }
    }

    /// The `status` event, stored by the events stream (de-duplicated by job key and status).
    async fn publish_status(&self, record: &StatusRecord, message_sid: &str) -> anyhow::Result<()> {
        let status = record.status.clone().unwrap_or_default();
        let error = record.error_code.clone().map(|code| JobError {
            message: record
                .error_message
                .clone()
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| format!("Twilio reported error {code} for this message")),
            more_info: Some(format!("https://www.twilio.com/docs/errors/{code}")),
            code,
            field: None,
            problems: Vec::new(),
        });
        let event = JobEvent {
            version: EVENT_VERSION,
            job_id: record.job_id.clone(),
            job: JobType::SmsSend,
            kind: EventKind::Status,
            at: now_rfc3339(),
            attempt: record.attempts,
            twilio_sid: Some(message_sid.to_owned()),
            status: Some(status.clone()),
            error,
            result: None,
            metadata: serde_json::Value::Null,
        };
        let subject = JobSubjects::from(&self.subjects).event(JobType::SmsSend, EventKind::Status);
        let mut headers = async_nats::HeaderMap::new();
        let id = format!("{}:status:{status}", record.idempotency_key);
        headers.insert(HEADER_MSG_ID, id.as_str());
        switchboard_telemetry::inject_nats(&tracing::Span::current(), &mut headers);
        async_nats::jetstream::new(self.nats.clone())
            .publish_with_headers(subject.clone(), headers, wire::encode(&event).into())
            .await
            .map_err(|e| anyhow::anyhow!("publishing to {subject}: {e}"))?
            .await
            .map_err(|e| anyhow::anyhow!("publishing to {subject}: {e}"))?;
        tracing::info!(job_id = %record.job_id, "status event published");
        Ok(())
    }
}

/// The facts of a callback, checked: a valid `MessageSid`, a `MessageStatus` (or the older
/// `SmsStatus`) of lower-case letters and `_`, and a numeric `ErrorCode` when there is one.
fn parse_callback(form: &[(String, String)]) -> Result<StatusUpdate<'_>, &'static str> {
    let param = |name: &str| form_param(form, name).filter(|v| !v.is_empty());
    let message_sid = param("MessageSid").ok_or("no MessageSid")?;
    MessageSid::parse(message_sid).map_err(|_| "MessageSid is not a message SID")?;
    let status = param("MessageStatus")
        .or_else(|| param("SmsStatus"))
        .ok_or("no MessageStatus")?;
    if status.len() > 32 || !status.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return Err("MessageStatus is not a status name");
    }
    let error_code = param("ErrorCode");
    if error_code.is_some_and(|c| c.len() > 10 || !c.bytes().all(|b| b.is_ascii_digit())) {
        return Err("ErrorCode is not a number");
    }
    Ok(StatusUpdate {
        message_sid,
        status,
        error_code,
        error_message: param("ErrorMessage"),
    })
}

/// 200 with an empty TwiML document: Twilio needs no body, and this is valid if it reads one.
fn empty_response() -> WebhookReply {
    WebhookReply {
        status: 200,
        headers: vec![("content-type".into(), "text/xml; charset=utf-8".into())],
        body: format!("{}<Response/>", switchboard_twilio::twiml::XML_DECLARATION),
    }
}

/// RFC 3339 UTC timestamp for events.
fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn callbacks_are_checked_before_anything_is_recorded() {
        let sid = "SM0123456789abcdef0123456789abcdef";
        let ok = form(&[
            ("MessageSid", sid),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "30003"),
        ]);
        let update = parse_callback(&ok).unwrap();
        assert_eq!(update.status, "undelivered");
        assert_eq!(update.error_code, Some("30003"));
        let old_style = form(&[("MessageSid", sid), ("SmsStatus", "sent")]);
        assert_eq!(parse_callback(&old_style).unwrap().status, "sent");
        for (bad, why) in [
            (form(&[("MessageStatus", "sent")]), "no MessageSid"),
            (
                form(&[("MessageSid", "XX123"), ("MessageStatus", "sent")]),
                "MessageSid is not a message SID",
            ),
            (form(&[("MessageSid", sid)]), "no MessageStatus"),
            (
                form(&[("MessageSid", sid), ("MessageStatus", "Sent; DROP")]),
                "MessageStatus is not a status name",
            ),
            (
                form(&[
                    ("MessageSid", sid),
                    ("MessageStatus", "failed"),
                    ("ErrorCode", "x1"),
                ]),
                "ErrorCode is not a number",
            ),
        ] {
            assert_eq!(parse_callback(&bad), Err(why));
        }
        assert!(empty_response().body.ends_with("<Response/>"));
    }
}
