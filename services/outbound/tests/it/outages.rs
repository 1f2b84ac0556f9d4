//! NATS restarted during a batch, and PostgreSQL unreachable for 10 s: jobs wait, then
//! complete, each sent exactly once (counted at the sandbox).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use switchboard_store::{MasterKey, Store};
use switchboard_wire::outbound::EventKind;

use crate::crash::job_states;
use crate::procs::{PgProxy, eventually};
use crate::support::{Harness, MASTER_KEY, number, sms_job};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarted_during_a_batch_every_job_is_sent_once() {
    let mut h = Harness::new().await.unwrap();
    h.fake_put("faults", json!({"latency_ms": 30})).await;
    h.config.max_in_flight = 8;
    h.start().await.unwrap();
    const JOBS: usize = 200;
    for i in 0..JOBS {
        h.publish(&sms_job(&format!("natsdown-{i}"), &number(1000 + i)))
            .await
            .unwrap();
    }
    eventually("some jobs sent before the restart", || async {
        job_states(&h).await.get("sent").copied().unwrap_or(0) >= 20
    })
    .await;
    // The stream and its consumer are on disk: they survive the restart with the jobs.
    h.nats.restart(Duration::from_secs(2)).await.unwrap();
    let after = job_states(&h).await.get("sent").copied().unwrap_or(0);
    assert!(after < JOBS as i64, "restarted mid-batch ({after} sent)");

    eventually("every job sent after the restart", || async {
        job_states(&h).await.get("sent").copied() == Some(JOBS as i64)
    })
    .await;
    let created = h.created_by_recipient().await;
    for i in 0..JOBS {
        assert_eq!(created.get(&number(1000 + i)), Some(&1), "job {i}");
    }
    // Nothing is left for redelivery, and every final event was published.
    eventually("all final events published", || async {
        let unpublished: (i64,) = switchboard_store::sqlx::query_as(
            "SELECT count(*) FROM outbound_jobs WHERE NOT final_published",
        )
        .fetch_one(h.store.pool())
        .await
        .unwrap();
        unpublished.0 == 0
    })
    .await;
    // Nothing is left in the consumer. An ack sent while the server was down is lost, so that
    // job comes back after the ack wait (35 s here) and is acknowledged without a send.
    eventually("the consumer holds no job", || async {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer =
            h.js.get_consumer_from_stream(
                switchboard_wire::outbound::OUTBOUND_CONSUMER,
                h.config.subjects.job_stream(),
            )
            .await
            .unwrap();
        let info = consumer.info().await.unwrap();
        info.num_pending == 0 && info.num_ack_pending == 0
    })
    .await;
    let created = h.created_by_recipient().await;
    for i in 0..JOBS {
        assert_eq!(
            created.get(&number(1000 + i)),
            Some(&1),
            "job {i} after the redeliveries"
        );
    }
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_for_10_s_jobs_wait_then_complete() {
    let mut h = Harness::new().await.unwrap();
    let proxy = PgProxy::start(&h.database_url).await.unwrap();
    let through_proxy = switchboard_store::connect(&proxy.url(&h.database_url).unwrap(), 8)
        .await
        .unwrap();
    let service_store = Store::new(through_proxy, Some(MasterKey::parse(MASTER_KEY).unwrap()));
    h.start_with_store(service_store).await.unwrap();

    // Through the proxy, the service works.
    let mut before = Vec::new();
    for i in 0..10 {
        let key = format!("pgdown-before-{i}");
        h.publish(&sms_job(&key, &number(2000 + i))).await.unwrap();
        before.push(format!("job-{key}"));
    }
    h.wait_final(&before).await;

    proxy.cut();
    const DURING: usize = 40;
    let mut during = Vec::new();
    for i in 0..DURING {
        let key = format!("pgdown-{i}");
        h.publish(&sms_job(&key, &number(2100 + i))).await.unwrap();
        during.push(format!("job-{key}"));
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Nothing is sent while its state cannot be recorded.
    let created = h.created_by_recipient().await;
    let sent_during: Vec<usize> = (0..DURING)
        .filter(|i| created.contains_key(&number(2100 + i)))
        .collect();
    assert!(
        sent_during.is_empty(),
        "sent without PostgreSQL: {sent_during:?}"
    );
    for id in &during {
        assert!(
            h.events_of(id).is_empty(),
            "{id} has events: nothing was recorded"
        );
    }

    proxy.restore();
    let finals = h.wait_final(&during).await;
    for (id, event) in &finals {
        assert_eq!(event.kind, EventKind::Sent, "{id}: {event:?}");
    }
    let created = h.created_by_recipient().await;
    for i in 0..DURING {
        assert_eq!(created.get(&number(2100 + i)), Some(&1), "job {i}");
    }
    // A sent event is published before the statement recording the batch (see
    // `send_claimed_work`), so a row may still read `sending` for a moment after its event.
    let all_sent = HashMap::from([("sent".to_owned(), (DURING + 10) as i64)]);
    eventually("every row recorded sent", || async {
        job_states(&h).await == all_sent
    })
    .await;
    h.stop().await.unwrap();
}
