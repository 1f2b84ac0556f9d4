//! Import-time templates (`{{{ }}}`, `{{% %}}`, `{{# #}}`): what they can name, what they render
//! to, and the strict failures of Decision 4 (docs/semantics.md).

use pretty_assertions::assert_eq;
use serde_json::json;
use switchboard_package::Package;

use crate::support::*;

const UNDEFINED: &str = "(not a prompt, placeholder, uid or default)";

fn with_prompt(mut doc: serde_json::Value) -> serde_json::Value {
    doc["package"]["configure"] = json!({
        "prompts": [
            {"type": "text", "label": "Region:", "key": "region"},
            {"type": "chooser", "label": "Account:", "key": "account_id", "params": {"single": true, "context": "cerberusweb.contexts.connected_account"}}
        ],
        "placeholders": [{"type": "random", "key": "secret"}]
    });
    doc
}

fn region_answers() -> switchboard_package::PromptAnswers {
    answers(json!({"region": "us-east-1", "account_id": "5"}))
}

#[test]
fn names_prompts_placeholders_uids_contexts_and_defaults() {
    let mut doc = with_prompt(minimal(json!({})));
    doc["bots"][0]["params"]["config"] = json!({
        "url": "https://polly.{{{region}}}.amazonaws.com/v1?{{query|url_encode}}",
        "ctx": "{{{account__context}}}",
        "me": "{{{uid.bot_a}}}",
        "hook": "{{{uid.beh_hook}}}",
        "base": "{{{default.base_url}}}webhooks/{{{secret|lower}}}",
        "{{{region}}}_key": "keyed",
        "block": "{{% if region == 'us-east-1' %}}east{{% else %}}other{{% endif %}}",
        "comment": "{{# note #}}kept",
        "crlf": "a\r\n{{{region}}}",
        "untouched": "a\r\n{{ region }}",
        "function": "{{{range(0, 3)|length > 2}}}"
    });
    doc["bots"][0]["owner"]["id"] = json!("{{{account_id}}}");
    doc["package"]["name"] = json!("{{{region}}} pkg");
    let pkg = Package::parse(&doc.to_string()).unwrap();
    let plan = plan(&pkg, &region_answers()).unwrap_or_else(|e| panic!("{e}"));
    let bot = &plan.bots[0];
    let secret = bot.config()["base"]
        .as_str()
        .unwrap()
        .strip_prefix("https://sb.example.com/webhooks/")
        .unwrap()
        .to_owned();
    assert_eq!(secret.len(), 8);
    assert_eq!(
        bot.config(),
        json!({
            "url": "https://polly.us-east-1.amazonaws.com/v1?{{query|url_encode}}",
            "ctx": "cerberusweb.contexts.connected_account",
            "me": bot.id.to_string(),
            "hook": bot.behaviors[0].id.to_string(),
            "base": format!("https://sb.example.com/webhooks/{secret}"),
            "us-east-1_key": "keyed",
            "block": "east",
            "comment": "kept",
            "crlf": "a\nus-east-1",
            "untouched": "a\r\n{{ region }}",
            "function": "1"
        })
    );
    // Rendered results are strings, even where the package wanted a number.
    assert_eq!(bot.owner.id, json!("5"));
    // The `package` section is never rendered.
    assert_eq!(plan.package_name, "{{{region}}} pkg");
    assert_eq!(pkg.name(), "{{{region}}} pkg");
}

#[test]
fn undefined_names_fail_with_their_location() {
    let mut doc = with_prompt(minimal(json!({"records": [{
        "uid": "hook", "_context": "webhook_listener", "name": "Hook", "guid": "{{{secret}}}",
        "extension_id": "cerb.webhooks.listener.engine.va",
        "extension_params": {"behavior_id": "{{{uid.behavior_99}}}"}
    }]})));
    doc["bots"][0]["name"] = json!("{{{bot_name}}}");
    first_behavior(&mut doc)["nodes"][0]["params"]["actions"][0]["value"] =
        json!("{{{default.nope}}} and {{{region}}}");
    // An answer for a prompt the package does not declare defines nothing.
    let mut given = region_answers();
    given.insert("bot_name".into(), json!("Sneaky"));
    assert_eq!(
        plan_err(&doc, &given).iter().map(tuple).collect::<Vec<_>>(),
        vec![
            expect(
                "bots",
                Some("bot_a"),
                Some("name"),
                &format!("Import-time template uses undefined name 'bot_name' {UNDEFINED}")
            ),
            expect(
                "bots",
                Some("beh_hook"),
                Some("nodes[0].params.actions[0].value"),
                &format!("Import-time template uses undefined name 'default.nope' {UNDEFINED}")
            ),
            expect(
                "records",
                Some("hook"),
                Some("extension_params.behavior_id"),
                &format!("Import-time template uses undefined name 'uid.behavior_99' {UNDEFINED}")
            ),
        ]
    );
}

