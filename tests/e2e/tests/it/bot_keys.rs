//! Bot keys (`_set_key`, `_get_key`; docs/semantics.md §4.5) through ingress → NATS →
//! behavior-worker, kept in the worker's JetStream key-value bucket: the fixture
//! `examples/message-counter.package.json` counts each sender's messages across webhooks, its
//! keys expire, and a worker started again (or another replica) sees the same keys.

use std::time::Duration;

use switchboard_e2e::*;

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

pub(crate) fn twiml(message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response>\n    <Message>{message}</Message>\n</Response>"
    )
}

/// Imports the fixture with the stack's Twilio account and the given counting window; answers
/// its webhook guid.
pub(crate) async fn import_counter(stack: &Stack, window: &str) -> String {
    let account = stack
        .store
        .list_accounts()
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.name == "twilio")
        .expect("the stack's Twilio account");
    let package =
        std::fs::read_to_string(repo_root().join("examples/message-counter.package.json")).unwrap();
    let prompts: Vec<switchboard::args::KeyValue> = [
        format!("twilio_account_id={}", account.id),
        format!("account_sid={ACCOUNT_SID}"),
        "default_from=+15557654321".to_string(),
        format!("window={window}"),
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let (report, _) = stack.env.import(&package, &prompts).await.unwrap();
    report.webhooks[0].guid.clone()
}

async fn sms(
    http: &reqwest::Client,
    ingress: &Ingress,
    guid: &str,
    from: &str,
    body: &str,
) -> String {
    let form = inbound_sms(&message_sid(), from, body);
    let resp = post_signed(http, ingress, guid, &form, AUTH_TOKEN).await;
    assert_eq!(resp.status(), 200, "{from}: {body}");
    resp.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_remembers_each_sender_across_webhooks_and_forgets_on_expiry() {
    let stack = Stack::new().await.unwrap();
    let guid = import_counter(&stack, "+3 seconds").await;
    let worker = stack.worker().await.unwrap();
    let ingress = stack.ingress().await.unwrap();
    let http = http();
    let first = twiml("Welcome! This is your first message.");
    assert_eq!(
        sms(&http, &ingress, &guid, "+15550000001", "hi").await,
        first
    );
    assert_eq!(
        sms(&http, &ingress, &guid, "+15550000001", "hi").await,
        twiml("This is message 2 from you.")
    );
    assert_eq!(
        sms(&http, &ingress, &guid, "+15550000002", "hi").await,
        first,
        "one key per sender"
    );
    // The key is in the bucket, under the bot id and the key's base64url.
    let js = async_nats::jetstream::new(stack.nats.client().await.unwrap());
    let kv = js.get_key_value("SWITCHBOARD_BOT_KEYS").await.unwrap();
    let mut keys = kv.keys().await.unwrap();
    let mut names = Vec::new();
    while let Some(k) = futures::StreamExt::next(&mut keys).await {
        names.push(k.unwrap());
    }
    // "messages:+15550000001" in unpadded base64url.
    assert!(
        names
            .iter()
            .any(|k| k.ends_with(".bWVzc2FnZXM6KzE1NTUwMDAwMDAx")),
        "{names:?}"
    );
    // A worker started again sees the same keys (the bucket outlives it).
    worker.stop().await.unwrap();
    let worker = stack.worker().await.unwrap();
    assert_eq!(
        sms(&http, &ingress, &guid, "+15550000001", "hi").await,
        twiml("This is message 3 from you.")
    );
    // `reset` deletes the sender's key (an empty value).
    assert_eq!(
        sms(&http, &ingress, &guid, "+15550000002", "reset").await,
        twiml("Your count is reset.")
    );
    assert_eq!(
        sms(&http, &ingress, &guid, "+15550000002", "hi").await,
        first
    );
    // Three seconds after its last message, a sender is new again.
    tokio::time::sleep(Duration::from_millis(4_100)).await;
    assert_eq!(
        sms(&http, &ingress, &guid, "+15550000001", "hi").await,
        first
    );
    ingress.stop().await.unwrap();
    worker.stop().await.unwrap();
}

/// A behavior with side effects (it writes a bot key) on two worker replicas, one MessageSid
/// delivered eight times at once through both: one run, one answer for all, and the key counted
/// once (issue 11: its claim comes before the run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_sid_on_two_replicas_counts_once() {
    let stack = Stack::new().await.unwrap();
    let guid = import_counter(&stack, "+1 hour").await;
    let workers = [stack.worker().await.unwrap(), stack.worker().await.unwrap()];
    let ingress = stack.ingress().await.unwrap();
    let http = http();
    let sid = message_sid();
    let form = inbound_sms(&sid, "+15550000009", "hi");
    let deliveries = (0..8).map(|_| post_signed(&http, &ingress, &guid, &form, AUTH_TOKEN));
    let mut answers = Vec::new();
    for resp in futures::future::join_all(deliveries).await {
        assert_eq!(resp.status(), 200);
        answers.push(resp.text().await.unwrap());
    }
    let first = twiml("Welcome! This is your first message.");
    assert!(answers.iter().all(|a| a == &first), "{answers:?}");
    let runs: i64 = switchboard_store::sqlx::query_scalar(
        "SELECT count(*) FROM behavior_runs WHERE message_sid = $1",
    )
    .bind(&sid)
    .fetch_one(stack.store.pool())
    .await
    .unwrap();
    assert_eq!(runs, 1);
    // The next message from the sender is its second: the eight deliveries counted once.
    assert_eq!(
        sms(&http, &ingress, &guid, "+15550000009", "hi").await,
        twiml("This is message 2 from you.")
    );
    ingress.stop().await.unwrap();
    for w in workers {
        w.stop().await.unwrap();
    }
}
