//! Shared by the seed benchmark, the instruction-count example and the `webhook_run` fuzz target
//! (each includes this file with `#[path]`): the seed package's webhook behavior, compiled once,
//! and realistic Twilio webhook requests.

use std::sync::Arc;

use switchboard_engine::{BotInfo, CompiledBehavior, WebhookRequest};
use switchboard_package::{Package, PlanOptions, PromptAnswers};

pub fn seed_behavior() -> CompiledBehavior {
    // Relative to this file, whichever crate includes it (the engine's benchmark and example,
    // the `webhook_run` fuzz target): the seed package in `examples/` at the repository root.
    let json = include_str!("../../../examples/twilio-bot.package.json");
    let package = Package::parse(json).expect("seed parses");
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
        .expect("seed plans");
    let (bot, def) = plan
        .behavior_by_uid("behavior_43")
        .expect("webhook behavior");
    CompiledBehavior::compile(def, Arc::new(BotInfo::from_def(bot))).expect("compiles")
}

pub fn twilio_form(body: &str) -> WebhookRequest {
    let mut form = String::from(
        "ToCountry=US&ToState=CA&SmsMessageSid=SM0123456789abcdef0123456789abcdef&NumMedia=0&ToCity=&FromZip=&\
         SmsSid=SM0123456789abcdef0123456789abcdef&FromState=CA&SmsStatus=received&FromCity=&FromCountry=US&\
         To=%2B15557654321&ToZip=&NumSegments=1&ReferralNumMedia=0&MessageSid=SM0123456789abcdef0123456789abcdef&\
         AccountSid=AC0123456789abcdef0123456789abcdef&From=%2B15551234567&ApiVersion=2010-04-01&Body=",
    );
    form.push_str(body);
    WebhookRequest {
        method: "POST".into(),
        headers: vec![
            ("host".into(), "bot.example.com".into()),
            (
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ),
            (
                "x-twilio-signature".into(),
                "RLgvztumgz1NkHWX4Mu8s2FFNQM=".into(),
            ),
            ("user-agent".into(), "TwilioProxy/1.1".into()),
            (
                "i-twilio-idempotency-token".into(),
                "6a1f1e8c-1a5e-4a2e-9a1e-0123456789ab".into(),
            ),
        ],
        body: form.into_bytes(),
        client_ip: "54.172.60.1".into(),
        ..Default::default()
    }
}
