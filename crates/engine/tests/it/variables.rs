//! Macro variables with Cerb's coercion by type (docs/semantics.md §6.3) and the placeholders every
//! behavior sees (`behavior_*`, `behavior_bot_config`, `va_*`, §3.3 and §6.4).

use pretty_assertions::assert_eq;
use serde_json::{Value as Json, json};
use switchboard_engine::{CompiledBehavior, RunOptions, RunOutput, coerce_variable};
use switchboard_package::VariableDef;

use crate::support::*;

fn var(key: &str, kind: &str, params: Json) -> VariableDef {
    VariableDef {
        key: key.into(),
        label: key.into(),
        kind: kind.into(),
        is_private: false,
        params,
    }
}

/// A macro declaring one variable `var_x` of `kind`, run with `raw` as its input.
fn run_with(kind: &str, params: Json, raw: &str) -> RunOutput {
    let def = behavior_def(
        5,
        "event.macro.bot",
        json!({"var_x": {"key": "var_x", "label": "X", "type": kind, "is_private": false, "params": params}}),
        json!([]),
    );
    let b = CompiledBehavior::compile(&def, bot(json!({}))).unwrap();
    macro_run(
        &b,
        &TestHost::default(),
        &[("var_x", raw)],
        RunOptions::real(),
    )
}

