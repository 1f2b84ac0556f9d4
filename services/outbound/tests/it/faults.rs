//! Transient failures at Twilio: rate-limited and failing sends are retried until each job is
//! sent exactly once, and an ambiguous create is resolved by listing, not by sending again.

use serde_json::json;
use switchboard_store::outbound::JobState;
use switchboard_wire::outbound::{EventKind, HEADER_DEAD_LETTER_ATTEMPTS, HEADER_DEAD_LETTER_CODE};

use crate::support::{ACCOUNT_SID, AUTH_TOKEN, FROM, Harness, number, sms_job};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_30_percent_429_and_503_every_job_is_sent_exactly_once() {
    let mut h = Harness::new().await.unwrap();
    h.fake_put(
        "faults",
        json!({"seed": 7, "rate_429": 0.15, "rate_5xx": 0.15, "status_5xx": 503}),
    )
    .await;
    h.start().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..50 {
        let job = sms_job(&format!("flaky-{i}"), &number(100 + i));
        h.publish(&job).await.unwrap();
        ids.push(format!("job-flaky-{i}"));
    }
    let finals = h.wait_final(&ids).await;
    for (id, event) in &finals {
        assert_eq!(event.kind, EventKind::Sent, "{id}: {event:?}");
    }
    h.wait_idle().await;

    let created = h.created_by_recipient().await;
    for i in 0..50 {
        assert_eq!(created.get(&number(100 + i)), Some(&1), "job {i}");
    }
    let requests = h.create_requests_by_recipient().await;
    let creates: usize = requests.values().sum();
    assert!(
        creates > 50,
        "the faults fired: {creates} creates for 50 jobs"
    );
    for id in &ids {
        assert_eq!(h.count_kind(id, EventKind::Sent), 1, "{id}");
    }
    // Events and rows agree on the SIDs.
    for i in 0..50 {
        let row = h
            .store
            .outbound_job(&format!("flaky-{i}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.state, JobState::Sent);
        assert_eq!(row.twilio_sid, finals[&format!("job-flaky-{i}")].twilio_sid);
    }
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_create_is_resolved_by_the_list_check() {
    let mut h = Harness::new().await.unwrap();
    let answered_500 = number(20);
    let dropped = number(21);
    h.fake_put(
        &format!("numbers/{}", answered_500.replace('+', "%2B")),
        json!({"accept_then_fail": {"mode": "status", "status": 500}}),
    )
    .await;
    h.fake_put(
        &format!("numbers/{}", dropped.replace('+', "%2B")),
        json!({"accept_then_fail": {"mode": "drop"}}),
    )
    .await;
    h.start().await.unwrap();
    h.publish(&sms_job("ambiguous-500", &answered_500))
        .await
        .unwrap();
    h.publish(&sms_job("ambiguous-drop", &dropped))
        .await
        .unwrap();

    let ids = ["job-ambiguous-500", "job-ambiguous-drop"].map(String::from);
    let finals = h.wait_final(&ids).await;
    h.wait_idle().await;

    let messages = h.fake_get("messages").await;
    for (id, to) in [
        ("job-ambiguous-500", &answered_500),
        ("job-ambiguous-drop", &dropped),
    ] {
        let event = &finals[id];
        assert_eq!(event.kind, EventKind::Sent, "{id}: {event:?}");
        let created: Vec<&serde_json::Value> = messages
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["message"]["to"] == to.as_str())
            .collect();
        assert_eq!(created.len(), 1, "{id}: one message at Twilio");
        assert_eq!(
            event.twilio_sid.as_deref(),
            created[0]["message"]["sid"].as_str(),
            "{id}: the message Twilio created was adopted"
        );
    }
    let requests = h.create_requests_by_recipient().await;
    assert_eq!(requests.get(&answered_500), Some(&1), "no second create");
    assert_eq!(requests.get(&dropped), Some(&1), "no second create");
    let lists = h.fake_get("requests?method=GET").await;
    assert!(
        lists
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["operation"] == "ListMessage"),
        "the check listed messages"
    );
    let row = h
        .store
        .outbound_job("ambiguous-500")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.state, JobState::Sent);
    assert_eq!(row.attempts, 1);
    h.stop().await.unwrap();
}

