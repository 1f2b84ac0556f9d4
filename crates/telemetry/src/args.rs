//! Options every NATS service shares, as clap structs each binary flattens into its own
//! command line (`#[command(flatten)]`), so the names, env vars and documentation are the same
//! everywhere.

use std::net::SocketAddr;
use std::time::Duration;

/// The health (and, later, metrics) HTTP server.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MetricsArgs {
    /// Address of the HTTP server for probes, e.g. 0.0.0.0:9090. GET /healthz answers 200 while
    /// the process runs; GET /readyz answers 200 only when NATS is connected, PostgreSQL answers
    /// within 1 s and the service's subscriptions or consumers are bound, else 503 with a line
    /// naming what is not ready. With it set, `healthcheck` asks /readyz on this port (0.0.0.0
    /// and :: mean loopback) instead of connecting to NATS and PostgreSQL itself. Unset: no
    /// HTTP server.
    #[arg(long, env = "METRICS_ADDR", value_name = "ADDR:PORT", global = true)]
    pub metrics_addr: Option<SocketAddr>,
}

/// How long a stop may take.
#[derive(Debug, Clone, clap::Args)]
pub struct ShutdownArgs {
    /// Seconds from SIGTERM (or Ctrl-C) to exit. The service stops taking work at once and
    /// drains what is in flight; whatever still runs when this time is up is abandoned, a log
    /// line names it and the process exits with status 1, even when NATS or PostgreSQL is
    /// unreachable (behavior-worker and outbound drain for all but a fifth of it, at most 2 s,
    /// kept for flushing their last replies and acknowledgements to NATS). Keep it below the
    /// orchestrator's grace period (Kubernetes: terminationGracePeriodSeconds, 30 s by default;
    /// Docker: stop_grace_period, 10 s by default), which ends in SIGKILL.
    #[arg(
        long,
        env = "SHUTDOWN_TIMEOUT_SECS",
        default_value_t = 10,
        value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(1..=3600),
        global = true
    )]
    pub shutdown_timeout_secs: u64,
}

impl Default for ShutdownArgs {
    fn default() -> Self {
        ShutdownArgs {
            shutdown_timeout_secs: 10,
        }
    }
}

impl ShutdownArgs {
    /// The whole shutdown's bound.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }

    /// The part of it spent draining work in flight ([`crate::lifecycle::drain_budget`]).
    pub fn drain_budget(&self) -> Duration {
        crate::lifecycle::drain_budget(self.timeout())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        metrics: MetricsArgs,
        #[command(flatten)]
        shutdown: ShutdownArgs,
    }

    #[test]
    fn defaults_and_values() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.metrics.metrics_addr, None);
        assert_eq!(cli.shutdown.timeout(), Duration::from_secs(10));
        assert_eq!(cli.shutdown.drain_budget(), Duration::from_secs(8));
        let cli = Cli::try_parse_from([
            "x",
            "--metrics-addr",
            "0.0.0.0:9090",
            "--shutdown-timeout-secs",
            "30",
        ])
        .unwrap();
        assert_eq!(
            cli.metrics.metrics_addr,
            Some("0.0.0.0:9090".parse().unwrap())
        );
        assert_eq!(cli.shutdown.timeout(), Duration::from_secs(30));
        assert!(Cli::try_parse_from(["x", "--shutdown-timeout-secs", "0"]).is_err());
        assert!(Cli::try_parse_from(["x", "--metrics-addr", "9090"]).is_err());
    }
}
