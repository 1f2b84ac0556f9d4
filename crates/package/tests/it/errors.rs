//! Every refusal of docs/semantics.md §1.6 and Decisions 3 and 4, with its exact message and where
//! it is (section, uid, field).

use pretty_assertions::assert_eq;
use serde_json::json;
use switchboard_package::Package;

use crate::support::*;

#[test]
fn invalid_json_names_the_position() {
    let err = Package::parse("{\n  \"package\": ,\n}").unwrap_err();
    assert_eq!(
        err.issues.iter().map(tuple).collect::<Vec<_>>(),
        vec![expect(
            "package",
            None,
            None,
            "Invalid JSON: expected value at line 2 column 14"
        )]
    );
    assert_eq!(
        err.to_string(),
        "package: Invalid JSON: expected value at line 2 column 14"
    );
    assert!(
        Package::parse("").unwrap_err().issues[0]
            .message
            .starts_with("Invalid JSON: EOF while parsing")
    );
    assert!(Package::parse("\u{0}\u{ff}").is_err());
}

#[test]
fn an_unpaired_utf16_surrogate_is_named_like_php_with_its_position() {
    for (src, at) in [
        ("{\"package\": {\"name\": \"\\ud800\"}}", "line 1 column 23"),
        (
            "{\"package\": {\"name\": \"\\ud800x\"}}",
            "line 1 column 23",
        ),
        (
            "{\n  \"package\": {\"name\": \"ok \\ud83d\\ude00 \\udc00\"}}",
            "line 2 column 40",
        ),
        (
            "{\"package\": {\"name\": \"\\uD800\\u0041\"}}",
            "line 1 column 23",
        ),
    ] {
        let err = Package::parse(src).unwrap_err();
        assert_eq!(
            err.issues.iter().map(tuple).collect::<Vec<_>>(),
            vec![expect(
                "package",
                None,
                None,
                &format!(
                    "Invalid JSON: Single unpaired UTF-16 surrogate in unicode escape at {at}"
                )
            )],
            "{src}"
        );
    }
    // A proper pair is fine; other escape errors keep serde_json's words.
    assert!(Package::parse("{\"package\": {\"name\": \"\\ud83d\\ude00\"}}").is_ok());
    let bad = Package::parse("{\"package\": {\"name\": \"\\uzzzz\"}}").unwrap_err();
    assert!(
        bad.issues[0]
            .message
            .starts_with("Invalid JSON: invalid escape"),
        "{}",
        bad.issues[0].message
    );
}

#[test]
fn package_key_is_required() {
    for doc in [
        "{}",
        "[]",
        "{\"bots\": []}",
        "{\"package\": 3}",
        "\"package\"",
    ] {
        let err = Package::parse(doc).unwrap_err();
        assert_eq!(
            err.issues.iter().map(tuple).collect::<Vec<_>>(),
            vec![expect("package", None, None, "Invalid package JSON")],
            "{doc}"
        );
    }
}

