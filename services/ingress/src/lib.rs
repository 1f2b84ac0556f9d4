//! Ingress: the only part of Switchboard facing the internet. It turns each webhook
//! (`/webhooks/<guid>[/<path>]`, any method) into one NATS request to the behavior workers and
//! returns their reply as the HTTP response; Twilio's delivery status callbacks
//! (`/twilio/status`, the outbound service's default `StatusCallback`) go the same way on their
//! own subject. It holds no secrets and no database connection.
//! Bounded: body size (413), reply timeout below Twilio's 15 s (503, so Twilio's fallback URL
//! takes over), graceful shutdown that finishes in-flight requests.

pub mod cli;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::encoding::EncodeLabelSet;
use switchboard_telemetry::metrics::{CounterFamily, HttpServerMetrics, Metrics};
use switchboard_wire::{self as wire, Subjects, WebhookReply, WebhookRequest};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;
use tracing::{Instrument as _, field};

/// Ingress settings.
#[derive(Debug, Clone)]
pub struct IngressConfig {
    /// Public base URL Twilio calls (e.g. `https://bot.example.com`); the signed URL is this plus
    /// the request's path and query.
    pub public_base_url: Option<String>,
    /// Rebuild the public URL from `X-Forwarded-Proto`/`X-Forwarded-Host` and take the client
    /// address from `X-Forwarded-For` (only behind a proxy you trust).
    pub trust_forwarded_headers: bool,
    /// Make a request's W3C `traceparent` the parent of its trace (only behind a proxy you trust
    /// to set or check it). Otherwise a caller's `traceparent` is only linked from a trace of
    /// ingress's own: an internet client does not choose the trace ids, sampling or state.
    pub trust_traceparent: bool,
    /// How long to wait for a worker's reply.
    pub reply_timeout: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    pub subjects: Subjects,
    /// Where requests are counted (`METRICS_ADDR` serves them).
    pub metrics: IngressMetrics,
    /// How long a client may take to send a request's headers (and, on a kept-alive
    /// connection, to start the next request) before the connection is closed.
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request's body (408, connection closed).
    pub body_read_timeout: Duration,
    /// Requests handled at once; one more is answered 503 with `Retry-After` at once (Twilio
    /// then tries the number's fallback URL) instead of queueing behind the others.
    pub max_concurrent_requests: usize,
}

/// Why a request got no worker's answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UnansweredLabels {
    /// `timeout` (no reply within `REPLY_TIMEOUT_MS`), `nats` (the request could not be sent or
    /// no worker listens), `malformed` (a reply that does not decode), `overloaded` (over
    /// `MAX_CONCURRENT_REQUESTS`, shed before reading the body).
    reason: &'static str,
}

/// What ingress counts.
#[derive(Clone, Debug)]
pub struct IngressMetrics {
    /// False for [`IngressMetrics::default`]: nothing is recorded (no `METRICS_ADDR`).
    on: bool,
    http: HttpServerMetrics,
    unanswered: CounterFamily<UnansweredLabels>,
}

impl IngressMetrics {
    /// Registers ingress's metrics in `metrics`.
    pub fn register(metrics: &Metrics) -> IngressMetrics {
        let unanswered = CounterFamily::<UnansweredLabels>::default();
        metrics.register(
            "switchboard_ingress_unanswered",
            "Requests answered 503/502 by ingress itself because no behavior worker answered, by reason",
            unanswered.clone(),
        );
        IngressMetrics {
            on: true,
            http: HttpServerMetrics::register(metrics),
            unanswered,
        }
    }

    fn unanswered(&self, reason: &'static str) {
        if !self.on {
            return;
        }
        self.unanswered
            .get_or_create(&UnansweredLabels { reason })
            .inc();
    }
}

impl Default for IngressMetrics {
    /// Off: nothing is recorded (ingress without `METRICS_ADDR`, most tests).
    fn default() -> Self {
        IngressMetrics {
            on: false,
            ..IngressMetrics::register(&Metrics::new())
        }
    }
}

