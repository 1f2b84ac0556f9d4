//! Loops as Cerb 9.6 runs them (docs/semantics.md §2.3): the remaining items live in the
//! dictionary as `<as>__stack`, so emptying it breaks the loop. Driven by two real Cerb
//! behaviors kept in `tests/data` (origins in its README).

use serde_json::{Value as Json, json};
use switchboard_engine::{
    CompiledBehavior, ExitState, HttpOutcome, HttpResponse, RunOptions, RunOutput,
};

use crate::support::{TestHost, behavior_def, bot, form, macro_run, say, webhook};

fn fixture(name: &str) -> Json {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect("fixture is JSON")
}

/// The guide's behavior export, as a macro behavior.
fn guide_nodes() -> Json {
    let export = fixture("break-loop-guide.behavior.json");
    assert_eq!(export["behavior"]["event"]["key"], "event.macro.bot");
    export["behavior"]["nodes"].clone()
}

fn compile_macro(nodes: Json) -> CompiledBehavior {
    CompiledBehavior::compile(
        &behavior_def(20, "event.macro.bot", json!({}), nodes),
        bot(json!({})),
    )
    .expect("compiles")
}

fn http_action(title: &str, url: &str) -> Json {
    json!({"type": "action", "title": title, "status": "live", "params": {"actions": [
        {"action": "core.va.action.http_request", "http_verb": "get", "http_url": url,
         "http_headers": "", "http_body": "", "auth": "", "options": {},
         "run_in_simulator": "0", "response_placeholder": "resp"}
    ]}})
}

fn ok_host() -> TestHost {
    TestHost {
        answer: Some(HttpOutcome::Response(HttpResponse {
            status: 200,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: b"ok".to_vec(),
            url: "https://api.example.test/".into(),
        })),
        ..Default::default()
    }
}

fn iterations(out: &RunOutput) -> usize {
    out.trace
        .iter()
        .filter(|e| matches!(e, switchboard_engine::TraceEvent::Iteration { .. }))
        .count()
}

/// Checks one run of the guide's behavior: the loop stopped right after the first 6, and the
/// loop's placeholders are as Cerb leaves them (only the counter).
fn check_guide_run(out: &RunOutput) -> usize {
    assert_eq!(out.exit, ExitState::Complete, "{:?}", out.errors);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let n = iterations(out);
    assert_eq!(out.vars["attempts__counter"], json!(n));
    assert!((1..=50).contains(&n));
    if n < 50 {
        assert_eq!(out.vars["roll"], json!("6"), "stopped early only on a 6");
    }
    let rolls_of_six = out
        .trace
        .iter()
        .filter(|e| {
            matches!(e, switchboard_engine::TraceEvent::Outcome { title, used: true, .. } if title == "Yes")
        })
        .count();
    assert!(rolls_of_six <= 1, "the first 6 ends the loop");
    for gone in ["attempts", "attempts__key", "attempts__stack"] {
        assert!(
            !out.vars.contains_key(gone),
            "{gone} is unset after the loop"
        );
    }
    n
}

#[test]
fn the_guides_break_idiom_stops_the_loop() {
    let b = compile_macro(guide_nodes());
    let host = TestHost::default();
    let mut early = 0;
    for _ in 0..200 {
        let out = macro_run(&b, &host, &[], RunOptions::real());
        if check_guide_run(&out) < 50 {
            early += 1;
        }
    }
    // A run goes all 50 rounds without a 6 with probability (5/6)^50, about 1 in 9,000.
    assert!(early > 150, "{early} of 200 runs stopped early");
}

