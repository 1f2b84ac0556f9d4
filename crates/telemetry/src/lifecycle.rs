//! Bounded shutdown, shared by the services' `main`s: a [`Stop`] that completes on Ctrl-C or
//! SIGTERM, and [`run_bounded`], which gives a service its shutdown timeout after the signal and
//! then exits the process non-zero with a log line naming the work it abandoned (counted by
//! [`track`]). The services bound each of their own drain steps inside it ([`drain_budget`],
//! [`flush_within`]), so the hard bound is a backstop for what nobody foresaw (a NATS call
//! that waits for a connection that never comes back).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// Completes on Ctrl-C or SIGTERM, answering which.
pub async fn signal() -> &'static str {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => "SIGINT",
        _ = term => "SIGTERM",
    }
}

/// The process's stop request, shared by its parts (clone it).
#[derive(Debug, Clone)]
pub struct Stop {
    requested: watch::Receiver<Option<Instant>>,
}

/// Requests a [`Stop`] (the signal handler, or a test).
#[derive(Debug)]
pub struct StopTrigger {
    tx: watch::Sender<Option<Instant>>,
}

impl StopTrigger {
    /// Asks every holder of the [`Stop`] to stop (once; later calls change nothing).
    pub fn stop(&self) {
        self.tx.send_if_modified(|at| {
            if at.is_some() {
                return false;
            }
            *at = Some(Instant::now());
            true
        });
    }
}

impl Stop {
    /// A stop requested by the returned trigger only.
    pub fn new() -> (StopTrigger, Stop) {
        let (tx, requested) = watch::channel(None);
        (StopTrigger { tx }, Stop { requested })
    }

    /// A stop requested by Ctrl-C or SIGTERM (logged, with the bound the service then has).
    pub fn on_signal(timeout: Duration) -> Stop {
        let (trigger, stop) = Stop::new();
        tokio::spawn(async move {
            let which = signal().await;
            tracing::info!(
                signal = which,
                shutdown_timeout_s = timeout.as_secs_f64(),
                "{which} received: no new work; draining what is in flight"
            );
            trigger.stop();
            // Keep the sender: a dropped trigger must not look like a stop.
            std::future::pending::<()>().await;
        });
        stop
    }

    /// Completes once a stop was requested (at once if it already was). Never completes if the
    /// trigger is dropped without stopping.
    pub fn requested(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.requested.clone();
        async move {
            if rx.wait_for(Option::is_some).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// When the stop was requested, once it was.
    async fn requested_at(&self) -> Instant {
        let mut rx = self.requested.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(at) => at.expect("waited for Some"),
            Err(_) => std::future::pending().await,
        }
    }

    pub fn is_requested(&self) -> bool {
        self.requested.borrow().is_some()
    }
}

/// How much of a shutdown timeout the services spend draining work in flight: all of it but
/// the time their last steps (flushing acknowledgements and replies to NATS, at most
/// [`FLUSH_BOUND`] each) need, a fifth of it or 2 s, whichever is less.
pub fn drain_budget(shutdown_timeout: Duration) -> Duration {
    shutdown_timeout.saturating_sub((shutdown_timeout / 5).min(Duration::from_secs(2)))
}

/// The bound on each NATS flush after the drain: a flush waits for the connection, which may
/// never come back.
pub const FLUSH_BOUND: Duration = Duration::from_millis(500);

/// Flushes `client` within `bound`; `Err` says why not (NATS unreachable, or too slow).
pub async fn flush_within(client: &async_nats::Client, bound: Duration) -> Result<(), String> {
    match tokio::time::timeout(bound, client.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("flushing to NATS failed: {e}")),
        Err(_) => Err(format!(
            "NATS did not confirm a flush within {} ms ({})",
            bound.as_millis(),
            client.connection_state()
        )),
    }
}

/// Runs `service` until it ends. After a stop request it has `timeout`: if it ends in time
/// with `Ok`, so does this; if it ends with an error (the work it could not finish) or the
/// timeout passes first, the process exits with status 1 at once, after one error line naming
/// what was abandoned (the error, or what [`track`] counts still in flight). Exiting at once
/// matters: the runtime would otherwise wait for blocking tasks still running.
pub async fn run_bounded<F>(service: F, stop: &Stop, timeout: Duration) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<()>>,
{
    tokio::pin!(service);
    let deadline = tokio::select! {
        result = &mut service => return result,
        at = stop.requested_at() => at + timeout,
    };
    *DEADLINE.lock().unwrap() = Some(deadline.into_std());
    match tokio::time::timeout_at(deadline, &mut service).await {
        Ok(Ok(())) => {
            tracing::info!("stopped: nothing left in flight");
            Ok(())
        }
        Ok(Err(e)) => {
            tracing::error!(
                "stopped with work abandoned: {}",
                format!("{e:#}").replace('\n', " ")
            );
            exit_now(1)
        }
        Err(_) => {
            tracing::error!(
                "shutdown timeout ({} s) reached{}: exiting; abandoned {}",
                timeout.as_secs_f64(),
                match stage() {
                    "" => String::new(),
                    stage => format!(" while {stage}"),
                },
                in_flight()
            );
            exit_now(1)
        }
    }
}

