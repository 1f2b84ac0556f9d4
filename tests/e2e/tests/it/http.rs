//! Behaviors' HTTP requests end to end: the seed package's macros run with `switchboard run`
//! (and the NATS subject) reach the Twilio sandbox through the outbound service; the SSRF guard
//! and the credentials rule (docs/semantics.md, Decision 11) hold on the outbound HTTP subject.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use switchboard_e2e::http::{OutboundHttp, Recorder};
use switchboard_e2e::{ACCOUNT_SID, AUTH_TOKEN, Stack};
use switchboard_test_support::sandbox;
use switchboard_wire::{self as wire, HttpJob, HttpJobResult};

const SEND_SMS: &str = "behavior_41";
const LOOK_UP: &str = "behavior_42";
const WEBHOOK: &str = "behavior_43";

fn kv(s: &str) -> switchboard::args::KeyValue {
    s.parse().unwrap()
}

/// `switchboard run`'s own request and transport.
async fn run(
    stack: &Stack,
    behavior: &str,
    vars: &[&str],
) -> anyhow::Result<wire::RunBehaviorResult> {
    let vars: Vec<_> = vars.iter().map(|v| kv(v)).collect();
    let request = switchboard::run::request("bot_twilio", behavior, &vars)?;
    let nats = stack.nats.client().await?;
    switchboard::run::run_behavior(&nats, &stack.subjects, &request, Duration::from_secs(60)).await
}

/// The secret in every form it could leak in.
fn assert_no_secret(text: &str, what: &str) {
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}"));
    assert!(!text.contains(AUTH_TOKEN), "{what} holds the auth token");
    assert!(!text.contains(&basic), "{what} holds the Basic credentials");
}

