//! The outbound service as its own process (the binary, configured by its environment, so it
//! can be killed with SIGKILL); the TCP proxy in front of PostgreSQL is the test support's.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use crate::support::{Harness, MASTER_KEY, WAIT, prefix};

/// The `outbound` binary running against the harness's NATS, database and sandbox.
pub struct OutboundProcess {
    child: Child,
    /// Its stdout and stderr.
    log: std::path::PathBuf,
}

impl OutboundProcess {
    /// Starts `outbound run` with the harness's settings, through the environment variables an
    /// operator sets. Its log goes to a file named in the error if it cannot start.
    pub fn spawn(h: &Harness) -> anyhow::Result<OutboundProcess> {
        OutboundProcess::spawn_with(h, &[])
    }

    /// [`OutboundProcess::spawn`] with more environment variables (or others' values).
    pub fn spawn_with(h: &Harness, extra: &[(&str, &str)]) -> anyhow::Result<OutboundProcess> {
        let log = std::env::temp_dir().join(crate::support::unique("sb-outbound-log"));
        let log_file = std::fs::File::create(&log)?;
        let config = &h.config;
        let mut command = Command::new(env!("CARGO_BIN_EXE_outbound"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "RUST_LOG",
                std::env::var("OUTBOUND_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("NATS_URL", h.nats.url())
            .env("DATABASE_URL", &h.database_url)
            .env("SWITCHBOARD_MASTER_KEY", MASTER_KEY)
            // The test suite's public key: refused without this (tests only).
            .env("SWITCHBOARD_ALLOW_TEST_KEY", "1")
            .env("SWITCHBOARD_SUBJECT_PREFIX", prefix(config))
            .env("TWILIO_API_BASE", h.fake.base_url())
            .env("TWILIO_LOOKUPS_BASE", h.fake.base_url())
            .env(
                "TWILIO_REQUEST_TIMEOUT_MS",
                config.request_timeout.as_millis().to_string(),
            )
            .env("OUTBOUND_MAX_IN_FLIGHT", config.max_in_flight.to_string())
            .env(
                "OUTBOUND_MAX_ATTEMPTS",
                config.backoff.max_attempts.to_string(),
            )
            .env(
                "OUTBOUND_BACKOFF_BASE_MS",
                config.backoff.base.as_millis().to_string(),
            )
            .env(
                "OUTBOUND_BACKOFF_CAP_MS",
                config.backoff.cap.as_millis().to_string(),
            )
            .env(
                "OUTBOUND_MAX_AGE_SECS",
                config.max_age.as_secs().to_string(),
            )
            .env(
                "OUTBOUND_RATE_LIMITS",
                if config.limits.enabled { "on" } else { "off" },
            )
            .arg("run")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        command.envs(extra.iter().copied());
        let child = command
            .spawn()
            .with_context(|| format!("starting outbound (log {})", log.display()))?;
        Ok(OutboundProcess { child, log })
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM: what an orchestrator sends to stop it.
    pub fn sigterm(&self) -> anyhow::Result<()> {
        let pid = libc::pid_t::try_from(self.child.id())?;
        // SAFETY: kill(2) with our child's pid and a valid signal number.
        anyhow::ensure!(
            unsafe { libc::kill(pid, libc::SIGTERM) } == 0,
            "kill failed"
        );
        Ok(())
    }

    /// Its exit status, if it exits within `bound`.
    pub async fn exit_within(&mut self, bound: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no drain, no NAKs, no last acks. Waits until the process is gone.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Whether the process still runs (it must not exit on its own).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for OutboundProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

pub use switchboard_test_support::PgProxy;

/// Polls `condition` until it holds, failing the test with `what` after [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
