//! One table of import refusals: each case of docs/semantics.md §1.1–§1.3 and §1.6, each refusal
//! of its Decision 3 (unsupported features) and Decision 4 (strict import-time templates), with
//! the exact message and where it is (section, uid, field). Decision 8 (a `regexp` that does not
//! compile) is checked when the engine compiles the plan, not here: this crate has no regex
//! engine. Each case's clause names a section (`§1.2 …`) or a Decision of docs/semantics.md.

use pretty_assertions::assert_eq;
use serde_json::{Value as Json, json};
use switchboard_package::Package;

use crate::support::*;

type Issue = (String, Option<String>, Option<String>, String);

struct Case {
    /// The clause of docs/semantics.md this case checks (a `§` section or a Decision).
    clause: &'static str,
    /// The package text.
    src: String,
    /// `None`: parsing must refuse the package. `Some(answers)`: parsing accepts it and planning
    /// with these answers refuses it.
    answers: Option<Json>,
    expected: Vec<Issue>,
}

const UNDEFINED: &str = "(not a prompt, placeholder, uid or default)";
const OPERATORS: &str = "only the string operators is, contains, like and regexp (each negatable with '!') are supported";

/// The minimal package with `edit` applied.
fn doc(edit: impl FnOnce(&mut Json)) -> String {
    let mut d = minimal(json!({}));
    edit(&mut d);
    d.to_string()
}

fn with_listener(fields: Json) -> String {
    doc(|d| d["records"] = json!([hook_record(fields)]))
}

fn with_prompts(prompts: Json) -> impl FnOnce(&mut Json) {
    move |d| d["package"]["configure"] = json!({ "prompts": prompts })
}

/// The first behavior's single node replaced by `node`.
fn with_node(node: Json) -> String {
    doc(|d| first_behavior(d)["nodes"] = json!([node]))
}

/// The first behavior turned into a macro with `node` as its single node.
fn macro_with_node(node: Json) -> String {
    doc(|d| {
        first_behavior(d)["event"]["key"] = json!("event.macro.bot");
        first_behavior(d)["nodes"] = json!([node]);
    })
}

/// The first behavior turned into a macro with these variables and `node` as its single node.
fn macro_with_variables(variables: Json, node: Json) -> String {
    doc(|d| {
        first_behavior(d)["event"]["key"] = json!("event.macro.bot");
        first_behavior(d)["variables"] = variables;
        first_behavior(d)["nodes"] = json!([node]);
    })
}

fn outcome(condition: Json) -> Json {
    json!({"type": "outcome", "title": "O", "params": {"groups": [{"any": 0, "conditions": [condition]}]}})
}

fn action(action: Json) -> Json {
    json!({"type": "action", "title": "A", "params": {"actions": [action]}})
}

fn issue(section: &str, uid: Option<&str>, field: Option<&str>, message: &str) -> Issue {
    expect(section, uid, field, message)
}

fn record_issue(uid: &str, field: Option<&str>, message: &str) -> Vec<Issue> {
    vec![issue("records", Some(uid), field, message)]
}

fn behavior_issue(field: &str, message: &str) -> Vec<Issue> {
    vec![issue("bots", Some("beh_hook"), Some(field), message)]
}

