//! The operator views (`messages`, `runs`, `jobs`, `dlq`, `suppressions`) as an operator runs
//! them: the built binary, against what the running system recorded. Each test starts a private
//! nats-server, a fresh database with the seed package imported, and ingress, behavior-worker
//! and (where jobs are involved) the outbound service with the Twilio sandbox, all with their
//! production functions; signed webhooks and `switchboard send`/`lookup` produce the data.

use std::process::Command;
use std::time::Duration;

use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use switchboard_store::{MasterKey, Store, sqlx};
use switchboard_test_support::{
    ACCOUNT_SID, AUTH_TOKEN, MASTER_KEY, NatsServer, PUBLIC_BASE_URL, fresh_database, golden,
    inbound_sms, init, message_sid, seed_package, unique,
};
use switchboard_wire::Subjects;

use crate::{Out, output};

const FROM: &str = "+15005550006";

/// The running system and how to call the CLI against it.
struct System {
    nats: NatsServer,
    database_url: String,
    store: Store,
    subjects: Subjects,
    bot_id: i64,
    listener_id: i64,
    ingress_url: String,
    http: reqwest::Client,
    /// The sandbox's base URL, and the sandbox (kept running while the system is).
    fake: Option<(String, Box<dyn std::any::Any + Send>)>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for System {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
    }
}

