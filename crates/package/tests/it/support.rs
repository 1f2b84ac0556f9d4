//! Shared helpers: the seed package, seeded planning, and issue lookups.

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value as Json, json};
use switchboard_package::{
    ImportError, ImportIssue, ImportPlan, Package, PlanOptions, PromptAnswers, RecordId,
};

/// The seed package's text (`examples/twilio-bot.package.json`).
pub use switchboard_test_support::seed_package as seed_json;

/// The seed package as a JSON value, to derive broken variants from.
pub fn seed_value() -> Json {
    serde_json::from_str(&seed_json()).expect("seed package is JSON")
}

/// The answers of docs/semantics.md §9.
pub fn seed_answers() -> PromptAnswers {
    answers(json!({
        "twilio_account_id": "1",
        "account_sid": "AC0123456789abcdef0123456789abcdef",
        "default_from": "+15557654321",
    }))
}

pub fn answers(v: Json) -> PromptAnswers {
    serde_json::from_value(v).expect("answers are an object")
}

/// Plans with ids counting up from `first_id` and a `StdRng` seeded with `seed`.
pub fn plan_seeded(
    pkg: &Package,
    answers: &PromptAnswers,
    first_id: RecordId,
    seed: u64,
) -> Result<ImportPlan, ImportError> {
    let mut next = first_id;
    let mut next_id = move || {
        let id = next;
        next += 1;
        id
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let defaults = json!({"base_url": "https://sb.example.com/", "group_id": 0});
    pkg.plan(PlanOptions {
        answers,
        next_id: &mut next_id,
        rng: &mut rng,
        defaults,
    })
}

pub fn plan(pkg: &Package, answers: &PromptAnswers) -> Result<ImportPlan, ImportError> {
    plan_seeded(pkg, answers, 1, 42)
}

/// Parses `doc`, expecting failure; returns the issues.
pub fn parse_err(doc: &Json) -> Vec<ImportIssue> {
    match Package::parse(&doc.to_string()) {
        Ok(_) => panic!("expected the package to be refused:\n{doc:#}"),
        Err(e) => e.issues,
    }
}

/// Parses `doc` (must succeed) and plans it with `answers` (must fail); returns the issues.
pub fn plan_err(doc: &Json, answers: &PromptAnswers) -> Vec<ImportIssue> {
    let pkg = Package::parse(&doc.to_string()).unwrap_or_else(|e| panic!("parse failed: {e}"));
    match plan(&pkg, answers) {
        Ok(p) => panic!("expected planning to fail, got {p:#?}"),
        Err(e) => e.issues,
    }
}

/// An issue as a comparable tuple.
pub fn tuple(i: &ImportIssue) -> (String, Option<String>, Option<String>, String) {
    (
        i.section.clone(),
        i.uid.clone(),
        i.field.clone(),
        i.message.clone(),
    )
}

/// Builds an expected issue tuple.
pub fn expect(
    section: &str,
    uid: Option<&str>,
    field: Option<&str>,
    message: &str,
) -> (String, Option<String>, Option<String>, String) {
    (
        section.into(),
        uid.map(Into::into),
        field.map(Into::into),
        message.into(),
    )
}

/// A minimal valid package around `bots` / `records` (no prompts).
pub fn minimal(extra: Json) -> Json {
    let mut doc = json!({
        "package": {"name": "Test"},
        "bots": [{
            "uid": "bot_a",
            "name": "Bot A",
            "owner": {"context": "cerberusweb.contexts.app", "id": 0},
            "is_disabled": false,
            "params": {"config": {}},
            "behaviors": [{
                "uid": "beh_hook",
                "title": "Hook",
                "is_disabled": false,
                "is_private": false,
                "priority": 50,
                "event": {"key": "event.webhook.received"},
                "nodes": [{"type": "action", "title": "Reply", "params": {"actions": [
                    {"action": "set_http_body", "value": "ok"}
                ]}}]
            }]
        }]
    });
    if let (Json::Object(d), Json::Object(e)) = (&mut doc, extra) {
        for (k, v) in e {
            d.insert(k, v);
        }
    }
    doc
}

/// `doc.bots[0].behaviors[0]`.
pub fn first_behavior(doc: &mut Json) -> &mut Json {
    &mut doc["bots"][0]["behaviors"][0]
}

/// A valid webhook listener record (uid `hook`, pointing at `beh_hook`); `null` in `fields`
/// removes a key, any other value replaces or adds it.
pub fn hook_record(fields: Json) -> Json {
    let mut record = json!({
        "uid": "hook",
        "_context": "webhook_listener",
        "name": "Hook",
        "guid": "abc",
        "extension_id": "cerb.webhooks.listener.engine.va",
        "extension_params": {"behavior_id": "{{{uid.beh_hook}}}"}
    });
    for (k, v) in fields.as_object().expect("fields are an object") {
        if v.is_null() {
            record.as_object_mut().expect("an object").remove(k);
        } else {
            record[k] = v.clone();
        }
    }
    record
}
