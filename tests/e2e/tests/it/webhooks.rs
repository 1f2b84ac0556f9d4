//! Twilio webhooks through ingress → NATS → behavior-worker → PostgreSQL and back.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use switchboard_e2e::*;

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        // Below ingress's header read timeout (5 s), which also closes a keep-alive connection
        // that sends nothing: a pooled connection idle that long could be reused in the instant
        // ingress closes it (the flood test failed once so, with `IncompleteMessage`).
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_bot_answers_signed_webhooks_like_the_guide() {
    let stack = Stack::new().await.unwrap();
    let worker = stack.worker().await.unwrap();
    let ingress = stack.ingress().await.unwrap();
    let http = http();
    for (body, golden_file) in [
        ("hi", "hi.xml"),
        ("help", "help.xml"),
        ("HELP", "help.xml"),
        ("logo", "logo.xml"),
        ("link", "link.xml"),
        ("Hi & <bye> 'q' \"d\"", "hostile.xml"),
    ] {
        let form = inbound_sms(&message_sid(), "+15551234567", body);
        let resp = post_signed(&http, &ingress, &stack.guid, &form, AUTH_TOKEN).await;
        assert_eq!(resp.status(), 200, "Body {body:?}");
        assert_eq!(
            resp.headers()["content-type"],
            "text/xml; charset=utf-8",
            "Body {body:?}"
        );
        assert!(resp.headers().contains_key("switchboard-request-id"));
        assert_eq!(
            resp.text().await.unwrap(),
            golden(golden_file),
            "Body {body:?}"
        );
    }
    assert_eq!(stack.runs().await, 6);
    // The guid is matched case-insensitively (docs/semantics.md, Decision 6).
    let form = inbound_sms(&message_sid(), "+15551234567", "hi");
    let resp = post_signed(
        &http,
        &ingress,
        &stack.guid.to_uppercase(),
        &form,
        AUTH_TOKEN,
    )
    .await;
    assert_eq!(resp.status(), 200);
    ingress.stop().await.unwrap();
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_or_missing_signatures_get_403_and_run_nothing() {
    let stack = Stack::new().await.unwrap();
    let worker = stack.worker().await.unwrap();
    let ingress = stack.ingress().await.unwrap();
    let http = http();
    let form = inbound_sms(&message_sid(), "+15551234567", "help");
    // Signed with the wrong token.
    assert_eq!(
        post_signed(&http, &ingress, &stack.guid, &form, "not-the-token")
            .await
            .status(),
        403
    );
    // Valid signature, but for a tampered body.
    let path = format!("/webhooks/{}", stack.guid);
    let signed = switchboard_twilio::signature::sign_form(
        AUTH_TOKEN,
        &format!("{PUBLIC_BASE_URL}{path}"),
        &form,
    );
    let tampered = signed.body.replace("Body=help", "Body=logo");
    let resp = http
        .post(ingress.url(&path))
        .header("content-type", signed.content_type)
        .header("x-twilio-signature", &signed.signature)
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // No signature at all.
    let resp = http
        .post(ingress.url(&path))
        .header("content-type", signed.content_type)
        .body(signed.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // Signed for another URL (what happens behind a proxy without PUBLIC_BASE_URL).
    let other = switchboard_twilio::signature::sign_form(
        AUTH_TOKEN,
        &format!("http://internal:8080{path}"),
        &form,
    );
    let resp = http
        .post(ingress.url(&path))
        .header("content-type", other.content_type)
        .header("x-twilio-signature", other.signature)
        .body(other.body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(stack.runs().await, 0, "no behavior ran");
    ingress.stop().await.unwrap();
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_guid_404_disabled_bot_503_oversized_413() {
    let stack = Stack::new().await.unwrap();
    let worker = stack.worker().await.unwrap();
    let ingress = stack.ingress().await.unwrap();
    let http = http();
    let form = inbound_sms(&message_sid(), "+15551234567", "help");
    for guid in [
        "abcdefghjklmnpqrstuvwxyz1234567890abcdef",
        "not*a*guid",
        &"x".repeat(41),
    ] {
        let resp = post_signed(&http, &ingress, guid, &form, AUTH_TOKEN).await;
        assert_eq!(resp.status(), 404, "{guid}");
        assert_eq!(resp.text().await.unwrap(), "");
    }
    // Disabling the bot is announced; the worker answers 503 right away, then 200 again.
    stack
        .env
        .set_bot_disabled(&stack.bot_id.to_string(), true)
        .await
        .unwrap();
    let resp = post_signed(&http, &ingress, &stack.guid, &form, AUTH_TOKEN).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.text().await.unwrap(),
        "<h1>503: Temporarily unavailable</h1>"
    );
    stack
        .env
        .set_bot_disabled(&stack.bot_id.to_string(), false)
        .await
        .unwrap();
    // A new message each time, so no stored answer is replayed.
    let fresh_help = || async {
        let form = inbound_sms(&message_sid(), "+15551234567", "help");
        post_signed(&http, &ingress, &stack.guid, &form, AUTH_TOKEN).await
    };
    assert_eq!(fresh_help().await.status(), 200);
    // The webhook behavior disabled: 503 as well.
    stack
        .env
        .set_behavior_disabled(&stack.webhook_behavior_id.to_string(), true)
        .await
        .unwrap();
    assert_eq!(fresh_help().await.status(), 503);
    // Bodies over the limit are refused before anything else.
    let resp = http
        .post(ingress.url(&format!("/webhooks/{}", stack.guid)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'a'; 256 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    ingress.stop().await.unwrap();
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_message_sid_gets_the_same_answer_and_one_run() {
    let stack = Stack::new().await.unwrap();
    let worker = stack.worker().await.unwrap();
    let ingress = stack.ingress().await.unwrap();
    let http = http();
    let sid = message_sid();
    let form = inbound_sms(&sid, "+15551234567", "logo");
    let first = post_signed(&http, &ingress, &stack.guid, &form, AUTH_TOKEN).await;
    let (s1, ct1, b1) = (
        first.status(),
        first.headers()["content-type"].clone(),
        first.text().await.unwrap(),
    );
    // Twilio's retry, concurrently twice.
    let (a, b) = tokio::join!(
        post_signed(&http, &ingress, &stack.guid, &form, AUTH_TOKEN),
        post_signed(&http, &ingress, &stack.guid, &form, AUTH_TOKEN)
    );
    for r in [a, b] {
        assert_eq!(r.status(), s1);
        assert_eq!(r.headers()["content-type"], ct1);
        assert_eq!(r.text().await.unwrap(), b1);
    }
    assert_eq!(b1, golden("logo.xml"));
    assert_eq!(stack.runs().await, 1);
    // A new MessageSid delivered four times at once (no delivery answered yet): the deliveries
    // race for the claim; one run is recorded and every delivery gets its answer.
    let form = inbound_sms(&message_sid(), "+15551234567", "link");
    let answers = futures::future::join_all(
        (0..4).map(|_| post_signed(&http, &ingress, &stack.guid, &form, AUTH_TOKEN)),
    )
    .await;
    for r in answers {
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), golden("link.xml"));
    }
    assert_eq!(stack.runs().await, 2);
    ingress.stop().await.unwrap();
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_workers_ingress_answers_503_within_its_timeout() {
    let stack = Stack::new().await.unwrap();
    let mut config = stack.ingress_config();
    config.reply_timeout = Duration::from_millis(800);
    let ingress = Ingress::start(&stack.nats.url(), config).await.unwrap();
    let http = http();
    let started = Instant::now();
    let resp = post_signed(
        &http,
        &ingress,
        &stack.guid,
        &inbound_sms(&message_sid(), "+1555", "hi"),
        AUTH_TOKEN,
    )
    .await;
    assert_eq!(resp.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered within the timeout, not Twilio's 15 s"
    );
    // A worker that takes the request but is too slow also ends in 503: simulate with a
    // subscriber in the queue group that never replies.
    let nats = stack.nats.client().await.unwrap();
    let _silent = nats
        .queue_subscribe(stack.subjects.webhook_request(), "behavior-worker".into())
        .await
        .unwrap();
    // `flush` only empties the client's write buffer; ingress publishes on another connection,
    // so wait until the server itself routes the subject to the silent subscriber: a request
    // on this connection (ordered after its SUB) that times out instead of "no responders".
    let probe = nats.request(stack.subjects.webhook_request(), "".into());
    match tokio::time::timeout(Duration::from_millis(300), probe).await {
        Err(_elapsed) => {}
        Ok(outcome) => panic!("the silent subscriber is not registered: {outcome:?}"),
    }
    let started = Instant::now();
    let resp = post_signed(
        &http,
        &ingress,
        &stack.guid,
        &inbound_sms(&message_sid(), "+1555", "hi"),
        AUTH_TOKEN,
    )
    .await;
    assert_eq!(resp.status(), 503);
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "waited for the reply timeout"
    );
    // Ready only while connected to NATS.
    assert_eq!(
        http.get(ingress.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(ingress.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    ingress.stop().await.unwrap();
}

/// Collects `$SRV.STATS` replies of every worker instance on the bus.
async fn worker_stats(nats: &async_nats::Client) -> Vec<serde_json::Value> {
    let inbox = nats.new_inbox();
    let mut sub = nats.subscribe(inbox.clone()).await.unwrap();
    nats.publish_with_reply("$SRV.STATS.behavior-worker", inbox, "".into())
        .await
        .unwrap();
    nats.flush().await.unwrap();
    let mut out = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
        out.push(serde_json::from_slice(&msg.payload).unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_load_and_a_restart_loses_no_answered_request() {
    let stack = Stack::new().await.unwrap();
    let w1 = stack.worker().await.unwrap();
    let w2 = stack.worker().await.unwrap();
    let ingress = stack.ingress().await.unwrap();
    let http = http();
    let nats = stack.nats.client().await.unwrap();

    let mut tasks = Vec::new();
    for i in 0..60 {
        let (http, stack_guid) = (http.clone(), stack.guid.clone());
        let url = ingress.url(&format!("/webhooks/{stack_guid}"));
        let sid = message_sid();
        tasks.push(tokio::spawn(async move {
            let form = inbound_sms(&sid, "+15551234567", if i % 2 == 0 { "help" } else { "hi" });
            let signed = switchboard_twilio::signature::sign_form(
                AUTH_TOKEN,
                &format!("{PUBLIC_BASE_URL}/webhooks/{stack_guid}"),
                &form,
            );
            let resp = http
                .post(url)
                .header("content-type", signed.content_type)
                .header("x-twilio-signature", signed.signature)
                .body(signed.body)
                .send()
                .await
                .unwrap();
            (sid, resp.status().as_u16())
        }));
        if i == 20 {
            // Restart worker 1 in the middle of the load.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let stats = worker_stats(&nats).await;
    assert_eq!(
        stats.len(),
        2,
        "both workers appear in service discovery: {stats:?}"
    );
    w1.stop().await.unwrap();
    let w1b = stack.worker().await.unwrap();
    let mut answered = Vec::new();
    for t in tasks {
        let (sid, status) = t.await.unwrap();
        assert!(status == 200 || status == 503, "status {status}");
        if status == 200 {
            answered.push(sid);
        }
    }
    // Every request that got a reply has its message and run recorded.
    let pool = stack.store.pool();
    for sid in &answered {
        let row: (Option<serde_json::Value>, Option<i64>) =
            sqlx::query_as("SELECT response, run_id FROM inbound_messages WHERE message_sid = $1")
                .bind(sid)
                .fetch_one(pool)
                .await
                .unwrap_or_else(|e| panic!("{sid} answered but not recorded: {e}"));
        assert!(
            row.0.is_some() && row.1.is_some(),
            "{sid} recorded completely"
        );
    }
    assert!(
        answered.len() >= 55,
        "nearly every request answered while the other worker served: {}",
        answered.len()
    );

    // Both instances of the second generation take requests too.
    for _ in 0..20 {
        let r = post_signed(
            &http,
            &ingress,
            &stack.guid,
            &inbound_sms(&message_sid(), "+1555", "hi"),
            AUTH_TOKEN,
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    let stats = worker_stats(&nats).await;
    assert_eq!(stats.len(), 2);
    for s in &stats {
        // The webhook endpoint (the service also has the status callback endpoint).
        let n = s["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["subject"] == stack.subjects.webhook_request().as_str())
            .and_then(|e| e["num_requests"].as_u64())
            .unwrap();
        assert!(n > 0, "each worker took requests: {stats:?}");
    }
    ingress.stop().await.unwrap();
    w1b.stop().await.unwrap();
    w2.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_ingress_and_worker() {
    let stack = Stack::new().await.unwrap();
    let worker = stack.worker().await.unwrap();
    let http = http();
    let path = format!("/webhooks/{}", stack.guid);
    let theirs = "0af7651916cd43dd8448eb211c80319c";
    let post = |ingress_url: String| {
        let form = inbound_sms(&message_sid(), "+15551234567", "hi");
        let signed = switchboard_twilio::signature::sign_form(
            AUTH_TOKEN,
            &format!("{PUBLIC_BASE_URL}{path}"),
            &form,
        );
        http.post(ingress_url)
            .header("content-type", signed.content_type)
            .header("x-twilio-signature", signed.signature)
            .header("traceparent", format!("00-{theirs}-b7ad6b7169203331-01"))
            .body(signed.body)
            .send()
    };
    // An internet client's traceparent is not adopted: the run is in ingress's own trace.
    let ingress = stack.ingress().await.unwrap();
    let resp = post(ingress.url(&path)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let ids = stack
        .store
        .run_trace_ids(stack.webhook_behavior_id)
        .await
        .unwrap();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(ids[0].len(), 32, "the run has a trace id: {ids:?}");
    assert_ne!(ids[0], theirs, "the caller's trace is only linked");
    ingress.stop().await.unwrap();
    // Behind a proxy that sets it (INGRESS_TRUST_TRACEPARENT), the caller's trace continues.
    let trusted = ingress::IngressConfig {
        trust_traceparent: true,
        ..stack.ingress_config()
    };
    let ingress = switchboard_e2e::Ingress::start(&stack.nats.url(), trusted)
        .await
        .unwrap();
    let resp = post(ingress.url(&path)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let ids = stack
        .store
        .run_trace_ids(stack.webhook_behavior_id)
        .await
        .unwrap();
    assert!(
        ids.contains(&theirs.to_string()),
        "the worker's run is in the caller's trace: {ids:?}"
    );
    ingress.stop().await.unwrap();
    worker.stop().await.unwrap();
}

/// A NUL character in an inbound message (`%00`: PostgreSQL's jsonb cannot hold U+0000) is
/// answered like any other text and recorded, instead of failing the log write and answering
/// 503 on every retry. The log keeps U+FFFD in its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_in_the_message_is_answered_and_recorded() {
    let stack = Stack::new().await.unwrap();
    let worker = stack.worker().await.unwrap();
    let ingress = stack.ingress().await.unwrap();
    let http = http();
    let sid = message_sid();
    let form = inbound_sms(&sid, "+15551234567", "a\u{0}b");
    let resp = post_signed(&http, &ingress, &stack.guid, &form, AUTH_TOKEN).await;
    assert_eq!(resp.status(), 200);
    let first = resp.text().await.unwrap();
    assert!(first.contains("You said: a\u{0}b</Message>"), "{first:?}");
    assert_eq!(stack.runs().await, 1);
    // Twilio's retry of the same message gets the stored answer, which went through jsonb.
    let retry = post_signed(&http, &ingress, &stack.guid, &form, AUTH_TOKEN).await;
    assert_eq!(retry.status(), 200);
    let again = retry.text().await.unwrap();
    assert_eq!(again, first.replace('\u{0}', "\u{FFFD}"));
    assert_eq!(stack.runs().await, 1);
    let logged: String = sqlx::query_scalar(
        "SELECT p->>1 FROM inbound_messages, jsonb_array_elements(request->'params') p \
         WHERE message_sid = $1 AND p->>0 = 'Body'",
    )
    .bind(&sid)
    .fetch_one(stack.store.pool())
    .await
    .unwrap();
    assert_eq!(logged, "a\u{FFFD}b");
    ingress.stop().await.unwrap();
    worker.stop().await.unwrap();
}

/// Listeners are tied to accounts: a webhook is verified only with the connected accounts its
/// bot uses, never with any account whose SID the request itself posts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_accounts_the_bot_uses_may_sign_its_webhooks() {
    let stack = Stack::new().await.unwrap();
    // A second Twilio account, connected but used by no behavior of the seed bot.
    let other_sid = "AC99999999999999999999999999999999";
    let other_token = "the-other-accounts-token";
    stack
        .env
        .add_account(
            "other",
            other_sid,
            &secrecy::SecretString::from(other_token),
        )
        .await
        .unwrap();
    let worker = stack.worker().await.unwrap();
    let ingress = stack.ingress().await.unwrap();
    let http = http();
    let mut form = inbound_sms(&message_sid(), "+15551234567", "help");
    for (k, v) in form.iter_mut() {
        if k == "AccountSid" {
            *v = other_sid.to_string();
        }
    }
    let resp = post_signed(&http, &ingress, &stack.guid, &form, other_token).await;
    assert_eq!(
        resp.status(),
        403,
        "signed by a connected account the bot does not use"
    );
    assert_eq!(stack.runs().await, 0);
    // The bot's own account still signs.
    let form = inbound_sms(&message_sid(), "+15551234567", "help");
    let resp = post_signed(&http, &ingress, &stack.guid, &form, AUTH_TOKEN).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(stack.runs().await, 1);
    ingress.stop().await.unwrap();
    worker.stop().await.unwrap();
}

/// What an attacker chooses costs the worker nothing: once the worker knows its listeners, an
/// unknown guid is answered 404 and a malformed `AccountSid` 403 without a database query (the
/// worker's database pool is closed here, so any query would fail the request with 503), and
/// neither leaves a cache entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_guids_and_malformed_account_sids_cost_no_query() {
    let stack = Stack::new().await.unwrap();
    let pool = switchboard_store::connect(&stack.database_url, 2)
        .await
        .unwrap();
    let worker_store = switchboard_store::Store::new(
        pool.clone(),
        Some(switchboard_store::secrets::MasterKey::parse(MASTER_KEY).unwrap()),
    );
    let worker = Worker::start(worker_store, &stack.nats.url(), stack.subjects.clone())
        .await
        .unwrap();
    let ingress = stack.ingress().await.unwrap();
    let http = http();
    // Warm: the worker loads its listener index and the seed listener.
    let form = inbound_sms(&message_sid(), "+15551234567", "help");
    let resp = post_signed(&http, &ingress, &stack.guid, &form, AUTH_TOKEN).await;
    assert_eq!(resp.status(), 200);
    pool.close().await;

    for i in 0..200 {
        let guid = format!("unknown-{i}-{}", unique("g"));
        let form = inbound_sms(&message_sid(), "+15551234567", "help");
        let resp = post_signed(&http, &ingress, &guid, &form, AUTH_TOKEN).await;
        assert_eq!(resp.status(), 404, "unknown guid {guid}");
    }
    for sid in [
        "AC123",
        "ACzz0123456789abcdef0123456789abcd",
        "SM0123456789abcdef0123456789abcdef",
    ] {
        let mut form = inbound_sms(&message_sid(), "+15551234567", "help");
        for (k, v) in form.iter_mut() {
            if k == "AccountSid" {
                *v = sid.to_string();
            }
        }
        let resp = post_signed(&http, &ingress, &stack.guid, &form, AUTH_TOKEN).await;
        assert_eq!(resp.status(), 403, "AccountSid {sid}");
    }
    ingress.stop().await.unwrap();
    worker.stop().await.unwrap();
}

/// A claim whose worker died between claiming a `MessageSid` and answering is taken over by a
/// later delivery once it is older than the claim timeout; a younger one still gets 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_left_by_a_dead_worker_is_taken_over_after_the_claim_timeout() {
    let stack = Stack::new().await.unwrap();
    let options = behavior_worker::WorkerOptions {
        duplicate_wait: Duration::from_millis(300),
        claim_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let worker = Worker::start_with(
        stack.store.clone(),
        &stack.nats.url(),
        stack.subjects.clone(),
        options,
    )
    .await
    .unwrap();
    let ingress = stack.ingress().await.unwrap();
    let http = http();
    let listener_id: i64 =
        switchboard_store::sqlx::query_scalar("SELECT id FROM webhook_listeners WHERE guid = $1")
            .bind(&stack.guid)
            .fetch_one(stack.store.pool())
            .await
            .unwrap();
    // Two claims with no answer, as a worker killed mid-run leaves them: one 10 minutes old,
    // one just made. STOP takes the claim-first path (it records an opt-out).
    let (stale, fresh) = (message_sid(), message_sid());
    for (sid, age) in [(&stale, "10 minutes"), (&fresh, "0 seconds")] {
        switchboard_store::sqlx::query(
            "INSERT INTO inbound_messages (message_sid, listener_id, request_id, request, received_at) \
             VALUES ($1, $2, 'dead-worker', '{}', now() - $3::interval)",
        )
        .bind(sid)
        .bind(listener_id)
        .bind(age)
        .execute(stack.store.pool())
        .await
        .unwrap();
    }
    let form = inbound_sms(&fresh, "+15551234567", "STOP");
    let resp = post_signed(&http, &ingress, &stack.guid, &form, AUTH_TOKEN).await;
    assert_eq!(resp.status(), 503, "a claim younger than the timeout");
    let form = inbound_sms(&stale, "+15551234567", "STOP");
    let resp = post_signed(&http, &ingress, &stack.guid, &form, AUTH_TOKEN).await;
    assert_eq!(resp.status(), 200, "the stale claim is taken over");
    let answer = resp.text().await.unwrap();
    assert!(answer.contains("<Response>"), "{answer}");
    assert_eq!(stack.runs().await, 1);
    // Taken over once: the next delivery gets the answer now stored.
    let resp = post_signed(&http, &ingress, &stack.guid, &form, AUTH_TOKEN).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), answer);
    assert_eq!(stack.runs().await, 1);
    ingress.stop().await.unwrap();
    worker.stop().await.unwrap();
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Cache bounds (issue 11): a flood of 60,000 random guids and 20,000 webhooks posting random
/// well-formed AccountSids (none of them an account of the bot) is refused (404, 403) and leaves
/// the worker process's memory flat: none of those keys is cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_random_guids_and_account_sids_leaves_worker_memory_flat() {
    let stack = Stack::new().await.unwrap();
    let worker = crate::traces::worker_process(&stack, &[("RUST_LOG", "error")]).await;
    let pid = worker.child.id();
    let ingress = stack.ingress().await.unwrap();
    let url = ingress.url("");
    let http = http();

    // One request: a random guid, or the seed's guid with a random AccountSid.
    let send = |n: usize| {
        let (http, url, seed) = (http.clone(), url.clone(), stack.guid.clone());
        async move {
            let mut form = inbound_sms(&message_sid(), "+15551234567", "help");
            let guid = if n % 4 == 3 {
                let random = message_sid().replacen("SM", "AC", 1);
                for (k, v) in form.iter_mut() {
                    if k == "AccountSid" {
                        *v = random.clone();
                    }
                }
                seed
            } else {
                unique("g").replace('.', "-")
            };
            let resp = post_signed_at(&http, &url, &guid, &form, AUTH_TOKEN).await;
            (n % 4 == 3, resp.status().as_u16())
        }
    };
    let flood = |count: usize| {
        let send = &send;
        async move {
            use futures::StreamExt as _;
            futures::stream::iter(0..count)
                .map(send)
                .buffer_unordered(32)
                .for_each(|(random_account, status)| async move {
                    assert_eq!(status, if random_account { 403 } else { 404 });
                })
                .await;
        }
    };
    // Warm-up: the worker's allocator, connections and listener index settle.
    flood(4_000).await;
    let before = rss_kib(pid);
    flood(80_000).await;
    let after = rss_kib(pid);
    eprintln!("worker VmRSS: {before} KiB after the warm-up, {after} KiB after 80,000 more");
    assert!(
        after < before + 8 * 1024,
        "worker memory grew from {before} KiB to {after} KiB"
    );
    ingress.stop().await.unwrap();
    drop(worker);
}
