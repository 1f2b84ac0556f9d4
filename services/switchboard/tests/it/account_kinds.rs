//! Connected accounts for HTTP services beyond Twilio (issue 12), end to end through the
//! binary: `accounts add --kind bearer` for a Slack-like and a Stripe-like service (tokens from
//! ACCOUNT_TOKEN), `accounts list` (kind and hosts, never a token), `import` of the fixture
//! packages (tests/fixtures, hand-written in the shape of Cerb bot packages) unchanged, whose
//! connected-account prompts accept only an account of a fitting kind, then `switchboard run`
//! of their macro behaviors against a running behavior worker and outbound HTTP endpoint whose
//! sandbox routes send slack.com and api.stripe.com to a local fake API: each request arrives
//! with its account's token, and no token appears in the run's output. Also: the one-line
//! argument errors of `accounts add`.

use std::path::PathBuf;

use switchboard_store::{MasterKey, Store};
use switchboard_test_support::{
    ACCOUNT_SID, AUTH_TOKEN, Answer, MASTER_KEY, NatsServer, fresh_database, http_recorder, init,
    unique,
};
use switchboard_wire::Subjects;

use crate::cli;

const SLACK_TOKEN: &str = "xoxb-fixture-slack-token-42";
const STRIPE_KEY: &str = "sk_test_fixture_stripe_key_42";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_and_stripe_packages_run_with_operator_connected_accounts() {
    init();
    let nats = NatsServer::start().await.unwrap();
    let (database_url, pool) = fresh_database().await.unwrap();
    let subjects = Subjects::new(&unique("sbak"));
    let nats_url = nats.url();
    let env = [
        ("DATABASE_URL", database_url.as_str()),
        ("NATS_URL", nats_url.as_str()),
        ("SWITCHBOARD_SUBJECT_PREFIX", subjects.prefix()),
        ("SWITCHBOARD_MASTER_KEY", MASTER_KEY),
        ("SWITCHBOARD_ALLOW_TEST_KEY", "1"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut all = env.to_vec();
        all.extend_from_slice(extra);
        all
    };
    let add = |args: Vec<&'static str>, extra: Vec<(&'static str, &'static str)>| {
        let env = with(&extra);
        async move {
            let mut all = vec!["accounts", "add"];
            all.extend(args);
            let out = cli(&all, &env).await;
            assert_eq!(out.code, 0, "{out:?}");
            out.stdout.trim().to_owned()
        }
    };
    let twilio = add(
        vec!["--name", "twilio", "--account-sid", ACCOUNT_SID],
        vec![("TWILIO_AUTH_TOKEN", AUTH_TOKEN)],
    )
    .await;
    let slack = add(
        vec![
            "--name",
            "slack",
            "--kind",
            "bearer",
            "--service",
            "slack",
            "--allowed-host",
            "Slack.com",
        ],
        vec![("ACCOUNT_TOKEN", SLACK_TOKEN)],
    )
    .await;
    let stripe = add(
        vec![
            "--name",
            "stripe",
            "--kind",
            "bearer",
            "--service",
            "stripe",
            "--allowed-host",
            "api.stripe.com",
        ],
        vec![("ACCOUNT_TOKEN", STRIPE_KEY)],
    )
    .await;

    let listed = cli(&["accounts", "list"], &env).await;
    assert_eq!(listed.code, 0, "{listed:?}");
    for s in [SLACK_TOKEN, STRIPE_KEY, AUTH_TOKEN] {
        assert!(!listed.stdout.contains(s), "{}", listed.stdout);
    }
    let slack_line = listed
        .stdout
        .lines()
        .find(|l| l.contains(" slack "))
        .unwrap();
    assert!(
        slack_line.contains("bearer") && slack_line.ends_with("slack.com"),
        "{slack_line}"
    );
    let json = cli(&["accounts", "list", "--json"], &env).await;
    let accounts: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(accounts[1]["kind"], "bearer");
    assert_eq!(accounts[1]["provider"], "slack");
    assert_eq!(accounts[1]["account_sid"], serde_json::Value::Null);
    assert_eq!(
        accounts[1]["allowed_hosts"],
        serde_json::json!(["slack.com"])
    );

    // Prompts accept only an account that fits.
    let slack_pkg = fixture("slack-bot.package.json");
    let stripe_pkg = fixture("stripe-bot.package.json");
    let import = |pkg: &PathBuf, prompts: Vec<String>| {
        let mut args = vec!["import".to_owned(), pkg.to_str().unwrap().to_owned()];
        for p in prompts {
            args.push("--prompt".into());
            args.push(p);
        }
        let env = env.to_vec();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli(&args, &env).await
        }
    };
    let refused = import(
        &slack_pkg,
        vec![
            format!("slack_account_id={twilio}"),
            "default_channel=#general".into(),
        ],
    )
    .await;
    assert_eq!(refused.code, 1, "{refused:?}");
    assert_eq!(refused.stderr.lines().count(), 1, "{refused:?}");
    assert!(
        refused.stderr.contains(&format!(
            "'Slack account:' (slack_account_id): this prompt asks for a slack account; account {twilio} ('twilio') is a Twilio account: add one for slack with `switchboard accounts add --kind bearer|basic|api-key --service slack --allowed-host <host>` (accounts that fit: {slack} ('slack'))"
        )),
        "{refused:?}"
    );
    let refused = import(&stripe_pkg, vec![format!("stripe_account_id={slack}")]).await;
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("is a bearer-token account for slack"),
        "{refused:?}"
    );
    let seed = switchboard_test_support::seed_package_path();
    let refused = import(
        &seed,
        vec![
            format!("twilio_account_id={slack}"),
            format!("account_sid={ACCOUNT_SID}"),
            "default_from=+15005550006".into(),
        ],
    )
    .await;
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains(&format!(
            "'Twilio account:' (twilio_account_id): this prompt asks for a Twilio account; account {slack} ('slack') is a bearer-token account (accounts that fit: {twilio} ('twilio'))"
        )),
        "{refused:?}"
    );

    // The packages as they are, with their accounts.
    let imported = import(
        &slack_pkg,
        vec![
            format!("slack_account_id={slack}"),
            "default_channel=#general".into(),
        ],
    )
    .await;
    assert_eq!(imported.code, 0, "{imported:?}");
    let imported = import(&stripe_pkg, vec![format!("stripe_account_id={stripe}")]).await;
    assert_eq!(imported.code, 0, "{imported:?}");

    // A behavior worker and the outbound HTTP endpoint, the fake standing in for both APIs.
    let store = Store::new(pool.clone(), Some(MasterKey::parse(MASTER_KEY).unwrap()));
    let worker = behavior_worker::start(
        store.clone(),
        nats.client().await.unwrap(),
        subjects.clone(),
        behavior_worker::WorkerOptions::default(),
    )
    .await
    .unwrap();
    let (stop_worker, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(worker.serve(async move {
        let _ = stopped.await;
    }));
    // A fake of both APIs: Slack's chat.postMessage answers `{"ok":true,…}`, Stripe's
    // customers list two customers.
    let (addr, mut seen) = http_recorder(|head| Answer {
        content_type: Some("application/json"),
        body: if head.starts_with("POST /api/chat.postMessage") {
            r#"{"ok":true,"channel":"C123","ts":"1700000000.000100"}"#
        } else if head.starts_with("GET /v1/customers") {
            r#"{"object":"list","data":[{"id":"cus_1"},{"id":"cus_2"}],"has_more":false}"#
        } else {
            r#"{"error":"not found"}"#
        },
    })
    .await;
    let mut config = outbound::http::HttpConfig::new(subjects.prefix());
    for host in ["slack.com", "api.stripe.com"] {
        config.routes.push(outbound::http::SandboxRoute {
            host: host.into(),
            base: format!("http://{addr}").parse().unwrap(),
        });
    }
    let http = outbound::http::start(config, store.clone(), nats.client().await.unwrap())
        .await
        .unwrap();
    let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(http.serve(async move {
        let _ = stopped.await;
    }));

    let run = cli(
        &[
            "run",
            "bot_slack",
            "behavior_slack_post",
            "--var",
            "var_text=Deploy finished",
            "--json",
        ],
        &env,
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stdout.contains(SLACK_TOKEN), "{}", run.stdout);
    let result: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(result["vars"]["result"], "posted", "{result:#}");
    let request = seen.recv().await.unwrap();
    assert!(
        request.starts_with("POST /api/chat.postMessage HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request.to_ascii_lowercase().contains(&format!(
            "\r\nauthorization: bearer {}\r\n",
            SLACK_TOKEN.to_ascii_lowercase()
        )),
        "{request}"
    );
    assert!(
        request.ends_with(r##"{"channel":"#general","text":"Deploy finished"}"##),
        "{request}"
    );

    let run = cli(
        &[
            "run",
            "bot_stripe",
            "behavior_stripe_customers",
            "--var",
            "var_limit=2",
            "--json",
        ],
        &env,
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stdout.contains(STRIPE_KEY), "{}", run.stdout);
    let result: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(result["vars"]["customers"], "2", "{result:#}");
    let request = seen.recv().await.unwrap();
    assert!(
        request.starts_with("GET /v1/customers?limit=2 HTTP/1.1\r\n"),
        "{request}"
    );
    let lower = request.to_ascii_lowercase();
    assert!(
        lower.contains(&format!(
            "\r\nauthorization: bearer {}\r\n",
            STRIPE_KEY.to_ascii_lowercase()
        )),
        "{request}"
    );
    assert!(
        lower.contains("\r\nstripe-version: 2024-06-20\r\n"),
        "{request}"
    );
    assert!(!request.contains(SLACK_TOKEN), "one account's token only");

    // The runs as recorded: no token anywhere.
    let runs: Vec<String> =
        switchboard_store::sqlx::query_scalar("SELECT row_to_json(r)::text FROM behavior_runs r")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    for r in &runs {
        assert!(!r.contains(SLACK_TOKEN) && !r.contains(STRIPE_KEY), "{r}");
    }

    let _ = stop_http.send(());
    let _ = stop_worker.send(());
    served.await.unwrap().unwrap();
}

