//! `twilio-fake`: a real HTTP server that speaks Twilio's Messages API (2010-04-01) and Lookup
//! API (v1, v2) for tests and the local sandbox, with fault injection, signed status callbacks
//! and request checking against Twilio's OpenAPI descriptions, all driven by an admin API
//! under `/_fake/`.
//!
//! [`run`] serves on a listener until `shutdown` completes; `main.rs` only parses the
//! configuration and calls it, and the integration tests call it on port 0.

pub mod admin;
pub mod callbacks;
pub mod config;
pub mod conn;
pub mod error;
pub mod faults;
pub mod lookups;
pub mod messages;
pub mod openapi;
pub mod store;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use base64::Engine as _;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

pub use config::{Account, ApiKey, AuthToken, Config};
use conn::FakeListener;
use error::TwilioError;
use openapi::{CheckRequest, OpenApi};
use store::{RequestRecord, Store};

/// How long in-flight requests may take to finish after shutdown is asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest request body accepted (Twilio's own limit for a form is far below this).
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Status callbacks delivered at the same time, at most.
const MAX_CONCURRENT_CALLBACKS: usize = 32;

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// Auth tokens by AccountSid.
    pub accounts: HashMap<String, AuthToken>,
    /// API keys by SID: (account, secret).
    pub api_keys: HashMap<String, (String, AuthToken)>,
    /// The OpenAPI checker, when the descriptions were found.
    pub openapi: Option<Arc<OpenApi>>,
    /// Messages, requests, callbacks, faults.
    store: Mutex<Store>,
    /// Client for status callbacks.
    pub http: reqwest::Client,
    /// Delay before each status callback.
    pub callback_delay: Duration,
    /// Base of the absolute URLs handed out, if configured.
    pub public_base_url: Option<String>,
    /// Bounds concurrent callback deliveries.
    pub callback_slots: Semaphore,
    /// Becomes true when the server is shutting down; callback tasks stop.
    pub shutdown: watch::Receiver<bool>,
    /// API requests being handled now (for the `max_concurrent` fault).
    pub in_flight: AtomicUsize,
}

impl AppState {
    /// Locks the store. A poisoned lock is taken over: the data is plain records.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Socket trouble.
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
    /// The OpenAPI directory exists but a description in it cannot be read.
    #[error(transparent)]
    OpenApi(#[from] openapi::LoadError),
    /// The HTTP client for callbacks cannot be built.
    #[error("building the callback HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Serves the fake on `listener` until `shutdown` completes, then drains in-flight requests
/// (at most [`DRAIN_TIMEOUT`]) and stops pending status callbacks.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let state = Arc::new(build_state(&config, stop_rx.clone())?);
    let state_has_openapi = state.openapi.is_some();
    let app = app(state);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, openapi_check = state_has_openapi, "twilio-fake listening");
    }

    let mut drain_rx = stop_rx;
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: draining in-flight requests");
        let _ = stop_tx.send(true);
    };
    let server = axum::serve(
        FakeListener::new(listener),
        app.into_make_service_with_connect_info::<conn::ConnHandle>(),
    )
    .with_graceful_shutdown(signal);
    let drain_deadline = async move {
        let _ = drain_rx.wait_for(|stopped| *stopped).await;
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };
    tokio::select! {
        result = server => result?,
        () = drain_deadline => tracing::warn!("drain timed out; closing remaining connections"),
    }
    Ok(())
}

/// A fake started in the background by [`spawn`], for other crates' tests.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), RunError>>>,
}

impl Running {
    /// `http://addr`, the base URL of both the Messages and the Lookup API.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the fake and waits until [`run`] has returned.
    pub async fn stop(mut self) -> Result<(), RunError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task
                .await
                .unwrap_or_else(|e| Err(RunError::Io(std::io::Error::other(e)))),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Binds `config.listen` (use port 0 in tests) and runs the fake on a background task until
/// the returned handle is stopped or dropped. Installs the ring provider for rustls, as `main`
/// does, if none is installed yet.
pub async fn spawn(config: Config) -> Result<Running, RunError> {
    // Before returning: the caller's own reqwest clients need a provider too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run(config, listener, async move {
        let _ = stopped.await;
    }));
    Ok(Running {
        addr,
        stop: Some(stop),
        task: Some(task),
    })
}