fn cases() -> Vec<Case> {
    let parse = |clause, src: String, expected| Case {
        clause,
        src,
        answers: None,
        expected,
    };
    let plan = |clause, src: String, answers: Json, expected| Case {
        clause,
        src,
        answers: Some(answers),
        expected,
    };
    let none = || json!({});
    vec![
        // ---- §1.1 load and requirements ------------------------------------------------------
        parse(
            "§1.1 input must be JSON",
            "{\"package\": }".into(),
            vec![issue(
                "package",
                None,
                None,
                "Invalid JSON: expected value at line 1 column 13",
            )],
        ),
        parse(
            "§1.1 a top-level package key",
            "{\"bots\": []}".into(),
            vec![issue("package", None, None, "Invalid package JSON")],
        ),
        parse(
            "§1.1 requires.cerb_version",
            doc(|d| d["package"]["requires"] = json!({"cerb_version": "9.7"})),
            vec![issue(
                "package",
                None,
                Some("requires.cerb_version"),
                "This package requires Cerb version 9.7 or later.",
            )],
        ),
        parse(
            "§1.1 requires.plugins",
            doc(|d| d["package"]["requires"] = json!({"plugins": ["cerb.webhooks", "wgm.ldap"]})),
            vec![issue(
                "package",
                None,
                Some("requires.plugins[1]"),
                "This package requires the wgm.ldap plugin to be installed and enabled.",
            )],
        ),
        // ---- §1.2 prompts --------------------------------------------------------------------
        parse(
            "§1.2 a prompt needs a key",
            doc(with_prompts(json!([{"type": "text", "label": "L"}]))),
            vec![issue(
                "package",
                None,
                Some("configure.prompts[0]"),
                "Prompt key is missing.",
            )],
        ),
        plan(
            "§1.2 text: an answer is required; default, placeholder and hidden are UI-only",
            doc(with_prompts(
                json!([{"type": "text", "label": "Region:", "key": "region", "hidden": true,
                "params": {"default": "us-east-1", "placeholder": "us-east-1"}}]),
            )),
            none(),
            vec![issue(
                "package",
                Some("region"),
                Some("configure.prompts[0]"),
                "'Region:' (region) is required.",
            )],
        ),
        plan(
            "§1.2 text: an empty answer is missing (Decision 4: label and key)",
            doc(with_prompts(
                json!([{"type": "text", "label": "Region:", "key": "region"}]),
            )),
            json!({"region": ""}),
            vec![issue(
                "package",
                Some("region"),
                Some("configure.prompts[0]"),
                "'Region:' (region) is required.",
            )],
        ),
        plan(
            "§1.2 chooser, single: a non-empty id",
            doc(with_prompts(
                json!([{"type": "chooser", "label": "Account:", "key": "account_id",
                "params": {"single": true, "context": "cerberusweb.contexts.connected_account"}}]),
            )),
            json!({"account_id": [1]}),
            vec![issue(
                "package",
                Some("account_id"),
                Some("configure.prompts[0]"),
                "'Account:' (account_id) is required.",
            )],
        ),
        plan(
            "§1.2 chooser, multiple: a non-empty list",
            doc(with_prompts(
                json!([{"type": "chooser", "label": "Workers:", "key": "workers",
                "params": {"context": "cerberusweb.contexts.worker"}}]),
            )),
            json!({"workers": []}),
            vec![issue(
                "package",
                Some("workers"),
                Some("configure.prompts[0]"),
                "'Workers:' (workers) is required.",
            )],
        ),
        plan(
            "§1.2 picklist: the answer must be an option",
            doc(with_prompts(
                json!([{"type": "picklist", "label": "Region:", "key": "region",
                "params": {"options": ["us-east-1", "eu-west-1"]}}]),
            )),
            json!({"region": "mars-1"}),
            vec![issue(
                "package",
                Some("region"),
                Some("configure.prompts[0]"),
                "'Region:' (region) is required.",
            )],
        ),
        parse(
            "§1.2 picklist with multiple stores nothing in Cerb: refused",
            doc(with_prompts(
                json!([{"type": "picklist", "label": "Many:", "key": "many",
                "params": {"options": ["a"], "multiple": true}}]),
            )),
            vec![issue(
                "package",
                Some("many"),
                Some("configure.prompts[0].params.multiple"),
                "Unsupported prompt: picklist with params.multiple",
            )],
        ),
        plan(
            "§1.2 an unknown prompt type defines no name (Decision 4: using it fails)",
            doc(|d| {
                with_prompts(json!([{"type": "mystery", "label": "X:", "key": "x"}]))(d);
                d["bots"][0]["name"] = json!("{{{x}}}");
            }),
            json!({"x": "given"}),
            vec![issue(
                "bots",
                Some("bot_a"),
                Some("name"),
                &format!("Import-time template uses undefined name 'x' {UNDEFINED}"),
            )],
        ),
        parse(
            "§1.2 prompt and placeholder keys are one namespace",
            doc(|d| {
                d["package"]["configure"] = json!({
                    "prompts": [{"type": "text", "label": "A:", "key": "a"}],
                    "placeholders": [{"type": "random", "key": "a"}]
                })
            }),
            vec![issue(
                "package",
                Some("a"),
                Some("configure.placeholders[0]"),
                "Duplicate prompt or placeholder key 'a' (first in configure.prompts[0])",
            )],
        ),
        parse(
            "§1.4 uid and default are names the import defines",
            doc(with_prompts(
                json!([{"type": "text", "label": "D:", "key": "default"}]),
            )),
            vec![issue(
                "package",
                Some("default"),
                Some("configure.prompts[0]"),
                "'default' is a reserved name",
            )],
        ),
        // ---- §1.3 placeholders ---------------------------------------------------------------
        parse(
            "§1.3 a placeholder needs a key",
            doc(|d| d["package"]["configure"] = json!({"placeholders": [{"type": "random"}]})),
            vec![issue(
                "package",
                None,
                Some("configure.placeholders[0]"),
                "Placeholder key is missing.",
            )],
        ),
        parse(
            "§1.3 random: a length that is not a number",
            doc(|d| {
                d["package"]["configure"] = json!({"placeholders": [
                    {"type": "random", "key": "g", "params": {"length": "forty"}}
                ]})
            }),
            vec![issue(
                "package",
                Some("g"),
                Some("configure.placeholders[0].params.length"),
                "Invalid random placeholder length \"forty\": must be an integer from 1 to 4096",
            )],
        ),
        parse(
            "§1.3 data_query placeholders (Decision 3)",
            doc(|d| {
                d["package"]["configure"] =
                    json!({"placeholders": [{"type": "data_query", "key": "dq"}]})
            }),
            vec![issue(
                "package",
                Some("dq"),
                Some("configure.placeholders[0].type"),
                "Unsupported placeholder type 'data_query' (Switchboard has no data queries)",
            )],
        ),
        plan(
            "§1.3 an unknown placeholder type defines no name (Decision 4: using it fails)",
            doc(|d| {
                d["package"]["configure"] =
                    json!({"placeholders": [{"type": "sequence", "key": "n"}]});
                d["bots"][0]["name"] = json!("Bot {{{n}}}");
            }),
            none(),
            vec![issue(
                "bots",
                Some("bot_a"),
                Some("name"),
                &format!("Import-time template uses undefined name 'n' {UNDEFINED}"),
            )],
        ),
        // ---- §1.6 records --------------------------------------------------------------------
        parse(
            "§1.6 records: uid and _context",
            doc(|d| d["records"] = json!([{"name": "x"}])),
            vec![issue(
                "records",
                None,
                Some("[0]"),
                "Invalid JSON: record () is missing properties (uid, _context)",
            )],
        ),
        parse(
            "§1.6 records: _context",
            doc(|d| d["records"] = json!([{"uid": "r"}])),
            record_issue(
                "r",
                None,
                "Invalid JSON: record (r) is missing properties (_context)",
            ),
        ),
        parse(
            "§1.6 records: unknown context",
            doc(|d| d["records"] = json!([{"uid": "r", "_context": "frobnicator"}])),
            record_issue(
                "r",
                Some("_context"),
                "Unknown context 'frobnicator' on record (r).",
            ),
        ),
        parse(
            "§1.6 records: a context that is not a string",
            doc(|d| d["records"] = json!([{"uid": "r", "_context": 7}])),
            record_issue("r", Some("_context"), "Unknown context '7' on record (r)."),
        ),
        parse(
            "§1.6 records: a known Cerb context Switchboard cannot create (Decision 3)",
            doc(|d| d["records"] = json!([{"uid": "r", "_context": "ticket", "subject": "s"}])),
            record_issue(
                "r",
                Some("_context"),
                "Unsupported record context 'ticket' on record (r): Cerb's ticket records are unsupported here (only webhook_listener records can be imported)",
            ),
        ),
        parse(
            "§1.6 records: a connected account (Decision 3), with the command that does that job",
            doc(|d| d["records"] = json!([{"uid": "acct", "_context": "cerberusweb.contexts.connected_account", "name": "Twilio"}])),
            record_issue(
                "acct",
                Some("_context"),
                "Unsupported record context 'cerberusweb.contexts.connected_account' on record (acct): Cerb's connected_account records are unsupported here (only webhook_listener records can be imported); add connected accounts with `switchboard accounts add` instead",
            ),
        ),
        parse(
            "§1.1 a behavior export is not a package",
            json!({"behavior": {"title": "Example", "event": {"key": "event.macro.bot"}, "nodes": []}}).to_string(),
            vec![issue(
                "package",
                None,
                None,
                "This is a behavior export, not a package: it holds one behavior (a top-level 'behavior' object) and no 'package'. Wrap it in a package: a 'package' object, and a 'bots' entry whose 'behaviors' list holds the behavior with a 'uid'",
            )],
        ),
        parse(
            "§1.6 records: field mapping failure",
            with_listener(json!({"colour": "red"})),
            record_issue(
                "hook",
                Some("colour"),
                "Error validating record (hook): 'colour' is not a valid field.",
            ),
        ),
        parse(
            "§1.6 webhook_listener: name required (absent)",
            with_listener(json!({"name": null})),
            record_issue(
                "hook",
                Some("name"),
                "Error validating record (hook): 'name' is required.",
            ),
        ),
        parse(
            "§1.6 webhook_listener: name required (blank)",
            with_listener(json!({"name": ""})),
            record_issue(
                "hook",
                Some("name"),
                "Error validating record (hook): 'name' is required.",
            ),
        ),
        parse(
            "§1.6 webhook_listener: name is a string",
            with_listener(json!({"name": 7})),
            record_issue(
                "hook",
                Some("name"),
                "Error validating record (hook): 'name' must be a string (integer).",
            ),
        ),
        parse(
            "§1.6 webhook_listener: name at most 255 bytes",
            with_listener(json!({"name": "n".repeat(256)})),
            record_issue(
                "hook",
                Some("name"),
                "Error validating record (hook): 'name' must be no longer than 255 characters.",
            ),
        ),
        parse(
            "§1.6 webhook_listener: guid required",
            with_listener(json!({"guid": null})),
            record_issue(
                "hook",
                Some("guid"),
                "Error validating record (hook): 'guid' is required.",
            ),
        ),
        parse(
            "§1.6 webhook_listener: guid at most 40 characters",
            with_listener(json!({"guid": "g".repeat(41)})),
            record_issue(
                "hook",
                Some("guid"),
                "Error validating record (hook): 'guid' must be no longer than 40 characters.",
            ),
        ),
        plan(
            "§1.6 webhook_listener: a templated guid is checked once rendered",
            doc(|d| {
                d["package"]["configure"] = json!({"placeholders": [
                    {"type": "random", "key": "g", "params": {"length": 41}}
                ]});
                d["records"] = json!([hook_record(json!({"guid": "{{{g|lower}}}"}))]);
            }),
            none(),
            record_issue(
                "hook",
                Some("guid"),
                "Error validating record (hook): 'guid' must be no longer than 40 characters.",
            ),
        ),
        parse(
            "§1.6 webhook_listener: extension_id required (9.x)",
            with_listener(json!({"extension_id": null})),
            record_issue(
                "hook",
                Some("extension_id"),
                "Error validating record (hook): 'extension_id' is required.",
            ),
        ),
        parse(
            "§1.6 webhook_listener: another listener engine (Decision 3)",
            with_listener(json!({"extension_id": "cerb.webhooks.listener.engine.custom"})),
            record_issue(
                "hook",
                Some("extension_id"),
                "Unsupported webhook listener engine 'cerb.webhooks.listener.engine.custom' on record (hook): only cerb.webhooks.listener.engine.va is supported",
            ),
        ),
        parse(
            "§1.6 webhook_listener: extension_params is an object",
            with_listener(json!({"extension_params": "behavior_id=1"})),
            record_issue(
                "hook",
                Some("extension_params"),
                "Error validating record (hook): 'extension_params' must be an object.",
            ),
        ),
        parse(
            "§1.6 webhook_listener: links (Decision 3)",
            with_listener(json!({"links": ["bot_a"]})),
            record_issue(
                "hook",
                Some("links"),
                "Unsupported feature on record (hook): record links",
            ),
        ),
        // ---- §1.6 bots, behaviors, nodes -----------------------------------------------------
        parse(
            "§1.6 bots: required properties",
            doc(|d| {
                let bot = d["bots"][0].as_object_mut().unwrap();
                bot.remove("owner");
                bot.remove("is_disabled");
            }),
            vec![issue(
                "bots",
                Some("bot_a"),
                None,
                "Invalid JSON: bot is missing properties (owner, is_disabled)",
            )],
        ),
        parse(
            "§1.6 bot behaviors: required properties",
            doc(|d| {
                let behavior = first_behavior(d).as_object_mut().unwrap();
                behavior.remove("is_private");
                behavior.remove("event");
            }),
            vec![issue(
                "bots",
                Some("beh_hook"),
                None,
                "Invalid JSON: behavior is missing properties (is_private, event)",
            )],
        ),
        parse(
            "§1.6 top-level behaviors: bot_id as well",
            doc(|d| {
                let mut top = first_behavior(d).clone();
                top["uid"] = json!("top");
                d["behaviors"] = json!([top]);
            }),
            vec![issue(
                "behaviors",
                Some("top"),
                None,
                "Invalid JSON: behavior is missing properties (bot_id)",
            )],
        ),
        parse(
            "§1.6 behavior_nodes (appending to an existing behavior, Decision 3)",
            doc(|d| {
                d["behavior_nodes"] =
                    json!([{"uid": "n", "behavior_id": "1", "parent_id": "0", "title": "T"}])
            }),
            vec![issue(
                "behavior_nodes",
                None,
                None,
                "Unsupported section 'behavior_nodes': Switchboard imports only bots, behaviors and webhook_listener records",
            )],
        ),
        parse(
            "§1.5 nodes: a type and a title",
            with_node(json!({"title": "untyped"})),
            behavior_issue(
                "nodes[0]",
                "Failed to import behavior nodes: node is missing properties (type)",
            ),
        ),
        parse(
            "§1.5 ids are reserved by uid: a uid is used once",
            doc(|d| d["records"] = json!([hook_record(json!({"uid": "beh_hook"}))])),
            vec![issue(
                "records",
                Some("beh_hook"),
                Some("uid"),
                "Duplicate uid 'beh_hook' (first used at bots[0].behaviors[0])",
            )],
        ),
        // ---- docs/semantics.md, Decision 3: unsupported features -----------------------------
        parse(
            "Decision 3: events",
            doc(|d| first_behavior(d)["event"]["key"] = json!("event.mail.received.group")),
            behavior_issue(
                "event.key",
                "Unsupported event 'event.mail.received.group': only event.webhook.received and event.macro.bot behaviors can be imported",
            ),
        ),
        parse(
            "Decision 3: node types",
            with_node(json!({"type": "tarot", "title": "T"})),
            behavior_issue("nodes[0].type", "Unsupported node type 'tarot'"),
        ),
        parse(
            "Decision 3: node statuses",
            with_node(json!({"type": "action", "title": "A", "status": "paused"})),
            behavior_issue(
                "nodes[0].status",
                "Unknown node status \"paused\": expected live, disabled or simulator",
            ),
        ),
        parse(
            "Decision 3: actions",
            with_node(action(
                json!({"action": "send_email", "to": "a@example.com"}),
            )),
            behavior_issue(
                "nodes[0].params.actions[0].action",
                "Unsupported action 'send_email'",
            ),
        ),
        parse(
            "Decision 3: webhook actions in a macro",
            macro_with_node(action(json!({"action": "set_http_body", "value": "x"}))),
            behavior_issue(
                "nodes[0].params.actions[0].action",
                "Unsupported action 'set_http_body' in a event.macro.bot behavior (webhook behaviors only)",
            ),
        ),
        parse(
            "Decision 3: a list variable filled by a record search (Cerb's worklist RSS guide)",
            macro_with_variables(
                json!({"var_new_tickets": {"key": "var_new_tickets", "label": "New Tickets",
                    "type": "ctx_cerberusweb.contexts.ticket", "is_private": "1", "params": []}}),
                action(
                    json!({"action": "var_new_tickets", "search_mode": "quick_search",
                    "quick_search": "status:o", "limit": "first", "limit_count": "20", "mode": "add",
                    "worklist_model": {"columns": ["t_group_id"], "params": {}, "limit": 10,
                        "context": "cerberusweb.contexts.ticket"}}),
                ),
            ),
            behavior_issue(
                "nodes[0].params.actions[0].action",
                "Unsupported action 'var_new_tickets': fills the list variable 'var_new_tickets' (ctx_cerberusweb.contexts.ticket) from a record search (quick search `status:o`); Switchboard has no records to search (pass the list in as the variable's value instead)",
            ),
        ),
        parse(
            "Decision 3: a list variable action searches even without a query",
            macro_with_variables(
                json!({"var_tasks": {"key": "var_tasks", "label": "Tasks",
                    "type": "ctx_cerberusweb.contexts.task", "is_private": "1", "params": []}}),
                action(json!({"action": "var_tasks", "mode": "replace", "worklist_model": null})),
            ),
            behavior_issue(
                "nodes[0].params.actions[0].action",
                "Unsupported action 'var_tasks': fills the list variable 'var_tasks' (ctx_cerberusweb.contexts.task) from a record search (worklist_model); Switchboard has no records to search (pass the list in as the variable's value instead)",
            ),
        ),
        parse(
            "Decision 3: a variable action on a variable the behavior does not have",
            macro_with_variables(
                json!({}),
                action(json!({"action": "var_missing", "value": "x"})),
            ),
            behavior_issue(
                "nodes[0].params.actions[0].action",
                "Unsupported action 'var_missing': the behavior has no variable 'var_missing' (Cerb sets nothing)",
            ),
        ),
        parse(
            "Decision 3: a worker variable set by assignment",
            macro_with_variables(
                json!({"var_owner": {"key": "var_owner", "label": "Owner", "type": "W", "is_private": "0", "params": {}}}),
                action(json!({"action": "var_owner", "worker_id": ["1"], "mode": "random"})),
            ),
            behavior_issue(
                "nodes[0].params.actions[0].action",
                "Unsupported action 'var_owner': assigns a worker (worker_id, group_id, vars, mode); Switchboard has no workers",
            ),
        ),
        parse(
            "Decision 3: a date variable set from a calendar",
            macro_with_variables(
                json!({"var_due": {"key": "var_due", "label": "Due", "type": "E", "is_private": "0", "params": {}}}),
                action(
                    json!({"action": "var_due", "mode": "calendar", "calendar_id": "1", "calendar_reldate": "+2 hours"}),
                ),
            ),
            behavior_issue(
                "nodes[0].params.actions[0].action",
                "Unsupported action 'var_due': sets a date from a calendar (calendar_id, calendar_reldate); Switchboard has no calendars",
            ),
        ),
        parse(
            "Decision 3: a variable type whose action Cerb ignores",
            macro_with_variables(
                json!({"var_amount": {"key": "var_amount", "label": "Amount", "type": "Y", "is_private": "0", "params": {}}}),
                action(json!({"action": "var_amount", "value": "12.50"})),
            ),
            behavior_issue(
                "nodes[0].params.actions[0].action",
                "Unsupported action 'var_amount': Cerb sets nothing for a variable of type Y with an action; set it with _set_custom_var",
            ),
        ),
        parse(
            "Decision 3: _run_behavior without 'on' runs nothing in Cerb",
            macro_with_node(action(
                json!({"action": "_run_behavior", "behavior_id": "1", "var": "r"}),
            )),
            behavior_issue(
                "nodes[0].params.actions[0].on",
                "Unsupported action '_run_behavior' without 'on': Cerb runs the behavior on the records 'on' names, so without it nothing runs",
            ),
        ),
        parse(
            "Decision 3: conditions",
            with_node(outcome(
                json!({"condition": "ticket_subject", "oper": "is", "value": "x"}),
            )),
            behavior_issue(
                "nodes[0].params.groups[0].conditions[0].condition",
                "Unsupported condition 'ticket_subject'",
            ),
        ),
        parse(
            "Decision 3: webhook conditions in a macro",
            macro_with_node(outcome(
                json!({"condition": "http_param", "name": "body", "oper": "is", "value": "x"}),
            )),
            behavior_issue(
                "nodes[0].params.groups[0].conditions[0].condition",
                "Unsupported condition 'http_param' in a event.macro.bot behavior (webhook behaviors only)",
            ),
        ),
        parse(
            "Decision 3: operators outside the string family",
            with_node(outcome(
                json!({"condition": "var_count", "oper": "gt", "value": "3"}),
            )),
            behavior_issue(
                "nodes[0].params.groups[0].conditions[0].oper",
                &format!("Unsupported operator 'gt': {OPERATORS}"),
            ),
        ),
        parse(
            "Decision 3: a condition without an operator",
            with_node(outcome(json!({"condition": "http_verb", "value": "POST"}))),
            behavior_issue(
                "nodes[0].params.groups[0].conditions[0].oper",
                &format!("Condition has no operator: {OPERATORS}"),
            ),
        ),
        parse(
            "Decision 3: behavior variable types",
            doc(|d| {
                first_behavior(d)["variables"] =
                    json!({"var_q": {"key": "var_q", "label": "Q", "type": "Q", "is_private": "0"}})
            }),
            behavior_issue("variables.var_q.type", "Unsupported variable type 'Q'"),
        ),
        parse(
            "Decision 3: other sections",
            doc(|d| d["workspaces"] = json!([{"uid": "ws", "name": "W"}])),
            vec![issue(
                "workspaces",
                None,
                None,
                "Unsupported section 'workspaces': Switchboard imports only bots, behaviors and webhook_listener records",
            )],
        ),
        plan(
            "Decision 3: behaviors for bots the package does not create",
            doc(|d| {
                let mut top = first_behavior(d).clone();
                top["uid"] = json!("top");
                top["bot_id"] = json!("999");
                d["behaviors"] = json!([top]);
            }),
            none(),
            vec![issue(
                "behaviors",
                Some("top"),
                Some("bot_id"),
                "bot_id \"999\" is not a bot created by this package (adding behaviors to existing bots is not supported)",
            )],
        ),
        // ---- docs/semantics.md, Decision 4: strict import-time templates ---------------------
        plan(
            "Decision 4: a template that does not parse",
            doc(|d| d["bots"][0]["name"] = json!("{{% if %}}")),
            none(),
            vec![issue(
                "bots",
                Some("bot_a"),
                Some("name"),
                "Invalid import-time template: template syntax error: Unexpected token end of tag. (line 1)",
            )],
        ),
        plan(
            "Decision 4: an undefined prompt",
            doc(|d| d["bots"][0]["params"]["config"]["region"] = json!("{{{region|upper}}}")),
            none(),
            vec![issue(
                "bots",
                Some("bot_a"),
                Some("params.config.region"),
                &format!("Import-time template uses undefined name 'region' {UNDEFINED}"),
            )],
        ),
        plan(
            "Decision 4: an undefined uid.*",
            with_listener(json!({"extension_params": {"behavior_id": "{{{uid.behavior_99}}}"}})),
            none(),
            record_issue(
                "hook",
                Some("extension_params.behavior_id"),
                &format!("Import-time template uses undefined name 'uid.behavior_99' {UNDEFINED}"),
            ),
        ),
        plan(
            "Decision 4: an undefined default.*",
            with_node(action(
                json!({"action": "set_http_body", "value": "{{{default.replyto_email}}}"}),
            )),
            none(),
            behavior_issue(
                "nodes[0].params.actions[0].value",
                &format!(
                    "Import-time template uses undefined name 'default.replyto_email' {UNDEFINED}"
                ),
            ),
        ),
        plan(
            "Decision 4: an undefined name in a key",
            doc(|d| d["bots"][0]["params"]["config"]["{{{nope}}}_key"] = json!("v")),
            none(),
            vec![issue(
                "bots",
                Some("bot_a"),
                Some("params.config.{{{nope}}}_key"),
                &format!("Import-time template uses undefined name 'nope' {UNDEFINED}"),
            )],
        ),
        plan(
            "§1.5 / Decision 4: an _exclude template that fails",
            doc(|d| d["records"] = json!([hook_record(json!({"_exclude": "{{{ nope }}}"}))])),
            none(),
            record_issue(
                "hook",
                Some("_exclude"),
                &format!(
                    "Invalid _exclude template: record (hook) Import-time template uses undefined name 'nope' {UNDEFINED}"
                ),
            ),
        ),
        parse(
            "Storage: U+0000 in a value or a key (PostgreSQL cannot store it)",
            doc(|d| {
                d["records"] = json!([hook_record(json!({"name": "Hook\u{0}"}))]);
                d["bots"][0]["params"]["config"]["k\u{0}"] = json!("v");
            }),
            vec![
                issue(
                    "bots",
                    Some("bot_a"),
                    Some("params.config.k\u{0}"),
                    "contains a NUL character (U+0000), which cannot be stored",
                ),
                issue(
                    "records",
                    Some("hook"),
                    Some("name"),
                    "contains a NUL character (U+0000), which cannot be stored",
                ),
            ],
        ),
    ]
}

