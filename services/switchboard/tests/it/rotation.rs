//! Master key rotation end to end, and the secrets the binary must never show. Accounts are
//! added with key A through the binary (one of them then stored in the first ciphertext format,
//! without a key id); the services restarted with key B current and A old verify signed
//! webhooks and send jobs through the sandbox; `switchboard accounts rekey` re-encrypts every
//! token with B (reporting the key ids it found, and nothing to do when run again); with B
//! alone everything still works, and A alone is refused with the one-line error. Also: the
//! test suite's public key is refused without SWITCHBOARD_ALLOW_TEST_KEY=1, and a password in
//! DATABASE_URL appears neither in --help nor in a connection error.

use std::time::Duration;

use serde_json::Value;
use switchboard_store::{Keyring, MasterKey, Store, StoreError, sqlx};
use switchboard_test_support::{
    ACCOUNT_SID, AUTH_TOKEN, MASTER_KEY, NatsServer, fresh_database, inbound_sms, init,
    seed_package, unique,
};
use switchboard_wire::Subjects;

use crate::cli;

/// Two keys that are not the test suite's (hex and base64 both accepted).
const KEY_A: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const KEY_B: &str = "sbKysrKysrKysrKysrKysrKysrKysrKysrKysrKysrI=";
const FROM: &str = "+15005550006";
/// A second account, stored in the first format (no key id).
const LEGACY_SID: &str = "AC00000000000000000000000000000001";

fn key(text: &str) -> MasterKey {
    MasterKey::parse(text).unwrap()
}

fn keys(current: &str, old: &[&str]) -> Keyring {
    Keyring::with_old(key(current), Some(&old.join(","))).unwrap()
}

/// Ingress, a behavior worker and the outbound service on `store`'s keys; stopped on drop.
struct Services {
    ingress_url: String,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Services {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
    }
}

async fn start(store: &Store, nats: &NatsServer, subjects: &Subjects, sandbox: &str) -> Services {
    // What every service does first: refuse keys that do not decrypt the stored credentials.
    store
        .check_master_key_at_start(Duration::from_secs(5))
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
    let mut config = outbound::OutboundConfig::new(subjects.prefix());
    config.fetch_wait = Duration::from_millis(300);
    config.request_timeout = Duration::from_secs(5);
    config.limits.enabled = false;
    let twilio =
        switchboard_twilio::client::TwilioClient::new(switchboard_twilio::client::ClientConfig {
            api_base: sandbox.to_owned(),
            lookups_base: sandbox.to_owned(),
            request_timeout: config.request_timeout,
            ..Default::default()
        })
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
    Services { ingress_url, stops }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_master_key_keeps_webhooks_and_jobs_working() {
    init();
    let nats = NatsServer::start().await.unwrap();
    let (database_url, pool) = fresh_database().await.unwrap();
    let subjects = Subjects::new(&unique("sbr"));
    let sandbox = switchboard_test_support::sandbox().await.unwrap();
    let nats_url = nats.url();
    let base_env = [
        ("DATABASE_URL", database_url.as_str()),
        ("NATS_URL", nats_url.as_str()),
        ("SWITCHBOARD_SUBJECT_PREFIX", subjects.prefix()),
        ("TWILIO_AUTH_TOKEN", AUTH_TOKEN),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut env = base_env.to_vec();
        env.extend_from_slice(extra);
        env
    };
    let add = |name: &'static str, sid: &'static str| {
        let env = with(&[("SWITCHBOARD_MASTER_KEY", KEY_A)]);
        async move {
            let out = cli(
                &["accounts", "add", "--name", name, "--account-sid", sid],
                &env,
            )
            .await;
            assert_eq!(out.code, 0, "{out:?}");
            out.stdout.trim().parse::<i64>().unwrap()
        }
    };
    // Key A: two accounts; the second rewritten in the first format, as stored before key ids.
    let account = add("twilio", ACCOUNT_SID).await;
    let legacy = add("legacy", LEGACY_SID).await;
    sqlx::query("UPDATE connected_accounts SET auth_token_enc = $2 WHERE id = $1")
        .bind(legacy)
        .bind(key(KEY_A).encrypt(AUTH_TOKEN, LEGACY_SID))
        .execute(&pool)
        .await
        .unwrap();
    let store_a = Store::new(pool.clone(), Some(key(KEY_A)));
    let env = switchboard::ops::Env {
        store: store_a.clone(),
        nats: None,
        subjects: subjects.clone(),
        public_base_url: "http://localhost:8080".into(),
    };
    let prompts: Vec<switchboard::args::KeyValue> = [
        format!("twilio_account_id={account}"),
        format!("account_sid={ACCOUNT_SID}"),
        "default_from=+15557654321".to_string(),
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let (report, _) = env.import(&seed_package(), &prompts).await.unwrap();
    let guid = report.webhooks[0].guid.clone();
    let (id_a, id_b) = (key(KEY_A).id().to_string(), key(KEY_B).id().to_string());

    let http = reqwest::Client::new();
    let exercise = |services: &Services, n: usize| {
        let url = format!("{}/webhooks/{guid}", services.ingress_url);
        let http = http.clone();
        let env = with(&[]);
        async move {
            let status = switchboard_test_support::post_signed_form(
                &http,
                &url,
                &url,
                &inbound_sms(&format!("SM{n:032}"), "+14155550100", "hello"),
                AUTH_TOKEN,
            )
            .await
            .status();
            assert_eq!(status, 200, "the signed webhook verifies (round {n})");
            let to = format!("+1415555{n:04}");
            let out = cli(
                &[
                    "send",
                    "--account",
                    "twilio",
                    "--to",
                    &to,
                    "--body",
                    "hi",
                    "--from",
                    FROM,
                    "--wait",
                    "--json",
                ],
                &env,
            )
            .await;
            let event: Value =
                serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
            assert_eq!(event["kind"], "sent", "round {n}: {out:?}");
        }
    };

    // B current, A old: everything reads A's ciphertexts, and the start-up check names them.
    let store_ba = Store::with_keys(pool.clone(), Some(keys(KEY_B, &[KEY_A])));
    let check = store_ba.key_check().await.unwrap();
    assert_eq!(check.accounts, 2);
    assert_eq!(
        check.on_old_keys,
        vec![(account, key(KEY_A).id()), (legacy, key(KEY_A).id())]
    );
    assert!(store_ba.credentials(legacy).await.unwrap().is_some());
    let services = start(&store_ba, &nats, &subjects, &sandbox.base_url()).await;
    exercise(&services, 1).await;
    drop(services);

    // Rekey with B current and A old: both tokens, once.
    let rotation = with(&[
        ("SWITCHBOARD_MASTER_KEY", KEY_B),
        ("SWITCHBOARD_OLD_MASTER_KEYS", KEY_A),
    ]);
    let out = cli(&["accounts", "rekey"], &rotation).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        format!(
            "re-encrypted 2 of 2 account(s) with key {id_b}; key ids found: {id_a}: 1, {id_a} (no key id stored): 1"
        )
    );
    let out = cli(&["accounts", "rekey", "--json"], &rotation).await;
    assert_eq!(out.code, 0, "{out:?}");
    let again: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(again["reencrypted"], 0, "idempotent: {again}");
    assert_eq!(again["found"][&id_b], 2, "{again}");

    // B alone: everything still works.
    let store_b = Store::new(pool.clone(), Some(key(KEY_B)));
    let check = store_b.key_check().await.unwrap();
    assert!(
        check.on_old_keys.is_empty() && check.without_key_id == 0,
        "{check:?}"
    );
    let services = start(&store_b, &nats, &subjects, &sandbox.base_url()).await;
    exercise(&services, 2).await;
    drop(services);

    // A alone: refused, by the services' start-up check and by the CLI, in one line.
    let err = store_a
        .check_master_key_at_start(Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::WrongMasterKey { account_id, .. } if account_id == account),
        "{err}"
    );
    let out = cli(
        &["accounts", "rekey"],
        &with(&[("SWITCHBOARD_MASTER_KEY", KEY_A)]),
    )
    .await;
    assert_ne!(out.code, 0);
    assert_eq!(
        out.stderr,
        format!(
            "error: SWITCHBOARD_MASTER_KEY does not decrypt the stored credentials of account {account} ('twilio'): it differs from the key they were saved with (start every service and the CLI with that key, or add the account again with the new one)\n"
        )
    );
}

