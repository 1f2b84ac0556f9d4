//! The service as a container runs it: `/readyz` and `healthcheck` follow NATS, a SIGTERM ends
//! the process within SHUTDOWN_TIMEOUT_SECS (NATS gone, or a job that will not finish), `run`
//! refuses a missing master key or one that does not decrypt the stored credentials, a job whose
//! credentials cannot be decrypted fails once instead of being retried, and the streams get the
//! configured replica count.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use switchboard_store::{MasterKey, Store};
use switchboard_telemetry::health::{PROBE_TIMEOUT, probe_readyz};
use switchboard_wire::outbound::{EventKind, HEADER_DEAD_LETTER_CODE};

use crate::procs::OutboundProcess;
use crate::support::{ACCOUNT_SID, Harness, WAIT, number, sms_job};

/// Another valid key than the harness's `MASTER_KEY`.
const OTHER_KEY: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

/// The shutdown bound these tests give the service.
const SHUTDOWN_TIMEOUT_SECS: u64 = 3;

/// What the process may take beyond the bound: the signal's delivery and the exit itself.
const SLACK: Duration = Duration::from_millis(1500);

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `outbound run` with a health server and the tests' shutdown bound.
fn spawn(h: &Harness, metrics: SocketAddr) -> OutboundProcess {
    let metrics = metrics.to_string();
    let timeout = SHUTDOWN_TIMEOUT_SECS.to_string();
    OutboundProcess::spawn_with(
        h,
        &[
            ("RUST_LOG", "info"),
            ("METRICS_ADDR", &metrics),
            ("SHUTDOWN_TIMEOUT_SECS", &timeout),
        ],
    )
    .unwrap()
}

/// Polls `/readyz` until `accept` takes its answer, failing with the log after [`WAIT`].
async fn readyz_until(
    service: &OutboundProcess,
    addr: SocketAddr,
    what: &str,
    accept: impl Fn(&Result<String, String>) -> bool,
) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let answer = probe_readyz(addr, PROBE_TIMEOUT).await;
        if accept(&answer) {
            return answer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {what}: last {answer:?}; log:\n{}",
            service.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `outbound healthcheck` with METRICS_ADDR `0.0.0.0:{port}`: its status and one line.
fn healthcheck(metrics: SocketAddr) -> (std::process::ExitStatus, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_outbound"))
        .env_clear()
        .env("METRICS_ADDR", format!("0.0.0.0:{}", metrics.port()))
        .arg("healthcheck")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text.trim().to_owned())
}

/// Ready once the consumers are bound; `/readyz` and `healthcheck` say when NATS is gone; a
/// SIGTERM then still ends the process within the bound, with status 1 and a line naming what
/// was abandoned (before, it waited for NATS to come back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nats_gone_readiness_says_so_and_sigterm_still_exits_within_the_bound() {
    let mut h = Harness::new().await.unwrap();
    // The streams exist, as after any first start.
    outbound::setup(&h.js, &h.config).await.unwrap();
    let metrics = free_addr();
    let mut service = spawn(&h, metrics);
    let ready = readyz_until(&service, metrics, "ready", Result::is_ok).await;
    assert_eq!(ready, Ok("ready".into()));
    let (status, line) = healthcheck(metrics);
    assert!(status.success(), "{line}");
    assert_eq!(line, "ready");

    h.nats.kill();
    let why = readyz_until(&service, metrics, "not ready", Result::is_err)
        .await
        .unwrap_err();
    assert!(why.starts_with("not ready: NATS: not connected"), "{why}");
    let (status, line) = healthcheck(metrics);
    assert_eq!(status.code(), Some(1), "{line}");
    assert!(line.starts_with("not ready: NATS: not connected"), "{line}");

    let signalled = tokio::time::Instant::now();
    service.sigterm().unwrap();
    let status = service
        .exit_within(Duration::from_secs(SHUTDOWN_TIMEOUT_SECS) + SLACK)
        .await;
    let log = service.log();
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running {:?} after SIGTERM:\n{log}",
            signalled.elapsed()
        )
    });
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("abandoned") && l.contains("not confirmed by NATS")),
        "a line names what was abandoned:\n{log}"
    );
}

