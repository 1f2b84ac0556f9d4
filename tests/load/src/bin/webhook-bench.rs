//! Load benchmark of the webhook path. Starts a private nats-server, a fresh PostgreSQL database
//! with the seed package imported, the release `behavior-worker` and `ingress` binaries, and
//! sends signed Twilio webhooks (unique MessageSid each, realistic form) at fixed concurrency;
//! then does the same against the baseline (`baseline server` + `baseline replier`: a bare axum
//! handler doing one NATS request to a trivial replier), and against a second baseline whose
//! replier first stores each request in a JetStream stream and waits for the ack (the floor of
//! any design that makes a webhook durable in NATS before answering it). Reports requests/s,
//! p50/p99 latency, errors and peak RSS of each process, and the ratio to the bare baseline.
//!
//! Run: `scripts/bench-webhooks` (builds the release binaries, then runs this).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use switchboard_e2e::Stack;
use switchboard_load::{CpuGroups, Matcher, Proc, free_port};
use switchboard_test_support::{AUTH_TOKEN, MASTER_KEY, PUBLIC_BASE_URL, inbound_sms, message_sid};

#[derive(Parser)]
struct Cli {
    /// Seconds of measured load per concurrency level.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent connections (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "16,64")]
    connections: Vec<usize>,
    /// Directory with the release binaries.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Also run Switchboard with its metrics on (METRICS_ADDR set on ingress and the worker,
    /// both scraped every second during the load), for the cost of the metrics.
    #[arg(long)]
    with_metrics: bool,
}

struct Result {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
    requests: usize,
    /// CPU per request of each process group, in microseconds.
    cpu: Vec<(&'static str, f64)>,
}

async fn wait_ready(url: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success() || r.status().as_u16() == 405)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("{url} did not become ready")
}

/// Signed requests, prepared before the clock starts (unique MessageSid each).
fn prepare(n: usize, guid: &str) -> Vec<(String, String)> {
    let bodies = ["help", "hi", "logo", "link"];
    (0..n)
        .map(|i| {
            let form = inbound_sms(&message_sid(), "+15551234567", bodies[i % bodies.len()]);
            let s = switchboard_twilio::signature::sign_form(
                AUTH_TOKEN,
                &format!("{PUBLIC_BASE_URL}/webhooks/{guid}"),
                &form,
            );
            (s.body, s.signature)
        })
        .collect()
}

async fn load(
    url: String,
    requests: Arc<Vec<(String, String)>>,
    connections: usize,
    seconds: u64,
) -> Result {
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (url, requests, next) = (url.clone(), requests.clone(), next.clone());
        // One client (one keep-alive connection) per task, like wrk's connections.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .unwrap();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let (body, sig) = &requests[i % requests.len()];
                let t = Instant::now();
                let ok = match http
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("x-twilio-signature", sig)
                    .body(body.clone())
                    .send()
                    .await
                {
                    Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                lat.push(t.elapsed());
                if !ok {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN)
    };
    Result {
        rps: all.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
        requests: all.len(),
        cpu: Vec::new(),
    }
}

/// [`load`], with the CPU each group of processes used per request meanwhile.
async fn measured(
    cpu: &CpuGroups,
    url: String,
    requests: Arc<Vec<(String, String)>>,
    connections: usize,
    seconds: u64,
) -> Result {
    let before = cpu.snapshot();
    let mut r = load(url, requests, connections, seconds).await;
    let after = cpu.snapshot();
    r.cpu = cpu.per_request(&before, &after, r.requests);
    r
}

