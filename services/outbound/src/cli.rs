//! The command line and environment of `outbound`: every option with its env var; the doc
//! comments are the operator documentation (`--help`).

use std::time::Duration;

use clap::{Parser, Subcommand};
use secrecy::SecretString;

/// Switchboard outbound service: sends the SMS jobs published to NATS JetStream through Twilio,
/// with retries, dead-lettering and no double sends (a durable pull consumer `outbound`; run more
/// replicas to scale).
#[derive(Debug, Parser)]
#[command(name = "outbound", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// NATS server URL.
    #[arg(
        long,
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        global = true
    )]
    pub nats_url: String,
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Key that decrypts connected-account credentials (32 bytes, base64 or hex).
    #[arg(
        long,
        env = "SWITCHBOARD_MASTER_KEY",
        hide_env_values = true,
        global = true
    )]
    pub master_key: Option<SecretString>,
    /// Prefix of every NATS subject (and, upper-cased, of the stream names).
    #[arg(long, env = "SWITCHBOARD_SUBJECT_PREFIX", default_value = switchboard_wire::DEFAULT_PREFIX, global = true)]
    pub subject_prefix: String,
    /// Base URL of Twilio's Messages API (the sandbox's `twilio-fake` in development).
    #[arg(long, env = "TWILIO_API_BASE", default_value = switchboard_twilio::client::DEFAULT_API_BASE, global = true)]
    pub twilio_api_base: String,
    /// Base URL of Twilio's Lookup API (not used yet: lookup jobs are not built).
    #[arg(long, env = "TWILIO_LOOKUPS_BASE", default_value = switchboard_twilio::client::DEFAULT_LOOKUPS_BASE, global = true)]
    pub twilio_lookups_base: String,
    /// Bound on one Twilio request, connect to last byte, in milliseconds. The consumer's
    /// ack wait is set well above it.
    #[arg(
        long,
        env = "TWILIO_REQUEST_TIMEOUT_MS",
        default_value_t = 30_000,
        global = true
    )]
    pub twilio_request_timeout_ms: u64,
    /// Jobs worked on at once by this replica (also the consumer's max ack pending).
    #[arg(
        long,
        env = "OUTBOUND_MAX_IN_FLIGHT",
        default_value_t = 32,
        global = true
    )]
    pub max_in_flight: usize,
    /// Creates tried per job, the first included, before it is dead-lettered.
    #[arg(
        long,
        env = "OUTBOUND_MAX_ATTEMPTS",
        default_value_t = 8,
        global = true
    )]
    pub max_attempts: u32,
    /// Age (since publication) after which a job that has not been sent is dead-lettered
    /// instead of tried again, in seconds.
    #[arg(
        long,
        env = "OUTBOUND_MAX_AGE_SECS",
        default_value_t = 3600,
        global = true
    )]
    pub max_age_secs: u64,
    /// Ceiling of the first retry's delay, in milliseconds (full jitter, doubling per attempt).
    #[arg(
        long,
        env = "OUTBOUND_BACKOFF_BASE_MS",
        default_value_t = 500,
        global = true
    )]
    pub backoff_base_ms: u64,
    /// Largest retry delay ceiling, in milliseconds. A `Retry-After` from Twilio wins over it.
    #[arg(
        long,
        env = "OUTBOUND_BACKOFF_CAP_MS",
        default_value_t = 60_000,
        global = true
    )]
    pub backoff_cap_ms: u64,
    /// At shutdown, how long jobs in flight may take to finish, in seconds.
    #[arg(
        long,
        env = "OUTBOUND_DRAIN_TIMEOUT_SECS",
        default_value_t = 30,
        global = true
    )]
    pub drain_timeout_secs: u64,
    /// Behaviors' HTTP requests performed at once by this replica (`{prefix}.outbound.http`).
    #[arg(
        long,
        env = "OUTBOUND_HTTP_MAX_IN_FLIGHT",
        default_value_t = 64,
        global = true
    )]
    pub http_max_in_flight: usize,
    /// Targets of behaviors' HTTP requests let through the SSRF guard although they are
    /// loopback, private or link-local: host names and IP networks, comma-separated (e.g.
    /// `intranet.example,10.20.0.0/16`). Empty: none. The Twilio sandbox configured with
    /// TWILIO_API_BASE/TWILIO_LOOKUPS_BASE is always reachable.
    #[arg(long, env = "OUTBOUND_HTTP_ALLOW", default_value = "", global = true)]
    pub http_allow: String,
    /// Database connections of this replica.
    #[arg(
        long,
        env = "DATABASE_MAX_CONNECTIONS",
        default_value_t = 16,
        global = true
    )]
    pub db_max_connections: u32,
    /// Log format: text or json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: switchboard_telemetry::LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume and send jobs (the default).
    Run,
    /// Apply database migrations, then exit.
    Migrate,
    /// Exit 0 when NATS and PostgreSQL are reachable.
    Healthcheck,
}

