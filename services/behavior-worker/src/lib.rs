//! The behavior worker: a NATS service (queue group `behavior-worker`, so replicas share the load)
//! that answers each webhook request from ingress. For a request it finds the listener by guid,
//! verifies `X-Twilio-Signature` (docs/semantics.md, Decision 13), answers a repeated `MessageSid`
//! from the message log, runs the behavior with the engine, records the run and replies with the
//! HTTP status, headers and body (docs/semantics.md §8, Decisions 6-7). It also runs macro
//! behaviors on request (`{prefix}.behavior.run`, see [`macros`]).

pub mod cli;
pub mod keys;
mod macros;
mod metrics;
pub mod retention;
pub mod runlog;
mod status;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::service::ServiceExt as _;
use futures::StreamExt as _;
use secrecy::ExposeSecret as _;
use switchboard_engine::{
    BotInfo, CompiledBehavior, ConnectedAccount, Host, HttpOutcome, HttpRequest, HttpResponse,
    RunOptions, RunOutput,
};
use switchboard_package::{EVENT_WEBHOOK, WebhookListenerDef};
use switchboard_store::webhook_log::{AnsweredWebhook, Recorded, WebhookLog};
use switchboard_store::{Claim, RunRecord, Store};
use switchboard_telemetry::lifecycle;
use switchboard_wire::{self as wire, Subjects, WebhookReply, WebhookRequest};
use tokio::sync::Semaphore;
use tracing::{Instrument as _, field};

pub use metrics::{WebhookResult, WorkerMetrics};

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

/// What a guid resolves to, cached.
enum Target {
    /// No listener with this guid (404).
    Unknown,
    /// A listener whose behavior is missing or not a webhook behavior (404).
    NoBehavior,
    Ready {
        listener: Box<WebhookListenerDef>,
        behavior: Arc<CompiledBehavior>,
        disabled: bool,
        /// The Twilio accounts that may sign for this listener: those its bot's behaviors use.
        signers: Arc<[Signer]>,
    },
}

/// A connected Twilio account whose token may sign a listener's webhooks.
struct Signer {
    id: i64,
    account_sid: String,
    token: secrecy::SecretString,
}

/// Most entries a cache holds: a safety net, since only configuration the operator created
/// (listeners, accounts, behaviors) ever becomes an entry.
const CACHE_MAX_ENTRIES: usize = 10_000;

/// Values cached for at most `ttl` (a safety net behind the change announcements), at most
/// `max` of them: when full, expired entries go first, and if none has expired the new value
/// is not kept (it is served, just not cached).
struct TtlCache<K, V> {
    ttl: Duration,
    max: usize,
    map: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: std::hash::Hash + Eq, V: Clone> TtlCache<K, V> {
    fn new(ttl: Duration) -> Self {
        Self::bounded(ttl, CACHE_MAX_ENTRIES)
    }
    fn bounded(ttl: Duration, max: usize) -> Self {
        TtlCache {
            ttl,
            max,
            map: Mutex::default(),
        }
    }
    fn get(&self, key: &K) -> Option<V> {
        let map = self.map.lock().unwrap();
        map.get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }
    /// The value whatever its age: configuration served while the database cannot refresh it.
    fn get_stale(&self, key: &K) -> Option<V> {
        self.map.lock().unwrap().get(key).map(|(_, v)| v.clone())
    }
    fn insert(&self, key: K, value: V) {
        let mut map = self.map.lock().unwrap();
        if map.len() >= self.max && !map.contains_key(&key) {
            map.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if map.len() >= self.max {
                return;
            }
        }
        map.insert(key, (Instant::now(), value));
    }
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }
    fn clear(&self) {
        self.map.lock().unwrap().clear();
    }
}

/// How long after a failed configuration load the database is left alone (cached configuration
/// is served meanwhile).
const DB_RETRY: Duration = Duration::from_secs(2);

/// The database's recent failures to load configuration, and when the use of stale cache
/// entries was last logged.
#[derive(Default)]
struct DbDown {
    until: Mutex<Option<Instant>>,
    logged: Mutex<Option<Instant>>,
}

