//! The `ingress` binary as a container runs it, over a private nats-server: `healthcheck`, and
//! a SIGTERM that ends the process within SHUTDOWN_TIMEOUT_SECS even when a webhook's reply
//! never comes and NATS is gone.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use switchboard_test_support::{NatsServer, unique};
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
/// nats-server killed: `healthcheck` says not ready, and a SIGTERM ends the process when the
/// bound passes, with status 1 and a line counting the abandoned request.
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

    // Takes the webhook request and never replies.
    let silent = nats.client().await.unwrap();
    let mut taken = silent
        .subscribe(format!("{prefix}.webhook.request"))
        .await
        .unwrap();
    silent.flush().await.unwrap();
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(b"POST /webhooks/abc HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\nBody=hi")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), taken.next())
        .await
        .expect("the request reached NATS")
        .unwrap();

    nats.kill();
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
