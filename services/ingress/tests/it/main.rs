//! The `ingress` binary as a container runs it, over a private nats-server: `healthcheck`, and
//! a SIGTERM that ends the process within SHUTDOWN_TIMEOUT_SECS even when a webhook's reply
//! never comes and NATS is gone.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use switchboard_test_support::{NatsServer, metric, unique};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const BIN: &str = env!("CARGO_BIN_EXE_ingress");

/// `ingress healthcheck` for LISTEN_ADDR `listen`: its status and one line.
fn healthcheck(listen: &str) -> (std::process::ExitStatus, String) {
    let out = Command::new(BIN)
        .env_clear()
        .env("LISTEN_ADDR", listen)
        .arg("healthcheck")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text.trim().to_owned())
}

/// A webhook whose reply never comes (a "worker" that takes requests and never answers), then
/// nats-server killed: the webhook gets 503 at once (not at the reply timeout: its reply could
/// only have come over the lost connection) and `healthcheck` says not ready. NATS back, another
/// such webhook in flight, and a SIGTERM ends the process when the bound passes, with status 1
/// and a line counting the abandoned request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_ends_is_abandoned_at_the_bound() {
    let mut nats = NatsServer::start().await.unwrap();
    let prefix = unique("sbi");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("0.0.0.0:{port}");
    let log_path = std::env::temp_dir().join(unique("sb-ingress-log"));
    let log_file = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(BIN)
        .env_clear()
        .env("RUST_LOG", "info")
        .env("NATS_URL", nats.url())
        .env("LISTEN_ADDR", &listen)
        .env("SWITCHBOARD_SUBJECT_PREFIX", &prefix)
        .env("REPLY_TIMEOUT_MS", "14000")
        .env("SHUTDOWN_TIMEOUT_SECS", "2")
        .arg("run")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, line) = healthcheck(&listen);
        if status.success() {
            assert_eq!(line, "ready");
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {line}\n{}", log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Takes webhook requests and never replies; answers the connection a webhook was sent on
    // once a request reached it.
    let silent = nats.client().await.unwrap();
    let mut taken = silent
        .subscribe(format!("{prefix}.webhook.request"))
        .await
        .unwrap();
    silent.flush().await.unwrap();
    async fn send(port: u16, taken: &mut async_nats::Subscriber) -> tokio::net::TcpStream {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        stream
            .write_all(b"POST /webhooks/abc HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\nConnection: close\r\n\r\nBody=hi")
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), taken.next())
            .await
            .expect("the request reached NATS")
            .unwrap();
        stream
    }
    let mut first = send(port, &mut taken).await;

    nats.kill();
    let killed = Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), first.read_to_end(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("no answer before the reply timeout (14 s)\n{}", log()))
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 503"),
        "503 for the request waiting when NATS went: {answer}"
    );
    assert!(
        killed.elapsed() < Duration::from_secs(2),
        "503 took {:?}",
        killed.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        let (status, line) = healthcheck(&listen);
        if !status.success() {
            assert_eq!(status.code(), Some(1));
            break line;
        }
        assert!(Instant::now() < deadline, "never not ready\n{}", log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(line, "not connected to NATS");

    // NATS back: once ingress and the silent taker have reconnected, a webhook in flight again.
    nats.restart(Duration::ZERO).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !healthcheck(&listen).0.success() {
        assert!(Instant::now() < deadline, "never ready again\n{}", log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while silent.connection_state() != async_nats::connection::State::Connected {
        assert!(Instant::now() < deadline, "the taker never reconnected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    silent.flush().await.unwrap();
    let mut stream = send(port, &mut taken).await;

    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let signalled = Instant::now();
    // SAFETY: kill(2) with our child's pid and a valid signal number.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_millis(3500),
            "still running after SIGTERM:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = signalled.elapsed();
    let log = log();
    assert!(
        took >= Duration::from_secs(2),
        "the request was given the bound: {took:?}"
    );
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("shutdown timeout (2 s) reached")
                && l.contains("abandoned 1 webhook requests in flight")),
        "{log}"
    );
    // The client got no answer: the connection closed with the process.
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    let _ = std::fs::remove_file(&log_path);
}

/// `ingress run` on 127.0.0.1:`port` with METRICS_ADDR on `metrics_port` and `settings`,
/// once `healthcheck` says it is ready.
async fn spawn_ready(
    nats: &NatsServer,
    prefix: &str,
    port: u16,
    metrics_port: u16,
    settings: &[(&str, &str)],
) -> std::process::Child {
    let child = Command::new(BIN)
        .env_clear()
        .env("NATS_URL", nats.url())
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
        .env("SWITCHBOARD_SUBJECT_PREFIX", prefix)
        .envs(settings.iter().copied())
        .arg("run")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !healthcheck(&format!("127.0.0.1:{port}")).0.success() {
        assert!(Instant::now() < deadline, "ingress never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child
}

/// One HTTP/1.1 request to `port` on 127.0.0.1 with `Connection: close`: the whole answer.
async fn http(port: u16, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Requests are counted by route and status on METRICS_ADDR (and only there: the public port
/// has no /metrics); one that no worker answers is counted by why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_on_the_metrics_port_only() {
    let nats = NatsServer::start().await.unwrap();
    let prefix = unique("sbm");
    let port = switchboard_test_support::free_port();
    let metrics_port = switchboard_test_support::free_port();
    // A worker that answers every webhook with 200 and an empty body.
    let worker = nats.client().await.unwrap();
    let mut requests = worker
        .subscribe(format!("{prefix}.webhook.request"))
        .await
        .unwrap();
    worker.flush().await.unwrap();
    let replier = tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            let reply = switchboard_wire::encode(&switchboard_wire::WebhookReply::status(200));
            worker
                .publish(request.reply.unwrap(), reply.into())
                .await
                .unwrap();
        }
    });
    let mut child = spawn_ready(&nats, &prefix, port, metrics_port, &[]).await;

    let post = |path: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\nBody=hi"
        )
    };
    for _ in 0..3 {
        let answer = http(port, &post("/webhooks/abc")).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    // Nothing listens on the status-callback subject: no responders, 503 at once.
    let answer = http(port, &post("/twilio/status")).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let public = http(
        port,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(public.starts_with("HTTP/1.1 404"), "{public}");

    let answer = http(
        metrics_port,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("content-type: application/openmetrics-text"),
        "{answer}"
    );
    let count = |route: &str, status: u16| {
        metric(
            &answer,
            &format!(
                "http_server_request_duration_seconds_count{{http_request_method=\"POST\",http_route=\"{route}\",http_response_status_code=\"{status}\"}}"
            ),
        )
    };
    assert_eq!(count("/webhooks/{guid}", 200), Some(3.0), "{answer}");
    assert_eq!(count("/twilio/status", 503), Some(1.0), "{answer}");
    assert_eq!(
        metric(
            &answer,
            "switchboard_ingress_unanswered_total{reason=\"nats\"}"
        ),
        Some(1.0),
        "{answer}"
    );
    assert!(
        metric(&answer, "process_resident_memory_bytes").unwrap() > 0.0,
        "{answer}"
    );
    let health = http(
        metrics_port,
        "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    child.kill().unwrap();
    let _ = child.wait();
    replier.abort();
}

/// What an internet-facing server must do with slow and too many clients: headers or a body
/// trickled past their timeouts are cut off (before, 500 connections with unfinished headers
/// were all still open after 45 s), and a request over the concurrency cap is answered 503 at
/// once instead of queueing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_excess_requests_shed() {
    let nats = NatsServer::start().await.unwrap();
    let prefix = unique("sbs");
    let port = switchboard_test_support::free_port();
    let metrics_port = switchboard_test_support::free_port();
    // A worker that takes webhook requests and never answers: each holds a request slot.
    let silent = nats.client().await.unwrap();
    let mut taken = silent
        .subscribe(format!("{prefix}.webhook.request"))
        .await
        .unwrap();
    silent.flush().await.unwrap();
    let settings = [
        ("REPLY_TIMEOUT_MS", "14000"),
        ("HEADER_READ_TIMEOUT_MS", "500"),
        ("BODY_READ_TIMEOUT_MS", "500"),
        ("MAX_CONCURRENT_REQUESTS", "2"),
    ];
    let mut child = spawn_ready(&nats, &prefix, port, metrics_port, &settings).await;

    // 50 clients that never finish their headers: all closed after the timeout.
    let mut trickling = Vec::new();
    for _ in 0..50 {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        stream
            .write_all(b"POST /webhooks/abc HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        trickling.push(stream);
    }
    let started = Instant::now();
    for mut stream in trickling {
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
            .await
            .expect("a connection with unfinished headers is closed")
            .ok();
    }
    assert!(started.elapsed() < Duration::from_secs(5));

    // A body announced at 100 bytes, 10 sent: 408 after the body timeout, then closed.
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(b"POST /webhooks/abc HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nBody=hello")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("a trickled body is cut off")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // Two requests the silent worker holds fill the cap; the third is shed at once.
    let post = "POST /webhooks/abc HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\nBody=hi";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        stream.write_all(post.as_bytes()).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), taken.next())
            .await
            .expect("the request reached NATS")
            .unwrap();
        held.push(stream);
    }
    let shed_at = Instant::now();
    let answer = http(port, post).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(
        shed_at.elapsed() < Duration::from_secs(2),
        "shed at once: {:?}",
        shed_at.elapsed()
    );
    let exposed = http(
        metrics_port,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        metric(
            &exposed,
            "switchboard_ingress_unanswered_total{reason=\"overloaded\"}"
        ),
        Some(1.0),
        "{exposed}"
    );
    drop(held);
    child.kill().unwrap();
    let _ = child.wait();
}
