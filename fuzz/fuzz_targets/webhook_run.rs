//! Fuzzes a whole webhook run the way an attacker reaches it: arbitrary method, query string,
//! headers and body (form, multipart, JSON or anything) into request normalisation (PHP's
//! `parse_str` brackets, Cerb's key folding, multipart fields) and then through the seed
//! package's "Respond to Twilio SMS webhook" behavior, whose templates render the attacker's
//! `http_params`. Errors are fine; panics, hangs and output past the limits are not.

#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use switchboard_engine::{
    BotInfo, CompiledBehavior, OfflineHost, RunOptions, WebhookRequest, run_webhook,
};
use switchboard_package::{Package, PlanOptions, PromptAnswers};

const SEED: &str = include_str!("../../../shared/seed/twilio-bot.package.json");

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
    BEHAVIOR.get_or_init(|| {
        let package = Package::parse(SEED).expect("the seed package parses");
        let mut answers = PromptAnswers::new();
        answers.insert("twilio_account_id".into(), "1".into());
        answers.insert(
            "account_sid".into(),
            "AC0123456789abcdef0123456789abcdef".into(),
        );
        answers.insert("default_from".into(), "+15557654321".into());
        let mut n = 0;
        let mut next_id = || {
            n += 1;
            n
        };
        let plan = package
            .plan(PlanOptions {
                answers: &answers,
                next_id: &mut next_id,
                rng: &mut rand::rng(),
                defaults: serde_json::json!({}),
            })
            .expect("the seed package plans");
        let (bot, def) = plan
            .behavior_by_uid("behavior_43")
            .expect("the seed has its webhook behavior");
        CompiledBehavior::compile(def, Arc::new(BotInfo::from_def(bot))).expect("compiles")
    })
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
    // template may print more than the per-template limit (Decision 10).
    assert!(
        out.body.len() <= 256 * 1024 + 1024,
        "response body of {} bytes",
        out.body.len()
    );
    assert!((100..=999).contains(&out.status), "status {}", out.status);
    assert!(out.http_requests.is_empty(), "the webhook behavior sends nothing");
});
