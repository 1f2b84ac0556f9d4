//! Fuzzes a whole webhook run the way an attacker reaches it: arbitrary method, query string,
//! headers and body (form, multipart, JSON or anything) into request normalisation (PHP's
//! `parse_str` brackets, Cerb's key folding, multipart fields) and then through the seed
//! package's "Respond to Twilio SMS webhook" behavior, whose templates render the attacker's
//! `http_params`. Errors are fine; panics, hangs and output past the limits are not.

#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use switchboard_engine::{CompiledBehavior, OfflineHost, RunOptions, WebhookRequest, run_webhook};

/// The seed's webhook behavior, as the engine's benchmark builds it.
#[path = "../../crates/engine/benches/seed_support.rs"]
#[allow(dead_code)] // twilio_form: the fuzzer makes its own requests
mod seed_support;

#[derive(Debug, Arbitrary)]
struct Input {
    method: String,
    path: String,
    query: String,
    content_type: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    client_ip: String,
}

fn seed_behavior() -> &'static CompiledBehavior {
    static BEHAVIOR: OnceLock<CompiledBehavior> = OnceLock::new();
    BEHAVIOR.get_or_init(seed_support::seed_behavior)
}

fuzz_target!(|input: Input| {
    let mut headers = input.headers;
    if let Some(ct) = input.content_type {
        headers.push(("Content-Type".into(), ct));
    }
    let request = WebhookRequest {
        method: input.method,
        path: input.path,
        query: input.query,
        headers,
        body: input.body,
        client_ip: input.client_ip,
    };
    let out = run_webhook(seed_behavior(), &request, &OfflineHost, &RunOptions::real());
    // The seed's templates print at most a few hundred bytes around the attacker's text, and no
    // template may print more than the per-template limit (docs/semantics.md, Decision 10).
    assert!(
        out.body.len() <= 256 * 1024 + 1024,
        "response body of {} bytes",
        out.body.len()
    );
    assert!((100..=999).contains(&out.status), "status {}", out.status);
    assert!(out.http_requests.is_empty(), "the webhook behavior sends nothing");
});
