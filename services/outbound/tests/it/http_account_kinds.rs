//! Connected accounts for HTTP services beyond Twilio (issue 12): each kind's secret arrives
//! exactly where it should (Bearer, Basic, a named header, a named query parameter) at a local
//! fake API reached through sandbox routes (plain http on 127.0.0.1, as the operator's Twilio
//! sandbox is); never for a host outside the account's allowed hosts (the refusal names the
//! account's kind and hosts, and nothing reaches a server); never over http or unverified TLS;
//! never in the job's answer. SMS jobs naming a non-Twilio account fail at once.

use std::time::Duration;

use outbound::http::{self, HttpConfig, SandboxRoute};
use secrecy::SecretString;
use switchboard_store::{HttpAuth, MasterKey, Store};
use switchboard_test_support::{
    ACCOUNT_SID, AUTH_TOKEN, Answer, MASTER_KEY, NatsServer, fresh_database, http_recorder, unique,
};
use switchboard_wire::{self as wire, HTTP_JOB_VERSION, HttpJob, HttpJobResult};

const SLACK_TOKEN: &str = "xoxb-test-slack-token-0123";
const STRIPE_KEY: &str = "sk_test_stripe_0123456789";
const HEADER_KEY: &str = "hdr-key-0123456789";
const QUERY_KEY: &str = "qry-key-0123456789";

fn job(method: &str, url: &str, account_id: i64) -> HttpJob {
    HttpJob {
        version: HTTP_JOB_VERSION,
        method: method.into(),
        url: url.into(),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: String::new(),
        account_id: Some(account_id),
        ignore_ssl_validation: false,
    }
}

/// The header lines of a request head (after the request line), lower-cased names.
fn header_lines(head: &str) -> Vec<String> {
    head.split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once(':') {
            Some((k, v)) => format!("{}:{}", k.to_ascii_lowercase(), v),
            None => l.to_owned(),
        })
        .collect()
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "authorization: Basic {}",
        base64(format!("{user}:{password}").as_bytes())
    )
}

