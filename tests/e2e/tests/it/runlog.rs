//! The JetStream run log (services/behavior-worker/src/runlog.rs): webhooks of behaviors without
//! side effects are recorded in NATS before the reply and written to PostgreSQL behind, so the
//! bot keeps answering while PostgreSQL is down, and every run lands in PostgreSQL once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchboard_e2e::*;
use switchboard_store::sqlx;
use switchboard_test_support::PgProxy;

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn options() -> behavior_worker::WorkerOptions {
    behavior_worker::WorkerOptions {
        run_log: Some(behavior_worker::runlog::RunLogOptions::default()),
        // Short, so the outage outlasts the cache: configuration is served stale.
        cache_ttl: Duration::from_secs(1),
        ..Default::default()
    }
}

/// [`options`], with the worker's metrics registered in `metrics`.
fn options_with_metrics(
    metrics: &switchboard_telemetry::metrics::Metrics,
) -> behavior_worker::WorkerOptions {
    behavior_worker::WorkerOptions {
        metrics: behavior_worker::WorkerMetrics::register(metrics),
        ..options()
    }
}

/// How many of `sids` are in the message log, and how many runs they have.
async fn in_postgres(stack: &Stack, sids: &[String]) -> (i64, i64) {
    let messages: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM inbound_messages WHERE message_sid = ANY($1) AND response IS NOT NULL",
    )
    .bind(sids)
    .fetch_one(stack.store.pool())
    .await
    .unwrap();
    let runs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM behavior_runs WHERE message_sid = ANY($1)")
            .bind(sids)
            .fetch_one(stack.store.pool())
            .await
            .unwrap();
    (messages, runs)
}

