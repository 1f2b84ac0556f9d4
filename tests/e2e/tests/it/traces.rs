//! One trace follows a message through the running binaries, checked with a real OTLP/HTTP
//! receiver: ingress, behavior-worker and outbound (and the `switchboard` CLI) run as the
//! release or debug binaries of this checkout (built here with `cargo build` when needed),
//! exporting to a small axum server of this test that decodes `POST /v1/traces`
//! (protobuf). Every hop must share the trace id, with the right parents:
//! - (a) a signed webhook whose behavior makes an HTTP request: ingress → worker → the
//!   request's client span → outbound's HTTP job → its client span → the sandbox, which
//!   receives the `traceparent`; the `traceparent` the "internet" client sent is a link;
//! - (b) `switchboard run` of the seed's "Send SMS message" macro: the same from the CLI;
//! - (c) `switchboard send --wait` and a job another system publishes with its own
//!   `traceparent`: → outbound's job → the Twilio client span → the sandbox; the delivery
//!   status callbacks are traces of their own (ingress → worker) linked to the job's span;
//! - (d) the CLI without an exporter records nothing, yet its trace context reaches outbound.
//!
//! The services' log lines written inside a span carry that span's ids (text and JSON).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use serde_json::{Value, json};
use switchboard_store::{MasterKey, Store};
use switchboard_test_support::{
    ALLOW_TEST_KEY, AUTH_TOKEN, MASTER_KEY, NatsServer, free_port, fresh_database, inbound_sms,
    message_sid, sandbox_config, seed_package, unique,
};
use switchboard_wire::Subjects;

const WAIT: Duration = Duration::from_secs(60);
const FROM: &str = "+15005550006";

/// OTLP span kinds.
const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const PRODUCER: i32 = 4;
const CONSUMER: i32 = 5;

/// A span as the receiver decoded it; ids in lower-case hex, the parent empty for a root.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    kind: i32,
    /// (trace id, span id) of each link.
    links: Vec<(String, String)>,
    attributes: BTreeMap<String, String>,
}

