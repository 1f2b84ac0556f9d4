//! The `twilio-fake` binary: configuration from the environment, `healthcheck`, and a clean
//! exit on SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_twilio-fake");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn healthcheck(listen: &str) -> bool {
    Command::new(BIN)
        .args(["--listen", listen, "healthcheck"])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[tokio::test]
async fn binary_reads_env_and_stops_on_sigterm() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listen = format!("127.0.0.1:{}", free_port());
    assert!(!healthcheck(&listen), "nothing listens yet");
    let mut child = Command::new(BIN)
        .env("LISTEN_ADDR", &listen)
        .env(
            "TWILIO_FAKE_ACCOUNTS",
            format!("{ACCOUNT}:{TOKEN},{OTHER_ACCOUNT}:{OTHER_TOKEN}"),
        )
        // No TWILIO_FAKE_OPENAPI_DIR: the binary checks with its built-in descriptions.
        .env_remove("TWILIO_FAKE_OPENAPI_DIR")
        .env("TWILIO_FAKE_CALLBACK_DELAY_MS", "10")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(20), || async {
        healthcheck(&listen).then_some(())
    })
    .await;

    let client = reqwest::Client::new();
    let response = client
        .post(format!(
            "http://{listen}/2010-04-01/Accounts/{OTHER_ACCOUNT}/Messages.json"
        ))
        .basic_auth(OTHER_ACCOUNT, Some(OTHER_TOKEN))
        .form(&[("To", TO), ("From", FROM), ("Body", "from the binary")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        201,
        "the second account from the env list"
    );
    let health: serde_json::Value = client
        .get(format!("http://{listen}/_fake/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["accounts"], 2);
    assert_eq!(health["openapi_check"], true);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = eventually(Duration::from_secs(10), || {
        let waited = child.try_wait().unwrap();
        async move { waited }
    })
    .await;
    assert!(status.success(), "exit status {status:?}");
    assert!(!healthcheck(&listen));
}

#[test]
fn bad_configuration_is_refused() {
    let output = Command::new(BIN)
        .args(["--account", "ACnope:token", "--listen", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--account"), "{stderr}");
}
