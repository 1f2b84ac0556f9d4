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
        peak_rss_mib(self.child.id())
    }
}

/// Peak resident set size (VmHWM) of process `pid` in MiB (NaN when it cannot be read).
pub fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
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

/// CPU time used (user + system) by groups of processes, read from `/proc`: a snapshot before
/// and after a load gives each group's CPU per request, whatever the machine's speed that
/// moment (a closed-loop load's requests/s moves with it; the CPU a request costs much less).
pub struct CpuGroups {
    groups: Vec<(&'static str, Matcher)>,
    ticks: f64,
}

/// Whether a process (pid, command line) belongs to a group.
pub type Matcher = Box<dyn Fn(u32, &str) -> bool + Send + Sync>;

/// CPU seconds of each group at one moment.
pub struct CpuSnapshot(Vec<f64>);

impl CpuGroups {
    /// Groups by a test on each process's pid and command line (`\0` turned into spaces); a
    /// process is counted in the first group that takes it.
    pub fn new(groups: Vec<(&'static str, Matcher)>) -> CpuGroups {
        CpuGroups {
            groups,
            ticks: clock_ticks(),
        }
    }

    /// The running processes of the groups: (group index, pid).
    fn members(&self) -> Vec<(usize, u32)> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut members = Vec::new();
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if let Some(i) = self.groups.iter().position(|(_, take)| take(pid, &cmd)) {
                members.push((i, pid));
            }
        }
        members
    }

    /// The largest peak RSS (MiB) among the running processes of the group `name`.
    pub fn peak_rss_mib(&self, name: &str) -> f64 {
        let Some(group) = self.groups.iter().position(|(n, _)| *n == name) else {
            return f64::NAN;
        };
        self.members()
            .into_iter()
            .filter(|(i, _)| *i == group)
            .map(|(_, pid)| peak_rss_mib(pid))
            .fold(f64::NAN, f64::max)
    }

    pub fn snapshot(&self) -> CpuSnapshot {
        let ticks = self.ticks;
        let mut sums = vec![0.0; self.groups.len()];
        for (i, pid) in self.members() {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // Fields after the command's closing parenthesis: utime and stime are 14th and
            // 15th of the whole line, the 12th and 13th after it.
            let Some(rest) = stat.rfind(')').map(|at| &stat[at + 2..]) else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let used = |n: usize| {
                fields
                    .get(n)
                    .and_then(|f| f.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            sums[i] += (used(11) + used(12)) / ticks;
        }
        CpuSnapshot(sums)
    }

    /// Each group's CPU per request between two snapshots, in microseconds.
    pub fn per_request(
        &self,
        before: &CpuSnapshot,
        after: &CpuSnapshot,
        requests: usize,
    ) -> Vec<(&'static str, f64)> {
        self.groups
            .iter()
            .zip(before.0.iter().zip(&after.0))
            .map(|((name, _), (b, a))| (*name, (a - b) * 1e6 / requests.max(1) as f64))
            .collect()
    }
}

fn clock_ticks() -> f64 {
    // SC_CLK_TCK: 100 on every Linux this runs on; read it from getconf when it can be.
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}
