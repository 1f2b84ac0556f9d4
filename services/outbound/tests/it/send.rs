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

/// Every job's row says whom it was for: the connected account it sends from and its
/// recipient (`switchboard jobs list --account/--number` filter on them), whichever path wrote
/// the row: the batch claim of new jobs, the one-job path (rate limits on, a suppressed
/// recipient, an unknown account), and a row an earlier delivery left without them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_record_their_account_and_recipient() {
    let mut h = Harness::new().await.unwrap();
    let suppressed = number(61);
    h.store
        .suppress(
            h.account_id,
            &suppressed,
            switchboard_store::limits::SuppressionReason::Keyword,
            "STOP",
        )
        .await
        .unwrap();
    // A row written before the account was known (as by an earlier delivery whose account
    // lookup failed): the next delivery fills it in.
    let (early, created) = h
        .store
        .outbound_job_upsert("whom-early", "job-whom-early", "sms.send", None, None)
        .await
        .unwrap();
    assert!(created);
    assert_eq!((early.account_id, early.recipient), (None, None));
    h.start().await.unwrap();
    let mut unknown = sms_job("whom-unknown", &number(63));
    unknown["account"] = serde_json::json!({"name": "nobody"});
    for job in [
        sms_job("whom-batch", &number(60)),
        sms_job("whom-suppressed", &suppressed),
        unknown,
        sms_job("whom-early", &number(64)),
    ] {
        h.publish(&job).await.unwrap();
    }
    let ids = [
        "job-whom-batch",
        "job-whom-suppressed",
        "job-whom-unknown",
        "job-whom-early",
    ]
    .map(String::from);
    let finals = h.wait_final(&ids).await;
    assert_eq!(finals["job-whom-batch"].kind, EventKind::Sent);
    assert_eq!(finals["job-whom-early"].kind, EventKind::Sent);
    assert_eq!(finals["job-whom-suppressed"].kind, EventKind::Failed);
    assert_eq!(finals["job-whom-unknown"].kind, EventKind::Failed);
    h.wait_idle().await;
    h.stop().await.unwrap();

    // With rate limits on, every job takes the one-job path.
    h.config.limits = outbound::limits::LimitsConfig::default();
    h.start().await.unwrap();
    h.publish(&sms_job("whom-single", &number(62)))
        .await
        .unwrap();
    let finals = h.wait_final(&["job-whom-single".to_owned()]).await;
    assert_eq!(finals["job-whom-single"].kind, EventKind::Sent);
    h.wait_idle().await;

    let whom = |key: &'static str| {
        let store = h.store.clone();
        async move {
            let row = store.outbound_job(key).await.unwrap().unwrap();
            (row.account_id, row.recipient)
        }
    };
    let account = Some(h.account_id);
    assert_eq!(whom("whom-batch").await, (account, Some(number(60))));
    assert_eq!(whom("whom-suppressed").await, (account, Some(suppressed)));
    assert_eq!(whom("whom-unknown").await, (None, Some(number(63))));
    assert_eq!(whom("whom-early").await, (account, Some(number(64))));
    assert_eq!(whom("whom-single").await, (account, Some(number(62))));
    // What the operator's `jobs list --account` reads.
    let by_account = h
        .store
        .view_jobs(&switchboard_store::views::JobFilter {
            account_id: Some(h.account_id),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_account.len(), 4, "all but the unknown account's job");
    h.stop().await.unwrap();
}

/// A `Switchboard-Reply-To` outside the reply prefixes (`_INBOX.` by default) would let any
/// publisher make the service publish to Switchboard's own subjects: the job is rejected
/// (`invalid_job` naming the header, dead-lettered), nothing is sent, and nothing reaches the
/// subject it named; a lookup job likewise. One under `_INBOX.` still gets its outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_subject_outside_the_reply_prefixes_is_refused() {
    let mut h = Harness::new().await.unwrap();
    h.start().await.unwrap();
    let prefix = crate::support::prefix(&h.config);
    let elsewhere = format!("{prefix}.behavior.run");
    let mut snooped = h.client.subscribe(elsewhere.clone()).await.unwrap();
    h.client.flush().await.unwrap();

    let to = number(7);
    let job = sms_job("reply-1", &to);
    h.publish_raw(
        serde_json::to_vec(&job).unwrap(),
        Some("reply-1"),
        Some(&elsewhere),
    )
    .await
    .unwrap();
    let lookup = serde_json::json!({
        "version": 1,
        "job_id": "job-reply-2",
        "idempotency_key": "reply-2",
        "account": {"id": h.account_id},
        "number": to,
        "api": {"v2": {"fields": ["validation"]}},
    });
    h.publish_to(
        &h.config.subjects.lookup(),
        serde_json::to_vec(&lookup).unwrap(),
        Some("reply-2"),
        Some("$JS.API.STREAM.DELETE.X"),
    )
    .await
    .unwrap();

    let finals = h
        .wait_final(&["job-reply-1".to_owned(), "job-reply-2".to_owned()])
        .await;
    for (id, subject) in [
        ("job-reply-1", elsewhere.as_str()),
        ("job-reply-2", "$JS.API.STREAM.DELETE.X"),
    ] {
        let failed = &finals[id];
        assert_eq!(failed.kind, EventKind::Failed, "{failed:?}");
        let error = failed.error.as_ref().unwrap();
        assert_eq!(error.code, "invalid_job");
        assert_eq!(error.field.as_deref(), Some("Switchboard-Reply-To"));
        assert_eq!(
            error.message,
            format!(
                "Switchboard-Reply-To: '{subject}' is not under '_INBOX.': the final event goes only to a reply inbox"
            )
        );
        assert_eq!(h.events_of(id).len(), 1, "only the failed event");
    }
    h.wait_idle().await;
    assert!(h.created_by_recipient().await.is_empty(), "nothing sent");
    let dead = h.dead_letters().await;
    let codes: Vec<String> = dead
        .iter()
        .map(|m| {
            m.headers
                .get("Switchboard-Error-Code")
                .unwrap()
                .as_str()
                .to_owned()
        })
        .collect();
    assert_eq!(codes, ["invalid_job", "invalid_job"]);
    let nothing = tokio::time::timeout(std::time::Duration::from_millis(500), snooped.next()).await;
    assert!(nothing.is_err(), "published to {elsewhere}: {nothing:?}");
    h.stop().await.unwrap();
}
