//! Start, readiness and stop of the real binary: `/readyz` and `healthcheck` follow NATS, a
//! SIGTERM ends the process within SHUTDOWN_TIMEOUT_SECS even when NATS is gone, and `run`
//! refuses to start without the master key or with one that does not decrypt the stored
//! credentials.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use switchboard_store::{MasterKey, Store};
use switchboard_telemetry::health::{PROBE_TIMEOUT, probe_readyz};
use switchboard_test_support::{
    ACCOUNT_SID, AUTH_TOKEN, MASTER_KEY, NatsServer, fresh_database, unique,
};

const BIN: &str = env!("CARGO_BIN_EXE_behavior-worker");

/// Another valid key than [`MASTER_KEY`].
const OTHER_KEY: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

/// The shutdown bound the tests give the worker.
const SHUTDOWN_TIMEOUT_SECS: u64 = 3;

/// What the process may take beyond the bound: the signal's delivery and the exit itself.
const SLACK: Duration = Duration::from_millis(1500);

/// A free port on 127.0.0.1 for METRICS_ADDR.
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A migrated database holding the test account, saved with [`MASTER_KEY`].
async fn database_with_an_account() -> String {
    switchboard_test_support::init();
    let (url, pool) = fresh_database().await.expect("a test database");
    let store = Store::new(pool, Some(MasterKey::parse(MASTER_KEY).unwrap()));
    store
        .add_account("twilio", ACCOUNT_SID, &SecretString::from(AUTH_TOKEN))
        .await
        .unwrap();
    url
}

