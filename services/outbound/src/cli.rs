//! The command line and environment of `outbound`: every option with its env var; the doc
//! comments are the operator documentation (`--help`).

use std::time::Duration;

use clap::{Parser, Subcommand};
use secrecy::SecretString;

/// Switchboard outbound service: sends the SMS jobs and runs the lookup jobs published to NATS
/// JetStream through Twilio, with retries, dead-lettering and no double sends (durable pull
/// consumers `outbound` and `outbound-lookup`; run more replicas to scale).
#[derive(Debug, Parser)]
#[command(name = "outbound", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// NATS: server URL(s), credentials, TLS (docs/nats-security.md).
    #[command(flatten)]
    pub nats: switchboard_telemetry::args::NatsArgs,
    /// PostgreSQL URL (its value, which may hold a password, is never shown in --help, logs
    /// or errors).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<String>,
    /// Key that decrypts connected-account credentials (32 bytes, base64 or hex): the key
    /// `switchboard accounts add` encrypted them with. Required by `run`, which exits at once
    /// without it, or when it does not decrypt the stored credentials (a job whose account's
    /// credentials it cannot decrypt fails with `credentials_unreadable`). Make one for a new
    /// installation with `openssl rand -base64 32`.
    #[arg(
        long,
        env = "SWITCHBOARD_MASTER_KEY",
        hide_env_values = true,
        global = true
    )]
    pub master_key: Option<SecretString>,
    /// Old keys that still decrypt credentials during a key rotation (comma-separated, same
    /// encoding): credentials are decrypted with whichever configured key they name and new
    /// ones are encrypted with SWITCHBOARD_MASTER_KEY; `run` warns while stored credentials
    /// still use an old key (`switchboard accounts rekey` re-encrypts them). The test suite's
    /// public key is refused here and as SWITCHBOARD_MASTER_KEY (SWITCHBOARD_ALLOW_TEST_KEY=1
    /// lets tests use it; never set it elsewhere).
    #[arg(
        long,
        env = "SWITCHBOARD_OLD_MASTER_KEYS",
        hide_env_values = true,
        global = true
    )]
    pub old_master_keys: Option<SecretString>,
    /// Prefix of every NATS subject (and, upper-cased, of the stream names).
    #[arg(long, env = "SWITCHBOARD_SUBJECT_PREFIX", default_value = switchboard_wire::DEFAULT_PREFIX, global = true)]
    pub subject_prefix: String,
    /// Base URL of Twilio's Messages API (the sandbox's `twilio-fake` in development).
    #[arg(long, env = "TWILIO_API_BASE", default_value = switchboard_twilio::client::DEFAULT_API_BASE, global = true)]
    pub twilio_api_base: String,
    /// Base URL of Twilio's Lookup API (lookup jobs).
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
    /// After a create that may have gone through although it failed (timeout, 5xx, dropped
    /// connection, a crash mid-request), how long after it ended the recipient's messages
    /// must be listed at Twilio before "no such message" is believed and the message is
    /// created again, in milliseconds. A list read sooner that shows the message adopts it; one
    /// that does not is read again once this has passed. Twilio documents no bound on how soon
    /// a created message appears in its list: one it lists later than this is sent twice.
    #[arg(
        long,
        env = "OUTBOUND_LIST_SETTLE_MS",
        default_value_t = 30_000,
        global = true
    )]
    pub list_settle_ms: u64,
    /// At shutdown, how long jobs in flight may take to finish, in seconds; capped by the drain
    /// part of SHUTDOWN_TIMEOUT_SECS. Jobs still running then are redelivered after the ack wait
    /// (the no-double-send checks make that safe).
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
    /// Public base URL of ingress (e.g. https://bot.example.com). When set, every create whose
    /// job has no `status_callback` of its own gets `StatusCallback` = this +
    /// `/twilio/status`, so Twilio's delivery updates come back as `status` events. A job's own
    /// `status_callback` wins (Twilio takes one URL per message).
    #[arg(long, env = "STATUS_CALLBACK_BASE_URL", value_parser = parse_base_url, global = true)]
    pub status_callback_base_url: Option<String>,
    /// Where a job's `Switchboard-Reply-To` may point: subject prefixes separated by commas,
    /// each ending with a dot. A job whose header names a subject under none of them is
    /// rejected (`invalid_job`, dead-lettered), so a publisher cannot make this service publish
    /// to Switchboard's own subjects; its NATS user may publish only there too
    /// (docs/nats-security.md). Default `_INBOX.`: the inboxes NATS clients make.
    #[arg(long, env = "OUTBOUND_REPLY_TO_PREFIXES", default_value = switchboard_wire::outbound::REPLY_TO_PREFIX, value_parser = parse_reply_to_prefixes, global = true)]
    pub reply_to_prefixes: ReplyToPrefixes,
    /// Database connections of this replica.
    #[arg(
        long,
        env = "DATABASE_MAX_CONNECTIONS",
        default_value_t = 16,
        global = true
    )]
    pub db_max_connections: u32,
    /// Outbound limits on or off: per-sender rates (segments per second, shared by every
    /// replica through PostgreSQL) and the per-account cap on concurrent Twilio requests. Off is
    /// for benchmarks, or when Twilio's own queue is trusted to pace the senders. Suppressed
    /// (opted-out) recipients are refused either way.
    #[arg(long, env = "OUTBOUND_RATE_LIMITS", default_value = "on", action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new(), global = true)]
    pub rate_limits: bool,
    /// Segments per second of a US/Canada long code.
    #[arg(long, env = "OUTBOUND_RATE_LONG_CODE", default_value = "1", value_parser = parse_rate, global = true)]
    pub rate_long_code: f64,
    /// Segments per second of a US/Canada toll-free number (+1 800/833/844/855/866/877/888).
    #[arg(long, env = "OUTBOUND_RATE_TOLL_FREE", default_value = "3", value_parser = parse_rate, global = true)]
    pub rate_toll_free: f64,
    /// Segments per second of a short code (5 or 6 digits).
    #[arg(long, env = "OUTBOUND_RATE_SHORT_CODE", default_value = "100", value_parser = parse_rate, global = true)]
    pub rate_short_code: f64,
    /// Segments per second of a Messaging Service (MG…): set it to what its sender pool allows.
    #[arg(long, env = "OUTBOUND_RATE_MESSAGING_SERVICE", default_value = "1", value_parser = parse_rate, global = true)]
    pub rate_messaging_service: f64,
    /// Segments per second of any other sender (numbers outside +1, alphanumeric sender IDs).
    #[arg(long, env = "OUTBOUND_RATE_OTHER", default_value = "1", value_parser = parse_rate, global = true)]
    pub rate_other: f64,
    /// Per-sender rates that win over the defaults, as SENDER=RATE pairs separated by commas:
    /// `+15005550006=5,MG0123456789abcdef0123456789abcdef=10`. Give every replica the same.
    #[arg(long, env = "OUTBOUND_SENDER_RATES", default_value = "", value_parser = parse_sender_rates, global = true)]
    pub sender_rates: crate::limits::SenderRates,
    /// How long a sender pauses after Twilio answers 429/20429 or 21611 without Retry-After,
    /// in milliseconds.
    #[arg(
        long,
        env = "OUTBOUND_THROTTLE_PAUSE_MS",
        default_value_t = 1000,
        global = true
    )]
    pub throttle_pause_ms: u64,
    /// Twilio requests in flight per account, per replica (with N replicas an account sees up
    /// to N times this); 0: no cap.
    #[arg(
        long,
        env = "OUTBOUND_ACCOUNT_MAX_CONCURRENT",
        default_value_t = 10,
        global = true
    )]
    pub account_max_concurrent: usize,
    /// Replicas of each JetStream stream this service creates (jobs, dead letters, events): 1
    /// for a single NATS server, 3 for a clustered production deployment (at most 5). Streams
    /// that already exist keep their replica count; a warning at start names those that differ
    /// (change them with `nats stream edit --replicas`).
    #[arg(long, env = "JETSTREAM_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5), global = true)]
    pub jetstream_replicas: u8,
    /// How long the events stream keeps an event, in seconds (JetStream max_age; 0: no age
    /// limit). Integrators reading `{prefix}.events.>` from the stream can rely on this long.
    /// Set on creation and updated on an existing stream at every start.
    #[arg(long, env = "OUTBOUND_EVENTS_MAX_AGE_SECS", default_value_t = 7 * 24 * 3600, global = true)]
    pub events_max_age_secs: u64,
    /// Most bytes the events stream holds; the oldest events go first beyond it (0: no size
    /// limit). Default 1 GiB.
    #[arg(long, env = "OUTBOUND_EVENTS_MAX_BYTES", default_value_t = 1 << 30, global = true)]
    pub events_max_bytes: i64,
    /// How long the dead-letter stream keeps a dead-lettered job, in seconds (0: no age limit);
    /// `switchboard dlq replay` works within it. Default 30 days.
    #[arg(long, env = "OUTBOUND_DLQ_MAX_AGE_SECS", default_value_t = 30 * 24 * 3600, global = true)]
    pub dlq_max_age_secs: u64,
    /// Most bytes the dead-letter stream holds; the oldest go first beyond it (0: no size
    /// limit). Default 1 GiB.
    #[arg(long, env = "OUTBOUND_DLQ_MAX_BYTES", default_value_t = 1 << 30, global = true)]
    pub dlq_max_bytes: i64,
    /// Log format: text (ANSI colours only when stderr is a terminal and NO_COLOR is unset) or
    /// json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: switchboard_telemetry::LogFormat,
    #[command(flatten)]
    pub metrics: switchboard_telemetry::args::MetricsArgs,
    #[command(flatten)]
    pub shutdown: switchboard_telemetry::args::ShutdownArgs,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    crate::limits::parse_rate(s)
}

