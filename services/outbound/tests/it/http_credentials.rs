//! Account credentials leave only over https with TLS verification: a behavior's HTTP request
//! naming a connected account is not sent when its URL is http, or https with
//! `ignore_ssl_validation`, and the run gets an error naming why; the operator's sandbox base
//! (a configured route, here plain http on 127.0.0.1) is exempt and gets the Basic auth.

use std::time::Duration;

use outbound::http::{self, HttpConfig, SandboxRoute};
use switchboard_store::{MasterKey, Store};
use switchboard_test_support::{
    ACCOUNT_SID, AUTH_TOKEN, Answer, MASTER_KEY, NatsServer, fresh_database, http_recorder, unique,
};
use switchboard_wire::{self as wire, HTTP_JOB_VERSION, HttpJob, HttpJobResult};

fn job(url: &str, account_id: i64, ignore_ssl_validation: bool) -> HttpJob {
    HttpJob {
        version: HTTP_JOB_VERSION,
        method: "GET".into(),
        url: url.into(),
        headers: Vec::new(),
        body: String::new(),
        account_id: Some(account_id),
        ignore_ssl_validation,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_go_only_over_verified_https_or_to_the_sandbox() {
    switchboard_test_support::init();
    let nats = NatsServer::start().await.unwrap();
    let client = nats.client().await.unwrap();
    let (_url, pool) = fresh_database().await.unwrap();
    let store = Store::new(pool, Some(MasterKey::parse(MASTER_KEY).unwrap()));
    let account = store
        .add_account(
            "acme",
            ACCOUNT_SID,
            &secrecy::SecretString::from(AUTH_TOKEN),
        )
        .await
        .unwrap();
    // An HTTP server answering 200 to anything.
    let (addr, mut seen) = http_recorder(|_| Answer {
        content_type: None,
        body: "ok",
    })
    .await;
    let mut config = HttpConfig::new(&unique("sbc"));
    // lookups.twilio.com is the operator's sandbox (plain http); api.twilio.com is not routed.
    config.routes.push(SandboxRoute {
        host: "lookups.twilio.com".into(),
        base: format!("http://{addr}").parse().unwrap(),
    });
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
            wire::decode::<HttpJobResult>(&reply.payload).unwrap()
        }
    };
    let id = account.id;

    for (url, ignore, why) in [
        (
            "http://api.twilio.com/2010-04-01/Accounts.json",
            false,
            "is not https",
        ),
        (
            "https://api.twilio.com/2010-04-01/Accounts.json",
            true,
            "turns TLS verification off (ignore_ssl_validation)",
        ),
    ] {
        match ask(job(url, id, ignore)).await {
            HttpJobResult::Error { message } => assert_eq!(
                message,
                format!(
                    "connected account {id}'s credentials are sent only over https with TLS verification; this request {why}: {url}"
                )
            ),
            other => panic!("{url}: {other:?}"),
        }
    }

    // The sandbox route: plain http, yet the configured base, so the credentials go.
    match ask(job(
        "http://lookups.twilio.com/v2/PhoneNumbers/+1",
        id,
        false,
    ))
    .await
    {
        HttpJobResult::Response { status, .. } => assert_eq!(status, 200),
        other => panic!("sandbox: {other:?}"),
    }
    let head = seen.recv().await.unwrap().to_ascii_lowercase();
    assert!(head.contains("authorization: basic "), "{head}");
    assert!(
        seen.try_recv().is_err(),
        "the refused requests never reached a server"
    );

    let _ = stop.send(());
    served.await.unwrap().unwrap();
}
