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
fn group_any_is_cast_to_an_integer() {
    // Two conditions of which only the second passes: ANY passes, ALL does not.
    let conds = json!([param("a", "is", "no"), param("a", "is", "1")]);
    for (any, want) in [
        (json!(1), "Y"),
        (json!("1"), "Y"),
        (json!("2 groups"), "Y"),
        (json!(true), "Y"),
        (json!(0), ""),
        (json!("0"), ""),
        (json!("any"), ""),
        (json!(0.5), ""),
        (json!(null), ""),
        (json!(false), ""),
    ] {
        let b = webhook(json!([{
            "type": "outcome", "title": "o",
            "params": {"groups": [{"any": any, "conditions": conds}]},
            "nodes": [say("r", "Y")]
        }]));
        assert_eq!(real(&b, &form(&[("a", "1")])).body, want, "any = {any}");
    }
    // Without `any` the group is ALL.
    let b = webhook(json!([{
        "type": "outcome", "title": "o",
        "params": {"groups": [{"conditions": conds}]},
        "nodes": [say("r", "Y")]
    }]));
    assert_eq!(real(&b, &form(&[("a", "1")])).body, "");
}

#[test]
fn outcomes_without_conditions_pass_and_entries_without_condition_are_skipped() {
    let b = webhook(json!([
        {"type": "outcome", "title": "no params", "nodes": [say("a", "A")]},
        {"type": "outcome", "title": "no groups", "params": {}, "nodes": [say("b", "B")]},
        {"type": "outcome", "title": "groups not a list", "params": {"groups": "x"}, "nodes": [say("c", "C")]},
        {"type": "outcome", "title": "only entries without condition", "params": {"groups": [
            {"any": 1, "conditions": [{"oper": "is", "value": "x"}, {"name": "a"}]}
        ]}, "nodes": [say("d", "D")]},
        {"type": "outcome", "title": "skipped entry then a failing one", "params": {"groups": [
            {"any": 1, "conditions": [{"oper": "is", "value": "x"}, param("a", "is", "nope")]}
        ]}, "nodes": [say("e", "E")]}
    ]));
    let out = real(&b, &form(&[("a", "1")]));
    assert_eq!(out.body, "ABCD");
    assert!(out.errors.is_empty(), "{:?}", out.errors);
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

    // Under a switch a skipped outcome counts as not matching, and a skipped node's subtree
    // never runs, whatever it holds.
    let b = webhook(json!([{"type": "switch", "title": "sw", "nodes": [
        {"type": "outcome", "title": "off", "status": "disabled", "nodes": [
            say("d", "D"),
            {"type": "action", "title": "stop", "params": {"actions": [{"action": "_exit"}]}}
        ]},
        {"type": "outcome", "title": "sim only", "status": "simulator", "nodes": [say("s", "S")]},
        {"type": "outcome", "title": "else", "nodes": [say("e", "E")]}
    ]}]));
    let skipped = |out: &switchboard_engine::RunOutput| -> Vec<(String, String)> {
        out.trace
            .iter()
            .filter_map(|e| match e {
                TraceEvent::Skip { title, reason, .. } => Some((title.clone(), reason.clone())),
                _ => None,
            })
            .collect()
    };
    let out = real(&b, &form(&[]));
    assert_eq!((out.body.as_str(), out.exit), ("E", ExitState::Complete));
    assert_eq!(
        skipped(&out),
        vec![
            ("off".to_string(), "disabled".to_string()),
            ("sim only".to_string(), "simulator only".to_string())
        ]
    );
    let out = sim(&b, &form(&[]));
    assert_eq!((out.body.as_str(), out.exit), ("S", ExitState::Complete));
    assert_eq!(
        skipped(&out),
        vec![("off".to_string(), "disabled".to_string())]
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

    // From deep inside a switch, a loop or a subroutine, `_exit` still ends the whole run.
    let stop =
        json!({"type": "action", "title": "stop", "params": {"actions": [{"action": "_exit"}]}});
    let nested = webhook(json!([
        {"type": "subroutine", "title": "bail", "nodes": [say("in sub", "s"), stop.clone()]},
        {"type": "switch", "title": "sw", "nodes": [
            outcome("exit here", 0, json!([param("where", "is", "switch")]), json!([say("x", "x"), stop.clone()])),
            outcome("else", 0, json!([]), json!([]))
        ]},
        {"type": "loop", "title": "loop", "params": {"foreach_json": "[1, 2, 3]", "as_placeholder": "i"}, "nodes": [
            say("iteration", "{{ i }}"),
            outcome("exit in loop", 0, json!([{"condition": "_custom_script", "tpl": "{{ i }}", "oper": "is", "value": "2"}, param("where", "is", "loop")]), json!([stop]))
        ]},
        {"type": "action", "title": "call", "params": {"actions": [
            {"action": "_run_subroutine", "subroutine": "bail"}
        ]}},
        say("after", "!")
    ]));
    for (place, body, path_len) in [("switch", "x", 4), ("loop", "12", 7), ("sub", "123s", 10)] {
        let out = real(&nested, &form(&[("where", place)]));
        assert_eq!(out.body, body, "{place}");
        assert_eq!(out.exit, ExitState::Stop, "{place}");
        assert_eq!(out.path.len(), path_len, "{place}: {:?}", out.path);
    }
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
            {"action": "set_http_body", "value": "{{_http_response_body}}[{{item}}|{{item__key}}|{{item__counter}}]"}
        ]}}
    ]));
    // Afterwards the item and its key are gone; the counter keeps the last count (Cerb). The
    // key of a list item is always 0: Cerb takes each item with `array_shift`, which numbers
    // the rest again from 0.
    assert_eq!(real(&b, &form(&[])).body, "1:a(0);2:b(0);3:c(0);[||3]");

    // An object iterates its values with their keys.
    let object = webhook(json!([{"type": "loop", "title": "each",
        "params": {"foreach_json": "{\"x\": {\"n\": 1}, \"y\": {\"n\": 2}}", "as_placeholder": "row"},
        "nodes": [say("add", "{{ row__key }}={{ row.n }};")]}]));
    assert_eq!(real(&object, &form(&[])).body, "x=1;y=2;");

    for (foreach, placeholder) in [
        ("[]", "item"),
        ("{}", "item"),
        ("5", "item"),
        ("not json", "item"),
        ("[1]", ""),
    ] {
        let b = webhook(json!([{"type": "loop", "title": "each", "status": "live",
            "params": {"foreach_json": foreach, "as_placeholder": placeholder}, "nodes": [say("x", "X")]}]));
        let out = real(&b, &form(&[]));
        assert_eq!(out.body, "", "{foreach}");
        assert_eq!(out.errors.len(), 1, "{foreach}: {:?}", out.errors);
        assert!(out.path.is_empty(), "a failed loop does not pass");
    }
}

