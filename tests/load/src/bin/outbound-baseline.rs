//! The baseline of the outbound benchmark: the least a JetStream-to-Twilio sender can do. A
//! durable pull consumer on a work-queue stream, the same bound on jobs in flight as the
//! outbound service, one Messages create (form body, Basic auth) per job, an ack after the
//! 201, and a core NATS notification with the job id. No job state, no events stream, no
//! de-duplication, no retries.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer, stream};
use clap::Parser;
use futures::StreamExt;
use tokio::sync::Semaphore;

#[derive(Parser)]
struct Cli {
    #[arg(long, env = "NATS_URL")]
    nats_url: String,
    /// Stream (work queue) and the subject its jobs are published to.
    #[arg(long)]
    stream: String,
    #[arg(long)]
    subject: String,
    /// Where the job id is announced once Twilio answered 201.
    #[arg(long)]
    sent_subject: String,
    /// Twilio API base (the sandbox).
    #[arg(long)]
    api_base: String,
    #[arg(long)]
    account_sid: String,
    #[arg(long, env = "BASELINE_AUTH_TOKEN")]
    auth_token: String,
    #[arg(long, default_value_t = 32)]
    in_flight: usize,
}

#[derive(serde::Deserialize)]
struct Job {
    job_id: String,
    to: String,
    from: String,
    body: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let nats = async_nats::connect(&cli.nats_url).await?;
    let js = jetstream::new(nats.clone());
    let jobs = js
        .get_or_create_stream(stream::Config {
            name: cli.stream.clone(),
            subjects: vec![cli.subject.clone()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    let consumer = jobs
        .create_consumer(consumer::pull::Config {
            durable_name: Some("baseline".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(60),
            max_ack_pending: cli.in_flight as i64,
            ..Default::default()
        })
        .await?;
    let http = reqwest::Client::new();
    let url = format!(
        "{}/2010-04-01/Accounts/{}/Messages.json",
        cli.api_base.trim_end_matches('/'),
        cli.account_sid
    );
    let slots = Arc::new(Semaphore::new(cli.in_flight));
    let shared = Arc::new((http, url, cli.account_sid, cli.auth_token, cli.sent_subject));
    loop {
        let first = slots.clone().acquire_owned().await?;
        let wanted = 1 + slots.available_permits();
        let mut batch = consumer
            .batch()
            .max_messages(wanted)
            .expires(Duration::from_secs(1))
            .messages()
            .await?;
        let mut first = Some(first);
        while let Some(Ok(message)) = batch.next().await {
            let permit = match first.take() {
                Some(p) => p,
                None => slots.clone().acquire_owned().await?,
            };
            let (shared, nats) = (shared.clone(), nats.clone());
            tokio::spawn(async move {
                let (http, url, sid, token, sent_subject) = &*shared;
                let Ok(job) = serde_json::from_slice::<Job>(&message.payload) else {
                    let _ = message.ack_with(AckKind::Term).await;
                    return;
                };
                let form = [("To", &job.to), ("From", &job.from), ("Body", &job.body)];
                let answer = http
                    .post(url)
                    .basic_auth(sid, Some(token))
                    .form(&form)
                    .send()
                    .await;
                if answer.is_ok_and(|r| r.status().as_u16() == 201) {
                    let _ = message.ack().await;
                    let _ = nats.publish(sent_subject.clone(), job.job_id.into()).await;
                } else {
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                }
                drop(permit);
            });
        }
    }
}
