//! `switchboard-compose-check`: checks a Switchboard started with `docker compose` from the host,
//! through the published ports only, as a user would: webhooks signed as Twilio signs them to
//! ingress's HTTP port, jobs published by a NATS client to the NATS port, what the Twilio
//! sandbox received from its `/_fake/` inspection API. Each subcommand is one step of
//! scripts/compose-test; it asserts, and exits 1 with what it expected and what it got.
//!
//! It uses none of the project's crates (the Twilio signature is computed here, in a few lines),
//! so a bug in them cannot cancel out in the check.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use base64::Engine as _;
use clap::{Args, Parser, Subcommand};
use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};

/// Checks a running `docker compose` Switchboard through its published ports.
#[derive(Debug, Parser)]
#[command(name = "switchboard-compose-check")]
struct Cli {
    /// Ingress, as published on the host.
    #[arg(long, env = "CHECK_HTTP_URL", default_value = "http://127.0.0.1:8080")]
    http: String,
    /// NATS, as published on the host.
    #[arg(long, env = "CHECK_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// The NATS user jobs are published and events read as: the integrator of
    /// deploy/nats/nats-server.conf, as another system would.
    #[arg(long, env = "CHECK_NATS_USER", default_value = "integrator")]
    nats_user: String,
    /// Its password (NATS_INTEGRATOR_PASSWORD of the compose project's env file).
    #[arg(long, env = "CHECK_NATS_PASSWORD", hide_env_values = true)]
    nats_password: Option<String>,
    /// The twilio-fake sandbox, as published on the host.
    #[arg(
        long,
        env = "CHECK_SANDBOX_URL",
        default_value = "http://127.0.0.1:8090"
    )]
    sandbox: String,
    /// Prefix of the NATS subjects (SWITCHBOARD_SUBJECT_PREFIX of the services).
    #[arg(long, default_value = "switchboard")]
    prefix: String,
    /// Longest wait of any one step, in seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Webhook {
    /// The webhook URL `switchboard webhooks list` prints: what ingress checks signatures
    /// against (its PUBLIC_BASE_URL plus the path); the request goes to --http plus its path.
    #[arg(long)]
    webhook_url: String,
    /// The account's auth token, which signs the webhooks.
    #[arg(long)]
    token: String,
    /// The directory of the golden answers (tests/golden/seed).
    #[arg(long)]
    golden: PathBuf,
}

