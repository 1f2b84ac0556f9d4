//! Test support: a private `nats-server` with JetStream, a fresh migrated database, a real
//! `twilio-fake` (its admin API drives the faults and counts what it received), and the
//! outbound service started with its production `run`. The NATS and database helpers follow
//! `tests/e2e` (not a dependency: that crate pulls in every other service).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream;
use futures::StreamExt;
use outbound::OutboundConfig;
use serde_json::{Value as Json, json};
use switchboard_store::sqlx;
use switchboard_store::{MasterKey, Store};
use switchboard_twilio::AccountSid;
use switchboard_twilio::client::{Backoff, ClientConfig, TwilioClient};
use switchboard_wire::outbound::{EventKind, HEADER_MSG_ID, HEADER_REPLY_TO, JobEvent};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub const MASTER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const AUTH_TOKEN: &str = "outbound-auth-token-0123456789ab";
pub const ACCOUNT_NAME: &str = "acme";
pub const FROM: &str = "+15005550006";

/// A generous bound on anything a test waits for.
pub const WAIT: Duration = Duration::from_secs(60);

/// A name unique to this process and call.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
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
    store_dir: PathBuf,
}

impl NatsServer {
    pub async fn start() -> anyhow::Result<NatsServer> {
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            store_dir: std::env::temp_dir().join(unique("sb-outbound-nats")),
        };
        server.spawn().await?;
        Ok(server)
    }

    /// Starts the server process on this port and store directory; answers once it listens.
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
                format!("starting {bin} (install nats-server, or set NATS_SERVER_BIN)")
            })?;
        self.child = Some(child);
        for _ in 0..200 {
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

    /// Kills the server (SIGKILL: no goodbye to its clients) and starts it again on the same
    /// port with the same JetStream store, after `down` without a server.
    pub async fn restart(&mut self, down: Duration) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        tokio::time::sleep(down).await;
        self.spawn().await
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.store_dir);
    }
}

/// A fresh, migrated database on the test PostgreSQL server, and its URL.
pub async fn fresh_database() -> anyhow::Result<(sqlx::PgPool, String)> {
    let admin = std::env::var("SWITCHBOARD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = unique("sb_outbound");
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
    admin_pool.close().await;
    let url = match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => anyhow::bail!("bad admin URL {admin}"),
    };
    let pool = switchboard_store::connect(&url, 16).await?;
    switchboard_store::migrate(&pool).await?;
    Ok((pool, url))
}

/// A send-SMS job for `to` from the test account.
pub fn sms_job(key: &str, to: &str) -> Json {
    json!({
        "version": 1,
        "job_id": format!("job-{key}"),
        "idempotency_key": key,
        "account": {"name": ACCOUNT_NAME},
        "to": to,
        "from": FROM,
        "body": format!("Hello from {key}"),
        "metadata": {"key": key},
    })
}

/// `+1415555` and four digits: a distinct recipient per job, so the sandbox counts per job.
pub fn number(i: usize) -> String {
    format!("+1415555{:04}", i % 10_000)
}

/// The running service.
struct Service {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// NATS, PostgreSQL, the sandbox and the service, with every event collected.
pub struct Harness {
    pub nats: NatsServer,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub store: Store,
    pub fake: twilio_fake::Running,
    pub http: reqwest::Client,
    pub config: OutboundConfig,
    pub account_id: i64,
    /// The test database, for a service started in its own process or through a proxy.
    pub database_url: String,
    events: Arc<Mutex<Vec<JobEvent>>>,
    service: Option<Service>,
}

impl Harness {
    /// Everything but the service, which [`Harness::start`] starts.
    pub async fn new() -> anyhow::Result<Harness> {
        // No OpenAPI directory: the fake's answers are what these tests are about.
        Harness::new_with_openapi(std::env::temp_dir().join("no-twilio-oai")).await
    }

