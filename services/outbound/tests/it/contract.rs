//! Contract test: the Messages create requests the outbound service sends are valid against
//! Twilio's official OpenAPI description (built into the sandbox from
//! `services/twilio-fake/openapi/`), as checked by the sandbox, including repeated `MediaUrl`
//! keys.

use serde_json::Value as Json;

use crate::support::{Harness, number, sms_job};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_requests_are_valid_against_the_official_openapi() {
    let mut h = Harness::new_with_openapi().await.unwrap();

    // The checker is active: a request without `To` is flagged (and not by the service).
    let bad = h
        .http
        .post(format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            h.fake.base_url(),
            crate::support::ACCOUNT_SID
        ))
        .basic_auth(
            crate::support::ACCOUNT_SID,
            Some(crate::support::AUTH_TOKEN),
        )
        .form(&[("From", "+15005550006"), ("Body", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let log = h.fake_get("requests").await;
    let flagged = log.as_array().unwrap().last().unwrap()["openapi_violations"]
        .as_array()
        .unwrap()
        .len();
    assert!(
        flagged > 0,
        "the sandbox checks requests against the spec: {log}"
    );
    h.http
        .post(format!("{}/_fake/reset", h.fake.base_url()))
        .send()
        .await
        .unwrap();

    h.start().await.unwrap();
    let mut plain = sms_job("contract-plain", &number(1));
    plain["status_callback"] = Json::from("https://status.example.com/twilio/status");
    let mut media = sms_job("contract-media", &number(2));
    media["media_urls"] =
        serde_json::json!(["https://example.com/a.png", "https://example.com/b.jpg"]);
    assert!(!h.publish(&plain).await.unwrap(), "stored, not a duplicate");
    assert!(!h.publish(&media).await.unwrap(), "stored, not a duplicate");
    let finals = h
        .wait_final(&[
            "job-contract-plain".to_owned(),
            "job-contract-media".to_owned(),
        ])
        .await;
    assert_eq!(finals.len(), 2);

    let log = h.fake_get("requests").await;
    let creates: Vec<&Json> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["method"] == "POST" && r["path"].as_str().unwrap_or("").ends_with("/Messages.json")
        })
        .collect();
    assert_eq!(creates.len(), 2, "{log}");
    for r in &creates {
        assert_eq!(r["openapi_checked"], true, "the check ran: {r}");
        assert_eq!(
            r["openapi_violations"],
            serde_json::json!([]),
            "request violates the spec: {r}"
        );
    }
    let media_params: Vec<&Json> = creates
        .iter()
        .flat_map(|r| r["form"].as_array().unwrap().iter())
        .filter(|p| p[0] == "MediaUrl")
        .collect();
    assert_eq!(
        media_params.len(),
        2,
        "MediaUrl sent as a repeated key: {log}"
    );
    h.wait_idle().await;
    h.stop().await.unwrap();
}
