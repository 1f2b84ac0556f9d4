//! `ingress`: parse config, start telemetry, connect to NATS, serve webhooks.

use std::time::Duration;

use clap::Parser;
use ingress::cli::{Cli, Command};
use switchboard_wire::Subjects;

/// mimalloc: under load, glibc's malloc and free (with its chunk consolidation) took over a third
/// of the behavior worker's CPU in the webhook benchmark (perf, 64 connections).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
            let addr = cli.listen_addr.replace("0.0.0.0", "127.0.0.1");
            let mut stream = tokio::net::TcpStream::connect(&addr).await?;
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            stream.write_all(b"GET /readyz HTTP/1.0\r\n\r\n").await?;
            let mut buf = Vec::new();
            stream.read_to_end(&mut buf).await?;
            anyhow::ensure!(
                buf.starts_with(b"HTTP/1.0 200") || buf.starts_with(b"HTTP/1.1 200"),
                "not ready"
            );
            Ok(())
        }
        Command::Run => {
            if cli.public_base_url.is_none() {
                tracing::warn!(
                    "PUBLIC_BASE_URL is not set: signatures are checked against the Host header over http://"
                );
            }
            let reply_timeout = Duration::from_millis(cli.reply_timeout_ms);
            let nats = async_nats::ConnectOptions::new()
                .name("ingress")
                .request_timeout(Some(reply_timeout))
                .retry_on_initial_connect()
                .connect(&cli.nats_url)
                .await?;
            let listener = tokio::net::TcpListener::bind(&cli.listen_addr).await?;
            let config = ingress::IngressConfig {
                public_base_url: cli.public_base_url,
                trust_forwarded_headers: cli.trust_forwarded_headers,
                reply_timeout,
                max_body_bytes: cli.max_body_bytes,
                subjects: Subjects::new(&cli.subject_prefix),
            };
            ingress::run(listener, nats, config, shutdown_signal()).await
        }
    }
}

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