#[test]
fn a_failing_loop_does_not_end_a_switch() {
    let b = webhook(json!([{"type": "switch", "title": "sw", "nodes": [
        {"type": "loop", "title": "nothing to do", "params": {"foreach_json": "[]", "as_placeholder": "i"}, "nodes": []},
        {"type": "loop", "title": "two", "params": {"foreach_json": "[1, 2]", "as_placeholder": "i"}, "nodes": [say("add", "{{ i }}")]},
        outcome("else", 0, json!([]), json!([say("e", "E")]))
    ]}]));
    assert_eq!(
        real(&b, &form(&[])).body,
        "12",
        "a loop that ran is the switch's match"
    );
}

#[test]
fn a_star_element_repeats_until_exit() {
    let b = webhook(
        json!([{"type": "loop", "title": "while", "params": {"foreach_json": "[\"*\"]", "as_placeholder": "w"}, "nodes": [
            say("tick", "{{ w__counter }},"),
            outcome("third", 0, json!([{"condition": "_custom_script", "tpl": "{{ w__counter }}", "oper": "is", "value": "3"}]),
                json!([{"type": "action", "title": "stop", "params": {"actions": [{"action": "_exit"}]}}]))
        ]}]),
    );
    let out = real(&b, &form(&[]));
    assert_eq!(out.body, "1,2,3,");
    assert_eq!(out.exit, ExitState::Stop);
    assert!(out.errors.is_empty(), "{:?}", out.errors);

    // Without an `_exit` the iteration limit ends it.
    let b = webhook(
        json!([{"type": "loop", "title": "while", "params": {"foreach_json": "[\"*\"]", "as_placeholder": "w"}, "nodes": []}]),
    );
    let out = real(&b, &form(&[]));
    assert_eq!(out.exit, ExitState::Aborted);
    assert_eq!(out.errors.len(), 1);
    assert_eq!(
        out.errors[0].message,
        "run limit: more than 1000 loop iterations"
    );
}

