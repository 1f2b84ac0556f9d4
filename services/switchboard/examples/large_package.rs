//! Writes a large package for measuring `switchboard simulate` (docs/benchmarks.md, "Loading a
//! large package"): the seed package (Cerb's Twilio Bot) plus a bot "Big" whose behaviors hold
//! `NODES` nodes in all (default 50,000: about 7.3 MB), shaped like real ones: a switch of outcomes
//! on `http_param`, each with actions that render templates.
//!
//! `cargo run --release -p switchboard --example large_package -- OUT.json [NODES]`, then e.g.
//! `/usr/bin/time -v target/release/switchboard simulate OUT.json --behavior behavior_43 --param Body=help`.

use serde_json::{Value, json};

/// Nodes per behavior: a switch and groups of an outcome with three actions.
const PER_BEHAVIOR: usize = 5_001;

fn behavior(index: usize, nodes: usize) -> Value {
    let groups = (nodes.saturating_sub(1)) / 4;
    let outcomes: Vec<Value> = (0..groups)
        .map(|g| {
            let say = |n: usize| {
                json!({"type": "action", "title": format!("R{g}.{n}"), "params": {"actions": [
                    {"action": "set_http_body", "value": format!("<Message>{{{{http_params.from}}}} {g}.{n}</Message>")}
                ]}})
            };
            json!({"type": "outcome", "title": format!("C{g}"), "params": {"groups": [
                {"any": 0, "conditions": [{"condition": "http_param", "name": "body", "oper": "is", "value": format!("c{g}")}]}
            ]}, "nodes": [say(1), say(2), say(3)]})
        })
        .collect();
    json!({
        "uid": format!("behavior_big_{index}"),
        "title": format!("Big behavior {index}"),
        "is_disabled": false,
        "is_private": false,
        "priority": 50,
        "event": {"key": "event.webhook.received", "label": "Webhook received"},
        "nodes": [{"type": "switch", "title": "Command:", "status": "live", "nodes": outcomes}]
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let out = args.next().expect("usage: large_package OUT.json [NODES]");
    let nodes: usize = args
        .next()
        .map(|n| n.parse().expect("NODES is a number"))
        .unwrap_or(50_000);
    let mut doc: Value =
        serde_json::from_str(&switchboard_test_support::seed_package()).expect("seed is JSON");
    let mut behaviors = Vec::new();
    let mut left = nodes;
    while left > 0 {
        let n = left.min(PER_BEHAVIOR);
        behaviors.push(behavior(behaviors.len(), n));
        left -= n;
    }
    let big = json!({
        "uid": "bot_big",
        "name": "Big",
        "owner": {"context": "cerberusweb.contexts.app", "id": 0},
        "is_disabled": false,
        "params": {"config": {}, "events": {"mode": "all", "items": []}, "actions": {"mode": "all", "items": []}},
        "behaviors": behaviors
    });
    doc["bots"].as_array_mut().expect("bots").push(big);
    let text = serde_json::to_string(&doc).expect("serializes");
    std::fs::write(&out, &text).expect("writes");
    eprintln!(
        "{out}: {} bytes, {nodes} nodes in the bot 'Big'",
        text.len()
    );
}
