//! Running the service: [`run`] sets up the streams and consumers, then runs one fetch loop per
//! consumer ([`consume`]) until shutdown, when it NAKs what was fetched but not started and
//! drains what is in flight. The send jobs of one pull are worked on as a group (`group.rs`),
//! each lookup on its own ([`handle`]). Here too is what every path uses to talk to JetStream
//! about a delivery: progress acks while it works ([`with_progress`]) and the answer at the end
//! ([`answer`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use futures::StreamExt;
use rand::Rng;
use switchboard_store::Store;
use switchboard_telemetry::lifecycle;
use switchboard_twilio::client::{Backoff, TwilioClient};
use switchboard_wire::outbound::{HEADER_REPLY_TO, JobType, check_reply_to};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::accounts::WrongKeyAccounts;
use crate::group::handle_group;
use crate::job::handle;
use crate::{Ctx, Disposition, OutboundConfig, limits, lookup, setup};

/// The most send jobs worked on as one group (see [`handle_group`] and [`group_max`]).
const MAX_GROUP: usize = 128;

/// How long a group of send jobs waits for more deliveries of the same pull after its first.
const GROUP_LINGER: Duration = Duration::from_millis(2);

/// Consumes jobs until `shutdown` completes, then stops fetching, NAKs the jobs it fetched but
/// did not start, and waits (at most the drain timeout) for those in flight. Every step after
/// the shutdown is bounded, whether NATS is reachable or not; an error names what was abandoned
/// (jobs still running, which JetStream redelivers after the ack wait, or acknowledgements NATS
/// did not confirm). A shutdown while the streams are being set up ends it at once.
pub async fn run(
    config: OutboundConfig,
    store: Store,
    nats: async_nats::Client,
    twilio: TwilioClient,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, mut stop) = watch::channel(false);
    let ready = config.ready.clone();
    tokio::spawn(async move {
        shutdown.await;
        ready.set(false);
        let _ = stop_tx.send(true);
    });
    let js = jetstream::new(nats.clone());
    let consumers = async {
        let consumer = setup(&js, &config).await?;
        let lookups = lookup::setup(&js, &config).await?;
        anyhow::Ok((consumer, lookups))
    };
    let (consumer, lookups) = tokio::select! {
        consumers = consumers => consumers?,
        () = stopped(&mut stop) => {
            tracing::info!("stopped before the streams and consumers were set up");
            return Ok(());
        }
    };
    tracing::info!(
        stream = %config.subjects.job_stream(),
        subjects = %format!("{}, {}", config.subjects.sms_send(), config.subjects.lookup()),
        max_in_flight = config.max_in_flight,
        replicas = config.replicas,
        "outbound consuming"
    );
    if !*stop.borrow() {
        config.ready.set(true);
    }
    config.metrics.watch_consumers(
        vec![
            (
                switchboard_wire::outbound::OUTBOUND_CONSUMER.to_owned(),
                consumer.clone(),
            ),
            (lookup::LOOKUP_CONSUMER.to_owned(), lookups.clone()),
        ],
        stop.clone(),
    );
    let ctx = Arc::new(Ctx {
        limits: limits::Limits::new(config.limits.clone()),
        config,
        store,
        nats,
        js,
        twilio,
        stop: stop.clone(),
        wrong_key: WrongKeyAccounts::default(),
    });
    // One fetch loop per consumer, each with its own in-flight bound.
    let (sends, lookups) = tokio::join!(
        consume(&ctx, &consumer, stop.clone(), JobType::SmsSend),
        consume(&ctx, &lookups, stop, JobType::Lookup),
    );
    let mut abandoned: Vec<String> = [sends, lookups].into_iter().flatten().collect();
    // Acks and NAKs are plain publishes, buffered in the client: send them before the
    // connection goes, or JetStream redelivers those jobs after the ack wait.
    lifecycle::set_stage("flushing acknowledgements to NATS");
    if let Err(why) = lifecycle::flush_within(&ctx.nats, lifecycle::FLUSH_BOUND).await {
        tracing::warn!(
            error = %why,
            "the last acknowledgements may not have reached NATS: those jobs are redelivered after the ack wait"
        );
        abandoned.push(format!("acknowledgements not confirmed by NATS ({why})"));
    }
    lifecycle::set_stage("");
    if abandoned.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("outbound jobs abandoned {}", abandoned.join("; "))
    }
}