#[test]
fn loop_iterations_are_limited() {
    let looping = |n: usize| {
        webhook(json!([
            {"type": "loop", "title": "big", "status": "live",
             "params": {"foreach_json": format!("{{{{ range(1, {n})|json_encode }}}}"), "as_placeholder": "i"},
             "nodes": [{"type": "action", "title": "count", "status": "live", "params": {"actions": [
                {"action": "_set_custom_var", "var": "n", "value": "{{ i }}", "format": ""}
             ]}}]},
            say("after", "after")
        ]))
    };
    // Twig's `range` includes its end: range(1, n) has n elements.
    let out = real(&looping(1000), &form(&[]));
    assert_eq!(out.exit, ExitState::Complete, "{:?}", out.errors);
    assert_eq!(out.vars["n"], json!("1000"));
    assert_eq!(out.body, "after");
    assert!(out.errors.is_empty(), "{:?}", out.errors);

    let out = real(&looping(1001), &form(&[]));
    assert_eq!(out.exit, ExitState::Aborted);
    assert_eq!(
        out.vars["n"],
        json!("1000"),
        "the 1001st iteration never starts"
    );
    assert_eq!(out.body, "", "the run stops: later siblings do not run");
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    assert_eq!(
        out.errors[0].message,
        "run limit: more than 1000 loop iterations"
    );
    assert_eq!(out.errors[0].node_id, Some(out.path[0]));
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

    // The first subroutine with that exact title wins; a disabled or (in a real run)
    // simulator-only one is not entered, but the jump still ends the action node.
    let b = webhook(json!([
        {"type": "subroutine", "title": "greet", "nodes": [say("first", "F")]},
        {"type": "subroutine", "title": "greet", "nodes": [say("second", "S")]},
        {"type": "subroutine", "title": "off", "status": "disabled", "nodes": [say("off", "X")]},
        {"type": "subroutine", "title": "sim", "status": "simulator", "nodes": [say("sim", "M")]},
        {"type": "action", "title": "calls", "params": {"actions": [
            {"action": "_run_subroutine", "subroutine": "Greet"},
            {"action": "_run_subroutine", "subroutine": "greet"}
        ]}},
        {"type": "action", "title": "off", "params": {"actions": [
            {"action": "_run_subroutine", "subroutine": "off"},
            {"action": "set_http_body", "value": "{{_http_response_body}}skipped"}
        ]}},
        {"type": "action", "title": "sim", "params": {"actions": [
            {"action": "_run_subroutine", "subroutine": "sim"},
            {"action": "set_http_body", "value": "{{_http_response_body}}skipped"}
        ]}},
        say("end", ".")
    ]));
    let out = real(&b, &form(&[]));
    assert_eq!(out.body, "F.");
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    assert_eq!(
        out.errors[0].message,
        "_run_subroutine: no subroutine titled 'Greet'"
    );
    assert_eq!(sim(&b, &form(&[])).body, "FM.");
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
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    assert_eq!(
        out.errors[0].message,
        "run limit: subroutines nested deeper than 64"
    );
}

