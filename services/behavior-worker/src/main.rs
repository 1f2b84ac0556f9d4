//! `behavior-worker`: parse config, start telemetry, connect to NATS and PostgreSQL, serve.

use std::time::Duration;

use anyhow::Context as _;
use behavior_worker::cli::{Cli, Command};
use clap::Parser;
use secrecy::ExposeSecret;
use switchboard_store::{Keyring, Store};
use switchboard_telemetry::health::{self, Readiness};
use switchboard_telemetry::lifecycle::{self, Stop};
use switchboard_wire::Subjects;

/// mimalloc: under load, glibc's malloc and free (with its chunk consolidation) took over a third
/// of the behavior worker's CPU in the webhook benchmark (perf, 64 connections).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long the start-up check of the master key waits for PostgreSQL before going on.
const KEY_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> Result<(), switchboard_telemetry::Redacted> {
    // Passwords in URLs (DATABASE_URL, NATS_URL) never reach the error output.
    Ok(service_main().await?)
}

async fn service_main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let _telemetry = switchboard_telemetry::init("behavior-worker", cli.log_format)?;
    Subjects::validate_prefix(&cli.subject_prefix).map_err(anyhow::Error::msg)?;
    match cli.command {
        Some(Command::Migrate) => {
            let pool = switchboard_store::connect(database_url(&cli)?, 2).await?;
            switchboard_store::migrate(&pool).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Some(Command::Healthcheck) => {
            let verdict = match cli.metrics.metrics_addr {
                Some(addr) => health::probe_readyz(addr, health::PROBE_TIMEOUT).await,
                None => reachable(&cli).await,
            };
            match verdict {
                Ok(line) => {
                    println!("{line}");
                    Ok(())
                }
                Err(line) => {
                    eprintln!("{line}");
                    std::process::exit(1)
                }
            }
        }
        Some(Command::Run) | None => run(cli).await,
    }
}

fn database_url(cli: &Cli) -> anyhow::Result<&str> {
    cli.database_url
        .as_deref()
        .context("DATABASE_URL (or --database-url) is required")
}

/// `healthcheck` without METRICS_ADDR: NATS and PostgreSQL answer, each within 2 s.
async fn reachable(cli: &Cli) -> Result<String, String> {
    let url = database_url(cli).map_err(|e| e.to_string())?;
    health::reachable(switchboard_store::probe(url), &cli.nats, "behavior-worker").await
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let key = Keyring::require(
        cli.master_key.as_ref().map(|k| k.expose_secret()),
        cli.old_master_keys.as_ref().map(|k| k.expose_secret()),
        "behavior-worker run (to verify webhook signatures)",
    )?;
    // Lazy: the worker starts (not ready) while PostgreSQL is unreachable.
    let pool = switchboard_store::connect_lazy(
        database_url(&cli)?,
        cli.db_max_connections,
        cli.synchronous_commit,
    )?;
    let store = Store::with_keys(pool.clone(), Some(key));
    store.check_master_key_at_start(KEY_CHECK_TIMEOUT).await?;
    let stop = Stop::on_signal(cli.shutdown.timeout());
    let nats = cli
        .nats
        .connect_with("behavior-worker", |options| {
            options.retry_on_initial_connect()
        })
        .await?;
    let readiness = Readiness::new();
    readiness.nats(&nats);
    readiness.probe("PostgreSQL", move || {
        let pool = pool.clone();
        async move {
            switchboard_store::ping(&pool)
                .await
                .map_err(|e| e.to_string())
        }
    });
    let metrics = switchboard_telemetry::metrics::Metrics::new();
    let opts = behavior_worker::WorkerOptions {
        max_in_flight: cli.max_in_flight.max(1),
        log_batch_max: cli.log_batch_max.max(1),
        log_concurrency: cli.log_concurrency.max(1),
        claim_timeout: std::time::Duration::from_secs(cli.claim_timeout_secs),
        drain_timeout: cli.shutdown.drain_budget(),
        bot_keys: behavior_worker::keys::BotKeysOptions {
            bucket: cli.bot_keys_bucket.clone(),
            replicas: usize::from(cli.jetstream_replicas),
        },
        run_log: cli.run_log.then(|| behavior_worker::runlog::RunLogOptions {
            replicas: usize::from(cli.jetstream_replicas),
            duplicate_window: std::time::Duration::from_secs(cli.run_log_duplicate_window_secs),
            max_bytes: cli.run_log_max_bytes,
            linger: std::time::Duration::from_millis(cli.run_log_linger_ms),
            ..Default::default()
        }),
        ready: readiness.flag("NATS subscriptions"),
        // Recorded only when served (nothing is counted without METRICS_ADDR).
        metrics: match cli.metrics.metrics_addr {
            Some(_) => behavior_worker::WorkerMetrics::register(&metrics),
            None => behavior_worker::WorkerMetrics::default(),
        },
        ..Default::default()
    };
    if let Some(addr) = cli.metrics.metrics_addr {
        let router =
            health::router(readiness).merge(switchboard_telemetry::metrics::router(metrics));
        health::spawn_server(addr, router)
            .await
            .with_context(|| format!("METRICS_ADDR: listening on {addr}"))?;
    }
    // Retention: one pass at a time across replicas (an advisory lock); ends with the stop.
    tokio::spawn(behavior_worker::retention::run_pruner(
        store.clone(),
        cli.pruner_options(),
        stop.requested(),
    ));
    let worker = behavior_worker::run(
        store,
        nats,
        Subjects::new(&cli.subject_prefix),
        opts,
        stop.requested(),
    );
    lifecycle::run_bounded(worker, &stop, cli.shutdown.timeout()).await
}
