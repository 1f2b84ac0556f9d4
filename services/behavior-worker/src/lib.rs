//! The behavior worker: a NATS service (queue group `behavior-worker`, so replicas share the load)
//! that answers the webhooks ingress forwards, Twilio's delivery status callbacks and macro runs.
//! This file starts and stops the service; each flow has a module of its own:
//!
//! - `webhook`: a webhook, decoded once (`webhook::Webhook`), resolved to its listener,
//!   verified, run once per `MessageSid` and answered (docs/semantics.md §8, Decisions 6-7).
//!   A behavior without side effects is recorded in the [`runlog`] before the reply; one with
//!   side effects (or a STOP/START keyword) claims its `MessageSid` in PostgreSQL first.
//! - `signature`: `X-Twilio-Signature`, only with the accounts the listener's bot uses
//!   (Decision 13).
//! - `config` and `cache`: listeners, behaviors and account tokens, cached (bounded, dropped
//!   when a change is announced) and served from the cache while PostgreSQL does not answer.
//! - [`runlog`]: the JetStream run log and its writer, which copies it to PostgreSQL behind.
//! - `host`: what a running behavior reaches outside the engine: connected accounts, HTTP
//!   through the outbound service, other behaviors and bot keys ([`keys`]).
//! - `status`: delivery status callbacks; `macros`: macro behaviors run on request
//!   (`{prefix}.behavior.run`); [`retention`]: the message log's retention; `metrics`.

mod cache;
pub mod cli;
mod config;
mod host;
pub mod keys;
mod macros;
mod metrics;
pub mod retention;
pub mod runlog;
mod signature;
mod status;
mod webhook;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::service::ServiceExt as _;
use futures::StreamExt as _;
use switchboard_engine::CompiledBehavior;
use switchboard_store::Store;
use switchboard_store::webhook_log::WebhookLog;
use switchboard_telemetry::lifecycle;
use switchboard_wire::{self as wire, Subjects, WebhookReply, WebhookRequest};
use tokio::sync::Semaphore;
use tracing::Instrument as _;

pub use metrics::{WebhookResult, WorkerMetrics};

use cache::{DbDown, TtlCache};
use config::Target;
use host::WorkerHost;

/// Tuning of one worker process.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Requests handled at once; more wait in NATS (bounded concurrency, never a spawn per message).
    pub max_in_flight: usize,
    /// How long a shutdown waits for the requests in flight (and for the buffered ones it still
    /// answers); `main` gives it the drain budget of `SHUTDOWN_TIMEOUT_SECS`.
    pub drain_timeout: Duration,
    /// Cached listeners and credentials are refreshed at least this often, even if an
    /// invalidation announcement was missed.
    pub cache_ttl: Duration,
    /// How long a repeated `MessageSid` waits for the first delivery's answer.
    pub duplicate_wait: Duration,
    /// A `MessageSid` claim unanswered for this long is taken over by the next delivery (its
    /// worker died between the claim and the answer). Longer than any run may take.
    pub claim_timeout: Duration,
    /// Timeout of an HTTP request a behavior makes through the outbound service.
    pub http_timeout: Duration,
    /// How long a status callback for a MessageSid no job has (yet) waits for the outbound
    /// service to record it: Twilio may call back before the create's answer is stored.
    pub status_wait: Duration,
    /// Most answered webhooks written to the message log in one statement.
    pub log_batch_max: usize,
    /// Message-log statements in flight at once (each a batch).
    pub log_concurrency: usize,
    /// Readiness of the endpoints: set once they are subscribed, cleared when shutdown begins
    /// (`/readyz`; detached by default).
    pub ready: switchboard_telemetry::health::ReadyFlag,
    /// Where webhooks, runs and status callbacks are counted (`/metrics`; detached by default).
    pub metrics: WorkerMetrics,
    /// The bucket of bot keys (`_set_key`, `_get_key`; [`keys`]).
    pub bot_keys: keys::BotKeysOptions,
    /// The JetStream run log ([`runlog`]): answered webhooks of behaviors without side effects
    /// are recorded there before the reply and written to PostgreSQL behind, so they keep being
    /// answered while PostgreSQL is down. `None`: recorded in PostgreSQL before the reply.
    pub run_log: Option<runlog::RunLogOptions>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            max_in_flight: 64,
            drain_timeout: Duration::from_secs(20),
            cache_ttl: Duration::from_secs(30),
            duplicate_wait: Duration::from_secs(5),
            claim_timeout: Duration::from_secs(120),
            http_timeout: Duration::from_secs(35),
            status_wait: Duration::from_secs(3),
            log_batch_max: 128,
            log_concurrency: 2,
            ready: Default::default(),
            metrics: Default::default(),
            bot_keys: Default::default(),
            run_log: None,
        }
    }
}

