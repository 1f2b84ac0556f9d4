//! Outbound limits over real NATS, PostgreSQL and the sandbox: the per-sender rate measured at
//! the sandbox (one and two replicas), the pause after a 429, the account concurrency cap, the
//! switch that turns limits off, and the suppression list (a suppressed recipient is refused
//! without calling Twilio; a 21610 answer suppresses).

use std::collections::HashMap;

use outbound::limits::LimitsConfig;
use serde_json::{Value as Json, json};
use switchboard_store::limits::SuppressionReason;
use switchboard_store::sqlx;
use switchboard_twilio::client::{ClientConfig, TwilioClient};
use switchboard_wire::outbound::EventKind;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::support::{FROM, Harness, WAIT, number, sms_job};

/// A replica of the service started with its production `run`, its Twilio client named by
/// its `User-Agent` so the sandbox tells the replicas apart.
struct Replica {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Replica {
    async fn start(h: &Harness, name: &str) -> Replica {
        let twilio = TwilioClient::new(ClientConfig {
            api_base: h.fake.base_url(),
            lookups_base: h.fake.base_url(),
            request_timeout: h.config.request_timeout,
            user_agent: name.to_owned(),
            ..Default::default()
        })
        .unwrap();
        let nats = async_nats::connect(h.nats.url()).await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(outbound::run(
            h.config.clone(),
            h.store.clone(),
            nats,
            twilio,
            async move {
                let _ = stopped.await;
            },
        ));
        Replica { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the replica stops")
            .unwrap()
            .unwrap();
    }
}

/// A create request the sandbox received.
#[derive(Debug, Clone)]
struct Received {
    at: OffsetDateTime,
    to: String,
    from: String,
    status: Option<u64>,
    user_agent: String,
}

/// Create requests the sandbox received, in arrival order.
async fn creates(h: &Harness) -> Vec<Received> {
    let requests = h.fake_get("requests?method=POST").await;
    let mut out: Vec<Received> = requests
        .as_array()
        .expect("a list of requests")
        .iter()
        .filter(|r| r["operation"] == "CreateMessage")
        .map(|r| {
            let form = |name: &str| {
                r["form"]
                    .as_array()
                    .and_then(|f| f.iter().find(|p| p[0] == name))
                    .and_then(|p| p[1].as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let header = |name: &str| {
                r["headers"]
                    .as_array()
                    .and_then(|f| f.iter().find(|p| p[0] == name))
                    .and_then(|p| p[1].as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            Received {
                at: OffsetDateTime::parse(r["timestamp"].as_str().unwrap(), &Rfc3339).unwrap(),
                to: form("To"),
                from: form("From"),
                status: r["response_status"].as_u64(),
                user_agent: header("user-agent"),
            }
        })
        .collect();
    out.sort_by_key(|r| r.at);
    out
}

/// Bodies with known segment counts, written out here rather than computed with the counter
/// under test: GSM-7 single and concatenated (153 per segment), extension characters (two
/// septets), UCS-2 (70 / 67 code units) forced by an accent or an emoji (two code units).
fn bodies() -> Vec<(String, u32)> {
    vec![
        ("Your code is 1234".to_owned(), 1),
        ("a".repeat(161), 2),
        ("á".repeat(71), 2),
        ("😀".repeat(36), 2),
        ("b".repeat(307), 3),
        // 159 characters, but the braces are escape pairs: 161 septets.
        (format!("{}{{}}", "c".repeat(157)), 2),
        ("Hi 😀".to_owned(), 1),
    ]
}

/// The rate, in segments per second, at which the sandbox received `sent` (in arrival order):
/// every message but the last took its share of the sender's time before the next began.
fn measured_rate(sent: &[Received], segments_of: &HashMap<String, u32>) -> f64 {
    assert!(sent.len() >= 2);
    let spent: u32 = sent[..sent.len() - 1]
        .iter()
        .map(|r| segments_of[&r.to])
        .sum();
    let window = (sent[sent.len() - 1].at - sent[0].at).as_seconds_f64();
    f64::from(spent) / window
}

/// Publishes jobs from `FROM` with the bodies above, cycling, before any replica runs (so the
/// replicas find a backlog and only the limiter paces them); answers job ids and the segments
/// per recipient.
async fn publish_backlog(
    h: &Harness,
    jobs: usize,
    first: usize,
) -> (Vec<String>, HashMap<String, u32>) {
    outbound::setup(&h.js, &h.config).await.unwrap();
    let bodies = bodies();
    let mut ids = Vec::new();
    let mut segments_of = HashMap::new();
    for i in 0..jobs {
        let (body, segments) = &bodies[i % bodies.len()];
        let key = format!("rate-{i}");
        let to = number(first + i);
        let mut job = sms_job(&key, &to);
        job["body"] = Json::from(body.as_str());
        h.publish(&job).await.unwrap();
        ids.push(format!("job-{key}"));
        segments_of.insert(to, *segments);
    }
    (ids, segments_of)
}

/// Limits on, with `FROM` at `rate` segments per second.
fn limits_with_rate(rate: f64) -> LimitsConfig {
    let mut limits = LimitsConfig::default();
    limits.sender_rates.set(FROM, rate);
    limits
}

async fn rate_is_respected(replicas: &[&str]) {
    const RATE: f64 = 5.0;
    let mut h = Harness::new().await.unwrap();
    h.config.limits = limits_with_rate(RATE);
    // 35 jobs, 65 segments: about 13 s of the sender's time at 5 segments/s, long enough that
    // a send made late by a busy machine (the first ones open connections) moves the measured
    // rate by little.
    let (ids, segments_of) = publish_backlog(&h, 35, 300).await;
    let mut running = Vec::new();
    for name in replicas {
        running.push(Replica::start(&h, name).await);
    }
    let finals = h.wait_final(&ids).await;
    for (id, event) in &finals {
        assert_eq!(event.kind, EventKind::Sent, "{id}: {event:?}");
    }
    h.wait_idle().await;
    for replica in running {
        replica.stop().await;
    }

    let sent = creates(&h).await;
    assert_eq!(sent.len(), ids.len(), "one create per job");
    assert!(sent.iter().all(|r| r.from == FROM && r.status == Some(201)));
    let rate = measured_rate(&sent, &segments_of);
    eprintln!(
        "{} replica(s): {rate:.3} segments/s measured at the sandbox (configured {RATE})",
        replicas.len()
    );
    assert!(
        (rate - RATE).abs() <= RATE * 0.10,
        "{} replica(s): measured {rate:.3} segments/s at the sandbox, configured {RATE}",
        replicas.len()
    );
    for name in replicas {
        assert!(
            sent.iter().any(|r| r.user_agent == *name),
            "replica {name} sent some of the jobs"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_rate_holds_with_one_replica() {
    rate_is_respected(&["replica-a"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_rate_holds_with_two_replicas() {
    rate_is_respected(&["replica-a", "replica-b"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_pauses_the_sender_not_only_the_job() {
    let mut h = Harness::new().await.unwrap();
    // The default long-code rate: 1 segment/s.
    h.config.limits = LimitsConfig::default();
    let throttled = number(400);
    h.fake_put(
        &format!("numbers/{}", throttled.replace('+', "%2B")),
        json!({"error": {"code": 20429, "retry_after": 3, "times": 1}}),
    )
    .await;
    outbound::setup(&h.js, &h.config).await.unwrap();
    let mut ids = Vec::new();
    h.publish(&sms_job("throttled", &throttled)).await.unwrap();
    ids.push("job-throttled".to_owned());
    for i in 1..5 {
        h.publish(&sms_job(&format!("after-{i}"), &number(400 + i)))
            .await
            .unwrap();
        ids.push(format!("job-after-{i}"));
    }
    h.start().await.unwrap();
    let finals = h.wait_final(&ids).await;
    for (id, event) in &finals {
        assert_eq!(event.kind, EventKind::Sent, "{id}: {event:?}");
    }
    h.stop().await.unwrap();

    let sent = creates(&h).await;
    assert_eq!(
        sent.len(),
        6,
        "five jobs, one create repeated after the 429"
    );
    let at_429 = sent
        .iter()
        .position(|r| r.status == Some(429))
        .expect("the sandbox answered 429 once");
    let next = sent.get(at_429 + 1).expect("creates after the 429");
    let gap = next.at - sent[at_429].at;
    assert!(
        gap >= time::Duration::milliseconds(2900),
        "after a 429 with Retry-After: 3 the sender waited {gap} (at 1 segment/s it would send again after 1 s)"
    );
    // Before the 429, and after the pause, the sender kept its rate of 1 segment/s. Slots are
    // 1 s apart; a send that left late (a busy machine) narrows the gap to the next one, which
    // leaves on time, so a single gap may be short by what one send's way out was delayed.
    for pair in sent.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= time::Duration::milliseconds(500),
            "creates {:?} and {:?} closer than the rate allows",
            pair[0],
            pair[1]
        );
    }
    // Over the creates after the pause the sender averages its rate.
    let after = &sent[at_429 + 1..];
    let span = after[after.len() - 1].at - after[0].at;
    let slots = i64::try_from(after.len() - 1).unwrap();
    assert!(
        span >= time::Duration::milliseconds(slots * 1000 - 250),
        "{} creates after the pause within {span}",
        after.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_cap_keeps_concurrent_requests_under_twilio_s_limit() {
    let mut h = Harness::new().await.unwrap();
    // A sender fast enough that only the cap paces it; the sandbox refuses a fourth concurrent
    // request with 429 and holds each for 200 ms (the service takes 8 jobs at once).
    h.config.limits = limits_with_rate(1000.0);
    h.config.limits.account_max_concurrent = 2;
    h.fake_put("faults", json!({"max_concurrent": 3, "latency_ms": 200}))
        .await;
    h.start().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..12 {
        h.publish(&sms_job(&format!("cap-{i}"), &number(500 + i)))
            .await
            .unwrap();
        ids.push(format!("job-cap-{i}"));
    }
    let finals = h.wait_final(&ids).await;
    for (id, event) in &finals {
        assert_eq!(event.kind, EventKind::Sent, "{id}: {event:?}");
    }
    h.stop().await.unwrap();
    let sent = creates(&h).await;
    assert_eq!(sent.len(), 12, "no create was refused: {sent:?}");
    assert!(sent.iter().all(|r| r.status == Some(201)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_limits_off_jobs_go_through_unpaced() {
    let mut h = Harness::new().await.unwrap();
    h.config.limits = LimitsConfig::off();
    h.start().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..10 {
        h.publish(&sms_job(&format!("off-{i}"), &number(600 + i)))
            .await
            .unwrap();
        ids.push(format!("job-off-{i}"));
    }
    let finals = h.wait_final(&ids).await;
    for (id, event) in &finals {
        assert_eq!(event.kind, EventKind::Sent, "{id}: {event:?}");
    }
    h.stop().await.unwrap();
    let sent = creates(&h).await;
    assert_eq!(sent.len(), 10);
    // Paced at the long code's 1 segment/s these would span at least 9 s.
    let span = sent[9].at - sent[0].at;
    assert!(span < time::Duration::seconds(5), "spanned {span}");
    let scheduled: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM outbound_sender_schedule) + (SELECT count(*) FROM outbound_rate_reservations)",
    )
    .fetch_one(h.store.pool())
    .await
    .unwrap();
    assert_eq!(scheduled, 0, "the schedule was not touched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suppressed_recipient_fails_at_once_without_calling_twilio() {
    let mut h = Harness::new().await.unwrap();
    let stopped = number(700);
    let fine = number(701);
    assert!(
        h.store
            .suppress(h.account_id, &stopped, SuppressionReason::Keyword, "STOP")
            .await
            .unwrap()
    );
    h.start().await.unwrap();
    h.publish(&sms_job("to-stopped", &stopped)).await.unwrap();
    h.publish(&sms_job("to-fine", &fine)).await.unwrap();
    let ids = ["job-to-stopped", "job-to-fine"].map(String::from);
    let finals = h.wait_final(&ids).await;
    h.wait_idle().await;
    assert_eq!(finals["job-to-fine"].kind, EventKind::Sent);
    let event = &finals["job-to-stopped"];
    assert_eq!(event.kind, EventKind::Failed, "{event:?}");
    assert_eq!(event.attempt, 0, "no create was made");
    let error = event.error.as_ref().unwrap();
    assert_eq!(error.code, "suppressed");
    assert!(error.message.contains(&stopped), "{}", error.message);
    assert!(error.message.contains("'STOP'"), "{}", error.message);
    assert!(error.more_info.is_none());
    let requests = h.create_requests_by_recipient().await;
    assert_eq!(requests.get(&stopped), None, "Twilio was not called");
    assert_eq!(requests.get(&fine), Some(&1));
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_21610_answer_suppresses_the_recipient_for_the_next_job() {
    let mut h = Harness::new().await.unwrap();
    let opted_out = number(800);
    h.fake_put(
        &format!("numbers/{}", opted_out.replace('+', "%2B")),
        json!({"error": {"code": 21610}}),
    )
    .await;
    h.start().await.unwrap();
    h.publish(&sms_job("first", &opted_out)).await.unwrap();
    let first = h.wait_final(&["job-first".to_owned()]).await;
    let event = &first["job-first"];
    assert_eq!(event.kind, EventKind::Failed, "{event:?}");
    assert_eq!(event.error.as_ref().unwrap().code, "21610");
    let suppression = h
        .store
        .suppression(h.account_id, &opted_out)
        .await
        .unwrap()
        .expect("suppressed after the 21610");
    assert_eq!(suppression.reason, SuppressionReason::Twilio21610);

    h.publish(&sms_job("second", &opted_out)).await.unwrap();
    let second = h.wait_final(&["job-second".to_owned()]).await;
    let event = &second["job-second"];
    assert_eq!(event.kind, EventKind::Failed, "{event:?}");
    let error = event.error.as_ref().unwrap();
    assert_eq!(error.code, "suppressed");
    assert!(error.message.contains("21610"), "{}", error.message);
    assert_eq!(
        h.create_requests_by_recipient().await.get(&opted_out),
        Some(&1),
        "only the first job called Twilio"
    );
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_survives_a_redelivery_and_a_stale_one_is_replaced() {
    use std::time::Duration;
    use switchboard_store::limits::SlotRequest;

    let h = Harness::new().await.unwrap();
    let second = Duration::from_secs(1);
    let request = |key: &'static str, attempt: u32, sender: &'static str| SlotRequest {
        idempotency_key: key,
        attempt,
        account_id: h.account_id,
        sender,
        segments: 2,
        cost: second,
        stale_after: second,
    };
    let store = &h.store;
    let first = store.rate_reserve(&request("k1", 1, FROM)).await.unwrap();
    assert!(!first.reused);
    assert!(
        first.wait() < Duration::from_millis(100),
        "an idle sender: at once"
    );
    let next = store.rate_reserve(&request("k2", 1, FROM)).await.unwrap();
    assert_eq!(
        next.at - first.at,
        time::Duration::seconds(1),
        "one cost later"
    );
    // The same job delivered again (a shutdown or crash while it waited): the same slot.
    let again = store.rate_reserve(&request("k1", 1, FROM)).await.unwrap();
    assert!(again.reused);
    assert_eq!(again.at, first.at);
    // Its next create attempt needs a new slot, after the ones already given out.
    let retry = store.rate_reserve(&request("k1", 2, FROM)).await.unwrap();
    assert!(!retry.reused);
    assert_eq!(retry.at - next.at, time::Duration::seconds(1));

    // A slot that passed unused is not reused: later jobs hold the time after it.
    let other = "+15005550099";
    let mut stale = request("k3", 1, other);
    stale.stale_after = Duration::from_millis(10);
    let slot = store.rate_reserve(&stale).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fresh = store.rate_reserve(&stale).await.unwrap();
    assert!(!fresh.reused);
    assert_eq!(fresh.at - slot.at, time::Duration::seconds(1));

    // Taking the slot gives the reservation up; a pause holds every later slot back.
    let state = store
        .rate_take_slot("k3", h.account_id, other)
        .await
        .unwrap();
    assert_eq!(state.paused_for(), None);
    let until = store
        .rate_pause(h.account_id, other, Duration::from_secs(30))
        .await
        .unwrap();
    let state = store
        .rate_take_slot("k4", h.account_id, other)
        .await
        .unwrap();
    assert!(
        state
            .paused_for()
            .is_some_and(|p| p > Duration::from_secs(29))
    );
    let after = store.rate_reserve(&request("k4", 1, other)).await.unwrap();
    assert_eq!(after.at, until, "nothing starts before the pause ends");
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbound_rate_reservations WHERE idempotency_key = 'k3'",
    )
    .fetch_one(h.store.pool())
    .await
    .unwrap();
    assert_eq!(left, 0, "taken reservations are gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_waiting_at_shutdown_keep_their_slots_for_the_next_replica() {
    let mut h = Harness::new().await.unwrap();
    // 0.5 segments/s: each one-segment job takes 2 s of the sender.
    h.config.limits = limits_with_rate(0.5);
    outbound::setup(&h.js, &h.config).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..4 {
        h.publish(&sms_job(&format!("slot-{i}"), &number(900 + i)))
            .await
            .unwrap();
        ids.push(format!("job-slot-{i}"));
    }
    h.start().await.unwrap();
    // Stop once the first job went out: the other three are waiting for slots 2, 4 and 6 s on.
    let deadline = tokio::time::Instant::now() + WAIT;
    while creates(&h).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "nothing was sent");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    h.stop().await.unwrap();
    let reserved: i64 = sqlx::query_scalar("SELECT count(*) FROM outbound_rate_reservations")
        .fetch_one(h.store.pool())
        .await
        .unwrap();
    assert_eq!(reserved, 3, "the waiting jobs kept their reservations");
    h.start().await.unwrap();
    let finals = h.wait_final(&ids).await;
    for (id, event) in &finals {
        assert_eq!(event.kind, EventKind::Sent, "{id}: {event:?}");
    }
    h.stop().await.unwrap();

    let sent = creates(&h).await;
    assert_eq!(sent.len(), 4, "each job created once");
    for pair in sent.windows(2) {
        assert!(
            // 2 s apart, less what a busy machine may add to one send's way out.
            pair[1].at - pair[0].at >= time::Duration::milliseconds(1500),
            "the rate held across the restart: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
    // With their slots reused the last goes out about 6 s after the first; had the restarted
    // service reserved again, the three would have queued behind the old slots (12 s).
    let span = sent[3].at - sent[0].at;
    assert!(span < time::Duration::seconds(9), "spanned {span}");
}
