//! Benchmark of the outbound service. Starts a private nats-server, a fresh PostgreSQL database
//! with one connected account, the Twilio sandbox (`twilio-fake`, in this process, no faults,
//! no OpenAPI checking) and the release `outbound` binary; publishes send-SMS jobs as the
//! contract says (JetStream, `Nats-Msg-Id`) as fast as JetStream acknowledges them and times
//! each from its publish to its `sent` event. Then the same against `outbound-baseline` (a bare
//! JetStream consume + HTTP POST loop with no state). Reports jobs/s, p50/p99 publish-to-sent
//! latency and peak RSS, and the ratio to the baseline.
//!
//! Run: `scripts/bench-outbound` (builds the release binaries, then runs this).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream;
use clap::Parser;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use switchboard_load::{Proc, percentile_ms};
use switchboard_store::{MasterKey, Store};
use switchboard_test_support::{
    ACCOUNT_SID, AUTH_TOKEN, MASTER_KEY, NatsServer, fresh_database, unchecked_sandbox_config,
    unique,
};
use switchboard_wire::outbound::{EventKind, JobSubjects, JobType, OUTBOUND_CONSUMER};

#[derive(Parser)]
struct Cli {
    /// Jobs measured per system (after a warm-up of a tenth as many).
    #[arg(long, default_value_t = 10_000)]
    jobs: usize,
    /// Jobs in flight in the service (`OUTBOUND_MAX_IN_FLIGHT`) and in the baseline. The
    /// service works on send jobs in groups of up to a quarter of this (128 at most).
    #[arg(long, default_value_t = 512)]
    in_flight: usize,
    /// Directory with the release binaries.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
}

/// One system's figures.
struct Figures {
    jobs: usize,
    jobs_per_s: f64,
    /// How fast the jobs were published: the throughput cannot exceed it.
    published_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    rss_mib: f64,
}

/// How a system under test is driven: where jobs go, and how a sent notice names its job.
struct Target<'a> {
    subject: String,
    sent_subject: String,
    job_of: &'a dyn Fn(&[u8]) -> Option<String>,
}

fn job(key: &str, i: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "version": 1,
        "job_id": key,
        "idempotency_key": key,
        "account": {"name": "bench"},
        "to": format!("+1415{:07}", i % 10_000_000),
        "from": "+15005550006",
        "body": format!("Your code is {i:06}"),
    }))
    .expect("a job serializes")
}

/// Publishes `n` jobs (JetStream acks awaited in a window of 2,048, so that publishing does not
/// bound either system: with 256 the baseline ran at the publish rate) and waits for each job's
/// sent notice; answers the throughput from the first publish to the last notice, the rate at
/// which the jobs were published (an upper bound on the throughput), and the publish-to-sent
/// latencies.
async fn measure(
    client: &async_nats::Client,
    js: &jetstream::Context,
    target: &Target<'_>,
    run: &str,
    n: usize,
) -> anyhow::Result<(f64, f64, Vec<Duration>)> {
    let mut notices = client.subscribe(target.sent_subject.clone()).await?;
    let keys: Vec<String> = (0..n).map(|i| format!("{run}-{i}")).collect();
    let index: std::collections::HashMap<&str, usize> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let mut published = vec![None::<Instant>; n];
    let mut sent = vec![None::<Instant>; n];
    let mut done = 0usize;
    // Times a job's first notice; answers whether it was its first.
    let record = |payload: &[u8], sent: &mut Vec<Option<Instant>>| -> bool {
        if let Some(key) = (target.job_of)(payload)
            && let Some(&i) = index.get(key.as_str())
            && sent[i].is_none()
        {
            sent[i] = Some(Instant::now());
            return true;
        }
        false
    };

    let start = Instant::now();
    let mut acks = FuturesUnordered::new();
    for (i, key) in keys.iter().enumerate() {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", key.as_str());
        published[i] = Some(Instant::now());
        let ack = js
            .publish_with_headers(target.subject.clone(), headers, job(key, i).into())
            .await?;
        acks.push(std::future::IntoFuture::into_future(ack));
        while acks.len() >= 2048 {
            acks.next().await.transpose()?;
        }
        // Notices that already arrived are timed now, not after the last publish.
        while let Some(Some(message)) = notices.next().now_or_never() {
            done += usize::from(record(&message.payload, &mut sent));
        }
    }
    while let Some(ack) = acks.next().await {
        ack?;
    }
    let publish_rate = n as f64 / start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(300);
    while done < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, notices.next()).await {
            Ok(Some(message)) => done += usize::from(record(&message.payload, &mut sent)),
            _ => anyhow::bail!("only {done} of {n} jobs were sent within 300 s"),
        }
    }
    let last = sent.iter().flatten().max().copied().unwrap_or(start);
    let rate = n as f64 / (last - start).as_secs_f64();
    let mut latencies: Vec<Duration> = published
        .iter()
        .zip(&sent)
        .filter_map(|(p, s)| Some(s.as_ref()?.duration_since(*p.as_ref()?)))
        .collect();
    latencies.sort();
    Ok((rate, publish_rate, latencies))
}

use futures::FutureExt as _;