/// The worst ambiguous create: it times out at the client yet goes through, and Twilio's list
/// shows the message only some time later. The first list after the timeout does not show it;
/// the service must not take that for "nothing was created" and create it again, but list again
/// once `list_settle` has passed since the create ended, find it and adopt it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_timed_out_is_not_repeated_while_the_list_lags() {
    let mut h = Harness::new().await.unwrap();
    // The create is answered 2 s after the message was made; the client gives up after 1 s.
    // The message is listed 2.5 s after its creation, 1.5 s after the timeout. The list is
    // trusted 3 s after the timeout.
    h.config.request_timeout = std::time::Duration::from_secs(1);
    h.config.list_settle = std::time::Duration::from_secs(3);
    let to = number(22);
    h.fake_put(
        &format!("numbers/{}", to.replace('+', "%2B")),
        json!({"accept_then_fail": {"mode": "slow", "delay_ms": 2000}, "list_lag_ms": 2500}),
    )
    .await;
    h.start().await.unwrap();
    h.publish(&sms_job("lagging-list", &to)).await.unwrap();
    let id = "job-lagging-list".to_owned();
    let finals = h.wait_final(std::slice::from_ref(&id)).await;
    h.wait_idle().await;

    let event = &finals[&id];
    assert_eq!(event.kind, EventKind::Sent, "{event:?}");
    assert_eq!(
        h.create_requests_by_recipient().await.get(&to),
        Some(&1),
        "no second create"
    );
    let messages = h.fake_get("messages").await;
    let created: Vec<&serde_json::Value> = messages
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["message"]["to"] == to.as_str())
        .collect();
    assert_eq!(created.len(), 1, "one message at Twilio");
    assert_eq!(
        event.twilio_sid.as_deref(),
        created[0]["message"]["sid"].as_str(),
        "the message the timed-out create made was adopted"
    );
    // It was listed more than once: before the message showed, and once the list was trusted.
    let lists = h.fake_get("requests?method=GET").await;
    let lists = lists
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["operation"] == "ListMessage")
        .count();
    assert!(lists >= 2, "{lists} lists");
    let row = h.store.outbound_job("lagging-list").await.unwrap().unwrap();
    assert_eq!(row.state, JobState::Sent);
    assert_eq!(row.attempts, 1);
    assert_eq!(row.last_error_code.as_deref(), Some("timeout"));
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_keeps_failing_is_dead_lettered_after_the_attempts() {
    let mut h = Harness::new().await.unwrap();
    let busy = number(30);
    let broken = number(31);
    h.fake_put(
        &format!("numbers/{}", busy.replace('+', "%2B")),
        json!({"error": {"code": 20429}}),
    )
    .await;
    h.fake_put(
        &format!("numbers/{}", broken.replace('+', "%2B")),
        json!({"error": {"code": 503, "empty_body": true}}),
    )
    .await;
    h.start().await.unwrap();
    h.publish(&sms_job("dead-429", &busy)).await.unwrap();
    h.publish(&sms_job("dead-503", &broken)).await.unwrap();

    let ids = ["job-dead-429", "job-dead-503"].map(String::from);
    let finals = h.wait_final(&ids).await;
    h.wait_idle().await;
    let attempts = h.config.backoff.max_attempts;
    for id in &ids {
        let event = &finals[id];
        assert_eq!(event.kind, EventKind::DeadLettered, "{id}: {event:?}");
        assert_eq!(event.attempt, attempts, "{id}");
        let error = event.error.as_ref().unwrap();
        assert_eq!(error.code, "retries_exhausted", "{id}");
        assert_eq!(h.count_kind(id, EventKind::DeadLettered), 1, "{id}");
    }
    assert!(
        finals["job-dead-429"]
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("20429"),
        "names the last error"
    );
    let requests = h.create_requests_by_recipient().await;
    assert_eq!(requests.get(&busy), Some(&(attempts as usize)));
    assert_eq!(requests.get(&broken), Some(&(attempts as usize)));
    assert!(h.created_by_recipient().await.is_empty());

    let dead = h.dead_letters().await;
    assert_eq!(dead.len(), 2);
    for message in &dead {
        assert_eq!(
            message
                .headers
                .get(HEADER_DEAD_LETTER_CODE)
                .unwrap()
                .as_str(),
            "retries_exhausted"
        );
        assert_eq!(
            message
                .headers
                .get(HEADER_DEAD_LETTER_ATTEMPTS)
                .unwrap()
                .as_str(),
            attempts.to_string()
        );
    }
    let row = h.store.outbound_job("dead-503").await.unwrap().unwrap();
    assert_eq!(row.state, JobState::Dead);
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_cut_short_by_a_crash_is_adopted_not_repeated() {
    let mut h = Harness::new().await.unwrap();
    let to = number(40);
    let job = sms_job("crashed-1", &to);
    // What a process that died mid-create leaves behind: the row in `sending` (attempt 1, its
    // lease run out) and, at Twilio, the message that create made.
    let (row, _) = h
        .store
        .outbound_job_upsert("crashed-1", "job-crashed-1", "sms.send", None, Some(&to))
        .await
        .unwrap();
    h.store
        .outbound_claim_attempt(&row, std::time::Duration::ZERO)
        .await
        .unwrap()
        .expect("claimed");
    let created: serde_json::Value = h
        .http
        .post(format!(
            "{}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
            h.fake.base_url()
        ))
        .basic_auth(ACCOUNT_SID, Some(AUTH_TOKEN))
        .form(&[
            ("To", to.as_str()),
            ("From", FROM),
            ("Body", "Hello from crashed-1"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sid = created["sid"].as_str().unwrap().to_owned();

    h.start().await.unwrap();
    h.publish(&job).await.unwrap();
    let finals = h.wait_final(&["job-crashed-1".to_owned()]).await;
    let event = &finals["job-crashed-1"];
    assert_eq!(event.kind, EventKind::Sent, "{event:?}");
    assert_eq!(event.twilio_sid.as_deref(), Some(sid.as_str()), "adopted");
    h.wait_idle().await;
    assert_eq!(h.created_by_recipient().await.get(&to), Some(&1));
    assert_eq!(
        h.create_requests_by_recipient().await.get(&to),
        Some(&1),
        "only the crashed process's create"
    );
    let row = h.store.outbound_job("crashed-1").await.unwrap().unwrap();
    assert_eq!(row.state, JobState::Sent);
    assert_eq!(row.attempts, 1);
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_full_is_retried_and_retry_after_is_honoured() {
    let mut h = Harness::new().await.unwrap();
    let queue_full = number(50);
    let told_to_wait = number(51);
    h.fake_put(
        &format!("numbers/{}", queue_full.replace('+', "%2B")),
        json!({"error": {"code": 21611, "times": 2}}),
    )
    .await;
    h.fake_put(
        &format!("numbers/{}", told_to_wait.replace('+', "%2B")),
        json!({"error": {"code": 20429, "retry_after": 1, "times": 1}}),
    )
    .await;
    h.start().await.unwrap();
    h.publish(&sms_job("full-1", &queue_full)).await.unwrap();
    h.publish(&sms_job("wait-1", &told_to_wait)).await.unwrap();
    let ids = ["job-full-1", "job-wait-1"].map(String::from);
    let finals = h.wait_final(&ids).await;
    for id in &ids {
        assert_eq!(finals[id].kind, EventKind::Sent, "{id}: {:?}", finals[id]);
    }
    let requests = h.create_requests_by_recipient().await;
    assert_eq!(
        requests.get(&queue_full),
        Some(&3),
        "21611 twice, then sent"
    );
    assert_eq!(requests.get(&told_to_wait), Some(&2), "429 once, then sent");

    let at = |id: &str, kind: EventKind| {
        let event = h
            .events_of(id)
            .into_iter()
            .find(|e| e.kind == kind)
            .unwrap();
        time::OffsetDateTime::parse(&event.at, &time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let waited = at("job-wait-1", EventKind::Sent) - at("job-wait-1", EventKind::Accepted);
    assert!(
        waited >= time::Duration::milliseconds(900),
        "Retry-After: 1 was honoured over the 100 ms backoff cap (waited {waited})"
    );
    h.stop().await.unwrap();
}