impl Default for IngressConfig {
    fn default() -> Self {
        IngressConfig {
            public_base_url: None,
            trust_forwarded_headers: false,
            trust_traceparent: false,
            reply_timeout: Duration::from_secs(10),
            max_body_bytes: 256 * 1024,
            subjects: Subjects::default(),
            metrics: IngressMetrics::default(),
            header_read_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(10),
            max_concurrent_requests: 1024,
        }
    }
}

#[derive(Clone)]
struct AppState {
    nats: async_nats::Client,
    config: Arc<IngressConfig>,
    /// One per request in flight (`max_concurrent_requests`).
    permits: Arc<Semaphore>,
    /// How many NATS connections have been lost so far ([`watch_connection`]).
    nats_lost: watch::Receiver<u64>,
}

/// How often the NATS connection is looked at for the requests waiting on it.
const CONNECTION_POLL: Duration = Duration::from_millis(50);

/// How many connections the client has lost: each connection it made, but the one it has.
fn connections_lost(nats: &async_nats::Client) -> u64 {
    let made = nats
        .statistics()
        .connects
        .load(std::sync::atomic::Ordering::Relaxed);
    let live = nats.connection_state() == async_nats::connection::State::Connected;
    made.saturating_sub(u64::from(live))
}

/// Follows the client's lost connections, for the requests waiting on a reply: a request sent
/// on a connection that is then lost is never answered (its reply, if any, went with the
/// connection), and would otherwise wait for the reply timeout. One task looks every
/// [`CONNECTION_POLL`] for all of them, and counts connections rather than looking at the state,
/// so a connection that came and went between two looks is not missed. A count is passed on
/// once two looks in a row agree: a reconnection counts its connection a moment before the
/// state says it is live, and one look in that moment would fail the requests waiting on the
/// new connection. It ends with the last receiver. Outside a tokio runtime nothing follows the
/// connection, and requests wait for the timeout.
fn watch_connection(nats: &async_nats::Client) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(connections_lost(nats));
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let nats = nats.clone();
        runtime.spawn(async move {
            let mut last_look = connections_lost(&nats);
            loop {
                tokio::select! {
                    () = tx.closed() => return,
                    () = tokio::time::sleep(CONNECTION_POLL) => {}
                }
                let now = connections_lost(&nats);
                if now == last_look {
                    tx.send_if_modified(|was| std::mem::replace(was, now) != now);
                }
                last_look = now;
            }
        });
    }
    rx
}

/// Completes when more than `lost` connections have been lost: the one a request was sent on is
/// gone (never, if nothing follows the connection).
async fn connection_lost(mut watch: watch::Receiver<u64>, lost: u64) {
    if watch.wait_for(|&now| now > lost).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The router (tests drive it with `oneshot`).
pub fn app(nats: async_nats::Client, config: IngressConfig) -> Router {
    let limit = config.max_body_bytes;
    let state = AppState {
        nats_lost: watch_connection(&nats),
        nats,
        permits: Arc::new(Semaphore::new(config.max_concurrent_requests.max(1))),
        config: Arc::new(config),
    };
    Router::new()
        .route("/webhooks/{guid}", any(webhook))
        .route("/webhooks/{guid}/{*rest}", any(webhook_with_path))
        .route("/twilio/status", any(status_callback))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        // The handler enforces `max_body_bytes` itself (413); lift axum's default 2 MB cap.
        .layer(DefaultBodyLimit::max(limit.saturating_add(1)))
        .with_state(state)
}

/// Serves on `listener` until `shutdown` completes, then finishes in-flight requests (the
/// caller bounds how long: `lifecycle::run_bounded`).
///
/// hyper's connection builder directly rather than `axum::serve`, for what a server facing the
/// internet needs and `axum::serve` does not offer: a timeout on reading a request's headers
/// (a client trickling them, or holding an idle connection, is cut off after
/// `header_read_timeout`).
pub async fn run(
    listener: tokio::net::TcpListener,
    nats: async_nats::Client,
    config: IngressConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "ingress listening");
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(None);
    let router = app(nats, config);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, mostly: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            router.clone().oneshot(request.map(Body::new))
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.nats.connection_state() {
        async_nats::connection::State::Connected => (StatusCode::OK, "ready"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "not connected to NATS"),
    }
}