fn parse_sender_rates(s: &str) -> Result<crate::limits::SenderRates, String> {
    s.parse()
}

/// `OUTBOUND_REPLY_TO_PREFIXES`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyToPrefixes(pub Vec<String>);

/// Subject prefixes separated by commas, each whole tokens ending with a dot, none a system
/// subject (`$…`).
fn parse_reply_to_prefixes(value: &str) -> Result<ReplyToPrefixes, String> {
    let mut prefixes = Vec::new();
    for prefix in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let tokens = prefix.strip_suffix('.').ok_or_else(|| {
            format!("'{prefix}' must end with '.' (a prefix of whole subject tokens)")
        })?;
        let bad = tokens
            .split('.')
            .any(|t| t.is_empty() || t == "*" || t == ">" || t.chars().any(|c| c.is_whitespace()));
        if bad {
            return Err(format!(
                "'{prefix}' is not a subject prefix (dot-separated tokens without spaces or wildcards)"
            ));
        }
        if prefix.starts_with('$') {
            return Err(format!(
                "'{prefix}' names NATS system subjects ($JS, $SYS, $SRV…), never a reply inbox"
            ));
        }
        prefixes.push(prefix.to_owned());
    }
    if prefixes.is_empty() {
        return Err("give at least one prefix (the default is _INBOX.)".into());
    }
    Ok(ReplyToPrefixes(prefixes))
}

