//! `switchboard send` and `switchboard lookup`: build a job as `docs/jobs.md` describes, with a
//! fresh idempotency key (also its `Nats-Msg-Id`), publish it to JetStream and, when asked to
//! wait, read its final event from a `Switchboard-Reply-To` inbox. The arguments are checked
//! with the contract's own rules before anything is published, and the errors name the option.

use std::time::Duration;

use anyhow::{Context as _, bail};
use async_nats::HeaderMap;
use futures::StreamExt as _;
use serde::Serialize;
use switchboard_store::Store;
use switchboard_wire::outbound::{
    AccountRef, EventKind, HEADER_MSG_ID, HEADER_REPLY_TO, JOB_VERSION, JobEvent, JobSubjects,
    LookupApi, LookupJob, Problem, SendSmsJob,
};
use tracing::Instrument as _;

/// A job ended without doing what it was for (`failed` or `dead_lettered`): the command has
/// printed the outcome and exits non-zero.
#[derive(Debug, thiserror::Error)]
#[error("the job {0}")]
pub struct Unsuccessful(pub String);

/// The account a job uses: `--account` (a numeric id, else a name), checked against the store
/// when there is one; without `--account`, the only connected account.
pub async fn resolve_account(
    given: Option<&str>,
    store: Option<&Store>,
) -> anyhow::Result<AccountRef> {
    let Some(given) = given.map(str::trim) else {
        let Some(store) = store else {
            bail!(
                "--account is required when DATABASE_URL is not set (give an account id or name from `switchboard accounts list`)"
            );
        };
        let accounts = store.list_accounts().await?;
        return match accounts.as_slice() {
            [only] => Ok(AccountRef::Id(only.id)),
            [] => bail!("no connected account: add one with `switchboard accounts add`"),
            several => {
                let names: Vec<String> = several
                    .iter()
                    .map(|a| format!("{} ({})", a.id, a.name))
                    .collect();
                bail!(
                    "{} connected accounts: choose one with --account (id or name): {}",
                    several.len(),
                    names.join(", ")
                )
            }
        };
    };
    if given.is_empty() {
        bail!("--account is empty");
    }
    let account = match given.parse::<i64>() {
        Ok(id) if id > 0 => AccountRef::Id(id),
        Ok(_) => bail!("--account {given}: account ids are positive"),
        Err(_) => AccountRef::Name(given.to_owned()),
    };
    if let Some(store) = store {
        let known = match &account {
            AccountRef::Id(id) => store.account(*id).await?.is_some(),
            AccountRef::Name(name) => store.account_by_name(name).await?.is_some(),
        };
        if !known {
            bail!(
                "--account {given}: no connected account has this id or name (see `switchboard accounts list`)"
            );
        }
    }
    Ok(account)
}

/// A fresh idempotency key: `cli-` and a UUID.
pub fn fresh_key() -> String {
    format!("cli-{}", uuid::Uuid::new_v4())
}

/// What `switchboard send` was given.
#[derive(Debug, Clone)]
pub struct SendArgs {
    pub to: String,
    pub body: String,
    /// An E.164 number, an alphanumeric sender ID, or a Messaging Service SID (`MG…`).
    pub from: Option<String>,
}

/// The send-SMS job for `args`, checked; errors name the option at fault.
pub fn send_job(args: &SendArgs, account: AccountRef, key: &str) -> anyhow::Result<SendSmsJob> {
    let Some(from) = args.from.as_deref().map(str::trim) else {
        bail!(
            "--from is required: a sender number (E.164), an alphanumeric sender ID, or a Messaging Service SID (MG…); or set SWITCHBOARD_SMS_FROM"
        );
    };
    let service = from.starts_with("MG") && from.len() == 34;
    let job = SendSmsJob {
        version: JOB_VERSION,
        job_id: Some(key.to_owned()),
        idempotency_key: key.to_owned(),
        account,
        to: args.to.trim().to_owned(),
        from: (!service).then(|| from.to_owned()),
        messaging_service_sid: service.then(|| from.to_owned()),
        body: Some(args.body.clone()),
        media_urls: Vec::new(),
        status_callback: None,
        validity_period: None,
        metadata: serde_json::Value::Null,
    };
    check(&job.validate(), |field| match field {
        "to" => "--to",
        "from" | "messaging_service_sid" => "--from",
        "body" => "--body",
        "account.id" | "account.name" => "--account",
        _ => "",
    })?;
    Ok(job)
}