/// The process groups of a run: `services` by pid, then the private nats-server, the
/// benchmark's PostgreSQL (its backends, and the server's own writers), and this process (the
/// load generator).
fn cpu_groups(stack: &Stack, nats_url: &str, services: Vec<(&'static str, u32)>) -> CpuGroups {
    let port = nats_url.rsplit(':').next().unwrap_or_default().to_string();
    let nats = format!("-p {port} ");
    let database = stack
        .database_url
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .split('?')
        .next()
        .unwrap_or_default()
        .to_string();
    let mut groups: Vec<(&'static str, Matcher)> = services
        .into_iter()
        .map(|(name, pid)| (name, Box::new(move |p: u32, _: &str| p == pid) as Matcher))
        .collect();
    groups.push((
        "nats-server",
        Box::new(move |_, cmd: &str| cmd.contains("nats-server") && cmd.contains(&nats)),
    ));
    groups.push((
        "PostgreSQL",
        Box::new(move |_, cmd: &str| {
            cmd.starts_with("postgres:")
                && (cmd.contains(&database)
                    || ["walwriter", "background writer", "checkpointer"]
                        .iter()
                        .any(|w| cmd.contains(w)))
        }),
    ));
    let me = std::process::id();
    groups.push(("load generator", Box::new(move |p, _| p == me)));
    CpuGroups::new(groups)
}

/// Ingress and one behavior-worker from the release binaries under load at each level; with
/// `metrics`, METRICS_ADDR is set on both and each is scraped every second meanwhile. Answers
/// the peak RSS (MiB) of ingress, the worker and nats-server (its peak so far: the Switchboard
/// runs come first, on a nats-server of the benchmark's own).
async fn run_switchboard(
    cli: &Cli,
    stack: &Stack,
    nats_url: &str,
    per_level: usize,
    metrics: bool,
    name: &'static str,
    rows: &mut Vec<(&'static str, usize, Result)>,
) -> anyhow::Result<(f64, f64, f64)> {
    let bin = |name: &str| cli.bin_dir.join(name);
    let port = free_port();
    let (worker_metrics, ingress_metrics) = (free_port(), free_port());
    let mut worker = Command::new(bin("behavior-worker"));
    worker
        .arg("run")
        .env("NATS_URL", nats_url)
        // As in docker compose, where PostgreSQL has no TLS: the local test server has it on,
        // and sqlx would otherwise encrypt every statement over loopback.
        .env(
            "DATABASE_URL",
            format!("{}?sslmode=disable", stack.database_url),
        )
        .env("SWITCHBOARD_MASTER_KEY", MASTER_KEY)
        // The test suite's public key: refused without this (tests and benches only).
        .env("SWITCHBOARD_ALLOW_TEST_KEY", "1")
        .env("SWITCHBOARD_SUBJECT_PREFIX", stack.subjects.prefix())
        .env("RUST_LOG", "warn");
    let mut ingress = Command::new(bin("ingress"));
    ingress
        .arg("run")
        .env("NATS_URL", nats_url)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("PUBLIC_BASE_URL", PUBLIC_BASE_URL)
        .env("SWITCHBOARD_SUBJECT_PREFIX", stack.subjects.prefix())
        .env("RUST_LOG", "warn");
    if metrics {
        worker.env("METRICS_ADDR", format!("127.0.0.1:{worker_metrics}"));
        ingress.env("METRICS_ADDR", format!("127.0.0.1:{ingress_metrics}"));
    }
    let worker = Proc::spawn("behavior-worker", worker)?;
    let ingress = Proc::spawn("ingress", ingress)?;
    wait_ready(&format!("http://127.0.0.1:{port}/readyz")).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let scraper = metrics.then(|| {
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                for port in [worker_metrics, ingress_metrics] {
                    let url = format!("http://127.0.0.1:{port}/metrics");
                    if let Ok(r) = http.get(&url).send().await {
                        let _ = r.bytes().await;
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    });
    let url = format!("http://127.0.0.1:{port}/webhooks/{}", stack.guid);
    let cpu = cpu_groups(
        stack,
        nats_url,
        vec![
            ("ingress", ingress.child.id()),
            ("behavior-worker", worker.child.id()),
        ],
    );
    // Warm-up (caches, connections).
    load(url.clone(), Arc::new(prepare(2_000, &stack.guid)), 8, 2).await;
    for &c in &cli.connections {
        let r = measured(
            &cpu,
            url.clone(),
            Arc::new(prepare(per_level, &stack.guid)),
            c,
            cli.seconds,
        )
        .await;
        rows.push((name, c, r));
    }
    if let Some(scraper) = scraper {
        scraper.abort();
        // The scrapes saw the load: the webhooks were counted.
        let text = reqwest::get(format!("http://127.0.0.1:{worker_metrics}/metrics"))
            .await?
            .text()
            .await?;
        anyhow::ensure!(
            text.contains("switchboard_webhooks_total"),
            "the worker's metrics do not count webhooks:\n{text}"
        );
    }
    // The run log's writer: how far PostgreSQL is behind the answers at the end of the load,
    // and how long it takes to catch up (the count stops growing for 2 s).
    let at_end = stack.runs().await;
    let started = Instant::now();
    let (mut last, mut since) = (at_end, Instant::now());
    while since.elapsed() < Duration::from_secs(2) && started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = stack.runs().await;
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    let caught_up = since.duration_since(started);
    println!(
        "{name}: runs in PostgreSQL at the end of the load {at_end}, {last} after {:.1} s (writer lag at the end: {})",
        caught_up.as_secs_f64(),
        last - at_end
    );
    let (mut ingress, mut worker) = (ingress, worker);
    ingress.check_alive()?;
    worker.check_alive()?;
    Ok((
        ingress.peak_rss_mib(),
        worker.peak_rss_mib(),
        cpu.peak_rss_mib("nats-server"),
    ))
}

/// One baseline: `baseline server` and `baseline replier` (with `--jetstream`, the replier stores
/// each request in a JetStream stream before it replies). Answers the peak RSS of both.
async fn run_baseline(
    cli: &Cli,
    stack: &Stack,
    nats_url: &str,
    per_level: usize,
    name: &'static str,
    jetstream: bool,
    rows: &mut Vec<(&'static str, usize, Result)>,
) -> anyhow::Result<(f64, f64)> {
    let bin = |name: &str| cli.bin_dir.join(name);
    let subject = if jetstream {
        "baseline.webhook.js"
    } else {
        "baseline.webhook"
    };
    let port = free_port();
    let mut replier = Command::new(bin("baseline"));
    replier.args(["--nats-url", nats_url, "--subject", subject, "replier"]);
    if jetstream {
        replier.arg("--jetstream");
    }
    let (server_name, replier_name) = if jetstream {
        ("baseline+js server", "baseline+js replier")
    } else {
        ("baseline server", "baseline replier")
    };
    let replier = Proc::spawn(replier_name, replier)?;
    let mut server = Command::new(bin("baseline"));
    server.args([
        "--nats-url",
        nats_url,
        "--subject",
        subject,
        "server",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    let server = Proc::spawn(server_name, server)?;
    wait_ready(&format!("http://127.0.0.1:{port}/webhooks/x")).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let url = format!("http://127.0.0.1:{port}/webhooks/{}", stack.guid);
    let cpu = cpu_groups(
        stack,
        nats_url,
        vec![
            ("server", server.child.id()),
            ("replier", replier.child.id()),
        ],
    );
    load(url.clone(), Arc::new(prepare(2_000, &stack.guid)), 8, 2).await;
    for &c in &cli.connections {
        let r = measured(
            &cpu,
            url.clone(),
            Arc::new(prepare(per_level, &stack.guid)),
            c,
            cli.seconds,
        )
        .await;
        rows.push((name, c, r));
    }
    let (mut server, mut replier) = (server, replier);
    server.check_alive()?;
    replier.check_alive()?;
    Ok((server.peak_rss_mib(), replier.peak_rss_mib()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let stack = Stack::new().await?;
    let nats_url = stack.nats.url();
    // More requests than can be sent, so every MessageSid is new (no dedupe shortcut); the
    // run count printed at the end shows it.
    let per_level = 40_000usize.max(cli.seconds as usize * 15_000);

    println!(
        "# Webhook load benchmark ({} s per level, {} cores)",
        cli.seconds,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let mut rows = Vec::new();

    // --- Switchboard: ingress + one behavior-worker (then again with its metrics on) ---
    let mut sb_rss = (0.0, 0.0, 0.0);
    let variants: &[bool] = if cli.with_metrics {
        &[false, true]
    } else {
        &[false]
    };
    for &metrics in variants {
        let name = if metrics {
            "switchboard, metrics on"
        } else {
            "switchboard"
        };
        let rss =
            run_switchboard(&cli, &stack, &nats_url, per_level, metrics, name, &mut rows).await?;
        if !metrics {
            sb_rss = rss;
        }
    }

    // --- Baselines: bare, and with one JetStream publish (acked) per request ---
    let mut base_rss = Vec::new();
    for (name, jetstream) in [("baseline", false), ("baseline + JetStream publish", true)] {
        let rss = run_baseline(
            &cli, &stack, &nats_url, per_level, name, jetstream, &mut rows,
        )
        .await?;
        base_rss.push((name, rss));
    }

    println!();
    println!(
        "| system | connections | requests | req/s | p50 ms | p99 ms | errors | ratio to baseline req/s |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, c, r) in &rows {
        let base = rows
            .iter()
            .find(|(n, bc, _)| *n == "baseline" && bc == c)
            .map(|(_, _, b)| b.rps)
            .unwrap_or(f64::NAN);
        println!(
            "| {name} | {c} | {} | {:.0} | {:.2} | {:.2} | {} | {:.0}% |",
            r.requests,
            r.rps,
            r.p50_ms,
            r.p99_ms,
            r.errors,
            100.0 * r.rps / base
        );
    }
    println!();
    println!(
        "CPU per request, in microseconds (user + system, from /proc, over each level's load):"
    );
    println!();
    println!("| system | connections | by process | all |");
    println!("|---|---|---|---|");
    for (name, c, r) in &rows {
        let parts: Vec<String> = r
            .cpu
            .iter()
            .map(|(process, us)| format!("{process} {us:.0}"))
            .collect();
        let all: f64 = r.cpu.iter().map(|(_, us)| us).sum();
        println!("| {name} | {c} | {} | {all:.0} |", parts.join(", "));
    }
    println!();
    println!(
        "Peak RSS: ingress {:.1} MiB, behavior-worker {:.1} MiB, nats-server {:.1} MiB (through the Switchboard runs)",
        sb_rss.0, sb_rss.1, sb_rss.2
    );
    for (name, (server, replier)) in base_rss {
        println!("Peak RSS ({name}): server {server:.1} MiB, replier {replier:.1} MiB");
    }
    let runs = stack.runs().await;
    println!("Behavior runs recorded: {runs}");
    Ok(())
}
