//! Status callbacks: received by a small axum app, signatures checked with switchboard-twilio.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use switchboard_twilio::signature;

use crate::support::*;

/// One callback as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    params: Vec<(String, String)>,
    signature: String,
    content_type: String,
}

impl Received {
    fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.params.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        keys
    }
}

type Inbox = Arc<Mutex<Vec<Received>>>;

/// Starts a receiver; returns its status URL (with a query string, which is signed too).
async fn receiver() -> (String, Inbox) {
    let inbox: Inbox = Arc::default();
    async fn status(State(inbox): State<Inbox>, headers: HeaderMap, body: Bytes) -> StatusCode {
        inbox.lock().unwrap().push(Received {
            params: signature::parse_form(&body),
            signature: headers
                .get(signature::HEADER)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
            content_type: headers
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
        });
        StatusCode::OK
    }
    let app = Router::new()
        .route("/status", post(status))
        .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/status?bot=b1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, inbox)
}

async fn wait_for(inbox: &Inbox, count: usize) -> Vec<Received> {
    eventually(Duration::from_secs(5), || async {
        let got = inbox.lock().unwrap().clone();
        (got.len() >= count).then_some(got)
    })
    .await
}

#[tokio::test]
async fn delivered_callbacks_are_signed_like_twilio() {
    let fake = Fake::start().await;
    let (url, inbox) = receiver().await;
    let m: Value = fake
        .create(&[
            ("To", TO),
            ("From", FROM),
            ("Body", "hi"),
            ("StatusCallback", &url),
        ])
        .await
        .json()
        .await
        .unwrap();
    let sid = m["sid"].as_str().unwrap();
    let got = wait_for(&inbox, 2).await;
    let statuses: Vec<&str> = got
        .iter()
        .map(|r| r.get("MessageStatus").unwrap())
        .collect();
    assert_eq!(statuses, ["sent", "delivered"]);
    for r in &got {
        assert_eq!(r.content_type, "application/x-www-form-urlencoded");
        assert!(
            signature::validate_form(TOKEN, &url, &r.params, &r.signature),
            "signature of {:?}",
            r.params
        );
        assert!(!signature::validate_form(
            OTHER_TOKEN,
            &url,
            &r.params,
            &r.signature
        ));
        assert_eq!(r.get("MessageSid"), Some(sid));
        assert_eq!(r.get("SmsSid"), Some(sid));
        assert_eq!(r.get("AccountSid"), Some(ACCOUNT));
        assert_eq!(r.get("From"), Some(FROM));
        assert_eq!(r.get("To"), Some(TO));
        assert_eq!(r.get("ApiVersion"), Some("2010-04-01"));
        assert_eq!(r.get("SmsStatus"), r.get("MessageStatus"));
        assert_eq!(r.get("ErrorCode"), None);
    }
    assert_eq!(
        got[0].keys(),
        [
            "AccountSid",
            "ApiVersion",
            "From",
            "MessageSid",
            "MessageStatus",
            "SmsSid",
            "SmsStatus",
            "To"
        ]
    );
    assert_eq!(
        got[1].keys(),
        [
            "AccountSid",
            "ApiVersion",
            "From",
            "MessageSid",
            "MessageStatus",
            "RawDlrDoneDate",
            "SmsSid",
            "SmsStatus",
            "To"
        ]
    );
    let dlr = got[1].get("RawDlrDoneDate").unwrap();
    assert!(
        dlr.len() == 10 && dlr.chars().all(|c| c.is_ascii_digit()),
        "{dlr}"
    );

    // The resource moved on too.
    let fetched: Value = fake
        .get(&format!(
            "/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fetched["status"], "delivered");
    assert!(fetched["date_sent"].is_string());

    let attempts = fake.admin("/callbacks").await;
    let attempts = attempts.as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[1]["status"], "delivered");
    assert_eq!(attempts[1]["response_status"], 200);
    assert_eq!(attempts[1]["url"], url.as_str());
    assert_eq!(attempts[1]["signature"], got[1].signature.as_str());
}

#[tokio::test]
async fn failures_carry_the_error_code() {
    let fake = Fake::start().await;
    let (url, inbox) = receiver().await;
    fake.rule(
        "+15550002222",
        json!({"delivery": {"status": "undelivered", "error_code": 30005}}),
    )
    .await;
    fake.rule(
        "+15550003333",
        json!({"delivery": {"status": "failed", "error_code": 30007}}),
    )
    .await;
    for to in ["+15550002222", "+15550003333"] {
        let response = fake
            .create(&[
                ("To", to),
                ("From", FROM),
                ("Body", "hi"),
                ("StatusCallback", &url),
            ])
            .await;
        assert_eq!(response.status(), 201);
    }
    let got = wait_for(&inbox, 3).await;
    let seen: Vec<(&str, &str, Option<&str>)> = got
        .iter()
        .map(|r| {
            (
                r.get("To").unwrap(),
                r.get("MessageStatus").unwrap(),
                r.get("ErrorCode"),
            )
        })
        .collect();
    for expected in [
        ("+15550002222", "sent", None),
        ("+15550002222", "undelivered", Some("30005")),
        ("+15550003333", "failed", Some("30007")),
    ] {
        assert!(seen.contains(&expected), "{expected:?} in {seen:?}");
    }
    for r in &got {
        assert!(signature::validate_form(
            TOKEN,
            &url,
            &r.params,
            &r.signature
        ));
    }
    let stored = fake.admin("/messages").await;
    let failed = stored
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["message"]["to"] == "+15550003333")
        .unwrap();
    assert_eq!(failed["message"]["status"], "failed");
    assert_eq!(failed["message"]["error_code"], 30007);
}