/// The lookup job: Lookup v1 with `v1_types` when given, else v2 with `fields`.
pub fn lookup_job(
    number: &str,
    fields: &[String],
    v1_types: &[String],
    account: AccountRef,
    key: &str,
) -> anyhow::Result<LookupJob> {
    let api = if v1_types.is_empty() {
        LookupApi::V2 {
            fields: fields.to_vec(),
        }
    } else {
        LookupApi::V1 {
            types: v1_types.to_vec(),
        }
    };
    let job = LookupJob {
        version: JOB_VERSION,
        job_id: Some(key.to_owned()),
        idempotency_key: key.to_owned(),
        account,
        number: number.trim().to_owned(),
        api,
        metadata: serde_json::Value::Null,
    };
    check(&job.validate(), |field| {
        if field == "number" {
            "NUMBER"
        } else if field.starts_with("api.v2") {
            "--field"
        } else if field.starts_with("api.v1") {
            "--v1-type"
        } else if field.starts_with("account") {
            "--account"
        } else {
            ""
        }
    })?;
    Ok(job)
}

/// Fails with every problem, named by the option it concerns.
fn check(problems: &[Problem], option: impl Fn(&str) -> &'static str) -> anyhow::Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    let text: Vec<String> = problems
        .iter()
        .map(|p| match option(&p.field) {
            "" => p.to_string(),
            name => format!("{name}: {}", p.message),
        })
        .collect();
    bail!("{}", text.join("; "))
}

/// JetStream's acknowledgement of a published job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    pub job_id: String,
    pub idempotency_key: String,
    pub stream: String,
    pub seq: u64,
    /// JetStream had a job with this key already (within its duplicate window).
    pub duplicate: bool,
}

/// A published job and, when waited for, its final event.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub published: Published,
    pub event: Option<JobEvent>,
}

impl Outcome {
    /// True unless the final event says the job failed or was dead-lettered.
    pub fn succeeded(&self) -> bool {
        self.event
            .as_ref()
            .is_none_or(|e| matches!(e.kind, EventKind::Sent | EventKind::Completed))
    }
}

/// Publishes `job` (serialized) to `subject` with `Nats-Msg-Id` = `key`; with `wait`, also
/// sets `Switchboard-Reply-To` to a fresh inbox (subscribed first) and waits that long for the
/// final event.
pub async fn submit<T: Serialize>(
    nats: &async_nats::Client,
    subject: &str,
    job: &T,
    job_id: &str,
    key: &str,
    wait: Option<Duration>,
) -> anyhow::Result<Outcome> {
    let mut headers = HeaderMap::new();
    headers.insert(HEADER_MSG_ID, key);
    let publication = Publication {
        subject,
        headers,
        payload: switchboard_wire::encode(job),
        job_id,
        key,
        wait_for_duplicate: true,
    };
    publish(nats, publication, wait).await
}

/// A job as it is published: its subject, headers (`Nats-Msg-Id` among them when it has a key)
/// and payload bytes.
pub struct Publication<'a> {
    pub subject: &'a str,
    pub headers: HeaderMap,
    pub payload: Vec<u8>,
    pub job_id: &'a str,
    pub key: &'a str,
    /// Whether to wait for the outcome when JetStream answers that it had the key already (no
    /// new event will come for this publication; the first one's may).
    pub wait_for_duplicate: bool,
}

/// The token after `_INBOX.` in the CLI's `Switchboard-Reply-To` subjects (its NATS user may
/// subscribe to `_INBOX.switchboard-cli.>`, docs/nats-security.md).
pub const REPLY_INBOX_TOKEN: &str = "switchboard-cli";

/// A fresh `Switchboard-Reply-To` subject, `_INBOX.switchboard-cli.<unique>`: under the prefix
/// the outbound service publishes final events to by default
/// ([`switchboard_wire::outbound::REPLY_TO_PREFIX`]), whatever the client's own inbox prefix.
pub fn reply_inbox(nats: &async_nats::Client) -> String {
    let fresh = nats.new_inbox();
    let unique = fresh.rsplit('.').next().unwrap_or(fresh.as_str());
    format!(
        "{}{REPLY_INBOX_TOKEN}.{unique}",
        switchboard_wire::outbound::REPLY_TO_PREFIX
    )
}

