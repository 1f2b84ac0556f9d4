//! Test support for Switchboard's end-to-end tests: a private `nats-server` (JetStream on) on a
//! free port, a fresh PostgreSQL database per test, and the services started with their
//! production `run` functions.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use switchboard_store::{MasterKey, Store};
use switchboard_wire::Subjects;

pub mod http;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Installs the rustls provider and the test tracing subscriber (idempotent).
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    switchboard_telemetry::init_for_tests();
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The seed package from `shared/` beside the repository.
pub fn seed_package() -> String {
    let p = repo_root().join("../shared/seed/twilio-bot.package.json");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("seed package at {}: {e}", p.display()))
}

/// A golden body from `tests/golden/seed/`.
pub fn golden(name: &str) -> String {
    let p = repo_root().join("tests/golden/seed").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("golden {}: {e}", p.display()))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private `nats-server` with JetStream, killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    pub store_dir: PathBuf,
}

impl NatsServer {
    pub async fn start() -> anyhow::Result<NatsServer> {
        let port = free_port();
        let store_dir = std::env::temp_dir().join(unique("sb-nats"));
        let mut s = NatsServer {
            child: None,
            port,
            store_dir,
        };
        s.spawn().await?;
        Ok(s)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
        let child = Command::new(&bin)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!("starting {bin} (install Debian's nats-server, or set NATS_SERVER_BIN)")
            })?;
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("nats-server did not start on port {}", self.port)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills and starts the server again on the same port and store.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn().await
    }

    pub async fn client(&self) -> anyhow::Result<async_nats::Client> {
        Ok(async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(self.url())
            .await?)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store_dir);
    }
}

/// Admin URL of the PostgreSQL server tests create databases on.
pub fn admin_database_url() -> String {
    std::env::var("SWITCHBOARD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh, migrated database; dropped at the end of the test process only if asked, since a
/// failing test's data is worth keeping.
pub async fn fresh_database() -> anyhow::Result<(String, sqlx::PgPool)> {
    let admin = admin_database_url();
    let name = unique("sb_e2e");
    let admin_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin)
        .await
        .with_context(|| {
            format!("connecting to PostgreSQL at {admin} (set SWITCHBOARD_TEST_DATABASE_URL)")
        })?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin_pool)
        .await?;
    let url = match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => anyhow::bail!("bad admin URL {admin}"),
    };
    let pool = switchboard_store::connect(&url, 16).await?;
    switchboard_store::migrate(&pool).await?;
    Ok((url, pool))
}

/// A test master key.
pub const MASTER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const AUTH_TOKEN: &str = "e2e-auth-token-0123456789abcdef";
pub const PUBLIC_BASE_URL: &str = "https://bot.example.com";