#[test]
fn requires_a_cerb_version_we_emulate() {
    let mut doc = minimal(json!({}));
    doc["package"]["requires"] = json!({"cerb_version": "10.0.0", "plugins": ["cerb.webhooks", "cerberusweb.core", "cerb.bots.portal.widget", 7]});
    assert_eq!(
        parse_err(&doc).iter().map(tuple).collect::<Vec<_>>(),
        vec![
            expect(
                "package",
                None,
                Some("requires.cerb_version"),
                "This package requires Cerb version 10.0.0 or later."
            ),
            expect(
                "package",
                None,
                Some("requires.plugins[2]"),
                "This package requires the cerb.bots.portal.widget plugin to be installed and enabled."
            ),
            expect(
                "package",
                None,
                Some("requires.plugins[3]"),
                "This package requires the 7 plugin to be installed and enabled."
            ),
        ]
    );
    for ok in ["9.6.8", "9.6.8-rc1", "9.1.0", "", "8"] {
        doc["package"]["requires"] = json!({"cerb_version": ok});
        Package::parse(&doc.to_string()).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    doc["package"]["requires"] = json!({"cerb_version": "9.6.9"});
    assert_eq!(
        parse_err(&doc)[0].message,
        "This package requires Cerb version 9.6.9 or later."
    );
}

#[test]
fn records_need_uid_and_context() {
    let doc = minimal(json!({"records": [{"name": "x"}, {"uid": "r2"}]}));
    assert_eq!(
        parse_err(&doc).iter().map(tuple).collect::<Vec<_>>(),
        vec![
            expect(
                "records",
                None,
                Some("[0]"),
                "Invalid JSON: record () is missing properties (uid, _context)"
            ),
            expect(
                "records",
                Some("r2"),
                None,
                "Invalid JSON: record (r2) is missing properties (_context)"
            ),
        ]
    );
}

#[test]
fn unknown_and_unsupported_record_contexts() {
    let doc = minimal(json!({"records": [
        {"uid": "r1", "_context": "frobnicator"},
        {"uid": "r2", "_context": "ticket", "subject": "hi"},
        {"uid": "r3", "_context": "cerberusweb.contexts.custom_record"},
        hook_record(json!({"uid": "r4", "_context": "cerberusweb.contexts.webhook_listener"})),
        {"uid": "r5", "_context": "cerberusweb.contexts.no_such_thing"},
    ]}));
    let unsupported = |uid: &str, ctx: &str, alias: &str| {
        expect(
            "records",
            Some(uid),
            Some("_context"),
            &format!(
                "Unsupported record context '{ctx}' on record ({uid}): Cerb's {alias} records are unsupported here (only webhook_listener records can be imported)"
            ),
        )
    };
    assert_eq!(
        parse_err(&doc).iter().map(tuple).collect::<Vec<_>>(),
        vec![
            expect(
                "records",
                Some("r1"),
                Some("_context"),
                "Unknown context 'frobnicator' on record (r1)."
            ),
            unsupported("r2", "ticket", "ticket"),
            unsupported("r3", "cerberusweb.contexts.custom_record", "custom_record"),
            expect(
                "records",
                Some("r5"),
                Some("_context"),
                "Unknown context 'cerberusweb.contexts.no_such_thing' on record (r5)."
            ),
        ]
    );

    // Every context of Cerb 9.6, by alias or by id, is "unsupported here", never unknown.
    for (ctx, alias) in [
        ("calendar_recurring_event", "calendar_recurring_event"),
        (
            "cerberusweb.contexts.calendar_event.recurring",
            "calendar_recurring_event",
        ),
        ("workspace_tab", "workspace_tab"),
        ("cerberusweb.contexts.workspace.tab", "workspace_tab"),
        ("community_portal", "community_portal"),
        ("cerberusweb.contexts.portal", "community_portal"),
        ("card_widget", "card_widget"),
        ("cerb.contexts.gpg.private.key", "gpg_private_key"),
        ("time_entry", "time_entry"),
    ] {
        let doc = minimal(json!({"records": [{"uid": "x", "_context": ctx}]}));
        assert_eq!(
            parse_err(&doc).iter().map(tuple).collect::<Vec<_>>(),
            vec![unsupported("x", ctx, alias)],
            "{ctx}"
        );
    }
}

#[test]
fn webhook_listener_fields_are_validated() {
    let long_guid = "a".repeat(41);
    let doc = minimal(json!({"records": [
        hook_record(json!({"uid": "h1", "guid": long_guid})),
        hook_record(json!({"uid": "h2", "extension_params": "behavior_id=1"})),
        hook_record(json!({"uid": "h3", "name": null, "extension_id": null, "guid": ""})),
        hook_record(json!({"uid": "h4", "extension_id": "cerb.webhooks.listener.engine.custom", "colour": "red"})),
    ]}));
    assert_eq!(
        parse_err(&doc).iter().map(tuple).collect::<Vec<_>>(),
        vec![
            expect(
                "records",
                Some("h1"),
                Some("guid"),
                "Error validating record (h1): 'guid' must be no longer than 40 characters."
            ),
            expect(
                "records",
                Some("h2"),
                Some("extension_params"),
                "Error validating record (h2): 'extension_params' must be an object."
            ),
            expect(
                "records",
                Some("h3"),
                Some("guid"),
                "Error validating record (h3): 'guid' is required."
            ),
            expect(
                "records",
                Some("h3"),
                Some("name"),
                "Error validating record (h3): 'name' is required."
            ),
            expect(
                "records",
                Some("h3"),
                Some("extension_id"),
                "Error validating record (h3): 'extension_id' is required."
            ),
            expect(
                "records",
                Some("h4"),
                Some("extension_id"),
                "Unsupported webhook listener engine 'cerb.webhooks.listener.engine.custom' on record (h4): only cerb.webhooks.listener.engine.va is supported"
            ),
            expect(
                "records",
                Some("h4"),
                Some("colour"),
                "Error validating record (h4): 'colour' is not a valid field."
            ),
        ]
    );
}

#[test]
fn a_rendered_guid_longer_than_40_fails_at_plan_time() {
    let mut doc = minimal(json!({"records": [hook_record(json!({"guid": "{{{secret}}}"}))]}));
    doc["package"]["configure"] =
        json!({"placeholders": [{"type": "random", "key": "secret", "params": {"length": 41}}]});
    assert_eq!(
        plan_err(&doc, &answers(json!({})))
            .iter()
            .map(tuple)
            .collect::<Vec<_>>(),
        vec![expect(
            "records",
            Some("hook"),
            Some("guid"),
            "Error validating record (hook): 'guid' must be no longer than 40 characters."
        )]
    );
}

#[test]
fn bots_and_behaviors_need_their_keys() {
    let mut doc = minimal(
        json!({"behaviors": [{"uid": "top", "title": "T", "is_disabled": false, "is_private": false, "priority": 1, "event": {"key": "event.macro.bot"}, "nodes": []}]}),
    );
    doc["bots"][0].as_object_mut().unwrap().remove("owner");
    doc["bots"][0].as_object_mut().unwrap().remove("params");
    first_behavior(&mut doc)
        .as_object_mut()
        .unwrap()
        .remove("priority");
    first_behavior(&mut doc)
        .as_object_mut()
        .unwrap()
        .remove("nodes");
    doc["bots"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "no uid"}));
    assert_eq!(
        parse_err(&doc).iter().map(tuple).collect::<Vec<_>>(),
        vec![
            expect(
                "bots",
                Some("bot_a"),
                None,
                "Invalid JSON: bot is missing properties (owner, params)"
            ),
            expect(
                "bots",
                Some("beh_hook"),
                None,
                "Invalid JSON: behavior is missing properties (priority, nodes)"
            ),
            expect(
                "bots",
                None,
                Some("[1]"),
                "Invalid JSON: bot is missing properties (uid, owner, is_disabled, params, behaviors)"
            ),
            expect(
                "behaviors",
                Some("top"),
                None,
                "Invalid JSON: behavior is missing properties (bot_id)"
            ),
        ]
    );
}