#[tokio::test]
async fn messaging_service_callbacks_start_at_queued() {
    let fake = Fake::start().await;
    let (url, inbox) = receiver().await;
    let service = "MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let response = fake
        .create(&[
            ("To", TO),
            ("MessagingServiceSid", service),
            ("Body", "hi"),
            ("StatusCallback", &url),
        ])
        .await;
    assert_eq!(response.status(), 201);
    let got = wait_for(&inbox, 3).await;
    let statuses: Vec<&str> = got
        .iter()
        .map(|r| r.get("MessageStatus").unwrap())
        .collect();
    assert_eq!(statuses, ["queued", "sent", "delivered"]);
    for r in &got {
        assert_eq!(r.get("MessagingServiceSid"), Some(service));
        assert!(r.get("From").is_some_and(|f| f.starts_with('+')));
        assert!(signature::validate_form(
            TOKEN,
            &url,
            &r.params,
            &r.signature
        ));
    }
}

#[tokio::test]
async fn unreachable_callbacks_are_recorded() {
    let fake = Fake::start().await;
    // A port nobody listens on: bind, note it, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/status");
    fake.create(&[
        ("To", TO),
        ("From", FROM),
        ("Body", "hi"),
        ("StatusCallback", &url),
    ])
    .await;
    let attempts = eventually(Duration::from_secs(5), || async {
        let a = fake.admin("/callbacks").await;
        (a.as_array().unwrap().len() >= 2).then_some(a)
    })
    .await;
    assert_eq!(attempts[0]["response_status"], Value::Null);
    assert!(attempts[0]["error"].is_string());
}

#[tokio::test]
async fn callbacks_on_demand_reproduce_out_of_order_delivery() {
    let fake = Fake::start().await;
    let (url, inbox) = receiver().await;
    let m: Value = fake
        .create(&[
            ("To", TO),
            ("From", FROM),
            ("Body", "hi"),
            ("StatusCallback", &url),
        ])
        .await
        .json()
        .await
        .unwrap();
    let sid = m["sid"].as_str().unwrap();
    wait_for(&inbox, 2).await;

    // A late `sent` after `delivered`, as Twilio sometimes sends.
    let response = fake
        .client
        .post(fake.url(&format!("/_fake/messages/{sid}/callbacks")))
        .json(&json!({"status": "sent"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let attempt: Value = response.json().await.unwrap();
    assert_eq!(attempt["status"], "sent");
    assert_eq!(attempt["response_status"], 200);
    let got = wait_for(&inbox, 3).await;
    assert_eq!(got[2].get("MessageStatus"), Some("sent"));
    assert!(signature::validate_form(
        TOKEN,
        &url,
        &got[2].params,
        &got[2].signature
    ));
    let fetched: Value = fake
        .get(&format!(
            "/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        fetched["status"], "delivered",
        "the resource does not regress"
    );

    let with_code = fake
        .client
        .post(fake.url(&format!("/_fake/messages/{sid}/callbacks")))
        .json(&json!({"status": "undelivered", "error_code": 30008}))
        .send()
        .await
        .unwrap();
    assert_eq!(with_code.status(), 200);
    let got = wait_for(&inbox, 4).await;
    assert_eq!(got[3].get("ErrorCode"), Some("30008"));

    let unknown = fake
        .client
        .post(fake.url("/_fake/messages/SM00000000000000000000000000000000/callbacks"))
        .json(&json!({"status": "sent"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let plain: Value = fake
        .create(&[("To", TO), ("From", FROM), ("Body", "no callback")])
        .await
        .json()
        .await
        .unwrap();
    let no_url = fake
        .client
        .post(fake.url(&format!(
            "/_fake/messages/{}/callbacks",
            plain["sid"].as_str().unwrap()
        )))
        .json(&json!({"status": "sent"}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_url.status(), 422);
}
