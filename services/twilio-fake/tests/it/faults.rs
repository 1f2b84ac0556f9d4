//! Fault injection: forced codes per number, random 429/5xx with a seed, latency,
//! accept-then-fail (the message exists although the answer says otherwise) and a lagging list.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

const VICTIM: &str = "+15550001111";

async fn send_to(fake: &Fake, to: &str) -> reqwest::Response {
    fake.create(&[("To", to), ("From", FROM), ("Body", "x")])
        .await
}

#[tokio::test]
async fn forced_codes_per_number() {
    let fake = Fake::start().await;
    for (code, status) in [
        (21610, 400),
        (21211, 400),
        (21614, 400),
        (21611, 400),
        (30007, 400),
    ] {
        fake.rule(VICTIM, json!({"error": {"code": code}})).await;
        let body = expect_error(send_to(&fake, VICTIM).await, status, code).await;
        if code == 21610 {
            assert_eq!(body["message"], "Attempt to send to unsubscribed recipient");
        }
    }
    // Other numbers are not affected.
    assert_eq!(send_to(&fake, TO).await.status(), 201);

    fake.rule(
        VICTIM,
        json!({"error": {"code": 20429, "retry_after": 3, "message": "slow down"}}),
    )
    .await;
    let response = send_to(&fake, VICTIM).await;
    assert_eq!(response.headers()["retry-after"], "3");
    let body = expect_error(response, 429, 20429).await;
    assert_eq!(body["message"], "slow down");

    fake.rule(VICTIM, json!({"error": {"code": 20500, "status": 500}}))
        .await;
    expect_error(send_to(&fake, VICTIM).await, 500, 20500).await;

    fake.rule(VICTIM, json!({"error": {"code": 503, "empty_body": true}}))
        .await;
    let response = send_to(&fake, VICTIM).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().get("retry-after").is_none());
    assert_eq!(response.bytes().await.unwrap().len(), 0, "empty body");

    let records = fake.requests().await;
    assert_eq!(records.last().unwrap()["fault"], "forced 503");
    assert_eq!(records.last().unwrap()["response_status"], 503);
    assert_eq!(
        fake.admin("/messages").await.as_array().unwrap().len(),
        1,
        "only the unaffected number got a message"
    );
}

#[tokio::test]
async fn forced_error_for_a_number_of_times() {
    let fake = Fake::start().await;
    fake.rule(VICTIM, json!({"error": {"code": 20429, "times": 2}}))
        .await;
    let statuses: Vec<u16> = {
        let mut out = Vec::new();
        for _ in 0..4 {
            out.push(send_to(&fake, VICTIM).await.status().as_u16());
        }
        out
    };
    assert_eq!(statuses, [429, 429, 201, 201]);
    let rule = fake.admin("/numbers").await;
    assert_eq!(rule[VICTIM]["error"], Value::Null, "the error is used up");
    fake.rule(VICTIM, json!({"error": {"code": 21610, "times": 0}}))
        .await;
    assert_eq!(
        send_to(&fake, VICTIM).await.status(),
        201,
        "zero times: never"
    );
}

async fn statuses_with_rates(fake: &Fake, n: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let to = format!("+1555000{i:04}");
        out.push(send_to(fake, &to).await.status().as_u16());
    }
    out
}

#[tokio::test]
async fn random_429s_follow_the_rate_and_the_seed() {
    let fake = Fake::start().await;
    fake.faults(json!({"seed": 42, "rate_429": 0.25, "retry_after": 1}))
        .await;
    let first = statuses_with_rates(&fake, 200).await;
    let n429 = first.iter().filter(|s| **s == 429).count();
    assert!((30..=70).contains(&n429), "{n429} of 200 at rate 0.25");
    assert_eq!(first.iter().filter(|s| **s == 201).count(), 200 - n429);

    // The same seed gives the same sequence.
    fake.faults(json!({"seed": 42, "rate_429": 0.25, "retry_after": 1}))
        .await;
    let second = statuses_with_rates(&fake, 200).await;
    assert_eq!(first, second);

    let records = fake.requests().await;
    let limited = records
        .iter()
        .find(|r| r["response_status"] == 429)
        .unwrap();
    assert_eq!(limited["fault"], "rate_429");
    let response = {
        fake.faults(json!({"rate_429": 1.0, "retry_after": 7}))
            .await;
        send_to(&fake, TO).await
    };
    assert_eq!(response.headers()["retry-after"], "7");
    expect_error(response, 429, 20429).await;
}

