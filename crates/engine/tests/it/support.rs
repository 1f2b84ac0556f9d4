//! Builds behaviors from Cerb-shaped JSON and a host that records what the engine asked of it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value as Json, json};
use switchboard_engine::{
    BotInfo, CompiledBehavior, ConnectedAccount, Host, HttpOutcome, HttpRequest, MemoryBotKeys,
    OfflineHost, RunOptions, RunOutput, WebhookRequest, run_macro, run_webhook,
};
use switchboard_package::{BehaviorDef, NodeDef, Owner, RecordId};

/// Assigns ids depth-first (parent before children) like the importer.
fn nodes_from_json(nodes: &Json, next: &mut RecordId) -> Vec<NodeDef> {
    nodes
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| {
                    *next += 1;
                    let id = *next;
                    let children = nodes_from_json(n.get("nodes").unwrap_or(&Json::Null), next);
                    NodeDef {
                        id,
                        kind: serde_json::from_value(n["type"].clone()).expect("node type"),
                        title: n["title"].as_str().unwrap_or("").to_string(),
                        status: serde_json::from_value(
                            n.get("status").cloned().unwrap_or(json!("live")),
                        )
                        .unwrap(),
                        params: n.get("params").cloned().unwrap_or(Json::Null),
                        nodes: children,
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn bot(config: Json) -> Arc<BotInfo> {
    Arc::new(BotInfo {
        id: 1,
        uid: "bot".into(),
        name: "Test Bot".into(),
        is_disabled: false,
        owner: Owner {
            context: "cerberusweb.contexts.app".into(),
            id: json!(0),
        },
        config,
    })
}

pub fn behavior_def(id: RecordId, event: &str, variables: Json, nodes: Json) -> BehaviorDef {
    let mut next = id * 1000;
    BehaviorDef {
        uid: format!("behavior_{id}"),
        id,
        bot_id: 1,
        title: format!("Behavior {id}"),
        event: event.into(),
        is_disabled: false,
        is_private: false,
        priority: 50,
        variables: serde_json::from_value(variables).unwrap_or_default(),
        nodes: nodes_from_json(&nodes, &mut next),
        uri: None,
        section: Default::default(),
    }
}

pub fn webhook(nodes: Json) -> CompiledBehavior {
    CompiledBehavior::compile(
        &behavior_def(10, "event.webhook.received", json!({}), nodes),
        bot(json!({})),
    )
    .expect("compiles")
}

pub fn form(pairs: &[(&str, &str)]) -> WebhookRequest {
    let mut body = String::new();
    for (k, v) in pairs {
        if !body.is_empty() {
            body.push('&');
        }
        body.push_str(&format!("{}={}", enc(k), enc(v)));
    }
    WebhookRequest {
        method: "POST".into(),
        headers: vec![(
            "Content-Type".into(),
            "application/x-www-form-urlencoded".into(),
        )],
        body: body.into_bytes(),
        client_ip: "127.0.0.1".into(),
        ..Default::default()
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A host with configurable accounts, behaviors and canned HTTP answers; it records requests.
#[derive(Default)]
pub struct TestHost {
    pub accounts: HashMap<RecordId, ConnectedAccount>,
    pub behaviors: HashMap<RecordId, Arc<CompiledBehavior>>,
    pub answer: Option<HttpOutcome>,
    pub sent: Mutex<Vec<HttpRequest>>,
    /// Bot keys (`_get_key`, `_set_key`).
    pub keys: MemoryBotKeys,
    /// The host's clock (Unix seconds) for bot key expiry; 0: the system clock.
    pub now: AtomicI64,
}

impl Host for TestHost {
    fn connected_account(&self, id: RecordId) -> Option<ConnectedAccount> {
        self.accounts.get(&id).cloned()
    }
    fn http_request(&self, request: &HttpRequest) -> HttpOutcome {
        self.sent.lock().unwrap().push(request.clone());
        self.answer
            .clone()
            .unwrap_or(HttpOutcome::Error("no answer configured".into()))
    }
    fn behavior(&self, id: RecordId) -> Option<Arc<CompiledBehavior>> {
        self.behaviors.get(&id).cloned()
    }
    fn bot_key_get(&self, bot: RecordId, key: &str) -> Result<Option<String>, String> {
        Ok(self.keys.get(bot, key, self.now()))
    }
    fn bot_key_set(
        &self,
        bot: RecordId,
        key: &str,
        value: &str,
        expires_at: i64,
    ) -> Result<(), String> {
        self.keys.set(bot, key, value, expires_at);
        Ok(())
    }
    fn now(&self) -> i64 {
        match self.now.load(Ordering::SeqCst) {
            0 => OfflineHost.now(),
            t => t,
        }
    }
}

pub fn real(b: &CompiledBehavior, req: &WebhookRequest) -> RunOutput {
    run_webhook(b, req, &TestHost::default(), &RunOptions::real())
}

pub fn sim(b: &CompiledBehavior, req: &WebhookRequest) -> RunOutput {
    run_webhook(b, req, &TestHost::default(), &RunOptions::simulator(false))
}

pub fn macro_run(
    b: &CompiledBehavior,
    host: &TestHost,
    vars: &[(&str, &str)],
    opts: RunOptions,
) -> RunOutput {
    let inputs = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    run_macro(b, &inputs, host, &opts)
}

/// An action node that appends `text` to the response body (to observe which nodes ran).
pub fn say(title: &str, text: &str) -> Json {
    json!({
        "type": "action", "title": title, "status": "live",
        "params": {"actions": [{"action": "set_http_body", "value": format!("{{{{ _http_response_body }}}}{text}")}]}
    })
}

pub fn outcome(title: &str, any: u8, conditions: Json, children: Json) -> Json {
    json!({
        "type": "outcome", "title": title, "status": "live",
        "params": {"groups": [{"any": any, "conditions": conditions}]},
        "nodes": children
    })
}

pub fn param(name: &str, oper: &str, value: &str) -> Json {
    json!({"condition": "http_param", "name": name, "oper": oper, "value": value})
}
