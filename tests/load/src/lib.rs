//! What the load benchmarks share: child processes whose peak memory is read from `/proc`,
//! free ports, percentiles.

use std::process::{Child, Command};
use std::time::Duration;

/// A port nothing listens on now.
pub use switchboard_test_support::free_port;

/// A service under measurement, killed on drop.
pub struct Proc {
    pub name: &'static str,
    pub child: Child,
}

impl Proc {
    /// Starts `cmd` with its output in `$TMPDIR/bench-NAME-PID.log` (printed, for a look
    /// when figures are off).
    pub fn spawn(name: &'static str, mut cmd: Command) -> anyhow::Result<Proc> {
        let log = std::env::temp_dir().join(format!("bench-{name}-{}.log", std::process::id()));
        let file = std::fs::File::create(&log)?;
        let child = cmd
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        eprintln!("{name}: pid {}, log {}", child.id(), log.display());
        Ok(Proc { name, child })
    }

    /// Fails if the process already exited (a crash would make the figures meaningless).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!("{} exited early: {status}", self.name);
        }
        Ok(())
    }

    /// Peak resident set size (VmHWM) in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `p`th percentile (0–100) of sorted durations, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}
