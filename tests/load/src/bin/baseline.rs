//! The baseline of the webhook load benchmark: the least a webhook-over-NATS design can do.
//! `baseline server` is a minimal axum handler that sends the request body as one NATS request
//! and returns the reply; `baseline replier` answers every request with a fixed TwiML body.
//! `baseline replier --jetstream` first stores each request in a JetStream stream (file storage,
//! waiting for the server's ack) and replies after: the floor of any design that makes each
//! webhook durable in NATS before answering it (issue 11).

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    role: Role,
    #[arg(long, env = "NATS_URL")]
    nats_url: String,
    #[arg(long, default_value = "baseline.webhook")]
    subject: String,
}

#[derive(Subcommand)]
enum Role {
    Server {
        #[arg(long)]
        listen: String,
    },
    Replier {
        /// Store each request in the JetStream stream `BASELINE_LOG` (created if missing, file
        /// storage, kept one hour) and wait for its ack before replying.
        #[arg(long)]
        jetstream: bool,
        /// Requests handled at once (with --jetstream: acks awaited at once).
        #[arg(long, default_value_t = 1024)]
        concurrency: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let nats = async_nats::connect(&cli.nats_url).await?;
    match cli.role {
        Role::Replier {
            jetstream,
            concurrency,
        } => {
            use futures::StreamExt;
            let sub = nats.queue_subscribe(cli.subject, "baseline".into()).await?;
            let body: axum::body::Bytes = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response>\n    <Message>Hi</Message>\n</Response>".into();
            let js = if jetstream {
                let js = async_nats::jetstream::new(nats.clone());
                js.get_or_create_stream(async_nats::jetstream::stream::Config {
                    name: "BASELINE_LOG".into(),
                    subjects: vec!["baseline.log.>".into()],
                    storage: async_nats::jetstream::stream::StorageType::File,
                    max_age: std::time::Duration::from_secs(3600),
                    ..Default::default()
                })
                .await
                .map_err(|e| anyhow::anyhow!("creating the BASELINE_LOG stream: {e}"))?;
                Some(js)
            } else {
                None
            };
            sub.for_each_concurrent(concurrency.max(1), |msg| {
                let (nats, js, body) = (nats.clone(), js.clone(), body.clone());
                async move {
                    let Some(reply) = msg.reply else { return };
                    if let Some(js) = js {
                        let acked = match js.publish("baseline.log.webhook", msg.payload).await {
                            Ok(ack) => ack.await.is_ok(),
                            Err(_) => false,
                        };
                        if !acked {
                            // No reply: the server answers 503 on its request timeout.
                            eprintln!("baseline replier: a JetStream publish was not acked");
                            return;
                        }
                    }
                    let _ = nats.publish(reply, body).await;
                }
            })
            .await;
            Ok(())
        }
        Role::Server { listen } => {
            let subject = cli.subject.clone();
            let app = axum::Router::new().route(
                "/webhooks/{guid}",
                axum::routing::post(move |body: axum::body::Bytes| {
                    let (nats, subject) = (nats.clone(), subject.clone());
                    async move {
                        match nats.request(subject, body).await {
                            Ok(m) => (
                                axum::http::StatusCode::OK,
                                [("content-type", "text/xml; charset=utf-8")],
                                m.payload,
                            ),
                            Err(_) => (
                                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                                [("content-type", "text/plain")],
                                axum::body::Bytes::new(),
                            ),
                        }
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind(listen).await?;
            axum::serve(listener, app).await?;
            Ok(())
        }
    }
}
