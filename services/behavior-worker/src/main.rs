//! `behavior-worker`: parse config, start telemetry, connect to NATS and PostgreSQL, serve.

use behavior_worker::cli::{Cli, Command};
use clap::Parser;
use secrecy::ExposeSecret;
use switchboard_store::{MasterKey, Store};
use switchboard_wire::Subjects;

/// mimalloc: under load, glibc's malloc and free (with its chunk consolidation) took over a third
/// of the behavior worker's CPU in the webhook benchmark (perf, 64 connections).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let _telemetry = switchboard_telemetry::init("behavior-worker", cli.log_format)?;
    let database_url = cli
        .database_url
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("DATABASE_URL (or --database-url) is required"))?;
    Subjects::validate_prefix(&cli.subject_prefix).map_err(anyhow::Error::msg)?;
    let pool = switchboard_store::connect_with(
        database_url,
        cli.db_max_connections,
        cli.synchronous_commit,
    )
    .await?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Migrate => {
            switchboard_store::migrate(&pool).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Healthcheck => {
            switchboard_store::sqlx::query("SELECT 1")
                .execute(&pool)
                .await?;
            async_nats::connect(&cli.nats_url).await?.flush().await?;
            Ok(())
        }
        Command::Run => {
            let key = match &cli.master_key {
                Some(k) => Some(MasterKey::parse(k.expose_secret())?),
                None => {
                    tracing::warn!(
                        "SWITCHBOARD_MASTER_KEY is not set: webhooks that verify signatures will fail"
                    );
                    None
                }
            };
            let nats = async_nats::ConnectOptions::new()
                .name("behavior-worker")
                .retry_on_initial_connect()
                .connect(&cli.nats_url)
                .await?;
            let opts = behavior_worker::WorkerOptions {
                max_in_flight: cli.max_in_flight.max(1),
                log_batch_max: cli.log_batch_max.max(1),
                log_concurrency: cli.log_concurrency.max(1),
                ..Default::default()
            };
            behavior_worker::run(
                Store::new(pool, key),
                nats,
                Subjects::new(&cli.subject_prefix),
                opts,
                shutdown_signal(),
            )
            .await
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
