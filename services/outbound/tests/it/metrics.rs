//! The service's metrics count what happened to real jobs against the sandbox: sent, refused
//! for a suppressed recipient, failed on a permanent Twilio error; Twilio's error codes, the
//! dead letters, the Twilio API's latency and the consumers' backlog.

use serde_json::json;
use switchboard_telemetry::metrics::Metrics;
use switchboard_test_support::metric;

use crate::support::{Harness, number, sms_job};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_errors_and_dead_letters_are_counted() {
    let mut h = Harness::new().await.unwrap();
    let metrics = Metrics::new();
    h.config.metrics = outbound::OutboundMetrics::register(&metrics);
    let suppressed = number(71);
    h.store
        .suppress(
            h.account_id,
            &suppressed,
            switchboard_store::limits::SuppressionReason::Keyword,
            "STOP",
        )
        .await
        .unwrap();
    let invalid = number(72);
    h.fake_put(
        &format!("numbers/{}", invalid.replace('+', "%2B")),
        json!({"error": {"code": 21211}}),
    )
    .await;
    h.start().await.unwrap();
    for job in [
        sms_job("metrics-sent", &number(70)),
        sms_job("metrics-suppressed", &suppressed),
        sms_job("metrics-invalid", &invalid),
    ] {
        h.publish(&job).await.unwrap();
    }
    h.wait_final(&[
        "job-metrics-sent".to_owned(),
        "job-metrics-suppressed".to_owned(),
        "job-metrics-invalid".to_owned(),
    ])
    .await;
    // The last counts follow the final events by a statement.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let text = loop {
        let text = metrics.encode();
        let failed = metric(
            &text,
            "switchboard_outbound_jobs_total{kind=\"send_sms\",outcome=\"failed\"}",
        );
        if failed == Some(2.0) || tokio::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let jobs = |outcome: &str| {
        metric(
            &text,
            &format!("switchboard_outbound_jobs_total{{kind=\"send_sms\",outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(jobs("sent"), Some(1.0), "{text}");
    assert_eq!(jobs("failed"), Some(2.0), "{text}");
    assert_eq!(
        metric(&text, "switchboard_outbound_suppressed_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "switchboard_twilio_errors_total{code=\"21211\"}"),
        Some(1.0),
        "{text}"
    );
    // A failed job's copy goes to the dead-letter stream, by its code.
    assert_eq!(
        metric(
            &text,
            "switchboard_outbound_dead_letters_total{reason=\"21211\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "switchboard_outbound_job_duration_seconds_count{kind=\"send_sms\"}"
        ),
        Some(3.0),
        "{text}"
    );
    // Two calls reached the sandbox (the suppressed job made none): one 201, one 400.
    let calls = |status: u16| {
        metric(
            &text,
            &format!(
                "http_client_request_duration_seconds_count{{http_request_method=\"POST\",server_address=\"127.0.0.1\",http_response_status_code=\"{status}\"}}"
            ),
        )
    };
    assert_eq!(calls(201), Some(1.0), "{text}");
    assert_eq!(calls(400), Some(1.0), "{text}");
    // The consumers' backlog is read at start, then every 10 s.
    assert!(
        metric(
            &text,
            "switchboard_jetstream_consumer_pending{consumer=\"outbound\"}"
        )
        .is_some(),
        "{text}"
    );
    h.stop().await.unwrap();
}