struct Worker {
    store: Store,
    /// Batched writer of webhooks answered by side-effect-free behaviors.
    log: WebhookLog,
    nats: async_nats::Client,
    subjects: Subjects,
    opts: WorkerOptions,
    /// Every listener guid (lower-case), one entry: an unknown guid is answered 404 from it,
    /// with no query and no entry of its own.
    guids: TtlCache<(), Arc<std::collections::HashSet<String>>>,
    /// What each known guid (lower-case) resolves to.
    targets: TtlCache<String, Arc<Target>>,
    /// Connected accounts (id, auth token) by Account SID, for status callbacks; only SIDs of
    /// connected accounts get an entry.
    tokens: TtlCache<String, Arc<Vec<(i64, secrecy::SecretString)>>>,
    /// Behaviors called with `_run_behavior`, by id.
    behaviors: TtlCache<i64, Arc<CompiledBehavior>>,
    /// Bot keys (`_set_key`, `_get_key`).
    bot_keys: keys::BotKeys,
    /// The JetStream run log, when on.
    runlog: Option<runlog::RunLog>,
    /// Whether the database failed to load configuration lately.
    db_down: DbDown,
}

/// Runs the worker until `shutdown` completes, then stops taking requests and drains. A
/// shutdown while the endpoints are still being registered (NATS not reachable yet) ends it at
/// once: nothing was taken on.
pub async fn run(
    store: Store,
    nats: async_nats::Client,
    subjects: Subjects,
    opts: WorkerOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    let started = tokio::select! {
        started = start(store, nats, subjects, opts) => started?,
        () = &mut shutdown => {
            tracing::info!("stopped before the endpoints were registered with NATS");
            return Ok(());
        }
    };
    started.serve(shutdown).await
}

/// A worker whose subscriptions are registered with the server: requests published from now on
/// reach it (or a sibling replica).
pub struct Started {
    worker: Arc<Worker>,
    service: async_nats::service::Service,
    endpoint: async_nats::service::endpoint::Endpoint,
    /// Macro runs on request.
    runs: async_nats::service::endpoint::Endpoint,
    /// Twilio's delivery status callbacks (`status.rs`).
    statuses: async_nats::service::endpoint::Endpoint,
    changes: async_nats::Subscriber,
}

/// Registers the NATS service endpoint (queue group) and the change subscription.
pub async fn start(
    store: Store,
    nats: async_nats::Client,
    subjects: Subjects,
    opts: WorkerOptions,
) -> anyhow::Result<Started> {
    // Before the endpoints: a behavior may use bot keys as soon as requests arrive.
    let bot_keys = keys::BotKeys::open_retrying(&nats, &opts.bot_keys).await;
    let runlog = match &opts.run_log {
        Some(o) => Some(runlog::RunLog::open_retrying(&nats, subjects.prefix(), o).await),
        None => None,
    };
    let service = nats
        .service_builder()
        .description("Answers Switchboard webhooks by running Cerb behaviors")
        .queue_group(wire::WORKER_QUEUE_GROUP)
        .start(wire::WORKER_SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| anyhow::anyhow!("starting the NATS service: {e}"))?;
    let endpoint = service
        .endpoint(subjects.webhook_request())
        .await
        .map_err(|e| anyhow::anyhow!("adding the webhook endpoint: {e}"))?;
    let runs = service
        .endpoint(subjects.behavior_run())
        .await
        .map_err(|e| anyhow::anyhow!("adding the macro-run endpoint: {e}"))?;
    let statuses = service
        .endpoint(subjects.status_callback())
        .await
        .map_err(|e| anyhow::anyhow!("adding the status callback endpoint: {e}"))?;
    let changes = nats
        .subscribe(subjects.config_changed())
        .await
        .context("subscribing to config changes")?;
    // Make sure the subscriptions are registered before we report ready.
    nats.flush().await.context("flushing NATS subscriptions")?;
    tracing::info!(subject = %subjects.webhook_request(), queue_group = wire::WORKER_QUEUE_GROUP, "behavior-worker ready");
    let worker = Arc::new(Worker {
        log: store.webhook_log(opts.log_batch_max, opts.log_concurrency),
        store,
        nats,
        subjects,
        guids: TtlCache::bounded(opts.cache_ttl, 1),
        targets: TtlCache::new(opts.cache_ttl),
        tokens: TtlCache::new(opts.cache_ttl),
        behaviors: TtlCache::new(opts.cache_ttl),
        bot_keys,
        runlog,
        db_down: DbDown::default(),
        opts,
    });
    Ok(Started {
        worker,
        service,
        endpoint,
        runs,
        statuses,
        changes,
    })
}

