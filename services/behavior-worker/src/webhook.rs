//! The webhook path: a request from ingress resolved to its listener, verified, run once per
//! `MessageSid` (the run log for behaviors without side effects, a claim in PostgreSQL first for
//! the others) and answered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::value::to_raw_value;
use switchboard_engine::{CompiledBehavior, RunOptions, RunOutput};
use switchboard_package::WebhookListenerDef;
use switchboard_store::webhook_log::{AnsweredWebhook, Recorded};
use switchboard_store::{Claim, RunRecord};
use switchboard_wire::{WebhookReply, WebhookRequest};
use tracing::field;

use crate::config::Target;
use crate::host::{NoHost, WorkerHost};
use crate::{WebhookResult, Worker, header, runlog, serve_request};

/// A request from ingress, decoded once. The fields of a POSTed URL-encoded form (what Twilio
/// sends) are parsed here, and the signature check, the `MessageSid`, the opt-out keyword and
/// the records share them. The engine reads the request again as PHP would for the behavior's
/// `http_params` (brackets make arrays, names are folded): a decoding with other rules.
pub(crate) struct Webhook {
    pub(crate) req: WebhookRequest,
    /// The body's fields in order; empty unless the request is a form POST.
    pub(crate) form: Vec<(String, String)>,
    form_post: bool,
}

impl Webhook {
    pub(crate) fn decode(req: WebhookRequest) -> Webhook {
        let form_post = is_form_post(&req);
        let form = if form_post {
            switchboard_twilio::signature::parse_form(&req.body)
        } else {
            Vec::new()
        };
        Webhook {
            req,
            form,
            form_post,
        }
    }

    /// Whether the request is a POST of a URL-encoded form (what Twilio posts).
    pub(crate) fn is_form_post(&self) -> bool {
        self.form_post
    }

    /// The first value of a form field.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        form_param(&self.form, name)
    }
}