/// Fetches from one consumer and works on its jobs (`job` says which kind) until `stop`, then
/// NAKs what it fetched but did not start and drains what is in flight, all within the drain
/// timeout. Answers what it abandoned, if anything.
async fn consume(
    ctx: &Arc<Ctx>,
    consumer: &consumer::PullConsumer,
    mut stop: watch::Receiver<bool>,
    job: JobType,
) -> Option<String> {
    let slots = Arc::new(Semaphore::new(ctx.config.max_in_flight));
    let mut tasks = JoinSet::new();
    // When the drain must be over (set when the stop is seen).
    let mut deadline = None;
    let in_flight_name = match job {
        JobType::SmsSend => "send jobs",
        JobType::Lookup => "lookup jobs",
    };

    'fetching: loop {
        while let Some(done) = tasks.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "job task failed");
            }
        }
        let first = tokio::select! {
            () = stopped(&mut stop) => break 'fetching,
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        // A pull of send jobs asks for one group's worth at most: a group takes the pull's
        // deliveries, and a larger pull would leave a small group behind.
        let wanted = match job {
            JobType::SmsSend => (1 + slots.available_permits()).min(group_max(&ctx.config)),
            JobType::Lookup => 1 + slots.available_permits(),
        };
        // Not raced with shutdown: once the pull request is out, the server may deliver to it,
        // so its messages are read (and NAKed at shutdown) rather than left to the ack wait.
        let batch = consumer
            .batch()
            .max_messages(wanted)
            .expires(ctx.config.fetch_wait)
            .messages()
            .await;
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, "pulling jobs failed; trying again");
                drop(first);
                tokio::select! {
                    () = stopped(&mut stop) => break 'fetching,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue 'fetching,
                }
            }
        };
        let mut first = Some(first);
        loop {
            let next = tokio::select! {
                biased;
                () = stopped(&mut stop) => {
                    let until = tokio::time::Instant::now() + ctx.config.drain_timeout;
                    deadline = Some(until);
                    nak_rest(&mut batch, until, &ctx.nats).await;
                    break 'fetching;
                }
                next = batch.next() => next,
            };
            let message = match next {
                None => break,
                Some(Ok(message)) => message,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "pulling jobs failed");
                    break;
                }
            };
            let permit = match first.take() {
                Some(permit) => permit,
                // Only this loop takes permits, so the ones counted above are still free.
                None => slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed"),
            };
            let ctx = ctx.clone();
            if job == JobType::Lookup {
                let tracked = lifecycle::track(in_flight_name);
                tasks.spawn(async move {
                    handle(&ctx, message, job).await;
                    drop((permit, tracked));
                });
                continue;
            }
            // Send jobs are worked on in groups: the deliveries that arrive with this one, within
            // GROUP_LINGER (as many as there are free slots), share their store statements and
            // event publishes. A pull that has delivered all it asked for ends the group at once.
            let mut group = vec![message];
            let mut permits = vec![permit];
            let mut pull_ended = false;
            let group_max = group_max(&ctx.config);
            let linger = tokio::time::Instant::now() + GROUP_LINGER;
            while group.len() < group_max {
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    break;
                };
                match tokio::time::timeout_at(linger, batch.next()).await.ok() {
                    Some(Some(Ok(message))) => {
                        group.push(message);
                        permits.push(permit);
                    }
                    Some(Some(Err(e))) => {
                        tracing::warn!(error = %e, "pulling jobs failed");
                        pull_ended = true;
                        break;
                    }
                    Some(None) => {
                        pull_ended = true;
                        break;
                    }
                    None => break,
                }
            }
            let tracked: Vec<_> = group
                .iter()
                .map(|_| lifecycle::track(in_flight_name))
                .collect();
            tasks.spawn(async move {
                handle_group(&ctx, group).await;
                drop((permits, tracked));
            });
            if pull_ended {
                break;
            }
        }
    }

    let in_flight = ctx.config.max_in_flight - slots.available_permits();
    tracing::info!(
        job = job.as_str(),
        in_flight,
        "shutting down: draining jobs in flight"
    );
    lifecycle::set_stage("draining jobs in flight");
    let deadline =
        deadline.unwrap_or_else(|| tokio::time::Instant::now() + ctx.config.drain_timeout);
    let drained = tokio::time::timeout_at(deadline, async {
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "job task failed");
            }
        }
    })
    .await;
    if drained.is_ok() {
        return None;
    }
    let abandoned = ctx.config.max_in_flight - slots.available_permits();
    tracing::warn!(
        job = job.as_str(),
        abandoned,
        "drain timed out; the jobs still in flight are redelivered after the ack wait"
    );
    tasks.abort_all();
    Some(format!(
        "{abandoned} {in_flight_name} still running after the {} ms drain (redelivered after the ack wait)",
        ctx.config.drain_timeout.as_millis()
    ))
}

/// The most send jobs in one group: [`MAX_GROUP`], and a quarter of the jobs in flight, so that
/// several groups are in flight at once and one group's store and NATS round trips overlap
/// another's Twilio requests.
/// With rate limits on, every job takes the one-job path ([`handle_group`]), so there are no
/// groups: each job keeps its own in-flight slot while it waits for its turn.
fn group_max(config: &OutboundConfig) -> usize {
    if config.limits.enabled {
        return 1;
    }
    (config.max_in_flight / 4).clamp(1, MAX_GROUP)
}

