//! Delivery status callbacks end to end, and the CLI's `send`/`lookup` against a running
//! outbound service: twilio-fake posts signed status callbacks to ingress's `/twilio/status`
//! (the outbound service's default `StatusCallback`), the behavior worker verifies them and
//! moves the job's status forward, never back, and publishes `status` events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use serde_json::json;
use switchboard_e2e::{ACCOUNT_SID, AUTH_TOKEN, Ingress, Stack, message_sid};
use switchboard_store::sqlx;
use switchboard_test_support::unchecked_sandbox_config;
use switchboard_twilio::client::{ClientConfig, TwilioClient};
use switchboard_wire::outbound::{AccountRef, EventKind, JobEvent};

const WAIT: Duration = Duration::from_secs(60);
const FROM: &str = "+15005550006";

/// The stack plus the sandbox, ingress (signing URL = its real address) and the outbound
/// service, with every job event collected.
struct Sandbox {
    stack: Stack,
    ingress: Ingress,
    fake: twilio_fake::Running,
    http: reqwest::Client,
    nats: async_nats::Client,
    events: Arc<Mutex<Vec<JobEvent>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _worker: switchboard_e2e::Worker,
}

impl Sandbox {
    async fn new() -> Sandbox {
        let stack = Stack::new().await.unwrap();
        let worker = stack.worker().await.unwrap();
        // No public base URL: ingress signs-checks against the address it was called at, which
        // is the one the sandbox posts to.
        let config = ingress::IngressConfig {
            public_base_url: None,
            ..stack.ingress_config()
        };
        let ingress = Ingress::start(&stack.nats.url(), config).await.unwrap();
        let fake = twilio_fake::spawn(unchecked_sandbox_config())
            .await
            .unwrap();

        let mut config = outbound::OutboundConfig::new(stack.subjects.prefix());
        config.status_callback_url = Some(ingress.url(outbound::STATUS_CALLBACK_PATH));
        config.fetch_wait = Duration::from_millis(500);
        config.request_timeout = Duration::from_secs(5);
        let twilio = TwilioClient::new(ClientConfig {
            api_base: fake.base_url(),
            lookups_base: fake.base_url(),
            request_timeout: config.request_timeout,
            ..Default::default()
        })
        .unwrap();
        let nats = stack.nats.client().await.unwrap();
        outbound::setup(&async_nats::jetstream::new(nats.clone()), &config)
            .await
            .unwrap();

        let events = Arc::new(Mutex::new(Vec::new()));
        let mut sub = nats
            .subscribe(format!("{}.events.>", stack.subjects.prefix()))
            .await
            .unwrap();
        let sink = events.clone();
        tokio::spawn(async move {
            while let Some(message) = sub.next().await {
                if let Ok(event) = serde_json::from_slice::<JobEvent>(&message.payload) {
                    sink.lock().unwrap().push(event);
                }
            }
        });
        nats.flush().await.unwrap();

        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(outbound::run(
            config,
            stack.store.clone(),
            stack.nats.client().await.unwrap(),
            twilio,
            async move {
                let _ = stopped.await;
            },
        ));
        Sandbox {
            stack,
            ingress,
            fake,
            http: reqwest::Client::new(),
            nats,
            events,
            stop: Some(stop),
            _worker: worker,
        }
    }

    /// Waits until `job_id` has a `status` event with `status`.
    async fn wait_status(&self, job_id: &str, status: &str) -> JobEvent {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(event) = self
                .statuses(job_id)
                .into_iter()
                .find(|e| e.status.as_deref() == Some(status))
            {
                return event;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {status} status for {job_id}: {:?}",
                self.statuses(job_id)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn statuses(&self, job_id: &str) -> Vec<JobEvent> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.job_id == job_id && e.kind == EventKind::Status)
            .cloned()
            .collect()
    }

    /// The job's recorded delivery status and error code.
    async fn recorded(&self, sid: &str) -> (Option<String>, Option<String>) {
        sqlx::query_as::<_, (Option<String>, Option<String>)>(
            "SELECT delivery_status, delivery_error_code FROM outbound_jobs WHERE twilio_sid = $1",
        )
        .bind(sid)
        .fetch_one(self.stack.store.pool())
        .await
        .unwrap()
    }

