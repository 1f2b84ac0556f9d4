//! The seed Twilio Bot package, planned with the answers of docs/semantics.md §9: every field that
//! the store and the engine rely on, checked exactly.

use pretty_assertions::assert_eq;
use serde_json::{Value as Json, json};
use switchboard_package::{CreatedRecord, ImportPlan, NodeKind, NodeStatus, Package, PromptKind};

use crate::support::*;

fn seed_plan() -> (Package, ImportPlan) {
    let pkg = Package::parse(&seed_json()).unwrap_or_else(|e| panic!("seed package refused: {e}"));
    let plan =
        plan(&pkg, &seed_answers()).unwrap_or_else(|e| panic!("seed package did not plan: {e}"));
    (pkg, plan)
}

#[test]
fn parses_with_its_prompts_and_behaviors() {
    let pkg = Package::parse(&seed_json()).expect("seed parses");
    assert_eq!(pkg.name(), "Twilio Bot");
    let prompts: Vec<(&str, &str, &PromptKind, bool)> = pkg
        .prompts()
        .iter()
        .map(|p| (p.key.as_str(), p.label.as_str(), &p.kind, p.hidden))
        .collect();
    assert_eq!(
        prompts,
        vec![
            (
                "twilio_account_id",
                "Twilio account:",
                &PromptKind::Chooser {
                    single: true,
                    context: Some("cerberusweb.contexts.connected_account".into())
                },
                false
            ),
            ("account_sid", "Account SID:", &PromptKind::Text, false),
            (
                "default_from",
                "Default responder phone number:",
                &PromptKind::Text,
                false
            ),
        ]
    );
    assert_eq!(pkg.bots().len(), 1);
    assert_eq!(pkg.bots()[0].uid, "bot_twilio");
    assert_eq!(
        pkg.bots()[0].behaviors,
        vec!["behavior_42", "behavior_43", "behavior_41"]
    );
    let behaviors: Vec<(&str, &str, &str)> = pkg
        .behaviors()
        .iter()
        .map(|b| (b.uid.as_str(), b.title.as_str(), b.event.as_str()))
        .collect();
    assert_eq!(
        behaviors,
        vec![
            ("behavior_42", "Look up a number", "event.macro.bot"),
            (
                "behavior_43",
                "Respond to Twilio SMS webhook",
                "event.webhook.received"
            ),
            ("behavior_41", "Send SMS message", "event.macro.bot"),
        ]
    );
    assert_eq!(
        pkg.behavior("Send SMS message").map(|b| b.uid.as_str()),
        Some("behavior_41")
    );
    assert_eq!(
        pkg.behavior("behavior_43").map(|b| b.bot.as_str()),
        Some("bot_twilio")
    );
    assert!(pkg.behavior("nope").is_none());
}

#[test]
fn ids_are_reserved_in_cerbs_order() {
    let (_, plan) = seed_plan();
    // Records first, then the bot and its behaviors, then node trees depth-first.
    assert_eq!(plan.webhooks[0].id, 1);
    assert_eq!(plan.bots[0].id, 2);
    let behavior_ids: Vec<i64> = plan.bots[0].behaviors.iter().map(|b| b.id).collect();
    assert_eq!(behavior_ids, vec![3, 4, 5]);
    let mut node_ids = Vec::new();
    for behavior in &plan.bots[0].behaviors {
        collect_ids(&behavior.nodes, &mut node_ids);
    }
    assert_eq!(node_ids, (6..=16).collect::<Vec<_>>());
    assert_eq!(
        plan.records,
        vec![
            record(
                "webhook_listener",
                "webhook_twilio_bot",
                1,
                "Twilio SMS Received"
            ),
            record("bot", "bot_twilio", 2, "Twilio Bot"),
            record("behavior", "behavior_42", 3, "Look up a number"),
            record(
                "behavior",
                "behavior_43",
                4,
                "Respond to Twilio SMS webhook"
            ),
            record("behavior", "behavior_41", 5, "Send SMS message"),
        ]
    );
}

fn record(context: &str, uid: &str, id: i64, label: &str) -> CreatedRecord {
    CreatedRecord {
        context: context.into(),
        uid: uid.into(),
        id,
        label: label.into(),
    }
}

fn collect_ids(nodes: &[switchboard_package::NodeDef], out: &mut Vec<i64>) {
    for node in nodes {
        out.push(node.id);
        collect_ids(&node.nodes, out);
    }
}