impl DbDown {
    fn is_down(&self) -> bool {
        self.until
            .lock()
            .unwrap()
            .is_some_and(|until| Instant::now() < until)
    }
    fn down(&self) {
        *self.until.lock().unwrap() = Some(Instant::now() + DB_RETRY);
    }
    fn up(&self) {
        *self.until.lock().unwrap() = None;
    }
    fn note_stale(&self) {
        let mut logged = self.logged.lock().unwrap();
        if logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
            *logged = Some(Instant::now());
            tracing::warn!(
                "the database does not answer: serving listeners, behaviors and account tokens this worker loaded before"
            );
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
                worker.log.clone(),
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
                    spawn_request(&worker, &permits, Endpoint::Webhook, request).await;
                }
                request = runs.next() => {
                    let Some(request) = request else { break };
                    spawn_request(&worker, &permits, Endpoint::Run, request).await;
                }
                request = statuses.next() => {
                    let Some(request) = request else { break };
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
        // The run log writer stops between batches; what it has not written stays in the
        // stream for the next writer.
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

/// The first value of a form field.
fn form_param<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Whether the request is a POST of a URL-encoded form (what Twilio posts). Only then are the
/// body's fields params, for the signature as for the behavior: PHP fills `$_POST` for POST
/// requests only (the engine's request normalisation does the same).
fn is_form_post(req: &WebhookRequest) -> bool {
    req.method.eq_ignore_ascii_case("POST")
        && header(&req.headers, "content-type").is_some_and(|ct| {
            ct.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

/// The host of a URL, for a span (empty when there is none).
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    }
}

/// The `X-Twilio-Signature` and the posted `AccountSid` (form, else query), which must be a
/// well-formed Account SID (`AC` and 32 hex digits).
fn signature_and_account<'a>(
    req: &'a WebhookRequest,
    form: &[(String, String)],
) -> Result<(&'a str, String), &'static str> {
    let signature =
        header(&req.headers, "x-twilio-signature").ok_or("missing X-Twilio-Signature")?;
    let account_sid = form
        .iter()
        .chain(switchboard_twilio::signature::parse_form(req.query.as_bytes()).iter())
        .find(|(k, _)| k == "AccountSid")
        .map(|(_, v)| v.clone())
        .ok_or("no AccountSid in the request")?;
    switchboard_twilio::AccountSid::parse(&account_sid)
        .map_err(|_| "AccountSid is not an Account SID (AC and 32 hex digits)")?;
    Ok((signature, account_sid))
}

fn signature_matches(req: &WebhookRequest, signature: &str, token: &str) -> bool {
    switchboard_twilio::signature::validate(
        token,
        &req.public_url,
        header(&req.headers, "content-type"),
        &req.body,
        signature,
    )
}

fn valid_guid(guid: &str) -> bool {
    !guid.is_empty()
        && guid.len() <= 40
        && guid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Worker {
    fn invalidate(&self) {
        self.guids.clear();
        self.targets.clear();
        self.tokens.clear();
        self.behaviors.clear();
        tracing::debug!("configuration changed: caches cleared");
    }

    async fn handle(self: Arc<Self>, request: async_nats::service::Request) {
        let span = tracing::info_span!(
            "webhook",
            request_id = field::Empty,
            guid = field::Empty,
            status = field::Empty,
            otel.kind = "consumer",
        );
        serve_request(request, span, "webhook request", |req| async move {
            self.answer(req).await
        })
        .await;
    }

    /// Every listener guid, lower-case (one query per cache period, whatever guids are asked).
    async fn guids(&self) -> anyhow::Result<Arc<std::collections::HashSet<String>>> {
        if let Some(g) = self.guids.get(&()) {
            return Ok(g);
        }
        let guids = Arc::new(self.store.listener_guids().await?);
        self.guids.insert((), guids.clone());
        Ok(guids)
    }

    /// What `guid` resolves to: cached, else loaded. While the database does not answer, what
    /// this worker loaded before is served whatever its age (with a log line every 10 s at
    /// most), and the database is tried again only every [`DB_RETRY`]: the webhook path of a
    /// behavior without side effects needs NATS only ([`runlog`]). A listener this worker never
    /// loaded cannot be served then: 503, and the log says why.
    async fn target(&self, guid: &str) -> anyhow::Result<Arc<Target>> {
        let key = guid.to_ascii_lowercase();
        if let Some(t) = self.targets.get(&key) {
            return Ok(t);
        }
        if self.db_down.is_down()
            && let Some(guids) = self.guids.get_stale(&())
        {
            if !guids.contains(&key) {
                return Ok(Arc::new(Target::Unknown));
            }
            if let Some(t) = self.targets.get_stale(&key) {
                self.db_down.note_stale();
                return Ok(t);
            }
        }
        match self.load_target(guid, key.clone()).await {
            Ok(t) => {
                self.db_down.up();
                Ok(t)
            }
            Err(e) => {
                self.db_down.down();
                match (self.guids.get_stale(&()), self.targets.get_stale(&key)) {
                    (Some(guids), _) if !guids.contains(&key) => Ok(Arc::new(Target::Unknown)),
                    (_, Some(t)) => {
                        self.db_down.note_stale();
                        Ok(t)
                    }
                    _ => Err(e.context(
                        "loading the listener (this worker has not loaded it before, so it cannot be served from its cache)",
                    )),
                }
            }
        }
    }

    async fn load_target(&self, guid: &str, key: String) -> anyhow::Result<Arc<Target>> {
        if !self.guids().await?.contains(&key) {
            return Ok(Arc::new(Target::Unknown));
        }
        let target = match self.store.listener_target(guid).await? {
            None => Target::Unknown,
            Some(t) => match t.behavior {
                Some((def, bot)) if def.event == EVENT_WEBHOOK => {
                    let disabled = def.is_disabled || bot.is_disabled;
                    let compiled =
                        CompiledBehavior::compile(&def, Arc::new(BotInfo::from_def(&bot)))
                            .map_err(|issues| {
                                anyhow::anyhow!(
                                    "stored behavior {} does not compile: {issues:?}",
                                    def.id
                                )
                            })?;
                    Target::Ready {
                        signers: self.signers(bot.id).await?,
                        listener: Box::new(t.listener),
                        behavior: Arc::new(compiled),
                        disabled,
                    }
                }
                _ => Target::NoBehavior,
            },
        };
        let target = Arc::new(target);
        self.targets.insert(key, target.clone());
        Ok(target)
    }

    async fn tokens(
        &self,
        account_sid: &str,
    ) -> anyhow::Result<Arc<Vec<(i64, secrecy::SecretString)>>> {
        if let Some(t) = self.tokens.get(&account_sid.to_string()) {
            return Ok(t);
        }
        let creds = self.store.credentials_by_sid(account_sid).await?;
        let tokens = Arc::new(
            creds
                .into_iter()
                .map(|c| (c.account.id, c.auth_token))
                .collect::<Vec<_>>(),
        );
        // Only the SIDs of connected accounts are kept: any other costs a query, no entry.
        if !tokens.is_empty() {
            self.tokens.insert(account_sid.to_string(), tokens.clone());
        }
        Ok(tokens)
    }

    /// The Twilio accounts a bot's behaviors use, with their tokens: the only ones that may
    /// sign for its listeners. Accounts of another kind, or gone, are left out.
    async fn signers(&self, bot_id: i64) -> anyhow::Result<Arc<[Signer]>> {
        let mut signers = Vec::new();
        for id in self.store.bot_account_ids(bot_id).await? {
            let Some(c) = self.store.credentials(id).await? else {
                continue;
            };
            // Twilio accounts only: another kind has no Account SID.
            if let Some(account_sid) = c.account.account_sid
                && switchboard_twilio::AccountSid::parse(&account_sid).is_ok()
            {
                signers.push(Signer {
                    id,
                    account_sid,
                    token: c.auth_token,
                });
            }
        }
        if signers.is_empty() {
            tracing::warn!(
                bot_id,
                "the bot uses no connected Twilio account: its listeners' signatures cannot be verified (answered 403)"
            );
        }
        Ok(signers.into())
    }

    /// docs/semantics.md, Decision 13: the signature of a listener's webhook must validate with
    /// the auth token of an account its bot uses whose SID is the posted `AccountSid`. Answers
    /// that account's id. Nothing is queried: the signers came with the listener.
    fn webhook_signature_ok(
        req: &WebhookRequest,
        form: &[(String, String)],
        signers: &[Signer],
    ) -> Result<i64, &'static str> {
        let (signature, account_sid) = signature_and_account(req, form)?;
        let mut of_account = signers
            .iter()
            .filter(|s| s.account_sid == account_sid)
            .peekable();
        if of_account.peek().is_none() {
            return Err(if signers.is_empty() {
                "the listener's bot uses no connected Twilio account"
            } else {
                "AccountSid is not an account the listener's bot uses"
            });
        }
        of_account
            .find(|s| signature_matches(req, signature, s.token.expose_secret()))
            .map(|s| s.id)
            .ok_or("signature does not match")
    }

    /// The signature of a status callback (not tied to a listener) must validate with the
    /// token of a connected account whose SID is the posted `AccountSid`; only that account's
    /// messages are then updated. A malformed SID costs no query and no cache entry.
    async fn callback_signature_ok(
        &self,
        req: &WebhookRequest,
        form: &[(String, String)],
    ) -> anyhow::Result<Result<i64, &'static str>> {
        let (signature, account_sid) = match signature_and_account(req, form) {
            Ok(found) => found,
            Err(reason) => return Ok(Err(reason)),
        };
        let tokens = self.tokens(&account_sid).await?;
        if tokens.is_empty() {
            return Ok(Err("no connected account has this AccountSid"));
        }
        Ok(tokens
            .iter()
            .find(|(_, t)| signature_matches(req, signature, t.expose_secret()))
            .map(|(id, _)| *id)
            .ok_or("signature does not match"))
    }

    async fn answer(self: &Arc<Self>, req: WebhookRequest) -> WebhookReply {
        let mut seen = Seen {
            listener: None,
            result: WebhookResult::Answered,
        };
        let reply = match self.try_answer(req, &mut seen).await {
            Ok(reply) => reply,
            Err(e) => {
                // 5xx are opaque to the caller; the cause chain goes to the log once, here.
                tracing::error!(error = format!("{e:#}"), "webhook failed");
                seen.result = WebhookResult::Error;
                WebhookReply::status(503)
            }
        };
        self.opts.metrics.webhook(seen.listener, seen.result);
        reply
    }

    async fn try_answer(
        self: &Arc<Self>,
        req: WebhookRequest,
        seen: &mut Seen,
    ) -> anyhow::Result<WebhookReply> {
        tracing::Span::current().record("guid", &req.guid[..req.guid.len().min(6)]);
        if !valid_guid(&req.guid) {
            seen.result = WebhookResult::NotFound;
            return Ok(WebhookReply::status(404));
        }
        let target = self.target(&req.guid).await?;
        let (listener, behavior, disabled, signers) = match &*target {
            Target::Unknown | Target::NoBehavior => {
                seen.result = WebhookResult::NotFound;
                return Ok(WebhookReply::status(404));
            }
            Target::Ready {
                listener,
                behavior,
                disabled,
                signers,
            } => (listener, behavior, *disabled, signers),
        };
        seen.listener = Some(listener.id);
        if disabled {
            seen.result = WebhookResult::Unavailable;
            return Ok(WebhookReply {
                status: 503,
                headers: vec![("content-type".into(), "text/html; charset=utf-8".into())],
                body: "<h1>503: Temporarily unavailable</h1>".into(),
            });
        }
        let form = if is_form_post(&req) {
            switchboard_twilio::signature::parse_form(&req.body)
        } else {
            Vec::new()
        };
        let mut verified_account = None;
        if listener.verify_signature {
            match Self::webhook_signature_ok(&req, &form, signers) {
                Ok(account_id) => verified_account = Some(account_id),
                Err(reason) => {
                    tracing::warn!(reason, "rejected a webhook: signature verification failed");
                    seen.result = WebhookResult::Forbidden;
                    return Ok(WebhookReply::status(403));
                }
            }
        }
        let param = |name: &str| form_param(&form, name).map(str::to_owned);
        let message_sid = param("MessageSid");
        if let Some(sid) = &message_sid
            && !behavior.uses_host()
            && opt_keyword(&form).is_none()
        {
            return self
                .answer_without_effects(&req, listener, behavior, sid, &form, seen)
                .await;
        }
        if let Some(sid) = &message_sid {
            let logged = serde_json::json!({
                "method": req.method, "query": req.query, "params": form, "client_ip": req.client_ip,
            });
            let mut claim = self
                .store
                .claim_message(
                    sid,
                    listener.id,
                    param("AccountSid").as_deref(),
                    &req.request_id,
                    &logged,
                    self.opts.claim_timeout,
                )
                .await?;
            let waited = Instant::now();
            while claim == Claim::InProgress && waited.elapsed() < self.opts.duplicate_wait {
                tokio::time::sleep(Duration::from_millis(50)).await;
                claim = self
                    .store
                    .claim_message(
                        sid,
                        listener.id,
                        None,
                        &req.request_id,
                        &logged,
                        self.opts.claim_timeout,
                    )
                    .await?;
            }
            match claim {
                Claim::New => {}
                Claim::Answered(stored) => {
                    tracing::info!("repeated MessageSid: answering with the stored response");
                    seen.result = WebhookResult::Duplicate;
                    return serde_json::from_value(stored).context("stored response");
                }
                Claim::InProgress => {
                    tracing::warn!("repeated MessageSid still being answered by another delivery");
                    seen.result = WebhookResult::Unavailable;
                    return Ok(WebhookReply::status(503));
                }
            }
        }
        // A message seen for the first time: an opt-out / opt-in keyword updates the account's
        // suppression list (a repeated delivery of an old STOP must not undo a later START).
        let recorded = match &message_sid {
            Some(_) => self.record_opt_keyword(verified_account, &form).await,
            None => Ok(()),
        };
        let result = match recorded {
            Ok(()) => {
                self.run_and_record(&req, listener, behavior.clone(), message_sid.clone())
                    .await
            }
            Err(e) => Err(e),
        };
        if result.is_err()
            && let Some(sid) = &message_sid
            && let Err(e) = self.store.release_message(sid).await
        {
            tracing::error!(error = %e, "could not release the MessageSid claim");
        }
        result
    }

    /// The fast path for a message whose behavior has no side effects (no HTTP requests, no
    /// behaviors called through the host): run it, then claim the `MessageSid` and record the
    /// answer and the run in one statement, batched with concurrent webhooks. If the
    /// `MessageSid` turns out to be logged already, this run's result is discarded (it changed
    /// nothing) and the stored answer is given, as on the claim-first path: one recorded run
    /// and the same response for every delivery.
    async fn answer_without_effects(
        &self,
        req: &WebhookRequest,
        listener: &WebhookListenerDef,
        behavior: &CompiledBehavior,
        message_sid: &str,
        form: &[(String, String)],
        seen: &mut Seen,
    ) -> anyhow::Result<WebhookReply> {
        let started = Instant::now();
        let output = switchboard_engine::run_webhook(
            behavior,
            &engine_request(req),
            &NoHost,
            &RunOptions::real(),
        );
        let took = started.elapsed();
        self.opts.metrics.run("webhook", &output, took);
        let duration_us = took.as_micros() as i64;
        log_run_errors(&output);
        let reply = reply_of(&output);
        let record = AnsweredWebhook {
            message_sid: message_sid.to_string(),
            listener_id: listener.id,
            account_sid: form_param(form, "AccountSid").map(str::to_owned),
            request_id: req.request_id.clone(),
            request: serde_json::to_string(&LoggedRequest::of(req, form))?,
            response: serde_json::to_string(&reply)?,
            behavior_id: behavior.def.id,
            trace_id: switchboard_telemetry::trace_id(&tracing::Span::current()),
            mode: "real".into(),
            exit_state: exit_state(&output)?,
            status: Some(i32::from(output.status)),
            trace: serde_json::to_string(&output.trace)?,
            errors: serde_json::to_string(&output.errors)?,
            duration_us,
        };
        if let Some(runlog) = &self.runlog
            && runlog::RunLog::accepts(message_sid)
        {
            match runlog.log(&record).await? {
                runlog::Logged::New => return Ok(reply),
                runlog::Logged::Duplicate(first) => {
                    tracing::info!("repeated MessageSid: answering with the logged response");
                    seen.result = WebhookResult::Duplicate;
                    if let Some(first) = first {
                        return serde_json::from_str(&first).context("logged response");
                    }
                    // Already copied to PostgreSQL: the message log has it.
                    if let Some(Some(stored)) = self.store.stored_response(message_sid).await? {
                        return serde_json::from_value(stored).context("stored response");
                    }
                    anyhow::bail!(
                        "repeated MessageSid: the first answer is in neither the run log nor the message log"
                    );
                }
            }
        }
        let waited = Instant::now();
        loop {
            let writing = Instant::now();
            let recorded = self.log.record(record.clone()).await?;
            self.opts.metrics.log_write(writing.elapsed());
            if recorded != Recorded::Duplicate {
                return Ok(reply);
            }
            match self.store.stored_response(message_sid).await? {
                Some(Some(stored)) => {
                    tracing::info!("repeated MessageSid: answering with the stored response");
                    seen.result = WebhookResult::Duplicate;
                    return serde_json::from_value(stored).context("stored response");
                }
                // Its first delivery is still running (on the claim-first path); or it failed
                // and released its claim, and this delivery records its own answer.
                Some(None) | None if waited.elapsed() < self.opts.duplicate_wait => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Some(None) | None => {
                    tracing::warn!("repeated MessageSid still being answered by another delivery");
                    seen.result = WebhookResult::Unavailable;
                    return Ok(WebhookReply::status(503));
                }
            }
        }
    }

    /// Records an inbound STOP-like keyword (or `OptOutType`) as a suppression of its `From`
    /// for the verified account, and a START-like one as its end; the behavior's reply is not
    /// affected. Only a keyword touches the database. Without a verified signature the account
    /// is not proven, so nothing is recorded (logged).
    async fn record_opt_keyword(
        &self,
        account: Option<i64>,
        form: &[(String, String)],
    ) -> anyhow::Result<()> {
        use switchboard_twilio::opt_out::OptKeyword;
        let param = |name: &str| form_param(form, name);
        let Some(keyword) = opt_keyword(form) else {
            return Ok(());
        };
        let Some(account_id) = account else {
            tracing::warn!(
                ?keyword,
                "opt keyword on a listener without signature verification: not recorded (its account is not proven)"
            );
            return Ok(());
        };
        let from = param("From").unwrap_or_default();
        if switchboard_twilio::E164::parse(from).is_err() {
            tracing::warn!(
                ?keyword,
                "opt keyword from a sender that is not an E.164 number: not recorded"
            );
            return Ok(());
        }
        let detail: String = param("Body")
            .unwrap_or_default()
            .trim()
            .chars()
            .take(64)
            .collect();
        match keyword {
            OptKeyword::OptOut => {
                let newly = self
                    .store
                    .suppress(
                        account_id,
                        from,
                        switchboard_store::limits::SuppressionReason::Keyword,
                        &detail,
                    )
                    .await?;
                tracing::info!(
                    account_id,
                    newly,
                    "opt-out keyword: the sender is suppressed"
                );
            }
            OptKeyword::OptIn => {
                let lifted = self.store.unsuppress(account_id, from).await?;
                tracing::info!(
                    account_id,
                    lifted,
                    "opt-in keyword: the sender's suppression lifted"
                );
            }
        }
        Ok(())
    }

    async fn run_and_record(
        self: &Arc<Self>,
        req: &WebhookRequest,
        listener: &WebhookListenerDef,
        behavior: Arc<CompiledBehavior>,
        message_sid: Option<String>,
    ) -> anyhow::Result<WebhookReply> {
        let engine_req = engine_request(req);
        let started = Instant::now();
        let output: RunOutput = if behavior.uses_host() {
            // The host blocks on NATS and the database: keep it off the async workers. The run
            // stays in the request's span (its log lines, the trace of its HTTP requests).
            let host = WorkerHost::new(self.clone());
            let b = behavior.clone();
            tokio::task::spawn_blocking(move || {
                let _in = host.span.clone().entered();
                switchboard_engine::run_webhook(&b, &engine_req, &host, &RunOptions::real())
            })
            .await
            .context("behavior run panicked")?
        } else {
            switchboard_engine::run_webhook(&behavior, &engine_req, &NoHost, &RunOptions::real())
        };
        let took = started.elapsed();
        self.opts.metrics.run("webhook", &output, took);
        let duration_us = took.as_micros() as i64;
        log_run_errors(&output);
        let reply = reply_of(&output);
        let run = RunRecord {
            behavior_id: behavior.def.id,
            listener_id: Some(listener.id),
            message_sid: message_sid.clone(),
            request_id: Some(req.request_id.clone()),
            trace_id: switchboard_telemetry::trace_id(&tracing::Span::current()),
            mode: "real".into(),
            exit_state: exit_state(&output)?,
            status: Some(i32::from(output.status)),
            trace: serde_json::to_value(&output.trace)?,
            errors: serde_json::to_value(&output.errors)?,
            duration_us,
        };
        let response = serde_json::to_value(&reply)?;
        self.store
            .complete_run(&run, message_sid.as_ref().map(|_| &response))
            .await?;
        Ok(reply)
    }

    async fn compiled_behavior(&self, id: i64) -> anyhow::Result<Option<Arc<CompiledBehavior>>> {
        if let Some(b) = self.behaviors.get(&id) {
            return Ok(Some(b));
        }
        let Some((def, bot)) = self.store.behavior_with_bot(id).await? else {
            return Ok(None);
        };
        let compiled = CompiledBehavior::compile(&def, Arc::new(BotInfo::from_def(&bot))).map_err(
            |issues| anyhow::anyhow!("stored behavior {id} does not compile: {issues:?}"),
        )?;
        let compiled = Arc::new(compiled);
        self.behaviors.insert(id, compiled.clone());
        Ok(Some(compiled))
    }
}

/// What a webhook's handling found, for its metrics.
struct Seen {
    /// The listener its guid named, if any.
    listener: Option<i64>,
    result: WebhookResult,
}

/// The request as the message log keeps it.
#[derive(serde::Serialize)]
struct LoggedRequest<'a> {
    method: &'a str,
    query: &'a str,
    params: &'a [(String, String)],
    client_ip: &'a str,
}

impl<'a> LoggedRequest<'a> {
    fn of(req: &'a WebhookRequest, form: &'a [(String, String)]) -> Self {
        LoggedRequest {
            method: &req.method,
            query: &req.query,
            params: form,
            client_ip: &req.client_ip,
        }
    }
}

fn engine_request(req: &WebhookRequest) -> switchboard_engine::WebhookRequest {
    switchboard_engine::WebhookRequest {
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.query.clone(),
        headers: req.headers.clone(),
        body: req.body.clone(),
        client_ip: req.client_ip.clone(),
    }
}

fn reply_of(output: &RunOutput) -> WebhookReply {
    WebhookReply {
        status: output.status,
        headers: output
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        body: output.body.clone(),
    }
}

fn exit_state(output: &RunOutput) -> anyhow::Result<String> {
    Ok(serde_json::to_value(output.exit)?
        .as_str()
        .unwrap_or_default()
        .to_string())
}

fn log_run_errors(output: &RunOutput) {
    for e in &output.errors {
        tracing::warn!(node_id = e.node_id, error = %e.message, "behavior run error");
    }
}

/// The opt-out or opt-in keyword an inbound message is, if any: Twilio's `OptOutType`, else
/// its `Body`. Such messages take the claim-first path, which records the keyword before the
/// behavior runs.
fn opt_keyword(form: &[(String, String)]) -> Option<switchboard_twilio::opt_out::OptKeyword> {
    use switchboard_twilio::opt_out;
    form_param(form, "OptOutType")
        .and_then(opt_out::from_opt_out_type)
        .or_else(|| opt_out::keyword(form_param(form, "Body").unwrap_or_default()))
}

/// The host for behaviors that never call it.
struct NoHost;

impl Host for NoHost {
    fn connected_account(&self, _: i64) -> Option<ConnectedAccount> {
        None
    }
    fn http_request(&self, _: &HttpRequest) -> HttpOutcome {
        HttpOutcome::Error("unavailable".into())
    }
    fn behavior(&self, _: i64) -> Option<Arc<CompiledBehavior>> {
        None
    }
}

/// The host of a real run on a blocking thread: accounts and behaviors from the store, HTTP
/// requests through the outbound service (the only part that talks to the outside world).
struct WorkerHost {
    worker: Arc<Worker>,
    handle: tokio::runtime::Handle,
    /// The span of the request the run answers (a blocking thread has no current span of its
    /// own): the parent of its HTTP requests' spans.
    span: tracing::Span,
}

impl WorkerHost {
    /// The host of a run answering the request of the current span, on the current runtime.
    fn new(worker: Arc<Worker>) -> WorkerHost {
        WorkerHost {
            worker,
            handle: tokio::runtime::Handle::current(),
            span: tracing::Span::current(),
        }
    }
}

impl Host for WorkerHost {
    fn connected_account(&self, id: i64) -> Option<ConnectedAccount> {
        match self.handle.block_on(self.worker.store.account(id)) {
            Ok(a) => a.map(|a| ConnectedAccount {
                id: a.id,
                name: a.name,
                kind: a.kind.as_str().into(),
                allowed_hosts: a.allowed_hosts,
            }),
            Err(e) => {
                tracing::error!(error = %e, account_id = id, "loading a connected account failed");
                None
            }
        }
    }