async fn eventually_in_postgres(stack: &Stack, sids: &[String]) {
    let n = sids.len() as i64;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = in_postgres(stack, sids).await;
        if found == (n, n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} messages and {n} runs in PostgreSQL, found {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How long PostgreSQL is cut off under load (the figure).
const OUTAGE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_answered_while_postgres_is_down_and_written_behind_once() {
    let stack = Stack::new().await.unwrap();
    let proxy = PgProxy::start(&stack.database_url).await.unwrap();
    let pool = switchboard_store::connect(&proxy.url(&stack.database_url).unwrap(), 4)
        .await
        .unwrap();
    let worker_store = switchboard_store::Store::new(
        pool,
        Some(switchboard_store::secrets::MasterKey::parse(MASTER_KEY).unwrap()),
    );
    let metrics = switchboard_telemetry::metrics::Metrics::new();
    let worker = Worker::start_with(
        worker_store,
        &stack.nats.url(),
        stack.subjects.clone(),
        options_with_metrics(&metrics),
    )
    .await
    .unwrap();
    let ingress = stack.ingress().await.unwrap();
    let http = http();

    // Steady signed load, 10 webhooks a second, through the outage.
    // (MessageSid, golden file, status, body)
    type Answer = (String, &'static str, u16, String);
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let load = {
        let (answers, guid, http) = (answers.clone(), stack.guid.clone(), http.clone());
        let url = ingress.url("");
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let started = Instant::now();
            let mut i = 0usize;
            while started.elapsed() < OUTAGE + Duration::from_secs(6) {
                tick.tick().await;
                let (body, golden_file) =
                    [("help", "help.xml"), ("hi", "hi.xml"), ("logo", "logo.xml")][i % 3];
                i += 1;
                let sid = message_sid();
                let form = inbound_sms(&sid, "+15551234567", body);
                let (http, guid, url, answers) =
                    (http.clone(), guid.clone(), url.clone(), answers.clone());
                tokio::spawn(async move {
                    let resp = post_signed_at(&http, &url, &guid, &form, AUTH_TOKEN).await;
                    let status = resp.status().as_u16();
                    let text = resp.text().await.unwrap_or_default();
                    answers
                        .lock()
                        .unwrap()
                        .push((sid, golden_file, status, text));
                });
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.cut();
    let cut_at = Instant::now();
    // A repeated MessageSid during the outage gets the first answer.
    let sid = message_sid();
    let form = inbound_sms(&sid, "+15551234567", "link");
    let first = post_signed(&http, &ingress, &stack.guid, &form, AUTH_TOKEN).await;
    assert_eq!(first.status(), 200);
    let first = first.text().await.unwrap();
    assert_eq!(first, golden("link.xml"));
    let again = post_signed(&http, &ingress, &stack.guid, &form, AUTH_TOKEN).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.text().await.unwrap(), first);
    tokio::time::sleep(OUTAGE.saturating_sub(cut_at.elapsed())).await;
    // The writer cannot write, and its lag shows: the webhooks of the outage (10 a second).
    let lag = switchboard_test_support::metric(&metrics.encode(), "switchboard_runlog_lag")
        .expect("the lag metric");
    assert!(lag >= 300.0, "run log lag at the end of the outage: {lag}");
    // Nothing reached PostgreSQL through the cut proxy meanwhile.
    assert_eq!(
        in_postgres(&stack, std::slice::from_ref(&sid)).await,
        (0, 0)
    );
    proxy.restore();
    load.await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let answers = answers.lock().unwrap().clone();
    let expected = (OUTAGE.as_secs() as usize + 6) * 10 * 9 / 10;
    assert!(answers.len() >= expected, "{} webhooks sent", answers.len());
    for (sid, golden_file, status, text) in &answers {
        assert_eq!(*status, 200, "{sid}: {text}");
        assert_eq!(text, &golden(golden_file), "{sid}");
    }
    let mut sids: Vec<String> = answers.into_iter().map(|(sid, ..)| sid).collect();
    sids.push(sid);
    eventually_in_postgres(&stack, &sids).await;
    ingress.stop().await.unwrap();
    worker.stop().await.unwrap();
}

/// Two replicas, one MessageSid delivered to both at once: one answer, one run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_sid_on_two_replicas_at_once_is_one_run_and_one_answer() {
    let stack = Stack::new().await.unwrap();
    let workers = [
        Worker::start_with(
            stack.store.clone(),
            &stack.nats.url(),
            stack.subjects.clone(),
            options(),
        )
        .await
        .unwrap(),
        Worker::start_with(
            stack.store.clone(),
            &stack.nats.url(),
            stack.subjects.clone(),
            options(),
        )
        .await
        .unwrap(),
    ];
    let ingress = stack.ingress().await.unwrap();
    let http = http();
    let mut sids = Vec::new();
    for body in ["hi", "help", "logo"] {
        let sid = message_sid();
        let form = inbound_sms(&sid, "+15551234567", body);
        let deliveries =
            (0..8).map(|_| post_signed(&http, &ingress, &stack.guid, &form, AUTH_TOKEN));
        let answers = futures::future::join_all(deliveries).await;
        let mut texts = Vec::new();
        for a in answers {
            assert_eq!(a.status(), 200);
            texts.push(a.text().await.unwrap());
        }
        assert!(texts.iter().all(|t| t == &texts[0]), "{texts:?}");
        sids.push(sid);
    }
    eventually_in_postgres(&stack, &sids).await;
    // Settled: still exactly one each.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(in_postgres(&stack, &sids).await, (3, 3));
    ingress.stop().await.unwrap();
    for w in workers {
        w.stop().await.unwrap();
    }
}

/// A worker writes the records it logged itself, after the reply; what is in the stream that no
/// worker wrote (its worker died between the server's ack and its own write) the sweeper writes
/// from the stream: a long run of such records (read with a consumer) and a lone one between a
/// worker's (read with a direct get). Each lands once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_no_worker_wrote_are_swept_from_the_stream_once() {
    use crate::webhook_log::{answered, seed_ids};
    use behavior_worker::runlog::{Logged, RunLog, RunLogOptions};
    let stack = Stack::new().await.unwrap();
    let (listener_id, behavior) = seed_ids(&stack).await;
    let nats = async_nats::connect(stack.nats.url()).await.unwrap();
    let log = RunLog::open(&nats, stack.subjects.prefix(), &RunLogOptions::default())
        .await
        .unwrap();
    let orphan = |sid: String| {
        let log = log.clone();
        async move {
            let logged = log
                .log(&answered(listener_id, behavior, &sid, "orphan"))
                .await
                .unwrap();
            assert!(matches!(logged, Logged::New(_)), "{logged:?}");
            sid
        }
    };
    let mut sids = Vec::new();
    for _ in 0..40 {
        sids.push(orphan(message_sid()).await);
    }
    let metrics = switchboard_telemetry::metrics::Metrics::new();
    let worker = Worker::start_with(
        stack.store.clone(),
        &stack.nats.url(),
        stack.subjects.clone(),
        options_with_metrics(&metrics),
    )
    .await
    .unwrap();
    let ingress = stack.ingress().await.unwrap();
    let http = http();
    for i in 0..10 {
        if i == 5 {
            sids.push(orphan(message_sid()).await);
        }
        let sid = message_sid();
        let form = inbound_sms(&sid, "+15551234567", "help");
        let response = post_signed(&http, &ingress, &stack.guid, &form, AUTH_TOKEN).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), golden("help.xml"));
        sids.push(sid);
    }
    eventually_in_postgres(&stack, &sids).await;
    // Settled, with the sweeper past them all: still exactly one each.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let n = sids.len() as i64;
    assert_eq!(in_postgres(&stack, &sids).await, (n, n));
    // The orphans, and only they, came from the stream: the worker wrote its own.
    let swept = switchboard_test_support::metric(
        &metrics.encode(),
        "switchboard_runlog_swept_records_total",
    );
    assert_eq!(swept, Some(41.0));
    ingress.stop().await.unwrap();
    worker.stop().await.unwrap();
}