async fn webhook(state: State<AppState>, Path(guid): Path<String>, request: Request) -> Response {
    let subject = state.config.subjects.webhook_request();
    forward(
        state,
        "/webhooks/{guid}",
        subject,
        guid,
        String::new(),
        request,
    )
    .await
}

/// A delivery status callback: verified and recorded by a behavior worker, like a webhook.
async fn status_callback(state: State<AppState>, request: Request) -> Response {
    let subject = state.config.subjects.status_callback();
    forward(
        state,
        "/twilio/status",
        subject,
        String::new(),
        String::new(),
        request,
    )
    .await
}

async fn webhook_with_path(
    state: State<AppState>,
    Path((guid, rest)): Path<(String, String)>,
    request: Request,
) -> Response {
    let subject = state.config.subjects.webhook_request();
    forward(
        state,
        "/webhooks/{guid}/{*rest}",
        subject,
        guid,
        rest,
        request,
    )
    .await
}

/// The URL the caller requested, as Twilio signed it.
fn public_url(config: &IngressConfig, uri: &Uri, headers: &HeaderMap) -> String {
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    if let Some(base) = &config.public_base_url {
        return format!("{}{}", base.trim_end_matches('/'), path_and_query);
    }
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|s| last_forwarded(s).to_string())
    };
    let (proto, host) = if config.trust_forwarded_headers {
        (
            h("x-forwarded-proto").unwrap_or_else(|| "http".into()),
            h("x-forwarded-host").or_else(|| h("host")),
        )
    } else {
        ("http".to_string(), h("host"))
    };
    format!(
        "{proto}://{}{path_and_query}",
        host.unwrap_or_else(|| "localhost".into())
    )
}

/// The last entry of a forwarded header's comma-separated list (the trusted proxy's own).
fn last_forwarded(value: &str) -> &str {
    value
        .rsplit(',')
        .map(str::trim)
        .find(|v| !v.is_empty())
        .unwrap_or("")
}

/// Sends the request to the workers on `subject` and answers with their reply.
async fn forward(
    State(state): State<AppState>,
    route: &'static str,
    subject: String,
    guid: String,
    rest: String,
    request: Request,
) -> Response {
    let _tracked = switchboard_telemetry::lifecycle::track("webhook requests");
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let response = forward_timed(&state, subject, guid, rest, request).await;
    let metrics = &state.config.metrics;
    if metrics.on {
        metrics.http.observe(
            &method,
            route,
            response.status().as_u16(),
            started.elapsed(),
        );
    }
    response
}