/// A create that outlasts the drain: the job is abandoned at the bound (JetStream redelivers
/// it after the ack wait), the process exits 1 in time and the log line counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_still_running_at_the_bound_is_abandoned_and_counted() {
    let mut h = Harness::new().await.unwrap();
    outbound::setup(&h.js, &h.config).await.unwrap();
    // Longer than the shutdown bound, shorter than the request timeout (5 s).
    h.fake_put("faults", json!({"latency_ms": 4500})).await;
    let metrics = free_addr();
    let mut service = spawn(&h, metrics);
    readyz_until(&service, metrics, "ready", Result::is_ok)
        .await
        .unwrap();
    h.publish(&sms_job("slow-1", &number(1))).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !h
        .events_of("job-slow-1")
        .iter()
        .any(|e| e.kind == EventKind::Accepted)
    {
        assert!(tokio::time::Instant::now() < deadline, "{}", service.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The create is on its way to the sandbox.
    tokio::time::sleep(Duration::from_millis(200)).await;

    service.sigterm().unwrap();
    let status = service
        .exit_within(Duration::from_secs(SHUTDOWN_TIMEOUT_SECS) + SLACK)
        .await;
    let log = service.log();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("stopped with work abandoned")
                && l.contains("1 send jobs still running after the 2400 ms drain")),
        "{log}"
    );
    h.nats.kill();
}

/// The error line of a process that refused to start: `Error: …`, alone on its line.
fn error_line(log: &str) -> String {
    log.lines()
        .find(|l| l.starts_with("Error: "))
        .unwrap_or_else(|| panic!("no error line:\n{log}"))
        .to_owned()
}

/// No key, no start (one line saying how to make one); a key that does not decrypt the stored
/// credentials, no start either (naming the account).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_requires_the_master_key_the_credentials_were_saved_with() {
    let h = Harness::new().await.unwrap();
    let mut service = OutboundProcess::spawn_with(&h, &[("SWITCHBOARD_MASTER_KEY", "")]).unwrap();
    let status = service.exit_within(Duration::from_secs(10)).await;
    let log = service.log();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{log}");
    let line = error_line(&log);
    assert!(
        line.starts_with("Error: SWITCHBOARD_MASTER_KEY is not set: outbound run"),
        "{line}"
    );
    assert!(line.contains("`openssl rand -base64 32`"), "{line}");

    let mut service =
        OutboundProcess::spawn_with(&h, &[("SWITCHBOARD_MASTER_KEY", OTHER_KEY)]).unwrap();
    let status = service.exit_within(Duration::from_secs(10)).await;
    let log = service.log();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{log}");
    let line = error_line(&log);
    assert_eq!(
        line,
        format!(
            "Error: SWITCHBOARD_MASTER_KEY does not decrypt the stored credentials of account {} ('acme'): it differs from the key they were saved with (start every service and the CLI with that key, or add the account again with the new one)",
            h.account_id
        )
    );
}

/// An account saved with another key (the check at start reads only the first account): its
/// send and lookup jobs fail at once with `credentials_unreadable`, are dead-lettered, and are
/// never retried; Twilio is not called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_whose_credentials_the_key_cannot_decrypt_fail_once() {
    let mut h = Harness::new().await.unwrap();
    let other = Store::new(
        h.store.pool().clone(),
        Some(MasterKey::parse(OTHER_KEY).unwrap()),
    );
    let account = other
        .add_account("other", ACCOUNT_SID, &secrecy::SecretString::from("tok"))
        .await
        .unwrap();
    h.start().await.unwrap();

    let mut ids = Vec::new();
    for i in 0..3 {
        let mut job = sms_job(&format!("wrong-key-{i}"), &number(200 + i));
        job["account"] = json!({"name": "other"});
        h.publish(&job).await.unwrap();
        ids.push(format!("job-wrong-key-{i}"));
    }
    let lookup = json!({
        "version": 1, "job_id": "job-wrong-key-lookup", "idempotency_key": "wrong-key-lookup",
        "account": {"id": account.id}, "number": number(210), "api": {"v2": {}},
    });
    let subject = h.config.subjects.lookup();
    h.publish_to(
        &subject,
        serde_json::to_vec(&lookup).unwrap(),
        Some("wrong-key-lookup"),
        None,
    )
    .await
    .unwrap();
    ids.push("job-wrong-key-lookup".into());

    let finals = h.wait_final(&ids).await;
    let expected = format!(
        "SWITCHBOARD_MASTER_KEY does not decrypt the stored credentials of account {} ('other'): it differs from the key they were saved with",
        account.id
    );
    for id in &ids {
        let event = &finals[id];
        assert_eq!(event.kind, EventKind::Failed, "{id}: {event:?}");
        let error = event.error.as_ref().unwrap();
        assert_eq!(error.code, "credentials_unreadable", "{id}");
        assert!(
            error.message.starts_with(&expected),
            "{id}: {}",
            error.message
        );
    }
    h.wait_idle().await;
    h.wait_consumer_idle("outbound-lookup").await;
    for id in &ids {
        let kinds: Vec<EventKind> = h.events_of(id).iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [EventKind::Accepted, EventKind::Failed],
            "{id}: once, not retried"
        );
    }
    let codes: Vec<String> = h
        .dead_letters()
        .await
        .iter()
        .map(|m| m.headers.get(HEADER_DEAD_LETTER_CODE).unwrap().to_string())
        .collect();
    assert_eq!(codes, ["credentials_unreadable"; 4]);
    assert!(
        h.fake_get("requests").await.as_array().unwrap().is_empty(),
        "Twilio was not called"
    );
    h.stop().await.unwrap();
}