    /// Like [`Harness::new`], with the sandbox checking every request against the official
    /// OpenAPI descriptions in `openapi_dir`.
    pub async fn new_with_openapi(openapi_dir: std::path::PathBuf) -> anyhow::Result<Harness> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        switchboard_telemetry::init_for_tests();
        let nats = NatsServer::start().await?;
        let client = async_nats::connect(nats.url()).await?;
        let js = jetstream::new(client.clone());
        let (pool, database_url) = fresh_database().await?;
        let store = Store::new(pool, Some(MasterKey::parse(MASTER_KEY)?));
        let account = store
            .add_account(
                ACCOUNT_NAME,
                ACCOUNT_SID,
                &secrecy::SecretString::from(AUTH_TOKEN),
            )
            .await?;
        let fake_account = twilio_fake::Account::new(AccountSid::parse(ACCOUNT_SID)?, AUTH_TOKEN);
        let fake = twilio_fake::spawn(twilio_fake::Config::for_tests(
            vec![fake_account],
            openapi_dir,
        ))
        .await?;

        let mut config = OutboundConfig::new(&unique("sbo"));
        config.max_in_flight = 8;
        config.backoff = Backoff {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(100),
            max_attempts: 12,
        };
        config.max_age = Duration::from_secs(600);
        config.request_timeout = Duration::from_secs(5);
        config.drain_timeout = Duration::from_secs(20);
        config.fetch_wait = Duration::from_millis(500);
        // Limits off unless a test is about them (the test sender is a 1-segment/s long code).
        config.limits = outbound::limits::LimitsConfig::off();

        let events = Arc::new(Mutex::new(Vec::new()));
        let mut sub = client
            .subscribe(format!("{}.events.>", prefix(&config)))
            .await?;
        let sink = events.clone();
        tokio::spawn(async move {
            while let Some(message) = sub.next().await {
                if let Ok(event) = serde_json::from_slice::<JobEvent>(&message.payload) {
                    sink.lock().unwrap().push(event);
                }
            }
        });
        client.flush().await?;

        Ok(Harness {
            nats,
            client,
            js,
            store,
            fake,
            http: reqwest::Client::new(),
            config,
            account_id: account.id,
            database_url,
            events,
            service: None,
        })
    }

