//! The health and readiness HTTP server of the NATS services (`METRICS_ADDR`): `GET /healthz`
//! answers 200 while the process runs, `GET /readyz` 200 only when every readiness check passes
//! (else 503 with a one-line plain-text body naming what is not ready). It is a small axum
//! router so that `/metrics` can join it later; `healthcheck` subcommands call [`probe_readyz`].

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

/// How long one readiness check may take before it counts as failed (a readiness probe must
/// answer well within the 2 s of `healthcheck`).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// How long `healthcheck` waits for `/readyz`.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type CheckFn = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

/// One condition of readiness.
#[derive(Clone)]
enum Check {
    /// Set by the service itself (subscriptions bound, consumers created).
    Flag(ReadyFlag),
    /// Asked at each `/readyz` (NATS connected, PostgreSQL answering).
    Probe(&'static str, CheckFn),
}

/// What `/readyz` checks. Cloning shares the checks.
#[derive(Clone)]
pub struct Readiness {
    checks: Arc<Mutex<Vec<Check>>>,
    timeout: Duration,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness::new()
    }
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("checks", &self.checks.lock().unwrap().len())
            .finish()
    }
}

impl Readiness {
    /// No checks yet: ready until some are added.
    pub fn new() -> Readiness {
        Readiness::with_timeout(CHECK_TIMEOUT)
    }

    /// Like [`Readiness::new`], each probe bounded by `timeout` instead of [`CHECK_TIMEOUT`].
    pub fn with_timeout(timeout: Duration) -> Readiness {
        Readiness {
            checks: Arc::default(),
            timeout,
        }
    }

    /// A condition the service sets itself, not ready until [`ReadyFlag::set`]`(true)`.
    /// `name` is what `/readyz` says is missing (e.g. "NATS subscriptions").
    pub fn flag(&self, name: &'static str) -> ReadyFlag {
        let flag = ReadyFlag {
            name,
            ready: Arc::new(AtomicBool::new(false)),
        };
        self.checks.lock().unwrap().push(Check::Flag(flag.clone()));
        flag
    }

    /// A check run at each `/readyz` (concurrently with the others, bounded by the timeout).
    pub fn probe<F, Fut>(&self, name: &'static str, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let check: CheckFn = Arc::new(move || Box::pin(check()));
        self.checks.lock().unwrap().push(Check::Probe(name, check));
    }

    /// Ready only while `client` is connected to a NATS server.
    pub fn nats(&self, client: &async_nats::Client) {
        let client = client.clone();
        self.probe("NATS", move || {
            let state = client.connection_state();
            async move {
                match state {
                    async_nats::connection::State::Connected => Ok(()),
                    other => Err(format!("not connected ({other})")),
                }
            }
        });
    }

    /// What is not ready, one entry each (`name: why`); empty when ready.
    pub async fn not_ready(&self) -> Vec<String> {
        let checks = self.checks.lock().unwrap().clone();
        let timeout = self.timeout;
        let results = futures::future::join_all(checks.into_iter().map(|check| async move {
            match check {
                Check::Flag(flag) => (!flag.is_set()).then(|| format!("{}: not yet", flag.name)),
                Check::Probe(name, check) => match tokio::time::timeout(timeout, check()).await {
                    Ok(Ok(())) => None,
                    Ok(Err(why)) => Some(format!("{name}: {}", one_line(&why))),
                    Err(_) => Some(format!(
                        "{name}: no answer within {} ms",
                        timeout.as_millis()
                    )),
                },
            }
        }))
        .await;
        results.into_iter().flatten().collect()
    }
}

/// A readiness condition the service sets: not ready until set. The default is detached (no
/// [`Readiness`] reads it), for services run without the health server (tests).
#[derive(Debug, Clone)]
pub struct ReadyFlag {
    name: &'static str,
    ready: Arc<AtomicBool>,
}