impl System {
    /// NATS, the database with the seed package imported for the test account, a behavior
    /// worker and ingress; with `outbound`, also the sandbox and the outbound service (status
    /// callbacks to ingress).
    async fn start(outbound: bool) -> System {
        init();
        let nats = NatsServer::start().await.unwrap();
        let (database_url, pool) = fresh_database().await.unwrap();
        let store = Store::new(pool, Some(MasterKey::parse(MASTER_KEY).unwrap()));
        let subjects = Subjects::new(&unique("sbv"));
        let env = switchboard::ops::Env {
            store: store.clone(),
            nats: Some(nats.client().await.unwrap()),
            subjects: subjects.clone(),
            public_base_url: PUBLIC_BASE_URL.into(),
        };
        let account = env
            .add_account(
                "twilio",
                ACCOUNT_SID,
                &secrecy::SecretString::from(AUTH_TOKEN),
            )
            .await
            .unwrap();
        let prompts: Vec<switchboard::args::KeyValue> = [
            format!("twilio_account_id={}", account.id),
            format!("account_sid={ACCOUNT_SID}"),
            "default_from=+15557654321".to_string(),
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let (report, _) = env.import(&seed_package(), &prompts).await.unwrap();
        let id_of = |uid: &str| report.records.iter().find(|r| r.uid == uid).unwrap().id;
        let bot_id = id_of("bot_twilio");
        let listener_id = store
            .resolve_listener(&report.webhooks[0].name)
            .await
            .unwrap();
        let mut stops = Vec::new();

        let worker = behavior_worker::start(
            store.clone(),
            nats.client().await.unwrap(),
            subjects.clone(),
            behavior_worker::WorkerOptions::default(),
        )
        .await
        .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(worker.serve(async move {
            let _ = stopped.await;
        }));
        stops.push(stop);

        // No public base URL: ingress checks signatures for the address it is called at, which
        // is where the sandbox posts status callbacks and where the tests sign webhooks for.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ingress_url = format!("http://{}", listener.local_addr().unwrap());
        let config = ingress::IngressConfig {
            public_base_url: None,
            subjects: subjects.clone(),
            ..Default::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(ingress::run(
            listener,
            nats.client().await.unwrap(),
            config,
            async move {
                let _ = stopped.await;
            },
        ));
        stops.push(stop);

        let mut fake = None;
        if outbound {
            let sandbox = switchboard_test_support::sandbox().await.unwrap();
            let mut config = outbound::OutboundConfig::new(subjects.prefix());
            config.status_callback_url =
                Some(format!("{ingress_url}{}", outbound::STATUS_CALLBACK_PATH));
            config.fetch_wait = Duration::from_millis(300);
            config.request_timeout = Duration::from_secs(5);
            config.limits.enabled = false;
            let twilio = switchboard_twilio::client::TwilioClient::new(
                switchboard_twilio::client::ClientConfig {
                    api_base: sandbox.base_url(),
                    lookups_base: sandbox.base_url(),
                    request_timeout: config.request_timeout,
                    ..Default::default()
                },
            )
            .unwrap();
            let client = nats.client().await.unwrap();
            outbound::setup(&async_nats::jetstream::new(client.clone()), &config)
                .await
                .unwrap();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(outbound::run(
                config,
                store.clone(),
                client,
                twilio,
                async move {
                    let _ = stopped.await;
                },
            ));
            stops.push(stop);
            fake = Some((
                sandbox.base_url(),
                Box::new(sandbox) as Box<dyn std::any::Any + Send>,
            ));
        }
        System {
            nats,
            database_url,
            store,
            subjects,
            bot_id,
            listener_id,
            ingress_url,
            http: reqwest::Client::new(),
            fake,
            stops,
        }
    }

    /// Runs `switchboard ARGS` with this system's database, NATS and prefix (no master key:
    /// the views need none).
    async fn cli(&self, args: &[&str]) -> Out {
        self.cli_env(args, true).await
    }

    async fn cli_env(&self, args: &[&str], with_database: bool) -> Out {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command
            .args(args)
            .env("NATS_URL", self.nats.url())
            .env("SWITCHBOARD_SUBJECT_PREFIX", self.subjects.prefix())
            .env_remove("SWITCHBOARD_MASTER_KEY")
            .env_remove("SWITCHBOARD_SMS_FROM");
        if with_database {
            command.env("DATABASE_URL", &self.database_url);
        } else {
            command.env_remove("DATABASE_URL");
        }
        // The services run on this test's runtime: wait for the binary off its threads.
        output(command).await
    }

    /// Posts an inbound SMS to the seed webhook, signed as Twilio signs it; answers the status.
    async fn sms(&self, sid: &str, from: &str, body: &str) -> u16 {
        let guid: String = sqlx::query_scalar("SELECT guid FROM webhook_listeners WHERE id = $1")
            .bind(self.listener_id)
            .fetch_one(self.store.pool())
            .await
            .unwrap();
        let url = format!("{}/webhooks/{guid}", self.ingress_url);
        switchboard_test_support::post_signed_form(
            &self.http,
            &url,
            &url,
            &inbound_sms(sid, from, body),
            AUTH_TOKEN,
        )
        .await
        .status()
        .as_u16()
    }

    /// The sandbox's base URL.
    fn fake(&self) -> &str {
        &self
            .fake
            .as_ref()
            .expect("started with the outbound service")
            .0
    }

    /// Sets (or, with `None`, deletes) the sandbox's rule for a number.
    async fn number_rule(&self, number: &str, rule: Option<Value>) {
        let url = format!(
            "{}/_fake/numbers/{}",
            self.fake(),
            number.replace('+', "%2B")
        );
        let request = match rule {
            Some(rule) => self.http.put(url).json(&rule),
            None => self.http.delete(url),
        };
        assert!(request.send().await.unwrap().status().is_success());
    }

    /// Messages the sandbox created.
    async fn created(&self) -> Vec<Value> {
        self.http
            .get(format!("{}/_fake/messages", self.fake()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `switchboard send --wait --json` to `to`: the final event.
    async fn send(&self, to: &str, body: &str) -> Out {
        self.cli(&[
            "send", "--to", to, "--body", body, "--from", FROM, "--wait", "--json",
        ])
        .await
    }

    /// Waits until the dead-letter stream holds `n` messages.
    async fn dead_letters(&self, n: u64) {
        let js = async_nats::jetstream::new(self.nats.client().await.unwrap());
        let name = format!("{}_JOBS_DLQ", self.subjects.prefix().to_ascii_uppercase());
        for _ in 0..200 {
            let mut stream = js.get_stream(&name).await.unwrap();
            if stream.info().await.unwrap().state.messages >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the dead-letter stream never held {n} messages");
    }

    /// Polls `jobs show KEY --json` until `ready` holds.
    async fn job_until(&self, key: &str, ready: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..200 {
            let job = self.cli(&["jobs", "show", key, "--json"]).await.ok().json();
            if ready(&job) {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("job {key} never got there");
    }
}

/// The values of `field` in a JSON array.
fn column<'a>(items: &'a Value, field: &str) -> Vec<&'a Value> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i[field])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_runs_of_answered_webhooks_are_listed_filtered_paged_and_shown() {
    let s = System::start(false).await;
    let sids: Vec<String> = (0..5).map(|_| message_sid()).collect();
    let traffic = [
        ("+15550000001", "help"),
        ("+15550000001", "logo"),
        ("+15550000001", "link"),
        ("+15550000002", "hello there"),
        ("+15550000003", "help"),
    ];
    for (sid, (from, body)) in sids.iter().zip(traffic) {
        assert_eq!(s.sms(sid, from, body).await, 200);
    }
    // Twilio retries a delivery: the log keeps one message and one run.
    assert_eq!(s.sms(&sids[0], "+15550000001", "help").await, 200);
    let newest_first: Vec<&str> = sids.iter().rev().map(String::as_str).collect();

    // The table: a header, one row per message, newest first, and a footer.
    let table = s.cli(&["messages", "list"]).await.ok();
    assert!(table.stdout.starts_with("RECEIVED "), "{}", table.stdout);
    for column in [
        "MESSAGE SID",
        "LISTENER",
        "BOT",
        "FROM",
        "TO",
        "BODY",
        "ANSWER",
        "RUN",
    ] {
        assert!(table.stdout.lines().next().unwrap().contains(column));
    }
    let rows = table.rows();
    assert_eq!(rows.len(), 5, "{}", table.stdout);
    for (row, sid) in rows.iter().zip(&newest_first) {
        assert!(row.contains(sid), "{row}");
        assert!(row.contains("answered 200"), "{row}");
        assert!(row.contains("Twilio Bot"), "{row}");
    }
    assert!(rows[1].contains("hello there"), "{}", rows[1]);
    assert!(
        table
            .stdout
            .ends_with("5 messages shown, newest first; no more\n"),
        "{}",
        table.stdout
    );

    // --json: one array, the request's fields and the answer's status.
    let all = s.cli(&["messages", "list", "--json"]).await.ok().json();
    assert_eq!(column(&all, "message_sid"), newest_first);
    let first = &all[4];
    assert_eq!(first["from"], "+15550000001");
    assert_eq!(first["to"], "+15557654321");
    assert_eq!(first["body"], "help");
    assert_eq!(first["status"], "answered");
    assert_eq!(first["response_status"], 200);
    assert_eq!(first["bot_id"], s.bot_id);
    assert_eq!(first["listener_id"], s.listener_id);
    assert!(first["run_id"].is_i64());

    // Filters.
    let count = |out: Out| out.ok().json().as_array().unwrap().len();
    let listener = s.listener_id.to_string();
    let bot = s.bot_id.to_string();
    let third_received = all[2]["received_at"].as_str().unwrap().to_owned();
    for (args, expected) in [
        (vec!["--number", "+15550000001"], 3),
        (vec!["--number", "+15557654321"], 5), // To
        (vec!["--number", "+19999999999"], 0),
        (vec!["--bot", "bot_twilio"], 5),
        (vec!["--bot", bot.as_str()], 5),
        (vec!["--listener", listener.as_str()], 5),
        (vec!["--status", "answered"], 5),
        (vec!["--status", "pending"], 0),
        (vec!["--since", "1h"], 5),
        (vec!["--until", "1h"], 0),
        (vec!["--since", third_received.as_str()], 3),
        (vec!["--until", third_received.as_str()], 2),
        (
            vec![
                "--number",
                "+15550000001",
                "--since",
                third_received.as_str(),
            ],
            1,
        ),
    ] {
        let mut full = vec!["messages", "list", "--json"];
        full.extend(&args);
        assert_eq!(count(s.cli(&full).await), expected, "{args:?}");
    }
    let none = s
        .cli(&["messages", "list", "--status", "pending"])
        .await
        .ok();
    assert_eq!(none.stdout, "no messages match\n");

    // Pages of two: the footer gives the cursor; the pages cover the list once, in order.
    let mut seen = Vec::new();
    let mut before: Option<String> = None;
    for page in 0..3 {
        let mut args = vec!["messages", "list", "--limit", "2"];
        if let Some(b) = &before {
            args.extend(["--before", b.as_str()]);
        }
        let out = s.cli(&args).await.ok();
        for row in out.rows() {
            seen.push(row.split_whitespace().nth(1).unwrap().to_owned());
        }
        before = out.next_page();
        assert_eq!(before.is_none(), page == 2, "{}", out.stdout);
    }
    assert_eq!(seen, newest_first);
    // The same with --json: the cursor goes to stderr.
    let page = s
        .cli(&["messages", "list", "--json", "--limit", "4"])
        .await
        .ok();
    let cursor = page.next_page().expect("a next page");
    assert!(
        page.stderr.starts_with("next page: --before "),
        "{}",
        page.stderr
    );
    let rest = s
        .cli(&[
            "messages", "list", "--json", "--limit", "4", "--before", &cursor,
        ])
        .await
        .ok();
    assert_eq!(column(&rest.json(), "message_sid"), [newest_first[4]]);
    assert_eq!(rest.stderr, "");

    // Show: the request's fields, the answer, the run; never the signature or the token.
    let shown = s.cli(&["messages", "show", &sids[0]]).await.ok();
    let text = &shown.stdout;
    assert!(
        text.starts_with(&format!("Message {}\n", sids[0])),
        "{text}"
    );
    for expected in [
        "\n== Request ==\nPOST from 127.0.0.1\n",
        "\nFrom: +15550000001\n",
        "\nBody: help\n",
        &format!("\nMessageSid: {}\n", sids[0]),
        &format!("\nAccountSid: {ACCOUNT_SID}\n"),
        "\n== Answer ==\nHTTP 200\ncontent-type: text/xml; charset=utf-8\n",
        &format!("\n{}\n", golden("help.xml")),
        "runs show ",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }
    for secret in ["Signature", "signature", AUTH_TOKEN, MASTER_KEY] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let doc = s
        .cli(&["messages", "show", &sids[0], "--json"])
        .await
        .ok()
        .json();
    assert_eq!(doc["message_sid"], sids[0].as_str());
    assert!(
        doc["request"]["params"]
            .as_array()
            .unwrap()
            .contains(&json!(["Body", "help"]))
    );
    assert_eq!(doc["answer"]["status"], 200);
    assert_eq!(doc["answer"]["body"], golden("help.xml"));
    assert_eq!(doc["run"]["id"], first["run_id"]);
    assert!(!doc.to_string().to_ascii_lowercase().contains("signature"));
    let missing = s.cli(&["messages", "show", "SMnosuchmessage"]).await;
    assert!(
        missing
            .one_line_error()
            .starts_with("error: no message SMnosuchmessage in the log"),
        "{}",
        missing.stderr
    );

    // Runs: one per message (the retried delivery ran nothing), newest first.
    let runs = s.cli(&["runs", "list", "--json"]).await.ok().json();
    assert_eq!(column(&runs, "message_sid"), newest_first);
    let run = &runs[4];
    assert_eq!(run["id"], first["run_id"]);
    assert_eq!(run["bot"], "Twilio Bot");
    assert_eq!(run["listener_id"], s.listener_id);
    assert_eq!(run["status"], 200);
    assert_eq!(run["errors"], json!([]));
    assert_eq!(run["mode"], "real");
    let exit_state = run["exit_state"].as_str().unwrap().to_owned();
    let table = s.cli(&["runs", "list"]).await.ok();
    assert_eq!(table.rows().len(), 5, "{}", table.stdout);
    assert!(table.rows()[4].contains(&sids[0]), "{}", table.stdout);
    for (args, expected) in [
        (vec!["--behavior", "behavior_43"], 5),
        (vec!["--behavior", "behavior_41"], 0),
        (vec!["--bot", "bot_twilio"], 5),
        (vec!["--listener", listener.as_str()], 5),
        (vec!["--status", exit_state.as_str()], 5),
        (vec!["--status", "errors"], 0),
        (vec!["--since", "10m"], 5),
        (vec!["--until", "2026-01-01"], 0),
    ] {
        let mut full = vec!["runs", "list", "--json"];
        full.extend(&args);
        assert_eq!(count(s.cli(&full).await), expected, "{args:?}");
    }
    let page = s.cli(&["runs", "list", "--limit", "3"]).await.ok();
    let cursor = page.next_page().expect("a next page");
    assert_eq!(cursor, runs[2]["id"].to_string());
    let rest = s
        .cli(&["runs", "list", "--json", "--before", &cursor])
        .await
        .ok()
        .json();
    assert_eq!(column(&rest, "id"), [&runs[3]["id"], &runs[4]["id"]]);

    // Show: the trace exactly as `simulate` prints it for the same request (record ids aside:
    // the simulator numbers its records itself), the trace id, the duration.
    let run_id = run["id"].to_string();
    let shown = s.cli(&["runs", "show", &run_id]).await.ok();
    let text = &shown.stdout;
    assert!(text.starts_with(&format!("Run {run_id}\n")), "{text}");
    for expected in [
        "  behavior   ",
        "  trace id   ",
        "  duration   ",
        &format!("  message    {}", sids[0]),
        "\n== Trace ==\n",
        "Text: `help` is `help`",
        "\nNo errors.\n",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }
    let mut simulate = vec![
        "simulate".to_owned(),
        switchboard_test_support::seed_package_path()
            .to_str()
            .unwrap()
            .to_owned(),
        "--behavior".into(),
        "behavior_43".into(),
        "--prompt".into(),
        "default_from=+15557654321".into(),
    ];
    for (k, v) in inbound_sms(&sids[0], "+15550000001", "help") {
        simulate.extend(["--param".into(), format!("{k}={v}")]);
    }
    let simulate: Vec<&str> = simulate.iter().map(String::as_str).collect();
    let simulated = s.cli(&simulate).await.ok().stdout;
    let trace_of = |text: &str| {
        let start = text.find("== Trace ==\n").unwrap();
        let end = text[start..]
            .find("\n\n")
            .map_or(text.len(), |e| start + e + 1);
        without_ids(&text[start..end])
    };
    assert_eq!(trace_of(text), trace_of(&simulated));
    let doc = s
        .cli(&["runs", "show", &run_id, "--json"])
        .await
        .ok()
        .json();
    assert!(doc["trace"].as_array().unwrap().len() > 3);
    assert!(doc["trace_id"].is_string());
    assert!(doc["duration_us"].as_i64().unwrap() > 0);
    let missing = s.cli(&["runs", "list", "--before", "987654321"]).await;
    assert_eq!(
        missing.one_line_error(),
        "error: --before 987654321: no run 987654321"
    );
    let missing = s.cli(&["runs", "show", "987654321"]).await;
    assert!(
        missing
            .one_line_error()
            .starts_with("error: no run 987654321")
    );
}

/// Record ids in a trace (`(1234)`) as `(#)`: the simulator numbers its records from 1, an
/// import from the database's sequence.
fn without_ids(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('(') {
        out.push_str(&rest[..=open]);
        rest = &rest[open + 1..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 && rest[digits..].starts_with(')') {
            out.push('#');
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_and_suppressions_are_listed_shown_and_suppressions_managed() {
    let s = System::start(true).await;
    // A recipient texts STOP to the account's number: the worker suppresses it.
    let stopped = "+15550000009";
    assert_eq!(s.sms(&message_sid(), stopped, "STOP").await, 200);

    let sent = s.send("+14155550101", "first").await.ok().json();
    assert_eq!(sent["kind"], "sent");
    let first_key = sent["job_id"].as_str().unwrap().to_owned();
    let second = s.send("+14155550102", "second").await.ok().json();
    let second_key = second["job_id"].as_str().unwrap().to_owned();
    let refused = s.send(stopped, "are you there?").await.json();
    assert_eq!(refused["kind"], "failed");
    assert_eq!(refused["error"]["code"], "suppressed");
    let refused_key = refused["job_id"].as_str().unwrap().to_owned();

    // The sandbox reports delivery through signed status callbacks: the row follows.
    let job = s
        .job_until(&first_key, |j| j["delivery_status"] == "delivered")
        .await;
    assert_eq!(job["state"], "sent");
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["twilio_sid"], sent["twilio_sid"]);
    assert_eq!(job["twilio_status"], "queued");
    // Its events, from the events stream: accepted, sent, then the delivery statuses.
    let kinds: Vec<&str> = job["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(&kinds[..2], ["accepted", "sent"], "{job}");
    assert!(
        job["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "status" && e["status"] == "delivered"),
        "{job}"
    );

    let table = s.cli(&["jobs", "list"]).await.ok();
    let rows = table.rows();
    assert_eq!(rows.len(), 3, "{}", table.stdout);
    assert!(
        rows[0].contains(&refused_key) && rows[0].contains("failed"),
        "{}",
        rows[0]
    );
    assert!(
        rows[0].contains("suppressed: +15550000009 is on"),
        "{}",
        rows[0]
    );
    assert!(
        rows[2].contains(&first_key) && rows[2].contains("delivered"),
        "{}",
        rows[2]
    );
    assert!(rows[2].contains(sent["twilio_sid"].as_str().unwrap()));
    let all = s.cli(&["jobs", "list", "--json"]).await.ok().json();
    assert_eq!(
        column(&all, "idempotency_key"),
        [&refused_key, &second_key, &first_key]
    );
    let count = |out: Out| out.ok().json().as_array().unwrap().len();
    for (args, expected) in [
        (vec!["--state", "sent"], 2),
        (vec!["--state", "failed"], 1),
        (vec!["--state", "dead"], 0),
        (vec!["--since", "1h"], 3),
        (vec!["--until", "1h"], 0),
    ] {
        let mut full = vec!["jobs", "list", "--json"];
        full.extend(&args);
        assert_eq!(count(s.cli(&full).await), expected, "{args:?}");
    }
    // Whom a job was for: the account and the recipient the outbound service recorded on each
    // row, the refused job's too.
    for (args, expected) in [
        (vec!["--number", "+14155550102"], 1),
        (vec!["--number", "+19999999999"], 0),
        (vec!["--account", "twilio"], 3),
        (
            vec![
                "--account",
                "twilio",
                "--state",
                "sent",
                "--number",
                "+14155550101",
            ],
            1,
        ),
    ] {
        let mut full = vec!["jobs", "list", "--json"];
        full.extend(&args);
        assert_eq!(count(s.cli(&full).await), expected, "{args:?}");
    }
    let unknown = s.cli(&["jobs", "list", "--account", "nobody"]).await;
    assert!(
        unknown
            .one_line_error()
            .starts_with("error: --account nobody: no connected account")
    );
    // Pages of two.
    let page = s.cli(&["jobs", "list", "--limit", "2"]).await.ok();
    assert_eq!(page.rows().len(), 2);
    let cursor = page.next_page().unwrap();
    assert!(cursor.ends_with(&format!("/{second_key}")), "{cursor}");
    let rest = s
        .cli(&[
            "jobs", "list", "--limit", "2", "--json", "--before", &cursor,
        ])
        .await
        .ok();
    assert_eq!(column(&rest.json(), "idempotency_key"), [&first_key]);

    // Show, as text.
    let shown = s.cli(&["jobs", "show", &first_key]).await.ok().stdout;
    for expected in [
        &format!("Job {first_key}\n"),
        "  state            sent\n",
        "  attempts         1\n",
        &format!(
            "  twilio sid       {}\n",
            sent["twilio_sid"].as_str().unwrap()
        ),
        "  create status    queued\n",
        "  delivery status  delivered at ",
        "  to               +14155550101\n",
        "  account          twilio (id ",
        "\n== Events ==\nPUBLISHED ",
        " accepted ",
        " sent ",
        " status ",
    ] {
        assert!(shown.contains(expected), "{expected:?} in {shown}");
    }
    let failed = s.cli(&["jobs", "show", &refused_key]).await.ok().stdout;
    assert!(failed.contains("  state            failed\n"), "{failed}");
    assert!(
        failed.contains("  last error       suppressed: +15550000009"),
        "{failed}"
    );
    let missing = s.cli(&["jobs", "show", "no-such-key"]).await;
    assert!(
        missing
            .one_line_error()
            .starts_with("error: no outbound job has key")
    );

    // Suppressions: the STOP is listed; an operator adds one, a send to it fails naming the
    // operator's reason, and after `remove` the number gets SMS again.
    let list = s.cli(&["suppressions", "list"]).await.ok();
    assert_eq!(list.rows().len(), 1, "{}", list.stdout);
    assert!(list.rows()[0].contains(stopped) && list.rows()[0].contains("keyword"));
    assert!(list.rows()[0].contains("STOP"));
    let complained = "+14155550103";
    let added = s
        .cli(&[
            "suppressions",
            "add",
            complained,
            "--reason",
            "complaint, ticket 42",
        ])
        .await
        .ok();
    assert!(
        added
            .stdout
            .starts_with(&format!("{complained} suppressed for account twilio")),
        "{}",
        added.stdout
    );
    let again = s
        .cli(&[
            "suppressions",
            "add",
            complained,
            "--reason",
            "again",
            "--json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(again["added"], false);
    assert_eq!(again["detail"], "complaint, ticket 42");
    let listed = s.cli(&["suppressions", "list", "--json"]).await.ok().json();
    assert_eq!(column(&listed, "number"), [complained, stopped]);
    assert_eq!(listed[0]["reason"], "operator");
    assert_eq!(listed[0]["account"], "twilio");
    for (args, expected) in [
        (vec!["--reason", "operator"], 1),
        (vec!["--reason", "keyword"], 1),
        (vec!["--reason", "twilio_21610"], 0),
        (vec!["--account", "twilio"], 2),
        (vec!["--number", stopped], 1),
        (vec!["--since", "1h"], 2),
    ] {
        let mut full = vec!["suppressions", "list", "--json"];
        full.extend(&args);
        assert_eq!(count(s.cli(&full).await), expected, "{args:?}");
    }
    let page = s.cli(&["suppressions", "list", "--limit", "1"]).await.ok();
    let cursor = page.next_page().unwrap();
    let rest = s
        .cli(&["suppressions", "list", "--json", "--before", &cursor])
        .await
        .ok()
        .json();
    assert_eq!(column(&rest, "number"), [stopped]);
    let before = s.created().await.len();
    let refused = s.send(complained, "hello?").await.json();
    assert_eq!(refused["error"]["code"], "suppressed");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("an operator added it (complaint, ticket 42)"),
        "{message}"
    );
    assert_eq!(s.created().await.len(), before, "Twilio was not called");
    let removed = s
        .cli(&["suppressions", "remove", complained, "--account", "twilio"])
        .await
        .ok();
    assert!(
        removed
            .stdout
            .starts_with(&format!("{complained} removed from account twilio"))
    );
    assert_eq!(
        s.send(complained, "hello again").await.ok().json()["kind"],
        "sent"
    );
    let gone = s.cli(&["suppressions", "remove", complained]).await;
    assert!(
        gone.one_line_error()
            .starts_with(&format!("error: {complained} is not on account ")),
        "{}",
        gone.stderr
    );
    let bad = s
        .cli(&["suppressions", "add", "555-1234", "--reason", "x"])
        .await;
    assert!(
        bad.one_line_error().starts_with("error: NUMBER 555-1234: "),
        "{}",
        bad.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_shown_and_replayed_under_their_own_or_a_new_key() {
    let s = System::start(true).await;
    // A send Twilio refuses once with 21211, a lookup it refuses with 20003, and a send published
    // without Nats-Msg-Id refused with 21211: three dead letters.
    let (refused, lookup, bare) = ("+14155550666", "+14155550777", "+14155550888");
    s.number_rule(refused, Some(json!({"error": {"code": 21211, "times": 1}})))
        .await;
    s.number_rule(lookup, Some(json!({"error": {"code": 20003}})))
        .await;
    s.number_rule(bare, Some(json!({"error": {"code": 21211, "times": 1}})))
        .await;
    let failed = s.send(refused, "will fail once").await.json();
    assert_eq!(failed["error"]["code"], "21211");
    let send_key = failed["job_id"].as_str().unwrap().to_owned();
    // The final event goes out just before the dead-letter copy: wait for the copy, so the
    // stream's order is the order of these jobs.
    s.dead_letters(1).await;
    let looked = s
        .cli(&["lookup", lookup, "--json", "--account", "twilio"])
        .await;
    assert_eq!(looked.code, 1, "{}", looked.stderr);
    assert_eq!(looked.json()["error"]["code"], "20003");
    let lookup_key = looked.json()["job_id"].as_str().unwrap().to_owned();
    s.dead_letters(2).await;
    let nats = s.nats.client().await.unwrap();
    let js = async_nats::jetstream::new(nats.clone());
    let bare_job = json!({
        "version": 1, "idempotency_key": "bare-1", "account": {"name": "twilio"},
        "to": bare, "from": FROM, "body": "no msg id"
    });
    js.publish(
        format!("{}.jobs.sms.send", s.subjects.prefix()),
        serde_json::to_vec(&bare_job).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    s.dead_letters(3).await;
    let dlq_stream = format!("{}_JOBS_DLQ", s.subjects.prefix().to_ascii_uppercase());

    // List: newest first, with the original subject, the code, the attempts and the key.
    let table = s.cli(&["dlq", "list"]).await.ok();
    let rows = table.rows();
    assert_eq!(rows.len(), 3, "{}", table.stdout);
    let prefix = s.subjects.prefix();
    assert!(rows[0].starts_with("3 ") && rows[0].contains(&format!("{prefix}.jobs.sms.send")));
    assert!(
        rows[0].contains("21211") && rows[0].contains("bare-1"),
        "{}",
        rows[0]
    );
    assert!(rows[1].starts_with("2 ") && rows[1].contains(&format!("{prefix}.jobs.lookup")));
    assert!(
        rows[1].contains("20003") && rows[1].contains(&lookup_key),
        "{}",
        rows[1]
    );
    assert!(
        rows[2].starts_with("1 ") && rows[2].contains(&send_key),
        "{}",
        rows[2]
    );
    let all = s.cli(&["dlq", "list", "--json"]).await.ok().json();
    assert_eq!(column(&all, "seq"), [3, 2, 1]);
    assert_eq!(all[2]["error_code"], "21211");
    assert_eq!(all[2]["attempts"], 1);
    assert_eq!(all[2]["job"], "sms.send");
    assert_eq!(all[2]["idempotency_key"], send_key.as_str());
    // Published without Nats-Msg-Id: the copy is named by its job-stream sequence.
    assert!(
        all[0]["msg_id"].as_str().unwrap().starts_with("seq:"),
        "{all}"
    );
    assert_eq!(all[0]["idempotency_key"], "bare-1");
    let count = |out: Out| out.ok().json().as_array().unwrap().len();
    for (args, expected) in [
        (vec!["--job", "lookup"], 1),
        (vec!["--job", "sms.send"], 2),
        (vec!["--code", "21211"], 2),
        (vec!["--code", "21211", "--job", "lookup"], 0),
        (vec!["--since", "1h"], 3),
        (vec!["--until", "1h"], 0),
    ] {
        let mut full = vec!["dlq", "list", "--json"];
        full.extend(&args);
        assert_eq!(count(s.cli(&full).await), expected, "{args:?}");
    }
    let page = s.cli(&["dlq", "list", "--limit", "2"]).await.ok();
    assert_eq!(page.next_page().as_deref(), Some("2"));
    let rest = s
        .cli(&["dlq", "list", "--json", "--before", "2"])
        .await
        .ok()
        .json();
    assert_eq!(column(&rest, "seq"), [1]);

    // Show: headers and the job as it was published.
    let shown = s.cli(&["dlq", "show", "1"]).await.ok().stdout;
    for expected in [
        &format!("Dead letter #1 ({dlq_stream})\n"),
        &format!("  subject    {prefix}.dlq.jobs.sms.send (published to {prefix}.jobs.sms.send)\n"),
        "  error      21211: ",
        &format!("  key        {send_key}\n"),
        "\n== Headers ==\n",
        &format!("Nats-Msg-Id: {send_key}\n"),
        "Switchboard-Error-Code: 21211\n",
        "Switchboard-Attempts: 1\n",
        "\n== Payload ==\n{\n",
        &format!("\"to\": \"{refused}\""),
    ] {
        assert!(shown.contains(expected), "{expected:?} in {shown}");
    }
    let doc = s.cli(&["dlq", "show", "1", "--json"]).await.ok().json();
    assert_eq!(doc["payload"]["to"], refused);
    assert_eq!(doc["payload_format"], "json");
    assert_eq!(doc["headers"]["Switchboard-Error-Code"], json!(["21211"]));
    let missing = s.cli(&["dlq", "show", "99"]).await;
    assert!(
        missing
            .one_line_error()
            .starts_with("error: no dead letter #99 in ")
    );

    // Replay under its own key: the outbound service finished that job (failed), so nothing is
    // published (it would be acknowledged without calling Twilio).
    let creates = s.created().await.len();
    let own = s.cli(&["dlq", "replay", "1"]).await;
    assert_eq!(own.code, 1, "{}{}", own.stdout, own.stderr);
    assert!(
        own.stdout.starts_with(&format!(
            "not replayed: the outbound service already finished job {send_key} (failed at "
        )),
        "{}",
        own.stdout
    );
    assert!(
        own.stdout
            .contains("; 21211: The 'To' number is not a valid phone number"),
        "{}",
        own.stdout
    );
    assert!(own.stdout.contains("switchboard dlq replay 1 --new-key"));
    // Without the database it cannot tell; JetStream can: the key is within the job stream's
    // duplicate window, so the replay is not stored.
    let own = s.cli_env(&["dlq", "replay", "1", "--json"], false).await;
    assert_eq!(own.code, 1, "{}{}", own.stdout, own.stderr);
    let doc = own.json();
    assert_eq!(doc["outcome"], "duplicate");
    assert_eq!(doc["published"]["duplicate"], true);
    assert_eq!(doc["idempotency_key"], send_key.as_str());
    // The same for the lookup (lookups keep no row: JetStream's window is what recognises it).
    let own = s.cli(&["dlq", "replay", "2"]).await;
    assert_eq!(own.code, 1);
    assert!(
        own.stdout.starts_with("not stored: the job stream "),
        "{}",
        own.stdout
    );
    assert!(own.stdout.contains(&format!(
        "Nats-Msg-Id {lookup_key} within its 24 h duplicate window"
    )));
    assert_eq!(s.created().await.len(), creates, "nothing was sent");

    // With a new key the job is new: sent (the sandbox refused only once).
    let replayed = s
        .cli(&["dlq", "replay", "1", "--new-key", "--wait"])
        .await
        .ok();
    let first_line = replayed.stdout.lines().next().unwrap();
    assert!(
        first_line.starts_with(&format!(
            "replayed dead letter #1 to {prefix}.jobs.sms.send under the new key replay-"
        )),
        "{}",
        replayed.stdout
    );
    assert!(first_line.contains(&format!("(its own was {send_key})")));
    assert!(
        replayed.stdout.contains("\nsent: SM"),
        "{}",
        replayed.stdout
    );
    let new_key = first_line
        .split("under the new key ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let job = s
        .cli(&["jobs", "show", &new_key, "--json"])
        .await
        .ok()
        .json();
    assert_eq!(job["state"], "sent");
    assert_eq!(
        job["job_id"],
        new_key.as_str(),
        "the job id was the old key: it follows"
    );
    let created = s.created().await;
    assert_eq!(created.len(), creates + 1);
    assert_eq!(created.last().unwrap()["message"]["to"], refused);
    // A key the outbound service has is refused for --new-key.
    let taken = s
        .cli(&["dlq", "replay", "3", &format!("--new-key={new_key}")])
        .await;
    assert!(
        taken.one_line_error().starts_with("error: --new-key "),
        "{}",
        taken.stderr
    );
    let bad = s.cli(&["dlq", "replay", "3", "--new-key=has space"]).await;
    assert!(
        bad.one_line_error()
            .starts_with("error: --new-key: 'has space' is not an idempotency key")
    );

    // The job published without Nats-Msg-Id: its own key is its payload's, which the outbound
    // service finished.
    let own = s.cli(&["dlq", "replay", "3"]).await;
    assert_eq!(own.code, 1);
    assert!(
        own.stdout
            .contains("already finished job bare-1 (failed at "),
        "{}",
        own.stdout
    );
    assert!(own.stdout.contains("; 21211: "), "{}", own.stdout);

    // The lookup with a key of our choice, once Twilio answers: completed.
    s.number_rule(lookup, None).await;
    let replayed = s
        .cli(&[
            "dlq",
            "replay",
            "2",
            "--new-key=lookup-again-1",
            "--wait",
            "--json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(replayed["outcome"], "published");
    assert_eq!(replayed["idempotency_key"], "lookup-again-1");
    assert_eq!(replayed["previous_key"], lookup_key.as_str());
    assert_eq!(replayed["event"]["kind"], "completed");
    assert_eq!(replayed["event"]["result"]["found"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_filter_values_get_one_line_errors_naming_the_flag() {
    let s = System::start(false).await;
    for (args, flag) in [
        (
            &["messages", "list", "--since", "yesterdayish"][..],
            "'--since <TIME>'",
        ),
        (&["runs", "list", "--until", "3x"][..], "'--until <TIME>'"),
        (
            &["jobs", "list", "--before", "soon/key"][..],
            "'--before <CURSOR>'",
        ),
        (&["messages", "list", "--limit", "0"][..], "'--limit <N>'"),
        (
            &["suppressions", "list", "--limit", "1001"][..],
            "'--limit <N>'",
        ),
        (&["dlq", "list", "--before", "abc"][..], "'--before <SEQ>'"),
        (
            &["jobs", "list", "--state", "lost"][..],
            "'--state <STATE>'",
        ),
        (
            &["runs", "list", "--status", "fine"][..],
            "'--status <STATUS>'",
        ),
    ] {
        let out = s.cli(args).await;
        assert_eq!(out.code, 2, "{args:?}");
        let line = out.one_line_error();
        assert!(line.starts_with("error: invalid value "), "{line}");
        assert!(line.contains(flag), "{args:?}: {line}");
        assert!(line.ends_with("(see --help)"), "{line}");
    }
    let out = s
        .cli(&["messages", "list", "--since", "yesterdayish"])
        .await;
    assert!(out.stderr.contains(
        "'yesterdayish' is not a time: expected RFC 3339 (2026-11-25T19:00:00Z), a UTC date (2026-11-25) or an age (30s, 15m, 1h, 7d, 2w)"
    ));
    for (args, expected) in [
        (
            &["messages", "list", "--bot", "nosuch"][..],
            "error: --bot nosuch: bot 'nosuch' not found",
        ),
        (
            &["runs", "list", "--listener", "nosuch"][..],
            "error: --listener nosuch: listener 'nosuch' not found",
        ),
        (
            &["runs", "list", "--since", "1h", "--until", "2h"][..],
            "error: --since ",
        ),
    ] {
        let out = s.cli(args).await;
        assert_eq!(out.code, 1, "{args:?}");
        assert!(out.one_line_error().starts_with(expected), "{}", out.stderr);
    }
    let out = s.cli_env(&["runs", "list"], false).await;
    assert_eq!(
        out.one_line_error(),
        "error: DATABASE_URL (or --database-url) is required for this command"
    );
}
