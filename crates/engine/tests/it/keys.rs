//! Bot keys: `_set_key` and `_get_key` (docs/semantics.md §4.5), as Cerb 9.6's
//! `DevblocksEventHelper::runActionSetKey` / `runActionGetKey` and `DAO_BotDatastore` do them.

use std::sync::atomic::Ordering;

use pretty_assertions::assert_eq;
use serde_json::{Value as Json, json};
use switchboard_engine::{BotKeyWrite, OfflineHost, RunOptions, TraceEvent, run_webhook};

use crate::support::*;

/// A behavior that counts the messages of each sender (`From`, which Cerb lower-cases in
/// `http_params`) and answers with the count, the
/// way a Cerb behavior keeps state between runs; `expires_at` as given.
fn counter(expires_at: &str) -> Json {
    json!([{"type": "action", "title": "count", "status": "live", "params": {"actions": [
        {"action": "_get_key", "key": "count:{{ http_params.from }}", "var": "count"},
        {"action": "_set_key", "key": "count:{{ http_params.from }}",
         "value": "{{ count + 1 }}", "expires_at": expires_at},
        {"action": "set_http_body", "value": "message {{ count + 1 }}"}
    ]}}])
}

const NOW: i64 = 1_768_386_600; // 2026-01-14 10:30:00 UTC

fn host() -> TestHost {
    let host = TestHost::default();
    host.now.store(NOW, Ordering::SeqCst);
    host
}

fn from(sender: &str) -> switchboard_engine::WebhookRequest {
    form(&[("From", sender), ("Body", "hi")])
}

#[test]
fn set_then_get_remembers_state_per_template_rendered_key() {
    let b = webhook(counter(""));
    let host = host();
    let run = |sender| run_webhook(&b, &from(sender), &host, &RunOptions::real());
    assert_eq!(run("+15550001").body, "message 1");
    assert_eq!(run("+15550001").body, "message 2");
    assert_eq!(run("+15550002").body, "message 1", "one key per sender");
    let out = run("+15550001");
    assert_eq!(out.body, "message 3");
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(
        out.bot_keys,
        [BotKeyWrite {
            bot_id: 1,
            key: "count:+15550001".into(),
            value: "3".into(),
            expires_at: None,
        }]
    );
    assert_eq!(host.keys.get(1, "count:+15550002", NOW), Some("1".into()));
    assert_eq!(out.vars["count"], json!("2"));
}

#[test]
fn a_missing_key_sets_the_placeholder_to_false() {
    let b = webhook(
        json!([{"type": "action", "title": "a", "status": "live", "params": {
        "actions": [
            {"action": "_get_key", "key": "nothing here", "var": "v"},
            {"action": "set_http_body",
             "value": "{% if v is same as(false) %}false{% else %}{{ v }}{% endif %}"}
        ]}}]),
    );
    let out = run_webhook(&b, &form(&[]), &host(), &RunOptions::real());
    assert_eq!(out.body, "false", "{:?}", out.errors);
    assert_eq!(out.vars["v"], json!(false));
}

#[test]
fn expiry_is_honoured() {
    let b = webhook(counter("+1 hour"));
    let host = host();
    let run = || run_webhook(&b, &from("+15550001"), &host, &RunOptions::real());
    let out = run();
    assert_eq!(out.body, "message 1");
    assert_eq!(out.bot_keys[0].expires_at, Some(NOW + 3_600));
    host.now.store(NOW + 3_599, Ordering::SeqCst);
    assert_eq!(run().body, "message 2", "not expired yet");
    // The second run set it again: an hour from its own now.
    host.now.store(NOW + 3_599 + 3_600, Ordering::SeqCst);
    assert_eq!(
        run().body,
        "message 1",
        "expired exactly at expires_at, as in Cerb"
    );
}

#[test]
fn a_past_expiry_is_stored_but_never_read() {
    let b = webhook(counter("yesterday"));
    let host = host();
    let run = || run_webhook(&b, &from("+15550001"), &host, &RunOptions::real());
    assert_eq!(run().body, "message 1");
    assert_eq!(run().body, "message 1");
}