async fn sandbox_requests(fake: &twilio_fake::Running) -> Vec<Value> {
    reqwest::get(format!("{}/_fake/requests", fake.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_seed_macros_reach_the_sandbox_through_outbound() {
    let stack = Stack::new().await.unwrap();
    let fake = sandbox().await.unwrap();
    let config = outbound::http::HttpConfig::new(stack.subjects.prefix())
        .with_twilio_bases(&fake.base_url(), &fake.base_url())
        .unwrap();
    let http = OutboundHttp::start(stack.store.clone(), &stack.nats.url(), config)
        .await
        .unwrap();
    let worker = stack.worker().await.unwrap();

    // "Send SMS message": docs/semantics.md §9.
    let sent = run(
        &stack,
        SEND_SMS,
        &["var_to=+15551234567", "var_body=Hello world"],
    )
    .await
    .unwrap();
    assert_eq!(sent.errors, Vec::<String>::new());
    assert_eq!(sent.exit_state, "complete");
    assert_eq!(sent.behavior_title, "Send SMS message");
    let expected_body = "To=%2B15551234567&From=%2B15557654321&Body=Hello%20world";
    assert_eq!(sent.http_requests.len(), 1);
    let request = &sent.http_requests[0];
    assert_eq!(request["method"], "POST");
    assert_eq!(
        request["url"],
        format!("https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages")
    );
    assert_eq!(request["body"], expected_body);
    assert_eq!(request["authenticated_with"], "twilio");
    assert_eq!(sent.vars["_http_response"]["info"]["http_code"], 201);
    assert_eq!(
        sent.vars["_http_response"]["info"]["url"],
        format!("https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages"),
        "the behavior sees the URL it asked for, not the sandbox's address"
    );

    let received = sandbox_requests(&fake).await;
    assert_eq!(received.len(), 1, "{received:#?}");
    let create = &received[0];
    assert_eq!(create["method"], "POST");
    assert_eq!(
        create["path"],
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages")
    );
    assert_eq!(
        create["auth_user"], ACCOUNT_SID,
        "Basic auth of the account"
    );
    assert_eq!(create["response_status"], 201);
    assert_eq!(
        create["form"],
        json!([
            ["To", "+15551234567"],
            ["From", "+15557654321"],
            ["Body", "Hello world"]
        ])
    );
    let header = |name: &str| {
        create["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == name)
            .map(|h| h[1].clone())
    };
    assert_eq!(
        header("content-type"),
        Some(json!("application/x-www-form-urlencoded"))
    );
    assert_eq!(
        header("content-length"),
        Some(json!(expected_body.len().to_string())),
        "the body went as rendered"
    );
    assert_eq!(create["openapi_violations"], json!([]), "{create:#}");

    // "Look up a number": `response` is the sandbox's JSON answer.
    let looked = run(&stack, LOOK_UP, &["var_phone_number=+15551234567"])
        .await
        .unwrap();
    assert_eq!(looked.errors, Vec::<String>::new());
    let lookup_path = "/v1/PhoneNumbers/%2B15551234567?Type=carrier&Type=caller-name";
    let direct: Value = reqwest::Client::new()
        .get(format!("{}{lookup_path}", fake.base_url()))
        .basic_auth(ACCOUNT_SID, Some(AUTH_TOKEN))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(direct["phone_number"], "+15551234567", "{direct:#}");
    assert_eq!(looked.vars["response"], direct);
    let received = sandbox_requests(&fake).await;
    let lookup = &received[1];
    assert_eq!(lookup["method"], "GET");
    assert_eq!(lookup["path"], "/v1/PhoneNumbers/%2B15551234567");
    assert_eq!(lookup["query"], "Type=carrier&Type=caller-name");
    assert_eq!(lookup["auth_user"], ACCOUNT_SID);

    // The NATS subject, as another system (or `nats req`) would use it: the same result.
    let nats = stack.nats.client().await.unwrap();
    let answer = nats
        .request(
            stack.subjects.behavior_run(),
            serde_json::to_vec(&json!({
                "version": 1, "bot": "bot_twilio", "behavior": LOOK_UP,
                "vars": {"var_phone_number": "+15551234567"}
            }))
            .unwrap()
            .into(),
        )
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(&answer.payload).unwrap();
    assert_eq!(answer["outcome"], "completed", "{answer:#}");
    assert_eq!(answer["vars"]["response"], direct);
    assert_eq!(answer["errors"], json!([]));

    // Recorded like webhook runs; no secret in the records or in what was answered.
    let send_id = stack.store.resolve_behavior(SEND_SMS).await.unwrap();
    let look_id = stack.store.resolve_behavior(LOOK_UP).await.unwrap();
    assert_eq!(stack.store.count_runs(send_id).await.unwrap(), 1);
    assert_eq!(stack.store.count_runs(look_id).await.unwrap(), 2);
    let records: Vec<String> = switchboard_store::sqlx::query_scalar(
        "SELECT row_to_json(r)::text FROM behavior_runs r ORDER BY id",
    )
    .fetch_all(stack.store.pool())
    .await
    .unwrap();
    assert_eq!(records.len(), 3);
    assert!(
        records[0].contains("Authenticating with twilio"),
        "{}",
        records[0]
    );
    for r in &records {
        assert_no_secret(r, "a run record");
    }
    for result in [&sent, &looked] {
        assert_no_secret(&serde_json::to_string(result).unwrap(), "a run result");
        assert_no_secret(&switchboard::run::render_text(result), "the text output");
    }
    assert_no_secret(&answer.to_string(), "the NATS answer");

    worker.stop().await.unwrap();
    http.stop().await.unwrap();
    fake.stop().await.unwrap();
}

#[tokio::test]
async fn run_requests_that_cannot_run_are_refused_with_a_reason() {
    let stack = Stack::new().await.unwrap();
    let worker = stack.worker().await.unwrap();
    for (behavior, vars, wanted) in [
        (SEND_SMS, vec!["var_nope=1"], "has no variable 'var_nope'"),
        (WEBHOOK, vec![], "only event.macro.bot behaviors can be run"),
        (
            "behavior_99",
            vec![],
            "has no behavior with the id or uid 'behavior_99'",
        ),
    ] {
        let err = run(&stack, behavior, &vars).await.unwrap_err().to_string();
        assert!(err.contains(wanted), "{behavior}: {err}");
    }
    let nats = stack.nats.client().await.unwrap();
    let request = switchboard::run::request("bot_nope", SEND_SMS, &[]).unwrap();
    let err =
        switchboard::run::run_behavior(&nats, &stack.subjects, &request, Duration::from_secs(30))
            .await
            .unwrap_err()
            .to_string();
    assert!(
        err.contains("no bot has the id or uid 'bot_nope' (unknown_bot)"),
        "{err}"
    );
    let answer = nats
        .request(
            stack.subjects.behavior_run(),
            b"{\"version\":1}".to_vec().into(),
        )
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(&answer.payload).unwrap();
    assert_eq!(answer["outcome"], "rejected");
    assert_eq!(answer["code"], "invalid_request");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("missing field"),
        "{answer}"
    );

    // Disabled: the switch is announced; wait for the worker to have dropped its cache.
    stack
        .env
        .set_behavior_disabled(LOOK_UP, true)
        .await
        .unwrap();
    let mut last = String::new();
    for _ in 0..100 {
        last = match run(&stack, LOOK_UP, &[]).await {
            Err(e) => e.to_string(),
            Ok(_) => String::from("it ran"),
        };
        if last.contains("(disabled)") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(last.contains("is disabled (disabled)"), "{last}");
    assert_eq!(
        stack
            .store
            .count_runs(stack.store.resolve_behavior(LOOK_UP).await.unwrap())
            .await
            .unwrap(),
        0,
        "nothing ran"
    );
    worker.stop().await.unwrap();

    let err = run(&stack, SEND_SMS, &[]).await.unwrap_err().to_string();
    assert!(err.contains("no behavior worker is running"), "{err}");
}

/// One job on the outbound HTTP subject.
async fn job(nats: &async_nats::Client, stack: &Stack, job: &HttpJob) -> HttpJobResult {
    let answer = nats
        .request(stack.subjects.outbound_http(), wire::encode(job).into())
        .await
        .unwrap();
    wire::decode(&answer.payload).unwrap()
}

fn get(url: &str) -> HttpJob {
    HttpJob {
        version: wire::HTTP_JOB_VERSION,
        method: "GET".into(),
        url: url.into(),
        headers: Vec::new(),
        body: String::new(),
        account_id: None,
        ignore_ssl_validation: false,
    }
}

fn refusal(result: &HttpJobResult) -> String {
    match result {
        HttpJobResult::Error { message } => message.clone(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn the_ssrf_guard_and_the_credentials_rule_hold() {
    let stack = Stack::new().await.unwrap();
    let server = Recorder::start().await.unwrap();
    let port = server.port;
    let mut config = outbound::http::HttpConfig::new(stack.subjects.prefix());
    // The allow-list names the host `localhost`: the same server by address stays refused.
    config.allow = "localhost".parse().unwrap();
    let http = OutboundHttp::start(stack.store.clone(), &stack.nats.url(), config)
        .await
        .unwrap();
    let nats = stack.nats.client().await.unwrap();

    for (url, why) in [
        (
            format!("http://127.0.0.1:{port}/ok"),
            "127.0.0.1 is a loopback address",
        ),
        (
            "http://10.0.0.1/".to_string(),
            "10.0.0.1 is a private address",
        ),
        (
            "http://169.254.169.254/latest/meta-data/".to_string(),
            "169.254.169.254 is a link-local address",
        ),
        (
            format!("http://[::1]:{port}/ok"),
            "::1 is a loopback address",
        ),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/ok"),
            "is a loopback address",
        ),
    ] {
        let message = refusal(&job(&nats, &stack, &get(&url)).await);
        assert!(
            message.starts_with("refused by the outbound policy: "),
            "{url}: {message}"
        );
        assert!(message.contains(why), "{url}: {message}");
        assert!(message.contains("OUTBOUND_HTTP_ALLOW"), "{url}: {message}");
    }
    assert!(server.requests().is_empty(), "nothing reached the server");

    // The allow-list lets the local server through: method, headers and body as given.
    let mut post = get(&format!("http://localhost:{port}/ok?a=1"));
    post.method = "post".into();
    post.headers = vec![
        (
            "Content-Type".into(),
            "application/x-www-form-urlencoded".into(),
        ),
        ("X-Thing".into(), "one".into()),
    ];
    post.body = "To=%2B15551234567&From=%2B15557654321&Body=Hello%20world".into();
    match job(&nats, &stack, &post).await {
        HttpJobResult::Response {
            status,
            headers,
            body,
            url,
        } => {
            assert_eq!(status, 200);
            assert_eq!(body, b"{\"ok\":true}");
            assert!(
                headers.contains(&("x-seen".into(), "1".into())),
                "{headers:?}"
            );
            assert_eq!(url, format!("http://localhost:{port}/ok?a=1"));
        }
        other => panic!("{other:?}"),
    }
    let received = server.requests();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, "POST");
    assert_eq!(received[0].path, "/ok?a=1");
    assert_eq!(
        received[0].body,
        post.body.as_bytes(),
        "the body byte for byte"
    );
    assert_eq!(received[0].header("x-thing"), Some("one"));
    assert_eq!(received[0].header("authorization"), None);

    // A redirect from the allowed server to a private address is refused at that hop.
    for target in [
        format!("http://127.0.0.1:{port}/ok"),
        "http://10.0.0.1/".into(),
    ] {
        let url = format!("http://localhost:{port}/redirect?to={target}");
        let message = refusal(&job(&nats, &stack, &get(&url)).await);
        assert!(message.contains("redirect refused"), "{message}");
    }
    assert_eq!(
        server.requests().len(),
        3,
        "only the redirecting requests arrived"
    );
    // An allowed redirect is followed.
    let url = format!("http://localhost:{port}/redirect?to=http://localhost:{port}/final");
    match job(&nats, &stack, &get(&url)).await {
        HttpJobResult::Response { status, url, .. } => {
            assert_eq!(status, 200);
            assert_eq!(url, format!("http://localhost:{port}/final"));
        }
        other => panic!("{other:?}"),
    }

    // Credentials only for the account's allowed hosts; otherwise nothing is sent.
    let account = stack.store.list_accounts().await.unwrap()[0].id;
    let before = server.requests().len();
    for account_id in [account, 999_999] {
        let mut with_account = get(&format!("http://localhost:{port}/ok"));
        with_account.account_id = Some(account_id);
        match job(&nats, &stack, &with_account).await {
            HttpJobResult::CredentialsRefused { message } => {
                assert!(
                    message.contains(&format!("connected account {account_id}")),
                    "{message}"
                );
                assert_no_secret(&message, "the refusal");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(server.requests().len(), before, "nothing was sent");

    // Invalid jobs are answered with what is wrong.
    let mut bad = get("http://localhost/");
    bad.version = 2;
    assert!(refusal(&job(&nats, &stack, &bad).await).contains("invalid HTTP job: version 2"));
    let message = refusal(&job(&nats, &stack, &get("file:///etc/passwd")).await);
    assert!(
        message.contains("scheme must be http or https"),
        "{message}"
    );
    let answer = nats
        .request(stack.subjects.outbound_http(), b"{}".to_vec().into())
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(&answer.payload).unwrap();
    assert_eq!(answer["outcome"], "error");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .starts_with("malformed HTTP job"),
        "{answer}"
    );

    http.stop().await.unwrap();
}
