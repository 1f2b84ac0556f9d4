//! `outbound`: parse config, start telemetry, connect to NATS and PostgreSQL, consume jobs.

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use outbound::cli::{Cli, Command};
use secrecy::ExposeSecret;
use switchboard_store::{Keyring, Store};
use switchboard_telemetry::health::{self, Readiness};
use switchboard_telemetry::lifecycle::{self, Stop};
use switchboard_twilio::client::TwilioClient;
use switchboard_wire::Subjects;

/// mimalloc, as in ingress and the behavior worker: glibc's malloc and free took about 15% of
/// this service's CPU in the outbound benchmark.
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
    let _telemetry = switchboard_telemetry::init("outbound", cli.log_format)?;
    Subjects::validate_prefix(&cli.subject_prefix).map_err(anyhow::Error::msg)?;
    match cli.command.as_ref().unwrap_or(&Command::Run) {
        Command::Migrate => {
            let pool = switchboard_store::connect(database_url(&cli)?, 2)
                .await
                .context("connecting to PostgreSQL")?;
            switchboard_store::migrate(&pool).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Healthcheck => {
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
        Command::Run => run(&cli).await,
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
    health::reachable(switchboard_store::probe(url), &cli.nats, "outbound").await
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    cli.check()?;
    let key = Keyring::require(
        cli.master_key.as_ref().map(|k| k.expose_secret()),
        cli.old_master_keys.as_ref().map(|k| k.expose_secret()),
        "outbound run (to decrypt the accounts' Twilio credentials)",
    )?;
    let database_url = database_url(cli)?;
    // Lazy: the service starts (not ready) while PostgreSQL is unreachable. Writes that a
    // database crash cannot turn into a double send or a lost outcome skip the disk flush
    // (Store::with_relaxed_pool says which).
    let pool = switchboard_store::connect_lazy(database_url, cli.db_max_connections, true)?;
    let relaxed = switchboard_store::connect_lazy(database_url, cli.db_max_connections, false)?;
    let store = Store::with_keys(pool.clone(), Some(key)).with_relaxed_pool(relaxed);
    store.check_master_key_at_start(KEY_CHECK_TIMEOUT).await?;
    let metrics = switchboard_telemetry::metrics::Metrics::new();
    let outbound_metrics = outbound::OutboundMetrics::register(&metrics);
    let mut client_config = cli.client_config();
    client_config.observe = Some(outbound_metrics.twilio_observer());
    let twilio = TwilioClient::new(client_config)?;
    let stop = Stop::on_signal(cli.shutdown.timeout());
    let nats = cli
        .nats
        .connect_with("outbound", |options| options.retry_on_initial_connect())
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
    let mut config = cli.outbound_config();
    config.ready = readiness.flag("JetStream consumers");
    config.metrics = outbound_metrics.clone();
    let mut http_config = cli.http_config()?;
    http_config.ready = readiness.flag("HTTP job subscription");
    http_config.metrics = outbound_metrics;
    if let Some(addr) = cli.metrics.metrics_addr {
        let router =
            health::router(readiness).merge(switchboard_telemetry::metrics::router(metrics));
        health::spawn_server(addr, router)
            .await
            .with_context(|| format!("METRICS_ADDR: listening on {addr}"))?;
    }

    // One stop for both parts: the job consumers and behaviors' HTTP requests.
    let http = {
        let (store, nats, stop) = (store.clone(), nats.clone(), stop.clone());
        async move {
            tokio::select! {
                started = outbound::http::start(http_config, store, nats) => {
                    started?.serve(stop.requested()).await
                }
                () = stop.requested() => Ok(()),
            }
        }
    };
    let jobs = outbound::run(config, store, nats, twilio, stop.requested());
    let service = async {
        tokio::pin!(jobs, http);
        // A part that fails before any stop ends the service (as at start-up, when NATS
        // refuses the streams); after a stop, both finish their drains.
        let (jobs, http) = tokio::select! {
            jobs = &mut jobs => {
                if jobs.is_err() && !stop.is_requested() {
                    return jobs;
                }
                (jobs, http.await)
            }
            http = &mut http => {
                if http.is_err() && !stop.is_requested() {
                    return http;
                }
                (jobs.await, http)
            }
        };
        match (jobs, http) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
            (Err(a), Err(b)) => Err(anyhow::anyhow!("{a:#}; {b:#}")),
        }
    };
    lifecycle::run_bounded(service, &stop, cli.shutdown.timeout()).await
}