    /// Starts the service (and, the first time, its streams) and waits until it consumes.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        self.start_with_store(self.store.clone()).await
    }

    /// Like [`Harness::start`], with the service reaching PostgreSQL through `store`.
    pub async fn start_with_store(&mut self, store: Store) -> anyhow::Result<()> {
        let twilio = TwilioClient::new(ClientConfig {
            api_base: self.fake.base_url(),
            lookups_base: self.fake.base_url(),
            request_timeout: self.config.request_timeout,
            ..Default::default()
        })?;
        // The streams exist before the first publish.
        outbound::setup(&self.js, &self.config).await?;
        let nats = async_nats::connect(self.nats.url()).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(outbound::run(
            self.config.clone(),
            store,
            nats,
            twilio,
            async move {
                let _ = stopped.await;
            },
        ));
        self.service = Some(Service { stop, task });
        Ok(())
    }

    /// Stops the service gracefully and waits until `run` returned.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(service) = self.service.take() {
            let _ = service.stop.send(());
            tokio::time::timeout(WAIT, service.task).await???;
        }
        Ok(())
    }

    /// Publishes a job as the contract says (JetStream publish, `Nats-Msg-Id` = its key);
    /// answers whether JetStream called it a duplicate.
    pub async fn publish(&self, job: &Json) -> anyhow::Result<bool> {
        let key = job["idempotency_key"].as_str();
        self.publish_raw(serde_json::to_vec(job)?, key, None).await
    }

    /// Publishes any payload, with an optional `Nats-Msg-Id` and `Switchboard-Reply-To`.
    pub async fn publish_raw(
        &self,
        payload: Vec<u8>,
        msg_id: Option<&str>,
        reply_to: Option<&str>,
    ) -> anyhow::Result<bool> {
        let subject = self.config.subjects.sms_send();
        self.publish_to(&subject, payload, msg_id, reply_to).await
    }

    /// Publishes any payload to `subject`, with an optional `Nats-Msg-Id` and
    /// `Switchboard-Reply-To`.
    pub async fn publish_to(
        &self,
        subject: &str,
        payload: Vec<u8>,
        msg_id: Option<&str>,
        reply_to: Option<&str>,
    ) -> anyhow::Result<bool> {
        let mut headers = HeaderMap::new();
        if let Some(id) = msg_id {
            headers.insert(HEADER_MSG_ID, id);
        }
        if let Some(subject) = reply_to {
            headers.insert(HEADER_REPLY_TO, subject);
        }
        let ack = self
            .js
            .publish_with_headers(subject.to_owned(), headers, payload.into())
            .await?
            .await?;
        Ok(ack.duplicate)
    }

    /// Every event collected for a job.
    pub fn events_of(&self, job_id: &str) -> Vec<JobEvent> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.job_id == job_id)
            .cloned()
            .collect()
    }

    /// Waits until every job has a final event; answers them by job id.
    pub async fn wait_final(&self, job_ids: &[String]) -> HashMap<String, JobEvent> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let finals: HashMap<String, JobEvent> = self
                .events
                .lock()
                .unwrap()
                .iter()
                .filter(|e| e.kind.is_final() && job_ids.contains(&e.job_id))
                .map(|e| (e.job_id.clone(), e.clone()))
                .collect();
            if finals.len() == job_ids.len() {
                return finals;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {} jobs ended: {:?}",
                finals.len(),
                job_ids.len(),
                self.events.lock().unwrap().len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the consumer holds nothing: every job published so far was acknowledged.
    pub async fn wait_idle(&self) {
        self.wait_consumer_idle(switchboard_wire::outbound::OUTBOUND_CONSUMER)
            .await
    }

    /// Waits until the durable consumer `name` holds nothing.
    pub async fn wait_consumer_idle(&self, name: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mut consumer: jetstream::consumer::PullConsumer = self
                .js
                .get_consumer_from_stream(name, self.config.subjects.job_stream())
                .await
                .unwrap();
            let info = consumer.info().await.unwrap();
            if info.num_pending == 0 && info.num_ack_pending == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "consumer never idle: {info:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The dead-letter stream's messages, oldest first.
    pub async fn dead_letters(&self) -> Vec<jetstream::message::StreamMessage> {
        let mut stream = self
            .js
            .get_stream(self.config.subjects.dead_letter_stream())
            .await
            .unwrap();
        let last = stream.info().await.unwrap().state.last_sequence;
        let mut out = Vec::new();
        for seq in 1..=last {
            if let Ok(message) = stream.get_raw_message(seq).await {
                out.push(message);
            }
        }
        out
    }

    /// `PUT` to the sandbox's admin API.
    pub async fn fake_put(&self, path: &str, body: Json) {
        let response = self
            .http
            .put(format!("{}/_fake/{path}", self.fake.base_url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "PUT {path}: {}",
            response.status()
        );
    }

    /// `GET` from the sandbox's admin API.
    pub async fn fake_get(&self, path: &str) -> Json {
        self.http
            .get(format!("{}/_fake/{path}", self.fake.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Messages the sandbox created, counted by recipient.
    pub async fn created_by_recipient(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        let messages = self.fake_get("messages").await;
        for m in messages.as_array().expect("a list of messages") {
            let to = m["message"]["to"].as_str().unwrap_or_default().to_owned();
            *counts.entry(to).or_default() += 1;
        }
        counts
    }

    /// Create requests (any answer) the sandbox received, counted by recipient.
    pub async fn create_requests_by_recipient(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        let requests = self.fake_get("requests?method=POST").await;
        for r in requests.as_array().expect("a list of requests") {
            if r["operation"] != "CreateMessage" {
                continue;
            }
            let to = r["form"]
                .as_array()
                .and_then(|f| f.iter().find(|p| p[0] == "To"))
                .and_then(|p| p[1].as_str())
                .unwrap_or_default()
                .to_owned();
            *counts.entry(to).or_default() += 1;
        }
        counts
    }

    /// Final events of one kind for a job.
    pub fn count_kind(&self, job_id: &str, kind: EventKind) -> usize {
        self.events_of(job_id)
            .iter()
            .filter(|e| e.kind == kind)
            .count()
    }
}

pub fn prefix(config: &OutboundConfig) -> String {
    // `{prefix}.jobs.sms.send` → `{prefix}`.
    config
        .subjects
        .sms_send()
        .trim_end_matches(".jobs.sms.send")
        .to_owned()
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(service) = self.service.take() {
            let _ = service.stop.send(());
            service.task.abort();
        }
    }
}
