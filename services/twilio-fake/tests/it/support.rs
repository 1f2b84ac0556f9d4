//! Starting a fake per test, and the requests every test makes.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use twilio_fake::{Account, Config};

/// The account every test authenticates as.
pub const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
pub const TOKEN: &str = "test-auth-token";
/// A second configured account.
pub const OTHER_ACCOUNT: &str = "ACfedcba9876543210fedcba9876543210";
pub const OTHER_TOKEN: &str = "other-auth-token";

pub const FROM: &str = "+15017122661";
pub const TO: &str = "+15558675310";

/// A running fake; stopped when dropped.
pub struct Fake {
    pub base: String,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    pub server: Option<tokio::task::JoinHandle<Result<(), twilio_fake::RunError>>>,
}

impl Fake {
    pub async fn start() -> Fake {
        Fake::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Fake {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut config = Config::for_tests(vec![
            Account::new(ACCOUNT.parse().unwrap(), TOKEN),
            Account::new(OTHER_ACCOUNT.parse().unwrap(), OTHER_TOKEN),
        ]);
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel();
        let server = tokio::spawn(twilio_fake::run(config, listener, async move {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Fake {
            base,
            client,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Asks the server to stop and waits for `run` to return.
    pub async fn stop(mut self) -> Result<(), twilio_fake::RunError> {
        let _ = self.stop.take().unwrap().send(());
        self.server.take().unwrap().await.unwrap()
    }

    pub fn messages_url(&self) -> String {
        format!("{}/2010-04-01/Accounts/{ACCOUNT}/Messages.json", self.base)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POST a create with the test account's credentials.
    pub async fn create(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(self.messages_url())
            .basic_auth(ACCOUNT, Some(TOKEN))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// GET with the test account's credentials.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .basic_auth(ACCOUNT, Some(TOKEN))
            .send()
            .await
            .unwrap()
    }

    pub async fn admin(&self, path: &str) -> Value {
        let response = self
            .client
            .get(self.url(&format!("/_fake{path}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET /_fake{path}");
        response.json().await.unwrap()
    }

    pub async fn admin_put(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .put(self.url(&format!("/_fake{path}")))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Sets the rule of one number; panics if the admin API refuses it.
    pub async fn rule(&self, number: &str, rule: Value) {
        let encoded = number.replace('+', "%2B");
        let response = self.admin_put(&format!("/numbers/{encoded}"), rule).await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }

    /// Sets the global faults; panics if the admin API refuses them.
    pub async fn faults(&self, faults: Value) {
        let response = self.admin_put("/faults", faults).await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }

    pub async fn requests(&self) -> Vec<Value> {
        self.admin("/requests").await.as_array().unwrap().clone()
    }

    /// The last recorded request.
    pub async fn last_request(&self) -> Value {
        self.requests().await.pop().expect("a recorded request")
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Asserts Twilio's JSON error shape and returns the code.
pub async fn expect_error(response: reqwest::Response, status: u16, code: u64) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["code", "message", "more_info", "status"], "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(
        body["more_info"],
        format!("https://www.twilio.com/docs/errors/{code}")
    );
    assert!(!body["message"].as_str().unwrap().is_empty());
    body
}

/// Polls `check` until it returns Some, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
