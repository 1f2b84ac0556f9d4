//! The happy path, the outcome on `Switchboard-Reply-To`, and de-duplication of re-published jobs.

use futures::StreamExt;
use switchboard_store::outbound::JobState;
use switchboard_wire::outbound::{EventKind, JobEvent};

use crate::support::{Harness, WAIT, number, sms_job};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_sent_once_and_reported() {
    let mut h = Harness::new().await.unwrap();
    h.start().await.unwrap();
    let reply_to = h.client.new_inbox();
    let mut outcome = h.client.subscribe(reply_to.clone()).await.unwrap();
    h.client.flush().await.unwrap();

    let to = number(1);
    let job = sms_job("happy-1", &to);
    let payload = serde_json::to_vec(&job).unwrap();
    h.publish_raw(payload, Some("happy-1"), Some(&reply_to))
        .await
        .unwrap();
    let finals = h.wait_final(&["job-happy-1".to_owned()]).await;
    let sent = &finals["job-happy-1"];
    assert_eq!(sent.kind, EventKind::Sent, "{sent:?}");
    let sid = sent.twilio_sid.clone().expect("a sid");
    assert!(sid.starts_with("SM"), "{sid}");
    assert_eq!(sent.status.as_deref(), Some("queued"));
    assert_eq!(sent.attempt, 1);
    assert_eq!(sent.metadata["key"], "happy-1");

    let kinds: Vec<EventKind> = h.events_of("job-happy-1").iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::Accepted, EventKind::Sent]);

    let replied = tokio::time::timeout(WAIT, outcome.next())
        .await
        .unwrap()
        .unwrap();
    let replied: JobEvent = serde_json::from_slice(&replied.payload).unwrap();
    assert_eq!(replied.kind, EventKind::Sent);
    assert_eq!(replied.twilio_sid.as_deref(), Some(sid.as_str()));

    // The events go out before the row records that they did; the ack comes last.
    h.wait_idle().await;
    let row = h.store.outbound_job("happy-1").await.unwrap().unwrap();
    assert_eq!(row.state, JobState::Sent);
    assert_eq!(row.twilio_sid.as_deref(), Some(sid.as_str()));
    assert_eq!(row.attempts, 1);
    assert!(row.accepted_published && row.final_published);

    let created = h.created_by_recipient().await;
    assert_eq!(created.get(&to), Some(&1));
    let messages = h.fake_get("messages").await;
    let form = &messages[0]["params"];
    assert!(form.to_string().contains("Hello from happy-1"), "{form}");
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_published_again_is_not_sent_again() {
    let mut h = Harness::new().await.unwrap();
    h.start().await.unwrap();
    let to = number(2);
    let mut job = sms_job("dup-1", &to);
    job["account"] = serde_json::json!({"id": h.account_id});

    assert!(
        !h.publish(&job).await.unwrap(),
        "the first publish is stored"
    );
    assert!(h.publish(&job).await.unwrap(), "JetStream drops the second");
    h.wait_final(&["job-dup-1".to_owned()]).await;
    h.wait_idle().await;

    // Past JetStream's de-duplication (no Nats-Msg-Id): the job's row stops it.
    let duplicate = h
        .publish_raw(serde_json::to_vec(&job).unwrap(), None, None)
        .await
        .unwrap();
    assert!(!duplicate, "stored without a message id");
    h.wait_idle().await;

    assert_eq!(h.created_by_recipient().await.get(&to), Some(&1));
    assert_eq!(h.create_requests_by_recipient().await.get(&to), Some(&1));
    assert_eq!(h.count_kind("job-dup-1", EventKind::Sent), 1);
    assert_eq!(h.count_kind("job-dup-1", EventKind::Accepted), 1);
    h.stop().await.unwrap();
}