#[derive(Debug, Args, Clone)]
struct SmsJob {
    /// The job's idempotency key and job id.
    #[arg(long)]
    id: String,
    /// The connected account's name.
    #[arg(long, default_value = "twilio")]
    account: String,
    /// Recipient, E.164.
    #[arg(long)]
    to: String,
    /// Sender, E.164.
    #[arg(long)]
    from: String,
    /// Text (also how the sandbox's messages are matched).
    #[arg(long)]
    body: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The seed bot answers signed webhooks byte for byte as tests/golden/seed says (help, HELP,
    /// logo, link, hi, hostile text, a trailing space); a wrong, missing or stale signature gets
    /// 403, an unknown webhook 404.
    Webhooks {
        #[command(flatten)]
        webhook: Webhook,
        /// Also send each webhook once more with the MessageSid of the first answer and
        /// another Body: the stored answer must come back (written to --sids-file, one line
        /// "SID golden-file" each, for a later `replays`).
        #[arg(long)]
        sids_file: Option<PathBuf>,
    },
    /// Webhooks with the MessageSids of an earlier `webhooks --sids-file` and a different Body
    /// get the answers stored then: the message log survived.
    Replays {
        #[command(flatten)]
        webhook: Webhook,
        #[arg(long)]
        sids_file: PathBuf,
    },
    /// Publishes a send-SMS job with a JetStream publish (Nats-Msg-Id = its key); the
    /// acknowledgement must be new (not a duplicate).
    Publish {
        #[command(flatten)]
        sms: SmsJob,
    },
    /// A published send-SMS job reached the sandbox exactly once, its events (accepted, sent
    /// with the sandbox's SID, status delivered) are in the events stream, and the sandbox's
    /// signed status callbacks to --callback-url were answered 200 by ingress.
    ExpectSms {
        #[command(flatten)]
        sms: SmsJob,
        /// Where the status callbacks must go (STATUS_CALLBACK_BASE_URL + /twilio/status).
        #[arg(long)]
        callback_url: String,
    },
    /// `publish` then `expect-sms`; publishing the same job again is a duplicate and sends
    /// nothing more.
    Sms {
        #[command(flatten)]
        sms: SmsJob,
        /// Where the status callbacks must go (STATUS_CALLBACK_BASE_URL + /twilio/status).
        #[arg(long)]
        callback_url: String,
    },
    /// The sandbox received exactly COUNT messages to --to with --body.
    ExpectSandbox {
        #[arg(long)]
        to: String,
        #[arg(long)]
        body: String,
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
    /// Publishes a job whose key was sent before (without Nats-Msg-Id, so JetStream cannot
    /// de-duplicate it): the outbound service must acknowledge it without sending, which it can
    /// only know from its database.
    ExpectAlreadySent {
        #[command(flatten)]
        sms: SmsJob,
    },
    /// Prints the last sequence of the jobs stream; with --at-least, fails when it is lower
    /// (a NATS that lost its storage starts again at 0).
    JobsStreamSeq {
        #[arg(long)]
        at_least: Option<u64>,
    },
    /// NATS lets no client in without credentials (nor with a wrong password), and the
    /// integrator user may not run macros, send behaviors' HTTP requests, listen to webhook
    /// requests nor take jobs from the job stream: the server refuses each (permissions
    /// violation).
    NatsAuth,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let name = format!("{:?}", cli.command)
        .split([' ', '{', '('])
        .next()
        .unwrap_or_default()
        .to_owned();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard-compose-check {name}: FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Ctx {
    http: reqwest::Client,
    http_base: String,
    nats_url: String,
    nats_user: String,
    nats_password: Option<String>,
    sandbox: String,
    prefix: String,
    timeout: Duration,
}

async fn run(cli: Cli) -> Result<()> {
    let ctx = Ctx {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()?,
        http_base: cli.http.trim_end_matches('/').to_owned(),
        nats_url: cli.nats.clone(),
        nats_user: cli.nats_user.clone(),
        nats_password: cli.nats_password.clone(),
        sandbox: cli.sandbox.trim_end_matches('/').to_owned(),
        prefix: cli.prefix.clone(),
        timeout: Duration::from_secs(cli.timeout),
    };
    match cli.command {
        Command::Webhooks { webhook, sids_file } => webhooks(&ctx, &webhook, sids_file).await,
        Command::Replays { webhook, sids_file } => replays(&ctx, &webhook, &sids_file).await,
        Command::Publish { sms } => {
            let js = jetstream(&ctx).await?;
            let seq = publish(&ctx, &js, &sms, true, false).await?;
            println!("published job {} (stream sequence {seq})", sms.id);
            Ok(())
        }
        Command::ExpectSms { sms, callback_url } => {
            let js = jetstream(&ctx).await?;
            expect_sms(&ctx, &js, &sms, &callback_url).await
        }
        Command::Sms { sms, callback_url } => {
            let js = jetstream(&ctx).await?;
            publish(&ctx, &js, &sms, true, false).await?;
            expect_sms(&ctx, &js, &sms, &callback_url).await?;
            publish(&ctx, &js, &sms, true, true).await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            expect_sandbox(&ctx, &sms.to, &sms.body, 1).await?;
            println!("publishing job {} again: a duplicate, nothing sent", sms.id);
            Ok(())
        }
        Command::ExpectSandbox { to, body, count } => {
            expect_sandbox(&ctx, &to, &body, count).await?;
            println!("the sandbox received {count} message(s) to {to} with {body:?}");
            Ok(())
        }
        Command::ExpectAlreadySent { sms } => expect_already_sent(&ctx, &sms).await,
        Command::NatsAuth => nats_auth(&ctx).await,
        Command::JobsStreamSeq { at_least } => {
            let js = jetstream(&ctx).await?;
            let name = stream_name(&ctx.prefix, "JOBS");
            let mut stream = js
                .get_stream(&name)
                .await
                .map_err(|e| anyhow!("stream {name}: {e}"))?;
            let last = stream.info().await?.state.last_sequence;
            if let Some(min) = at_least {
                ensure!(
                    last >= min,
                    "expected stream {name} to have reached sequence {min} (its state must survive), got {last}"
                );
            }
            println!("{last}");
            Ok(())
        }
    }
}

// --- webhooks --------------------------------------------------------------------------------

/// Twilio's X-Twilio-Signature: base64(HMAC-SHA1(token, url + each POST param's name and value,
/// sorted by name)).
fn twilio_signature(token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut data = url.to_owned();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).expect("any key length");
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The form Twilio posts for an inbound SMS.
fn inbound_sms(sid: &str, from: &str, body: &str) -> Vec<(String, String)> {
    [
        ("ToCountry", "US"),
        ("ToState", "CA"),
        ("SmsMessageSid", sid),
        ("NumMedia", "0"),
        ("ToCity", ""),
        ("FromZip", ""),
        ("SmsSid", sid),
        ("FromState", "CA"),
        ("SmsStatus", "received"),
        ("FromCity", ""),
        ("Body", body),
        ("FromCountry", "US"),
        ("To", "+15557654321"),
        ("ToZip", ""),
        ("NumSegments", "1"),
        ("MessageSid", sid),
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("From", from),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A fresh `SM…` SID.
fn message_sid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let n = N.fetch_add(1, Ordering::Relaxed) as u128;
    format!(
        "SM{:032x}",
        (nanos << 16) ^ n ^ ((std::process::id() as u128) << 100)
    )
}

/// The path (and query) of an absolute URL.
fn path_of(url: &str) -> Result<&str> {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("{url:?} is not an absolute URL"))?;
    Ok(rest.find('/').map_or("/", |i| &rest[i..]))
}

struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

async fn post_webhook(
    ctx: &Ctx,
    w: &Webhook,
    params: &[(String, String)],
    signature: Option<String>,
) -> Result<Answer> {
    let url = format!("{}{}", ctx.http_base, path_of(&w.webhook_url)?);
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let mut request = ctx
        .http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("user-agent", "TwilioProxy/1.1")
        .body(body);
    if let Some(signature) = signature {
        request = request.header("x-twilio-signature", signature);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    Ok(Answer {
        status: response.status().as_u16(),
        content_type: response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned(),
        body: response.text().await?,
    })
}

fn golden(w: &Webhook, file: &str) -> Result<String> {
    std::fs::read_to_string(w.golden.join(file))
        .with_context(|| format!("reading {}", w.golden.join(file).display()))
}

/// One signed webhook whose answer must be `file` of the golden directory.
async fn expect_answer(ctx: &Ctx, w: &Webhook, sid: &str, text: &str, file: &str) -> Result<()> {
    let params = inbound_sms(sid, "+15551234567", text);
    let signature = twilio_signature(&w.token, &w.webhook_url, &params);
    let answer = post_webhook(ctx, w, &params, Some(signature)).await?;
    let want = golden(w, file)?;
    ensure!(
        answer.status == 200,
        "Body {text:?} (MessageSid {sid}): expected status 200 with {file}, got {} with {:?}",
        answer.status,
        answer.body
    );
    ensure!(
        answer.content_type == "text/xml; charset=utf-8",
        "Body {text:?}: expected Content-Type \"text/xml; charset=utf-8\", got {:?}",
        answer.content_type
    );
    ensure!(
        answer.body == want,
        "Body {text:?} (MessageSid {sid}): expected the bytes of {file}:\n{want:?}\ngot:\n{:?}",
        answer.body
    );
    Ok(())
}

const GOLDEN_CASES: &[(&str, &str)] = &[
    ("help", "help.xml"),
    ("HELP", "help.xml"),
    ("logo", "logo.xml"),
    ("link", "link.xml"),
    ("hi", "hi.xml"),
    ("help ", "help-trailing-space.xml"),
    ("Hi & <bye> 'q' \"d\"", "hostile.xml"),
];

async fn webhooks(ctx: &Ctx, w: &Webhook, sids_file: Option<PathBuf>) -> Result<()> {
    let mut sids = String::new();
    for (text, file) in GOLDEN_CASES {
        let sid = message_sid();
        expect_answer(ctx, w, &sid, text, file).await?;
        sids.push_str(&format!("{sid} {file}\n"));
        println!("webhook Body {text:?}: {file}, byte for byte");
    }
    // A retry of a message already answered (same MessageSid, any Body) gets the stored answer.
    let sid = message_sid();
    expect_answer(ctx, w, &sid, "logo", "logo.xml").await?;
    expect_answer(ctx, w, &sid, "help", "logo.xml")
        .await
        .context("a repeated MessageSid must get the stored answer")?;
    println!("a repeated MessageSid gets the stored answer");

    let params = inbound_sms(&message_sid(), "+15551234567", "help");
    let host_url = format!("{}{}", ctx.http_base, path_of(&w.webhook_url)?);
    let mut bad = vec![
        (
            "signed with another token",
            Some(twilio_signature("not-the-token", &w.webhook_url, &params)),
        ),
        ("without a signature", None),
    ];
    if host_url != w.webhook_url {
        // Ingress checks against its public URL, not the address the request came in at.
        bad.push((
            "signed for the host's URL instead of the webhook URL",
            Some(twilio_signature(&w.token, &host_url, &params)),
        ));
    }
    for (what, signature) in bad {
        let answer = post_webhook(ctx, w, &params, signature).await?;
        ensure!(
            answer.status == 403,
            "a webhook {what}: expected 403, got {} with {:?}",
            answer.status,
            answer.body
        );
        println!("a webhook {what}: 403");
    }
    // A valid signature for another body.
    let signature = twilio_signature(&w.token, &w.webhook_url, &params);
    let mut tampered = params.clone();
    for (k, v) in &mut tampered {
        if k == "Body" {
            *v = "logo".into();
        }
    }
    let answer = post_webhook(ctx, w, &tampered, Some(signature)).await?;
    ensure!(
        answer.status == 403,
        "a webhook whose Body was changed after signing: expected 403, got {} with {:?}",
        answer.status,
        answer.body
    );
    println!("a webhook whose Body was changed after signing: 403");
    // An unknown webhook.
    let unknown = Webhook {
        webhook_url: format!(
            "{}/webhooks/00000000-0000-0000-0000-000000000000",
            w.webhook_url
                .split("/webhooks/")
                .next()
                .unwrap_or(&w.webhook_url)
        ),
        token: w.token.clone(),
        golden: w.golden.clone(),
    };
    let signature = twilio_signature(&w.token, &unknown.webhook_url, &params);
    let answer = post_webhook(ctx, &unknown, &params, Some(signature)).await?;
    ensure!(
        answer.status == 404,
        "a webhook to an unknown guid: expected 404, got {} with {:?}",
        answer.status,
        answer.body
    );
    println!("a webhook to an unknown guid: 404");
    if let Some(path) = sids_file {
        std::fs::write(&path, sids).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

async fn replays(ctx: &Ctx, w: &Webhook, sids_file: &Path) -> Result<()> {
    let text = std::fs::read_to_string(sids_file)
        .with_context(|| format!("reading {}", sids_file.display()))?;
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (sid, file) = line
            .split_once(' ')
            .ok_or_else(|| anyhow!("bad line {line:?} in {}", sids_file.display()))?;
        // Another Body: only a stored answer can give the first one back.
        let other = if file == "link.xml" { "logo" } else { "link" };
        expect_answer(ctx, w, sid, other, file)
            .await
            .with_context(|| format!("MessageSid {sid} was answered with {file} before"))?;
        n += 1;
    }
    ensure!(n > 0, "{} lists no MessageSid", sids_file.display());
    println!("{n} earlier MessageSids get their stored answers");
    Ok(())
}

// --- jobs ------------------------------------------------------------------------------------

/// The connection options of the check's NATS user (`--nats-user`, `--nats-password`).
fn nats_options(ctx: &Ctx) -> async_nats::ConnectOptions {
    let options = async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(5));
    match &ctx.nats_password {
        Some(password) => options.user_and_password(ctx.nats_user.clone(), password.clone()),
        None => options,
    }
}

async fn jetstream(ctx: &Ctx) -> Result<async_nats::jetstream::Context> {
    let client = nats_options(ctx)
        .connect(&ctx.nats_url)
        .await
        .with_context(|| {
            format!(
                "connecting to NATS at {} as {}",
                ctx.nats_url, ctx.nats_user
            )
        })?;
    Ok(async_nats::jetstream::new(client))
}

// --- NATS authentication and permissions ---------------------------------------------------

async fn nats_auth(ctx: &Ctx) -> Result<()> {
    use async_nats::ConnectErrorKind::AuthorizationViolation;
    let anonymous = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(&ctx.nats_url)
        .await;
    match anonymous {
        Err(e) if e.kind() == AuthorizationViolation => {
            println!("a client without credentials is refused ({e})")
        }
        Err(e) => bail!("expected NATS to refuse a client without credentials, got: {e}"),
        Ok(_) => bail!("expected NATS to refuse a client without credentials; it let it in"),
    }
    let wrong = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .user_and_password(ctx.nats_user.clone(), "not-the-password".into())
        .connect(&ctx.nats_url)
        .await;
    ensure!(
        wrong
            .as_ref()
            .is_err_and(|e| e.kind() == AuthorizationViolation),
        "expected NATS to refuse {} with a wrong password, got {:?}",
        ctx.nats_user,
        wrong.map(|_| "connected")
    );
    println!("{} with a wrong password is refused", ctx.nats_user);

    let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = errors.clone();
    let client = nats_options(ctx)
        .request_timeout(Some(Duration::from_secs(2)))
        .event_callback(move |event| {
            let sink = sink.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    sink.lock().unwrap().push(e.to_string().to_lowercase());
                }
            }
        })
        .connect(&ctx.nats_url)
        .await
        .with_context(|| format!("connecting to NATS as {}", ctx.nats_user))?;
    let p = &ctx.prefix;
    let _ = client
        .request(format!("{p}.behavior.run"), "{}".into())
        .await;
    let _ = client
        .request(format!("{p}.outbound.http"), "{}".into())
        .await;
    let _webhooks = client
        .queue_subscribe(format!("{p}.webhook.request"), "behavior-worker".into())
        .await?;
    let js = async_nats::jetstream::new(client.clone());
    let jobs = stream_name(p, "JOBS");
    let _ = js
        .create_consumer_on_stream(
            async_nats::jetstream::consumer::pull::Config {
                durable_name: Some("compose-check".into()),
                filter_subject: format!("{p}.jobs.sms.send"),
                ..Default::default()
            },
            &jobs,
        )
        .await;
    client.flush().await?;
    let expected = [
        format!("publish to \"{p}.behavior.run\""),
        format!("publish to \"{p}.outbound.http\""),
        format!("subscription to \"{p}.webhook.request\""),
        format!(
            "publish to \"$js.api.consumer.create.{}",
            jobs.to_lowercase()
        ),
    ];
    let deadline = Instant::now() + ctx.timeout;
    loop {
        let seen = errors.lock().unwrap().clone();
        let missing: Vec<&String> = expected
            .iter()
            .filter(|want| {
                !seen
                    .iter()
                    .any(|e| e.contains("permissions violation") && e.contains(want.as_str()))
            })
            .collect();
        if missing.is_empty() {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "expected NATS to refuse {} each of {missing:?} (permissions violation), got {seen:?}",
            ctx.nats_user
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{} may not run macros, send HTTP jobs, join the workers' queue group or take jobs",
        ctx.nats_user
    );
    Ok(())
}

/// `switchboard.x-y` → `SWITCHBOARD_X_Y_{suffix}` (docs/jobs.md).
fn stream_name(prefix: &str, suffix: &str) -> String {
    format!(
        "{}_{suffix}",
        prefix.to_uppercase().replace(['.', '-'], "_")
    )
}

fn job_json(sms: &SmsJob) -> Value {
    json!({
        "version": 1,
        "job_id": sms.id,
        "idempotency_key": sms.id,
        "account": {"name": sms.account},
        "to": sms.to,
        "from": sms.from,
        "body": sms.body,
        "metadata": {"by": "switchboard-compose-check"},
    })
}

/// A JetStream publish of the job; returns its stream sequence. `expect_duplicate`: the
/// acknowledgement must say duplicate (else: must not).
async fn publish(
    ctx: &Ctx,
    js: &async_nats::jetstream::Context,
    sms: &SmsJob,
    with_msg_id: bool,
    expect_duplicate: bool,
) -> Result<u64> {
    let subject = format!("{}.jobs.sms.send", ctx.prefix);
    let mut headers = async_nats::HeaderMap::new();
    if with_msg_id {
        headers.insert("Nats-Msg-Id", sms.id.as_str());
    }
    let payload = serde_json::to_vec(&job_json(sms))?;
    let ack = tokio::time::timeout(ctx.timeout, async {
        js.publish_with_headers(subject.clone(), headers, payload.into())
            .await?
            .await
            .map_err(anyhow::Error::from)
    })
    .await
    .map_err(|_| {
        anyhow!(
            "no JetStream acknowledgement for {subject} within {:?}",
            ctx.timeout
        )
    })?
    .with_context(|| format!("publishing job {} to {subject}", sms.id))?;
    ensure!(
        ack.duplicate == expect_duplicate,
        "job {}: expected an acknowledgement with duplicate={expect_duplicate}, got stream {} sequence {} duplicate={}",
        sms.id,
        ack.stream,
        ack.sequence,
        ack.duplicate
    );
    Ok(ack.sequence)
}

async fn get_json(ctx: &Ctx, path: &str) -> Result<Value> {
    let url = format!("{}{path}", ctx.sandbox);
    let response = ctx
        .http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    ensure!(
        response.status().is_success(),
        "GET {url}: expected 200, got {}",
        response.status()
    );
    response
        .json()
        .await
        .with_context(|| format!("GET {url}: not JSON"))
}

/// The sandbox's messages to `to` with `body`.
async fn sandbox_messages(ctx: &Ctx, to: &str, body: &str) -> Result<Vec<Value>> {
    let all = get_json(ctx, "/_fake/messages").await?;
    let all = all
        .as_array()
        .ok_or_else(|| anyhow!("/_fake/messages: expected an array, got {all}"))?;
    Ok(all
        .iter()
        .filter(|m| m["message"]["to"] == to && m["message"]["body"] == body)
        .cloned()
        .collect())
}

/// Waits until the sandbox has `count` such messages, then makes sure no more arrive.
async fn expect_sandbox(ctx: &Ctx, to: &str, body: &str, count: usize) -> Result<Vec<Value>> {
    let deadline = Instant::now() + ctx.timeout;
    let mut found = sandbox_messages(ctx, to, body).await?;
    while found.len() < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        found = sandbox_messages(ctx, to, body).await?;
    }
    if found.len() == count {
        tokio::time::sleep(Duration::from_secs(2)).await;
        found = sandbox_messages(ctx, to, body).await?;
    }
    ensure!(
        found.len() == count,
        "expected the sandbox to have received {count} message(s) to {to} with Body {body:?}, got {}: {}",
        found.len(),
        serde_json::to_string(&found)?
    );
    Ok(found)
}

/// Every event of job `id` in the events stream, oldest first.
async fn job_events(
    ctx: &Ctx,
    js: &async_nats::jetstream::Context,
    id: &str,
) -> Result<Vec<Value>> {
    let name = stream_name(&ctx.prefix, "JOB_EVENTS");
    let mut stream = js
        .get_stream(&name)
        .await
        .map_err(|e| anyhow!("stream {name}: {e}"))?;
    let state = stream.info().await?.state.clone();
    let mut events = Vec::new();
    if state.messages == 0 {
        return Ok(events);
    }
    for seq in state.first_sequence..=state.last_sequence {
        let Ok(message) = stream.get_raw_message(seq).await else {
            continue;
        };
        let Ok(event) = serde_json::from_slice::<Value>(&message.payload) else {
            continue;
        };
        if event["job_id"] == id {
            events.push(event);
        }
    }
    Ok(events)
}

fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e["status"].as_str() {
            Some(status) if e["kind"] == "status" => format!("status:{status}"),
            _ => e["kind"].as_str().unwrap_or("?").to_owned(),
        })
        .collect()
}

