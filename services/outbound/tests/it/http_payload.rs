//! Behaviors' HTTP requests whose answers would not fit in a NATS message: the outbound service
//! fits its response-body bound to the server's `max_payload` at start, and answers a response
//! too large to pass back with an error that fits, at once, instead of leaving the behavior to
//! wait out its timeout (a publish larger than `max_payload` is refused by the client).

use std::time::Duration;

use outbound::http::{self, HttpConfig};
use switchboard_store::Store;
use switchboard_test_support::{NatsServer, unique};
use switchboard_wire::{self as wire, HTTP_JOB_VERSION, HttpJob, HttpJobResult};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The test server's `max_payload`: 64 KiB (NATS' default is 1 MiB).
const MAX_PAYLOAD: usize = 64 * 1024;

/// An HTTP server on 127.0.0.1 answering `/body/N` with N bytes, and `/headers/N` with N bytes
/// and 40 headers of 1 KiB.
async fn target() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&request);
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let mut parts = path.trim_start_matches('/').split('/');
                let kind = parts.next().unwrap_or_default().to_owned();
                let size: usize = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                let mut head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {size}\r\nconnection: close\r\n"
                );
                if kind == "headers" {
                    for i in 0..40 {
                        head.push_str(&format!("x-filler-{i}: {}\r\n", "h".repeat(1024)));
                    }
                }
                head.push_str("\r\n");
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&vec![b'b'; size]).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    addr
}

fn job(url: String) -> HttpJob {
    HttpJob {
        version: HTTP_JOB_VERSION,
        method: "GET".into(),
        url,
        headers: Vec::new(),
        body: String::new(),
        account_id: None,
        ignore_ssl_validation: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_fit_the_servers_max_payload() {
    switchboard_test_support::init();
    let nats = NatsServer::start_with_config(&format!("max_payload: {MAX_PAYLOAD}\n"))
        .await
        .unwrap();
    let client = nats.client().await.unwrap();
    client.flush().await.unwrap();
    assert_eq!(client.max_payload(), MAX_PAYLOAD, "the configuration took");
    let addr = target().await;
    // No job here names an account, so the store is never used.
    let pool = switchboard_store::connect_lazy("postgres://127.0.0.1:1/unused", 1, true).unwrap();
    let store = Store::new(pool, None);
    let mut config = HttpConfig::new(&unique("sbh"));
    config.allow = "127.0.0.1".parse().unwrap();
    let subject = config.subject.clone();
    assert_eq!(config.max_response_bytes, 512 * 1024, "the default");
    let started = http::start(config, store, client.clone()).await.unwrap();
    let limit = started.max_response_bytes();
    assert_eq!(limit, http::body_limit_for(MAX_PAYLOAD), "capped at start");
    assert_eq!(limit, 36 * 1024);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(started.serve(async move {
        let _ = stopped.await;
    }));

    let ask = |path: String| {
        let client = client.clone();
        let subject = subject.clone();
        async move {
            let url = format!("http://{addr}{path}");
            let reply = tokio::time::timeout(
                Duration::from_secs(5),
                client.request(subject, wire::encode(&job(url)).into()),
            )
            .await
            .unwrap_or_else(|_| panic!("{path}: no answer within 5 s"))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(reply.payload.len() <= MAX_PAYLOAD);
            wire::decode::<HttpJobResult>(&reply.payload).unwrap()
        }
    };

    // Within the bound: the body comes back.
    match ask("/body/20000".into()).await {
        HttpJobResult::Response { status, body, .. } => {
            assert_eq!(status, 200);
            assert_eq!(body.len(), 20000);
        }
        other => panic!("{other:?}"),
    }
    // Exactly the bound still fits.
    match ask(format!("/body/{limit}")).await {
        HttpJobResult::Response { body, .. } => assert_eq!(body.len(), limit),
        other => panic!("{other:?}"),
    }
    // Larger than the bound fitted to max_payload (but well under the 512 KiB default, whose
    // answer the server would have refused): an error naming the bound.
    match ask("/body/60000".into()).await {
        HttpJobResult::Error { message } => assert!(
            message.contains(&format!("larger than {limit} bytes")),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    // A body within the bound whose headers make the answer too large: an error that fits,
    // saying so.
    match ask("/headers/30000".into()).await {
        HttpJobResult::Error { message } => {
            assert!(message.contains("too large"), "{message}");
            assert!(message.contains("its body 30000 bytes"), "{message}");
            assert!(
                message.contains(&format!("at most {MAX_PAYLOAD} bytes")),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