#[test]
fn every_variable_type_is_coerced_like_cerb() {
    let picklist = json!({"options": "red\r\ngreen\n 3 \n"});
    // (type, params, input, the value the behavior sees; None = refused and left unset)
    let cases: Vec<(&str, Json, &str, Option<Json>)> = vec![
        // S, T, U: strings as given
        ("S", json!({}), " a b ", Some(json!(" a b "))),
        (
            "T",
            json!({"widget": "multiple"}),
            "l1\nl2",
            Some(json!("l1\nl2")),
        ),
        (
            "U",
            json!({}),
            "https://x.test/?a=1",
            Some(json!("https://x.test/?a=1")),
        ),
        // D: one of the options (split on line breaks, trimmed), compared loosely
        ("D", picklist.clone(), "green", Some(json!("green"))),
        ("D", picklist.clone(), "3", Some(json!("3"))),
        ("D", picklist.clone(), "3.0", Some(json!("3.0"))),
        ("D", picklist.clone(), "Green", None),
        ("D", picklist.clone(), "blue", None),
        ("D", json!({}), "x", None),
        // C: 1/0 by PHP truthiness
        ("C", json!({}), "yes", Some(json!(1))),
        ("C", json!({}), "0.0", Some(json!(1))),
        ("C", json!({}), "0", Some(json!(0))),
        ("C", json!({}), "", Some(json!(0))),
        // N, O, Y: integer cast, decimals truncated
        ("N", json!({}), "41.9", Some(json!(41))),
        ("N", json!({}), "-7.5", Some(json!(-7))),
        ("N", json!({}), "1e3", Some(json!(1000))),
        ("N", json!({}), "12 apples", Some(json!(12))),
        ("N", json!({}), "apples", Some(json!(0))),
        ("O", json!({}), "3.14159", Some(json!(3))),
        ("Y", json!({}), "19.99", Some(json!(19))),
        // E: numeric kept as given, else parsed to a Unix timestamp; unparseable refused
        ("E", json!({}), "1700000000", Some(json!("1700000000"))),
        (
            "E",
            json!({}),
            "2024-02-29 12:00",
            Some(json!(1_709_208_000)),
        ),
        (
            "E",
            json!({}),
            "2024-02-29T12:00:00+02:00",
            Some(json!(1_709_200_800)),
        ),
        ("E", json!({}), "@86400", Some(json!(86_400))),
        ("E", json!({}), "1970-01-01", None),
        ("E", json!({}), "not a date", None),
        ("E", json!({}), "", None),
        // L, W: integers
        (
            "L",
            json!({"context": "cerberusweb.contexts.ticket"}),
            "15",
            Some(json!(15)),
        ),
        ("L", json!({}), "x", Some(json!(0))),
        ("W", json!({}), "7", Some(json!(7))),
        // M, X, F, I: passed through
        ("M", json!({}), "a,b", Some(json!("a,b"))),
        ("X", json!({}), "[\"a\"]", Some(json!("[\"a\"]"))),
        ("F", json!({}), "12", Some(json!("12"))),
        ("I", json!({}), "12,13", Some(json!("12,13"))),
        // ctx_*: a JSON array (or object) of ids; what cannot be an id is dropped
        (
            "ctx_cerberusweb.contexts.ticket",
            json!({}),
            "[1, \"2\", 3.0, \"x\"]",
            Some(json!([1, 2, 3])),
        ),
        (
            "ctx_cerberusweb.contexts.ticket",
            json!({}),
            "{\"a\": 4}",
            Some(json!([4])),
        ),
        (
            "ctx_cerberusweb.contexts.ticket",
            json!({}),
            "[]",
            Some(json!([])),
        ),
        ("ctx_cerberusweb.contexts.ticket", json!({}), "1,2", None),
        ("ctx_cerberusweb.contexts.ticket", json!({}), "5", None),
    ];
    let mut failures = Vec::new();
    for (kind, params, raw, expected) in cases {
        let out = run_with(kind, params.clone(), raw);
        let got = out.vars.get("var_x").cloned();
        if got != expected {
            failures.push(format!(
                "{kind} {raw:?}: got {got:?}, expected {expected:?}"
            ));
        }
        // A refused input is recorded, never fatal.
        let refused = expected.is_none();
        if refused != (out.errors.len() == 1) {
            failures.push(format!("{kind} {raw:?}: errors {:?}", out.errors));
        }
        assert_eq!(out.exit, switchboard_engine::ExitState::Complete);
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn coercion_errors_use_cerbs_messages() {
    let err = |kind: &str, params: Json, raw: &str| {
        coerce_variable(&var("var_x", kind, params), raw).expect_err(raw)
    };
    assert_eq!(
        err("D", json!({"options": "red\ngreen"}), "blue"),
        "The picklist variable 'var_x' has no option 'blue'. Valid options are: red, green"
    );
    assert_eq!(
        err("E", json!({}), "soon"),
        "The date variable 'var_x' has an invalid value."
    );
    assert_eq!(
        err("ctx_cerberusweb.contexts.ticket", json!({}), "7"),
        "The list variable 'var_x' must be set to an array of IDs."
    );
}

#[test]
fn a_link_variable_ending_in_id_also_sets_its_context() {
    let def = behavior_def(
        5,
        "event.macro.bot",
        json!({
            "var_ticket_id": {"key": "var_ticket_id", "label": "T", "type": "L", "is_private": false, "params": {"context": "cerberusweb.contexts.ticket"}},
            "var_other": {"key": "var_other", "label": "O", "type": "L", "is_private": false, "params": {"context": "cerberusweb.contexts.ticket"}}
        }),
        json!([{"type": "action", "title": "show", "params": {"actions": [
            {"action": "set_http_body", "value": "{{ var_ticket__context }}:{{ var_ticket_id }}|{{ var_other__context }}"}
        ]}}]),
    );
    let b = CompiledBehavior::compile(&def, bot(json!({}))).unwrap();
    let out = macro_run(
        &b,
        &TestHost::default(),
        &[("var_ticket_id", "12abc"), ("var_other", "3")],
        RunOptions::real(),
    );
    assert_eq!(out.body, "cerberusweb.contexts.ticket:12|");
    assert_eq!(
        out.vars["var_ticket__context"],
        json!("cerberusweb.contexts.ticket")
    );
}

#[test]
fn a_worker_variable_may_name_another_variable() {
    let def = behavior_def(
        5,
        "event.macro.bot",
        json!({
            "var_a": {"key": "var_a", "label": "A", "type": "N", "is_private": false, "params": {}},
            "var_w": {"key": "var_w", "label": "W", "type": "W", "is_private": false, "params": {}}
        }),
        json!([]),
    );
    let b = CompiledBehavior::compile(&def, bot(json!({}))).unwrap();
    let out = macro_run(
        &b,
        &TestHost::default(),
        &[("var_a", "42"), ("var_w", "var_a")],
        RunOptions::real(),
    );
    assert_eq!(out.vars["var_w"], json!(42));
}

#[test]
fn var_actions_coerce_and_unknown_inputs_are_recorded() {
    let def = behavior_def(
        5,
        "event.macro.bot",
        json!({"var_n": {"key": "var_n", "label": "N", "type": "N", "is_private": false, "params": {}}}),
        json!([{"type": "action", "title": "set", "params": {"actions": [
            {"action": "var_n", "value": "{{ var_n * 2 }}.9"},
            {"action": "var_free", "value": "not declared: {{ var_n }}"}
        ]}}]),
    );
    let b = CompiledBehavior::compile(&def, bot(json!({}))).unwrap();
    let out = macro_run(
        &b,
        &TestHost::default(),
        &[("var_n", "21"), ("var_nope", "1")],
        RunOptions::real(),
    );
    assert_eq!(out.vars["var_n"], json!(42));
    assert_eq!(out.vars["var_free"], json!("not declared: 42"));
    assert!(!out.vars.contains_key("var_nope"));
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    assert_eq!(
        out.errors[0].message,
        "the behavior has no variable 'var_nope'"
    );
    // In the simulator `var_*` actions apply too.
    let out = macro_run(
        &b,
        &TestHost::default(),
        &[("var_n", "1")],
        RunOptions::simulator(false),
    );
    assert_eq!(out.vars["var_n"], json!(2));
}

#[test]
fn placeholders_of_the_behavior_and_its_bot() {
    let template = concat!(
        "{{ behavior__context }}|{{ behavior_id }}|{{ behavior__label }}|{{ behavior_name }}|",
        "{{ behavior_event_point }}|{{ behavior_is_disabled ? 1 : 0 }}|{{ behavior_is_private ? 1 : 0 }}|",
        "{{ behavior_priority }}|{{ behavior_variables.var_who.type }}|",
        "{{ behavior_bot__context }}|{{ behavior_bot_id }}|{{ behavior_bot__label }}|{{ behavior_bot_name }}|",
        "{{ behavior_bot_is_disabled ? 1 : 0 }}|{{ behavior_bot_owner__context }}|{{ behavior_bot_owner_id }}|",
        "{{ behavior_bot_config.account_sid }}|{{ behavior_bot_config.default_from }}|",
        "{{ va__context }}|{{ va_id }}|{{ va__label }}|{{ va_name }}|{{ va_is_disabled ? 1 : 0 }}|",
        "{{ va_owner__context }}|{{ va_owner_id }}|{{ va_config.account_sid }}|{{ var_who }}"
    );
    let expected = concat!(
        "cerberusweb.contexts.behavior|7|Behavior 7|Behavior 7|",
        "event.macro.bot|0|0|",
        "50|S|",
        "cerberusweb.contexts.bot|1|Test Bot|Test Bot|",
        "0|cerberusweb.contexts.app|0|",
        "AC123|+15557654321|",
        "cerberusweb.contexts.bot|1|Test Bot|Test Bot|0|",
        "cerberusweb.contexts.app|0|AC123|Ann"
    );
    let config = json!({"account_sid": "AC123", "default_from": "+15557654321"});
    let macro_def = behavior_def(
        7,
        "event.macro.bot",
        json!({"var_who": {"key": "var_who", "label": "Who", "type": "S", "is_private": false, "params": {}}}),
        json!([{"type": "action", "title": "show", "params": {"actions": [
            {"action": "_set_custom_var", "var": "shown", "value": template, "format": ""}
        ]}}]),
    );
    let b = CompiledBehavior::compile(&macro_def, bot(config.clone())).unwrap();
    let out = macro_run(
        &b,
        &TestHost::default(),
        &[("var_who", "Ann")],
        RunOptions::real(),
    );
    assert_eq!(out.vars["shown"], json!(expected));

    // The same names in a webhook behavior, and in conditions.
    let hook = CompiledBehavior::compile(
        &behavior_def(
            7,
            "event.webhook.received",
            json!({}),
            json!([outcome(
                "configured",
                0,
                json!([{"condition": "_custom_script", "tpl": "{{ behavior_bot_config.account_sid }}/{{ va_name }}/{{ behavior_id }}", "oper": "is", "value": "ac123/test bot/7"}]),
                json!([say("ok", "{{ behavior_bot_config.default_from }}")])
            )]),
        ),
        bot(config),
    )
    .unwrap();
    assert_eq!(real(&hook, &form(&[])).body, "+15557654321");
}