/// A worker stopped while its sweeper is still writing a long run of records from the stream
/// leaves its checkpoint where it got to: the next worker's sweeper writes the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweeper_stopped_mid_run_leaves_the_rest_to_the_next() {
    use crate::webhook_log::{answered, seed_ids};
    use behavior_worker::runlog::{Logged, RunLog, RunLogOptions};
    let stack = Stack::new().await.unwrap();
    let (listener_id, behavior) = seed_ids(&stack).await;
    let nats = async_nats::connect(stack.nats.url()).await.unwrap();
    let log = RunLog::open(&nats, stack.subjects.prefix(), &RunLogOptions::default())
        .await
        .unwrap();
    // Records no worker holds, many batches' worth (RunLogOptions::batch is 1,024).
    let sids: Vec<String> = (0..20_000).map(|_| message_sid()).collect();
    for chunk in sids.chunks(500) {
        let logged = futures::future::join_all(
            chunk
                .iter()
                .map(|sid| {
                    let log = log.clone();
                    let record = answered(listener_id, behavior, sid, "orphan");
                    async move { log.log(&record).await }
                })
                .collect::<Vec<_>>(),
        )
        .await;
        for l in logged {
            assert!(matches!(l.unwrap(), Logged::New(_)));
        }
    }
    let nats_url = stack.nats.url();
    let start = || {
        Worker::start_with(
            stack.store.clone(),
            &nats_url,
            stack.subjects.clone(),
            options(),
        )
    };
    let first = start().await.unwrap();
    // Stopped as soon as its sweeper has written some of them, not all.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (messages, _) = in_postgres(&stack, &sids).await;
        if messages > 0 {
            assert!(
                messages < sids.len() as i64,
                "the sweeper wrote all {messages} before it could be stopped: make the run longer"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the sweeper wrote nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.stop().await.unwrap();
    let second = start().await.unwrap();
    eventually_in_postgres(&stack, &sids).await;
    second.stop().await.unwrap();
}

/// nats-server killed and restarted under load: while it is down ingress answers 503 at once;
/// every webhook answered before the kill is in PostgreSQL afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_answered_before_a_nats_restart_all_reach_postgres() {
    let mut stack = Stack::new().await.unwrap();
    let worker = Worker::start_with(
        stack.store.clone(),
        &stack.nats.url(),
        stack.subjects.clone(),
        options(),
    )
    .await
    .unwrap();
    let ingress = stack.ingress().await.unwrap();
    let http = http();
    let mut answered = Vec::new();
    for i in 0..30 {
        let sid = message_sid();
        let form = inbound_sms(&sid, "+15551234567", ["hi", "help"][i % 2]);
        let resp = post_signed(&http, &ingress, &stack.guid, &form, AUTH_TOKEN).await;
        assert_eq!(resp.status(), 200);
        answered.push(sid);
    }
    stack.nats.kill();
    // Once ingress has seen NATS go (its /readyz says so), a webhook gets 503 at once. (One
    // sent in the moment before it notices waits in the NATS client's buffer until the reply
    // timeout, as any request would.)
    let deadline = Instant::now() + Duration::from_secs(10);
    while http
        .get(ingress.url("/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "ingress never saw NATS go");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let form = inbound_sms(&message_sid(), "+15551234567", "hi");
    let asked = Instant::now();
    let resp = post_signed(&http, &ingress, &stack.guid, &form, AUTH_TOKEN).await;
    assert_eq!(resp.status(), 503);
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "503 took {:?}",
        asked.elapsed()
    );
    stack.nats.restart(Duration::ZERO).await.unwrap();
    eventually_in_postgres(&stack, &answered).await;
    // And the path works again after the restart.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sid = message_sid();
        let form = inbound_sms(&sid, "+15551234567", "help");
        let resp = post_signed(&http, &ingress, &stack.guid, &form, AUTH_TOKEN).await;
        if resp.status() == 200 {
            assert_eq!(resp.text().await.unwrap(), golden("help.xml"));
            eventually_in_postgres(&stack, &[sid]).await;
            break;
        }
        assert!(
            Instant::now() < deadline,
            "webhooks not answered after the restart"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    ingress.stop().await.unwrap();
    worker.stop().await.unwrap();
}

/// Two worker processes under load, one SIGKILLed mid-load; every webhook whose delivery got no
/// answer is delivered again with the same MessageSid (as Twilio's fallback would), for the seed
/// (the run log) and for a bot with side effects (its MessageSid claimed in PostgreSQL first).
/// Afterwards: every message answered with its right reply, no MessageSid with two runs, and no
/// claim left unanswered (the dead worker's are taken over after WORKER_CLAIM_TIMEOUT_SECS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_sigkilled_under_load_leaves_no_double_run_and_no_stuck_claim() {
    let stack = Stack::new().await.unwrap();
    let counter = crate::bot_keys::import_counter(&stack, "+1 hour").await;
    let claim_timeout = [("WORKER_CLAIM_TIMEOUT_SECS", "2")];
    let mut doomed = crate::traces::worker_process(&stack, &claim_timeout).await;
    let survivor = crate::traces::worker_process(&stack, &claim_timeout).await;
    let ingress = Ingress::start(
        &stack.nats.url(),
        ingress::IngressConfig {
            reply_timeout: Duration::from_secs(2),
            ..stack.ingress_config()
        },
    )
    .await
    .unwrap();
    let http = http();

    // Four clients; each message is delivered until it is answered 200.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    type Answered = (String, String, String, u32);
    let answered: Arc<Mutex<Vec<Answered>>> = Arc::default();
    let url = ingress.url("");
    let mut clients = Vec::new();
    for client in 0..4usize {
        let (stop, answered, http, url) =
            (stop.clone(), answered.clone(), http.clone(), url.clone());
        let (seed, counter) = (stack.guid.clone(), counter.clone());
        clients.push(tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let sid = message_sid();
                // Odd clients talk to the counter bot, each from its own number.
                let (guid, form) = if client % 2 == 0 {
                    (seed.clone(), inbound_sms(&sid, "+15551234567", "help"))
                } else {
                    let from = format!("+1555{client:03}{i:04}");
                    (counter.clone(), inbound_sms(&sid, &from, "hi"))
                };
                let mut deliveries = 0u32;
                loop {
                    deliveries += 1;
                    assert!(deliveries <= 40, "{sid}: never answered");
                    let resp = post_signed_at(&http, &url, &guid, &form, AUTH_TOKEN).await;
                    if resp.status() == 200 {
                        let text = resp.text().await.unwrap();
                        answered.lock().unwrap().push((sid, guid, text, deliveries));
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    doomed.child.kill().unwrap(); // SIGKILL
    let _ = doomed.child.wait();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }

    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() >= 40,
        "only {} messages answered",
        answered.len()
    );
    let help = golden("help.xml");
    let welcome = crate::bot_keys::twiml("Welcome! This is your first message.");
    // A counter message whose first delivery died with the worker mid-run may have had its key
    // written by that run before the survivor took the claim over: at least once for a side
    // effect on a crash, as with any claim taken over.
    let second = crate::bot_keys::twiml("This is message 2 from you.");
    for (sid, guid, text, deliveries) in &answered {
        if guid == &stack.guid {
            assert_eq!(text, &help, "{sid}");
        } else if *deliveries > 1 {
            assert!(text == &welcome || text == &second, "{sid}: {text}");
        } else {
            assert_eq!(text, &welcome, "{sid}");
        }
    }
    let sids: Vec<String> = answered.iter().map(|(sid, ..)| sid.clone()).collect();
    // Every message once in the message log with one run (the run log's writer in the survivor
    // copies what the dead worker logged).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let doubled: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT message_sid FROM behavior_runs WHERE message_sid = ANY($1) GROUP BY message_sid HAVING count(*) > 1) d",
        )
        .bind(&sids)
        .fetch_one(stack.store.pool())
        .await
        .unwrap();
        assert_eq!(doubled, 0, "a MessageSid ran twice");
        let (messages, runs) = in_postgres(&stack, &sids).await;
        if (messages, runs) == (sids.len() as i64, sids.len() as i64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} messages: {messages} in the log, {runs} runs",
            sids.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let unanswered: i64 =
        sqlx::query_scalar("SELECT count(*) FROM inbound_messages WHERE response IS NULL")
            .fetch_one(stack.store.pool())
            .await
            .unwrap();
    assert_eq!(unanswered, 0, "a claim was left unanswered");
    let redelivered = answered.iter().filter(|(.., d)| *d > 1).count();
    eprintln!(
        "{} messages answered, {redelivered} of them after more than one delivery",
        answered.len()
    );
    ingress.stop().await.unwrap();
    drop(survivor);
}