/// Publishes a job as given (`dlq replay` republishes dead-lettered jobs byte for byte); with
/// `wait`, sets `Switchboard-Reply-To` to a fresh inbox (subscribed first) and waits that long
/// for the final event.
///
/// The publication and the wait are a producer span, `switchboard.publish`, the root of the
/// job's trace: its W3C `traceparent` goes in the headers (a republished job's old one becomes
/// a link).
pub async fn publish(
    nats: &async_nats::Client,
    mut publication: Publication<'_>,
    wait: Option<Duration>,
) -> anyhow::Result<Outcome> {
    let span = tracing::info_span!(
        "switchboard.publish",
        otel.kind = "producer",
        messaging.system = "nats",
        messaging.destination.name = publication.subject,
        job_id = publication.job_id,
    );
    if let Some(earlier) = switchboard_telemetry::nats_context(Some(&publication.headers)) {
        switchboard_telemetry::add_link(&span, &earlier);
    }
    switchboard_telemetry::inject_nats(&span, &mut publication.headers);
    publish_traced(nats, publication, wait)
        .instrument(span)
        .await
}

/// [`publish`] inside its span.
async fn publish_traced(
    nats: &async_nats::Client,
    publication: Publication<'_>,
    wait: Option<Duration>,
) -> anyhow::Result<Outcome> {
    let Publication {
        subject,
        mut headers,
        payload,
        job_id,
        key,
        wait_for_duplicate,
    } = publication;
    let mut inbox = None;
    if wait.is_some() {
        let reply_to = reply_inbox(nats);
        let subscription = nats
            .subscribe(reply_to.clone())
            .await
            .context("subscribing to the reply inbox")?;
        nats.flush().await.context("NATS")?;
        headers.insert(HEADER_REPLY_TO, reply_to.as_str());
        inbox = Some(subscription);
    }
    let js = async_nats::jetstream::new(nats.clone());
    let ack = js
        .publish_with_headers(subject.to_owned(), headers, payload.into())
        .await
        .with_context(|| format!("publishing to {subject}"))?
        .await
        .map_err(|e| {
            anyhow::anyhow!("publishing to {subject}: {e} (is the outbound service running? it creates the job stream)")
        })?;
    let published = Published {
        job_id: job_id.to_owned(),
        idempotency_key: key.to_owned(),
        stream: ack.stream.clone(),
        seq: ack.sequence,
        duplicate: ack.duplicate,
    };
    let wait = wait.filter(|_| wait_for_duplicate || !published.duplicate);
    let (Some(wait), Some(mut inbox)) = (wait, inbox) else {
        return Ok(Outcome {
            published,
            event: None,
        });
    };
    let message = tokio::time::timeout(wait, inbox.next()).await;
    let message = match message {
        Ok(Some(message)) => message,
        Ok(None) => bail!("the NATS connection closed before the outcome arrived"),
        Err(_) => bail!(
            "no outcome within {} s: job {job_id} is stored ({} #{}) and will still be worked on; is the outbound service running?",
            wait.as_secs(),
            published.stream,
            published.seq
        ),
    };
    let event: JobEvent = serde_json::from_slice(&message.payload)
        .context("reading the job's outcome (not a JobEvent)")?;
    Ok(Outcome {
        published,
        event: Some(event),
    })
}

/// The job subjects under a prefix.
pub fn subjects(prefix: &str) -> JobSubjects {
    JobSubjects::new(prefix)
}

/// The outcome as text: one line per fact.
pub fn render_text(outcome: &Outcome) -> String {
    let Some(event) = &outcome.event else {
        let p = &outcome.published;
        let duplicate = if p.duplicate {
            " (a duplicate: JetStream already had this key)"
        } else {
            ""
        };
        return format!(
            "published job {} to {} #{}{duplicate}\n",
            p.job_id, p.stream, p.seq
        );
    };
    let mut out = String::new();
    match event.kind {
        EventKind::Sent => {
            out.push_str(&format!(
                "sent: {} (status {})\n",
                event.twilio_sid.as_deref().unwrap_or("-"),
                event.status.as_deref().unwrap_or("-")
            ));
        }
        EventKind::Completed => {
            let result = event.result.clone().unwrap_or_default();
            if result["found"] == false {
                out.push_str("found: false (Twilio does not know this number)\n");
            } else {
                out.push_str("found: true\n");
                flatten("", &result["lookup"], &mut out);
            }
        }
        kind => {
            let error = event.error.clone();
            let (code, message) = error
                .as_ref()
                .map(|e| (e.code.as_str(), e.message.as_str()))
                .unwrap_or(("-", "-"));
            out.push_str(&format!("{}: {code}: {message}\n", kind.as_str()));
            if let Some(link) = error.as_ref().and_then(|e| e.more_info.as_deref()) {
                out.push_str(&format!("more info: {link}\n"));
            }
        }
    }
    out.push_str(&format!("job: {}\n", event.job_id));
    out
}