#[test]
fn bot_has_config_from_the_prompts() {
    let (_, plan) = seed_plan();
    assert_eq!(plan.package_name, "Twilio Bot");
    assert_eq!(plan.bots.len(), 1);
    let bot = &plan.bots[0];
    assert_eq!(bot.uid, "bot_twilio");
    assert_eq!(bot.name, "Twilio Bot");
    assert!(!bot.is_disabled);
    assert_eq!(bot.owner.context, "cerberusweb.contexts.app");
    assert_eq!(bot.owner.id, json!(0));
    assert_eq!(
        bot.config(),
        json!({"account_sid": "AC0123456789abcdef0123456789abcdef", "default_from": "+15557654321"})
    );
    assert_eq!(bot.params["events"], json!({"mode": "all", "items": []}));
    assert_eq!(bot.params["actions"], json!({"mode": "all", "items": []}));
    let image = bot.image.as_deref().expect("avatar");
    assert!(
        image.starts_with("data:image/png;base64,iVBORw0KGgo"),
        "{image}"
    );
    assert_eq!(image, seed_value()["bots"][0]["image"].as_str().unwrap());
}

#[test]
fn behaviors_with_events_flags_and_variables() {
    let (_, plan) = seed_plan();
    let bot = &plan.bots[0];
    let summary: Vec<(&str, &str, &str, bool, bool, i64, i64)> = bot
        .behaviors
        .iter()
        .map(|b| {
            (
                b.uid.as_str(),
                b.title.as_str(),
                b.event.as_str(),
                b.is_disabled,
                b.is_private,
                b.priority,
                b.bot_id,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "behavior_42",
                "Look up a number",
                "event.macro.bot",
                false,
                true,
                50,
                2
            ),
            (
                "behavior_43",
                "Respond to Twilio SMS webhook",
                "event.webhook.received",
                false,
                false,
                50,
                2
            ),
            (
                "behavior_41",
                "Send SMS message",
                "event.macro.bot",
                false,
                true,
                50,
                2
            ),
        ]
    );
    let lookup = &bot.behaviors[0];
    assert_eq!(lookup.uri, None);
    let vars: Vec<_> = lookup
        .variables
        .values()
        .map(|v| {
            (
                v.key.as_str(),
                v.label.as_str(),
                v.kind.as_str(),
                v.is_private,
            )
        })
        .collect();
    assert_eq!(vars, vec![("var_phone_number", "Phone Number", "S", false)]);
    assert_eq!(
        lookup.variables["var_phone_number"].params,
        json!({"widget": "single"})
    );
    assert!(bot.behaviors[1].variables.is_empty());
    let send = &bot.behaviors[2];
    let keys: Vec<&str> = send.variables.keys().map(String::as_str).collect();
    assert_eq!(keys, vec!["var_to", "var_body"]);
    assert_eq!(
        send.variables["var_body"].params,
        json!({"widget": "multiple"})
    );
    assert_eq!(send.variables["var_body"].label, "Body");
}

#[test]
fn webhook_tree_is_kept_with_crlf_in_runtime_templates() {
    let (_, plan) = seed_plan();
    let hook = &plan
        .behavior_by_uid("behavior_43")
        .expect("webhook behavior")
        .1;
    assert_eq!(hook.nodes.len(), 1);
    let switch = &hook.nodes[0];
    assert_eq!(
        (switch.kind, switch.title.as_str(), switch.status),
        (NodeKind::Switch, "Command:", NodeStatus::Live)
    );
    assert_eq!(switch.params, json!({}));
    let outcomes: Vec<(NodeKind, &str, usize)> = switch
        .nodes
        .iter()
        .map(|n| (n.kind, n.title.as_str(), n.nodes.len()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (NodeKind::Outcome, "HELP", 1),
            (NodeKind::Outcome, "LOGO", 1),
            (NodeKind::Outcome, "LINK", 1),
            (NodeKind::Outcome, "(default)", 1),
        ]
    );
    let raw = seed_value();
    let raw_switch = &raw["bots"][0]["behaviors"][1]["nodes"][0];
    for (i, outcome) in switch.nodes.iter().enumerate() {
        assert_eq!(outcome.status, NodeStatus::Live);
        // Params are verbatim: conditions and the CRLF bodies are untouched.
        assert_eq!(outcome.params, raw_switch["nodes"][i]["params"]);
        let action = &outcome.nodes[0];
        assert_eq!(
            (action.kind, action.title.as_str()),
            (NodeKind::Action, "Respond")
        );
        assert_eq!(action.params, raw_switch["nodes"][i]["nodes"][0]["params"]);
        assert!(action.nodes.is_empty());
    }
    let help_body = switch.nodes[0].nodes[0].params["actions"][0]["value"]
        .as_str()
        .unwrap();
    assert!(
        help_body
            .starts_with("{% set msg = \"You can say:\\n* HELP\\n* LOGO\\n* LINK\\n\" %}\r\n<?xml"),
        "{help_body:?}"
    );
    let logo_body = switch.nodes[1].nodes[0].params["actions"][0]["value"]
        .as_str()
        .unwrap();
    assert!(
        logo_body.contains("<Message>\r\n    \tHere's the Cerb logo:\r\n    </Message>"),
        "{logo_body:?}"
    );
    assert_eq!(
        switch.nodes[0].params["groups"][0]["conditions"][0],
        json!({"condition": "http_param", "name": "body", "oper": "is", "value": "help"})
    );
    assert_eq!(switch.nodes[3].params["groups"][0]["conditions"], json!([]));
}

