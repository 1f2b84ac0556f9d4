//! A graceful stop in the middle of a batch and a restart: every job ends sent exactly once.

use serde_json::json;
use switchboard_wire::outbound::EventKind;

use crate::support::{Harness, WAIT, number, sms_job};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_and_restarted_mid_batch_every_job_is_sent_once() {
    let mut h = Harness::new().await.unwrap();
    // Slow sends, so the stop finds jobs in flight and jobs not yet started.
    h.fake_put("faults", json!({"latency_ms": 150})).await;
    h.config.max_in_flight = 4;
    h.start().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..40 {
        h.publish(&sms_job(&format!("restart-{i}"), &number(300 + i)))
            .await
            .unwrap();
        ids.push(format!("job-restart-{i}"));
    }

    let deadline = tokio::time::Instant::now() + WAIT;
    while ids
        .iter()
        .filter(|id| h.count_kind(id, EventKind::Sent) > 0)
        .count()
        < 8
    {
        assert!(tokio::time::Instant::now() < deadline, "no progress");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    h.stop().await.unwrap();
    let sent_before = ids
        .iter()
        .filter(|id| h.count_kind(id, EventKind::Sent) > 0)
        .count();
    assert!(sent_before < 40, "stopped mid-batch ({sent_before} sent)");

    let restarted = tokio::time::Instant::now();
    h.start().await.unwrap();
    let finals = h.wait_final(&ids).await;
    // Jobs fetched but not started were NAKed and the last acks flushed: none waited for the
    // ack wait to be redelivered.
    assert!(
        restarted.elapsed() < h.config.ack_wait(),
        "the restart took {:?}",
        restarted.elapsed()
    );
    h.wait_idle().await;
    for (id, event) in &finals {
        assert_eq!(event.kind, EventKind::Sent, "{id}: {event:?}");
    }
    let created = h.created_by_recipient().await;
    for i in 0..40 {
        assert_eq!(created.get(&number(300 + i)), Some(&1), "job {i}");
    }
    for id in &ids {
        assert_eq!(h.count_kind(id, EventKind::Sent), 1, "{id}");
    }
    h.stop().await.unwrap();
}