    /// Has the sandbox post a callback with `status` for `sid` now; answers ingress's status.
    async fn callback_now(&self, sid: &str, status: &str) -> u64 {
        let attempt: serde_json::Value = self
            .http
            .post(format!(
                "{}/_fake/messages/{sid}/callbacks",
                self.fake.base_url()
            ))
            .json(&json!({"status": status}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        attempt["response_status"].as_u64().unwrap_or(0)
    }

    /// POSTs a status callback signed with `token` for the URL ingress is called at.
    async fn post_callback(&self, form: &[(&str, &str)], token: &str) -> reqwest::Response {
        let url = self.ingress.url(outbound::STATUS_CALLBACK_PATH);
        let params: Vec<(String, String)> = form
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let signed = switchboard_twilio::signature::sign_form(token, &url, &params);
        self.http
            .post(url)
            .header("content-type", signed.content_type)
            .header("x-twilio-signature", signed.signature)
            .body(signed.body)
            .send()
            .await
            .unwrap()
    }

    fn send_args(to: &str, body: &str) -> switchboard::jobs::SendArgs {
        switchboard::jobs::SendArgs {
            to: to.into(),
            body: body.into(),
            from: Some(FROM.into()),
        }
    }

    /// `switchboard send --wait` through its ops functions; answers the final event.
    async fn send(&self, to: &str, body: &str) -> JobEvent {
        use switchboard::jobs;
        let account = jobs::resolve_account(None, Some(&self.stack.store))
            .await
            .unwrap();
        let key = jobs::fresh_key();
        let job = jobs::send_job(&Self::send_args(to, body), account, &key).unwrap();
        let subject = jobs::subjects(self.stack.subjects.prefix()).sms_send();
        let outcome = jobs::submit(&self.nats, &subject, &job, &key, &key, Some(WAIT))
            .await
            .unwrap();
        assert!(outcome.succeeded(), "{outcome:?}");
        outcome.event.unwrap()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_callbacks_move_the_status_forward_never_back_and_are_published() {
    let s = Sandbox::new().await;
    let sent = s.send("+14155550201", "status please").await;
    assert_eq!(sent.kind, EventKind::Sent);
    let sid = sent.twilio_sid.clone().unwrap();
    let job_id = sent.job_id.clone();

    // The sandbox calls back sent, then delivered, signed with the account's token.
    s.wait_status(&job_id, "sent").await;
    let delivered = s.wait_status(&job_id, "delivered").await;
    assert_eq!(delivered.twilio_sid.as_deref(), Some(sid.as_str()));
    assert_eq!(delivered.job, switchboard_wire::outbound::JobType::SmsSend);
    assert_eq!(delivered.attempt, 1);
    assert!(delivered.error.is_none());
    assert_eq!(s.recorded(&sid).await, (Some("delivered".into()), None));

    // A late `sent` after `delivered` is answered 200 and changes nothing; no event says so.
    assert_eq!(s.callback_now(&sid, "sent").await, 200);
    assert_eq!(s.recorded(&sid).await.0.as_deref(), Some("delivered"));
    // A repeated `delivered` is answered too; the events stream keeps one copy.
    assert_eq!(s.callback_now(&sid, "delivered").await, 200);
    let sent_events = s
        .statuses(&job_id)
        .iter()
        .filter(|e| e.status.as_deref() == Some("sent"))
        .count();
    assert_eq!(sent_events, 1, "{:?}", s.statuses(&job_id));

    // A forged callback (a valid form, the wrong token) gets 403 and changes nothing.
    let forged = s
        .post_callback(
            &[
                ("MessageSid", &sid),
                ("MessageStatus", "failed"),
                ("ErrorCode", "30007"),
                ("AccountSid", ACCOUNT_SID),
            ],
            "not-the-auth-token",
        )
        .await;
    assert_eq!(forged.status(), 403);
    assert_eq!(s.recorded(&sid).await, (Some("delivered".into()), None));

    // A callback genuinely signed by another connected account, about this account's message:
    // accepted (the signature is good) but it touches only its own account's messages.
    let other_sid = "AC99999999999999999999999999999999";
    let other_token = "the-other-accounts-token";
    s.stack
        .env
        .add_account(
            "other",
            other_sid,
            &secrecy::SecretString::from(other_token),
        )
        .await
        .unwrap();
    let other = s
        .post_callback(
            &[
                ("MessageSid", &sid),
                // `read` ranks above `delivered`: the account's own callback would record it.
                ("MessageStatus", "read"),
                ("AccountSid", other_sid),
            ],
            other_token,
        )
        .await;
    assert_eq!(other.status(), 200);
    assert_eq!(s.recorded(&sid).await, (Some("delivered".into()), None));
    let own = s
        .post_callback(
            &[
                ("MessageSid", &sid),
                ("MessageStatus", "read"),
                ("AccountSid", ACCOUNT_SID),
            ],
            AUTH_TOKEN,
        )
        .await;
    assert_eq!(own.status(), 200);
    assert_eq!(s.recorded(&sid).await, (Some("read".into()), None));

    // A genuine callback about a message no job sent: 200, nothing recorded, no event.
    let stranger = message_sid();
    let answer = s
        .post_callback(
            &[
                ("MessageSid", &stranger),
                ("MessageStatus", "delivered"),
                ("AccountSid", ACCOUNT_SID),
            ],
            AUTH_TOKEN,
        )
        .await;
    assert_eq!(answer.status(), 200);
    assert!(answer.text().await.unwrap().ends_with("<Response/>"));
    assert!(
        s.events
            .lock()
            .unwrap()
            .iter()
            .all(|e| e.twilio_sid.as_deref() != Some(stranger.as_str()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_records_twilios_error_code_and_a_lookup_prints_its_answer() {
    let s = Sandbox::new().await;
    let to = "+14155550202";
    let rule = s
        .http
        .put(format!(
            "{}/_fake/numbers/{}",
            s.fake.base_url(),
            to.replace('+', "%2B")
        ))
        .json(&json!({"delivery": {"status": "undelivered", "error_code": 30003}}))
        .send()
        .await
        .unwrap();
    assert!(rule.status().is_success());
    let sent = s.send(to, "this will not arrive").await;
    let sid = sent.twilio_sid.clone().unwrap();
    let undelivered = s.wait_status(&sent.job_id, "undelivered").await;
    let error = undelivered.error.expect("Twilio's error");
    assert_eq!(error.code, "30003");
    assert_eq!(
        error.more_info.as_deref(),
        Some("https://www.twilio.com/docs/errors/30003")
    );
    assert_eq!(
        s.recorded(&sid).await,
        (Some("undelivered".into()), Some("30003".into()))
    );
    // Terminal stays terminal: a `delivered` after `undelivered` is not applied.
    assert_eq!(s.callback_now(&sid, "delivered").await, 200);
    assert_eq!(s.recorded(&sid).await.0.as_deref(), Some("undelivered"));

    // `switchboard lookup --json`'s path: a v2 lookup through the running outbound service.
    use switchboard::jobs;
    let account = jobs::resolve_account(Some("twilio"), Some(&s.stack.store))
        .await
        .unwrap();
    assert_eq!(account, AccountRef::Name("twilio".into()));
    let key = jobs::fresh_key();
    let job = jobs::lookup_job(to, &["line_type_intelligence".into()], &[], account, &key).unwrap();
    let subject = jobs::subjects(s.stack.subjects.prefix()).lookup();
    let outcome = jobs::submit(&s.nats, &subject, &job, &key, &key, Some(WAIT))
        .await
        .unwrap();
    assert!(outcome.succeeded(), "{outcome:?}");
    let text = jobs::render_text(&outcome);
    assert!(text.starts_with("found: true\n"), "{text}");
    assert!(
        text.contains("line_type_intelligence.type: mobile"),
        "{text}"
    );
    assert!(text.contains(&format!("phone_number: {to}")), "{text}");

    // An unknown account is refused before anything is published.
    let e = jobs::resolve_account(Some("nobody"), Some(&s.stack.store))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no connected account"), "{e}");
}