impl Started {
    /// Serves until `shutdown` completes, then stops taking requests and drains in-flight ones,
    /// each step bounded by the drain timeout (and the last flush by
    /// [`lifecycle::FLUSH_BOUND`]), whether NATS is reachable or not. An error names what was
    /// abandoned: requests still running, or replies NATS did not confirm.
    ///
    /// [`lifecycle::FLUSH_BOUND`]: switchboard_telemetry::lifecycle::FLUSH_BOUND
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Started {
            worker,
            service,
            mut endpoint,
            mut runs,
            mut statuses,
            mut changes,
        } = self;
        let opts = worker.opts.clone();
        let permits = Arc::new(Semaphore::new(opts.max_in_flight));
        let (stop_writer, writer_stop) = tokio::sync::watch::channel(false);
        let writer = match (&worker.runlog, &opts.run_log) {
            (Some(log), Some(o)) => Some(tokio::spawn(runlog::write_behind(
                log.clone(),
                worker.store.pool().clone(),
                o.clone(),
                opts.metrics.clone(),
                writer_stop,
            ))),
            _ => None,
        };
        opts.ready.set(true);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                change = changes.next() => {
                    if change.is_some() {
                        worker.invalidate();
                    }
                }
                request = endpoint.next() => {
                    let Some(request) = request else { break };
                    apply_changes(&mut changes, &worker);
                    spawn_request(&worker, &permits, Endpoint::Webhook, request).await;
                }
                request = runs.next() => {
                    let Some(request) = request else { break };
                    apply_changes(&mut changes, &worker);
                    spawn_request(&worker, &permits, Endpoint::Run, request).await;
                }
                request = statuses.next() => {
                    let Some(request) = request else { break };
                    apply_changes(&mut changes, &worker);
                    spawn_request(&worker, &permits, Endpoint::Status, request).await;
                }
            }
        }
        opts.ready.set(false);
        tracing::info!("behavior-worker stopping: no new requests; draining in-flight ones");
        let deadline = tokio::time::Instant::now() + opts.drain_timeout;
        // Stop receiving first, so NATS routes new requests to the other replicas; then answer
        // what was already delivered to this replica (buffered in the client), instead of
        // leaving those callers to time out. Every step is bounded: with NATS unreachable the
        // client's commands may wait for a connection that never comes back.
        lifecycle::set_stage("unsubscribing from NATS");
        for endpoint in [&mut endpoint, &mut runs, &mut statuses] {
            let _ = tokio::time::timeout_at(deadline, endpoint.stop()).await;
        }
        lifecycle::set_stage("answering requests already delivered");
        let buffered = |wait: Duration| (tokio::time::Instant::now() + wait).min(deadline);
        while let Ok(Some(request)) =
            tokio::time::timeout_at(buffered(Duration::from_millis(100)), statuses.next()).await
        {
            spawn_request(&worker, &permits, Endpoint::Status, request).await;
        }
        while let Ok(Some(request)) =
            tokio::time::timeout_at(buffered(Duration::from_millis(500)), endpoint.next()).await
        {
            spawn_request(&worker, &permits, Endpoint::Webhook, request).await;
        }
        lifecycle::set_stage("draining requests in flight");
        let mut abandoned = Vec::new();
        let all = u32::try_from(opts.max_in_flight).unwrap_or(u32::MAX);
        if tokio::time::timeout_at(deadline, permits.acquire_many(all))
            .await
            .is_err()
        {
            let running = opts.max_in_flight - permits.available_permits();
            tracing::warn!(
                running,
                "drain timeout: requests still running are abandoned (their callers time out)"
            );
            abandoned.push(format!(
                "{running} requests still running after the {} ms drain",
                opts.drain_timeout.as_millis()
            ));
        }
        // Replies are buffered publishes: they reach NATS only with the flush.
        lifecycle::set_stage("flushing replies to NATS");
        if let Err(why) = lifecycle::flush_within(&worker.nats, lifecycle::FLUSH_BOUND).await {
            abandoned.push(format!("replies not confirmed by NATS: {why}"));
        }
        let _ = tokio::time::timeout(lifecycle::FLUSH_BOUND, service.stop()).await;
        // The run log's writers stop: this worker's own writes what it still holds (the
        // records of the requests drained above); what is not written stays in the stream, for
        // the sweeper (this worker's, or another's once this one's lock is gone).
        let _ = stop_writer.send(true);
        if let Some(writer) = writer {
            let _ = tokio::time::timeout(lifecycle::FLUSH_BOUND, writer).await;
        }
        lifecycle::set_stage("");
        if abandoned.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("behavior-worker abandoned {}", abandoned.join("; "))
        }
    }
}

