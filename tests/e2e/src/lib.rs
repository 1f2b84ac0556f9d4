//! Test support for Switchboard's end-to-end tests: ingress and behavior-worker started with
//! their production `run` functions, and the [`Stack`] (NATS, a database with the seed package
//! imported through the CLI's import, ingress) every webhook test starts from. The pieces every
//! crate's tests share (the private `nats-server`, a fresh database per test, the sandbox,
//! signed webhooks, the fixtures) live in `switchboard-test-support` and are re-exported here.

use std::net::SocketAddr;

use switchboard_store::{MasterKey, Store};
pub use switchboard_test_support::{
    ACCOUNT_SID, AUTH_TOKEN, MASTER_KEY, NatsServer, PUBLIC_BASE_URL, admin_database_url,
    fresh_database, golden, inbound_sms, init, message_sid, repo_root, seed_package, unique,
};
use switchboard_wire::Subjects;

pub mod http;

/// A running behavior worker; stops (gracefully) on [`Worker::stop`].
pub struct Worker {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Worker {
    pub async fn start(store: Store, nats_url: &str, subjects: Subjects) -> anyhow::Result<Worker> {
        Worker::start_with(store, nats_url, subjects, Default::default()).await
    }

    /// [`Worker::start`] with options of the test's choosing.
    pub async fn start_with(
        store: Store,
        nats_url: &str,
        subjects: Subjects,
        options: behavior_worker::WorkerOptions,
    ) -> anyhow::Result<Worker> {
        let nats = async_nats::connect(nats_url).await?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // Subscribed before we return: requests published from now on reach this worker.
        let started = behavior_worker::start(store, nats, subjects, options).await?;
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

/// POSTs a form signed like Twilio (for `PUBLIC_BASE_URL` + path) to ingress.
pub async fn post_signed(
    http: &reqwest::Client,
    ingress: &Ingress,
    guid: &str,
    params: &[(String, String)],
    token: &str,
) -> reqwest::Response {
    post_signed_at(http, &ingress.url(""), guid, params, token).await
}

/// [`post_signed`] to the ingress at `ingress_url` (for tasks that cannot borrow the
/// [`Ingress`]).
pub async fn post_signed_at(
    http: &reqwest::Client,
    ingress_url: &str,
    guid: &str,
    params: &[(String, String)],
    token: &str,
) -> reqwest::Response {
    let path = format!("/webhooks/{guid}");
    switchboard_test_support::post_signed_form(
        http,
        &format!("{ingress_url}{path}"),
        &format!("{PUBLIC_BASE_URL}{path}"),
        params,
        token,
    )
    .await
}
