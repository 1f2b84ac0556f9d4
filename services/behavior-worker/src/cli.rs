//! The command line and environment of `behavior-worker`: every option with its env var; the doc
//! comments are the operator documentation (`--help`).

use clap::{Parser, Subcommand};
use secrecy::SecretString;

/// Switchboard behavior worker: answers webhooks by running Cerb behaviors (a NATS service in
/// queue group `behavior-worker`; run more replicas to scale).
#[derive(Debug, Parser)]
#[command(name = "behavior-worker", version, about)]
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
    /// without it, or when it does not decrypt the stored credentials. Make one for a new
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
    /// Prefix of every NATS subject.
    #[arg(long, env = "SWITCHBOARD_SUBJECT_PREFIX", default_value = switchboard_wire::DEFAULT_PREFIX, global = true)]
    pub subject_prefix: String,
    /// Webhooks handled at once by this replica.
    #[arg(
        long,
        env = "WORKER_MAX_IN_FLIGHT",
        default_value_t = 64,
        global = true
    )]
    pub max_in_flight: usize,
    /// Most answered webhooks written to the message log in one statement (the fast path for
    /// behaviors without side effects batches concurrent webhooks' records).
    #[arg(
        long,
        env = "WORKER_LOG_BATCH_MAX",
        default_value_t = 128,
        global = true
    )]
    pub log_batch_max: usize,
    /// Message-log statements in flight at once. Fewer make bigger batches (less database CPU
    /// per webhook); more lower the latency when the database is slow.
    #[arg(
        long,
        env = "WORKER_LOG_CONCURRENCY",
        default_value_t = 2,
        global = true
    )]
    pub log_concurrency: usize,
    /// Seconds after which a message's claim that was never answered (its worker died between
    /// claiming the MessageSid and answering) is taken over by the next delivery of that
    /// MessageSid, which then runs the behavior. Keep it above the longest run a behavior may
    /// take (its HTTP requests included), or a slow run and its takeover both run.
    #[arg(
        long,
        env = "WORKER_CLAIM_TIMEOUT_SECS",
        default_value_t = 120,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub claim_timeout_secs: u64,
    /// JetStream key-value bucket of bot keys (Cerb's `_set_key` / `_get_key`), created at start
    /// when missing; every replica must name the same one. The NATS user needs its subjects
    /// (docs/nats-security.md).
    #[arg(
        long,
        env = "WORKER_BOT_KEYS_BUCKET",
        default_value = crate::keys::DEFAULT_BUCKET,
        global = true
    )]
    pub bot_keys_bucket: String,
    /// Replicas of the run log stream and the bot keys bucket when the worker creates them: 1
    /// for a single NATS server, 3 for a clustered production deployment (at most 5). Existing
    /// ones keep their own.
    #[arg(long, env = "JETSTREAM_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5), global = true)]
    pub jetstream_replicas: u8,
    /// Record answered webhooks of behaviors without side effects in the JetStream run log
    /// (stream `<PREFIX>_RUNLOG`) before replying, and write them to PostgreSQL behind it: such
    /// webhooks keep being answered while PostgreSQL is down. `false`: they are written to
    /// PostgreSQL before the reply, as behaviors with side effects always are.
    #[arg(long, env = "WORKER_RUN_LOG", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub run_log: bool,
    /// How long the run log recognises a repeated MessageSid (seconds): Twilio's retries and
    /// fallback come within it. nats-server keeps each id of the window in memory (its memory
    /// follows rate x window: 334-403 MiB RSS measured at 8,000 webhooks/s with 120 s). Later
    /// repeats run again; the message log keeps the first answer.
    #[arg(long, env = "WORKER_RUN_LOG_DUPLICATE_WINDOW_SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub run_log_duplicate_window_secs: u64,
    /// Most bytes of run log records not yet written to PostgreSQL (an outage's backlog);
    /// beyond it webhooks are answered 503 until the writer catches up.
    #[arg(long, env = "WORKER_RUN_LOG_MAX_BYTES", default_value_t = 1 << 30, value_parser = clap::value_parser!(i64).range(1_048_576..), global = true)]
    pub run_log_max_bytes: i64,
    /// How long a worker gathers the records it logged after the first of a batch before it
    /// writes them to PostgreSQL (milliseconds, at most 1000; batches also end at 1024 records).
    /// Larger batches cost PostgreSQL less per record; records reach it this much later.
    #[arg(long, env = "WORKER_RUN_LOG_LINGER_MS", default_value_t = 50, value_parser = clap::value_parser!(u64).range(0..=1000), global = true)]
    pub run_log_linger_ms: u64,
    /// Database connections of this replica.
    #[arg(
        long,
        env = "DATABASE_MAX_CONNECTIONS",
        default_value_t = 16,
        global = true
    )]
    pub db_max_connections: u32,
    /// Wait for the database to flush each run record to disk before answering. Off: a
    /// database crash can lose the last few hundred milliseconds of run records and MessageSid
    /// claims (a Twilio retry of such a message then runs again); on: two disk flushes per webhook.
    /// Either way, opt-outs and opt-ins (STOP, START…) and delivery statuses are committed with
    /// synchronous commit on, in their own transactions: their loss would break a promise.
    #[arg(long, env = "WORKER_SYNCHRONOUS_COMMIT", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub synchronous_commit: bool,
    /// Retention: days inbound messages (the message log, with the requests' phone numbers and
    /// bodies) are kept; older ones are deleted by the pruner, with the runs that answered them.
    /// An account's own setting (`switchboard accounts set-retention`) wins. `off` or 0: kept
    /// forever.
    #[arg(long, env = "RETENTION_MESSAGES_DAYS", default_value = "30", value_parser = crate::retention::days_arg, global = true)]
    pub retention_messages_days: crate::retention::DaysArg,
    /// Retention: days behavior runs (traces) are kept; a run is never deleted while the message
    /// it answered is kept. An account's own setting wins. `off` or 0: kept forever.
    #[arg(long, env = "RETENTION_RUNS_DAYS", default_value = "30", value_parser = crate::retention::days_arg, global = true)]
    pub retention_runs_days: crate::retention::DaysArg,
    /// Retention: days finished outbound jobs (sent, failed, dead) are kept; queued and sending
    /// jobs are never deleted. An account's own setting wins. `off` or 0: kept forever.
    #[arg(long, env = "RETENTION_JOBS_DAYS", default_value = "30", value_parser = crate::retention::days_arg, global = true)]
    pub retention_jobs_days: crate::retention::DaysArg,
    /// Seconds between pruning passes (the first runs a minute after start). Every replica
    /// keeps the timer; a PostgreSQL advisory lock lets one pass run at a time. `off` or 0: this
    /// replica never prunes.
    #[arg(long, env = "RETENTION_INTERVAL_SECS", default_value = "3600", value_parser = crate::retention::interval_arg, global = true)]
    pub retention_interval_secs: crate::retention::IntervalArg,
    /// Most rows one pruning statement deletes (each batch is its own short transaction).
    #[arg(long, env = "RETENTION_BATCH_SIZE", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub retention_batch_size: u32,
    /// Pause between two full pruning batches, in milliseconds.
    #[arg(
        long,
        env = "RETENTION_BATCH_PAUSE_MS",
        default_value_t = 50,
        global = true
    )]
    pub retention_batch_pause_ms: u64,
    /// Log format: text (ANSI colours only when stderr is a terminal and NO_COLOR is unset) or
    /// json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: switchboard_telemetry::LogFormat,
    #[command(flatten)]
    pub metrics: switchboard_telemetry::args::MetricsArgs,
    #[command(flatten)]
    pub shutdown: switchboard_telemetry::args::ShutdownArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve webhook requests (the default).
    Run,
    /// Apply database migrations, then exit.
    Migrate,
    /// Exit 0 when ready, 1 otherwise, with one line saying why. With METRICS_ADDR: asks the
    /// running worker's GET /readyz (2 s timeout); without: checks that NATS and PostgreSQL are
    /// reachable.
    Healthcheck,
}