/// `behavior-worker` with only the environment given (and PATH); its stderr in a file.
struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Worker {
        let log = std::env::temp_dir().join(unique("sb-worker-log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(BIN);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        for (k, v) in env {
            command.env(k, v);
        }
        Worker {
            child: command.spawn().expect("behavior-worker starts"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn sigterm(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) with a child's pid and a valid signal number.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    }

    /// Waits at most `bound` for the exit.
    async fn exit_within(&mut self, bound: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The environment of `behavior-worker run` against `nats` and `database_url`.
fn run_env(nats: &NatsServer, database_url: &str, metrics: SocketAddr) -> Vec<(String, String)> {
    vec![
        ("NATS_URL".into(), nats.url()),
        ("DATABASE_URL".into(), database_url.into()),
        ("SWITCHBOARD_MASTER_KEY".into(), MASTER_KEY.into()),
        // The test suite's public key: refused without this (tests only).
        ("SWITCHBOARD_ALLOW_TEST_KEY".into(), "1".into()),
        ("SWITCHBOARD_SUBJECT_PREFIX".into(), unique("sbw")),
        ("METRICS_ADDR".into(), metrics.to_string()),
        (
            "SHUTDOWN_TIMEOUT_SECS".into(),
            SHUTDOWN_TIMEOUT_SECS.to_string(),
        ),
    ]
}

fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// GET `path` from `addr`: the whole answer, status line first.
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Polls `/readyz` until `accept` takes its answer, failing with the log after 30 s.
async fn readyz_until(
    worker: &Worker,
    addr: SocketAddr,
    what: &str,
    accept: impl Fn(&Result<String, String>) -> bool,
) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = probe_readyz(addr, PROBE_TIMEOUT).await;
        if accept(&answer) {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "never {what}: last {answer:?}; log:\n{}",
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `behavior-worker healthcheck` with `env`: its exit status and its output, trimmed.
fn healthcheck(env: &[(&str, &str)]) -> (ExitStatus, String) {
    let out = Command::new(BIN)
        .env_clear()
        .envs(env.iter().copied())
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

/// Ready once subscribed; `/readyz` and `healthcheck` (METRICS_ADDR set, `0.0.0.0` probed on
/// loopback) say when NATS is gone; and a SIGTERM then still ends the process within the
/// shutdown bound, with status 1 and a line naming what was abandoned (before this bound it
/// waited for NATS forever).
#[tokio::test]
async fn with_nats_gone_readiness_says_so_and_sigterm_still_exits_within_the_bound() {
    let mut nats = NatsServer::start().await.unwrap();
    let database_url = database_with_an_account().await;
    let metrics = free_addr();
    let env = run_env(&nats, &database_url, metrics);
    let mut worker = Worker::spawn(&["run"], &pairs(&env));

    let ready = readyz_until(&worker, metrics, "ready", Result::is_ok).await;
    assert_eq!(ready, Ok("ready".into()));
    // The same port serves the metrics (a labelled family shows once it has a series: here
    // only the unlabelled ones, before any webhook).
    let exposed = get(metrics, "/metrics").await;
    assert!(exposed.starts_with("HTTP/1.1 200"), "{exposed}");
    for family in [
        "switchboard_message_log_write_duration_seconds_count 0",
        "# TYPE process_resident_memory_bytes gauge",
    ] {
        assert!(exposed.contains(family), "{family}:\n{exposed}");
    }
    let probe_env = [("METRICS_ADDR", &*format!("0.0.0.0:{}", metrics.port()))];
    let (status, line) = healthcheck(&probe_env);
    assert!(status.success(), "{line}");
    assert_eq!(line, "ready");

    nats.kill();
    let not_ready = readyz_until(&worker, metrics, "not ready", Result::is_err).await;
    let why = not_ready.unwrap_err();
    assert!(why.starts_with("not ready: NATS: not connected"), "{why}");
    let (status, line) = healthcheck(&probe_env);
    assert_eq!(status.code(), Some(1), "{line}");
    assert!(line.starts_with("not ready: NATS: not connected"), "{line}");
    assert_eq!(line.lines().count(), 1, "one line: {line}");

    let signalled = Instant::now();
    worker.sigterm();
    let bound = Duration::from_secs(SHUTDOWN_TIMEOUT_SECS) + SLACK;
    let status = worker.exit_within(bound).await;
    let took = signalled.elapsed();
    let log = worker.log();
    let status = status.unwrap_or_else(|| panic!("still running {took:?} after SIGTERM:\n{log}"));
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("abandoned") && l.contains("not confirmed by NATS")),
        "a line names what was abandoned:\n{log}"
    );
}

/// With NATS and PostgreSQL up, a SIGTERM drains and exits 0 promptly.
#[tokio::test]
async fn sigterm_with_everything_up_exits_zero() {
    let nats = NatsServer::start().await.unwrap();
    let database_url = database_with_an_account().await;
    let metrics = free_addr();
    let env = run_env(&nats, &database_url, metrics);
    let mut worker = Worker::spawn(&["run"], &pairs(&env));
    readyz_until(&worker, metrics, "ready", Result::is_ok)
        .await
        .unwrap();
    worker.sigterm();
    let status = worker
        .exit_within(Duration::from_secs(SHUTDOWN_TIMEOUT_SECS) + SLACK)
        .await;
    let log = worker.log();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
    assert!(log.contains("SIGTERM received"), "{log}");
}

/// The error line of a process that refused to start: `Error: …`, alone on its line.
fn error_line(log: &str) -> &str {
    log.lines()
        .find(|l| l.starts_with("Error: "))
        .unwrap_or_else(|| panic!("no error line:\n{log}"))
}

/// No key, no start: one line saying how to make one. A key that does not decrypt the stored
/// credentials: no start either, naming the account.
#[tokio::test]
async fn run_requires_the_master_key_the_credentials_were_saved_with() {
    let nats = NatsServer::start().await.unwrap();
    let database_url = database_with_an_account().await;
    let mut env = run_env(&nats, &database_url, free_addr());
    env.retain(|(k, _)| k != "SWITCHBOARD_MASTER_KEY");

    let mut worker = Worker::spawn(&["run"], &pairs(&env));
    let status = worker.exit_within(Duration::from_secs(10)).await;
    let log = worker.log();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{log}");
    let line = error_line(&log);
    assert!(
        line.starts_with("Error: SWITCHBOARD_MASTER_KEY is not set: behavior-worker run"),
        "{line}"
    );
    assert!(line.contains("`openssl rand -base64 32`"), "{line}");

    env.push(("SWITCHBOARD_MASTER_KEY".into(), OTHER_KEY.into()));
    let mut worker = Worker::spawn(&["run"], &pairs(&env));
    let status = worker.exit_within(Duration::from_secs(10)).await;
    let log = worker.log();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{log}");
    let line = error_line(&log);
    assert!(
        line.starts_with(
            "Error: SWITCHBOARD_MASTER_KEY does not decrypt the stored credentials of account 1 ('twilio'): it differs from the key they were saved with"
        ),
        "{line}"
    );
}

/// PostgreSQL unreachable at start: the key cannot be checked, the worker starts anyway (not
/// ready: `/readyz` names PostgreSQL) and still stops within the bound.
#[tokio::test]
async fn without_postgresql_the_worker_starts_not_ready_and_stops_in_time() {
    let nats = NatsServer::start().await.unwrap();
    // Nothing listens there.
    let closed = free_addr();
    let database_url = format!("postgres://postgres@{closed}/nowhere");
    let metrics = free_addr();
    let env = run_env(&nats, &database_url, metrics);
    let mut worker = Worker::spawn(&["run"], &pairs(&env));
    let why = readyz_until(&worker, metrics, "answering", |a| {
        a.as_ref().is_err_and(|e| e.starts_with("not ready"))
    })
    .await
    .unwrap_err();
    assert!(why.contains("PostgreSQL: "), "{why}");
    assert!(!why.contains("NATS"), "NATS is up and subscribed: {why}");
    assert!(
        worker.log().contains("SWITCHBOARD_MASTER_KEY not checked"),
        "{}",
        worker.log()
    );
    worker.sigterm();
    let status = worker
        .exit_within(Duration::from_secs(SHUTDOWN_TIMEOUT_SECS) + SLACK)
        .await;
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", worker.log());
}