/// Standard base64 with padding (RFC 4648), as HTTP Basic auth writes it.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_sends_its_secret_where_it_belongs_and_nowhere_else() {
    switchboard_test_support::init();
    let nats = NatsServer::start().await.unwrap();
    let client = nats.client().await.unwrap();
    let (_url, pool) = fresh_database().await.unwrap();
    let store = Store::new(pool, Some(MasterKey::parse(MASTER_KEY).unwrap()));
    let secret = |s: &str| SecretString::from(s.to_owned());
    let hosts = |h: &[&str]| h.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let twilio = store
        .add_account("twilio", ACCOUNT_SID, &secret(AUTH_TOKEN))
        .await
        .unwrap();
    let slack = store
        .add_http_account(
            "slack",
            Some("slack"),
            &HttpAuth::Bearer,
            &hosts(&["slack.com", "files.slack.com"]),
            &secret(SLACK_TOKEN),
        )
        .await
        .unwrap();
    let stripe = store
        .add_http_account(
            "stripe",
            Some("stripe"),
            &HttpAuth::Basic {
                username: STRIPE_KEY.into(),
            },
            &hosts(&["api.stripe.com"]),
            &secret("stripe-password"),
        )
        .await
        .unwrap();
    let header = store
        .add_http_account(
            "header",
            None,
            &HttpAuth::Header {
                header: "X-Api-Key".into(),
            },
            &hosts(&["api.example.com"]),
            &secret(HEADER_KEY),
        )
        .await
        .unwrap();
    let query = store
        .add_http_account(
            "query",
            None,
            &HttpAuth::Query {
                param: "key".into(),
            },
            &hosts(&["maps.example.com"]),
            &secret(QUERY_KEY),
        )
        .await
        .unwrap();

    // A fake API answering 200 `{"ok":true}` to anything.
    let (addr, mut seen) = http_recorder(|_| Answer {
        content_type: Some("application/json"),
        body: r#"{"ok":true}"#,
    })
    .await;
    let mut config = HttpConfig::new(&unique("sbk"));
    // The fake stands in for these hosts (files.slack.com is allowed but not routed).
    for host in [
        "slack.com",
        "api.stripe.com",
        "api.example.com",
        "maps.example.com",
        "api.twilio.com",
    ] {
        config.routes.push(SandboxRoute {
            host: host.into(),
            base: format!("http://{addr}").parse().unwrap(),
        });
    }
    let subject = config.subject.clone();
    let started = http::start(config, store, client.clone()).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(started.serve(async move {
        let _ = stopped.await;
    }));
    let ask = |job: HttpJob| {
        let client = client.clone();
        let subject = subject.clone();
        async move {
            let reply = tokio::time::timeout(
                Duration::from_secs(20),
                client.request(subject, wire::encode(&job).into()),
            )
            .await
            .expect("an answer")
            .unwrap();
            let raw = String::from_utf8_lossy(&reply.payload).into_owned();
            for s in [
                SLACK_TOKEN,
                "stripe-password",
                HEADER_KEY,
                QUERY_KEY,
                AUTH_TOKEN,
            ] {
                assert!(!raw.contains(s), "a secret in the answer: {raw}");
            }
            wire::decode::<HttpJobResult>(&reply.payload).unwrap()
        }
    };
    let all_secrets = [
        SLACK_TOKEN,
        "stripe-password",
        HEADER_KEY,
        QUERY_KEY,
        AUTH_TOKEN,
    ];

    // Each kind: the one credential, where it belongs.
    let cases: Vec<(i64, &str, &str, Vec<String>, &str)> = vec![
        (
            slack.id,
            "POST",
            "https://slack.com/api/chat.postMessage",
            vec![format!("authorization: Bearer {SLACK_TOKEN}")],
            "POST /api/chat.postMessage HTTP/1.1",
        ),
        (
            stripe.id,
            "GET",
            "https://api.stripe.com/v1/customers?limit=3",
            vec![basic(STRIPE_KEY, "stripe-password")],
            "GET /v1/customers?limit=3 HTTP/1.1",
        ),
        (
            header.id,
            "GET",
            "https://api.example.com/v3/things",
            vec![format!("x-api-key: {HEADER_KEY}")],
            "GET /v3/things HTTP/1.1",
        ),
        (
            query.id,
            "GET",
            "https://maps.example.com/geocode?address=1+Main+St",
            vec![],
            "GET /geocode?address=1+Main+St&key=qry-key-0123456789 HTTP/1.1",
        ),
        (
            twilio.id,
            "GET",
            "https://api.twilio.com/2010-04-01/Accounts.json",
            vec![basic(ACCOUNT_SID, AUTH_TOKEN)],
            "GET /2010-04-01/Accounts.json HTTP/1.1",
        ),
    ];
    for (id, method, url, expected, request_line) in cases {
        match ask(job(method, url, id)).await {
            HttpJobResult::Response {
                status, url: got, ..
            } => {
                assert_eq!(status, 200);
                assert_eq!(got, url, "the URL reported is the one asked for");
            }
            other => panic!("{url}: {other:?}"),
        }
        let head = seen.recv().await.unwrap();
        assert_eq!(head.split("\r\n").next().unwrap(), request_line, "{head}");
        let lines = header_lines(&head);
        for e in &expected {
            assert!(lines.contains(e), "{url}: {e} not in {lines:?}");
        }
        let auth: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with("authorization:") || l.starts_with("x-api-key:"))
            .collect();
        assert_eq!(auth.len(), expected.len(), "{url}: {lines:?}");
        // No other account's secret, and the query key only in the request line.
        let rest = head.split_once("\r\n").unwrap().1;
        for s in all_secrets {
            assert!(
                !rest.contains(s) || expected.iter().any(|e| e.contains(s)),
                "{url}: {s}"
            );
        }
    }

    // Another host: refused, saying what kind of account it is and which hosts it allows.
    match ask(job("GET", "https://api.stripe.com/v1/customers", slack.id)).await {
        HttpJobResult::CredentialsRefused { message } => assert_eq!(
            message,
            format!(
                "connected account {} ('slack', a bearer-token account) may not be used with host api.stripe.com: its allowed hosts are slack.com, files.slack.com",
                slack.id
            )
        ),
        other => panic!("{other:?}"),
    }
    match ask(job(
        "POST",
        "https://slack.com/api/chat.postMessage",
        twilio.id,
    ))
    .await
    {
        HttpJobResult::CredentialsRefused { message } => assert!(
            message.contains("a Twilio account")
                && message.contains("api.twilio.com, lookups.twilio.com"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    // Over http (an allowed host that is not a sandbox route), or with TLS unverified: not sent.
    match ask(job("GET", "http://files.slack.com/x", slack.id)).await {
        HttpJobResult::Error { message } => assert!(message.contains("is not https"), "{message}"),
        other => panic!("{other:?}"),
    }
    let mut unverified = job("GET", "https://files.slack.com/x", slack.id);
    unverified.ignore_ssl_validation = true;
    match ask(unverified).await {
        HttpJobResult::Error { message } => {
            assert!(message.contains("ignore_ssl_validation"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        seen.try_recv().is_err(),
        "the refused requests never reached a server"
    );

    let _ = stop.send(());
    served.await.unwrap().unwrap();
}