/// Waits until the durable consumer `name` exists on `stream` (the service made it).
async fn wait_consumer(js: &jetstream::Context, stream: &str, name: &str) -> anyhow::Result<()> {
    for _ in 0..300 {
        if let Ok(stream) = js.get_stream(stream).await
            && stream
                .get_consumer::<jetstream::consumer::pull::Config>(name)
                .await
                .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("consumer {name} on {stream} never appeared")
}

async fn bench(
    client: &async_nats::Client,
    js: &jetstream::Context,
    target: &Target<'_>,
    proc_: &mut Proc,
    n: usize,
) -> anyhow::Result<Figures> {
    measure(client, js, target, &unique("warm"), (n / 10).max(100)).await?;
    let (jobs_per_s, published_per_s, latencies) =
        measure(client, js, target, &unique("run"), n).await?;
    proc_.check_alive()?;
    Ok(Figures {
        jobs: n,
        jobs_per_s,
        published_per_s,
        p50_ms: percentile_ms(&latencies, 50.0),
        p99_ms: percentile_ms(&latencies, 99.0),
        rss_mib: proc_.peak_rss_mib(),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let bin = |name: &str| cli.bin_dir.join(name);
    let nats = NatsServer::start().await?;
    let client = nats.client().await?;
    let js = jetstream::new(client.clone());
    let (database_url, pool) = fresh_database().await?;
    let store = Store::new(pool, Some(MasterKey::parse(MASTER_KEY)?));
    store
        .add_account(
            "bench",
            ACCOUNT_SID,
            &secrecy::SecretString::from(AUTH_TOKEN),
        )
        .await?;
    let fake = twilio_fake::spawn(unchecked_sandbox_config()).await?;

    println!(
        "# Outbound benchmark ({} jobs, {} in flight, {} cores)",
        cli.jobs,
        cli.in_flight,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );

    // --- Switchboard's outbound service ---
    let prefix = unique("bench").replace('_', "-");
    let subjects = JobSubjects::new(&prefix);
    let mut service = Command::new(bin("outbound"));
    service
        .arg("run")
        .env("NATS_URL", nats.url())
        // As in docker compose, where PostgreSQL has no TLS (this machine's test server has it
        // on, and sqlx would otherwise encrypt every statement over loopback).
        .env("DATABASE_URL", format!("{database_url}?sslmode=disable"))
        .env("SWITCHBOARD_MASTER_KEY", MASTER_KEY)
        // The test suite's public key: refused without this (tests and benches only).
        .env("SWITCHBOARD_ALLOW_TEST_KEY", "1")
        .env("SWITCHBOARD_SUBJECT_PREFIX", &prefix)
        .env("TWILIO_API_BASE", fake.base_url())
        .env("TWILIO_LOOKUPS_BASE", fake.base_url())
        .env("OUTBOUND_MAX_IN_FLIGHT", cli.in_flight.to_string())
        .env("OUTBOUND_RATE_LIMITS", "off")
        // The service's log filter (`OUTBOUND_BENCH_RUST_LOG`, default warn): e.g.
        // `outbound=debug` logs each group's size and timings.
        .env(
            "RUST_LOG",
            std::env::var("OUTBOUND_BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into()),
        );
    let mut service = Proc::spawn("outbound", service)?;
    wait_consumer(&js, &subjects.job_stream(), OUTBOUND_CONSUMER).await?;
    let event_job = |payload: &[u8]| -> Option<String> {
        let event: serde_json::Value = serde_json::from_slice(payload).ok()?;
        Some(event["job_id"].as_str()?.to_owned())
    };
    let switchboard = bench(
        &client,
        &js,
        &Target {
            subject: subjects.sms_send(),
            sent_subject: subjects.event(JobType::SmsSend, EventKind::Sent),
            job_of: &event_job,
        },
        &mut service,
        cli.jobs,
    )
    .await?;
    drop(service);

    // --- Baseline ---
    let stream = format!("{}-BASELINE", prefix.to_uppercase());
    let mut baseline = Command::new(bin("outbound-baseline"));
    baseline
        .env("NATS_URL", nats.url())
        .env("BASELINE_AUTH_TOKEN", AUTH_TOKEN)
        .args(["--stream", &stream])
        .args(["--subject", &format!("{prefix}.baseline.jobs")])
        .args(["--sent-subject", &format!("{prefix}.baseline.sent")])
        .args(["--api-base", &fake.base_url()])
        .args(["--account-sid", ACCOUNT_SID])
        .args(["--in-flight", &cli.in_flight.to_string()]);
    let mut baseline = Proc::spawn("outbound-baseline", baseline)?;
    wait_consumer(&js, &stream, "baseline").await?;
    let plain_job =
        |payload: &[u8]| -> Option<String> { std::str::from_utf8(payload).ok().map(str::to_owned) };
    let base = bench(
        &client,
        &js,
        &Target {
            subject: format!("{prefix}.baseline.jobs"),
            sent_subject: format!("{prefix}.baseline.sent"),
            job_of: &plain_job,
        },
        &mut baseline,
        cli.jobs,
    )
    .await?;

    println!();
    println!(
        "| system | jobs | jobs/s | published/s | p50 ms | p99 ms | peak RSS MiB | ratio to baseline jobs/s |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, f) in [("outbound", &switchboard), ("baseline", &base)] {
        println!(
            "| {name} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.0}% |",
            f.jobs,
            f.jobs_per_s,
            f.published_per_s,
            f.p50_ms,
            f.p99_ms,
            f.rss_mib,
            100.0 * f.jobs_per_s / base.jobs_per_s
        );
    }
    let created = reqwest::get(format!("{}/_fake/messages", fake.base_url()))
        .await?
        .json::<serde_json::Value>()
        .await?
        .as_array()
        .map_or(0, Vec::len);
    println!();
    println!("Messages the sandbox created in all (warm-ups included): {created}");
    Ok(())
}
