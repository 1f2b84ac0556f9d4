//! `ingress`: parse config, start telemetry, connect to NATS, serve webhooks.

use std::time::Duration;

use clap::{Parser, Subcommand};
use switchboard_wire::Subjects;

/// Switchboard ingress: Twilio webhooks in, NATS requests to the behavior workers, their replies
/// back as HTTP responses. Holds no secrets and no database connection.
#[derive(Debug, Parser)]
#[command(name = "ingress", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080", global = true)]
    listen_addr: String,
    /// NATS server URL.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222", global = true)]
    nats_url: String,
    /// Public base URL that Twilio calls (e.g. https://bot.example.com); signatures are checked
    /// against it plus the request's path and query.
    #[arg(long, env = "PUBLIC_BASE_URL", global = true)]
    public_base_url: Option<String>,
    /// Trust X-Forwarded-Proto/-Host/-For (only behind your own proxy).
    #[arg(long, env = "TRUST_FORWARDED_HEADERS", default_value_t = false, global = true)]
    trust_forwarded_headers: bool,
    /// Milliseconds to wait for a worker's reply (keep it under Twilio's 15 s).
    #[arg(long, env = "REPLY_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=14_000), global = true)]
    reply_timeout_ms: u64,
    /// Largest accepted request body in bytes (larger: 413).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 256 * 1024, global = true)]
    max_body_bytes: usize,
    /// Prefix of every NATS subject.
    #[arg(long, env = "SWITCHBOARD_SUBJECT_PREFIX", default_value = switchboard_wire::DEFAULT_PREFIX, global = true)]
    subject_prefix: String,
    /// Log format: text or json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text", global = true)]
    log_format: switchboard_telemetry::LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve webhooks (the default).
    Run,
    /// Exit 0 when the ingress at LISTEN_ADDR answers /readyz.
    Healthcheck,
}

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
            anyhow::ensure!(buf.starts_with(b"HTTP/1.0 200") || buf.starts_with(b"HTTP/1.1 200"), "not ready");
            Ok(())
        }
        Command::Run => {
            if cli.public_base_url.is_none() {
                tracing::warn!("PUBLIC_BASE_URL is not set: signatures are checked against the Host header over http://");
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
