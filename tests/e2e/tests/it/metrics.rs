//! The worker's metrics count what happened to real webhooks: answered, repeated, forbidden
//! and unknown, by listener, with the engine runs and message-log writes behind them.

use std::time::Duration;

use switchboard_e2e::*;
use switchboard_telemetry::metrics::Metrics;
use switchboard_test_support::metric;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_counted_by_listener_and_result() {
    let stack = Stack::new().await.unwrap();
    let metrics = Metrics::new();
    let options = behavior_worker::WorkerOptions {
        metrics: behavior_worker::WorkerMetrics::register(&metrics),
        ..Default::default()
    };
    let worker = Worker::start_with(
        stack.store.clone(),
        &stack.nats.url(),
        stack.subjects.clone(),
        options,
    )
    .await
    .unwrap();
    let ingress = stack.ingress().await.unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    // Two messages answered, one of them delivered twice.
    let first = inbound_sms(&message_sid(), "+15551234567", "help");
    let second = inbound_sms(&message_sid(), "+15551234567", "logo");
    for form in [&first, &second, &first] {
        let resp = post_signed(&http, &ingress, &stack.guid, form, AUTH_TOKEN).await;
        assert_eq!(resp.status(), 200);
    }
    // A wrong signature, and a guid no listener has.
    let forged = inbound_sms(&message_sid(), "+15551234567", "help");
    let resp = post_signed(&http, &ingress, &stack.guid, &forged, "not-the-token").await;
    assert_eq!(resp.status(), 403);
    let resp = post_signed(&http, &ingress, "no-such-listener", &forged, AUTH_TOKEN).await;
    assert_eq!(resp.status(), 404);

    let listener: (i64,) =
        switchboard_store::sqlx::query_as("SELECT id FROM webhook_listeners WHERE guid = $1")
            .bind(&stack.guid)
            .fetch_one(stack.store.pool())
            .await
            .unwrap();
    let listener = listener.0;
    let text = metrics.encode();
    let webhooks = |listener: &str, result: &str| {
        metric(
            &text,
            &format!("switchboard_webhooks_total{{listener=\"{listener}\",result=\"{result}\"}}"),
        )
    };
    let id = listener.to_string();
    assert_eq!(webhooks(&id, "answered"), Some(2.0), "{text}");
    assert_eq!(webhooks(&id, "duplicate"), Some(1.0), "{text}");
    assert_eq!(webhooks(&id, "forbidden"), Some(1.0), "{text}");
    assert_eq!(webhooks("", "not_found"), Some(1.0), "{text}");
    // The seed's webhook behavior has no side effects, so each delivery runs it before its
    // answer is written (the fast path): the repeat ran too, and its write found the first
    // answer, which it gave instead of its own.
    assert_eq!(
        metric(
            &text,
            "switchboard_engine_run_duration_seconds_count{kind=\"webhook\",outcome=\"complete\"}"
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "switchboard_message_log_write_duration_seconds_count"
        ),
        Some(3.0),
        "{text}"
    );
    ingress.stop().await.unwrap();
    worker.stop().await.unwrap();
}
