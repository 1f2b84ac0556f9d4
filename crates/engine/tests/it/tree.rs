//! Decision-tree semantics: switch first-match, independent outcomes, groups, node statuses,
//! loops, subroutines, `_exit`, `_run_behavior`, run limits.

use pretty_assertions::assert_eq;
use serde_json::json;
use switchboard_engine::{ExitState, RunOptions, TraceEvent};

use crate::support::*;

#[test]
fn switch_takes_the_first_matching_outcome_only() {
    let b = webhook(json!([{
        "type": "switch", "title": "Command:", "status": "live",
        "nodes": [
            outcome("A", 0, json!([param("body", "contains", "a")]), json!([say("ra", "A")])),
            outcome("AB", 0, json!([param("body", "contains", "b")]), json!([say("rb", "B")])),
            outcome("else", 0, json!([]), json!([say("re", "E")]))
        ]
    }]));
    assert_eq!(real(&b, &form(&[("Body", "ab")])).body, "A");
    assert_eq!(real(&b, &form(&[("Body", "b")])).body, "B");
    assert_eq!(real(&b, &form(&[("Body", "zzz")])).body, "E");
}

#[test]
fn outcomes_outside_a_switch_are_each_evaluated() {
    let b = webhook(json!([
        outcome(
            "A",
            0,
            json!([param("body", "contains", "a")]),
            json!([say("ra", "A")])
        ),
        outcome(
            "B",
            0,
            json!([param("body", "contains", "b")]),
            json!([say("rb", "B")])
        ),
        say("tail", "T")
    ]));
    assert_eq!(real(&b, &form(&[("Body", "ab")])).body, "ABT");
    assert_eq!(real(&b, &form(&[("Body", "b")])).body, "BT");
}

#[test]
fn action_children_of_a_switch_always_run() {
    let b = webhook(json!([{
        "type": "switch", "title": "S", "status": "live",
        "nodes": [
            say("first", "1"),
            outcome("A", 0, json!([param("x", "is", "1")]), json!([say("ra", "A")])),
            say("after", "2")
        ]
    }]));
    // The switch stops at its first passing outcome; the action placed before it ran.
    assert_eq!(real(&b, &form(&[("x", "1")])).body, "1A");
    assert_eq!(real(&b, &form(&[("x", "0")])).body, "12");
}

#[test]
fn groups_all_and_any() {
    let conds = json!([param("a", "is", "1"), param("b", "is", "1")]);
    let all = webhook(json!([outcome(
        "all",
        0,
        conds.clone(),
        json!([say("r", "Y")])
    )]));
    let any = webhook(json!([outcome("any", 1, conds, json!([say("r", "Y")]))]));
    let cases = [
        (("1", "1"), "Y", "Y"),
        (("1", "0"), "", "Y"),
        (("0", "1"), "", "Y"),
        (("0", "0"), "", ""),
    ];
    for ((a, b), want_all, want_any) in cases {
        let req = form(&[("a", a), ("b", b)]);
        assert_eq!(real(&all, &req).body, want_all, "all a={a} b={b}");
        assert_eq!(real(&any, &req).body, want_any, "any a={a} b={b}");
    }
    // Several groups are ANDed; an empty group passes in both modes.
    let multi = webhook(json!([{
        "type": "outcome", "title": "multi", "status": "live",
        "params": {"groups": [
            {"any": 1, "conditions": [param("a", "is", "1"), param("a", "is", "2")]},
            {"any": 0, "conditions": []},
            {"any": "0", "conditions": [param("b", "!is", "")]}
        ]},
        "nodes": [say("r", "Y")]
    }]));
    assert_eq!(real(&multi, &form(&[("a", "2"), ("b", "x")])).body, "Y");
    assert_eq!(real(&multi, &form(&[("a", "2")])).body, "");
    assert_eq!(real(&multi, &form(&[("a", "3"), ("b", "x")])).body, "");
}

#[test]
fn any_group_short_circuits_and_all_group_stops_at_first_failure() {
    let b = webhook(json!([outcome(
        "any",
        1,
        json!([param("a", "is", "1"), param("b", "is", "1")]),
        json!([])
    )]));
    let out = real(&b, &form(&[("a", "1"), ("b", "1")]));
    let checked = out
        .trace
        .iter()
        .filter(|e| matches!(e, TraceEvent::Condition { .. }))
        .count();
    assert_eq!(checked, 1, "ANY stops at the first success");
    let b = webhook(json!([outcome(
        "all",
        0,
        json!([param("a", "is", "1"), param("b", "is", "1")]),
        json!([])
    )]));
    let out = real(&b, &form(&[("a", "0"), ("b", "1")]));
    let checked = out
        .trace
        .iter()
        .filter(|e| matches!(e, TraceEvent::Condition { .. }))
        .count();
    assert_eq!(checked, 1, "ALL stops at the first failure");
}