    fn http_request(&self, request: &HttpRequest) -> HttpOutcome {
        let job = wire::HttpJob {
            version: wire::HTTP_JOB_VERSION,
            method: request.method.clone(),
            url: request.url.clone(),
            headers: request.headers.clone(),
            body: request.body.clone(),
            account_id: request.account,
            ignore_ssl_validation: request.ignore_ssl_validation,
        };
        // The request as a client span of the run's trace; outbound's span is its child.
        let span = tracing::info_span!(
            parent: &self.span,
            "http_job.request",
            otel.kind = "client",
            http.request.method = %request.method.to_ascii_uppercase(),
            server.address = host_of(&request.url),
            outcome = field::Empty,
        );
        let mut headers = async_nats::HeaderMap::new();
        switchboard_telemetry::inject_nats(&span, &mut headers);
        let nats = self.worker.nats.clone();
        let subject = self.worker.subjects.outbound_http();
        let timeout = self.worker.opts.http_timeout;
        let answer = self.handle.block_on(
            async move {
                tokio::time::timeout(
                    timeout,
                    nats.request_with_headers(subject, headers, wire::encode(&job).into()),
                )
                .await
            }
            .instrument(span.clone()),
        );
        let outcome = match answer {
            Err(_) => HttpOutcome::Error("the outbound service did not answer in time".into()),
            Ok(Err(e)) => HttpOutcome::Error(format!("the outbound service is unavailable: {e}")),
            Ok(Ok(msg)) => match wire::decode::<wire::HttpJobResult>(&msg.payload) {
                Ok(wire::HttpJobResult::Response {
                    status,
                    headers,
                    body,
                    url,
                }) => HttpOutcome::Response(HttpResponse {
                    status,
                    headers,
                    body,
                    url,
                }),
                Ok(wire::HttpJobResult::Error { message }) => HttpOutcome::Error(message),
                Ok(wire::HttpJobResult::CredentialsRefused { message }) => {
                    HttpOutcome::CredentialsRefused(message)
                }
                Err(e) => {
                    HttpOutcome::Error(format!("malformed answer from the outbound service: {e}"))
                }
            },
        };
        span.record(
            "outcome",
            match &outcome {
                HttpOutcome::Response(_) => "response",
                HttpOutcome::Error(_) => "error",
                HttpOutcome::CredentialsRefused(_) => "credentials_refused",
            },
        );
        outcome
    }