/// `key: value` lines of the non-null leaves of a JSON object.
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, v, out);
            }
        }
        serde_json::Value::Null => {}
        serde_json::Value::String(s) => out.push_str(&format!("{prefix}: {s}\n")),
        other => out.push_str(&format!("{prefix}: {other}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(to: &str, body: &str, from: Option<&str>) -> SendArgs {
        SendArgs {
            to: to.into(),
            body: body.into(),
            from: from.map(str::to_owned),
        }
    }

    #[test]
    fn send_arguments_are_checked_with_the_contracts_rules() {
        let job = send_job(
            &args("+14155551234", "hi", Some("+15005550006")),
            AccountRef::Id(1),
            "k",
        )
        .unwrap();
        assert_eq!(job.from.as_deref(), Some("+15005550006"));
        assert_eq!(job.id(), "k");
        let mg = "MG0123456789abcdef0123456789abcdef";
        let job = send_job(
            &args("+14155551234", "hi", Some(mg)),
            AccountRef::Id(1),
            "k",
        )
        .unwrap();
        assert_eq!(job.messaging_service_sid.as_deref(), Some(mg));
        assert_eq!(job.from, None);

        let e = |a: SendArgs| {
            send_job(&a, AccountRef::Id(1), "k")
                .unwrap_err()
                .to_string()
        };
        assert!(e(args("555-1234", "hi", Some("+15005550006"))).starts_with("--to: must be E.164"));
        assert!(
            e(args(
                "+14155551234",
                &"x".repeat(1601),
                Some("+15005550006")
            ))
            .contains("--body: 1601 characters; at most 1600")
        );
        assert!(e(args("+14155551234", "", Some("+15005550006"))).contains("--body"));
        assert!(e(args("+14155551234", "hi", None)).starts_with("--from is required"));
        assert!(e(args("+14155551234", "hi", Some("12345"))).starts_with("--from:"));
    }

    #[test]
    fn lookup_arguments_are_checked() {
        let job = lookup_job(
            "+14155551234",
            &["caller_name".into()],
            &[],
            AccountRef::Id(1),
            "k",
        )
        .unwrap();
        assert_eq!(
            job.api,
            LookupApi::V2 {
                fields: vec!["caller_name".into()]
            }
        );
        let job = lookup_job(
            "+14155551234",
            &[],
            &["carrier".into()],
            AccountRef::Id(1),
            "k",
        )
        .unwrap();
        assert_eq!(
            job.api,
            LookupApi::V1 {
                types: vec!["carrier".into()]
            }
        );
        let e = lookup_job(
            "4155551234",
            &["carrier".into()],
            &[],
            AccountRef::Id(1),
            "k",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("NUMBER: must be E.164"), "{e}");
        assert!(e.contains("--field: unknown \"carrier\""), "{e}");
    }

    #[test]
    fn outcomes_render_as_text() {
        let published = Published {
            job_id: "k".into(),
            idempotency_key: "k".into(),
            stream: "SWITCHBOARD_JOBS".into(),
            seq: 7,
            duplicate: false,
        };
        let event: JobEvent = serde_json::from_value(serde_json::json!({
            "version": 1, "job_id": "k", "job": "lookup", "kind": "completed", "at": "x", "attempt": 1,
            "result": {"found": true, "lookup": {"valid": true, "caller_name": {"caller_name": "ACME", "error_code": null}}}
        }))
        .unwrap();
        let outcome = Outcome {
            published: published.clone(),
            event: Some(event),
        };
        assert!(outcome.succeeded());
        assert_eq!(
            render_text(&outcome),
            "found: true\nvalid: true\ncaller_name.caller_name: ACME\njob: k\n"
        );
        let failed: JobEvent = serde_json::from_value(serde_json::json!({
            "version": 1, "job_id": "k", "job": "sms.send", "kind": "failed", "at": "x", "attempt": 1,
            "error": {"code": "21610", "message": "Attempt to send to unsubscribed recipient", "more_info": "https://www.twilio.com/docs/errors/21610"}
        }))
        .unwrap();
        let outcome = Outcome {
            published,
            event: Some(failed),
        };
        assert!(!outcome.succeeded());
        assert!(
            render_text(&outcome).starts_with(
                "failed: 21610: Attempt to send to unsubscribed recipient\nmore info: "
            )
        );
    }
}