#[tokio::test]
async fn random_5xx_and_bad_settings() {
    let fake = Fake::start().await;
    fake.faults(json!({"seed": 1, "rate_5xx": 1.0})).await;
    let response = send_to(&fake, TO).await;
    assert_eq!(response.status(), 503);
    assert!(response.bytes().await.unwrap().is_empty());
    fake.faults(json!({"rate_5xx": 1.0, "status_5xx": 500, "empty_body_5xx": false}))
        .await;
    expect_error(send_to(&fake, TO).await, 500, 20500).await;
    // Lookups are API requests too.
    let lookup = fake.get("/v1/PhoneNumbers/%2B15108675310").await;
    assert_eq!(lookup.status(), 500);

    let refused = fake.admin_put("/faults", json!({"rate_429": 1.5})).await;
    assert_eq!(refused.status(), 422);
    let refused = fake.admin_put("/faults", json!({"rate_492": 0.5})).await;
    assert_eq!(refused.status(), 422, "unknown settings are refused");
    let current = fake.admin("/faults").await;
    assert_eq!(current["status_5xx"], 500);

    let reset = fake
        .client
        .post(fake.url("/_fake/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 204);
    assert_eq!(send_to(&fake, TO).await.status(), 201);
}

#[tokio::test]
async fn latency_global_and_per_number() {
    // Only lower bounds are tight; upper bounds are the injected delays themselves, so a
    // loaded machine does not make the test flaky.
    let fake = Fake::start().await;
    let timed = |to: &'static str| {
        let fake = &fake;
        async move {
            let start = Instant::now();
            let status = send_to(fake, to).await.status();
            (status, start.elapsed())
        }
    };
    fake.rule(VICTIM, json!({"latency_ms": 600})).await;
    let (status, slow) = timed(VICTIM).await;
    assert_eq!(status, 201);
    assert!(slow >= Duration::from_millis(600), "{slow:?}");
    let (status, other) = timed(TO).await;
    assert_eq!(status, 201);
    assert!(other < Duration::from_millis(600), "{other:?}");

    fake.faults(json!({"latency_ms": 250})).await;
    let (_, global) = timed(TO).await;
    assert!(global >= Duration::from_millis(250), "{global:?}");
    assert!(global < Duration::from_millis(600), "{global:?}");
    let (_, both) = timed(VICTIM).await;
    assert!(both >= Duration::from_millis(850), "{both:?}");

    // Lookups of the number wait too.
    let start = Instant::now();
    let lookup = fake.get("/v2/PhoneNumbers/%2B15550001111").await;
    assert_eq!(lookup.status(), 200);
    assert!(start.elapsed() >= Duration::from_millis(850));
}

#[tokio::test]
async fn accept_then_fail_with_a_status() {
    let fake = Fake::start().await;
    fake.rule(
        VICTIM,
        json!({"accept_then_fail": {"mode": "status", "status": 502}}),
    )
    .await;
    let response = send_to(&fake, VICTIM).await;
    expect_error(response, 502, 20500).await;

    // Twilio's side has the message: the ambiguity an outbound retry must resolve by listing.
    let list: Value = fake
        .get(&format!(
            "/2010-04-01/Accounts/{ACCOUNT}/Messages.json?To=%2B15550001111"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["messages"].as_array().unwrap().len(), 1);
    let stored = fake.admin("/messages").await;
    assert_eq!(stored[0]["answered_with"], "status 502");
    let records = fake.requests().await;
    let create = records.iter().find(|r| r["method"] == "POST").unwrap();
    assert_eq!(create["fault"], "accept_then_fail status 502");
    assert_eq!(create["response_status"], 502);

    fake.faults(json!({"accept_then_fail": {"mode": "status", "status": 503, "empty_body": true}}))
        .await;
    let response = send_to(&fake, TO).await;
    assert_eq!(response.status(), 503);
    assert!(response.bytes().await.unwrap().is_empty());
    assert_eq!(fake.admin("/messages").await.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn accept_then_fail_by_dropping_the_connection() {
    let fake = Fake::start().await;
    fake.rule(VICTIM, json!({"accept_then_fail": {"mode": "drop"}}))
        .await;
    let result = fake
        .client
        .post(fake.messages_url())
        .basic_auth(ACCOUNT, Some(TOKEN))
        .form(&[("To", VICTIM), ("From", FROM), ("Body", "x")])
        .send()
        .await;
    let error = result.expect_err("no answer at all");
    assert!(!error.is_timeout(), "{error:?}");
    assert!(error.status().is_none());

    let stored = fake.admin("/messages").await;
    assert_eq!(stored.as_array().unwrap().len(), 1);
    assert_eq!(stored[0]["answered_with"], "dropped");
    assert_eq!(stored[0]["message"]["to"], VICTIM);
    let record = fake.last_request().await;
    assert_eq!(record["connection_dropped"], true);
    assert_eq!(record["response_status"], Value::Null);

    // The server is fine afterwards.
    assert_eq!(send_to(&fake, TO).await.status(), 201);
}

/// A create that times out at the client yet went through, and a list that shows the message
/// only later: what an outbound retry after an ambiguous create must not mistake for "nothing
/// was created".
#[tokio::test]
async fn a_slow_answer_and_a_lagging_list() {
    let fake = Fake::start().await;
    fake.rule(
        VICTIM,
        json!({"accept_then_fail": {"mode": "slow", "delay_ms": 1500}, "list_lag_ms": 2500}),
    )
    .await;
    let started = Instant::now();
    let result = fake
        .client
        .post(fake.messages_url())
        .basic_auth(ACCOUNT, Some(TOKEN))
        .timeout(Duration::from_millis(300))
        .form(&[("To", VICTIM), ("From", FROM), ("Body", "x")])
        .send()
        .await;
    assert!(result.expect_err("gave up").is_timeout());
    let stored = fake.admin("/messages").await;
    assert_eq!(stored.as_array().unwrap().len(), 1, "created all the same");
    assert_eq!(stored[0]["answered_with"], "slow 1500 ms");
    let sid = stored[0]["message"]["sid"].as_str().unwrap().to_owned();
    let list_url = format!("/2010-04-01/Accounts/{ACCOUNT}/Messages.json?To=%2B15550001111");
    let listed = |list: Value| list["messages"].as_array().unwrap().len();
    assert_eq!(
        listed(fake.get(&list_url).await.json().await.unwrap()),
        0,
        "not listed yet"
    );
    // Fetch by SID sees it at once.
    let fetched = fake
        .get(&format!(
            "/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json"
        ))
        .await;
    assert_eq!(fetched.status(), 200);
    // Other numbers are listed at once.
    assert_eq!(send_to(&fake, TO).await.status(), 201);
    let all: Value = fake
        .get(&format!("/2010-04-01/Accounts/{ACCOUNT}/Messages.json"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed(all), 1, "only the other number's message");
    tokio::time::sleep(Duration::from_millis(2600).saturating_sub(started.elapsed())).await;
    assert_eq!(
        listed(fake.get(&list_url).await.json().await.unwrap()),
        1,
        "listed after the lag"
    );

    // The answer, for a client that waits, is a 201 after the delay; a global lag applies to
    // every number without a rule of its own.
    fake.faults(json!({"list_lag_ms": 60000})).await;
    let started = Instant::now();
    let response = fake
        .client
        .post(fake.messages_url())
        .basic_auth(ACCOUNT, Some(TOKEN))
        .form(&[("To", VICTIM), ("From", FROM), ("Body", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_eq!(send_to(&fake, TO).await.status(), 201);
    let all: Value = fake
        .get(&format!("/2010-04-01/Accounts/{ACCOUNT}/Messages.json"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed(all),
        2,
        "the later messages are held back: the rule's lag, the global one"
    );
}

#[tokio::test]
async fn concurrency_limit_answers_429() {
    let fake = Fake::start().await;
    fake.faults(json!({"max_concurrent": 2, "latency_ms": 500, "retry_after": 1}))
        .await;
    let sends = (0..5).map(|i| {
        let fake = &fake;
        async move {
            // Stagger the arrivals so the first two are surely in flight first.
            tokio::time::sleep(Duration::from_millis(if i < 2 { 0 } else { 150 })).await;
            send_to(fake, TO).await
        }
    });
    let responses = futures::future::join_all(sends).await;
    let mut statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 201, 429, 429, 429]);
    let limited = responses.iter().find(|r| r.status() == 429).unwrap();
    assert_eq!(limited.headers()["retry-after"], "1");
    let notes: Vec<Value> = fake
        .requests()
        .await
        .iter()
        .map(|r| r["fault"].clone())
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(notes, vec![json!("max_concurrent"); 3]);
    // Once the first two are done, requests pass again.
    assert_eq!(send_to(&fake, TO).await.status(), 201);
}