/// The configured replica count reaches the streams: 1 creates them (a single server); an
/// existing stream with another count is used as it is (a warning, no failure); on a single
/// server the server itself refuses to create new streams with 3, which shows the count is
/// sent with the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_get_the_configured_replicas() {
    let h = Harness::new().await.unwrap();
    let mut config = h.config.clone();
    assert_eq!(config.replicas, 1);
    outbound::setup(&h.js, &config).await.unwrap();
    let names = [
        config.subjects.job_stream(),
        config.subjects.dead_letter_stream(),
        config.subjects.event_stream(),
    ];
    for name in &names {
        let mut stream = h.js.get_stream(name).await.unwrap();
        assert_eq!(
            stream.info().await.unwrap().config.num_replicas,
            1,
            "{name}"
        );
    }
    config.replicas = 3;
    outbound::setup(&h.js, &config)
        .await
        .expect("existing streams are used as they are");
    for name in &names {
        let mut stream = h.js.get_stream(name).await.unwrap();
        assert_eq!(
            stream.info().await.unwrap().config.num_replicas,
            1,
            "{name}"
        );
    }

    let mut fresh = outbound::OutboundConfig::new(&crate::support::unique("sbr"));
    fresh.replicas = 3;
    let err = outbound::setup(&h.js, &fresh).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains(&format!(
            "creating the stream {}",
            fresh.subjects.job_stream()
        )),
        "{text}"
    );
    assert!(text.to_lowercase().contains("replicas"), "{text}");
}

/// The events and dead-letter streams get the configured max_age and max_bytes when created
/// (the defaults: events 7 days, dead letters 30 days, 1 GiB each), and an existing stream is
/// updated to new values at the next start; the job stream is left without such limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_limits_reach_new_and_existing_streams() {
    let mut h = Harness::new().await.unwrap();
    let mut config = h.config.clone();
    let limits = |config: &outbound::OutboundConfig| {
        let js = h.js.clone();
        let subjects = config.subjects.clone();
        async move {
            let mut out = Vec::new();
            for name in [
                subjects.job_stream(),
                subjects.dead_letter_stream(),
                subjects.event_stream(),
            ] {
                let mut stream = js.get_stream(&name).await.unwrap();
                let c = stream.info().await.unwrap().config.clone();
                out.push((c.max_age, c.max_bytes));
            }
            out
        }
    };
    assert_eq!(config.stream_limits, outbound::StreamLimits::default());
    outbound::setup(&h.js, &config).await.unwrap();
    let day = Duration::from_secs(24 * 3600);
    assert_eq!(
        limits(&config).await,
        [
            (Duration::ZERO, -1),
            (30 * day, 1 << 30),
            (7 * day, 1 << 30)
        ],
        "jobs, dead letters, events on creation"
    );

    config.stream_limits = outbound::StreamLimits {
        events_max_age: Duration::from_secs(3600),
        events_max_bytes: 10_000_000,
        dlq_max_age: Duration::ZERO,
        dlq_max_bytes: 0,
    };
    outbound::setup(&h.js, &config).await.unwrap();
    assert_eq!(
        limits(&config).await,
        [
            (Duration::ZERO, -1),
            (Duration::ZERO, -1),
            (Duration::from_secs(3600), 10_000_000)
        ],
        "updated on the existing streams (0: no limit)"
    );
    h.stop().await.unwrap();
}