fn exit_now(code: i32) -> ! {
    use std::io::Write as _;
    let _ = std::io::stderr().flush();
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

/// When the process must be gone, once a stop was requested ([`run_bounded`]).
static DEADLINE: Mutex<Option<std::time::Instant>> = Mutex::new(None);

/// What is left of the shutdown's bound, if a shutdown is under way (what remains to flush the
/// telemetry exporter, for one).
pub fn time_left() -> Option<Duration> {
    DEADLINE
        .lock()
        .unwrap()
        .map(|deadline| deadline.saturating_duration_since(std::time::Instant::now()))
}

/// Work in flight in this process, by kind (the plural noun shown in the log).
static IN_FLIGHT: Mutex<BTreeMap<&'static str, usize>> = Mutex::new(BTreeMap::new());

/// What the process is doing on its way out (see [`set_stage`]).
static STAGE: Mutex<&'static str> = Mutex::new("");

/// Counts one unit of work of kind `what` (a plural noun: "webhook requests") as in flight
/// until the guard is dropped.
pub fn track(what: &'static str) -> Tracked {
    *IN_FLIGHT.lock().unwrap().entry(what).or_default() += 1;
    Tracked(what)
}

/// One unit of work in flight ([`track`]).
#[derive(Debug)]
pub struct Tracked(&'static str);

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(n) = IN_FLIGHT.lock().unwrap().get_mut(self.0) {
            *n = n.saturating_sub(1);
        }
    }
}

/// The work in flight, e.g. "2 send jobs, 1 HTTP jobs in flight", or "no work in flight".
pub fn in_flight() -> String {
    let counts = IN_FLIGHT.lock().unwrap();
    let parts: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(what, n)| format!("{n} {what}"))
        .collect();
    if parts.is_empty() {
        "no work in flight".to_owned()
    } else {
        format!("{} in flight", parts.join(", "))
    }
}

/// Names the step the shutdown is at ("flushing replies to NATS"), for the timeout's log line.
pub fn set_stage(stage: &'static str) {
    *STAGE.lock().unwrap() = stage;
}

fn stage() -> &'static str {
    *STAGE.lock().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drain_leaves_room_for_the_last_steps() {
        let s = Duration::from_secs;
        assert_eq!(drain_budget(s(10)), s(8));
        assert_eq!(drain_budget(s(60)), s(58));
        assert_eq!(drain_budget(s(1)), Duration::from_millis(800));
        assert_eq!(drain_budget(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn in_flight_work_is_counted_by_kind() {
        let a = track("lifecycle test jobs");
        let b = track("lifecycle test jobs");
        let c = track("lifecycle test requests");
        let text = in_flight();
        assert!(text.contains("2 lifecycle test jobs"), "{text}");
        assert!(text.contains("1 lifecycle test requests"), "{text}");
        drop((a, b, c));
        assert!(!in_flight().contains("lifecycle test"), "{}", in_flight());
    }

    #[tokio::test]
    async fn a_stop_is_seen_by_every_holder_and_a_service_that_drains_in_time_ends_ok() {
        let (trigger, stop) = Stop::new();
        let waiting = tokio::spawn(stop.clone().requested());
        assert!(!stop.is_requested());
        let inner = stop.clone();
        let service = async move {
            inner.requested().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            anyhow::Ok(())
        };
        trigger.stop();
        trigger.stop();
        run_bounded(service, &stop, Duration::from_secs(5))
            .await
            .unwrap();
        waiting.await.unwrap();
        assert!(stop.is_requested());
    }

    #[tokio::test]
    async fn a_dropped_trigger_is_no_stop_and_a_service_ending_alone_ends_the_run() {
        let (trigger, stop) = Stop::new();
        drop(trigger);
        let requested = stop.requested();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), requested)
                .await
                .is_err()
        );
        let err = run_bounded(
            async { anyhow::bail!("NATS closed") },
            &stop,
            Duration::ZERO,
        )
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "NATS closed");
    }
}