#[test]
fn nodes_need_type_and_title() {
    let mut doc = minimal(json!({}));
    first_behavior(&mut doc)["nodes"] = json!([{"title": "untyped"}, {"type": "action"}, {"type": "action", "title": "x", "status": "paused"}]);
    assert_eq!(
        parse_err(&doc).iter().map(tuple).collect::<Vec<_>>(),
        vec![
            expect(
                "bots",
                Some("beh_hook"),
                Some("nodes[0]"),
                "Failed to import behavior nodes: node is missing properties (type)"
            ),
            expect(
                "bots",
                Some("beh_hook"),
                Some("nodes[1]"),
                "Failed to import behavior nodes: node is missing properties (title)"
            ),
            expect(
                "bots",
                Some("beh_hook"),
                Some("nodes[2].status"),
                "Unknown node status \"paused\": expected live, disabled or simulator"
            ),
        ]
    );
}

#[test]
fn statuses_default_to_live() {
    let mut doc = minimal(json!({}));
    first_behavior(&mut doc)["nodes"] = json!([
        {"type": "action", "title": "a"},
        {"type": "action", "title": "b", "status": "disabled"},
        {"type": "action", "title": "c", "status": "simulator"},
        {"type": "action", "title": "d", "status": 1}
    ]);
    let pkg = Package::parse(&doc.to_string()).unwrap();
    let plan = plan(&pkg, &answers(json!({}))).unwrap();
    use switchboard_package::NodeStatus::*;
    let statuses: Vec<_> = plan.bots[0].behaviors[0]
        .nodes
        .iter()
        .map(|n| n.status)
        .collect();
    assert_eq!(statuses, vec![Live, Disabled, Simulator, Disabled]);
}