#[test]
fn node_statuses_in_real_and_simulated_runs() {
    let b = webhook(json!([
        {"type": "action", "title": "live", "status": "live", "params": {"actions": [{"action": "set_http_body", "value": "{{_http_response_body}}L"}]}},
        {"type": "action", "title": "disabled", "status": "disabled", "params": {"actions": [{"action": "set_http_body", "value": "{{_http_response_body}}D"}]}},
        {"type": "action", "title": "sim", "status": "simulator", "params": {"actions": [{"action": "set_http_body", "value": "{{_http_response_body}}S"}]}},
        {"type": "switch", "title": "sw", "status": "live", "nodes": [
            {"type": "outcome", "title": "off", "status": "disabled", "params": {"groups": [{"any": 0, "conditions": []}]}, "nodes": [say("x", "X")]},
            outcome("on", 0, json!([]), json!([say("y", "Y")]))
        ]}
    ]));
    assert_eq!(
        real(&b, &form(&[])).body,
        "LY",
        "disabled and simulator-only nodes skipped in real runs"
    );
    assert_eq!(
        sim(&b, &form(&[])).body,
        "LSY",
        "simulator-only nodes run in the simulator"
    );
}

#[test]
fn exit_stops_later_root_siblings() {
    let b = webhook(json!([
        say("one", "1"),
        {"type": "action", "title": "stop", "status": "live", "params": {"actions": [
            {"action": "_exit", "mode": ""},
            {"action": "set_http_body", "value": "never"}
        ]}},
        say("three", "3")
    ]));
    let out = real(&b, &form(&[]));
    assert_eq!(out.body, "1");
    assert_eq!(out.exit, ExitState::Stop);
    let suspend = webhook(
        json!([{"type": "action", "title": "s", "status": "live", "params": {"actions": [{"action": "_exit", "mode": "suspend"}]}}]),
    );
    assert_eq!(real(&suspend, &form(&[])).exit, ExitState::Suspend);
}

#[test]
fn loops_set_counters_and_clean_up() {
    let b = webhook(json!([
        {"type": "loop", "title": "each", "status": "live",
         "params": {"foreach_json": "{{ ['a','b','c']|json_encode }}", "as_placeholder": "item"},
         "nodes": [{"type": "action", "title": "add", "status": "live", "params": {"actions": [
            {"action": "set_http_body", "value": "{{_http_response_body}}{{item__counter}}:{{item}}({{item__key}});"}
         ]}}]},
        {"type": "action", "title": "after", "status": "live", "params": {"actions": [
            {"action": "set_http_body", "value": "{{_http_response_body}}[{{item}}]"}
        ]}}
    ]));
    assert_eq!(real(&b, &form(&[])).body, "1:a(0);2:b(1);3:c(2);[]");

    let empty = webhook(json!([{"type": "loop", "title": "each", "status": "live",
        "params": {"foreach_json": "[]", "as_placeholder": "item"}, "nodes": [say("x", "X")]}]));
    let out = real(&empty, &form(&[]));
    assert_eq!(out.body, "");
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
}

#[test]
fn loop_iterations_are_limited() {
    let b = webhook(json!([{"type": "loop", "title": "big", "status": "live",
    "params": {"foreach_json": "{{ range(0, 1500)|json_encode }}", "as_placeholder": "i"},
    "nodes": [{"type": "action", "title": "count", "status": "live", "params": {"actions": [
        {"action": "_set_custom_var", "var": "n", "value": "{{ i }}", "format": ""}
    ]}}]}]));
    let out = real(&b, &form(&[]));
    assert_eq!(out.exit, ExitState::Aborted);
    assert_eq!(out.vars["n"], json!("999"));
    assert!(
        out.errors
            .iter()
            .any(|e| e.message.contains("1000 loop iterations")),
        "{:?}",
        out.errors
    );
}

#[test]
fn subroutines_run_only_when_called_and_skip_the_rest_of_the_action_node() {
    let b = webhook(json!([
        {"type": "subroutine", "title": "greet", "status": "live", "nodes": [say("hello", "H")]},
        {"type": "action", "title": "call", "status": "live", "params": {"actions": [
            {"action": "set_http_body", "value": "{{_http_response_body}}1"},
            {"action": "_run_subroutine", "subroutine": "greet"},
            {"action": "set_http_body", "value": "{{_http_response_body}}skipped"}
        ]}},
        say("next", "2")
    ]));
    assert_eq!(real(&b, &form(&[])).body, "1H2");
}