impl Default for ReadyFlag {
    fn default() -> Self {
        ReadyFlag {
            name: "detached",
            ready: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl ReadyFlag {
    /// Ready (`true`) or not, e.g. false again once shutdown begins.
    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn is_set(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// `GET /healthz` and `GET /readyz`. Merge more routes into it (`Router::merge`) as needed.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(readiness)
}

async fn readyz(State(readiness): State<Readiness>) -> (StatusCode, String) {
    let missing = readiness.not_ready().await;
    if missing.is_empty() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", missing.join("; ")),
        )
    }
}

/// Binds `addr` and serves `router` on it in a task of its own until the process ends (during
/// a shutdown `/healthz` keeps answering while `/readyz` says not ready).
pub async fn spawn_server(addr: SocketAddr, router: Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "health server listening (/healthz, /readyz)");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "the health server stopped");
        }
    });
    Ok(bound)
}

/// The address to probe for a server listening on `addr`: the unspecified addresses (`0.0.0.0`,
/// `::`) become the loopback of their family.
pub fn probe_address(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// The `healthcheck` subcommands' check when no health server is configured: PostgreSQL (the
/// `database` probe) and then NATS (connecting as `service` would, with its credentials and
/// TLS) each answer within [`PROBE_TIMEOUT`]. `Ok` with one line, or `Err` with one line naming
/// what did not answer.
pub async fn reachable<E: std::fmt::Display>(
    database: impl Future<Output = Result<(), E>>,
    nats: &crate::args::NatsArgs,
    service: &str,
) -> Result<String, String> {
    let within = PROBE_TIMEOUT;
    match tokio::time::timeout(within, database).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("PostgreSQL: {e}")),
        Err(_) => {
            return Err(format!(
                "PostgreSQL: no answer within {} s",
                within.as_secs()
            ));
        }
    }
    let nats = async {
        let client = nats
            .connect_with(service, |options| {
                options.name(format!("{service} healthcheck"))
            })
            .await?;
        client.flush().await?;
        anyhow::Ok(())
    };
    match tokio::time::timeout(within, nats).await {
        Ok(Ok(())) => Ok("NATS and PostgreSQL reachable".into()),
        Ok(Err(e)) => Err(format!("NATS: {}", one_line(&format!("{e:#}")))),
        Err(_) => Err(format!("NATS: no answer within {} s", within.as_secs())),
    }
}

/// `GET /readyz` of the server at `addr` (see [`probe_address`]) within `timeout`: `Ok` with
/// its body when it answers 200, else `Err` with one line saying why.
pub async fn probe_readyz(addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    let target = probe_address(addr);
    let exchange = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(target)
            .await
            .map_err(|e| format!("cannot connect to {target}: {e}"))?;
        stream
            .write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .map_err(|e| format!("{target}: {e}"))?;
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .await
            .map_err(|e| format!("{target}: {e}"))?;
        Ok::<_, String>(answer)
    };
    let answer = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| {
            format!(
                "http://{target}/readyz did not answer within {} ms",
                timeout.as_millis()
            )
        })??;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("no status");
    let body = one_line(body.trim());
    if status == "200" {
        Ok(body)
    } else if body.is_empty() {
        Err(format!("http://{target}/readyz answered {status}"))
    } else {
        Err(body)
    }
}