/// An absolute http(s) base URL without query or fragment, whose host Twilio accepts (no `_`).
fn parse_base_url(value: &str) -> Result<String, String> {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or("must start with http:// or https://")?;
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    if value.contains(['?', '#']) {
        return Err("must not have a query or fragment".into());
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err("must have a host and no credentials".into());
    }
    if authority.contains('_') {
        return Err(
            "the host name must not contain '_' (Twilio rejects such callback URLs)".into(),
        );
    }
    Ok(value.to_owned())
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume and send jobs (the default).
    Run,
    /// Apply database migrations, then exit.
    Migrate,
    /// Exit 0 when ready, 1 otherwise, with one line saying why. With METRICS_ADDR: asks the
    /// running service's GET /readyz (2 s timeout); without: checks that NATS and PostgreSQL are
    /// reachable.
    Healthcheck,
}

impl Cli {
    /// Checks what the value parsers cannot see alone: no reply prefix lies under or over the
    /// subject prefix (the final events would go to Switchboard's own subjects).
    pub fn check(&self) -> anyhow::Result<()> {
        let own = format!("{}.", self.subject_prefix.trim_end_matches('.'));
        for prefix in &self.reply_to_prefixes.0 {
            if prefix.starts_with(&own) || own.starts_with(prefix.as_str()) {
                anyhow::bail!(
                    "OUTBOUND_REPLY_TO_PREFIXES: '{prefix}' overlaps Switchboard's own subjects ({own}>): replies must go elsewhere"
                );
            }
        }
        Ok(())
    }