#[test]
fn visited_node_limit() {
    // `roots` root outcomes with 999 passing children each: 1,000 visits per root.
    let tree = |roots: usize| {
        let children: Vec<_> = (0..999)
            .map(|i| outcome(&format!("c{i}"), 0, json!([]), json!([])))
            .collect();
        let mut nodes: Vec<_> = (0..roots)
            .map(|i| outcome(&format!("r{i}"), 0, json!([]), json!(children)))
            .collect();
        nodes.push(say("last", "done"));
        webhook(json!(nodes))
    };
    // 9 × 1,000 + the last action: 9,001 visits.
    let out = real(&tree(9), &form(&[]));
    assert_eq!((out.exit, out.body.as_str()), (ExitState::Complete, "done"));
    assert!(out.errors.is_empty());
    // 10 × 1,000 = 10,000 visits, then the last action would be the 10,001st.
    let out = real(&tree(10), &form(&[]));
    assert_eq!(out.exit, ExitState::Aborted);
    assert_eq!(out.body, "");
    assert_eq!(out.path.len(), 10_000);
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    assert_eq!(
        out.errors[0].message,
        "run limit: more than 10000 nodes visited"
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

    // Run inside the simulator only when the action says so.
    let out = switchboard_engine::run_webhook(
        &caller,
        &form(&[("who", "Bo")]),
        &host,
        &RunOptions::simulator(false),
    );
    assert_eq!(out.body, "Hello Bo");
    let not_in_sim = webhook(
        json!([{"type": "action", "title": "call", "params": {"actions": [
            {"action": "_run_behavior", "behavior_id": "20", "var": "result", "var_name": "x", "run_in_simulator": "0"},
            {"action": "set_http_body", "value": "[{{ result.greeting }}]"}
        ]}}]),
    );
    let out = switchboard_engine::run_webhook(
        &not_in_sim,
        &form(&[]),
        &host,
        &RunOptions::simulator(false),
    );
    assert_eq!(out.body, "[]");
    let out = switchboard_engine::run_webhook(&not_in_sim, &form(&[]), &host, &RunOptions::real());
    assert_eq!(
        out.body, "[Hello x]",
        "run_in_simulator does not matter in real runs"
    );
}

/// Behaviors `first..=last`, each but the last calling the next with `_run_behavior`, then
/// marking `done_<id>`.
fn chain(host: &mut TestHost, first: i64, last: i64, disabled: Option<i64>) {
    use std::sync::Arc;
    use switchboard_engine::CompiledBehavior;
    for id in first..=last {
        let mut actions = vec![json!(
            {"action": "_set_custom_var", "var": format!("done_{id}"), "value": "yes", "format": ""}
        )];
        if id < last {
            actions.insert(
                0,
                json!({"action": "_run_behavior", "behavior_id": (id + 1).to_string(), "var": "r", "run_in_simulator": "1"}),
            );
        }
        let mut def = behavior_def(
            id,
            "event.macro.bot",
            json!({}),
            json!([{"type": "action", "title": "next", "status": "live", "params": {"actions": actions}}]),
        );
        def.is_disabled = disabled == Some(id);
        host.behaviors.insert(
            id,
            Arc::new(CompiledBehavior::compile(&def, bot(json!({}))).unwrap()),
        );
    }
}

fn behaviors_entered(out: &switchboard_engine::RunOutput) -> Vec<i64> {
    out.trace
        .iter()
        .filter_map(|e| match e {
            TraceEvent::Behavior { behavior_id, .. } => Some(*behavior_id),
            _ => None,
        })
        .collect()
}

#[test]
fn run_behavior_depth_limit_stops_the_run() {
    // 30 (depth 0) calls 31 (depth 1) ... 38 (depth 8): nine behaviors, the deepest allowed.
    let mut host = TestHost::default();
    chain(&mut host, 30, 38, None);
    let out = macro_run(&host.behaviors[&30].clone(), &host, &[], RunOptions::real());
    assert_eq!(behaviors_entered(&out), (30..=38).collect::<Vec<_>>());
    assert_eq!(out.exit, ExitState::Complete);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.vars["done_30"], json!("yes"));
    assert_eq!(
        out.vars["r"]["r"]["r"]["r"]["r"]["r"]["r"]["r"]["done_38"],
        json!("yes"),
        "each result holds the next one's dictionary"
    );

    // One more level (39 at depth 9) is past the limit: the whole run stops there.
    let mut host = TestHost::default();
    chain(&mut host, 30, 45, None);
    let out = macro_run(&host.behaviors[&30].clone(), &host, &[], RunOptions::real());
    assert_eq!(behaviors_entered(&out), (30..=38).collect::<Vec<_>>());
    assert_eq!(out.exit, ExitState::Aborted);
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    assert_eq!(
        out.errors[0].message,
        "run limit: _run_behavior nested deeper than 8"
    );
    assert!(
        !out.vars.contains_key("done_30"),
        "no action runs after the limit: {:?}",
        out.vars
    );
}

