//! Lookup jobs: v1 and v2 answers as `completed` events (and on `Switchboard-Reply-To`), an
//! unknown number as `found: false` after one request, invalid jobs failed and dead-lettered,
//! permanent Twilio errors failed without retries, 429s retried.

use futures::StreamExt;
use serde_json::{Value as Json, json};
use switchboard_wire::outbound::{EventKind, JobEvent};

use crate::support::{ACCOUNT_NAME, Harness, WAIT, number};

const LOOKUP_CONSUMER: &str = "outbound-lookup";

fn lookup_job(key: &str, number: &str, api: Json) -> Json {
    json!({
        "version": 1,
        "job_id": format!("job-{key}"),
        "idempotency_key": key,
        "account": {"name": ACCOUNT_NAME},
        "number": number,
        "api": api,
        "metadata": {"key": key},
    })
}

impl Harness {
    async fn publish_lookup(&self, job: &Json, reply_to: Option<&str>) {
        let subject = self.config.subjects.lookup();
        let key = job["idempotency_key"].as_str();
        self.publish_to(&subject, serde_json::to_vec(job).unwrap(), key, reply_to)
            .await
            .unwrap();
    }

    /// Lookup requests the sandbox received for `number` (any answer), with their query.
    async fn lookup_requests(&self, number: &str) -> Vec<String> {
        let digits = number.trim_start_matches('+');
        let requests = self.fake_get("requests?method=GET").await;
        requests
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["path"]
                    .as_str()
                    .is_some_and(|p| p.contains("/PhoneNumbers/") && p.ends_with(digits))
            })
            .map(|r| format!("{} {}", r["path"], r["query"]))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_and_v2_lookups_complete_with_twilios_answer() {
    let mut h = Harness::new().await.unwrap();
    h.start().await.unwrap();
    let reply_to = h.client.new_inbox();
    let mut outcome = h.client.subscribe(reply_to.clone()).await.unwrap();
    h.client.flush().await.unwrap();

    let (n1, n2) = (number(101), number(102));
    h.publish_lookup(
        &lookup_job(
            "v1-1",
            &n1,
            json!({"v1": {"types": ["carrier", "caller-name"]}}),
        ),
        Some(&reply_to),
    )
    .await;
    h.publish_lookup(
        &lookup_job(
            "v2-1",
            &n2,
            json!({"v2": {"fields": ["line_type_intelligence", "caller_name"]}}),
        ),
        None,
    )
    .await;
    let finals = h
        .wait_final(&["job-v1-1".to_owned(), "job-v2-1".to_owned()])
        .await;

    let v1 = &finals["job-v1-1"];
    assert_eq!(v1.kind, EventKind::Completed, "{v1:?}");
    assert_eq!(v1.attempt, 1);
    assert_eq!(v1.metadata["key"], "v1-1");
    let result = v1.result.as_ref().expect("a result");
    assert_eq!(result["found"], true);
    assert_eq!(result["lookup"]["phone_number"], n1.as_str());
    assert_eq!(result["lookup"]["carrier"]["type"], "mobile");
    assert_eq!(result["lookup"]["caller_name"]["caller_type"], "CONSUMER");

    let v2 = &finals["job-v2-1"];
    assert_eq!(v2.kind, EventKind::Completed, "{v2:?}");
    let result = v2.result.as_ref().expect("a result");
    assert_eq!(result["found"], true);
    assert_eq!(result["lookup"]["valid"], true);
    assert_eq!(result["lookup"]["line_type_intelligence"]["type"], "mobile");
    assert!(result["lookup"]["caller_name"].is_object(), "{result}");
    assert!(result["lookup"]["sim_swap"].is_null(), "not asked for");

    let kinds: Vec<EventKind> = h.events_of("job-v1-1").iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::Accepted, EventKind::Completed]);

    // The outcome also went to the reply subject of the job that asked for it.
    let replied = tokio::time::timeout(WAIT, outcome.next())
        .await
        .unwrap()
        .unwrap();
    let replied: JobEvent = serde_json::from_slice(&replied.payload).unwrap();
    assert_eq!(replied.job_id, "job-v1-1");
    assert_eq!(replied.kind, EventKind::Completed);
    assert_eq!(replied.result, v1.result);

    // What Twilio was asked: v1 with repeated Type, v2 with comma-separated Fields.
    let v1_requests = h.lookup_requests(&n1).await;
    assert_eq!(v1_requests.len(), 1, "{v1_requests:?}");
    assert!(
        v1_requests[0].contains("/v1/PhoneNumbers/"),
        "{v1_requests:?}"
    );
    assert!(
        v1_requests[0].contains("Type=carrier&Type=caller-name"),
        "{v1_requests:?}"
    );
    let v2_requests = h.lookup_requests(&n2).await;
    assert_eq!(v2_requests.len(), 1, "{v2_requests:?}");
    assert!(
        v2_requests[0].contains("Fields=line_type_intelligence,caller_name"),
        "{v2_requests:?}"
    );
    h.wait_consumer_idle(LOOKUP_CONSUMER).await;
    // Send-SMS jobs are not the lookup consumer's, nor the other way round.
    h.wait_idle().await;
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_number_is_an_answer_and_a_permanent_error_a_failure_neither_retried() {
    let mut h = Harness::new().await.unwrap();
    // An account whose token Twilio refuses (401 / 20003): permanent.
    h.store
        .add_account(
            "wrong-token",
            crate::support::ACCOUNT_SID,
            &secrecy::SecretString::from("not-the-token"),
        )
        .await
        .unwrap();
    h.start().await.unwrap();
    let (unknown, refused, invalid_v2) = (number(111), number(112), number(113));
    for n in [&unknown, &invalid_v2] {
        h.fake_put(
            &format!("numbers/{}", n.replace('+', "%2B")),
            json!({"lookup": {"valid": false}}),
        )
        .await;
    }
    h.publish_lookup(
        &lookup_job("unknown-1", &unknown, json!({"v1": {"types": ["carrier"]}})),
        None,
    )
    .await;
    let mut job = lookup_job("refused-1", &refused, json!({"v2": {}}));
    job["account"] = json!({"name": "wrong-token"});
    h.publish_lookup(&job, None).await;
    h.publish_lookup(
        &lookup_job("invalid-v2", &invalid_v2, json!({"v2": {"fields": []}})),
        None,
    )
    .await;
    let ids = ["job-unknown-1", "job-refused-1", "job-invalid-v2"].map(str::to_owned);
    let finals = h.wait_final(&ids).await;

    // v1's 404 / 20404 says the number is unknown: completed, found false, one request.
    let unknown_event = &finals["job-unknown-1"];
    assert_eq!(
        unknown_event.kind,
        EventKind::Completed,
        "{unknown_event:?}"
    );
    assert_eq!(
        unknown_event.result,
        Some(json!({"found": false, "lookup": null}))
    );
    assert_eq!(h.lookup_requests(&unknown).await.len(), 1);

    // v2 answers an invalid number with 200 and valid: false.
    let v2 = &finals["job-invalid-v2"];
    assert_eq!(v2.kind, EventKind::Completed, "{v2:?}");
    let result = v2.result.as_ref().unwrap();
    assert_eq!(result["found"], true);
    assert_eq!(result["lookup"]["valid"], false);
    assert!(result["lookup"]["validation_errors"].is_array(), "{result}");

    // 401 / 20003: failed with Twilio's code and message after one request, dead-lettered.
    let refused_event = &finals["job-refused-1"];
    assert_eq!(refused_event.kind, EventKind::Failed, "{refused_event:?}");
    let error = refused_event.error.as_ref().unwrap();
    assert_eq!(error.code, "20003");
    assert!(!error.message.is_empty());
    assert_eq!(
        error.more_info.as_deref(),
        Some("https://www.twilio.com/docs/errors/20003")
    );
    assert_eq!(refused_event.attempt, 1);
    assert_eq!(h.lookup_requests(&refused).await.len(), 1, "not retried");
    h.wait_consumer_idle(LOOKUP_CONSUMER).await;
    let dead = h.dead_letters().await;
    assert_eq!(dead.len(), 1, "only the failure is dead-lettered");
    assert_eq!(
        dead[0].subject.as_str(),
        h.config
            .subjects
            .dead_letter(switchboard_wire::outbound::JobType::Lookup)
    );
    assert_eq!(
        dead[0]
            .headers
            .get("Switchboard-Error-Code")
            .map(|v| v.as_str()),
        Some("20003")
    );
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_lookup_jobs_fail_naming_the_field_and_are_dead_lettered() {
    let mut h = Harness::new().await.unwrap();
    h.start().await.unwrap();
    let reply_to = h.client.new_inbox();
    let mut outcome = h.client.subscribe(reply_to.clone()).await.unwrap();
    h.client.flush().await.unwrap();
    let job = lookup_job(
        "bad-lookup",
        "+1 415 555 0000",
        json!({"v2": {"fields": ["line_type_intelligence", "carrier"]}}),
    );
    let payload = serde_json::to_vec(&job).unwrap();
    h.publish_to(
        &h.config.subjects.lookup(),
        payload.clone(),
        Some("bad-lookup"),
        Some(&reply_to),
    )
    .await
    .unwrap();
    let finals = h.wait_final(&["job-bad-lookup".to_owned()]).await;
    let failed = &finals["job-bad-lookup"];
    assert_eq!(failed.kind, EventKind::Failed);
    assert_eq!(failed.job, switchboard_wire::outbound::JobType::Lookup);
    let error = failed.error.as_ref().unwrap();
    assert_eq!(error.code, "invalid_job");
    assert_eq!(error.field.as_deref(), Some("number"));
    let fields: Vec<&str> = error.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["number", "api.v2.fields[1]"]);
    assert_eq!(failed.metadata["key"], "bad-lookup");

    let replied = tokio::time::timeout(WAIT, outcome.next())
        .await
        .unwrap()
        .unwrap();
    let replied: JobEvent = serde_json::from_slice(&replied.payload).unwrap();
    assert_eq!(replied.kind, EventKind::Failed);

    h.wait_consumer_idle(LOOKUP_CONSUMER).await;
    let dead = h.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].payload.as_ref(),
        payload.as_slice(),
        "byte for byte"
    );
    assert_eq!(
        dead[0]
            .headers
            .get("Switchboard-Error-Code")
            .map(|v| v.as_str()),
        Some("invalid_job")
    );
    assert!(
        h.fake_get("requests?method=GET")
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_lookups_are_retried_and_outlasting_failures_dead_lettered() {
    let mut h = Harness::new().await.unwrap();
    h.config.backoff.max_attempts = 3;
    h.start().await.unwrap();
    let (busy, down) = (number(121), number(122));
    h.fake_put(
        &format!("numbers/{}", busy.replace('+', "%2B")),
        json!({"error": {"code": 20429, "times": 2}}),
    )
    .await;
    h.fake_put(
        &format!("numbers/{}", down.replace('+', "%2B")),
        json!({"error": {"code": 503, "empty_body": true}}),
    )
    .await;
    h.publish_lookup(&lookup_job("busy-1", &busy, json!({"v2": {}})), None)
        .await;
    h.publish_lookup(
        &lookup_job("down-1", &down, json!({"v1": {"types": []}})),
        None,
    )
    .await;
    let finals = h
        .wait_final(&["job-busy-1".to_owned(), "job-down-1".to_owned()])
        .await;

    let busy_event = &finals["job-busy-1"];
    assert_eq!(busy_event.kind, EventKind::Completed, "{busy_event:?}");
    assert_eq!(busy_event.attempt, 3, "two 429s, then the answer");
    assert_eq!(h.lookup_requests(&busy).await.len(), 3);

    let down_event = &finals["job-down-1"];
    assert_eq!(down_event.kind, EventKind::DeadLettered, "{down_event:?}");
    let error = down_event.error.as_ref().unwrap();
    assert_eq!(error.code, "retries_exhausted");
    assert!(error.message.contains("3 attempts"), "{}", error.message);
    assert_eq!(h.lookup_requests(&down).await.len(), 3);
    h.wait_consumer_idle(LOOKUP_CONSUMER).await;
    let dead = h.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0]
            .headers
            .get("Switchboard-Attempts")
            .map(|v| v.as_str()),
        Some("3")
    );
    h.stop().await.unwrap();
}