fn build_state(config: &Config, shutdown: watch::Receiver<bool>) -> Result<AppState, RunError> {
    // Tests call `run` without `main`; installing twice is harmless (the second call fails).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let openapi = match &config.openapi_dir {
        None => Some(OpenApi::embedded()),
        Some(dir) => match OpenApi::load(dir) {
            Ok(api) => Some(api),
            Err(openapi::LoadError::Missing(dir)) => {
                tracing::warn!(
                    dir = %dir.display(),
                    "no OpenAPI description found: requests will not be checked"
                );
                None
            }
            Err(e) => return Err(e.into()),
        },
    };
    if config.accounts.is_empty() {
        tracing::warn!("no account configured: every API request will be refused with 401");
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .user_agent("TwilioProxy/1.1")
        .build()?;
    Ok(AppState {
        accounts: config
            .accounts
            .iter()
            .map(|a| (a.sid.to_string(), a.token.clone()))
            .collect(),
        api_keys: config
            .api_keys
            .iter()
            .map(|k| (k.sid.clone(), (k.account.to_string(), k.secret.clone())))
            .collect(),
        openapi,
        store: Mutex::new(Store::new(config.seed, config.request_log_capacity)),
        http,
        callback_delay: Duration::from_millis(config.callback_delay_ms),
        public_base_url: config
            .public_base_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_owned()),
        callback_slots: Semaphore::new(MAX_CONCURRENT_CALLBACKS),
        shutdown,
        in_flight: AtomicUsize::new(0),
    })
}

/// The router: the Messages API, the Lookup API and the admin API.
pub fn app(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route(
            "/2010-04-01/Accounts/{account_sid}/{*rest}",
            any(messages::dispatch),
        )
        .route("/v1/PhoneNumbers/{number}", get(lookups::v1))
        .route("/v2/PhoneNumbers/{number}", get(lookups::v2))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), record));
    Router::new()
        .nest("/_fake", admin::router())
        .merge(api)
        .with_state(state)
}

async fn not_found(request: Request) -> TwilioError {
    TwilioError::not_found(request.uri().path())
}

/// Set on a response by a handler that injected a fault, for the request log.
#[derive(Debug, Clone)]
pub struct FaultNote(pub String);

/// Set on a response whose connection was cut (accept-then-fail `drop`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionDropped;

/// Records every API request (form fields, headers, OpenAPI violations) and its answer.
async fn record(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    };
    let query = parts.uri.query().unwrap_or("").to_owned();
    let query_params = switchboard_twilio::signature::parse_form(query.as_bytes());
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    // Cerb and curl may post a form without a Content-Type; Twilio reads the body as a form
    // anyway, so the fake does too (the OpenAPI check still reports the missing header).
    let is_form = content_type.is_none_or(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    });
    let form = if is_form {
        switchboard_twilio::signature::parse_form(&bytes)
    } else {
        Vec::new()
    };
    let auth_user = basic_credentials(&parts.headers).map(|(user, _)| user);
    let outcome = state.openapi.as_ref().map(|api| {
        api.check(&CheckRequest {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: &query_params,
            content_type,
            form: &form,
            body_is_empty: bytes.is_empty(),
            has_basic_auth: auth_user.is_some(),
        })
    });
    let headers = parts
        .headers
        .iter()
        .filter(|(name, _)| *name != header::AUTHORIZATION)
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let record = RequestRecord {
        id: 0,
        timestamp: store::rfc3339(time::OffsetDateTime::now_utc()),
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query,
        query_params,
        form,
        headers,
        auth_user,
        operation: operation_of(parts.method.as_str(), parts.uri.path())
            .map(str::to_owned)
            .or_else(|| outcome.as_ref().and_then(|o| o.operation.clone())),
        openapi_checked: outcome.is_some(),
        openapi_violations: outcome.map(|o| o.violations).unwrap_or_default(),
        response_status: None,
        connection_dropped: false,
        fault: None,
    };
    let id = state.store().push_request(record);

    let _in_flight = InFlight::enter(&state);
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;

    let dropped = response.extensions().get::<ConnectionDropped>().is_some();
    let fault = response
        .extensions()
        .get::<FaultNote>()
        .map(|n| n.0.clone());
    if let Some(r) = state.store().request_mut(id) {
        r.response_status = (!dropped).then(|| response.status().as_u16());
        r.connection_dropped = dropped;
        r.fault = fault;
    }
    response
}

/// The spec's `operationId` of a request the fake serves, known without the OpenAPI
/// descriptions (so the request log names operations when they are not loaded).
pub fn operation_of(method: &str, path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let strip = |s: &str| s.strip_suffix(".json").unwrap_or(s).to_owned();
    match (method, segments.as_slice()) {
        ("POST", ["2010-04-01", "Accounts", _, last]) if strip(last) == "Messages" => {
            Some("CreateMessage")
        }
        ("GET", ["2010-04-01", "Accounts", _, last]) if strip(last) == "Messages" => {
            Some("ListMessage")
        }
        ("GET", ["2010-04-01", "Accounts", _, "Messages", _]) => Some("FetchMessage"),
        ("GET", ["v1" | "v2", "PhoneNumbers", _]) => Some("FetchPhoneNumber"),
        _ => None,
    }
}