#[test]
fn every_unsupported_feature_is_listed_together() {
    let mut doc = minimal(json!({
        "workspaces": [{"uid": "ws", "name": "W", "extension_id": "x", "tabs": []}],
        "portals": [],
        "custom_fieldsets": [{"uid": "cf"}],
    }));
    doc["bots"][0]["behaviors"].as_array_mut().unwrap().push(json!({
        "uid": "beh_mail",
        "title": "On new mail",
        "is_disabled": false,
        "is_private": false,
        "priority": 50,
        "event": {"key": "event.mail.received.group"},
        "nodes": [
            {"type": "switch", "title": "S", "nodes": [
                {"type": "outcome", "title": "O", "params": {"groups": [{"any": 0, "conditions": [
                    {"condition": "http_param", "name": "x", "oper": "is", "value": "y"},
                    {"condition": "ticket_subject", "oper": "is", "value": "y"},
                    {"condition": "var_x", "oper": "is", "value": "y"},
                    {"oper": "is"}
                ]}]}, "nodes": [
                    {"type": "action", "title": "A", "params": {"actions": [
                        {"action": "send_email", "to": "a@b"},
                        {"action": "set_http_body", "value": "x"},
                        {"action": "create_comment"}
                    ]}}
                ]}
            ]},
            {"type": "tarot", "title": "T"}
        ]
    }));
    doc["bots"][0]["behaviors"].as_array_mut().unwrap().push(json!({
        "uid": "beh_macro",
        "title": "Macro",
        "is_disabled": false,
        "is_private": false,
        "priority": 50,
        "event": {"key": "event.macro.bot"},
        "variables": {"var_x": {"key": "var_x", "label": "X", "type": "S", "is_private": "0", "params": {}}},
        "nodes": [
            {"type": "outcome", "title": "O", "params": {"groups": [{"conditions": [{"condition": "http_verb", "oper": "is", "value": "POST"}]}]}},
            {"type": "action", "title": "A", "params": {"actions": [{"action": "set_http_status", "value": "200"}, {"action": "var_x"}]}}
        ]
    }));
    let issues: Vec<_> = parse_err(&doc).iter().map(tuple).collect();
    assert_eq!(
        issues,
        vec![
            expect(
                "bots",
                Some("beh_mail"),
                Some("event.key"),
                "Unsupported event 'event.mail.received.group': only event.webhook.received and event.macro.bot behaviors can be imported"
            ),
            expect(
                "bots",
                Some("beh_mail"),
                Some("nodes[0].nodes[0].params.groups[0].conditions[1].condition"),
                "Unsupported condition 'ticket_subject'"
            ),
            expect(
                "bots",
                Some("beh_mail"),
                Some("nodes[0].nodes[0].nodes[0].params.actions[0].action"),
                "Unsupported action 'send_email'"
            ),
            expect(
                "bots",
                Some("beh_mail"),
                Some("nodes[0].nodes[0].nodes[0].params.actions[2].action"),
                "Unsupported action 'create_comment'"
            ),
            expect(
                "bots",
                Some("beh_mail"),
                Some("nodes[1].type"),
                "Unsupported node type 'tarot'"
            ),
            expect(
                "bots",
                Some("beh_macro"),
                Some("nodes[0].params.groups[0].conditions[0].condition"),
                "Unsupported condition 'http_verb' in a event.macro.bot behavior (webhook behaviors only)"
            ),
            expect(
                "bots",
                Some("beh_macro"),
                Some("nodes[1].params.actions[0].action"),
                "Unsupported action 'set_http_status' in a event.macro.bot behavior (webhook behaviors only)"
            ),
            expect(
                "workspaces",
                None,
                None,
                "Unsupported section 'workspaces': Switchboard imports only bots, behaviors and webhook_listener records"
            ),
            expect(
                "custom_fieldsets",
                None,
                None,
                "Unsupported section 'custom_fieldsets': Switchboard imports only bots, behaviors and webhook_listener records"
            ),
        ]
    );
}