/// The first value of a form field.
pub(crate) fn form_param<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Whether the request is a POST of a URL-encoded form (what Twilio posts). Only then are the
/// body's fields params, for the signature as for the behavior: PHP fills `$_POST` for POST
/// requests only (the engine's request normalisation does the same).
fn is_form_post(req: &WebhookRequest) -> bool {
    req.method.eq_ignore_ascii_case("POST")
        && header(&req.headers, "content-type").is_some_and(|ct| {
            ct.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

pub(crate) fn valid_guid(guid: &str) -> bool {
    !guid.is_empty()
        && guid.len() <= 40
        && guid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Worker {
    pub(crate) async fn handle(self: Arc<Self>, request: async_nats::service::Request) {
        let span = tracing::info_span!(
            "webhook",
            request_id = field::Empty,
            guid = field::Empty,
            status = field::Empty,
            otel.kind = "consumer",
        );
        serve_request(request, span, "webhook request", |req| async move {
            self.answer(req).await
        })
        .await;
    }

    pub(crate) async fn answer(self: &Arc<Self>, req: WebhookRequest) -> WebhookReply {
        let mut seen = Seen {
            listener: None,
            result: WebhookResult::Answered,
        };
        let reply = match self.try_answer(req, &mut seen).await {
            Ok(reply) => reply,
            Err(e) => {
                // 5xx are opaque to the caller; the cause chain goes to the log once, here.
                tracing::error!(error = format!("{e:#}"), "webhook failed");
                seen.result = WebhookResult::Error;
                WebhookReply::status(503)
            }
        };
        self.opts.metrics.webhook(seen.listener, seen.result);
        reply
    }

    pub(crate) async fn try_answer(
        self: &Arc<Self>,
        req: WebhookRequest,
        seen: &mut Seen,
    ) -> anyhow::Result<WebhookReply> {
        tracing::Span::current().record("guid", &req.guid[..req.guid.len().min(6)]);
        if !valid_guid(&req.guid) {
            seen.result = WebhookResult::NotFound;
            return Ok(WebhookReply::status(404));
        }
        let target = self.target(&req.guid).await?;
        let (listener, behavior, disabled, signers) = match &*target {
            Target::Unknown | Target::NoBehavior => {
                seen.result = WebhookResult::NotFound;
                return Ok(WebhookReply::status(404));
            }
            Target::Ready {
                listener,
                behavior,
                disabled,
                signers,
            } => (listener, behavior, *disabled, signers),
        };
        seen.listener = Some(listener.id);
        if disabled {
            seen.result = WebhookResult::Unavailable;
            return Ok(WebhookReply {
                status: 503,
                headers: vec![("content-type".into(), "text/html; charset=utf-8".into())],
                body: "<h1>503: Temporarily unavailable</h1>".into(),
            });
        }
        let hook = Webhook::decode(req);
        let (req, form) = (&hook.req, &hook.form);
        let mut verified_account = None;
        if listener.verify_signature {
            match Self::webhook_signature_ok(&hook, signers) {
                Ok(account_id) => verified_account = Some(account_id),
                Err(reason) => {
                    tracing::warn!(reason, "rejected a webhook: signature verification failed");
                    seen.result = WebhookResult::Forbidden;
                    return Ok(WebhookReply::status(403));
                }
            }
        }
        let param = |name: &str| hook.param(name).map(str::to_owned);
        let message_sid = param("MessageSid");
        if let Some(sid) = &message_sid
            && !behavior.uses_host()
            && opt_keyword(form).is_none()
        {
            return self
                .answer_without_effects(&hook, listener, behavior, sid, seen)
                .await;
        }
        if let Some(sid) = &message_sid {
            let logged = serde_json::json!({
                "method": req.method, "query": req.query, "params": form, "client_ip": req.client_ip,
            });
            let mut claim = self
                .store
                .claim_message(
                    sid,
                    listener.id,
                    param("AccountSid").as_deref(),
                    &req.request_id,
                    &logged,
                    self.opts.claim_timeout,
                )
                .await?;
            let waited = Instant::now();
            while claim == Claim::InProgress && waited.elapsed() < self.opts.duplicate_wait {
                tokio::time::sleep(Duration::from_millis(50)).await;
                claim = self
                    .store
                    .claim_message(
                        sid,
                        listener.id,
                        None,
                        &req.request_id,
                        &logged,
                        self.opts.claim_timeout,
                    )
                    .await?;
            }
            match claim {
                Claim::New => {}
                Claim::Answered(stored) => {
                    tracing::info!("repeated MessageSid: answering with the stored response");
                    seen.result = WebhookResult::Duplicate;
                    return serde_json::from_value(stored).context("stored response");
                }
                Claim::InProgress => {
                    tracing::warn!("repeated MessageSid still being answered by another delivery");
                    seen.result = WebhookResult::Unavailable;
                    return Ok(WebhookReply::status(503));
                }
            }
        }
        // A message seen for the first time: an opt-out / opt-in keyword updates the account's
        // suppression list (a repeated delivery of an old STOP must not undo a later START).
        let recorded = match &message_sid {
            Some(_) => self.record_opt_keyword(verified_account, form).await,
            None => Ok(()),
        };
        let result = match recorded {
            Ok(()) => {
                self.run_and_record(req, listener, behavior.clone(), message_sid.clone())
                    .await
            }
            Err(e) => Err(e),
        };
        if result.is_err()
            && let Some(sid) = &message_sid
            && let Err(e) = self.store.release_message(sid).await
        {
            tracing::error!(error = %e, "could not release the MessageSid claim");
        }
        result
    }

    /// The fast path for a message whose behavior has no side effects (no HTTP requests, no
    /// behaviors called through the host): run it, then claim the `MessageSid` and record the
    /// answer and the run in one statement, batched with concurrent webhooks. If the
    /// `MessageSid` turns out to be logged already, this run's result is discarded (it changed
    /// nothing) and the stored answer is given, as on the claim-first path: one recorded run
    /// and the same response for every delivery.
    pub(crate) async fn answer_without_effects(
        &self,
        hook: &Webhook,
        listener: &WebhookListenerDef,
        behavior: &CompiledBehavior,
        message_sid: &str,
        seen: &mut Seen,
    ) -> anyhow::Result<WebhookReply> {
        let (req, form) = (&hook.req, &hook.form);
        let started = Instant::now();
        let output = switchboard_engine::run_webhook(
            behavior,
            &engine_request(req),
            &NoHost,
            &RunOptions::real(),
        );
        let took = started.elapsed();
        self.opts.metrics.run("webhook", &output, took);
        let duration_us = took.as_micros() as i64;
        log_run_errors(&output);
        let reply = reply_of(&output);
        let record = AnsweredWebhook {
            message_sid: message_sid.to_string(),
            listener_id: listener.id,
            account_sid: hook.param("AccountSid").map(str::to_owned),
            request_id: req.request_id.clone(),
            request: to_raw_value(&LoggedRequest::of(req, form))?,
            response: to_raw_value(&reply)?,
            behavior_id: behavior.def.id,
            trace_id: switchboard_telemetry::trace_id(&tracing::Span::current()),
            mode: "real".into(),
            exit_state: exit_state(&output)?,
            status: Some(i32::from(output.status)),
            trace: to_raw_value(&output.trace)?,
            errors: to_raw_value(&output.errors)?,
            duration_us,
        };
        if let Some(runlog) = &self.runlog
            && runlog::RunLog::accepts(message_sid)
        {
            match runlog.log(&record).await? {
                runlog::Logged::New(seq) => {
                    // Written to PostgreSQL by this worker after the reply (or, failing
                    // that, from the stream by the sweeper).
                    runlog.write_later(seq, record);
                    return Ok(reply);
                }
                runlog::Logged::Duplicate(first) => {
                    tracing::info!("repeated MessageSid: answering with the logged response");
                    seen.result = WebhookResult::Duplicate;
                    if let Some(first) = first {
                        return serde_json::from_str(first.get()).context("logged response");
                    }
                    // Already copied to PostgreSQL: the message log has it.
                    if let Some(Some(stored)) = self.store.stored_response(message_sid).await? {
                        return serde_json::from_value(stored).context("stored response");
                    }
                    anyhow::bail!(
                        "repeated MessageSid: the first answer is in neither the run log nor the message log"
                    );
                }
            }
        }
        let waited = Instant::now();
        loop {
            let writing = Instant::now();
            let recorded = self.log.record(record.clone()).await?;
            self.opts.metrics.log_write(writing.elapsed());
            if recorded != Recorded::Duplicate {
                return Ok(reply);
            }
            match self.store.stored_response(message_sid).await? {
                Some(Some(stored)) => {
                    tracing::info!("repeated MessageSid: answering with the stored response");
                    seen.result = WebhookResult::Duplicate;
                    return serde_json::from_value(stored).context("stored response");
                }
                // Its first delivery is still running (on the claim-first path); or it failed
                // and released its claim, and this delivery records its own answer.
                Some(None) | None if waited.elapsed() < self.opts.duplicate_wait => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Some(None) | None => {
                    tracing::warn!("repeated MessageSid still being answered by another delivery");
                    seen.result = WebhookResult::Unavailable;
                    return Ok(WebhookReply::status(503));
                }
            }
        }
    }

    /// Records an inbound STOP-like keyword (or `OptOutType`) as a suppression of its `From`
    /// for the verified account, and a START-like one as its end; the behavior's reply is not
    /// affected. Only a keyword touches the database. Without a verified signature the account
    /// is not proven, so nothing is recorded (logged).
    pub(crate) async fn record_opt_keyword(
        &self,
        account: Option<i64>,
        form: &[(String, String)],
    ) -> anyhow::Result<()> {
        use switchboard_twilio::opt_out::OptKeyword;
        let param = |name: &str| form_param(form, name);
        let Some(keyword) = opt_keyword(form) else {
            return Ok(());
        };
        let Some(account_id) = account else {
            tracing::warn!(
                ?keyword,
                "opt keyword on a listener without signature verification: not recorded (its account is not proven)"
            );
            return Ok(());
        };
        let from = param("From").unwrap_or_default();
        if switchboard_twilio::E164::parse(from).is_err() {
            tracing::warn!(
                ?keyword,
                "opt keyword from a sender that is not an E.164 number: not recorded"
            );
            return Ok(());
        }
        let detail: String = param("Body")
            .unwrap_or_default()
            .trim()
            .chars()
            .take(64)
            .collect();
        match keyword {
            OptKeyword::OptOut => {
                let newly = self
                    .store
                    .suppress(
                        account_id,
                        from,
                        switchboard_store::limits::SuppressionReason::Keyword,
                        &detail,
                    )
                    .await?;
                tracing::info!(
                    account_id,
                    newly,
                    "opt-out keyword: the sender is suppressed"
                );
            }
            OptKeyword::OptIn => {
                let lifted = self.store.unsuppress(account_id, from).await?;
                tracing::info!(
                    account_id,
                    lifted,
                    "opt-in keyword: the sender's suppression lifted"
                );
            }
        }
        Ok(())
    }

    pub(crate) async fn run_and_record(
        self: &Arc<Self>,
        req: &WebhookRequest,
        listener: &WebhookListenerDef,
        behavior: Arc<CompiledBehavior>,
        message_sid: Option<String>,
    ) -> anyhow::Result<WebhookReply> {
        let engine_req = engine_request(req);
        let started = Instant::now();
        let output: RunOutput = if behavior.uses_host() {
            // The host blocks on NATS and the database: keep it off the async workers. The run
            // stays in the request's span (its log lines, the trace of its HTTP requests).
            let host = WorkerHost::new(self.clone());
            let b = behavior.clone();
            tokio::task::spawn_blocking(move || {
                let _in = host.span.clone().entered();
                switchboard_engine::run_webhook(&b, &engine_req, &host, &RunOptions::real())
            })
            .await
            .context("behavior run panicked")?
        } else {
            switchboard_engine::run_webhook(&behavior, &engine_req, &NoHost, &RunOptions::real())
        };
        let took = started.elapsed();
        self.opts.metrics.run("webhook", &output, took);
        let duration_us = took.as_micros() as i64;
        log_run_errors(&output);
        let reply = reply_of(&output);
        let run = RunRecord {
            behavior_id: behavior.def.id,
            listener_id: Some(listener.id),
            message_sid: message_sid.clone(),
            request_id: Some(req.request_id.clone()),
            trace_id: switchboard_telemetry::trace_id(&tracing::Span::current()),
            mode: "real".into(),
            exit_state: exit_state(&output)?,
            status: Some(i32::from(output.status)),
            trace: serde_json::to_value(&output.trace)?,
            errors: serde_json::to_value(&output.errors)?,
            duration_us,
        };
        let response = serde_json::to_value(&reply)?;
        self.store
            .complete_run(&run, message_sid.as_ref().map(|_| &response))
            .await?;
        Ok(reply)
    }
}

/// What a webhook's handling found, for its metrics.
pub(crate) struct Seen {
    /// The listener its guid named, if any.
    pub(crate) listener: Option<i64>,
    pub(crate) result: WebhookResult,
}

/// The request as the message log keeps it.
#[derive(serde::Serialize)]
pub(crate) struct LoggedRequest<'a> {
    method: &'a str,
    query: &'a str,
    params: &'a [(String, String)],
    client_ip: &'a str,
}

impl<'a> LoggedRequest<'a> {
    pub(crate) fn of(req: &'a WebhookRequest, form: &'a [(String, String)]) -> Self {
        LoggedRequest {
            method: &req.method,
            query: &req.query,
            params: form,
            client_ip: &req.client_ip,
        }
    }
}

pub(crate) fn engine_request(req: &WebhookRequest) -> switchboard_engine::WebhookRequest {
    switchboard_engine::WebhookRequest {
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.query.clone(),
        headers: req.headers.clone(),
        body: req.body.clone(),
        client_ip: req.client_ip.clone(),
    }
}

pub(crate) fn reply_of(output: &RunOutput) -> WebhookReply {
    WebhookReply {
        status: output.status,
        headers: output
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        body: output.body.clone(),
    }
}

pub(crate) fn exit_state(output: &RunOutput) -> anyhow::Result<String> {
    Ok(serde_json::to_value(output.exit)?
        .as_str()
        .unwrap_or_default()
        .to_string())
}

pub(crate) fn log_run_errors(output: &RunOutput) {
    for e in &output.errors {
        tracing::warn!(node_id = e.node_id, error = %e.message, "behavior run error");
    }
}

/// The opt-out or opt-in keyword an inbound message is, if any: Twilio's `OptOutType`, else
/// its `Body`. Such messages take the claim-first path, which records the keyword before the
/// behavior runs.
pub(crate) fn opt_keyword(
    form: &[(String, String)],
) -> Option<switchboard_twilio::opt_out::OptKeyword> {
    use switchboard_twilio::opt_out;
    form_param(form, "OptOutType")
        .and_then(opt_out::from_opt_out_type)
        .or_else(|| opt_out::keyword(form_param(form, "Body").unwrap_or_default()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use switchboard_wire as wire;

    pub(crate) fn request(method: &str, content_type: &str) -> WebhookRequest {
        WebhookRequest {
            version: wire::WEBHOOK_REQUEST_VERSION,
            request_id: "r1".into(),
            guid: "g".into(),
            path: String::new(),
            public_url: "https://bot.example.com/webhooks/g".into(),
            method: method.into(),
            query: String::new(),
            headers: vec![("Content-Type".into(), content_type.into())],
            body: b"Body=hi&MessageSid=SM1".to_vec(),
            client_ip: "127.0.0.1".into(),
        }
    }

    #[test]
    fn form_fields_are_params_of_posts_only() {
        const FORM: &str = "application/x-www-form-urlencoded";
        let post = |method: &str, content_type: &str| {
            let hook = Webhook::decode(request(method, content_type));
            // The fields are decoded only when they are params.
            assert_eq!(hook.param("Body").is_some(), hook.is_form_post());
            hook.is_form_post()
        };
        assert!(post("POST", FORM));
        assert!(post(
            "post",
            "Application/X-WWW-Form-Urlencoded; charset=UTF-8"
        ));
        assert!(!post("PUT", FORM));
        assert!(!post("GET", FORM));
        assert!(!post("POST", "application/json"));
        // The engine agrees: a PUT's form body is no http_params.
        let engine = |method: &str| {
            let r = request(method, FORM);
            switchboard_engine::WebhookRequest {
                method: r.method,
                path: r.path,
                query: r.query,
                headers: r.headers,
                body: r.body,
                client_ip: r.client_ip,
            }
            .normalize()
            .param_text("body")
            .map(str::to_owned)
        };
        assert_eq!(engine("POST").as_deref(), Some("hi"));
        assert_eq!(engine("PUT").as_deref(), Some(""));
    }
}