#[test]
fn no_http_request_after_the_break() {
    // The guide's loop with an HTTP request in each iteration, after the roll: the iteration
    // that rolls the 6 still finishes (Cerb empties the stack; it does not jump out), the next
    // one never starts.
    let mut nodes = guide_nodes();
    nodes[0]["nodes"].as_array_mut().unwrap().push(http_action(
        "report",
        "https://api.example.test/roll?n={{attempts}}&roll={{roll}}",
    ));
    let b = compile_macro(nodes);
    let mut early = 0;
    for _ in 0..100 {
        let host = ok_host();
        let out = macro_run(&b, &host, &[], RunOptions::real());
        let n = check_guide_run(&out);
        let sent = host.sent.lock().unwrap();
        assert_eq!(sent.len(), n, "one request per iteration that ran");
        assert_eq!(out.http_requests.len(), n);
        for (i, request) in sent.iter().enumerate() {
            assert!(
                request
                    .url
                    .starts_with(&format!("https://api.example.test/roll?n={}&roll=", i + 1)),
                "{}",
                request.url
            );
        }
        if n < 50 {
            early += 1;
            assert!(sent.last().unwrap().url.ends_with("&roll=6"));
            assert!(sent[..n - 1].iter().all(|r| !r.url.ends_with("&roll=6")));
        }
    }
    assert!(early > 75, "{early} of 100 runs stopped early");
}

/// The library's "Loop with break" node, as a root node of a webhook behavior; `extra` goes into
/// its empty "Do something" action node.
fn library_loop(extra: Json) -> Json {
    let package = fixture("cerb_bot_behavior_loop__break.json");
    let mut node = package["behavior_nodes"][0].clone();
    assert_eq!(node["type"], "loop");
    assert_eq!(node["params"]["as_placeholder"], "_item");
    let obj = node.as_object_mut().unwrap();
    for key in ["uid", "behavior_id", "parent_id"] {
        obj.remove(key);
    }
    let something = &mut node["nodes"][0];
    assert_eq!(something["title"], "Do something");
    something["params"]["actions"] = extra;
    node
}

#[test]
fn the_library_break_node_stops_after_its_third_item() {
    let b = webhook(json!([
        library_loop(json!([
            {"action": "set_http_body", "value": "{{_http_response_body}}{{_item}}({{_item__key}},{{_item__counter}},{{_item__stack|json_encode}});"}
        ])),
        say(
            "after",
            "[{{_item}}|{{_item__stack is defined ? 'stack' : ''}}|{{_item__counter}}]"
        )
    ]));
    let out = crate::support::real(&b, &form(&[]));
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    // The stack seen inside the loop no longer holds the current item; every key is 0 because
    // PHP's array_shift numbers a list again from 0.
    assert_eq!(
        out.body,
        "1(0,1,[2,3,4,5]);2(0,2,[3,4,5]);3(0,3,[4,5]);[||3]"
    );
    assert_eq!(out.vars["_item__counter"], json!(3));
    assert!(!out.vars.contains_key("_item__stack"));

    // With an HTTP request in "Do something": items 1 to 3 send one each, 4 and 5 none.
    let b = webhook(json!([library_loop(json!([
        {"action": "core.va.action.http_request", "http_verb": "post",
         "http_url": "https://api.example.test/items/{{_item}}", "http_headers": "",
         "http_body": "n={{_item}}", "auth": "", "options": {}, "run_in_simulator": "0",
         "response_placeholder": "resp"}
    ]))]));
    let host = ok_host();
    let out = switchboard_engine::run_webhook(&b, &form(&[]), &host, &RunOptions::real());
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let urls: Vec<String> = host
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.url.clone())
        .collect();
    assert_eq!(
        urls,
        [1, 2, 3].map(|i| format!("https://api.example.test/items/{i}"))
    );
    // In the simulator nothing is sent, and the same three requests are described.
    let host = ok_host();
    let out = switchboard_engine::run_webhook(&b, &form(&[]), &host, &RunOptions::simulator(false));
    assert!(host.sent.lock().unwrap().is_empty());
    assert_eq!(out.http_requests.len(), 3);
}