    /// The service configuration these options describe.
    pub fn outbound_config(&self) -> crate::OutboundConfig {
        let mut config = crate::OutboundConfig::new(&self.subject_prefix);
        config.reply_to_prefixes = self.reply_to_prefixes.0.clone();
        config.max_in_flight = self.max_in_flight.max(1);
        config.backoff = switchboard_twilio::client::Backoff {
            base: Duration::from_millis(self.backoff_base_ms),
            cap: Duration::from_millis(self.backoff_cap_ms.max(self.backoff_base_ms)),
            max_attempts: self.max_attempts.max(1),
        };
        config.max_age = Duration::from_secs(self.max_age_secs);
        config.request_timeout = Duration::from_millis(self.twilio_request_timeout_ms);
        config.drain_timeout =
            Duration::from_secs(self.drain_timeout_secs).min(self.shutdown.drain_budget());
        config.replicas = usize::from(self.jetstream_replicas);
        config.list_settle = Duration::from_millis(self.list_settle_ms);
        config.stream_limits = crate::StreamLimits {
            events_max_age: Duration::from_secs(self.events_max_age_secs),
            events_max_bytes: self.events_max_bytes,
            dlq_max_age: Duration::from_secs(self.dlq_max_age_secs),
            dlq_max_bytes: self.dlq_max_bytes,
        };
        config.limits = crate::limits::LimitsConfig {
            enabled: self.rate_limits,
            long_code: self.rate_long_code,
            toll_free: self.rate_toll_free,
            short_code: self.rate_short_code,
            messaging_service: self.rate_messaging_service,
            other: self.rate_other,
            sender_rates: self.sender_rates.clone(),
            throttle_pause: Duration::from_millis(self.throttle_pause_ms),
            account_max_concurrent: self.account_max_concurrent,
        };
        config.status_callback_url = self.status_callback_base_url.as_deref().map(|base| {
            format!(
                "{}{}",
                base.trim_end_matches('/'),
                crate::STATUS_CALLBACK_PATH
            )
        });
        config
    }