async fn forward_timed(
    state: &AppState,
    subject: String,
    guid: String,
    rest: String,
    request: Request,
) -> Response {
    // Shed at once over the cap: a fast 503 lets Twilio use the fallback URL, where a queue
    // would only make every request late.
    let Ok(_permit) = state.permits.clone().try_acquire_owned() else {
        state.config.metrics.unanswered("overloaded");
        return unavailable();
    };
    // NATS is down: no worker can be asked, and a request sent now would wait in the client's
    // buffer until the reply timeout. 503 at once, so Twilio tries the fallback URL in time.
    if state.nats.connection_state() != async_nats::connection::State::Connected {
        state.config.metrics.unanswered("nats");
        return unavailable();
    }
    let lost = connections_lost(&state.nats);
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(
        state.config.body_read_timeout,
        axum::body::to_bytes(body, state.config.max_body_bytes),
    );
    let body: Bytes = match read.await {
        Ok(Ok(b)) => b,
        Err(_) => {
            tracing::warn!("the client did not send the request body in time");
            return (
                StatusCode::REQUEST_TIMEOUT,
                [(axum::http::header::CONNECTION, "close")],
                "",
            )
                .into_response();
        }
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.to_string().contains("length limit");
            return if too_large {
                (StatusCode::PAYLOAD_TOO_LARGE, "").into_response()
            } else {
                (StatusCode::BAD_REQUEST, "").into_response()
            };
        }
    };
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    let connect = parts.extensions.get::<ConnectInfo<SocketAddr>>().cloned();
    let request_id = uuid::Uuid::new_v4().to_string();
    let span = tracing::info_span!(
        "ingress.webhook",
        request_id = %request_id,
        method = %method,
        status = field::Empty,
        otel.kind = "server",
    );
    let config = &state.config;
    if config.trust_traceparent {
        switchboard_telemetry::set_parent_from_http(&span, &headers);
    } else {
        switchboard_telemetry::link_from_http(&span, &headers);
    }
    let client_ip = match (
        config.trust_forwarded_headers,
        headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()),
    ) {
        // The right-most entry is the one the trusted proxy added (the address that connected
        // to it); those left of it came from the client and could say anything.
        (true, Some(xff)) => last_forwarded(xff).to_string(),
        _ => connect.map(|c| c.0.ip().to_string()).unwrap_or_default(),
    };
    let msg = WebhookRequest {
        version: wire::WEBHOOK_REQUEST_VERSION,
        request_id: request_id.clone(),
        guid,
        path: rest,
        public_url: public_url(config, &uri, &headers),
        method: method.to_string(),
        query: uri.query().unwrap_or("").to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
        client_ip,
    };
    let response = async {
        let mut nats_headers = async_nats::HeaderMap::new();
        nats_headers.insert(wire::HEADER_REQUEST_ID, request_id.as_str());
        switchboard_telemetry::inject_nats(&tracing::Span::current(), &mut nats_headers);
        let request =
            state
                .nats
                .request_with_headers(subject, nats_headers, wire::encode(&msg).into());
        let waited = tokio::select! {
            waited = tokio::time::timeout(config.reply_timeout, request) => waited,
            () = connection_lost(state.nats_lost.clone(), lost) => {
                tracing::warn!("the NATS connection dropped while waiting for a behavior worker's reply");
                config.metrics.unanswered("nats");
                return unavailable();
            }
        };
        let reply = match waited {
            Err(_) => {
                tracing::warn!("no reply from a behavior worker within the timeout");
                config.metrics.unanswered("timeout");
                return unavailable();
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "webhook request to the behavior workers failed");
                config.metrics.unanswered("nats");
                return unavailable();
            }
            Ok(Ok(message)) => message,
        };
        match wire::decode::<WebhookReply>(&reply.payload) {
            Ok(reply) => to_response(reply),
            Err(e) => {
                tracing::error!(error = %e, "malformed reply from a behavior worker");
                config.metrics.unanswered("malformed");
                (StatusCode::BAD_GATEWAY, "").into_response()
            }
        }
    }
    .instrument(span.clone())
    .await;
    span.record("status", response.status().as_u16());
    let mut response = response;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("switchboard-request-id"), v);
    }
    response
}

/// 503 with `Retry-After`: Twilio then requests the number's fallback URL, if any.
fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")], "").into_response()
}

fn to_response(reply: WebhookReply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, reply.body).into_response();
    let h = response.headers_mut();
    for (name, value) in reply.headers {
        let lower = name.to_ascii_lowercase();
        // The body's length is ours to set; hop-by-hop headers do not pass through.
        if matches!(
            lower.as_str(),
            "content-length" | "transfer-encoding" | "connection" | "keep-alive" | "upgrade"
        ) {
            continue;
        }
        match (
            HeaderName::from_bytes(lower.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            (Ok(n), Ok(v)) => {
                h.insert(n, v);
            }
            _ => tracing::warn!(header = %name, "dropped a response header that is not valid HTTP"),
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trusted_proxy_is_the_last_to_forward() {
        assert_eq!(last_forwarded("203.0.113.9"), "203.0.113.9");
        // A client claiming to be 10.0.0.1; the proxy appended the address it saw.
        assert_eq!(last_forwarded("10.0.0.1, 198.51.100.7"), "198.51.100.7");
        assert_eq!(last_forwarded("10.0.0.1,198.51.100.7 , "), "198.51.100.7");
        assert_eq!(last_forwarded(""), "");
    }
}