#[test]
fn changing_the_stack_inside_the_loop_takes_effect() {
    let set = |var: &str, value: &str, format: &str| json!({"action": "_set_custom_var", "var": var, "value": value, "format": format});
    // Replacing the rest: the loop goes on with the new items, the counter keeps counting.
    let b = webhook(json!([
        {"type": "loop", "title": "each", "params": {"foreach_json": "[1, 2, 3]", "as_placeholder": "i"}, "nodes": [
            say("add", "{{ i__counter }}:{{ i }};"),
            {"type": "outcome", "title": "at 1", "params": {"groups": [{"any": 0, "conditions": [
                {"condition": "_custom_script", "tpl": "{{ i }}", "oper": "is", "value": "1"}]}]},
             "nodes": [{"type": "action", "title": "replace", "params": {"actions": [
                set("i__stack", "{\"a\": \"x\", \"b\": \"y\"}", "json")]}}]}
        ]},
        say("after", "[{{ i__counter }}]")
    ]));
    let out = crate::support::real(&b, &form(&[]));
    assert_eq!(out.body, "1:1;2:x;3:y;[3]");
    assert!(out.errors.is_empty(), "{:?}", out.errors);

    // Adding items, or resetting the counter, works the same way.
    let b = webhook(json!([
        {"type": "loop", "title": "each", "params": {"foreach_json": "[\"a\"]", "as_placeholder": "i"}, "nodes": [
            say("add", "{{ i__counter }}{{ i }}{{ i__key }};"),
            {"type": "outcome", "title": "first", "params": {"groups": [{"any": 0, "conditions": [
                {"condition": "_custom_script", "tpl": "{{ i }}", "oper": "is", "value": "a"}]}]},
             "nodes": [{"type": "action", "title": "more", "params": {"actions": [
                set("i__stack", "{\"k\": \"b\", \"7\": \"c\"}", "json"),
                set("i__counter", "10", "")]}}]}
        ]}
    ]));
    assert_eq!(crate::support::real(&b, &form(&[])).body, "1a0;11bk;12c0;");
}

#[test]
fn an_exit_leaves_the_loop_placeholders_as_cerb_does() {
    let exit =
        json!({"type": "action", "title": "stop", "params": {"actions": [{"action": "_exit"}]}});
    // An `_exit` in an action directly under the loop: Cerb returns at once, so the item, its key
    // and what is left of the stack stay.
    let direct = webhook(json!([
        {"type": "loop", "title": "each", "params": {"foreach_json": "[1, 2, 3]", "as_placeholder": "i"}, "nodes": [
            exit.clone()
        ]}
    ]));
    let out = crate::support::real(&direct, &form(&[]));
    assert_eq!(out.exit, ExitState::Stop);
    assert_eq!(out.vars["i"], json!(1));
    assert_eq!(out.vars["i__key"], json!(0));
    assert_eq!(out.vars["i__counter"], json!(1));
    assert_eq!(out.vars["i__stack"], json!([2, 3]));

    // Deeper down (in an outcome), Cerb's loop goes on taking the items without running
    // anything, so the counter reaches the end and the placeholders are unset.
    let nested = webhook(json!([
        {"type": "loop", "title": "each", "params": {"foreach_json": "[1, 2, 3]", "as_placeholder": "i"}, "nodes": [
            say("add", "{{ i }}"),
            {"type": "outcome", "title": "always", "params": {"groups": []}, "nodes": [exit]},
            say("never", "!")
        ]}
    ]));
    let out = crate::support::real(&nested, &form(&[]));
    assert_eq!(out.exit, ExitState::Stop);
    assert_eq!(out.body, "1");
    assert_eq!(out.vars["i__counter"], json!(3));
    for gone in ["i", "i__key", "i__stack"] {
        assert!(!out.vars.contains_key(gone), "{gone}");
    }
}

#[test]
fn a_loop_of_the_same_placeholder_inside_ends_the_outer_one() {
    // Cerb keeps one `<as>__stack` per name: an inner loop of the same name replaces the outer
    // one's stack and unsets it when done, so the outer loop ends after its first iteration.
    let b = webhook(json!([
        {"type": "loop", "title": "outer", "params": {"foreach_json": "[\"a\", \"b\"]", "as_placeholder": "i"}, "nodes": [
            say("outer", "<{{ i }}>"),
            {"type": "loop", "title": "inner", "params": {"foreach_json": "[1, 2]", "as_placeholder": "i"}, "nodes": [
                say("inner", "{{ i }}")
            ]}
        ]}
    ]));
    let out = crate::support::real(&b, &form(&[]));
    assert_eq!(out.body, "<a>12");
    assert_eq!(out.vars["i__counter"], json!(2));
}