/// What importing `case` produces: the issues, or why the case itself is wrong.
fn refusal(case: &Case) -> Result<Vec<Issue>, String> {
    let parsed = Package::parse(&case.src);
    let issues = match (&case.answers, parsed) {
        (None, Ok(_)) => return Err("parsing accepted the package".into()),
        (None, Err(e)) => e.issues,
        (Some(_), Err(e)) => return Err(format!("parsing refused the package: {e}")),
        (Some(given), Ok(pkg)) => match plan(&pkg, &answers(given.clone())) {
            Ok(_) => return Err("planning accepted the package".into()),
            Err(e) => e.issues,
        },
    };
    Ok(issues.iter().map(tuple).collect())
}

#[test]
fn every_import_refusal_names_section_uid_and_field() {
    let cases = cases();
    let expected: Vec<(&str, Result<Vec<Issue>, String>)> = cases
        .iter()
        .map(|c| (c.clause, Ok(c.expected.clone())))
        .collect();
    let actual: Vec<(&str, Result<Vec<Issue>, String>)> =
        cases.iter().map(|c| (c.clause, refusal(c))).collect();
    assert_eq!(actual, expected);
}

#[test]
fn the_table_covers_distinct_clauses() {
    let cases = cases();
    let mut clauses: Vec<&str> = cases.iter().map(|c| c.clause).collect();
    clauses.sort_unstable();
    clauses.dedup();
    assert_eq!(clauses.len(), cases.len(), "two cases share a clause");
    assert!(cases.iter().all(|c| !c.expected.is_empty()));
}
