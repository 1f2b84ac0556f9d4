//! `ingress`: parse config, start telemetry, connect to NATS, serve webhooks.

use std::time::Duration;

use clap::Parser;
use ingress::cli::{Cli, Command};
use switchboard_telemetry::lifecycle::{self, Stop};
use switchboard_wire::Subjects;

/// mimalloc: under load, glibc's malloc and free (with its chunk consolidation) took over a third
/// of the behavior worker's CPU in the webhook benchmark (perf, 64 connections).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), switchboard_telemetry::Redacted> {
    // Passwords in URLs (DATABASE_URL, NATS_URL) never reach the error output.
    Ok(service_main().await?)
}

async fn service_main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let _telemetry = switchboard_telemetry::init("ingress", cli.log_format)?;
    Subjects::validate_prefix(&cli.subject_prefix).map_err(anyhow::Error::msg)?;
    if let Some(base) = &cli.public_base_url
        && !(base.starts_with("https://") || base.starts_with("http://"))
    {
        anyhow::bail!("PUBLIC_BASE_URL must start with https:// or http://, got '{base}'");
    }
    match cli.command.unwrap_or(Command::Run) {
        Command::Healthcheck => {
            let addr = tokio::net::lookup_host(&cli.listen_addr)
                .await
                .ok()
                .and_then(|mut addrs| addrs.next());
            let verdict = match addr {
                Some(addr) => {
                    switchboard_telemetry::health::probe_readyz(
                        addr,
                        switchboard_telemetry::health::PROBE_TIMEOUT,
                    )
                    .await
                }
                None => Err(format!(
                    "LISTEN_ADDR '{}' is not an address and port",
                    cli.listen_addr
                )),
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
        Command::Run => {
            if cli.public_base_url.is_none() {
                tracing::warn!(
                    "PUBLIC_BASE_URL is not set: signatures are checked against the Host header over http://"
                );
            }
            let reply_timeout = Duration::from_millis(cli.reply_timeout_ms);
            let nats = cli
                .nats
                .connect_with("ingress", |options| {
                    options
                        .request_timeout(Some(reply_timeout))
                        .retry_on_initial_connect()
                })
                .await?;
            let listener = tokio::net::TcpListener::bind(&cli.listen_addr).await?;
            // Metrics are for the operator: served on METRICS_ADDR, never on the public port.
            let metrics = switchboard_telemetry::metrics::Metrics::new();
            // Recorded only when served (nothing is counted without METRICS_ADDR).
            let ingress_metrics = match cli.metrics.metrics_addr {
                Some(_) => ingress::IngressMetrics::register(&metrics),
                None => ingress::IngressMetrics::default(),
            };
            if let Some(addr) = cli.metrics.metrics_addr {
                let readiness = switchboard_telemetry::health::Readiness::new();
                readiness.nats(&nats);
                let router = switchboard_telemetry::health::router(readiness)
                    .merge(switchboard_telemetry::metrics::router(metrics));
                switchboard_telemetry::health::spawn_server(addr, router).await?;
            }
            let config = ingress::IngressConfig {
                public_base_url: cli.public_base_url,
                trust_forwarded_headers: cli.trust_forwarded_headers,
                trust_traceparent: cli.trust_traceparent,
                reply_timeout,
                max_body_bytes: cli.max_body_bytes,
                subjects: Subjects::new(&cli.subject_prefix),
                metrics: ingress_metrics,
                header_read_timeout: Duration::from_millis(cli.header_read_timeout_ms),
                body_read_timeout: Duration::from_millis(cli.body_read_timeout_ms),
                max_concurrent_requests: usize::try_from(cli.max_concurrent_requests)
                    .unwrap_or(usize::MAX),
            };
            // Stops accepting at the signal, finishes the requests in flight, and exits within
            // SHUTDOWN_TIMEOUT_SECS even if some never end (a reply that never comes, a client
            // that never reads).
            let stop = Stop::on_signal(cli.shutdown.timeout());
            let server = ingress::run(listener, nats, config, stop.requested());
            lifecycle::run_bounded(server, &stop, cli.shutdown.timeout()).await
        }
    }
}
