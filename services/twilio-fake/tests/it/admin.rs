//! The admin API: the request log, the message list, number rules and reset.

use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn requests_are_logged_in_detail() {
    let fake = Fake::start().await;
    fake.client
        .post(format!("{}?Trace=1", fake.messages_url()))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .header("X-Request-Id", "abc")
        .form(&[
            ("To", TO),
            ("From", FROM),
            ("MediaUrl", "https://example.com/1.png"),
            ("Body", "a+b c"),
            ("MediaUrl", "https://example.com/2.png"),
        ])
        .send()
        .await
        .unwrap();
    let record = fake.last_request().await;
    assert_eq!(record["id"], 1);
    assert_eq!(record["method"], "POST");
    assert_eq!(
        record["path"],
        format!("/2010-04-01/Accounts/{ACCOUNT}/Messages.json")
    );
    assert_eq!(record["query"], "Trace=1");
    assert_eq!(record["query_params"], json!([["Trace", "1"]]));
    assert_eq!(
        record["form"],
        json!([
            ["To", TO],
            ["From", FROM],
            ["MediaUrl", "https://example.com/1.png"],
            ["Body", "a+b c"],
            ["MediaUrl", "https://example.com/2.png"]
        ]),
        "in order, repeats kept, decoded"
    );
    let headers = record["headers"].as_array().unwrap();
    assert!(headers.contains(&json!(["x-request-id", "abc"])));
    assert!(headers.iter().all(|h| h[0] != "authorization"));
    assert_eq!(record["auth_user"], ACCOUNT);
    assert_eq!(record["response_status"], 201);
    assert!(record["timestamp"].as_str().unwrap().contains('T'));

    // Admin requests are not logged.
    fake.admin("/messages").await;
    assert_eq!(fake.requests().await.len(), 1);
}

#[tokio::test]
async fn number_rules_and_reset() {
    let fake = Fake::start().await;
    fake.rule(TO, json!({"error": {"code": 21610}})).await;
    let rule = fake.admin("/numbers/%2B15558675310").await;
    assert_eq!(rule["error"]["code"], 21610);
    let bad = fake
        .admin_put("/numbers/%2B15558675310", json!({"eror": {"code": 1}}))
        .await;
    assert_eq!(bad.status(), 422, "typos are refused");

    let deleted = fake
        .client
        .delete(fake.url("/_fake/numbers/%2B15558675310"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(fake.admin("/numbers").await, json!({}));

    fake.create(&[("To", TO), ("From", FROM), ("Body", "x")])
        .await;
    fake.rule(TO, json!({"latency_ms": 1})).await;
    assert_eq!(fake.admin("/messages").await.as_array().unwrap().len(), 1);
    let reset = fake
        .client
        .post(fake.url("/_fake/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 204);
    assert_eq!(fake.admin("/messages").await, json!([]));
    assert_eq!(fake.admin("/requests").await, json!([]));
    assert_eq!(fake.admin("/callbacks").await, json!([]));
    assert_eq!(fake.admin("/numbers").await, json!({}));
    let faults: Value = fake.admin("/faults").await;
    assert_eq!(faults["rate_429"], 0.0);
}

#[tokio::test]
async fn request_log_is_bounded() {
    let fake = Fake::start_with(|c| c.request_log_capacity = 3).await;
    for _ in 0..5 {
        fake.get("/v1/PhoneNumbers/%2B15108675310").await;
    }
    let ids: Vec<u64> = fake
        .requests()
        .await
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [3, 4, 5]);
}

#[tokio::test]
async fn request_log_filters() {
    let fake = Fake::start().await;
    fake.get("/v1/PhoneNumbers/%2B15108675310").await;
    fake.create(&[("To", TO), ("From", FROM), ("Body", "x")])
        .await;
    fake.get("/v2/PhoneNumbers/%2B15108675310").await;
    let ids = |records: Value| -> Vec<u64> {
        records
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(ids(fake.admin("/requests?since=1").await), [2, 3]);
    assert_eq!(ids(fake.admin("/requests?path_prefix=/v2/").await), [3]);
    assert_eq!(ids(fake.admin("/requests?method=post").await), [2]);
    assert_eq!(
        ids(fake.admin("/requests?method=GET&path_prefix=/v1/").await),
        [1]
    );
}