impl Cli {
    /// The retention pruner's options.
    pub fn pruner_options(&self) -> crate::retention::PrunerOptions {
        crate::retention::PrunerOptions {
            policy: switchboard_store::retention::RetentionPolicy {
                messages_days: self.retention_messages_days.0,
                runs_days: self.retention_runs_days.0,
                jobs_days: self.retention_jobs_days.0,
                batch_size: self.retention_batch_size,
                pause: std::time::Duration::from_millis(self.retention_batch_pause_ms),
            },
            interval: self.retention_interval_secs.0,
        }
    }
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
        let cli = Cli::try_parse_from([
            "behavior-worker",
            "--metrics-addr",
            "0.0.0.0:9090",
            "--shutdown-timeout-secs",
            "4",
            "healthcheck",
        ])
        .unwrap();
        assert_eq!(
            cli.metrics.metrics_addr,
            Some("0.0.0.0:9090".parse().unwrap())
        );
        assert_eq!(cli.shutdown.shutdown_timeout_secs, 4);
        let p = cli.pruner_options();
        assert_eq!(
            p.policy,
            switchboard_store::retention::RetentionPolicy::default(),
            "30 days each, 1,000 rows a batch, 50 ms"
        );
        assert_eq!(p.interval, Some(std::time::Duration::from_secs(3600)));
        let off = Cli::try_parse_from([
            "behavior-worker",
            "--retention-messages-days",
            "off",
            "--retention-runs-days",
            "7",
            "--retention-jobs-days",
            "0",
            "--retention-interval-secs",
            "off",
        ])
        .unwrap()
        .pruner_options();
        assert_eq!(
            (
                off.policy.messages_days,
                off.policy.runs_days,
                off.policy.jobs_days
            ),
            (None, Some(7), None)
        );
        assert_eq!(off.interval, None);
        assert!(matches!(cli.command, Some(Command::Healthcheck)));
    }
}
