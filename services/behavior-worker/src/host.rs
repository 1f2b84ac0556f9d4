//! The engine's host: what a behavior reaches outside itself (connected accounts, HTTP through
//! the outbound service, other behaviors, bot keys).

use std::sync::Arc;

use switchboard_engine::{
    CompiledBehavior, ConnectedAccount, Host, HttpOutcome, HttpRequest, HttpResponse,
};
use switchboard_wire as wire;
use tracing::{Instrument as _, field};

use crate::Worker;

/// The host of a URL, for a span (empty when there is none).
pub(crate) fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    }
}

/// The host for behaviors that never call it.
pub(crate) struct NoHost;

impl Host for NoHost {
    fn connected_account(&self, _: i64) -> Option<ConnectedAccount> {
        None
    }
    fn http_request(&self, _: &HttpRequest) -> HttpOutcome {
        HttpOutcome::Error("unavailable".into())
    }
    fn behavior(&self, _: i64) -> Option<Arc<CompiledBehavior>> {
        None
    }
}

/// The host of a real run on a blocking thread: accounts and behaviors from the store, HTTP
/// requests through the outbound service (the only part that talks to the outside world).
pub(crate) struct WorkerHost {
    worker: Arc<Worker>,
    handle: tokio::runtime::Handle,
    /// The span of the request the run answers (a blocking thread has no current span of its
    /// own): the parent of its HTTP requests' spans.
    pub(crate) span: tracing::Span,
}

impl WorkerHost {
    /// The host of a run answering the request of the current span, on the current runtime.
    pub(crate) fn new(worker: Arc<Worker>) -> WorkerHost {
        WorkerHost {
            worker,
            handle: tokio::runtime::Handle::current(),
            span: tracing::Span::current(),
        }
    }
}

impl Host for WorkerHost {
    fn connected_account(&self, id: i64) -> Option<ConnectedAccount> {
        match self.handle.block_on(self.worker.store.account(id)) {
            Ok(a) => a.map(|a| ConnectedAccount {
                id: a.id,
                name: a.name,
                kind: a.kind.as_str().into(),
                allowed_hosts: a.allowed_hosts,
            }),
            Err(e) => {
                tracing::error!(error = %e, account_id = id, "loading a connected account failed");
                None
            }
        }
    }

    fn http_request(&self, request: &HttpRequest) -> HttpOutcome {
        let job = wire::HttpJob {
            version: wire::HTTP_JOB_VERSION,
            method: request.method.clone(),
            url: request.url.clone(),
            headers: request.headers.clone(),
            body: request.body.clone(),
            account_id: request.account,
            ignore_ssl_validation: request.ignore_ssl_validation,
        };
        // The request as a client span of the run's trace; outbound's span is its child.
        let span = tracing::info_span!(
            parent: &self.span,
            "http_job.request",
            otel.kind = "client",
            http.request.method = %request.method.to_ascii_uppercase(),
            server.address = host_of(&request.url),
            outcome = field::Empty,
        );
        let mut headers = async_nats::HeaderMap::new();
        switchboard_telemetry::inject_nats(&span, &mut headers);
        let nats = self.worker.nats.clone();
        let subject = self.worker.subjects.outbound_http();
        let timeout = self.worker.opts.http_timeout;
        let answer = self.handle.block_on(
            async move {
                tokio::time::timeout(
                    timeout,
                    nats.request_with_headers(subject, headers, wire::encode(&job).into()),
                )
                .await
            }
            .instrument(span.clone()),
        );
        let outcome = match answer {
            Err(_) => HttpOutcome::Error("the outbound service did not answer in time".into()),
            Ok(Err(e)) => HttpOutcome::Error(format!("the outbound service is unavailable: {e}")),
            Ok(Ok(msg)) => match wire::decode::<wire::HttpJobResult>(&msg.payload) {
                Ok(wire::HttpJobResult::Response {
                    status,
                    headers,
                    body,
                    url,
                }) => HttpOutcome::Response(HttpResponse {
                    status,
                    headers,
                    body,
                    url,
                }),
                Ok(wire::HttpJobResult::Error { message }) => HttpOutcome::Error(message),
                Ok(wire::HttpJobResult::CredentialsRefused { message }) => {
                    HttpOutcome::CredentialsRefused(message)
                }
                Err(e) => {
                    HttpOutcome::Error(format!("malformed answer from the outbound service: {e}"))
                }
            },
        };
        span.record(
            "outcome",
            match &outcome {
                HttpOutcome::Response(_) => "response",
                HttpOutcome::Error(_) => "error",
                HttpOutcome::CredentialsRefused(_) => "credentials_refused",
            },
        );
        outcome
    }

    fn behavior(&self, id: i64) -> Option<Arc<CompiledBehavior>> {
        match self.handle.block_on(self.worker.compiled_behavior(id)) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    behavior_id = id,
                    "loading a behavior failed"
                );
                None
            }
        }
    }

    fn bot_key_get(&self, bot: i64, key: &str) -> Result<Option<String>, String> {
        let now = self.now();
        self.handle
            .block_on(self.worker.bot_keys.get(bot, key, now))
    }

    fn bot_key_set(&self, bot: i64, key: &str, value: &str, expires_at: i64) -> Result<(), String> {
        self.handle
            .block_on(self.worker.bot_keys.set(bot, key, value, expires_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_of_a_url_names_the_server_of_a_client_span() {
        for (url, host) in [
            (
                "https://api.twilio.com/2010-04-01/Accounts",
                "api.twilio.com",
            ),
            ("http://user:pw@example.com:8080/x?y#z", "example.com"),
            ("https://[::1]:443/", "::1"),
            ("https://example.com?q=1", "example.com"),
            ("not a url", "not a url"),
            ("", ""),
        ] {
            assert_eq!(host_of(url), host, "{url}");
        }
    }
}