#[test]
fn defined_test_and_default_filter_still_name_the_missing_value() {
    // Strict means strict: even a guarded lookup of an unknown name is reported (Cerb would
    // silently render it empty), so typos cannot hide behind `default`.
    let mut doc = with_prompt(minimal(json!({})));
    doc["bots"][0]["name"] = json!("{{{missing|default('x')}}}");
    let issues = plan_err(&doc, &region_answers());
    assert_eq!(issues.len(), 1);
    assert_eq!(
        issues[0].message,
        format!("Import-time template uses undefined name 'missing' {UNDEFINED}")
    );
}

#[test]
fn syntax_errors_fail_with_their_location() {
    let mut doc = with_prompt(minimal(json!({})));
    doc["bots"][0]["name"] = json!("{{{ region | }}}");
    first_behavior(&mut doc)["title"] = json!("{{% if region %}}unterminated");
    let issues = plan_err(&doc, &region_answers());
    let located: Vec<_> = issues
        .iter()
        .map(|i| (i.section.as_str(), i.uid.as_deref(), i.field.as_deref()))
        .collect();
    assert_eq!(
        located,
        vec![
            ("bots", Some("bot_a"), Some("name")),
            ("bots", Some("beh_hook"), Some("title"))
        ]
    );
    for issue in &issues {
        assert!(
            issue.message.starts_with("Invalid import-time template: "),
            "{}",
            issue.message
        );
    }
}

#[test]
fn rendered_values_are_validated_again() {
    let mut doc = with_prompt(minimal(json!({})));
    first_behavior(&mut doc)["nodes"][0]["params"]["actions"][0]["action"] = json!("{{{region}}}");
    first_behavior(&mut doc)["event"]["key"] = json!("event.{{{region}}}");
    assert_eq!(
        plan_err(&doc, &region_answers())
            .iter()
            .map(tuple)
            .collect::<Vec<_>>(),
        vec![
            expect(
                "bots",
                Some("beh_hook"),
                Some("event.key"),
                "Unsupported event 'event.us-east-1': only event.webhook.received and event.macro.bot behaviors can be imported"
            ),
            expect(
                "bots",
                Some("beh_hook"),
                Some("nodes[0].params.actions[0].action"),
                "Unsupported action 'us-east-1'"
            ),
        ]
    );
}

#[test]
fn exclude_templates_drop_items_before_ids_are_reserved() {
    let hook = |uid: &str, exclude: serde_json::Value| {
        json!({"uid": uid, "_context": "webhook_listener", "name": uid, "guid": uid,
               "extension_id": "cerb.webhooks.listener.engine.va", "extension_params": {}, "_exclude": exclude})
    };
    let doc = with_prompt(minimal(json!({"records": [
        hook("east", json!("{{{ region != 'us-east-1' }}}")),
        hook("west", json!("{{{ region == 'us-east-1' }}}")),
        hook("kept", json!("0")),
        hook("gone", json!(true)),
    ]})));
    let pkg = Package::parse(&doc.to_string()).unwrap();
    let plan = plan(&pkg, &region_answers()).unwrap_or_else(|e| panic!("{e}"));
    let uids: Vec<(&str, i64)> = plan
        .webhooks
        .iter()
        .map(|w| (w.uid.as_str(), w.id))
        .collect();
    assert_eq!(uids, vec![("east", 1), ("kept", 2)]);
    assert_eq!(plan.bots[0].id, 3);

    // `uid.*` does not exist yet when `_exclude` is rendered.
    let doc = with_prompt(minimal(
        json!({"records": [hook("early", json!("{{{ uid.bot_a }}}"))]}),
    ));
    assert_eq!(
        plan_err(&doc, &region_answers())
            .iter()
            .map(tuple)
            .collect::<Vec<_>>(),
        vec![expect(
            "records",
            Some("early"),
            Some("_exclude"),
            &format!(
                "Invalid _exclude template: record (early) Import-time template uses undefined name 'uid.bot_a' {UNDEFINED}"
            )
        )]
    );
}