#[test]
fn missing_prompt_answers_name_label_and_key() {
    let doc = seed_value();
    let expected = vec![
        expect(
            "package",
            Some("twilio_account_id"),
            Some("configure.prompts[0]"),
            "'Twilio account:' (twilio_account_id) is required.",
        ),
        expect(
            "package",
            Some("account_sid"),
            Some("configure.prompts[1]"),
            "'Account SID:' (account_sid) is required.",
        ),
        expect(
            "package",
            Some("default_from"),
            Some("configure.prompts[2]"),
            "'Default responder phone number:' (default_from) is required.",
        ),
    ];
    assert_eq!(
        plan_err(&doc, &answers(json!({})))
            .iter()
            .map(tuple)
            .collect::<Vec<_>>(),
        expected
    );
    let empty = answers(json!({"twilio_account_id": "", "account_sid": "", "default_from": null}));
    assert_eq!(
        plan_err(&doc, &empty).iter().map(tuple).collect::<Vec<_>>(),
        expected
    );
    let wrong_types =
        answers(json!({"twilio_account_id": [1], "account_sid": ["AC"], "default_from": {"n": 1}}));
    assert_eq!(
        plan_err(&doc, &wrong_types)
            .iter()
            .map(tuple)
            .collect::<Vec<_>>(),
        expected
    );
    // Only the one missing is reported.
    let mut partial = seed_answers();
    partial.shift_remove("default_from");
    assert_eq!(
        plan_err(&doc, &partial)
            .iter()
            .map(tuple)
            .collect::<Vec<_>>(),
        vec![expected[2].clone()]
    );
}

#[test]
fn picklist_answers_must_be_an_option_and_multi_choosers_need_a_list() {
    let mut doc = minimal(json!({}));
    doc["package"]["configure"] = json!({"prompts": [
        {"type": "picklist", "label": "Region:", "key": "region", "params": {"options": ["us-east-1", "eu-west-1"]}},
        {"type": "chooser", "label": "Workers:", "key": "workers", "params": {"context": "cerberusweb.contexts.worker"}},
        {"type": "mystery", "label": "Ignored:", "key": "ignored"}
    ]});
    let bad = answers(json!({"region": "mars-1", "workers": "1"}));
    assert_eq!(
        plan_err(&doc, &bad).iter().map(tuple).collect::<Vec<_>>(),
        vec![
            expect(
                "package",
                Some("region"),
                Some("configure.prompts[0]"),
                "'Region:' (region) is required."
            ),
            expect(
                "package",
                Some("workers"),
                Some("configure.prompts[1]"),
                "'Workers:' (workers) is required."
            ),
        ]
    );
    let pkg = Package::parse(&doc.to_string()).unwrap();
    plan(
        &pkg,
        &answers(json!({"region": "eu-west-1", "workers": [1, 2]})),
    )
    .expect("valid answers plan");
}