#[tokio::test]
async fn the_test_key_is_refused_unless_tests_allow_it() {
    init();
    let (database_url, _pool) = fresh_database().await.unwrap();
    let env = [
        ("DATABASE_URL", database_url.as_str()),
        ("SWITCHBOARD_MASTER_KEY", MASTER_KEY),
    ];
    let out = cli(&["accounts", "list"], &env).await;
    assert_ne!(out.code, 0);
    assert_eq!(
        out.stderr,
        "error: SWITCHBOARD_MASTER_KEY is the public test key of Switchboard's test suite, which anyone can read: make a key with `openssl rand -base64 32` (only tests may use it, with SWITCHBOARD_ALLOW_TEST_KEY=1)\n"
    );
    // As an old key too.
    let out = cli(
        &["accounts", "list"],
        &[
            ("DATABASE_URL", database_url.as_str()),
            ("SWITCHBOARD_MASTER_KEY", KEY_A),
            ("SWITCHBOARD_OLD_MASTER_KEYS", MASTER_KEY),
        ],
    )
    .await;
    assert!(
        out.stderr
            .starts_with("error: SWITCHBOARD_OLD_MASTER_KEYS is the public test key"),
        "{out:?}"
    );
    let mut allowed = env.to_vec();
    allowed.push(("SWITCHBOARD_ALLOW_TEST_KEY", "1"));
    let out = cli(&["accounts", "list"], &allowed).await;
    assert_eq!(out.code, 0, "{out:?}");
}

#[tokio::test]
async fn a_database_password_is_never_shown() {
    let env = [
        ("DATABASE_URL", "postgres://u:s3cr3t@127.0.0.1:1/db"),
        ("NATS_URL", "nats://n:n4ts3cr3t@127.0.0.1:1"),
    ];
    let help = cli(&["--help"], &env).await;
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("DATABASE_URL"), "{}", help.stdout);
    let failed = cli(&["accounts", "list"], &env).await;
    assert_ne!(failed.code, 0);
    assert!(!failed.stderr.is_empty());
    for out in [&help, &failed] {
        for secret in ["s3cr3t", "n4ts3cr3t"] {
            assert!(
                !out.stdout.contains(secret) && !out.stderr.contains(secret),
                "{out:?}"
            );
        }
    }
}
