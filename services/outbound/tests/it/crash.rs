//! Outbound killed with SIGKILL in the middle of 1,000 jobs and started again: no job is lost
//! and the sandbox creates each message exactly once, including the jobs whose create was in
//! flight at the kill (the restarted service lists at Twilio before sending those again).

use std::collections::HashMap;

use serde_json::json;
use switchboard_store::sqlx;
use switchboard_wire::outbound::EventKind;

use crate::procs::{OutboundProcess, eventually};
use crate::support::{Harness, number, sms_job};

const JOBS: usize = 1000;

/// Job rows by state.
pub async fn job_states(h: &Harness) -> HashMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>("SELECT state, count(*) FROM outbound_jobs GROUP BY state")
        .fetch_all(h.store.pool())
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// Messages the sandbox has created so far.
async fn created(h: &Harness) -> usize {
    h.fake_get("messages").await.as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_with_sigkill_mid_1000_jobs_and_restarted_nothing_is_lost_or_doubled() {
    let mut h = Harness::new().await.unwrap();
    // Slow enough answers that the kill finds creates in flight.
    h.fake_put("faults", json!({"latency_ms": 20})).await;
    h.config.max_in_flight = 16;
    outbound::setup(&h.js, &h.config).await.unwrap();
    let mut ids = Vec::with_capacity(JOBS);
    for i in 0..JOBS {
        let key = format!("kill-{i}");
        h.publish(&sms_job(&key, &number(i))).await.unwrap();
        ids.push(format!("job-{key}"));
    }

    let mut first = OutboundProcess::spawn(&h).unwrap();
    eventually("200 messages created before the kill", || async {
        created(&h).await >= 200
    })
    .await;
    assert!(first.running(), "the first process is still running");
    first.kill().unwrap();
    let at_kill = created(&h).await;
    assert!(at_kill < JOBS, "killed mid-batch ({at_kill} created)");
    let in_flight = job_states(&h).await.get("sending").copied().unwrap_or(0);
    eprintln!("at the kill: {at_kill} created, {in_flight} rows sending");

    // Jobs the dead process held come back after the ack wait.
    let mut second = OutboundProcess::spawn(&h).unwrap();
    eventually("every job sent", || async {
        job_states(&h).await.get("sent").copied() == Some(JOBS as i64)
    })
    .await;
    assert!(second.running());
    // The final events of every job reach subscribers (published again after the kill for
    // the rows the first process finished but could not announce).
    let finals = h.wait_final(&ids).await;
    for (id, event) in &finals {
        assert_eq!(event.kind, EventKind::Sent, "{id}: {event:?}");
    }
    second.kill().unwrap();

    let states = job_states(&h).await;
    assert_eq!(states, HashMap::from([("sent".to_owned(), JOBS as i64)]));
    let created = h.created_by_recipient().await;
    for i in 0..JOBS {
        assert_eq!(
            created.get(&number(i)),
            Some(&1),
            "messages to job {i}'s recipient"
        );
    }
    // A create the kill cut short before the sandbox answered created nothing (the sandbox
    // drops a request whose connection goes); the restarted service listed, found nothing
    // and created it again. Those are the only repeated requests.
    let repeated = h
        .create_requests_by_recipient()
        .await
        .into_values()
        .filter(|n| *n > 1)
        .count();
    assert!(
        repeated <= 16,
        "{repeated} jobs were tried again, more than were in flight"
    );
    // Every recorded sid is the sandbox's message for that recipient.
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT idempotency_key, twilio_sid FROM outbound_jobs")
            .fetch_all(h.store.pool())
            .await
            .unwrap();
    let messages = h.fake_get("messages").await;
    let sid_to: HashMap<String, String> = messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["message"]["sid"].as_str().unwrap().to_owned(),
                m["message"]["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (key, sid) in rows {
        let i: usize = key.trim_start_matches("kill-").parse().unwrap();
        let sid = sid.unwrap_or_else(|| panic!("{key} has no sid"));
        assert_eq!(sid_to.get(&sid), Some(&number(i)), "{key}'s sid {sid}");
    }
}