#[test]
fn prompt_and_placeholder_keys_are_required() {
    let mut doc = minimal(json!({}));
    doc["package"]["configure"] = json!({
        "prompts": [
            {"type": "text", "label": "No key"},
            {"type": "text", "key": "uid", "label": "Reserved"},
            {"type": "picklist", "key": "many", "label": "Many:", "params": {"options": ["a"], "multiple": true}}
        ],
        "placeholders": [{"type": "random"}, {"type": "data_query", "key": "dq", "params": {"query": "type:worklist.records"}}]
    });
    assert_eq!(
        parse_err(&doc).iter().map(tuple).collect::<Vec<_>>(),
        vec![
            expect(
                "package",
                None,
                Some("configure.prompts[0]"),
                "Prompt key is missing."
            ),
            expect(
                "package",
                Some("uid"),
                Some("configure.prompts[1]"),
                "'uid' is a reserved name"
            ),
            expect(
                "package",
                Some("many"),
                Some("configure.prompts[2].params.multiple"),
                "Unsupported prompt: picklist with params.multiple"
            ),
            expect(
                "package",
                None,
                Some("configure.placeholders[0]"),
                "Placeholder key is missing."
            ),
            expect(
                "package",
                Some("dq"),
                Some("configure.placeholders[1].type"),
                "Unsupported placeholder type 'data_query' (Switchboard has no data queries)"
            ),
        ]
    );
}

#[test]
fn duplicate_uids_are_refused() {
    let mut doc = minimal(json!({"records": [hook_record(json!({"uid": "bot_a"}))]}));
    first_behavior(&mut doc)["uid"] = json!("beh_x");
    let copy = first_behavior(&mut doc).clone();
    doc["bots"][0]["behaviors"]
        .as_array_mut()
        .unwrap()
        .push(copy);
    assert_eq!(
        parse_err(&doc).iter().map(tuple).collect::<Vec<_>>(),
        vec![
            expect(
                "bots",
                Some("beh_x"),
                Some("uid"),
                "Duplicate uid 'beh_x' (first used at bots[0].behaviors[0])"
            ),
            expect(
                "records",
                Some("bot_a"),
                Some("uid"),
                "Duplicate uid 'bot_a' (first used at bots[0])"
            ),
        ]
    );
}

#[test]
fn top_level_behaviors_attach_to_a_bot_of_the_package() {
    let top = json!({"uid": "top", "bot_id": "{{{uid.bot_a}}}", "title": "Extra", "is_disabled": "0", "is_private": "1", "priority": "7",
        "event": {"key": "event.macro.bot"}, "nodes": [{"type": "action", "title": "A", "params": {"actions": [{"action": "_exit"}]}}]});
    let doc = minimal(json!({"behaviors": [top.clone()]}));
    let pkg = Package::parse(&doc.to_string()).unwrap();
    let plan = plan(&pkg, &answers(json!({}))).unwrap();
    let (bot, behavior) = plan.behavior_by_uid("top").expect("attached");
    assert_eq!(bot.uid, "bot_a");
    assert_eq!(
        (
            behavior.bot_id,
            behavior.is_disabled,
            behavior.is_private,
            behavior.priority
        ),
        (bot.id, false, true, 7)
    );
    assert_eq!(
        plan.records
            .last()
            .map(|r| (r.context.as_str(), r.uid.as_str())),
        Some(("behavior", "top"))
    );

    let mut other = top;
    other["bot_id"] = json!(999);
    let doc = minimal(json!({"behaviors": [other]}));
    assert_eq!(
        plan_err(&doc, &answers(json!({})))
            .iter()
            .map(tuple)
            .collect::<Vec<_>>(),
        vec![expect(
            "behaviors",
            Some("top"),
            Some("bot_id"),
            "bot_id 999 is not a bot created by this package (adding behaviors to existing bots is not supported)"
        )]
    );
}

