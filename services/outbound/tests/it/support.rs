//! Test support: the outbound service started with its production `run` over a private
//! `nats-server`, a fresh migrated database and a real `twilio-fake` (its admin API drives the
//! faults and counts what it received), from `switchboard-test-support`, with every job event
//! collected.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use futures::StreamExt;
use outbound::OutboundConfig;
use serde_json::{Value as Json, json};
use switchboard_store::{MasterKey, Store};
pub use switchboard_test_support::{ACCOUNT_SID, AUTH_TOKEN, MASTER_KEY, NatsServer, unique};
use switchboard_test_support::{fresh_database, sandbox_config, unchecked_sandbox_config};
use switchboard_twilio::client::{Backoff, ClientConfig, TwilioClient};
use switchboard_wire::outbound::{EventKind, HEADER_MSG_ID, HEADER_REPLY_TO, JobEvent};

pub const ACCOUNT_NAME: &str = "acme";
pub const FROM: &str = "+15005550006";

/// A generous bound on anything a test waits for.
pub const WAIT: Duration = Duration::from_secs(60);

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
        // No OpenAPI check: the fake's answers are what these tests are about.
        Harness::with_sandbox(unchecked_sandbox_config()).await
    }

    /// Like [`Harness::new`], with the sandbox checking every request against Twilio's official
    /// OpenAPI descriptions.
    pub async fn new_with_openapi() -> anyhow::Result<Harness> {
        Harness::with_sandbox(sandbox_config()).await
    }

    async fn with_sandbox(sandbox: twilio_fake::Config) -> anyhow::Result<Harness> {
        switchboard_test_support::init();
        let nats = NatsServer::start().await?;
        let client = async_nats::connect(nats.url()).await?;
        let js = jetstream::new(client.clone());
        let (database_url, pool) = fresh_database().await?;
        let store = Store::new(pool, Some(MasterKey::parse(MASTER_KEY)?));
        let account = store
            .add_account(
                ACCOUNT_NAME,
                ACCOUNT_SID,
                &secrecy::SecretString::from(AUTH_TOKEN),
            )
            .await?;
        let fake = twilio_fake::spawn(sandbox).await?;

        let mut config = OutboundConfig::new(&unique("sbo"));
        config.max_in_flight = 8;
        config.backoff = Backoff {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(100),
            max_attempts: 12,
        };
        config.max_age = Duration::from_secs(600);
        config.request_timeout = Duration::from_secs(5);
        // The sandbox lists a message as soon as it is created (unless a test gives it a
        // `list_lag_ms`): a short settle keeps ambiguous failures quick to resolve.
        config.list_settle = Duration::from_millis(200);
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
            // Twilio calls are timed into the service's metrics, as `main` does.
            observe: Some(self.config.metrics.twilio_observer()),
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
