//! The command line and environment of `ingress`: every option with its env var; the doc
//! comments are the operator documentation (`--help`).

use clap::{Parser, Subcommand};

/// Switchboard ingress: Twilio webhooks in, NATS requests to the behavior workers, their replies
/// back as HTTP responses. Holds no secrets and no database connection.
#[derive(Debug, Parser)]
#[command(name = "ingress", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Address to listen on.
    #[arg(
        long,
        env = "LISTEN_ADDR",
        default_value = "0.0.0.0:8080",
        global = true
    )]
    pub listen_addr: String,
    /// NATS: server URL(s), credentials, TLS (docs/nats-security.md).
    #[command(flatten)]
    pub nats: switchboard_telemetry::args::NatsArgs,
    /// Public base URL that Twilio calls (e.g. https://bot.example.com); signatures are checked
    /// against it plus the request's path and query.
    #[arg(long, env = "PUBLIC_BASE_URL", global = true)]
    pub public_base_url: Option<String>,
    /// Trust X-Forwarded-Proto/-Host/-For (only behind your own proxy).
    #[arg(
        long,
        env = "TRUST_FORWARDED_HEADERS",
        default_value_t = false,
        global = true
    )]
    pub trust_forwarded_headers: bool,
    /// Continue the trace of a request's W3C traceparent header (only behind a proxy you trust
    /// to set or check it). Unset: each request starts a trace of its own that links to the
    /// caller's, so an internet client does not choose trace ids, sampling or trace state.
    #[arg(
        long,
        env = "INGRESS_TRUST_TRACEPARENT",
        default_value_t = false,
        global = true
    )]
    pub trust_traceparent: bool,
    /// Milliseconds to wait for a worker's reply (keep it under Twilio's 15 s).
    #[arg(long, env = "REPLY_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=14_000), global = true)]
    pub reply_timeout_ms: u64,
    /// Largest accepted request body in bytes (larger: 413).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 256 * 1024, global = true)]
    pub max_body_bytes: usize,
    /// Milliseconds a client may take to send a request's headers, or to start the next
    /// request on a kept-alive connection; then the connection is closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..=300_000), global = true)]
    pub header_read_timeout_ms: u64,
    /// Milliseconds a client may take to send a request's body (then 408, connection closed).
    #[arg(long, env = "BODY_READ_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=300_000), global = true)]
    pub body_read_timeout_ms: u64,
    /// Requests handled at once; beyond it, 503 with Retry-After at once (Twilio then calls the
    /// number's fallback URL) rather than a queue that makes every request late.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000), global = true)]
    pub max_concurrent_requests: u64,
    /// Prefix of every NATS subject.
    #[arg(long, env = "SWITCHBOARD_SUBJECT_PREFIX", default_value = switchboard_wire::DEFAULT_PREFIX, global = true)]
    pub subject_prefix: String,
    /// Log format: text (ANSI colours only when stderr is a terminal and NO_COLOR is unset) or
    /// json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: switchboard_telemetry::LogFormat,
    #[command(flatten)]
    pub shutdown: switchboard_telemetry::args::ShutdownArgs,
    /// /metrics (and /healthz, /readyz) on a port of their own, not the public one.
    #[command(flatten)]
    pub metrics: switchboard_telemetry::args::MetricsArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve webhooks (the default).
    Run,
    /// Exit 0 when the ingress at LISTEN_ADDR answers GET /readyz with 200 within 2 s (0.0.0.0
    /// and :: mean loopback), 1 otherwise, with one line saying why.
    Healthcheck,
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn the_command_line_is_well_formed_and_every_option_has_an_env_var() {
        Cli::command().debug_assert();
        for arg in Cli::command().get_arguments() {
            if !["help", "version"].contains(&arg.get_id().as_str()) {
                assert!(arg.get_env().is_some(), "--{} has no env var", arg.get_id());
            }
        }
        let cli = Cli::try_parse_from(["ingress"]).unwrap();
        assert_eq!(cli.shutdown.shutdown_timeout_secs, 10);
        assert!(
            !cli.trust_traceparent,
            "an internet traceparent is only linked by default"
        );
        let cli = Cli::try_parse_from(["ingress", "--shutdown-timeout-secs", "25"]).unwrap();
        assert_eq!(cli.shutdown.shutdown_timeout_secs, 25);
    }
}