#[test]
fn behavior_variables_are_parsed_and_checked() {
    let mut doc = minimal(json!({}));
    first_behavior(&mut doc)["variables"] = json!({
        "var_a": {"key": "var_a", "label": "A", "type": "S", "is_private": true, "params": {"widget": "single"}},
        "var_b": {"key": "var_b", "label": "B", "type": "D", "is_private": "1", "params": {"options": "x\ny"}},
        "var_c": {"key": "var_c", "label": "C", "type": "ctx_cerberusweb.contexts.ticket", "is_private": 0}
    });
    let pkg = Package::parse(&doc.to_string()).unwrap();
    let plan = plan(&pkg, &answers(json!({}))).unwrap();
    let vars: Vec<_> = plan.bots[0].behaviors[0]
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
    assert_eq!(
        vars,
        vec![
            ("var_a", "A", "S", true),
            ("var_b", "B", "D", true),
            ("var_c", "C", "ctx_cerberusweb.contexts.ticket", false)
        ]
    );
    assert_eq!(
        plan.bots[0].behaviors[0].variables["var_b"].params,
        json!({"options": "x\ny"})
    );

    first_behavior(&mut doc)["variables"] = json!({
        "var_a": {"key": "var_b", "label": "A", "type": "S", "is_private": "0"},
        "var_q": {"key": "var_q", "label": "Q", "type": "Q", "is_private": "maybe"},
        "x": {"key": "x", "type": "S"},
        "var_n": {"label": "no key or type"}
    });
    assert_eq!(
        parse_err(&doc).iter().map(tuple).collect::<Vec<_>>(),
        vec![
            expect(
                "bots",
                Some("beh_hook"),
                Some("variables.var_a.key"),
                "Variable key 'var_b' does not match its entry 'var_a'"
            ),
            expect(
                "bots",
                Some("beh_hook"),
                Some("variables.var_q.type"),
                "Unsupported variable type 'Q'"
            ),
            expect(
                "bots",
                Some("beh_hook"),
                Some("variables.var_q.is_private"),
                "'is_private' must be \"0\", \"1\" or a boolean"
            ),
            expect(
                "bots",
                Some("beh_hook"),
                Some("variables.x.key"),
                "Invalid variable key 'x': must start with 'var_'"
            ),
            expect(
                "bots",
                Some("beh_hook"),
                Some("variables.var_n"),
                "Invalid variable: 'key' is required"
            ),
            expect(
                "bots",
                Some("beh_hook"),
                Some("variables.var_n"),
                "Invalid variable: 'type' is required"
            ),
        ]
    );
}

#[test]
fn uids_cannot_be_templates() {
    let mut doc = minimal(json!({}));
    first_behavior(&mut doc)["uid"] = json!("beh_{{{x}}}");
    assert_eq!(
        parse_err(&doc).iter().map(tuple).collect::<Vec<_>>(),
        vec![expect(
            "bots",
            Some("beh_{{{x}}}"),
            Some("uid"),
            "'uid' must not contain an import-time template (ids are reserved by uid first)"
        )]
    );
}

#[test]
fn refusals_are_one_per_line_grouped_by_feature_with_node_titles() {
    let mut doc = minimal(json!({}));
    first_behavior(&mut doc)["nodes"] = json!([
        {"type": "action", "title": "Mail twice", "params": {"actions": [
            {"action": "send_email", "to": "a@b"},
            {"action": "send_email", "to": "c@d"}
        ]}},
        {"type": "switch", "title": "S", "nodes": [
            {"type": "outcome", "title": "Subject?", "params": {"groups": [{"any": 0, "conditions": [
                {"condition": "ticket_subject", "oper": "is", "value": "x"}
            ]}]}}
        ]}
    ]);
    let err = Package::parse(&doc.to_string()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "3 issues
  action 'send_email' (2):
    bots (beh_hook) nodes[0].params.actions[0].action [node 'Mail twice']: Unsupported action 'send_email'
    bots (beh_hook) nodes[0].params.actions[1].action [node 'Mail twice']: Unsupported action 'send_email'
  condition 'ticket_subject' (1):
    bots (beh_hook) nodes[1].nodes[0].params.groups[0].conditions[0].condition [node 'Subject?']: Unsupported condition 'ticket_subject'"
    );
    assert_eq!(
        err.to_json()["errors"][2],
        json!({
            "section": "bots",
            "uid": "beh_hook",
            "node": "Subject?",
            "path": "nodes[1].nodes[0].params.groups[0].conditions[0].condition",
            "feature": "condition 'ticket_subject'",
            "message": "Unsupported condition 'ticket_subject'"
        })
    );
    assert_eq!(err.to_json()["errors"].as_array().unwrap().len(), 3);
}