async fn expect_sms(
    ctx: &Ctx,
    js: &async_nats::jetstream::Context,
    sms: &SmsJob,
    callback_url: &str,
) -> Result<()> {
    let messages = expect_sandbox(ctx, &sms.to, &sms.body, 1).await?;
    let message = &messages[0];
    let sid = message["message"]["sid"]
        .as_str()
        .ok_or_else(|| anyhow!("sandbox message without a sid: {message}"))?
        .to_owned();
    ensure!(
        message["message"]["from"] == sms.from.as_str(),
        "expected the message to be from {}, got {}",
        sms.from,
        message["message"]["from"]
    );
    // The job's trace context rides along in the query (the callback links to its trace).
    let asked = message["status_callback"].as_str().unwrap_or_default();
    ensure!(
        is_callback_url(asked, callback_url),
        "expected the create to ask for status callbacks at {callback_url}, got {}",
        message["status_callback"]
    );
    println!(
        "job {}: the sandbox received it once ({sid}), with StatusCallback {callback_url}",
        sms.id
    );

    // Its events: accepted, sent (with the sandbox's SID), status delivered (from the callback).
    let deadline = Instant::now() + ctx.timeout;
    let want = ["accepted", "sent", "status:delivered"];
    let mut events = job_events(ctx, js, &sms.id).await?;
    while !want.iter().all(|k| kinds(&events).iter().any(|h| h == k)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        events = job_events(ctx, js, &sms.id).await?;
    }
    let have = kinds(&events);
    ensure!(
        want.iter().all(|k| have.iter().any(|h| h == k)),
        "job {}: expected events {want:?} in the events stream, got {have:?}",
        sms.id
    );
    for event in &events {
        if event["kind"] == "sent" || event["kind"] == "status" {
            ensure!(
                event["twilio_sid"] == sid.as_str(),
                "job {}: expected its {} event to carry the sandbox's SID {sid}, got {event}",
                sms.id,
                event["kind"]
            );
        }
    }
    ensure!(
        !have.iter().any(|k| k == "failed" || k == "dead_lettered"),
        "job {}: expected no failure, got events {have:?}",
        sms.id
    );
    println!("job {}: events {have:?}", sms.id);

    // The sandbox's callbacks reached ingress and were accepted (signature verified).
    let callbacks = get_json(ctx, "/_fake/callbacks").await?;
    let mine: Vec<&Value> = callbacks
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|c| c["message_sid"] == sid.as_str())
                .collect()
        })
        .unwrap_or_default();
    let statuses: BTreeSet<&str> = mine.iter().filter_map(|c| c["status"].as_str()).collect();
    ensure!(
        statuses.contains("sent") && statuses.contains("delivered"),
        "message {sid}: expected status callbacks for sent and delivered, got {}",
        serde_json::to_string(&mine)?
    );
    for c in &mine {
        ensure!(
            is_callback_url(c["url"].as_str().unwrap_or_default(), callback_url)
                && c["response_status"] == 200,
            "message {sid}: expected every status callback to go to {callback_url} and be answered 200 by ingress, got {c}"
        );
    }
    println!(
        "message {sid}: status callbacks {statuses:?} answered 200 by ingress at {callback_url}"
    );
    Ok(())
}