impl Cli {
    /// The service configuration these options describe.
    pub fn outbound_config(&self) -> crate::OutboundConfig {
        let mut config = crate::OutboundConfig::new(&self.subject_prefix);
        config.max_in_flight = self.max_in_flight.max(1);
        config.backoff = switchboard_twilio::client::Backoff {
            base: Duration::from_millis(self.backoff_base_ms),
            cap: Duration::from_millis(self.backoff_cap_ms.max(self.backoff_base_ms)),
            max_attempts: self.max_attempts.max(1),
        };
        config.max_age = Duration::from_secs(self.max_age_secs);
        config.request_timeout = Duration::from_millis(self.twilio_request_timeout_ms);
        config.drain_timeout = Duration::from_secs(self.drain_timeout_secs);
        config
    }

    /// The configuration of behaviors' HTTP requests (`{prefix}.outbound.http`).
    pub fn http_config(&self) -> anyhow::Result<crate::http::HttpConfig> {
        let mut config = crate::http::HttpConfig::new(&self.subject_prefix)
            .with_twilio_bases(&self.twilio_api_base, &self.twilio_lookups_base)?;
        config.max_in_flight = self.http_max_in_flight.max(1);
        config.allow = self
            .http_allow
            .parse()
            .map_err(|e| anyhow::anyhow!("OUTBOUND_HTTP_ALLOW: {e}"))?;
        Ok(config)
    }

    /// How the Twilio client reaches Twilio.
    pub fn client_config(&self) -> switchboard_twilio::client::ClientConfig {
        switchboard_twilio::client::ClientConfig {
            api_base: self.twilio_api_base.clone(),
            lookups_base: self.twilio_lookups_base.clone(),
            request_timeout: Duration::from_millis(self.twilio_request_timeout_ms),
            user_agent: concat!("switchboard-outbound/", env!("CARGO_PKG_VERSION")).to_owned(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed_and_every_option_has_an_env_var() {
        Cli::command().debug_assert();
        for arg in Cli::command().get_arguments() {
            if !["help", "version"].contains(&arg.get_id().as_str()) {
                assert!(arg.get_env().is_some(), "--{} has no env var", arg.get_id());
            }
        }
    }

    #[test]
    fn options_become_the_service_configuration() {
        let cli = Cli::try_parse_from([
            "outbound",
            "--max-in-flight",
            "0",
            "--max-attempts",
            "3",
            "--backoff-base-ms",
            "100",
            "--backoff-cap-ms",
            "50",
            "--twilio-api-base",
            "http://127.0.0.1:8090",
        ])
        .unwrap();
        let config = cli.outbound_config();
        assert_eq!(config.max_in_flight, 1, "at least one job at a time");
        assert_eq!(config.backoff.max_attempts, 3);
        assert_eq!(
            config.backoff.cap,
            Duration::from_millis(100),
            "cap not below base"
        );
        assert_eq!(cli.client_config().api_base, "http://127.0.0.1:8090");
        assert!(cli.command.is_none(), "run is the default");
        let http = cli.http_config().unwrap();
        assert_eq!(http.routes.len(), 1, "the Messages API goes to the sandbox");
        assert!(http.allow.is_empty());
        let cli =
            Cli::try_parse_from(["outbound", "--http-allow", "localhost,10.0.0.0/8"]).unwrap();
        assert!(cli.http_config().unwrap().allow.allows_host("localhost"));
        let cli = Cli::try_parse_from(["outbound", "--http-allow", "10.0.0.0/99"]).unwrap();
        let err = cli.http_config().unwrap_err().to_string();
        assert!(err.contains("OUTBOUND_HTTP_ALLOW"), "{err}");
        let cli = Cli::try_parse_from(["outbound", "migrate"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Migrate)));
    }
}