    /// The configuration of behaviors' HTTP requests (`{prefix}.outbound.http`).
    pub fn http_config(&self) -> anyhow::Result<crate::http::HttpConfig> {
        let mut config = crate::http::HttpConfig::new(&self.subject_prefix)
            .with_twilio_bases(&self.twilio_api_base, &self.twilio_lookups_base)?;
        config.max_in_flight = self.http_max_in_flight.max(1);
        config.drain_timeout = self.shutdown.drain_budget();
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
            // Each request to Twilio carries the W3C traceparent of its client span.
            propagate: Some(switchboard_twilio::client::Propagate(
                switchboard_telemetry::inject_http_current,
            )),
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
        assert_eq!(config.limits, crate::limits::LimitsConfig::default());
        let cli = Cli::try_parse_from([
            "outbound",
            "--rate-limits",
            "off",
            "--sender-rates",
            "+15005550006=5,MG0123456789abcdef0123456789abcdef=2.5",
            "--rate-toll-free",
            "25",
            "--account-max-concurrent",
            "0",
        ])
        .unwrap();
        let limits = cli.outbound_config().limits;
        assert!(!limits.enabled);
        assert_eq!(limits.rate("+15005550006"), 5.0);
        assert_eq!(limits.rate("MG0123456789abcdef0123456789abcdef"), 2.5);
        assert_eq!(limits.rate("+18005550100"), 25.0);
        assert_eq!(limits.account_max_concurrent, 0);
        for bad in [
            ["outbound", "--sender-rates", "+15005550006"],
            ["outbound", "--rate-long-code", "0"],
            ["outbound", "--rate-limits", "maybe"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
        assert_eq!(config.status_callback_url, None);
        let cli = Cli::try_parse_from([
            "outbound",
            "--status-callback-base-url",
            "https://bot.example.com/",
        ])
        .unwrap();
        assert_eq!(
            cli.outbound_config().status_callback_url.as_deref(),
            Some("https://bot.example.com/twilio/status")
        );
        for bad in [
            "bot.example.com",
            "https://a_b.example.com",
            "https://x.example/?a=1",
        ] {
            assert!(
                Cli::try_parse_from(["outbound", "--status-callback-base-url", bad]).is_err(),
                "{bad}"
            );
        }
        let cli = Cli::try_parse_from(["outbound", "migrate"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Migrate)));
    }

    #[test]
    fn reply_to_prefixes_are_whole_tokens_outside_switchboards_subjects() {
        let cli = Cli::try_parse_from(["outbound"]).unwrap();
        assert_eq!(cli.outbound_config().reply_to_prefixes, ["_INBOX."]);
        cli.check().unwrap();
        let cli = Cli::try_parse_from(["outbound", "--reply-to-prefixes", "_INBOX., app.replies."])
            .unwrap();
        assert_eq!(
            cli.outbound_config().reply_to_prefixes,
            ["_INBOX.", "app.replies."]
        );
        for bad in ["_INBOX", "_INBOX.>.", "$JS.", "a b.", "", " , "] {
            assert!(
                Cli::try_parse_from(["outbound", "--reply-to-prefixes", bad]).is_err(),
                "{bad:?}"
            );
        }
        for overlapping in ["switchboard.", "switchboard.events.", "acme."] {
            let cli = Cli::try_parse_from([
                "outbound",
                "--subject-prefix",
                "acme.switchboard",
                "--reply-to-prefixes",
                overlapping,
            ])
            .unwrap();
            let checked = cli.check();
            assert_eq!(
                checked.is_err(),
                overlapping != "switchboard." && overlapping != "switchboard.events.",
                "{overlapping}: {checked:?}"
            );
        }
        let cli =
            Cli::try_parse_from(["outbound", "--reply-to-prefixes", "switchboard.x."]).unwrap();
        let err = cli.check().unwrap_err().to_string();
        assert_eq!(
            err,
            "OUTBOUND_REPLY_TO_PREFIXES: 'switchboard.x.' overlaps Switchboard's own subjects (switchboard.>): replies must go elsewhere"
        );
    }

    #[test]
    fn replicas_and_the_shutdown_bound_reach_the_configuration() {
        let cli = Cli::try_parse_from(["outbound"]).unwrap();
        let config = cli.outbound_config();
        assert_eq!(config.replicas, 1, "one replica by default");
        assert_eq!(config.list_settle, crate::DEFAULT_LIST_SETTLE);
        assert_eq!(config.list_settle, Duration::from_secs(30));
        let settle = Cli::try_parse_from(["outbound", "--list-settle-ms", "2500"]).unwrap();
        assert_eq!(
            settle.outbound_config().list_settle,
            Duration::from_millis(2500)
        );
        assert_eq!(
            config.drain_timeout,
            Duration::from_secs(8),
            "the drain fits in the default 10 s shutdown"
        );
        assert_eq!(
            cli.http_config().unwrap().drain_timeout,
            Duration::from_secs(8)
        );
        assert_eq!(cli.metrics.metrics_addr, None);
        let cli = Cli::try_parse_from([
            "outbound",
            "--jetstream-replicas",
            "3",
            "--shutdown-timeout-secs",
            "60",
            "--drain-timeout-secs",
            "20",
            "--metrics-addr",
            "[::]:9090",
        ])
        .unwrap();
        let config = cli.outbound_config();
        assert_eq!(config.replicas, 3);
        assert!(
            crate::stream_configs(&config)
                .iter()
                .all(|s| s.num_replicas == 3)
        );
        assert_eq!(config.drain_timeout, Duration::from_secs(20));
        assert_eq!(config.stream_limits, crate::StreamLimits::default());
        let limited = Cli::try_parse_from([
            "outbound",
            "--events-max-age-secs",
            "3600",
            "--events-max-bytes",
            "1000000",
            "--dlq-max-age-secs",
            "0",
            "--dlq-max-bytes",
            "0",
        ])
        .unwrap()
        .outbound_config();
        let [jobs, dlq, events] = crate::stream_configs(&limited);
        assert_eq!(events.max_age, Duration::from_secs(3600));
        assert_eq!(events.max_bytes, 1_000_000);
        assert_eq!(
            (dlq.max_age, dlq.max_bytes),
            (Duration::ZERO, -1),
            "0: no limit"
        );
        assert_eq!(
            jobs.max_age,
            Duration::ZERO,
            "the job stream is not limited"
        );
        assert_eq!(
            cli.http_config().unwrap().drain_timeout,
            Duration::from_secs(58)
        );
        for bad in ["0", "6", "three"] {
            assert!(
                Cli::try_parse_from(["outbound", "--jetstream-replicas", bad]).is_err(),
                "{bad}"
            );
        }
    }
}