/// A running behavior worker; stops (gracefully) on [`Worker::stop`].
pub struct Worker {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Worker {
    pub async fn start(store: Store, nats_url: &str, subjects: Subjects) -> anyhow::Result<Worker> {
        let nats = async_nats::connect(nats_url).await?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // Subscribed before we return: requests published from now on reach this worker.
        let started = behavior_worker::start(
            store,
            nats,
            subjects,
            behavior_worker::WorkerOptions::default(),
        )
        .await?;
        let task = tokio::spawn(started.serve(async move {
            let _ = rx.await;
        }));
        Ok(Worker {
            stop: Some(tx),
            task,
        })
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.await?
    }
}

/// A running ingress.
pub struct Ingress {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Ingress {
    pub async fn start(nats_url: &str, config: ingress::IngressConfig) -> anyhow::Result<Ingress> {
        let nats = async_nats::ConnectOptions::new()
            .request_timeout(Some(config.reply_timeout))
            .connect(nats_url)
            .await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(ingress::run(listener, nats, config, async move {
            let _ = rx.await;
        }));
        Ok(Ingress {
            addr,
            stop: Some(tx),
            task,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.await?
    }
}

/// Connects the test Twilio account ([`ACCOUNT_SID`], [`AUTH_TOKEN`]) and returns the prompt
/// answers that import the seed package with it.
pub async fn seed_prompts(
    env: &switchboard::ops::Env,
) -> anyhow::Result<Vec<switchboard::args::KeyValue>> {
    let account = env
        .add_account(
            "twilio",
            ACCOUNT_SID,
            &secrecy::SecretString::from(AUTH_TOKEN),
        )
        .await?;
    Ok([
        format!("twilio_account_id={}", account.id),
        format!("account_sid={ACCOUNT_SID}"),
        "default_from=+15557654321".to_string(),
    ]
    .iter()
    .map(|s| s.parse().expect("NAME=VALUE"))
    .collect())
}

/// Everything a webhook test needs: NATS, a database with the seed package imported through
/// the CLI's import, a connected account, and ingress.
pub struct Stack {
    pub nats: NatsServer,
    pub database_url: String,
    pub store: Store,
    pub subjects: Subjects,
    pub env: switchboard::ops::Env,
    pub guid: String,
    pub webhook_behavior_id: i64,
    pub bot_id: i64,
}

impl Stack {
    pub async fn new() -> anyhow::Result<Stack> {
        init();
        let nats = NatsServer::start().await?;
        let (database_url, pool) = fresh_database().await?;
        let store = Store::new(pool, Some(MasterKey::parse(MASTER_KEY)?));
        let subjects = Subjects::new(&unique("sbt"));
        let env = switchboard::ops::Env {
            store: store.clone(),
            nats: Some(nats.client().await?),
            subjects: subjects.clone(),
            public_base_url: PUBLIC_BASE_URL.into(),
        };
        let prompts = seed_prompts(&env).await?;
        let (report, _) = env.import(&seed_package(), &prompts).await?;
        let guid = report.webhooks[0].guid.clone();
        let webhook_behavior_id = report
            .records
            .iter()
            .find(|r| r.uid == "behavior_43")
            .unwrap()
            .id;
        let bot_id = report
            .records
            .iter()
            .find(|r| r.uid == "bot_twilio")
            .unwrap()
            .id;
        Ok(Stack {
            nats,
            database_url,
            store,
            subjects,
            env,
            guid,
            webhook_behavior_id,
            bot_id,
        })
    }

    pub fn ingress_config(&self) -> ingress::IngressConfig {
        ingress::IngressConfig {
            public_base_url: Some(PUBLIC_BASE_URL.into()),
            subjects: self.subjects.clone(),
            ..Default::default()
        }
    }

    pub async fn worker(&self) -> anyhow::Result<Worker> {
        Worker::start(self.store.clone(), &self.nats.url(), self.subjects.clone()).await
    }

    pub async fn ingress(&self) -> anyhow::Result<Ingress> {
        Ingress::start(&self.nats.url(), self.ingress_config()).await
    }

    /// Runs recorded for the webhook behavior.
    pub async fn runs(&self) -> i64 {
        self.store
            .count_runs(self.webhook_behavior_id)
            .await
            .unwrap()
    }
}

/// A realistic inbound SMS form (docs/twilio.md §1.2), in Twilio's key order.
pub fn inbound_sms(message_sid: &str, from: &str, body: &str) -> Vec<(String, String)> {
    [
        ("ToCountry", "US"),
        ("ToState", "CA"),
        ("SmsMessageSid", message_sid),
        ("NumMedia", "0"),
        ("ToCity", ""),
        ("FromZip", ""),
        ("SmsSid", message_sid),
        ("FromState", "CA"),
        ("SmsStatus", "received"),
        ("FromCity", ""),
        ("Body", body),
        ("FromCountry", "US"),
        ("To", "+15557654321"),
        ("ToZip", ""),
        ("NumSegments", "1"),
        ("ReferralNumMedia", "0"),
        ("MessageSid", message_sid),
        ("AccountSid", ACCOUNT_SID),
        ("From", from),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A fresh `SM…` sid.
pub fn message_sid() -> String {
    let n =
        COUNTER.fetch_add(1, Ordering::Relaxed) as u128 + (std::process::id() as u128) * 1_000_000;
    format!("SM{:032x}", n)
}

/// POSTs a form signed like Twilio (for `PUBLIC_BASE_URL` + path) to ingress.
pub async fn post_signed(
    http: &reqwest::Client,
    ingress: &Ingress,
    guid: &str,
    params: &[(String, String)],
    token: &str,
) -> reqwest::Response {
    let path = format!("/webhooks/{guid}");
    let signed = switchboard_twilio::signature::sign_form(
        token,
        &format!("{PUBLIC_BASE_URL}{path}"),
        params,
    );
    http.post(ingress.url(&path))
        .header("content-type", signed.content_type)
        .header("x-twilio-signature", signed.signature)
        .header("user-agent", "TwilioProxy/1.1")
        .body(signed.body)
        .send()
        .await
        .expect("ingress answers")
}