/// Counts an API request as in flight until dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(state: &'a AppState) -> InFlight<'a> {
        state.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(&state.in_flight)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The user and password of `Authorization: Basic …`, if the header is there and decodes.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Checks the Basic credentials against the configured accounts and API keys (and, for 2010
/// API paths, that the path's AccountSid is the authenticated account). Returns the AccountSid.
pub fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    path_account: Option<&str>,
) -> Result<String, TwilioError> {
    let (user, password) = basic_credentials(headers).ok_or_else(TwilioError::unauthorized)?;
    let (account, secret) = match state.accounts.get(&user) {
        Some(token) => (user.as_str(), token),
        None => {
            let (account, secret) = state
                .api_keys
                .get(&user)
                .ok_or_else(TwilioError::unauthorized)?;
            (account.as_str(), secret)
        }
    };
    let matches: bool = subtle_eq(secret.expose().as_bytes(), password.as_bytes());
    if !matches || path_account.is_some_and(|path| path != account) {
        return Err(TwilioError::unauthorized());
    }
    Ok(account.to_owned())
}

fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    // Constant time in the length of the shorter input is plenty for a fake; no early exit.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Applies the concurrency limit, latency (global and for `number`) and the random global
/// faults. Returns the fault
/// answer when one was drawn, with its note for the request log.
pub async fn apply_faults(
    state: &AppState,
    number: Option<&str>,
) -> Result<(), (TwilioError, String)> {
    let (latency, drawn) = {
        let mut store = state.store();
        let global = &store.faults.global;
        if let Some(max) = global.max_concurrent
            && state.in_flight.load(Ordering::SeqCst) > max
        {
            let mut error = TwilioError::new(StatusCode::TOO_MANY_REQUESTS, 20429);
            error.retry_after = global.retry_after;
            return Err((error, "max_concurrent".to_owned()));
        }
        let per_number = number
            .and_then(|n| store.numbers.get(n))
            .and_then(|rule| rule.latency_ms)
            .unwrap_or(0);
        let latency = store.faults.global.latency_ms + per_number;
        (latency, store.faults.draw())
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    match drawn {
        Some((error, note)) => Err((error, note.to_owned())),
        None => Ok(()),
    }
}

/// The forced error of `number`'s rule for this request, if it has one; counts down its
/// `times` (and removes it when they are used up).
pub fn take_forced_error(state: &AppState, number: &str) -> Option<faults::ForcedError> {
    let mut store = state.store();
    let rule = store.numbers.get_mut(number)?;
    let forced = rule.error.clone()?;
    match forced.times {
        None => {}
        Some(0) => {
            rule.error = None;
            return None;
        }
        Some(1) => rule.error = None,
        Some(n) => {
            if let Some(error) = rule.error.as_mut() {
                error.times = Some(n - 1);
            }
        }
    }
    Some(forced)
}

/// An error answer with a note for the request log.
pub fn with_note(response: impl IntoResponse, note: impl Into<String>) -> Response {
    let mut response = response.into_response();
    response.extensions_mut().insert(FaultNote(note.into()));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fake's own operation names agree with the official descriptions.
    #[test]
    fn operation_names_match_the_spec() {
        let api = OpenApi::embedded();
        let account = "AC0123456789abcdef0123456789abcdef";
        let sid = "SM0123456789abcdef0123456789abcdef";
        let cases = [
            (
                "POST",
                format!("/2010-04-01/Accounts/{account}/Messages.json"),
            ),
            ("POST", format!("/2010-04-01/Accounts/{account}/Messages")),
            (
                "GET",
                format!("/2010-04-01/Accounts/{account}/Messages.json"),
            ),
            (
                "GET",
                format!("/2010-04-01/Accounts/{account}/Messages/{sid}.json"),
            ),
            (
                "GET",
                format!("/2010-04-01/Accounts/{account}/Messages/{sid}"),
            ),
            ("GET", "/v1/PhoneNumbers/%2B15108675310".to_owned()),
            ("GET", "/v2/PhoneNumbers/%2B15108675310".to_owned()),
        ];
        for (method, path) in cases {
            let outcome = api.check(&CheckRequest {
                method,
                path: &path,
                query: &[],
                content_type: None,
                form: &[],
                body_is_empty: true,
                has_basic_auth: true,
            });
            assert_eq!(
                outcome.operation.as_deref(),
                operation_of(method, &path),
                "{method} {path}"
            );
            assert!(outcome.operation.is_some(), "{method} {path}");
        }
        assert_eq!(operation_of("DELETE", "/v1/PhoneNumbers/x"), None);
        assert_eq!(
            operation_of("GET", "/2010-04-01/Accounts/AC1/Calls.json"),
            None
        );
    }
}
