//! Opt-out keywords in signed inbound SMS webhooks maintain the account's suppression list
//! (what the outbound service refuses to send to), without changing the behavior's reply.

use std::time::Duration;

use switchboard_e2e::*;
use switchboard_store::limits::SuppressionReason;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_stop_suppresses_the_sender_and_start_lifts_it() {
    let stack = Stack::new().await.unwrap();
    let worker = stack.worker().await.unwrap();
    let ingress = stack.ingress().await.unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let account_id = stack
        .store
        .account_by_name("twilio")
        .await
        .unwrap()
        .unwrap()
        .id;
    // The seed behavior answers any other text with "Hi <From>! You said: <Body>".
    let reply_to = |from: &str, body: &str| {
        golden("hi.xml")
            .replace("+15551234567", from)
            .replace("You said: hi", &format!("You said: {body}"))
    };
    let suppressed = |number: &'static str| {
        let store = stack.store.clone();
        async move { store.suppression(account_id, number).await.unwrap() }
    };

    for (from, body) in [
        ("+15551230001", "STOP"),
        ("+15551230002", " unsubscribe "),
        ("+15551230003", "please stop"),
    ] {
        let form = inbound_sms(&message_sid(), from, body);
        let resp = post_signed(&http, &ingress, &stack.guid, &form, AUTH_TOKEN).await;
        assert_eq!(resp.status(), 200, "{body:?}");
        assert_eq!(
            resp.text().await.unwrap(),
            reply_to(from, body),
            "{body:?}: the reply is the behavior's"
        );
    }
    let first = suppressed("+15551230001").await.expect("STOP suppresses");
    assert_eq!(first.reason, SuppressionReason::Keyword);
    assert_eq!(first.detail, "STOP");
    assert_eq!(
        suppressed("+15551230002").await.map(|s| s.detail),
        Some("unsubscribe".to_owned())
    );
    assert!(
        suppressed("+15551230003").await.is_none(),
        "only the whole body is a keyword"
    );

    // A custom keyword that Twilio's Advanced Opt-Out reports as `OptOutType=STOP`.
    let mut form = inbound_sms(&message_sid(), "+15551230005", "ARRET");
    form.push(("OptOutType".to_owned(), "STOP".to_owned()));
    let resp = post_signed(&http, &ingress, &stack.guid, &form, AUTH_TOKEN).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        suppressed("+15551230005").await.map(|s| s.detail),
        Some("ARRET".to_owned())
    );

    // A signature that does not verify records nothing (and is refused).
    let form = inbound_sms(&message_sid(), "+15551230004", "STOP");
    let resp = post_signed(&http, &ingress, &stack.guid, &form, "not-the-token").await;
    assert_eq!(resp.status(), 403);
    assert!(suppressed("+15551230004").await.is_none());

    let form = inbound_sms(&message_sid(), "+15551230001", "Start");
    let resp = post_signed(&http, &ingress, &stack.guid, &form, AUTH_TOKEN).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.text().await.unwrap(),
        reply_to("+15551230001", "Start")
    );
    assert!(
        suppressed("+15551230001").await.is_none(),
        "START lifts the suppression"
    );
    assert_eq!(
        stack.runs().await,
        5,
        "every verified message ran the behavior"
    );
    ingress.stop().await.unwrap();
    worker.stop().await.unwrap();
}