/// `text` on one line (control characters become spaces).
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    async fn get(router: Router, path: &str) -> (StatusCode, String) {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    /// The healthcheck without a health server names the part that did not answer: the
    /// database first (its error, or its silence), then NATS (a port nothing listens on).
    #[tokio::test]
    async fn reachable_names_what_did_not_answer() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let nats_url = format!("nats://{}", closed.local_addr().unwrap());
        drop(closed);
        let nats = crate::args::NatsArgs::new(&nats_url);
        let failed = reachable(async { Err::<(), _>("connection refused") }, &nats, "x").await;
        assert_eq!(failed, Err("PostgreSQL: connection refused".to_owned()));
        let silent = reachable(std::future::pending::<Result<(), String>>(), &nats, "x").await;
        assert_eq!(silent, Err("PostgreSQL: no answer within 2 s".to_owned()));
        let down = reachable(async { Ok::<(), String>(()) }, &nats, "x").await;
        assert!(
            down.as_ref().is_err_and(|e| e.starts_with("NATS: ")),
            "{down:?}"
        );
        // Options that do not fit together are named before anything is tried, without the
        // password.
        let mut conflicting = crate::args::NatsArgs::new("nats://n:urlpass@127.0.0.1:1");
        conflicting.nats_token = Some("t0k3n".into());
        let refused = reachable(async { Ok::<(), String>(()) }, &conflicting, "x").await;
        assert_eq!(
            refused,
            Err("NATS: NATS_TOKEN and the credentials in NATS_URL are both set: authenticate to NATS one way only".to_owned())
        );
    }

    #[tokio::test]
    async fn readyz_names_what_is_not_ready_and_healthz_always_answers() {
        let readiness = Readiness::with_timeout(Duration::from_millis(50));
        let bound = readiness.flag("NATS subscriptions");
        let database_up = Arc::new(AtomicBool::new(false));
        let up = database_up.clone();
        readiness.probe("PostgreSQL", move || {
            let up = up.load(Ordering::SeqCst);
            async move {
                if up {
                    Ok(())
                } else {
                    Err("connection refused\nsecond line".into())
                }
            }
        });
        readiness.probe("slow", || async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        });
        let app = router(readiness.clone());
        assert_eq!(
            get(app.clone(), "/healthz").await,
            (StatusCode::OK, "ok\n".into())
        );
        let (status, body) = get(app.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            "not ready: NATS subscriptions: not yet; PostgreSQL: connection refused second line; slow: no answer within 50 ms\n"
        );

        let readiness = Readiness::new();
        let bound2 = readiness.flag("NATS subscriptions");
        let up = database_up.clone();
        readiness.probe("PostgreSQL", move || {
            let up = up.load(Ordering::SeqCst);
            async move { if up { Ok(()) } else { Err("down".into()) } }
        });
        let app = router(readiness);
        bound2.set(true);
        assert_eq!(
            get(app.clone(), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        database_up.store(true, Ordering::SeqCst);
        assert_eq!(
            get(app.clone(), "/readyz").await,
            (StatusCode::OK, "ready\n".into())
        );
        bound2.set(false);
        let (status, body) = get(app, "/readyz").await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready again at shutdown"
        );
        assert_eq!(body, "not ready: NATS subscriptions: not yet\n");
        drop(bound);
    }

    #[tokio::test]
    async fn nats_readiness_follows_the_connection() {
        // Nothing listens on port 1: the client (retrying in the background) is not connected.
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect("nats://127.0.0.1:1")
            .await
            .unwrap();
        let readiness = Readiness::new();
        readiness.nats(&client);
        let missing = readiness.not_ready().await;
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(missing[0].starts_with("NATS: not connected"), "{missing:?}");
    }

    #[test]
    fn unspecified_addresses_are_probed_on_loopback() {
        let probe = |a: &str| probe_address(a.parse().unwrap()).to_string();
        assert_eq!(probe("0.0.0.0:9090"), "127.0.0.1:9090");
        assert_eq!(probe("[::]:9090"), "[::1]:9090");
        assert_eq!(probe("10.1.2.3:9090"), "10.1.2.3:9090");
        assert_eq!(probe("127.0.0.1:80"), "127.0.0.1:80");
    }

    #[tokio::test]
    async fn the_probe_reads_readyz_over_tcp() {
        let readiness = Readiness::new();
        let flag = readiness.flag("JetStream consumers");
        let addr = spawn_server("0.0.0.0:0".parse().unwrap(), router(readiness))
            .await
            .unwrap();
        let err = probe_readyz(addr, PROBE_TIMEOUT).await.unwrap_err();
        assert_eq!(err, "not ready: JetStream consumers: not yet");
        flag.set(true);
        assert_eq!(probe_readyz(addr, PROBE_TIMEOUT).await.unwrap(), "ready");

        // Nothing listening: one line saying so.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        let err = probe_readyz(closed_addr, PROBE_TIMEOUT).await.unwrap_err();
        assert!(
            err.starts_with(&format!("cannot connect to {closed_addr}")),
            "{err}"
        );

        // A server that accepts and never answers: bounded by the timeout.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let _keep = tokio::spawn(async move {
            let (_conn, _) = silent.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        let started = std::time::Instant::now();
        let err = probe_readyz(silent_addr, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(err.contains("did not answer within 200 ms"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
