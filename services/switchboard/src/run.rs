//! `switchboard run BOT BEHAVIOR [--var NAME=VALUE]...`: asks a running behavior worker to run a
//! macro behavior now (`{prefix}.behavior.run`, docs/jobs.md) and shows what it did.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::bail;
use switchboard_wire::{
    self as wire, RUN_BEHAVIOR_VERSION, RunBehaviorReply, RunBehaviorRequest, RunBehaviorResult,
    Subjects,
};
use tracing::Instrument as _;

use crate::args::KeyValue;

/// The request for a bot, a behavior and `--var` inputs; a variable given twice is an error.
pub fn request(bot: &str, behavior: &str, vars: &[KeyValue]) -> anyhow::Result<RunBehaviorRequest> {
    if bot.trim().is_empty() {
        bail!("BOT is empty: give a bot id or uid (see `switchboard bots list`)");
    }
    if behavior.trim().is_empty() {
        bail!(
            "BEHAVIOR is empty: give a behavior id or uid (see `switchboard behaviors list --bot {bot}`)"
        );
    }
    Ok(RunBehaviorRequest {
        version: RUN_BEHAVIOR_VERSION,
        bot: bot.trim().to_owned(),
        behavior: behavior.trim().to_owned(),
        vars: crate::args::var_inputs(vars)?.into_iter().collect(),
    })
}

/// Sends the request and waits (at most `timeout`) for the worker's answer. A rejection is an
/// error with the worker's message.
///
/// The request is a client span, `switchboard.run`, the root of the run's trace: its W3C
/// `traceparent` goes in the request's headers, so the worker's run and the HTTP requests it
/// makes are part of it.
pub async fn run_behavior(
    nats: &async_nats::Client,
    subjects: &Subjects,
    request: &RunBehaviorRequest,
    timeout: Duration,
) -> anyhow::Result<RunBehaviorResult> {
    let span = tracing::info_span!(
        "switchboard.run",
        otel.kind = "client",
        bot = request.bot.as_str(),
        behavior = request.behavior.as_str(),
    );
    let mut headers = async_nats::HeaderMap::new();
    switchboard_telemetry::inject_nats(&span, &mut headers);
    run_traced(nats, subjects, request, timeout, headers)
        .instrument(span)
        .await
}

/// [`run_behavior`] inside its span.
async fn run_traced(
    nats: &async_nats::Client,
    subjects: &Subjects,
    request: &RunBehaviorRequest,
    timeout: Duration,
    headers: async_nats::HeaderMap,
) -> anyhow::Result<RunBehaviorResult> {
    let subject = subjects.behavior_run();
    let answer = tokio::time::timeout(
        timeout,
        nats.request_with_headers(subject.clone(), headers, wire::encode(request).into()),
    )
    .await;
    let message = match answer {
        Err(_) => bail!(
            "no answer from a behavior worker within {} s (is it running? is the behavior slow?)",
            timeout.as_secs()
        ),
        Ok(Err(e)) => match e.kind() {
            async_nats::client::RequestErrorKind::NoResponders => {
                bail!("no behavior worker is running (nothing answers on {subject})")
            }
            async_nats::client::RequestErrorKind::TimedOut => bail!(
                "no answer from a behavior worker in time (NATS request timeout; is it overloaded?)"
            ),
            _ => bail!("asking a behavior worker on {subject}: {e}"),
        },
        Ok(Ok(message)) => message,
    };
    match wire::decode::<RunBehaviorReply>(&message.payload) {
        Ok(RunBehaviorReply::Completed(result)) => Ok(*result),
        Ok(RunBehaviorReply::Rejected { code, message, .. }) => bail!("{message} ({code})"),
        Err(e) => bail!("the behavior worker's answer is malformed: {e}"),
    }
}

/// The readable report of a run.
pub fn render_text(r: &RunBehaviorResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Ran \"{}\" (behavior {}) of bot \"{}\" ({}): {}, run {}",
        r.behavior_title, r.behavior_id, r.bot_name, r.bot_id, r.exit_state, r.run_id
    );
    if !r.http_requests.is_empty() {
        out.push_str("HTTP requests:\n");
        for h in &r.http_requests {
            let text = |k: &str| h.get(k).and_then(|v| v.as_str()).unwrap_or_default();
            let _ = write!(out, "  {} {}", text("method"), text("url"));
            if let Some(name) = h.get("authenticated_with").and_then(|v| v.as_str()) {
                let _ = write!(out, " (authenticated with {name})");
            }
            out.push('\n');
        }
    }
    out.push_str("Variables:\n");
    if r.vars.is_empty() {
        out.push_str("  (none)\n");
    }
    for (k, v) in &r.vars {
        let shown = match v {
            serde_json::Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
            other => serde_json::to_string_pretty(other)
                .unwrap_or_default()
                .replace('\n', "\n    "),
        };
        let _ = writeln!(out, "  {k} = {shown}");
    }
    if !r.errors.is_empty() {
        out.push_str("Errors:\n");
        for e in &r.errors {
            let _ = writeln!(out, "  {e}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(s: &str) -> KeyValue {
        s.parse().unwrap()
    }

    #[test]
    fn requests_carry_the_vars_once() {
        let r = request(
            "bot_twilio",
            " 44 ",
            &[kv("var_to=+1555"), kv("var_body=a=b")],
        )
        .unwrap();
        assert_eq!(r.behavior, "44");
        assert_eq!(r.vars["var_body"], "a=b");
        let err = request("b", "x", &[kv("var_to=1"), kv("var_to=2")]).unwrap_err();
        assert!(err.to_string().contains("more than once"), "{err}");
        assert!(request("", "x", &[]).is_err());
        assert!(request("b", " ", &[]).is_err());
    }

    #[test]
    fn the_text_report_names_requests_vars_and_errors() {
        let r = RunBehaviorResult {
            version: 1,
            run_id: 9,
            bot_id: 1,
            bot_name: "Twilio Bot".into(),
            behavior_id: 2,
            behavior_title: "Look up a number".into(),
            exit_state: "complete".into(),
            vars: serde_json::from_str(r#"{"var_phone_number":"+1555","response":{"a":1}}"#)
                .unwrap(),
            errors: vec!["boom".into()],
            http_requests: vec![serde_json::json!({
                "method": "GET", "url": "https://lookups.twilio.com/v1/x", "authenticated_with": "twilio"
            })],
        };
        let text = render_text(&r);
        assert!(
            text.starts_with(
                "Ran \"Look up a number\" (behavior 2) of bot \"Twilio Bot\" (1): complete, run 9\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  GET https://lookups.twilio.com/v1/x (authenticated with twilio)\n"),
            "{text}"
        );
        assert!(text.contains("  var_phone_number = \"+1555\"\n"), "{text}");
        assert!(
            text.contains("  response = {\n      \"a\": 1\n    }\n"),
            "{text}"
        );
        assert!(text.contains("Errors:\n  boom\n"), "{text}");
    }
}