/// Applies the configuration changes already received before a request is served: `select!`
/// picks among ready branches at random, so a request that arrived after a change (a bot
/// enabled again) could otherwise be served from the cache the change clears.
fn apply_changes(changes: &mut async_nats::Subscriber, worker: &Worker) {
    use futures::FutureExt as _;
    while let Some(Some(_)) = changes.next().now_or_never() {
        worker.invalidate();
    }
}

/// The endpoint a request came in on.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Webhook,
    Run,
    Status,
}

impl Endpoint {
    /// What its requests are called in the shutdown's log line.
    fn in_flight_name(self) -> &'static str {
        match self {
            Endpoint::Webhook => "webhook requests",
            Endpoint::Run => "macro runs",
            Endpoint::Status => "status callbacks",
        }
    }
}

/// Handles one request in its own task once one of `permits` is free (they bound the requests
/// in flight; the drain at shutdown waits for all of them).
async fn spawn_request(
    worker: &Arc<Worker>,
    permits: &Arc<Semaphore>,
    endpoint: Endpoint,
    request: async_nats::service::Request,
) {
    let permit = permits
        .clone()
        .acquire_owned()
        .await
        .expect("semaphore never closed");
    let worker = worker.clone();
    let tracked = lifecycle::track(endpoint.in_flight_name());
    tokio::spawn(async move {
        let _tracked = tracked;
        match endpoint {
            Endpoint::Webhook => worker.handle(request).await,
            Endpoint::Run => worker.handle_run(request).await,
            Endpoint::Status => worker.handle_status(request).await,
        }
        drop(permit);
    });
}

/// Decodes a request ingress forwarded (a webhook or a status callback), answers it with
/// `answer` inside `span` (whose parent is the trace context of the message's headers), and
/// sends the reply.
async fn serve_request<Fut>(
    request: async_nats::service::Request,
    span: tracing::Span,
    what: &'static str,
    answer: impl FnOnce(WebhookRequest) -> Fut,
) where
    Fut: Future<Output = WebhookReply>,
{
    switchboard_telemetry::set_parent_from_nats(&span, request.message.headers.as_ref());
    let reply = async {
        match wire::decode::<WebhookRequest>(&request.message.payload) {
            Ok(req) => {
                tracing::Span::current().record("request_id", req.request_id.as_str());
                answer(req).await
            }
            Err(e) => {
                tracing::warn!(error = %e, "rejected a malformed {what} message");
                WebhookReply::status(400)
            }
        }
    }
    .instrument(span.clone())
    .await;
    span.record("status", reply.status);
    if let Err(e) = request.respond(Ok(wire::encode(&reply).into())).await {
        tracing::warn!(parent: &span, error = %e, "could not send the reply (ingress may have timed out)");
    }
}

/// Publishes a configuration change so every worker drops its caches.
pub async fn announce_change(
    nats: &async_nats::Client,
    subjects: &Subjects,
    kind: &str,
    ids: Vec<i64>,
) -> anyhow::Result<()> {
    let msg = wire::ConfigChanged {
        kind: kind.into(),
        ids,
    };
    nats.publish(subjects.config_changed(), wire::encode(&msg).into())
        .await?;
    nats.flush().await?;
    Ok(())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}