#[tokio::test]
async fn accounts_add_argument_errors_are_one_line() {
    // Checked before anything is connected to: no database, no key needed.
    // (arguments, environment, the one line of stderr)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &["--kind", "bearer"],
            &[("ACCOUNT_TOKEN", "t")],
            "error: --kind bearer needs --allowed-host HOST",
        ),
        (
            &[
                "--kind",
                "bearer",
                "--allowed-host",
                "slack.com",
                "--header",
                "X-Key",
            ],
            &[("ACCOUNT_TOKEN", "t")],
            "error: --header is not for --kind bearer: it belongs to --kind api-key",
        ),
        (
            &["--kind", "api-key", "--allowed-host", "a.example.com"],
            &[("ACCOUNT_TOKEN", "t")],
            "error: --kind api-key needs --header NAME",
        ),
        (
            &[
                "--kind",
                "api-key",
                "--allowed-host",
                "a.example.com",
                "--header",
                "X-Key",
                "--query-param",
                "key",
            ],
            &[("ACCOUNT_TOKEN", "t")],
            "error: --kind api-key takes --header or --query-param, not both",
        ),
        (
            &["--kind", "basic", "--allowed-host", "a.example.com"],
            &[("ACCOUNT_PASSWORD", "p")],
            "error: --kind basic needs --username",
        ),
        (
            &[
                "--kind",
                "bearer",
                "--allowed-host",
                "https://slack.com/api",
            ],
            &[("ACCOUNT_TOKEN", "t")],
            "error: --allowed-host 'https://slack.com/api' is not a host name",
        ),
        (
            &["--kind", "bearer", "--allowed-host", "slack.com"],
            &[],
            "error: --kind bearer needs its secret: set ACCOUNT_TOKEN, or give it on standard input with --secret-stdin",
        ),
        (
            &["--kind", "twilio", "--allowed-host", "slack.com"],
            &[("TWILIO_AUTH_TOKEN", "t")],
            "error: --allowed-host is not for --kind twilio",
        ),
        (
            &[
                "--kind",
                "bearer",
                "--allowed-host",
                "slack.com",
                "--account-sid",
                ACCOUNT_SID,
            ],
            &[("ACCOUNT_TOKEN", "t")],
            "error: --account-sid is not for --kind bearer",
        ),
        (
            &["--kind", "oauth"],
            &[],
            "error: invalid value 'oauth' for '--kind <KIND>': 'oauth' is not an account kind (twilio, bearer, basic, api-key)",
        ),
    ];
    for (args, env, expected) in cases {
        let mut all = vec!["accounts", "add", "--name", "x"];
        all.extend_from_slice(args);
        let out = cli(&all, env).await;
        assert_ne!(out.code, 0, "{args:?}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {out:?}");
        assert!(out.stderr.starts_with(expected), "{args:?}: {out:?}");
    }
}