#[test]
fn macros_get_the_rendered_account_id_and_keep_runtime_templates() {
    let (_, plan) = seed_plan();
    let lookup = &plan.behavior_by_uid("behavior_42").unwrap().1;
    let action = &lookup.nodes[0];
    assert_eq!(
        (action.kind, action.title.as_str()),
        (NodeKind::Action, "Look up number via API")
    );
    let actions = action.params["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 2);
    assert_eq!(actions[0]["auth_connected_account_id"], json!("1"));
    assert_eq!(
        actions[0]["http_url"],
        json!(
            "https://lookups.twilio.com/v1/PhoneNumbers/{{var_phone_number|url_encode}}?Type=carrier&Type=caller-name"
        )
    );
    assert_eq!(actions[0]["options"], json!({"raw_response_body": "1"}));
    assert_eq!(
        actions[1]["value"],
        json!("{{_http_response.body|json_pretty}}")
    );

    let send = &plan.behavior_by_uid("behavior_41").unwrap().1;
    let request = &send.nodes[0].params["actions"][0];
    assert_eq!(request["auth_connected_account_id"], json!("1"));
    assert_eq!(request["http_verb"], json!("post"));
    assert_eq!(
        request["http_body"],
        json!(
            "{% set params = {\r\n\t\"To\": var_to,\r\n\t\"From\": behavior_bot_config.default_from,\r\n\t\"Body\": var_body\r\n} %}\r\n{{params|url_encode}}"
        )
    );
    assert_eq!(
        request["http_url"],
        json!(
            "https://api.twilio.com/2010-04-01/Accounts/{{behavior_bot_config.account_sid}}/Messages"
        )
    );
}

#[test]
fn webhook_listener_points_at_the_webhook_behavior() {
    let (_, plan) = seed_plan();
    assert_eq!(plan.webhooks.len(), 1);
    let hook = &plan.webhooks[0];
    assert_eq!(hook.uid, "webhook_twilio_bot");
    assert_eq!(hook.name, "Twilio SMS Received");
    assert_eq!(hook.extension_id, "cerb.webhooks.listener.engine.va");
    let webhook_behavior_id = plan.behavior_by_uid("behavior_43").unwrap().1.id;
    assert_eq!(
        hook.extension_params,
        json!({"behavior_id": webhook_behavior_id.to_string()})
    );
    assert_eq!(hook.behavior_id, Some(webhook_behavior_id));
    assert!(hook.verify_signature);
    assert_eq!(hook.guid.len(), 40);
    assert!(
        hook.guid
            .bytes()
            .all(|b| b"abcdefghjklmnpqrstuvwxyz123456789".contains(&b)),
        "{}",
        hook.guid
    );
}

#[test]
fn numeric_chooser_answer_is_accepted() {
    let pkg = Package::parse(&seed_json()).unwrap();
    let mut answers = seed_answers();
    answers.insert("twilio_account_id".into(), json!(7));
    let plan = plan(&pkg, &answers).expect("plans");
    let request = &plan.behavior_by_uid("behavior_41").unwrap().1.nodes[0].params["actions"][0];
    assert_eq!(request["auth_connected_account_id"], json!("7"));
}

#[test]
fn plan_round_trips_through_json() {
    let (_, plan) = seed_plan();
    let text = serde_json::to_string(&plan).unwrap();
    let back: ImportPlan = serde_json::from_str(&text).unwrap();
    assert_eq!(back, plan);
    let value: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(
        value["bots"][0]["behaviors"][1]["nodes"][0]["type"],
        json!("switch")
    );
}