    fn behavior(&self, id: i64) -> Option<Arc<CompiledBehavior>> {
        match self.handle.block_on(self.worker.compiled_behavior(id)) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    behavior_id = id,
                    "loading a behavior failed"
                );
                None
            }
        }
    }

    fn bot_key_get(&self, bot: i64, key: &str) -> Result<Option<String>, String> {
        let now = self.now();
        self.handle
            .block_on(self.worker.bot_keys.get(bot, key, now))
    }

    fn bot_key_set(&self, bot: i64, key: &str, value: &str, expires_at: i64) -> Result<(), String> {
        self.handle
            .block_on(self.worker.bot_keys.set(bot, key, value, expires_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_makes_room_only_from_expired_entries() {
        let cache = TtlCache::bounded(Duration::from_millis(50), 3);
        for i in 0..3 {
            cache.insert(i, i);
        }
        cache.insert(3, 3);
        assert_eq!(cache.len(), 3, "full, nothing expired: not kept");
        assert_eq!(cache.get(&3), None);
        assert_eq!(cache.get(&0), Some(0));
        cache.insert(0, 10);
        assert_eq!(
            cache.get(&0),
            Some(10),
            "an existing key is updated when full"
        );
        std::thread::sleep(Duration::from_millis(60));
        cache.insert(4, 4);
        assert_eq!(cache.len(), 1, "the expired entries made room");
        assert_eq!(cache.get(&4), Some(4));
    }

    #[test]
    fn the_posted_account_sid_must_be_well_formed_before_anything_is_looked_up() {
        let mut req = request("POST", "application/x-www-form-urlencoded");
        req.headers
            .push(("x-twilio-signature".into(), "sig".into()));
        let form = |sid: &str| vec![("AccountSid".to_string(), sid.to_string())];
        for bad in [
            "",
            "AC123",
            "ac0123456789abcdef0123456789abcdef",
            "SM0123456789abcdef0123456789abcdef",
        ] {
            assert!(signature_and_account(&req, &form(bad)).is_err(), "{bad:?}");
        }
        let good = "AC0123456789abcdef0123456789abcdef";
        assert_eq!(
            signature_and_account(&req, &form(good)),
            Ok(("sig", good.to_string()))
        );
        let signers = [Signer {
            id: 7,
            account_sid: good.into(),
            token: "token".into(),
        }];
        let other = form("AC99999999999999999999999999999999");
        assert_eq!(
            Worker::webhook_signature_ok(&req, &other, &signers),
            Err("AccountSid is not an account the listener's bot uses")
        );
        assert_eq!(
            Worker::webhook_signature_ok(&req, &form(good), &[]),
            Err("the listener's bot uses no connected Twilio account")
        );
        assert_eq!(
            Worker::webhook_signature_ok(&req, &form(good), &signers),
            Err("signature does not match")
        );
    }

    fn request(method: &str, content_type: &str) -> WebhookRequest {
        WebhookRequest {
            version: wire::WEBHOOK_REQUEST_VERSION,
            request_id: "r1".into(),
            guid: "g".into(),
            path: String::new(),
            public_url: "https://bot.example.com/webhooks/g".into(),
            method: method.into(),
            query: String::new(),
            headers: vec![("Content-Type".into(), content_type.into())],
            body: b"Body=hi&MessageSid=SM1".to_vec(),
            client_ip: "127.0.0.1".into(),
        }
    }

    #[test]
    fn the_host_of_a_url_names_the_server_of_a_client_span() {
        for (url, host) in [
            (
                "https://api.twilio.com/2010-04-01/Accounts",
                "api.twilio.com",
            ),
            ("http://user:pw@example.com:8080/x?y#z", "example.com"),
            ("https://[::1]:443/", "::1"),
            ("https://example.com?q=1", "example.com"),
            ("not a url", "not a url"),
            ("", ""),
        ] {
            assert_eq!(host_of(url), host, "{url}");
        }
    }

    /// Body fields count as params for POSTed forms only, as in the engine (and PHP's `$_POST`).
    #[test]
    fn form_fields_are_params_of_posts_only() {
        const FORM: &str = "application/x-www-form-urlencoded";
        assert!(is_form_post(&request("POST", FORM)));
        assert!(is_form_post(&request(
            "post",
            "Application/X-WWW-Form-Urlencoded; charset=UTF-8"
        )));
        assert!(!is_form_post(&request("PUT", FORM)));
        assert!(!is_form_post(&request("GET", FORM)));
        assert!(!is_form_post(&request("POST", "application/json")));
        // The engine agrees: a PUT's form body is no http_params.
        let engine = |method: &str| {
            let r = request(method, FORM);
            switchboard_engine::WebhookRequest {
                method: r.method,
                path: r.path,
                query: r.query,
                headers: r.headers,
                body: r.body,
                client_ip: r.client_ip,
            }
            .normalize()
            .param_text("body")
            .map(str::to_owned)
        };
        assert_eq!(engine("POST").as_deref(), Some("hi"));
        assert_eq!(engine("PUT").as_deref(), Some(""));
    }
}