#[test]
fn run_behavior_refuses_recursion_and_disabled_behaviors_and_goes_on() {
    // 50 → 51 → 50 again: the second call of 50 is refused, both finish.
    let mut host = TestHost::default();
    chain(&mut host, 50, 51, None);
    let back = behavior_def(
        51,
        "event.macro.bot",
        json!({}),
        json!([{"type": "action", "title": "back", "params": {"actions": [
            {"action": "_run_behavior", "behavior_id": "50", "var": "r", "run_in_simulator": "1"},
            {"action": "_set_custom_var", "var": "done_51", "value": "yes", "format": ""}
        ]}}]),
    );
    host.behaviors.insert(
        51,
        std::sync::Arc::new(
            switchboard_engine::CompiledBehavior::compile(&back, bot(json!({}))).unwrap(),
        ),
    );
    let out = macro_run(&host.behaviors[&50].clone(), &host, &[], RunOptions::real());
    assert_eq!(behaviors_entered(&out), vec![50, 51]);
    assert_eq!(out.exit, ExitState::Complete);
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    assert_eq!(
        out.errors[0].message,
        "_run_behavior: behavior 50 is already running (no recursion)"
    );
    assert_eq!(out.vars["done_50"], json!("yes"));
    assert_eq!(out.vars["r"]["done_51"], json!("yes"));

    // A disabled target is refused; the caller goes on.
    let mut host = TestHost::default();
    chain(&mut host, 60, 61, Some(61));
    let out = macro_run(&host.behaviors[&60].clone(), &host, &[], RunOptions::real());
    assert_eq!(behaviors_entered(&out), vec![60]);
    assert_eq!(
        out.errors[0].message,
        "_run_behavior: behavior 61 or its bot is disabled"
    );
    assert_eq!(out.vars["done_60"], json!("yes"));
}

#[test]
fn template_errors_skip_the_action_and_keep_the_previous_value() {
    let b = webhook(
        json!([{"type": "action", "title": "a", "status": "live", "params": {"actions": [
            {"action": "set_http_body", "value": "first"},
            {"action": "set_http_body", "value": "{% if %}broken"},
            {"action": "set_http_body", "value": "{{ [1]|no_such_filter }}"},
            {"action": "set_http_header", "name": "X-After", "value": "yes"}
        ]}}]),
    );
    let out = real(&b, &form(&[]));
    assert_eq!(out.body, "first");
    assert_eq!(out.headers.get("x-after").map(String::as_str), Some("yes"));
    assert_eq!(out.exit, ExitState::Complete);
    assert_eq!(out.errors.len(), 2, "{:?}", out.errors);
    assert!(
        out.errors[0].message.starts_with("template syntax error"),
        "{:?}",
        out.errors
    );
    assert!(
        out.errors[1].message.contains("no_such_filter"),
        "{:?}",
        out.errors
    );
}

