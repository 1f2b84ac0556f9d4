//! `outbound`: parse config, start telemetry, connect to NATS and PostgreSQL, consume jobs.

use anyhow::Context as _;
use clap::Parser;
use outbound::cli::{Cli, Command};
use secrecy::ExposeSecret;
use switchboard_store::{MasterKey, Store};
use switchboard_twilio::client::TwilioClient;
use switchboard_wire::Subjects;

/// mimalloc, as in ingress and the behavior worker: glibc's malloc and free took about 15% of
/// this service's CPU in the outbound benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let _telemetry = switchboard_telemetry::init("outbound", cli.log_format)?;
    let database_url = cli
        .database_url
        .as_deref()
        .context("DATABASE_URL (or --database-url) is required")?;
    Subjects::validate_prefix(&cli.subject_prefix).map_err(anyhow::Error::msg)?;
    let pool = switchboard_store::connect(database_url, cli.db_max_connections)
        .await
        .context("connecting to PostgreSQL")?;
    match cli.command.as_ref().unwrap_or(&Command::Run) {
        Command::Migrate => {
            switchboard_store::migrate(&pool).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Healthcheck => {
            switchboard_store::sqlx::query("SELECT 1")
                .execute(&pool)
                .await
                .context("PostgreSQL")?;
            async_nats::connect(&cli.nats_url)
                .await
                .context("NATS")?
                .flush()
                .await
                .context("NATS")?;
            Ok(())
        }
        Command::Run => {
            let key = match &cli.master_key {
                Some(k) => Some(MasterKey::parse(k.expose_secret())?),
                None => {
                    tracing::warn!(
                        "SWITCHBOARD_MASTER_KEY is not set: no job can be sent (credentials cannot be decrypted)"
                    );
                    None
                }
            };
            let twilio = TwilioClient::new(cli.client_config())?;
            let nats = async_nats::ConnectOptions::new()
                .name("outbound")
                .retry_on_initial_connect()
                .connect(&cli.nats_url)
                .await
                .context("connecting to NATS")?;
            // Writes that a database crash cannot turn into a double send or a lost outcome
            // skip the disk flush (Store::with_relaxed_pool says which).
            let relaxed =
                switchboard_store::connect_with(database_url, cli.db_max_connections, false)
                    .await
                    .context("connecting to PostgreSQL")?;
            let store = Store::new(pool, key).with_relaxed_pool(relaxed);
            // One shutdown for both parts: the job consumer and behaviors' HTTP requests.
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                shutdown_signal().await;
                let _ = stop_tx.send(true);
            });
            let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            let http = outbound::http::start(cli.http_config()?, store.clone(), nats.clone())
                .await?
                .serve(stopped(stop_rx.clone()));
            let jobs = outbound::run(cli.outbound_config(), store, nats, twilio, stopped(stop_rx));
            tokio::try_join!(jobs, http).map(|_| ())
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