#[test]
fn an_empty_value_deletes_the_key_and_empty_keys_are_ignored() {
    let host = host();
    host.keys.set(1, "k", "old", 0);
    let b = webhook(
        json!([{"type": "action", "title": "a", "status": "live", "params": {
        "actions": [
            {"action": "_set_key", "key": "k", "value": "{{ nothing }}"},
            {"action": "_set_key", "key": "0", "value": "zero"},
            {"action": "_set_key", "key": "{{ empty }}", "value": "x"},
            {"action": "_get_key", "key": "k", "var": "after"}
        ]}}]),
    );
    let out = run_webhook(&b, &form(&[]), &host, &RunOptions::real());
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(host.keys.get(1, "k", NOW), None);
    assert_eq!(host.keys.get(1, "0", NOW), None, "\"0\" is empty in PHP");
    assert_eq!(host.keys.get(1, "", NOW), None);
    assert_eq!(out.vars["after"], json!(false));
    assert_eq!(out.bot_keys.len(), 1, "only the delete reached the store");
    assert_eq!(out.bot_keys[0].value, "");
}

#[test]
fn keys_belong_to_the_bot() {
    let host = host();
    host.keys.set(2, "k", "another bot's", 0);
    let b = webhook(
        json!([{"type": "action", "title": "a", "status": "live", "params": {
        "actions": [{"action": "_get_key", "key": "k", "var": "v"}]}}]),
    );
    let out = run_webhook(&b, &form(&[]), &host, &RunOptions::real());
    assert_eq!(out.vars["v"], json!(false));
    host.keys.set(1, "k", "mine", 0);
    let out = run_webhook(&b, &form(&[]), &host, &RunOptions::real());
    assert_eq!(out.vars["v"], json!("mine"));
}

#[test]
fn the_simulator_runs_them_and_prints_cerbs_text() {
    let b = webhook(counter("2026-01-15 08:00"));
    let host = host();
    let out = run_webhook(&b, &from("+15550001"), &host, &RunOptions::simulator(false));
    let outputs: Vec<&str> = out
        .trace
        .iter()
        .filter_map(|e| match e {
            TraceEvent::Action { output, .. } => Some(output.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        outputs[..2],
        [
            ">> Getting value for persistent key: count:+15550001\n\n\n",
            ">> Setting value for persistent key: count:+15550001\nExpires: Thu, 15 Jan 2026 08:00:00 +0000\n\n1\n",
        ]
    );
    assert_eq!(host.keys.get(1, "count:+15550001", NOW), Some("1".into()));
}

#[test]
fn an_expiry_switchboard_cannot_read_never_expires_and_says_so() {
    let b = webhook(counter("the day after the party"));
    let host = host();
    let out = run_webhook(&b, &from("+1"), &host, &RunOptions::real());
    assert_eq!(out.bot_keys[0].expires_at, None);
    assert_eq!(out.errors.len(), 1);
    assert!(
        out.errors[0].message.contains("never expires"),
        "{:?}",
        out.errors
    );
}

#[test]
fn without_a_store_the_actions_are_errors_in_the_run_log() {
    let b = webhook(counter(""));
    let out = run_webhook(&b, &from("+1"), &OfflineHost, &RunOptions::real());
    assert!(b.uses_host(), "bot keys go through the host");
    let messages: Vec<&str> = out.errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "_get_key: bot keys are not available here",
            "_set_key: bot keys are not available here"
        ]
    );
    assert!(out.bot_keys.is_empty());
}

#[test]
fn an_overlong_key_is_refused() {
    let key = "k".repeat(256);
    let b = webhook(
        json!([{"type": "action", "title": "a", "status": "live", "params": {
        "actions": [{"action": "_set_key", "key": key, "value": "v"}]}}]),
    );
    let host = host();
    let out = run_webhook(&b, &form(&[]), &host, &RunOptions::real());
    assert_eq!(out.errors.len(), 1);
    assert!(out.bot_keys.is_empty());
}
