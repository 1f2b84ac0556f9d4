//! Jobs that end without a send: invalid payloads, permanent Twilio errors, unknown accounts.
//! None is dropped silently: each gets a `failed` event and a copy in the dead-letter stream.

use serde_json::json;
use switchboard_store::outbound::JobState;
use switchboard_wire::outbound::{EventKind, HEADER_DEAD_LETTER_CODE};

use crate::support::{Harness, number, sms_job};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_payloads_fail_naming_the_field_and_are_dead_lettered() {
    let mut h = Harness::new().await.unwrap();
    h.start().await.unwrap();

    h.publish_raw(b"{not json".to_vec(), Some("bad-json"), None)
        .await
        .unwrap();
    let mut future = sms_job("bad-version", &number(3));
    future["version"] = json!(2);
    h.publish(&future).await.unwrap();
    let mut bad_to = sms_job("bad-to", &number(4));
    bad_to["to"] = json!("555-1234");
    h.publish(&bad_to).await.unwrap();
    let mut misspelt = sms_job("bad-field", &number(5));
    misspelt["media_url"] = json!("https://example.com/a.png");
    h.publish(&misspelt).await.unwrap();

    let ids = ["bad-json", "job-bad-version", "job-bad-to", "job-bad-field"].map(String::from);
    let finals = h.wait_final(&ids).await;
    let expect = [
        ("bad-json", "invalid_job", None),
        ("job-bad-version", "unsupported_version", Some("version")),
        ("job-bad-to", "invalid_job", Some("to")),
        ("job-bad-field", "invalid_job", Some("media_url")),
    ];
    for (id, code, field) in expect {
        let event = &finals[id];
        assert_eq!(event.kind, EventKind::Failed, "{id}: {event:?}");
        let error = event.error.as_ref().unwrap();
        assert_eq!(error.code, code, "{id}: {error:?}");
        assert_eq!(error.field.as_deref(), field, "{id}: {error:?}");
        assert!(!error.message.is_empty());
    }

    h.wait_idle().await;
    let dead = h.dead_letters().await;
    assert_eq!(dead.len(), 4, "one copy each");
    assert!(
        dead.iter().any(|m| &m.payload[..] == b"{not json"),
        "copied byte for byte"
    );
    for message in &dead {
        let code = message
            .headers
            .get(HEADER_DEAD_LETTER_CODE)
            .unwrap()
            .as_str();
        assert!(
            code == "invalid_job" || code == "unsupported_version",
            "{code}"
        );
    }
    assert!(h.created_by_recipient().await.is_empty(), "nothing sent");
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_twilio_errors_are_not_retried() {
    let mut h = Harness::new().await.unwrap();
    let invalid = number(6);
    let opted_out = number(7);
    h.fake_put(
        &format!("numbers/{}", invalid.replace('+', "%2B")),
        json!({"error": {"code": 21211, "message": "The 'To' number is not a valid phone number."}}),
    )
    .await;
    h.fake_put(
        &format!("numbers/{}", opted_out.replace('+', "%2B")),
        json!({"error": {"code": 21610, "message": "Attempt to send to unsubscribed recipient"}}),
    )
    .await;
    h.start().await.unwrap();
    h.publish(&sms_job("perm-21211", &invalid)).await.unwrap();
    h.publish(&sms_job("perm-21610", &opted_out)).await.unwrap();
    let mut nobody = sms_job("perm-account", &number(8));
    nobody["account"] = json!({"name": "nobody"});
    h.publish(&nobody).await.unwrap();

    let ids = ["job-perm-21211", "job-perm-21610", "job-perm-account"].map(String::from);
    let finals = h.wait_final(&ids).await;
    for (id, code) in [
        ("job-perm-21211", "21211"),
        ("job-perm-21610", "21610"),
        ("job-perm-account", "unknown_account"),
    ] {
        let event = &finals[id];
        assert_eq!(event.kind, EventKind::Failed, "{id}: {event:?}");
        assert_eq!(event.error.as_ref().unwrap().code, code, "{id}");
    }
    let opt_out = finals["job-perm-21610"].error.clone().unwrap();
    assert_eq!(opt_out.message, "Attempt to send to unsubscribed recipient");
    assert_eq!(
        opt_out.more_info.as_deref(),
        Some("https://www.twilio.com/docs/errors/21610")
    );

    h.wait_idle().await;
    let requests = h.create_requests_by_recipient().await;
    assert_eq!(requests.get(&invalid), Some(&1), "no retry");
    assert_eq!(requests.get(&opted_out), Some(&1), "no retry");
    assert_eq!(
        requests.get(&number(8)),
        None,
        "unknown account: Twilio not called"
    );
    let row = h.store.outbound_job("perm-21610").await.unwrap().unwrap();
    assert_eq!(row.state, JobState::Failed);
    assert_eq!(row.last_error_code.as_deref(), Some("21610"));

    let dead = h.dead_letters().await;
    let mut codes: Vec<String> = dead
        .iter()
        .map(|m| m.headers.get(HEADER_DEAD_LETTER_CODE).unwrap().to_string())
        .collect();
    codes.sort();
    assert_eq!(codes, ["21211", "21610", "unknown_account"]);
    h.stop().await.unwrap();
}

/// A job missing several required fields, with others of the wrong type or breaking rules, is
/// answered with one `failed` event that names every problem (docs/jobs.md, "Validation"), not
/// only the first one deserialization meets; nothing reaches Twilio and the job is
/// dead-lettered as published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_event_names_every_problem_of_the_job() {
    let mut h = Harness::new().await.unwrap();
    h.start().await.unwrap();
    let mut job = sms_job("many-problems", &number(9));
    let object = job.as_object_mut().unwrap();
    object.remove("account");
    object.remove("to");
    object.insert("from".into(), json!(15005550006u64));
    object.insert(
        "media_urls".into(),
        json!(["ftp://files.example.com/a.png"]),
    );
    object.insert("validity_period".into(), json!(0));
    h.publish(&job).await.unwrap();

    let id = "job-many-problems".to_owned();
    let finals = h.wait_final(std::slice::from_ref(&id)).await;
    let event = &finals[&id];
    assert_eq!(event.kind, EventKind::Failed, "{event:?}");
    assert_eq!(event.metadata, json!({"key": "many-problems"}));
    let error = event.error.as_ref().unwrap();
    assert_eq!(error.code, "invalid_job");
    let fields: Vec<&str> = error.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        ["account", "to", "from", "media_urls[0]", "validity_period"],
        "{error:#?}"
    );
    assert_eq!(error.field.as_deref(), Some("account"));
    assert_eq!(
        error.message,
        "account: required; to: required; from: must be a string, not a number; \
         media_urls[0]: must be an absolute http:// or https:// URL; \
         validity_period: 0 is outside 1..=36000 seconds"
    );
    h.wait_idle().await;
    assert_eq!(h.dead_letters().await.len(), 1);
    assert!(h.fake_get("requests").await.as_array().unwrap().is_empty());
    h.stop().await.unwrap();
}
