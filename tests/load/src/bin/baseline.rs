//! The baseline of the webhook load benchmark: the least a webhook-over-NATS design can do.
//! `baseline server` is a minimal axum handler that sends the request body as one NATS request
//! and returns the reply; `baseline replier` answers every request with a fixed TwiML body.

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
    Replier,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let nats = async_nats::connect(&cli.nats_url).await?;
    match cli.role {
        Role::Replier => {
            use futures::StreamExt;
            let mut sub = nats.queue_subscribe(cli.subject, "baseline".into()).await?;
            let body: axum::body::Bytes = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response>\n    <Message>Hi</Message>\n</Response>".into();
            while let Some(msg) = sub.next().await {
                if let Some(reply) = msg.reply {
                    nats.publish(reply, body.clone()).await?;
                }
            }
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