#[test]
fn recursive_subroutines_hit_a_limit_instead_of_the_stack() {
    let b = webhook(json!([
        {"type": "subroutine", "title": "again", "status": "live", "nodes": [
            {"type": "action", "title": "recurse", "status": "live", "params": {"actions": [{"action": "_run_subroutine", "subroutine": "again"}]}}
        ]},
        {"type": "action", "title": "start", "status": "live", "params": {"actions": [{"action": "_run_subroutine", "subroutine": "again"}]}}
    ]));
    let out = real(&b, &form(&[]));
    assert_eq!(out.exit, ExitState::Aborted);
    assert!(!out.errors.is_empty());
}

#[test]
fn visited_node_limit() {
    // 11 root outcomes each with 1000 passing children would exceed 10,000 visits.
    let children: Vec<_> = (0..1000)
        .map(|i| outcome(&format!("c{i}"), 0, json!([]), json!([])))
        .collect();
    let roots: Vec<_> = (0..11)
        .map(|i| outcome(&format!("r{i}"), 0, json!([]), json!(children)))
        .collect();
    let b = webhook(json!(roots));
    let out = real(&b, &form(&[]));
    assert_eq!(out.exit, ExitState::Aborted);
    assert!(
        out.errors.iter().any(|e| e.message.contains("10000 nodes")),
        "{:?}",
        out.errors
    );
}

#[test]
fn run_behavior_passes_inputs_returns_results_and_stops_at_depth() {
    use std::sync::Arc;
    use switchboard_engine::CompiledBehavior;
    let target_def = behavior_def(
        20,
        "event.macro.bot",
        json!({"var_name": {"key": "var_name", "label": "Name", "type": "S", "is_private": false, "params": {}}}),
        json!([{"type": "action", "title": "set", "status": "live", "params": {"actions": [
            {"action": "_set_custom_var", "var": "greeting", "value": "Hello {{var_name}}", "format": ""}
        ]}}]),
    );
    let target = Arc::new(CompiledBehavior::compile(&target_def, bot(json!({}))).unwrap());
    let mut host = TestHost::default();
    host.behaviors.insert(20, target);
    let caller = webhook(
        json!([{"type": "action", "title": "call", "status": "live", "params": {"actions": [
            {"action": "_run_behavior", "behavior_id": "20", "var": "result", "var_name": "{{http_params.who}}", "run_in_simulator": "1"},
            {"action": "set_http_body", "value": "{{ result.greeting }}"}
        ]}}]),
    );
    let out = switchboard_engine::run_webhook(
        &caller,
        &form(&[("who", "Ann")]),
        &host,
        &RunOptions::real(),
    );
    assert_eq!(out.body, "Hello Ann");

    // A behavior that calls itself is refused (no recursion); a chain deeper than 8 stops.
    let mut host = TestHost::default();
    for id in 30..45 {
        let def = behavior_def(
            id,
            "event.macro.bot",
            json!({}),
            json!([{"type": "action", "title": "next", "status": "live", "params": {"actions": [
                {"action": "_run_behavior", "behavior_id": (id + 1).to_string(), "var": "r", "run_in_simulator": "1"}
            ]}}]),
        );
        host.behaviors.insert(
            id,
            Arc::new(CompiledBehavior::compile(&def, bot(json!({}))).unwrap()),
        );
    }
    let start = host.behaviors[&30].clone();
    let out = macro_run(&start, &host, &[], RunOptions::real());
    let entered = out
        .trace
        .iter()
        .filter(|e| matches!(e, TraceEvent::Behavior { .. }))
        .count();
    assert_eq!(entered, 8);
    assert!(
        out.errors
            .iter()
            .any(|e| e.message.contains("deeper than 8")),
        "{:?}",
        out.errors
    );
}

#[test]
fn template_errors_skip_the_action_and_keep_the_previous_value() {
    let b = webhook(
        json!([{"type": "action", "title": "a", "status": "live", "params": {"actions": [
            {"action": "set_http_body", "value": "first"},
            {"action": "set_http_body", "value": "{% if %}broken"},
            {"action": "set_http_header", "name": "X-After", "value": "yes"}
        ]}}]),
    );
    let out = real(&b, &form(&[]));
    assert_eq!(out.body, "first");
    assert_eq!(out.headers.get("x-after").map(String::as_str), Some("yes"));
    assert_eq!(out.errors.len(), 1);
}

#[test]
fn runaway_templates_stop_at_the_limits() {
    let b = webhook(
        json!([{"type": "action", "title": "a", "status": "live", "params": {"actions": [
            {"action": "set_http_body", "value": "ok"},
            {"action": "set_http_body", "value": "{% for i in range(0, 100000000) %}x{% endfor %}"},
            {"action": "_set_custom_var", "var": "big", "value": "{% for i in range(0, 9000) %}{{ 'y' * 100 }}{% endfor %}", "format": ""}
        ]}}]),
    );
    let out = real(&b, &form(&[]));
    assert_eq!(out.body, "ok");
    assert_eq!(out.errors.len(), 2, "{:?}", out.errors);
    assert!(!out.vars.contains_key("big"));
}