#[test]
fn runaway_templates_stop_at_the_limits() {
    let b = webhook(
        json!([{"type": "action", "title": "a", "status": "live", "params": {"actions": [
            {"action": "set_http_body", "value": "ok"},
            {"action": "set_http_body", "value": "{% for i in range(0, 100000000) %}x{% endfor %}"},
            {"action": "_set_custom_var", "var": "big", "value": "{% for i in range(1, 26) %}{{ '%010000d'|format(0) }}{% endfor %}{{ '%02145d'|format(0) }}", "format": ""},
            {"action": "_set_custom_var", "var": "just_fits", "value": "{% for i in range(1, 26) %}{{ '%010000d'|format(0) }}{% endfor %}{{ '%02144d'|format(0) }}", "format": ""},
            {"action": "_set_custom_var", "var": "regex_loop", "value": "{% for i in range(0, 100000) %}{{ ('a' * 40 ~ '!')|regexp('/^(a+)+$/') }}{% endfor %}", "format": ""},
            {"action": "set_http_header", "name": "X-After", "value": "yes"}
        ]}}]),
    );
    let started = std::time::Instant::now();
    let out = real(&b, &form(&[]));
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(out.body, "ok", "the runaway body keeps the previous value");
    assert_eq!(
        out.exit,
        ExitState::Complete,
        "template limits end the action, not the run"
    );
    assert_eq!(out.headers.get("x-after").map(String::as_str), Some("yes"));
    let messages: Vec<&str> = out.errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        vec![
            "template ran out of fuel (work limit reached)",
            "template output exceeded 262144 bytes",
            "template ran out of fuel (work limit reached)",
        ]
    );
    assert!(!out.vars.contains_key("big"));
    assert!(!out.vars.contains_key("regex_loop"));
    assert_eq!(out.vars["just_fits"].as_str().map(str::len), Some(262_144));
}

#[test]
fn the_output_limit_holds_for_text_without_template_tags() {
    // A literal body, header or variable over 256 KiB is refused like a render that produces as
    // much; one of exactly 256 KiB is fine. CR LF counts as the LF it becomes.
    let limit = 256 * 1024;
    let b = webhook(
        json!([{"type": "action", "title": "a", "params": {"actions": [
            {"action": "set_http_body", "value": "ok"},
            {"action": "set_http_body", "value": "x".repeat(limit + 1)},
            {"action": "set_http_header", "name": "X-Big", "value": "y".repeat(limit + 1)},
            {"action": "_set_custom_var", "var": "big", "value": "z".repeat(limit + 1), "format": ""},
            {"action": "_set_custom_var", "var": "fits", "value": format!("{}\r\n", "z".repeat(limit - 1)), "format": ""}
        ]}}]),
    );
    let out = real(&b, &form(&[]));
    assert_eq!(out.body, "ok", "the oversized body is not set");
    assert!(!out.headers.contains_key("x-big"));
    assert!(!out.vars.contains_key("big"));
    assert_eq!(out.vars["fits"].as_str().map(str::len), Some(limit));
    let messages: Vec<&str> = out.errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages, ["template output exceeded 262144 bytes"; 3]);
    assert_eq!(out.exit, ExitState::Complete);
}

#[test]
fn catastrophic_regex_in_a_template_is_linear() {
    let b = webhook(
        json!([{"type": "action", "title": "a", "params": {"actions": [
            {"action": "set_http_body", "value": "[{{ http_params.p|regexp('/^(a+)+$/') }}]"}
        ]}}]),
    );
    let hostile = format!("{}!", "a".repeat(100_000));
    let started = std::time::Instant::now();
    let out = real(&b, &form(&[("p", &hostile)]));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(out.body, "[]");
    assert!(out.errors.is_empty(), "{:?}", out.errors);
}
