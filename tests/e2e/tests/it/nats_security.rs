//! NATS with authentication and least privilege, against a real `nats-server` started with the
//! deployment's own configuration file (deploy/nats/nats-server.conf, passwords from the
//! environment, quoted as docker-compose.yml quotes them): every service works connected as its
//! own user through the services' own `NatsArgs`; a client without credentials is refused; each
//! user is confined to its subjects (docs/nats-security.md); a `Switchboard-Reply-To` outside
//! `_INBOX.` is refused by the outbound service.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt as _;
use secrecy::SecretString;
use switchboard_e2e::{
    MASTER_KEY, NatsServer, fresh_database, golden, inbound_sms, init, message_sid, repo_root,
    seed_package, seed_prompts,
};
use switchboard_store::{MasterKey, Store};
use switchboard_telemetry::args::NatsArgs;
use switchboard_telemetry::health::ReadyFlag;
use switchboard_test_support::unchecked_sandbox_config;
use switchboard_twilio::client::{ClientConfig, TwilioClient};
use switchboard_wire::Subjects;
use switchboard_wire::outbound::{
    EventKind, HEADER_MSG_ID, HEADER_REPLY_TO, JobEvent, JobSubjects,
};

const WAIT: Duration = Duration::from_secs(60);

/// The users of deploy/nats/nats-server.conf and the variables their passwords come from.
const USERS: [(&str, &str); 5] = [
    ("ingress", "NATS_INGRESS_PASSWORD"),
    ("behavior-worker", "NATS_WORKER_PASSWORD"),
    ("outbound", "NATS_OUTBOUND_PASSWORD"),
    ("cli", "NATS_CLI_PASSWORD"),
    ("integrator", "NATS_INTEGRATOR_PASSWORD"),
];

/// A `nats-server` running deploy/nats/nats-server.conf, each user with a password of its own.
struct Secured {
    server: NatsServer,
    passwords: Vec<(&'static str, String)>,
}

/// A client and what the server told it (refusals, permission violations), lower-cased.
struct Connection {
    client: async_nats::Client,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Connection {
    /// Waits (at most 5 s) for a server error containing `text` (lower case).
    async fn expect_error(&self, text: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if self.errors.lock().unwrap().iter().any(|e| e.contains(text)) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected a server error containing {text:?}, got {:?}",
                self.errors.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The server errors so far (after a round trip, so earlier ones have arrived).
    async fn errors(&self) -> Vec<String> {
        self.client.flush().await.unwrap();
        self.errors.lock().unwrap().clone()
    }
}

impl Secured {
    async fn start() -> Secured {
        init();
        let config = std::fs::read_to_string(repo_root().join("deploy/nats/nats-server.conf"))
            .expect("deploy/nats/nats-server.conf");
        // Passwords nats-server would read as numbers without the quotes (1e5…).
        let passwords: Vec<(&str, String)> = USERS
            .iter()
            .enumerate()
            .map(|(i, (user, _))| (*user, format!("1e5{i}-{}", switchboard_e2e::unique("pw"))))
            .collect();
        let env: Vec<(String, String)> = USERS
            .iter()
            .zip(&passwords)
            .map(|((_, var), (_, password))| ((*var).to_owned(), format!("\"{password}\"")))
            .collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let server = NatsServer::start_with_config_env(&config, &env)
            .await
            .expect("nats-server runs deploy/nats/nats-server.conf");
        Secured { server, passwords }
    }

    fn password(&self, user: &str) -> &str {
        &self
            .passwords
            .iter()
            .find(|(u, _)| *u == user)
            .expect("a user of the configuration")
            .1
    }

    /// The options a service started with NATS_USER=`user` and its password would have.
    fn args(&self, user: &str) -> NatsArgs {
        NatsArgs {
            nats_user: Some(user.to_owned()),
            nats_password: Some(SecretString::from(self.password(user))),
            ..NatsArgs::new(&self.server.url())
        }
    }

    /// Connects as `user` the way service `service` does (`NatsArgs::connect_options`, so with
    /// its reply prefix `_INBOX_{service}`), recording server errors.
    async fn connect_args(&self, args: &NatsArgs, service: &str) -> Connection {
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        let (options, plan) = args.connect_options(service).await.unwrap();
        let client = options
            .request_timeout(Some(Duration::from_secs(5)))
            .event_callback(move |event| {
                let sink = sink.clone();
                async move {
                    if let async_nats::Event::ServerError(e) = event {
                        sink.lock().unwrap().push(e.to_string().to_lowercase());
                    }
                }
            })
            .connect(plan.servers)
            .await
            .unwrap_or_else(|e| panic!("{service} connects: {e}"));
        Connection { client, errors }
    }

    async fn connect(&self, user: &str, service: &str) -> Connection {
        self.connect_args(&self.args(user), service).await
    }

    /// The integrator as an outside system connects: its client's default reply prefix `_INBOX`.
    async fn integrator(&self) -> Connection {
        let mut args = self.args("integrator");
        args.nats_inbox_prefix = Some("_INBOX".into());
        self.connect_args(&args, "integrator").await
    }
}

/// A send-SMS job as an integrator publishes it.
fn sms_job(key: &str, to: &str, body: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "version": 1,
        "job_id": key,
        "idempotency_key": key,
        "account": {"name": "twilio"},
        "to": to,
        "from": "+15005550006",
        "body": body,
    }))
    .unwrap()
}