async fn expect_already_sent(ctx: &Ctx, sms: &SmsJob) -> Result<()> {
    let js = jetstream(ctx).await?;
    let before = job_events(ctx, &js, &sms.id).await?.len();
    let seq = publish(ctx, &js, sms, false, false).await?;
    // The jobs stream is a work queue: the job leaves it once the outbound service acknowledges.
    let name = stream_name(&ctx.prefix, "JOBS");
    let mut stream = js
        .get_stream(&name)
        .await
        .map_err(|e| anyhow!("stream {name}: {e}"))?;
    let deadline = Instant::now() + ctx.timeout;
    loop {
        let state = stream.info().await?.state.clone();
        if state.messages == 0 || state.first_sequence > seq {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "job {} (sequence {seq}): expected the outbound service to acknowledge it, still in {name}: {state:?}",
                sms.id
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    expect_sandbox(ctx, &sms.to, &sms.body, 0)
        .await
        .context("a job whose key was already sent must not be sent again")?;
    let after = job_events(ctx, &js, &sms.id).await?;
    ensure!(
        !kinds(&after[before..])
            .iter()
            .any(|k| k == "sent" || k == "failed"),
        "job {}: expected no new outcome for a job already sent, got {:?}",
        sms.id,
        kinds(&after[before..])
    );
    println!(
        "job {} published again without Nats-Msg-Id: acknowledged, not sent again",
        sms.id
    );
    Ok(())
}

/// `url` is the status callback URL outbound gives Twilio: `callback_url`, with the job's trace
/// context in the query when it has one (`?traceparent=00-…`).
fn is_callback_url(url: &str, callback_url: &str) -> bool {
    url == callback_url
        || url
            .strip_prefix(callback_url)
            .is_some_and(|rest| rest.starts_with("?traceparent=00-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_twilios_canonical_vector() {
        // The canonical vector of Twilio's helper libraries' tests (python, node, java).
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            twilio_signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn paths_and_stream_names() {
        assert_eq!(
            path_of("http://ingress:8080/webhooks/abc").unwrap(),
            "/webhooks/abc"
        );
        assert_eq!(path_of("http://ingress:8080").unwrap(), "/");
        assert_eq!(
            stream_name("switchboard", "JOB_EVENTS"),
            "SWITCHBOARD_JOB_EVENTS"
        );
        assert_eq!(stream_name("a.b-c", "JOBS"), "A_B_C_JOBS");
        assert_ne!(message_sid(), message_sid());
    }

    #[test]
    fn a_callback_url_may_carry_the_jobs_trace_context() {
        let base = "http://ingress:8080/twilio/status";
        assert!(is_callback_url(base, base));
        assert!(is_callback_url(
            "http://ingress:8080/twilio/status?traceparent=00-1691e7eb3f7d1c39bf687dd96258204b-a61ba1382ce033a0-01",
            base
        ));
        assert!(!is_callback_url(
            "http://ingress:8080/twilio/status?x=1",
            base
        ));
        assert!(!is_callback_url("http://evil/twilio/status", base));
    }
}