/// Completes once shutdown was asked for (at once if it already was).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // Returns a guard that must not live across later awaits: dropped here.
    let _ = stop.wait_for(|s| *s).await;
}

/// Gives back the jobs of a pull that arrive after shutdown began, so another replica (or the
/// next start) takes them at once instead of after the ack wait. Reads until the pull ends (the
/// server's timeout status at its expiry), so no job delivered to it is left behind, but not
/// past `deadline`, nor once NATS is disconnected (nothing more can arrive; what was delivered
/// is redelivered after the ack wait).
async fn nak_rest(
    batch: &mut consumer::pull::Batch,
    deadline: tokio::time::Instant,
    nats: &async_nats::Client,
) {
    const LOOK: Duration = Duration::from_millis(250);
    loop {
        let look = (tokio::time::Instant::now() + LOOK).min(deadline);
        match tokio::time::timeout_at(look, batch.next()).await {
            Ok(Some(Ok(message))) => {
                match tokio::time::timeout_at(deadline, message.ack_with(AckKind::Nak(None))).await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "could not NAK a job at shutdown"),
                    Err(_) => return,
                }
            }
            Ok(Some(Err(_)) | None) => return,
            Err(_) => {
                let connected = matches!(
                    nats.connection_state(),
                    async_nats::connection::State::Connected
                );
                if !connected || tokio::time::Instant::now() >= deadline {
                    return;
                }
            }
        }
    }
}

/// Runs `work` for the deliveries `messages`, sending each a progress ack every third of the
/// ack wait while it runs, so JetStream does not redeliver them meanwhile.
pub(crate) async fn with_progress<T>(
    ctx: &Ctx,
    messages: &[jetstream::Message],
    work: impl Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let mut progress = tokio::time::interval(ctx.config.ack_wait() / 3);
    progress.tick().await;
    loop {
        tokio::select! {
            outcome = &mut work => break outcome,
            _ = progress.tick() => {
                for message in messages {
                    if let Err(e) = message.ack_with(AckKind::Progress).await {
                        tracing::warn!(error = %e, "progress ack failed");
                    }
                }
            }
        }
    }
}

/// Tells JetStream what became of a delivery: an ack, a NAK with the retry's delay, or, when
/// the service could not handle it, a NAK with a jittered delay.
pub(crate) async fn answer(
    ctx: &Ctx,
    message: &jetstream::Message,
    outcome: anyhow::Result<Disposition>,
) {
    let reply = match outcome {
        Ok(Disposition::Ack) => AckKind::Ack,
        Ok(Disposition::Retry(delay)) => {
            tracing::debug!(delay_ms = delay.as_millis() as u64, "job retried later");
            AckKind::Nak(Some(delay))
        }
        Err(e) => {
            let kind = if message.subject.as_str() == ctx.config.subjects.lookup() {
                "lookup"
            } else {
                "send_sms"
            };
            ctx.config.metrics.retry(kind, "service");
            let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
            let delay = jittered(&ctx.config.backoff, u32::try_from(delivered).unwrap_or(1));
            tracing::error!(
                error = format!("{e:#}"),
                retry_ms = delay.as_millis() as u64,
                "job could not be handled; it is retried"
            );
            AckKind::Nak(Some(delay))
        }
    };
    if let Err(e) = message.ack_with(reply).await {
        tracing::warn!(error = %e, "answering JetStream failed; the job is redelivered");
    }
}

/// A full-jitter delay for the `n`th delivery of a job the service itself could not handle
/// (store or NATS trouble); not bounded by the attempts, which count creates.
pub(crate) fn jittered(backoff: &Backoff, n: u32) -> Duration {
    let ceiling = backoff.ceiling(n.saturating_sub(1));
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

/// Whether the job's `Switchboard-Reply-To`, if it has one, is a subject the service publishes
/// to ([`OutboundConfig::reply_to_prefixes`]).
pub(crate) fn reply_to_allowed(ctx: &Ctx, message: &jetstream::Message) -> bool {
    check_reply_to(
        header(message, HEADER_REPLY_TO),
        &ctx.config.reply_to_prefixes,
    )
    .is_ok()
}

pub(crate) fn header<'a>(message: &'a jetstream::Message, name: &str) -> Option<&'a str> {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_under_the_ceiling() {
        let backoff = Backoff {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(80),
            max_attempts: 3,
        };
        for n in 1..20 {
            assert!(jittered(&backoff, n) <= backoff.ceiling(n - 1));
        }
        assert!(OutboundConfig::new("x").ack_wait() > OutboundConfig::new("x").request_timeout);
    }
}
