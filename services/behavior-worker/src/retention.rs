//! The retention pruner: every `RETENTION_INTERVAL_SECS`, one pass of
//! [`switchboard_store::Store::prune`] deletes the message log, behavior runs and finished
//! outbound jobs older than their limit (the rules: `switchboard_store::retention`). Every
//! replica runs the timer; a PostgreSQL advisory lock lets one pass run at a time, the others
//! skip theirs.

use std::future::Future;
use std::time::Duration;

use switchboard_store::Store;
use switchboard_store::retention::{PruneOutcome, RetentionPolicy};
use time::OffsetDateTime;

/// When and how the pruner runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrunerOptions {
    pub policy: RetentionPolicy,
    /// Time between passes; `None`: this replica never prunes.
    pub interval: Option<Duration>,
}

/// A number of days on the command line (`None`: off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaysArg(pub Option<u32>);

/// An interval on the command line (`None`: off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntervalArg(pub Option<Duration>);

/// [`parse_days`] for clap.
pub fn days_arg(value: &str) -> Result<DaysArg, String> {
    parse_days(value).map(DaysArg)
}

/// [`parse_interval`] for clap.
pub fn interval_arg(value: &str) -> Result<IntervalArg, String> {
    parse_interval(value).map(IntervalArg)
}

/// Parses a number of days: `off` or `0` disable (`None`).
pub fn parse_days(value: &str) -> Result<Option<u32>, String> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    match value.parse::<u32>() {
        Ok(0) => Ok(None),
        Ok(days) => Ok(Some(days)),
        Err(_) => Err(format!("'{value}' is not a number of days or 'off'")),
    }
}

/// Parses an interval in seconds: `off` or `0` disable (`None`).
pub fn parse_interval(value: &str) -> Result<Option<Duration>, String> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    match value.parse::<u64>() {
        Ok(0) => Ok(None),
        Ok(secs) => Ok(Some(Duration::from_secs(secs))),
        Err(_) => Err(format!("'{value}' is not a number of seconds or 'off'")),
    }
}

/// One pass as of `now`, logged: what was deleted, or that another pass holds the lock.
pub async fn prune_once(
    store: &Store,
    policy: &RetentionPolicy,
    now: OffsetDateTime,
) -> switchboard_store::Result<PruneOutcome> {
    let started = std::time::Instant::now();
    let outcome = store.prune(policy, now).await?;
    match &outcome {
        PruneOutcome::Pruned(report) => tracing::info!(
            messages = report.messages,
            runs = report.runs,
            jobs = report.jobs,
            batches = report.batches,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "retention: pruned"
        ),
        PruneOutcome::Busy => {
            tracing::debug!("retention: another pass holds the lock; skipped")
        }
    }
    Ok(outcome)
}

/// Runs a pass shortly after start (a minute, or the interval when shorter), then every
/// interval, until `stop` completes; with no interval, returns at once. A failed pass is
/// logged and tried again at the next interval. The clock is the system's.
pub async fn run_pruner(store: Store, options: PrunerOptions, stop: impl Future<Output = ()>) {
    let Some(interval) = options.interval else {
        tracing::info!("retention: pruning off in this replica (RETENTION_INTERVAL_SECS=off)");
        return;
    };
    let policy = options.policy;
    tracing::info!(
        messages_days = ?policy.messages_days,
        runs_days = ?policy.runs_days,
        jobs_days = ?policy.jobs_days,
        interval_secs = interval.as_secs(),
        "retention: pruning on"
    );
    let passes = async {
        let mut next = interval.min(Duration::from_secs(60));
        loop {
            tokio::time::sleep(next).await;
            next = interval;
            if let Err(e) = prune_once(&store, &policy, OffsetDateTime::now_utc()).await {
                tracing::warn!(error = %e, "retention: pass failed; tried again at the next interval");
            }
        }
    };
    tokio::select! {
        () = passes => {}
        () = stop => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_intervals_parse_with_off() {
        assert_eq!(parse_days("30"), Ok(Some(30)));
        assert_eq!(parse_days("0"), Ok(None));
        assert_eq!(parse_days("OFF"), Ok(None));
        assert!(parse_days("-1").is_err());
        assert!(parse_days("a week").is_err());
        assert_eq!(parse_interval("3600"), Ok(Some(Duration::from_secs(3600))));
        assert_eq!(parse_interval("off"), Ok(None));
        assert_eq!(parse_interval("0"), Ok(None));
        assert!(parse_interval("1h").is_err());
    }
}