impl Span {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// The `traceparent` a request sent inside this span carries.
    fn traceparent(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// The OTLP/HTTP receiver: every span of every export, decoded.
struct Receiver {
    url: String,
    spans: Arc<Mutex<Vec<Span>>>,
}

async fn export(
    State(spans): State<Arc<Mutex<Vec<Span>>>>,
    body: Bytes,
) -> impl axum::response::IntoResponse {
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(r) => r,
        Err(e) => {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                e.to_string().into_bytes(),
            );
        }
    };
    let mut decoded = Vec::new();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .map(|a| text(a.value.as_ref()))
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for s in scope.spans {
                decoded.push(Span {
                    service: service.clone(),
                    name: s.name,
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent: hex(&s.parent_span_id),
                    kind: s.kind,
                    links: s
                        .links
                        .iter()
                        .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                        .collect(),
                    attributes: s
                        .attributes
                        .iter()
                        .map(|a| (a.key.clone(), text(a.value.as_ref())))
                        .collect(),
                });
            }
        }
    }
    spans.lock().unwrap().extend(decoded);
    (
        axum::http::StatusCode::OK,
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

impl Receiver {
    async fn start() -> Receiver {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(export))
            .with_state(spans.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, spans }
    }

    fn all(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits for the spans `pick` finds (non-empty), the what and the spans so far on failure.
    async fn wait<T>(&self, what: &str, pick: impl Fn(&[Span]) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(found) = pick(&self.all()) {
                return found;
            }
            if tokio::time::Instant::now() > deadline {
                let seen: Vec<String> = self
                    .all()
                    .iter()
                    .map(|s| {
                        format!(
                            "{} {} trace {} span {} parent {} {:?}",
                            s.service, s.name, s.trace_id, s.span_id, s.parent, s.attributes
                        )
                    })
                    .collect();
                panic!("no {what} within {WAIT:?}; received:\n{}", seen.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the one span of `service` named `name` that `matches`.
    async fn one(&self, service: &str, name: &str, matches: impl Fn(&Span) -> bool) -> Span {
        self.wait(&format!("{service} span {name}"), |spans| {
            spans
                .iter()
                .find(|s| s.service == service && s.name == name && matches(s))
                .cloned()
        })
        .await
    }

    /// The child of `parent` from `service` named `name`, checked to be in its trace.
    async fn child(&self, parent: &Span, service: &str, name: &str, kind: i32) -> Span {
        let child = self
            .one(service, name, |s| s.parent == parent.span_id)
            .await;
        assert_eq!(child.trace_id, parent.trace_id, "{child:#?}");
        assert_eq!(child.kind, kind, "{child:#?}");
        child
    }
}

/// Where this test binary's profile puts binaries (`target/debug` or `target/release`), with
/// the four service binaries built there from this checkout (once per test process).
pub(crate) fn binaries() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo
            .current_dir(switchboard_test_support::repo_root())
            .args(["build", "--bins", "-p", "ingress", "-p", "behavior-worker"])
            .args(["-p", "outbound", "-p", "switchboard"]);
        if dir.ends_with("release") {
            cargo.arg("--release");
        }
        let out = cargo.output().expect("cargo runs");
        assert!(
            out.status.success(),
            "building the service binaries failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// A service binary, killed on drop; its stderr goes to a file the test reads.
pub(crate) struct Proc {
    pub(crate) child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub(crate) fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// A command for binary `name` with the environment of this test only (no inherited `OTEL_*`
/// or `RUST_LOG`).
fn command(name: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(binaries().join(name));
    for (key, _) in std::env::vars() {
        if key.starts_with("OTEL_") || key == "RUST_LOG" || key == "LOG_FORMAT" {
            cmd.env_remove(key);
        }
    }
    cmd.env("NO_COLOR", "1").envs(env.iter().copied());
    cmd
}

fn spawn(name: &str, env: &[(&str, &str)]) -> Proc {
    let log = std::env::temp_dir().join(format!("{}.log", unique(&format!("trace-{name}"))));
    let child = command(name, env)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    Proc { child, log }
}

/// A `behavior-worker` process for `stack` (its NATS, database and subject prefix; `extra`
/// settings on top), ready: its metrics port answers `/readyz`.
pub(crate) async fn worker_process(
    stack: &switchboard_e2e::Stack,
    extra: &[(&'static str, &str)],
) -> Proc {
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut env = vec![
        ("NATS_URL", stack.nats.url()),
        ("DATABASE_URL", stack.database_url.clone()),
        (
            "SWITCHBOARD_SUBJECT_PREFIX",
            stack.subjects.prefix().to_owned(),
        ),
        ("SWITCHBOARD_MASTER_KEY", MASTER_KEY.to_owned()),
        (ALLOW_TEST_KEY.0, ALLOW_TEST_KEY.1.to_owned()),
        ("METRICS_ADDR", metrics.clone()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let mut worker = spawn_owned("behavior-worker", &env);
    ready(&format!("http://{metrics}/readyz"), &mut worker).await;
    worker
}

/// Waits until `GET url` answers 200 (a service's /readyz).
pub(crate) async fn ready(url: &str, proc: &mut Proc) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if reqwest::get(url).await.is_ok_and(|r| r.status() == 200) {
            return;
        }
        if let Ok(Some(status)) = proc.child.try_wait() {
            panic!("exited with {status}:\n{}", proc.lines().join("\n"));
        }
        assert!(tokio::time::Instant::now() < deadline, "{url} never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The seed package with one change: its webhook behavior first looks up the sender with
/// Twilio's Lookup API (the node of the seed's "Look up a number" macro), so a webhook makes an
/// HTTP request through outbound.
fn package_with_webhook_lookup() -> String {
    let mut package: Value = serde_json::from_str(&seed_package()).unwrap();
    let behaviors = package["bots"][0]["behaviors"].as_array_mut().unwrap();
    let lookup = behaviors
        .iter()
        .find(|b| b["uid"] == "behavior_42")
        .unwrap();
    let mut node = lookup["nodes"][0].clone();
    let action = &mut node["params"]["actions"].as_array_mut().unwrap()[0];
    assert_eq!(action["action"], "core.va.action.http_request");
    action["http_url"] = json!(
        "https://lookups.twilio.com/v1/PhoneNumbers/{{http_params.from|url_encode}}?Type=carrier"
    );
    node["params"]["actions"]
        .as_array_mut()
        .unwrap()
        .truncate(1);
    let webhook = behaviors
        .iter_mut()
        .find(|b| b["uid"] == "behavior_43")
        .unwrap();
    webhook["nodes"].as_array_mut().unwrap().insert(0, node);
    package.to_string()
}

/// The running system: NATS, a database with the package imported, the sandbox, the OTLP
/// receiver, and the three services exporting to it.
struct System {
    receiver: Receiver,
    store: Store,
    fake: twilio_fake::Running,
    nats: NatsServer,
    database_url: String,
    subjects: Subjects,
    guid: String,
    ingress_url: String,
    ingress: Proc,
    worker: Proc,
    outbound: Proc,
}

impl System {
    async fn start() -> System {
        switchboard_test_support::init();
        binaries();
        let receiver = Receiver::start().await;
        let fake = twilio_fake::spawn(sandbox_config()).await.unwrap();
        let nats = NatsServer::start().await.unwrap();
        let (database_url, pool) = fresh_database().await.unwrap();
        let subjects = Subjects::new(&unique("sbtrace"));
        let store = Store::new(pool, Some(MasterKey::parse(MASTER_KEY).unwrap()));
        let env = switchboard::ops::Env {
            store: store.clone(),
            nats: None,
            subjects: subjects.clone(),
            public_base_url: "http://127.0.0.1".into(),
        };
        let prompts = switchboard_e2e::seed_prompts(&env).await.unwrap();
        let (report, _) = env
            .import(&package_with_webhook_lookup(), &prompts)
            .await
            .unwrap();
        let guid = report.webhooks[0].guid.clone();

        let nats_url = nats.url();
        let prefix = subjects.prefix().to_owned();
        let otlp = receiver.url.clone();
        let common = |log_format: &'static str, rust_log: &'static str| {
            vec![
                ("NATS_URL", nats_url.clone()),
                ("DATABASE_URL", database_url.clone()),
                ("SWITCHBOARD_SUBJECT_PREFIX", prefix.clone()),
                ("SWITCHBOARD_MASTER_KEY", MASTER_KEY.to_owned()),
                (ALLOW_TEST_KEY.0, ALLOW_TEST_KEY.1.to_owned()),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.clone()),
                ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
                ("LOG_FORMAT", log_format.to_owned()),
                ("RUST_LOG", rust_log.to_owned()),
            ]
        };
        let ingress_port = free_port();
        let ingress_url = format!("http://127.0.0.1:{ingress_port}");
        let mut env = common("json", "info,ingress=debug");
        env.push(("LISTEN_ADDR", format!("127.0.0.1:{ingress_port}")));
        let mut ingress = spawn_owned("ingress", &env);
        ready(&format!("{ingress_url}/readyz"), &mut ingress).await;

        let worker_metrics = format!("127.0.0.1:{}", free_port());
        let mut env = common("text", "info");
        env.push(("METRICS_ADDR", worker_metrics.clone()));
        let mut worker = spawn_owned("behavior-worker", &env);
        ready(&format!("http://{worker_metrics}/readyz"), &mut worker).await;

        let outbound_metrics = format!("127.0.0.1:{}", free_port());
        let mut env = common("json", "info,outbound=debug");
        env.extend([
            ("METRICS_ADDR", outbound_metrics.clone()),
            ("TWILIO_API_BASE", fake.base_url()),
            ("TWILIO_LOOKUPS_BASE", fake.base_url()),
            ("STATUS_CALLBACK_BASE_URL", ingress_url.clone()),
        ]);
        let mut outbound = spawn_owned("outbound", &env);
        ready(&format!("http://{outbound_metrics}/readyz"), &mut outbound).await;

        System {
            receiver,
            store,
            fake,
            nats,
            database_url,
            subjects,
            guid,
            ingress_url,
            ingress,
            worker,
            outbound,
        }
    }

    /// Runs the CLI with `args`, exporting spans when `traced`; answers its stdout.
    fn cli(&self, args: &[&str], traced: bool) -> String {
        let mut env = vec![
            ("NATS_URL", self.nats.url()),
            ("DATABASE_URL", self.database_url.clone()),
            (
                "SWITCHBOARD_SUBJECT_PREFIX",
                self.subjects.prefix().to_owned(),
            ),
            ("SWITCHBOARD_MASTER_KEY", MASTER_KEY.to_owned()),
            (ALLOW_TEST_KEY.0, ALLOW_TEST_KEY.1.to_owned()),
        ];
        if traced {
            env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", self.receiver.url.clone()));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = command("switchboard", &env).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "switchboard {args:?}: {stderr}");
        assert_eq!(stderr, "", "the CLI writes no log lines without RUST_LOG");
        String::from_utf8(out.stdout).unwrap()
    }

    /// The Twilio SID outbound recorded for the job with idempotency key `key`.
    async fn twilio_sid(&self, key: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let sid: Option<String> = switchboard_store::sqlx::query_scalar(
                "SELECT twilio_sid FROM outbound_jobs WHERE idempotency_key = $1",
            )
            .bind(key)
            .fetch_optional(self.store.pool())
            .await
            .unwrap()
            .flatten();
            if let Some(sid) = sid {
                return sid;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {key} never sent"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What the sandbox received, as its `/_fake/requests` lists it.
    async fn sandbox_requests(&self) -> Vec<Value> {
        reqwest::get(format!("{}/_fake/requests", self.fake.base_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The `traceparent` of the sandbox's request `pick` finds.
    async fn sandbox_traceparent(&self, what: &str, pick: impl Fn(&Value) -> bool) -> String {
        let requests = self.sandbox_requests().await;
        let request = requests
            .iter()
            .find(|r| pick(r))
            .unwrap_or_else(|| panic!("no sandbox request for {what}: {requests:#?}"));
        request["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == "traceparent")
            .and_then(|h| h[1].as_str())
            .unwrap_or_else(|| panic!("{what} without traceparent: {request:#}"))
            .to_owned()
    }

    /// Checks the status callbacks of message `sid`: each a trace of its own (ingress's server
    /// span, the worker's as its child) linked to `job`, the outbound job span that sent it.
    async fn callbacks_link_to(&self, sid: &str, job: &Span) {
        let r = &self.receiver;
        let callbacks = r
            .wait(&format!("two status callbacks for {sid}"), |spans| {
                let found: Vec<Span> = spans
                    .iter()
                    .filter(|s| s.name == "status_callback" && s.attr("message_sid") == Some(sid))
                    .cloned()
                    .collect();
                (found.len() >= 2).then_some(found)
            })
            .await;
        for callback in callbacks {
            assert_eq!(callback.service, "behavior-worker");
            assert_eq!(callback.kind, CONSUMER);
            assert_eq!(
                callback.links,
                vec![(job.trace_id.clone(), job.span_id.clone())],
                "the callback links to the job's span: {callback:#?}"
            );
            assert_ne!(callback.trace_id, job.trace_id, "a trace of its own");
            let ingress = r
                .one("ingress", "ingress.webhook", |s| {
                    s.span_id == callback.parent
                })
                .await;
            assert_eq!(ingress.trace_id, callback.trace_id);
            assert_eq!(ingress.kind, SERVER);
            assert_eq!(ingress.parent, "", "Twilio's callback starts its trace");
        }
    }
}

pub(crate) fn spawn_owned(name: &str, env: &[(&'static str, String)]) -> Proc {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    spawn(name, &env)
}

fn random_hex(len: usize) -> String {
    let mut out = String::new();
    while out.len() < len {
        out.push_str(&format!("{:032x}", rand_u128()));
    }
    out.truncate(len);
    out
}

fn rand_u128() -> u128 {
    let sid = message_sid();
    let n = u128::from_str_radix(&sid[2..], 16).unwrap();
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835) ^ t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_follows_each_message_through_every_hop() {
    let s = System::start().await;
    let r = &s.receiver;

    // (a) A signed webhook from the internet, with a traceparent of the client's own: it
    // becomes a link, the trace is ingress's.
    let theirs = (random_hex(32), random_hex(16));
    let path = format!("/webhooks/{}", s.guid);
    let url = format!("{}{path}", s.ingress_url);
    let from = "+15551230001";
    let form = inbound_sms(&message_sid(), from, "hi");
    let signed = switchboard_twilio::signature::sign_form(AUTH_TOKEN, &url, &form);
    let answer = reqwest::Client::new()
        .post(&url)
        .header("content-type", signed.content_type)
        .header("x-twilio-signature", signed.signature)
        .header("traceparent", format!("00-{}-{}-01", theirs.0, theirs.1))
        .body(signed.body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    let ingress = r
        .one("ingress", "ingress.webhook", |s| s.links.contains(&theirs))
        .await;
    assert_eq!(ingress.kind, SERVER);
    assert_eq!(ingress.parent, "", "not adopted: {ingress:#?}");
    assert_ne!(ingress.trace_id, theirs.0);
    let webhook = r
        .child(&ingress, "behavior-worker", "webhook", CONSUMER)
        .await;
    let request = r
        .child(&webhook, "behavior-worker", "http_job.request", CLIENT)
        .await;
    assert_eq!(request.attr("server.address"), Some("lookups.twilio.com"));
    let job = r.child(&request, "outbound", "http_job", CONSUMER).await;
    let http = r.child(&job, "outbound", "http.request", CLIENT).await;
    assert_eq!(http.attr("http.response.status_code"), Some("200"));
    let lookup_path = format!("/v1/PhoneNumbers/{}", from.replace('+', "%2B"));
    let sent = s
        .sandbox_traceparent("the webhook's lookup", |q| q["path"] == lookup_path)
        .await;
    assert_eq!(sent, http.traceparent());

    // (b) `switchboard run` of "Send SMS message": from the CLI to the sandbox.
    let to_b = "+15551230002";
    let run: Value = serde_json::from_str(&s.cli(
        &[
            "run",
            "bot_twilio",
            "behavior_41",
            "--var",
            &format!("var_to={to_b}"),
            "--var",
            "var_body=traced run",
            "--json",
        ],
        true,
    ))
    .unwrap();
    assert_eq!(run["exit_state"], "complete", "{run:#}");
    let cli = r
        .one("switchboard", "switchboard.run", |s| {
            s.attr("behavior") == Some("behavior_41")
        })
        .await;
    assert_eq!(cli.parent, "", "the CLI starts the trace");
    assert_eq!(cli.kind, CLIENT);
    let macro_run = r
        .child(&cli, "behavior-worker", "macro_run", CONSUMER)
        .await;
    let request = r
        .child(&macro_run, "behavior-worker", "http_job.request", CLIENT)
        .await;
    let job = r.child(&request, "outbound", "http_job", CONSUMER).await;
    let http = r.child(&job, "outbound", "http.request", CLIENT).await;
    let create = |to: &'static str| {
        move |q: &Value| {
            q["method"] == "POST"
                && q["form"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|kv| kv[0] == "To" && kv[1] == to))
        }
    };
    let sent = s
        .sandbox_traceparent("the macro's create", create(to_b))
        .await;
    assert_eq!(sent, http.traceparent());

    // (c) `switchboard send --wait`: the CLI's publication, outbound's job, the Twilio call.
    let to_c = "+15551230003";
    let event: Value = serde_json::from_str(&s.cli(
        &[
            "send",
            "--to",
            to_c,
            "--body",
            "traced send",
            "--from",
            FROM,
            "--wait",
            "--json",
        ],
        true,
    ))
    .unwrap();
    assert_eq!(event["kind"], "sent", "{event:#}");
    let job_id = event["job_id"].as_str().unwrap().to_owned();
    let sid = event["twilio_sid"].as_str().unwrap().to_owned();
    let publish = r
        .one("switchboard", "switchboard.publish", |s| {
            s.attr("job_id") == Some(job_id.as_str())
        })
        .await;
    assert_eq!(publish.parent, "");
    assert_eq!(publish.kind, PRODUCER);
    let job = r
        .child(&publish, "outbound", "outbound.job", CONSUMER)
        .await;
    assert_eq!(job.attr("job_id"), Some(job_id.as_str()));
    let call = r.child(&job, "outbound", "twilio.request", CLIENT).await;
    assert_eq!(call.attr("twilio.operation"), Some("create message"));
    assert_eq!(call.attr("http.response.status_code"), Some("201"));
    let sent = s
        .sandbox_traceparent("the send's create", create(to_c))
        .await;
    assert_eq!(sent, call.traceparent());
    s.callbacks_link_to(&sid, &job).await;

    // (c) A job another system publishes with its own traceparent: outbound continues it.
    let theirs = (random_hex(32), random_hex(16));
    let to_other = "+15551230004";
    let key = format!("other-{}", random_hex(12));
    let args = switchboard::jobs::SendArgs {
        to: to_other.into(),
        body: "from another system".into(),
        from: Some(FROM.into()),
    };
    let job = switchboard::jobs::send_job(
        &args,
        switchboard_wire::outbound::AccountRef::Name("twilio".into()),
        &key,
    )
    .unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(switchboard_wire::outbound::HEADER_MSG_ID, key.as_str());
    let traceparent = format!("00-{}-{}-01", theirs.0, theirs.1);
    headers.insert("traceparent", traceparent.as_str());
    let subject = switchboard::jobs::subjects(s.subjects.prefix()).sms_send();
    let nats = s.nats.client().await.unwrap();
    async_nats::jetstream::new(nats)
        .publish_with_headers(subject, headers, serde_json::to_vec(&job).unwrap().into())
        .await
        .unwrap()
        .await
        .unwrap();
    let job = r
        .one("outbound", "outbound.job", |s| s.trace_id == theirs.0)
        .await;
    assert_eq!(job.parent, theirs.1, "the publisher's span is the parent");
    let call = r.child(&job, "outbound", "twilio.request", CLIENT).await;
    let sent = s
        .sandbox_traceparent("the other system's create", create(to_other))
        .await;
    assert_eq!(sent, call.traceparent());
    let sid = s.twilio_sid(&key).await;
    s.callbacks_link_to(&sid, &job).await;

    // (d) Without an exporter the CLI records nothing, yet its trace reaches outbound.
    let event: Value = serde_json::from_str(&s.cli(
        &[
            "send",
            "--to",
            "+15551230005",
            "--body",
            "untraced CLI",
            "--from",
            FROM,
            "--wait",
            "--json",
        ],
        false,
    ))
    .unwrap();
    let job_id = event["job_id"].as_str().unwrap().to_owned();
    let job = r
        .one("outbound", "outbound.job", |s| {
            s.attr("job_id") == Some(job_id.as_str())
        })
        .await;
    assert_ne!(job.parent, "", "the CLI sent a traceparent: {job:#?}");
    let all = r.all();
    assert!(
        !all.iter().any(|s| s.span_id == job.parent
            || (s.service == "switchboard" && s.trace_id == job.trace_id)),
        "the CLI without an exporter exported nothing"
    );

    // Log lines: inside a span, each names it; the spans they name were exported.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = r.all();
    let exported =
        |trace: &str, span: &str| all.iter().any(|s| s.trace_id == trace && s.span_id == span);
    let mut in_spans = 0;
    for (name, proc) in [("ingress", &s.ingress), ("outbound", &s.outbound)] {
        for line in proc.lines() {
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{name} wrote a line that is not JSON ({e}): {line}"));
            let (trace, span) = (v["trace_id"].as_str(), v["span_id"].as_str());
            match v.get("span") {
                Some(_) => {
                    let (trace, span) = (trace.unwrap_or_else(|| panic!("{line}")), span.unwrap());
                    assert!(exported(trace, span), "{name}: {line}");
                    in_spans += 1;
                }
                None => assert!(trace.is_none(), "{name}: {line}"),
            }
        }
    }
    assert!(in_spans > 0, "the JSON logs have lines written in spans");
    let worker_lines = s.worker.lines();
    let in_callbacks: Vec<&String> = worker_lines
        .iter()
        .filter(|l| l.contains("status_callback{"))
        .collect();
    assert!(!in_callbacks.is_empty(), "{worker_lines:#?}");
    for line in in_callbacks {
        let ids = line
            .rsplit_once(" trace_id=")
            .unwrap_or_else(|| panic!("{line}"))
            .1;
        let (trace, span) = ids.split_once(" span_id=").unwrap();
        let span = all
            .iter()
            .find(|s| s.trace_id == trace && s.span_id == span.trim())
            .unwrap_or_else(|| panic!("the span of {line}"));
        assert_eq!(span.name, "status_callback", "{line}");
    }
    for line in &worker_lines {
        let in_span = ["webhook{", "macro_run{", "status_callback{"]
            .iter()
            .any(|n| line.contains(n));
        assert_eq!(in_span, line.contains(" trace_id="), "{line}");
    }
}