/// JetStream-publishes a job with `Nats-Msg-Id` and optionally `Switchboard-Reply-To`.
async fn publish_job(
    client: &async_nats::Client,
    subject: &str,
    key: &str,
    payload: Vec<u8>,
    reply_to: Option<&str>,
) -> anyhow::Result<jetstream::publish::PublishAck> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(HEADER_MSG_ID, key);
    if let Some(reply_to) = reply_to {
        headers.insert(HEADER_REPLY_TO, reply_to);
    }
    let js = jetstream::new(client.clone());
    Ok(js
        .publish_with_headers(subject.to_owned(), headers, payload.into())
        .await?
        .await?)
}

/// The sandbox's messages to `to`.
async fn sandbox_messages(fake: &twilio_fake::Running, to: &str) -> Vec<serde_json::Value> {
    let all: Vec<serde_json::Value> = reqwest::get(format!("{}/_fake/messages", fake.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    all.into_iter()
        .filter(|m| m["message"]["to"] == to)
        .collect()
}

/// Waits until `check` holds (at most [`WAIT`]).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every service connected as its own user: the CLI imports the seed (announcing the change),
/// a signed webhook goes through ingress to a worker and is answered, an integrator's send job
/// goes through the outbound service to the sandbox with its outcome on its reply inbox, the
/// sandbox's delivery callback comes back through ingress and the worker as a `status` event,
/// the CLI runs the seed's Send SMS macro (worker → outbound HTTP → sandbox) and sends a job
/// with `--wait`, and reads the events and dead letters as `jobs show` and `dlq list` do. No
/// service's connection got a permission violation on the way. An integrator's job whose
/// Switchboard-Reply-To points at a service subject is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_works_as_its_own_user() {
    let nats = Secured::start().await;
    let subjects = Subjects::default();
    let jobs = JobSubjects::from(&subjects);
    let (_database_url, pool) = fresh_database().await.unwrap();
    let store = Store::new(pool, Some(MasterKey::parse(MASTER_KEY).unwrap()));

    // The CLI imports the seed package; the change is announced on NATS as the cli user.
    let cli = nats.connect("cli", "switchboard-cli").await;
    let env = switchboard::ops::Env {
        store: store.clone(),
        nats: Some(cli.client.clone()),
        subjects: subjects.clone(),
        public_base_url: "http://127.0.0.1".into(),
    };
    let prompts = seed_prompts(&env).await.unwrap();
    let (report, _) = env.import(&seed_package(), &prompts).await.unwrap();
    let guid = report.webhooks[0].guid.clone();

    // behavior-worker.
    let worker = nats.connect("behavior-worker", "behavior-worker").await;
    let started = behavior_worker::start(
        store.clone(),
        worker.client.clone(),
        subjects.clone(),
        // With the run log, as the binary runs by default: the stream, its writer's consumer
        // and the direct gets are used as the behavior-worker user.
        behavior_worker::WorkerOptions {
            run_log: Some(Default::default()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (stop_worker, worker_stopped) = tokio::sync::oneshot::channel::<()>();
    let worker_task = tokio::spawn(started.serve(async move {
        let _ = worker_stopped.await;
    }));
    // Bot keys (`_set_key`, `_get_key`): the worker created its bucket at start, and reads,
    // writes, expires and deletes keys there as its own user.
    let keys = behavior_worker::keys::BotKeys::open(&worker.client, &Default::default())
        .await
        .unwrap();
    keys.set(1, "phone:+15551234567", "3", 0).await.unwrap();
    assert_eq!(
        keys.get(1, "phone:+15551234567", 0)
            .await
            .unwrap()
            .as_deref(),
        Some("3")
    );
    keys.set(1, "expired", "x", 1).await.unwrap();
    assert_eq!(keys.get(1, "expired", 2).await.unwrap(), None);
    keys.set(1, "phone:+15551234567", "", 0).await.unwrap();
    assert_eq!(keys.get(1, "phone:+15551234567", 0).await.unwrap(), None);

    // ingress, checking signatures against the address it is called at (the sandbox's
    // callbacks are signed for it).
    let ingress = nats.connect("ingress", "ingress").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ingress_url = format!("http://{}", listener.local_addr().unwrap());
    let (stop_ingress, ingress_stopped) = tokio::sync::oneshot::channel::<()>();
    let ingress_task = tokio::spawn(ingress::run(
        listener,
        ingress.client.clone(),
        ingress::IngressConfig {
            public_base_url: None,
            subjects: subjects.clone(),
            ..Default::default()
        },
        async move {
            let _ = ingress_stopped.await;
        },
    ));

    // outbound: jobs (creating the streams and consumers as the outbound user) and behaviors'
    // HTTP requests, against the sandbox.
    let fake = twilio_fake::spawn(unchecked_sandbox_config())
        .await
        .unwrap();
    let outbound_nats = nats.connect("outbound", "outbound").await;
    let mut config = outbound::OutboundConfig::new(subjects.prefix());
    config.status_callback_url = Some(format!("{ingress_url}{}", outbound::STATUS_CALLBACK_PATH));
    config.fetch_wait = Duration::from_millis(500);
    config.request_timeout = Duration::from_secs(5);
    config.limits = outbound::limits::LimitsConfig::off();
    let consuming = ReadyFlag::default();
    config.ready = consuming.clone();
    let twilio = TwilioClient::new(ClientConfig {
        api_base: fake.base_url(),
        lookups_base: fake.base_url(),
        request_timeout: config.request_timeout,
        ..Default::default()
    })
    .unwrap();
    let (stop_outbound, outbound_stopped) = tokio::sync::oneshot::channel::<()>();
    let outbound_task = tokio::spawn(outbound::run(
        config,
        store.clone(),
        outbound_nats.client.clone(),
        twilio,
        async move {
            let _ = outbound_stopped.await;
        },
    ));
    let http_config = outbound::http::HttpConfig::new(subjects.prefix())
        .with_twilio_bases(&fake.base_url(), &fake.base_url())
        .unwrap();
    let http_service =
        outbound::http::start(http_config, store.clone(), outbound_nats.client.clone())
            .await
            .unwrap();
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http_task = tokio::spawn(http_service.serve(async move {
        let _ = http_stopped.await;
    }));
    eventually("outbound consumes", || {
        let ready = consuming.is_set();
        async move { ready }
    })
    .await;

    // A signed webhook through ingress, answered by the worker.
    let http = reqwest::Client::new();
    let path = format!("/webhooks/{guid}");
    let sid = message_sid();
    let form = inbound_sms(&sid, "+15551234567", "help");
    // Twice: the repeat is recognised by the run log and gets the first answer.
    for _ in 0..2 {
        let response = switchboard_test_support::post_signed_form(
            &http,
            &format!("{ingress_url}{path}"),
            &format!("{ingress_url}{path}"),
            &form,
            switchboard_e2e::AUTH_TOKEN,
        )
        .await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), golden("help.xml"));
    }
    // The run log's writer copied it to PostgreSQL, once.
    eventually("the webhook written behind to PostgreSQL", || {
        let (store, sid) = (store.clone(), sid.clone());
        async move {
            let runs: i64 = switchboard_store::sqlx::query_scalar(
                "SELECT count(*) FROM behavior_runs WHERE message_sid = $1",
            )
            .bind(&sid)
            .fetch_one(store.pool())
            .await
            .unwrap();
            runs == 1
        }
    })
    .await;
    // ...and purged it from the stream (its first batch purges at once) as its own user.
    let runlog = behavior_worker::runlog::stream_name(subjects.prefix());
    eventually("the run log purged of what PostgreSQL has", || {
        let (client, runlog) = (worker.client.clone(), runlog.clone());
        async move {
            let mut stream = async_nats::jetstream::new(client)
                .get_stream(&runlog)
                .await
                .unwrap();
            stream.info().await.unwrap().state.messages == 0
        }
    })
    .await;

    // An integrator's send job: sent by the outbound service, the outcome on its inbox.
    let integrator = nats.integrator().await;
    let mut live = integrator
        .client
        .subscribe("switchboard.events.sms.>")
        .await
        .unwrap();
    let reply_to = integrator.client.new_inbox();
    assert!(reply_to.starts_with("_INBOX."), "{reply_to}");
    let mut outcome = integrator.client.subscribe(reply_to.clone()).await.unwrap();
    integrator.client.flush().await.unwrap();
    let ack = publish_job(
        &integrator.client,
        &jobs.sms_send(),
        "sec-1",
        sms_job("sec-1", "+15551230001", "as the integrator"),
        Some(&reply_to),
    )
    .await
    .unwrap();
    assert!(!ack.duplicate);
    let message = tokio::time::timeout(WAIT, outcome.next())
        .await
        .expect("the outcome on the integrator's inbox")
        .unwrap();
    let sent: JobEvent = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(sent.kind, EventKind::Sent, "{sent:?}");
    assert_eq!(sandbox_messages(&fake, "+15551230001").await.len(), 1);
    // The delivery callback: sandbox → ingress → worker → a `status` event, seen live.
    let delivered = tokio::time::timeout(WAIT, async {
        while let Some(message) = live.next().await {
            let event: JobEvent = serde_json::from_slice(&message.payload).unwrap();
            if event.job_id == "sec-1" && event.status.as_deref() == Some("delivered") {
                return event;
            }
        }
        panic!("the subscription ended")
    })
    .await
    .expect("a delivered status event");
    assert_eq!(delivered.kind, EventKind::Status);

    // The seed's "Send SMS message" macro, run by the CLI: worker → outbound HTTP → sandbox.
    let vars: Vec<switchboard::args::KeyValue> = ["var_to=+15551230002", "var_body=macro run"]
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    let request = switchboard::run::request("bot_twilio", "behavior_41", &vars).unwrap();
    let run = switchboard::run::run_behavior(&cli.client, &subjects, &request, WAIT)
        .await
        .unwrap();
    assert_eq!(run.errors, Vec::<String>::new());
    assert_eq!(run.exit_state, "complete");
    assert_eq!(sandbox_messages(&fake, "+15551230002").await.len(), 1);

    // `switchboard send --wait`: the outcome on the CLI's `_INBOX.switchboard-cli.` inbox.
    let args = switchboard::jobs::SendArgs {
        to: "+15551230003".into(),
        body: "from the cli".into(),
        from: Some("+15005550006".into()),
    };
    let job = switchboard::jobs::send_job(
        &args,
        switchboard_wire::outbound::AccountRef::Name("twilio".into()),
        "sec-cli-1",
    )
    .unwrap();
    let sent = switchboard::jobs::submit(
        &cli.client,
        &jobs.sms_send(),
        &job,
        "sec-cli-1",
        "sec-cli-1",
        Some(WAIT),
    )
    .await
    .unwrap();
    assert_eq!(sent.event.map(|e| e.kind), Some(EventKind::Sent));

    // An integrator's job naming a service subject as its reply subject: refused, not sent,
    // nothing published there; the other half of the rule is the outbound user's permissions.
    let mut snooped = worker
        .client
        .subscribe("switchboard.events.config.changed")
        .await
        .unwrap();
    worker.client.flush().await.unwrap();
    publish_job(
        &integrator.client,
        &jobs.sms_send(),
        "sec-2",
        sms_job("sec-2", "+15551230004", "bad reply subject"),
        Some("switchboard.events.config.changed"),
    )
    .await
    .unwrap();
    let failed = tokio::time::timeout(WAIT, async {
        while let Some(message) = live.next().await {
            let event: JobEvent = serde_json::from_slice(&message.payload).unwrap();
            if event.job_id == "sec-2" && event.kind.is_final() {
                return event;
            }
        }
        panic!("the subscription ended")
    })
    .await
    .expect("a final event for the refused job");
    assert_eq!(failed.kind, EventKind::Failed, "{failed:?}");
    let error = failed.error.unwrap();
    assert_eq!(error.code, "invalid_job");
    assert_eq!(error.field.as_deref(), Some(HEADER_REPLY_TO));
    assert!(sandbox_messages(&fake, "+15551230004").await.is_empty());
    assert!(
        tokio::time::timeout(Duration::from_millis(500), snooped.next())
            .await
            .is_err(),
        "nothing reached the subject the job named"
    );

    // What `jobs show` and `dlq list` read, as the CLI: the events and dead-letter streams.
    let cli_js = jetstream::new(cli.client.clone());
    let mut dead = Vec::new();
    let dlq = cli_js.get_stream(jobs.dead_letter_stream()).await.unwrap();
    switchboard::views::dlq::scan(
        &dlq,
        jetstream::consumer::DeliverPolicy::All,
        String::new(),
        |m| {
            dead.push(m.subject.to_string());
            Ok(true)
        },
    )
    .await
    .unwrap();
    assert_eq!(dead, ["switchboard.dlq.jobs.sms.send"]);
    // And the integrator reads the events stream (sent, delivered, the refusal).
    let mut kinds = Vec::new();
    let events = jetstream::new(integrator.client.clone())
        .get_stream(jobs.event_stream())
        .await
        .unwrap();
    switchboard::views::dlq::scan(
        &events,
        jetstream::consumer::DeliverPolicy::All,
        "switchboard.events.sms.>".into(),
        |m| {
            let event: JobEvent = serde_json::from_slice(&m.payload).unwrap();
            kinds.push(format!("{}:{}", event.job_id, event.kind.as_str()));
            Ok(true)
        },
    )
    .await
    .unwrap();
    for want in [
        "sec-1:sent",
        "sec-1:status",
        "sec-cli-1:sent",
        "sec-2:failed",
    ] {
        assert!(kinds.iter().any(|k| k == want), "{want} in {kinds:?}");
    }

    // No connection was refused anything on the way.
    for (name, connection) in [
        ("cli", &cli),
        ("behavior-worker", &worker),
        ("ingress", &ingress),
        ("outbound", &outbound_nats),
        ("integrator", &integrator),
    ] {
        assert_eq!(connection.errors().await, Vec::<String>::new(), "{name}");
    }

    let _ = stop_http.send(());
    let _ = stop_outbound.send(());
    let _ = stop_ingress.send(());
    let _ = stop_worker.send(());
    http_task.await.unwrap().unwrap();
    outbound_task.await.unwrap().unwrap();
    ingress_task.await.unwrap().unwrap();
    worker_task.await.unwrap().unwrap();
}

/// Without credentials, or with a wrong password, or as a user the file does not know, the
/// server refuses the connection; the healthcheck says so in one line without the password.
#[tokio::test]
async fn clients_without_valid_credentials_are_refused() {
    let nats = Secured::start().await;
    let anonymous = async_nats::ConnectOptions::new()
        .connect(nats.server.url())
        .await
        .unwrap_err();
    assert_eq!(
        anonymous.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation,
        "{anonymous}"
    );
    for (user, password) in [
        ("ingress", "wrong-password"),
        ("admin", nats.password("cli")),
    ] {
        let args = NatsArgs {
            nats_user: Some(user.into()),
            nats_password: Some(SecretString::from(password)),
            ..NatsArgs::new(&nats.server.url())
        };
        let err = args.connect(user).await.unwrap_err();
        assert!(
            format!("{err:#}").contains("authorization violation"),
            "{user}: {err:#}"
        );
    }
    let database = async { Ok::<(), String>(()) };
    let refused = switchboard_telemetry::health::reachable(
        database,
        &NatsArgs {
            nats_user: Some("outbound".into()),
            nats_password: Some(SecretString::from("not-it")),
            ..NatsArgs::new(&nats.server.url())
        },
        "outbound",
    )
    .await
    .unwrap_err();
    assert!(
        refused.starts_with("NATS: ") && refused.contains("authorization violation"),
        "{refused}"
    );
    assert!(!refused.contains("not-it"), "{refused}");
    let reachable = switchboard_telemetry::health::reachable(
        async { Ok::<(), String>(()) },
        &nats.args("outbound"),
        "outbound",
    )
    .await;
    assert_eq!(reachable, Ok("NATS and PostgreSQL reachable".to_owned()));
}

/// Each user can use only its own subjects: ingress cannot publish a send job nor listen to
/// webhook requests; the integrator cannot run macros, join the workers' queue group, publish
/// behaviors' HTTP requests, take jobs from the job stream or read the dead letters; the
/// outbound user cannot publish outside `_INBOX.` and its own subjects; the worker cannot
/// publish jobs. Every refusal is the server's, and nothing got through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_is_confined_to_its_subjects() {
    let nats = Secured::start().await;
    let subjects = Subjects::default();
    let jobs = JobSubjects::from(&subjects);
    // The streams, created by the outbound user as the service does.
    let outbound_nats = nats.connect("outbound", "outbound").await;
    let config = outbound::OutboundConfig::new(subjects.prefix());
    outbound::setup(&jetstream::new(outbound_nats.client.clone()), &config)
        .await
        .unwrap();
    let integrator = nats.integrator().await;
    let job_count = || async {
        jetstream::new(integrator.client.clone())
            .get_stream(jobs.job_stream())
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages
    };

    // A worker replica, as the behavior-worker user: what the others try to reach.
    let worker = nats.connect("behavior-worker", "behavior-worker").await;
    let mut requests = worker
        .client
        .queue_subscribe(subjects.webhook_request(), "behavior-worker".into())
        .await
        .unwrap();
    let mut runs = worker
        .client
        .queue_subscribe(subjects.behavior_run(), "behavior-worker".into())
        .await
        .unwrap();
    worker.client.flush().await.unwrap();

    // ingress: no send job (no acknowledgement, nothing stored), no webhook subscription.
    let ingress = nats.connect("ingress", "ingress").await;
    let published = tokio::time::timeout(
        Duration::from_secs(3),
        publish_job(
            &ingress.client,
            &jobs.sms_send(),
            "ingress-1",
            sms_job("ingress-1", "+15551230009", "x"),
            None,
        ),
    )
    .await;
    assert!(!matches!(published, Ok(Ok(_))), "{published:?}");
    ingress
        .expect_error("permissions violation for publish to \"switchboard.jobs.sms.send\"")
        .await;
    assert_eq!(job_count().await, 0);
    let _webhooks = ingress
        .client
        .subscribe(subjects.webhook_request())
        .await
        .unwrap();
    ingress
        .expect_error("permissions violation for subscription to \"switchboard.webhook.request\"")
        .await;

    // integrator: no macro run, no worker queue group, no HTTP job, no job stream consumer,
    // no dead letters.
    let run = integrator
        .client
        .request(subjects.behavior_run(), "{}".into())
        .await;
    assert!(run.is_err(), "{run:?}");
    integrator
        .expect_error("permissions violation for publish to \"switchboard.behavior.run\"")
        .await;
    let _queue = integrator
        .client
        .queue_subscribe(subjects.webhook_request(), "behavior-worker".into())
        .await
        .unwrap();
    integrator
        .expect_error("permissions violation for subscription to \"switchboard.webhook.request\"")
        .await;
    let http_job = integrator
        .client
        .request(subjects.outbound_http(), "{}".into())
        .await;
    assert!(http_job.is_err(), "{http_job:?}");
    integrator
        .expect_error("permissions violation for publish to \"switchboard.outbound.http\"")
        .await;
    let js = jetstream::new(integrator.client.clone());
    let stolen = js
        .create_consumer_on_stream(
            jetstream::consumer::pull::Config {
                durable_name: Some("thief".into()),
                filter_subject: jobs.sms_send(),
                ..Default::default()
            },
            jobs.job_stream(),
        )
        .await;
    assert!(stolen.is_err(), "a consumer on the job stream");
    let dlq = js.get_stream(jobs.dead_letter_stream()).await;
    assert!(dlq.is_err(), "the dead-letter stream");
    integrator
        .expect_error(
            "permissions violation for publish to \"$js.api.stream.info.switchboard_jobs_dlq\"",
        )
        .await;

    // outbound: replies only under _INBOX., nothing to Switchboard's request subjects.
    outbound_nats
        .client
        .publish(subjects.behavior_run(), "{}".into())
        .await
        .unwrap();
    outbound_nats
        .expect_error("permissions violation for publish to \"switchboard.behavior.run\"")
        .await;
    // behavior-worker: no jobs.
    worker
        .client
        .publish(jobs.sms_send(), "{}".into())
        .await
        .unwrap();
    worker
        .expect_error("permissions violation for publish to \"switchboard.jobs.sms.send\"")
        .await;
    assert_eq!(job_count().await, 0);

    // None of it reached the worker.
    for sub in [&mut requests, &mut runs] {
        let got = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
        assert!(got.is_err(), "{got:?}");
    }
    // The integrator may still do what it is for.
    publish_job(
        &integrator.client,
        &jobs.sms_send(),
        "allowed-1",
        sms_job("allowed-1", "+15551230010", "x"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(job_count().await, 1);
}

/// Runs `openssl` with `args` in `dir` (the test's certificates).
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate authority, a server certificate for 127.0.0.1 and a client certificate, signed
/// by it (EC P-256, PEM), in `dir`.
fn make_certificates(dir: &std::path::Path) {
    let ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
    for key in ["ca-key.pem", "server-key.pem", "client-key.pem"] {
        let mut args = vec!["genpkey"];
        args.extend(ec);
        args.extend(["-out", key]);
        openssl(dir, &args);
    }
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca-key.pem",
            "-subj",
            "/CN=switchboard test CA",
            "-days",
            "2",
            "-out",
            "ca.pem",
        ],
    );
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-key",
                &format!("{name}-key.pem"),
                "-subj",
                &format!("/CN={name}"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }
}

/// TLS as NATS_CA, NATS_CERT and NATS_KEY set it up, against a server that requires TLS and
/// verifies client certificates: with the CA and a client certificate the connection works; with
/// the CA alone the server refuses it; without the CA the server's certificate is not trusted.
#[tokio::test]
async fn tls_and_mutual_tls_with_the_nats_options() {
    init();
    let dir = std::env::temp_dir().join(switchboard_e2e::unique("sb-nats-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    make_certificates(&dir);
    let path = |name: &str| dir.join(name);
    let config = format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n  timeout: 5\n}}\n",
        path("server.pem").display(),
        path("server-key.pem").display(),
        path("ca.pem").display(),
    );
    let server = NatsServer::start_with_config(&config).await.unwrap();

    let mutual = NatsArgs {
        nats_ca: Some(path("ca.pem")),
        nats_cert: Some(path("client.pem")),
        nats_key: Some(path("client-key.pem")),
        ..NatsArgs::new(&server.url())
    };
    assert!(mutual.plan("x").unwrap().require_tls);
    let client = tokio::time::timeout(WAIT, mutual.connect("behavior-worker"))
        .await
        .unwrap()
        .expect("mutual TLS with the test CA");
    let mut sub = client.subscribe("tls.check").await.unwrap();
    client
        .publish("tls.check", "over TLS".into())
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got.payload[..], b"over TLS");

    let ca_only = NatsArgs {
        nats_ca: Some(path("ca.pem")),
        ..NatsArgs::new(&server.url())
    };
    let refused = tokio::time::timeout(WAIT, ca_only.connect("x"))
        .await
        .unwrap();
    assert!(refused.is_err(), "a client without certificate got in");
    let untrusted = NatsArgs::new(&format!("tls://127.0.0.1:{}", server.port));
    let refused = tokio::time::timeout(WAIT, untrusted.connect("x"))
        .await
        .unwrap();
    assert!(refused.is_err(), "the test CA is not a system root");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
