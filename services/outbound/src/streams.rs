//! The streams and the durable consumers, created (or brought up to date) when the service
//! starts: [`setup`] for the streams and the send-SMS consumer, [`durable_consumer`] for each
//! consumer (`lookup.rs` creates its own with it).

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use switchboard_wire::outbound::OUTBOUND_CONSUMER;

use crate::OutboundConfig;

/// How long the events stream remembers event ids, so an event published again after a crash
/// is stored once.
const EVENT_DUPLICATE_WINDOW: Duration = Duration::from_secs(60 * 60);

/// JetStream's "no limit" for max_bytes is -1.
fn bytes_limit(bytes: i64) -> i64 {
    if bytes <= 0 { -1 } else { bytes }
}

/// The streams the service creates: jobs (work queue), dead letters and events, each with
/// [`OutboundConfig::replicas`] replicas; the dead letters and events with the age and size
/// limits of [`OutboundConfig::stream_limits`].
pub fn stream_configs(config: &OutboundConfig) -> [stream::Config; 3] {
    let subjects = &config.subjects;
    [
        stream::Config {
            name: subjects.job_stream(),
            subjects: vec![subjects.jobs_wildcard()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(
                switchboard_wire::outbound::DUPLICATE_WINDOW_SECS,
            ),
            num_replicas: config.replicas,
            ..Default::default()
        },
        stream::Config {
            name: subjects.dead_letter_stream(),
            subjects: vec![subjects.dead_letter_wildcard()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            duplicate_window: EVENT_DUPLICATE_WINDOW,
            num_replicas: config.replicas,
            max_age: config.stream_limits.dlq_max_age,
            max_bytes: bytes_limit(config.stream_limits.dlq_max_bytes),
            ..Default::default()
        },
        stream::Config {
            name: subjects.event_stream(),
            subjects: subjects.events_wildcards().to_vec(),
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            duplicate_window: EVENT_DUPLICATE_WINDOW,
            num_replicas: config.replicas,
            max_age: config.stream_limits.events_max_age,
            max_bytes: bytes_limit(config.stream_limits.events_max_bytes),
            ..Default::default()
        },
    ]
}

/// Creates (idempotently) the job, dead-letter and event streams ([`stream_configs`]) and the
/// durable consumer. An existing stream is used as it is, except that the dead-letter and events
/// streams get the configured max_age and max_bytes (updated when they differ, with a log line);
/// one whose replica count differs from the configured one gets a warning (changing it is an
/// operator's decision: `nats stream edit`).
pub async fn setup(
    js: &jetstream::Context,
    config: &OutboundConfig,
) -> anyhow::Result<consumer::PullConsumer> {
    use anyhow::Context as _;
    let [jobs, dead_letters, events] = stream_configs(config);
    let mut streams = Vec::with_capacity(3);
    for wanted in [jobs, dead_letters, events] {
        let name = wanted.name.clone();
        let (max_age, max_bytes) = (wanted.max_age, wanted.max_bytes);
        let mut stream = js
            .get_or_create_stream(wanted)
            .await
            .with_context(|| format!("creating the stream {name}"))?;
        let current = stream.cached_info().config.clone();
        let limited = name != config.subjects.job_stream();
        if limited && (current.max_age != max_age || current.max_bytes != max_bytes) {
            tracing::info!(
                stream = %name,
                from_max_age_secs = current.max_age.as_secs(),
                from_max_bytes = current.max_bytes,
                max_age_secs = max_age.as_secs(),
                max_bytes,
                "updating the stream's age and size limits"
            );
            js.update_stream(stream::Config {
                max_age,
                max_bytes,
                ..current
            })
            .await
            .with_context(|| format!("updating the limits of the stream {name}"))?;
            stream = js
                .get_stream(&name)
                .await
                .with_context(|| format!("reading the stream {name}"))?;
        }
        let replicas = stream.cached_info().config.num_replicas.max(1);
        if replicas != config.replicas {
            tracing::warn!(
                stream = %name,
                replicas,
                configured = config.replicas,
                "the stream exists with another replica count than JETSTREAM_REPLICAS; it is used as it is"
            );
        }
        streams.push(stream);
    }
    let jobs = streams.swap_remove(0);
    durable_consumer(
        &jobs,
        config,
        OUTBOUND_CONSUMER,
        "Switchboard outbound service: send-SMS jobs",
        config.subjects.sms_send(),
    )
    .await
}

/// Creates or updates (the ack wait and the in-flight bound follow the configuration) the
/// durable pull consumer `name` of the job stream for the jobs on `filter_subject`. Retries are
/// the service's own (NAK with delay, bounded by attempts and age), so deliveries are unbounded.
/// If the update is refused, the consumer is used as it is.
pub(crate) async fn durable_consumer(
    jobs: &stream::Stream,
    config: &OutboundConfig,
    name: &str,
    description: &str,
    filter_subject: String,
) -> anyhow::Result<consumer::PullConsumer> {
    let consumer_config = consumer::pull::Config {
        durable_name: Some(name.to_owned()),
        description: Some(description.to_owned()),
        filter_subject,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: config.ack_wait(),
        max_deliver: -1,
        max_ack_pending: i64::try_from(config.max_in_flight).unwrap_or(i64::MAX),
        ..Default::default()
    };
    match jobs.create_consumer(consumer_config).await {
        Ok(consumer) => Ok(consumer),
        Err(e) => {
            tracing::warn!(error = %e, consumer = name, "could not create or update the consumer; using it as it is");
            jobs.get_consumer(name)
                .await
                .map_err(|e| anyhow::anyhow!("getting the consumer {name}: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_get_the_configured_replicas() {
        let mut config = OutboundConfig::new("sb");
        assert_eq!(config.replicas, 1, "one replica unless configured");
        for stream in stream_configs(&config) {
            assert_eq!(stream.num_replicas, 1, "{}", stream.name);
        }
        config.replicas = 3;
        let streams = stream_configs(&config);
        let names: Vec<&str> = streams.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["SB_JOBS", "SB_JOBS_DLQ", "SB_JOB_EVENTS"]);
        for stream in &streams {
            assert_eq!(stream.num_replicas, 3, "{}", stream.name);
        }
        assert_eq!(
            streams[0].retention,
            stream::RetentionPolicy::WorkQueue,
            "the rest of each config is unchanged"
        );
    }
}
