//! The string operator family (docs/semantics.md §2.5, Decisions 8 and 9) through real conditions:
//! every operator and its `!` negation against present, missing and array values, case
//! folding, `like` anchoring and newlines, `regexp` delimiters and flags, the typed and
//! `var_*` conditions, and what compiling refuses.

use pretty_assertions::assert_eq;
use serde_json::json;
use switchboard_engine::{CompiledBehavior, RunOptions, WebhookRequest, run_webhook};

use crate::support::*;

/// The value a condition looks at.
#[derive(Debug, Clone, Copy)]
enum Input {
    /// The request has the param with this value.
    Text(&'static str),
    /// The request has no such param.
    Missing,
    /// The param is an array (`p[]=1&p[]=2`).
    Array,
}
use Input::*;

/// Whether an outcome with one `http_param` condition on `p` passes for `input`.
fn param_passes(oper: &str, value: &str, input: Input) -> bool {
    let b = webhook(json!([outcome(
        "o",
        0,
        json!([param("p", oper, value)]),
        json!([say("hit", "Y")])
    )]));
    let req = match input {
        Text(v) => form(&[("p", v)]),
        Missing => form(&[("other", "x")]),
        Array => form(&[("p[]", "1"), ("p[]", "2")]),
    };
    let out = real(&b, &req);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    match out.body.as_str() {
        "Y" => true,
        "" => false,
        other => panic!("unexpected body {other:?}"),
    }
}

#[test]
fn every_operator_and_negation() {
    let cases: &[(&str, &str, Input, bool)] = &[
        // is / = : ASCII case folding, no trimming, whole value
        ("is", "help", Text("help"), true),
        ("is", "help", Text("HELP"), true),
        ("is", "HeLp", Text("hElP"), true),
        ("is", "help", Text(" help"), false),
        ("is", "help", Text("help "), false),
        ("is", "help", Text("help me"), false),
        ("is", "help", Text("hel"), false),
        ("is", "é", Text("É"), false),
        ("is", "É", Text("É"), true),
        ("is", "straße", Text("STRASSE"), false),
        ("=", "help", Text("HELP"), true),
        ("!=", "help", Text("HELP"), false),
        ("!is", "help", Text("HELP"), false),
        ("!is", "help", Text("hi"), true),
        ("is", "", Missing, true),
        ("is", "help", Missing, false),
        ("!is", "", Missing, false),
        ("!is", "help", Missing, true),
        ("is", "1", Array, false),
        ("is", "", Array, false),
        ("!is", "1", Array, true),
        ("!is", "", Array, true),
        // contains: ASCII folding, empty needle is in everything (PHP 8)
        ("contains", "ELP", Text("help me"), true),
        ("contains", "help me", Text("HELP ME please"), true),
        ("contains", "xyz", Text("help me"), false),
        ("contains", "CAF", Text("café"), true),
        ("contains", "É", Text("café"), false),
        ("contains", "", Text("anything"), true),
        ("!contains", "ELP", Text("help me"), false),
        ("!contains", "xyz", Text("help me"), true),
        ("contains", "", Missing, true),
        ("contains", "x", Missing, false),
        ("!contains", "x", Missing, true),
        ("!contains", "", Missing, false),
        ("contains", "1", Array, false),
        ("contains", "", Array, false),
        ("!contains", "1", Array, true),
        // like: `*` is any run of characters, everything else literal, anchored both ends,
        // ASCII case folding, `*` never crosses a newline
        ("like", "h*p", Text("HELP"), true),
        ("like", "help*", Text("help"), true),
        ("like", "help*", Text("Help me"), true),
        ("like", "*help", Text("please HELP"), true),
        ("like", "*help*", Text("please help me"), true),
        ("like", "**", Text("abc"), true),
        ("like", "elp", Text("help"), false),
        ("like", "hel", Text("help"), false),
        ("like", "help*", Text("say help"), false),
        ("like", "*help", Text("help me"), false),
        ("like", "help", Text("help me"), false),
        ("like", "a*c", Text("a\nc"), false),
        ("like", "*", Text("a\nb"), false),
        ("like", "help*", Text("help\nme"), false),
        ("like", "*me", Text("help\nme"), false),
        // Cerb's `/^…$/i`: PCRE's `$` also matches before one final newline, not two or `\r\n`.
        ("like", "help", Text("help\n"), true),
        ("like", "help*", Text("help\n"), true),
        ("!like", "help", Text("help\n"), false),
        ("like", "help", Text("help\n\n"), false),
        ("like", "help", Text("help\r\n"), false),
        ("like", "help", Text("\nhelp"), false),
        ("like", "a*c", Text("a\rc"), true),
        ("like", "a\nc", Text("a\nc"), true),
        ("like", "a\n*", Text("A\nbc"), true),
        ("like", "a.c", Text("abc"), false),
        ("like", "a.c", Text("a.c"), true),
        ("like", "a?c", Text("abc"), false),
        ("like", "a+b", Text("aab"), false),
        ("like", "a+b", Text("A+B"), true),
        ("like", "(x)[y]{2}|z^$\\/", Text("(X)[Y]{2}|Z^$\\/"), true),
        ("like", "CAF*", Text("café"), true),
        ("like", "CAFÉ", Text("café"), false),
        ("!like", "h*p", Text("HELP"), false),
        ("!like", "a*c", Text("a\nc"), true),
        ("!like", "help", Text("help me"), true),
        ("like", "*", Missing, true),
        ("like", "", Missing, true),
        ("like", "?", Missing, false),
        ("!like", "*", Missing, false),
        ("like", "", Text("x"), false),
        ("like", "*", Array, false),
        ("!like", "*", Array, true),
        // regexp: delimiters and flags i m s x u, byte-oriented without `u`
        ("regexp", "/^help\\b/i", Text("HELP me"), true),
        ("regexp", "/^help\\b/", Text("HELP me"), false),
        ("regexp", "/^b$/m", Text("a\nb\nc"), true),
        ("regexp", "/^b$/", Text("a\nb\nc"), false),
        // PCRE's `$` without `m`: the end, or before one final newline.
        ("regexp", "/^help$/i", Text("HELP\n"), true),
        ("!regexp", "/^help$/i", Text("HELP\n"), false),
        ("regexp", "/^help$/i", Text("HELP\n\n"), false),
        ("regexp", "/^(yes|no)$/", Text("no\n"), true),
        // D keeps `$` at the very end; A anchors at the start. (U only changes what a match
        // covers, never whether there is one; the Twig differential test checks it.)
        ("regexp", "/^help$/D", Text("help\n"), false),
        ("regexp", "/^help$/D", Text("help"), true),
        ("regexp", "/help/A", Text("help me"), true),
        ("regexp", "/help/A", Text("say help"), false),
        ("!regexp", "/help/A", Text("say help"), true),
        ("regexp", "/a.c/s", Text("a\nc"), true),
        ("regexp", "/a.c/", Text("a\nc"), false),
        ("regexp", "/h e l p # comment\n/x", Text("help"), true),
        ("regexp", "/h e l p/", Text("help"), false),
        ("regexp", "/^.$/u", Text("é"), true),
        ("regexp", "/^.$/", Text("é"), false),
        ("regexp", "/^\\w+$/u", Text("héllo"), true),
        ("regexp", "/^\\w+$/", Text("héllo"), false),
        ("regexp", "/café/", Text("un café"), true),
        ("regexp", "/^help$/im", Text("x\nHELP\ny"), true),
        ("regexp", "#^a/b$#", Text("a/b"), true),
        ("regexp", "{^x}", Text("xy"), true),
        ("regexp", "(^x)i", Text("X"), true),
        ("regexp", "~\\d{3}~", Text("call 555"), true),
        ("regexp", "  /x/", Text("x"), true),
        ("!regexp", "/^help\\b/i", Text("HELP me"), false),
        ("!regexp", "/^help\\b/", Text("HELP me"), true),
        ("regexp", "/^$/", Missing, true),
        ("regexp", "/x/", Missing, false),
        ("!regexp", "/x/", Missing, true),
        ("regexp", "/.*/", Array, false),
        ("regexp", "/^$/", Array, false),
        ("!regexp", "/.*/", Array, true),
        // any other operator never matches; negated it always does
        ("gt", "1", Text("2"), false),
        ("!gt", "1", Text("2"), true),
        ("", "x", Text("x"), false),
        ("!", "x", Text("x"), true),
        ("IS", "x", Text("x"), false),
        ("gt", "1", Array, false),
        ("!gt", "1", Array, true),
    ];
    let mut failures = Vec::new();
    for &(oper, value, input, expected) in cases {
        if param_passes(oper, value, input) != expected {
            failures.push(format!("{input:?} {oper} {value:?}: expected {expected}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A catastrophic pattern on a long attacker-chosen value: linear matching answers at once.
#[test]
fn catastrophic_regexp_is_linear() {
    let hostile = format!("{}!", "a".repeat(100_000));
    let b = webhook(json!([outcome(
        "o",
        0,
        json!([
            param("p", "regexp", "/^(a+)+$/"),
            param("p", "!regexp", "/^(a|aa)*$/")
        ]),
        json!([say("hit", "Y")])
    )]));
    let started = std::time::Instant::now();
    let out = real(&b, &form(&[("p", &hostile)]));
    assert_eq!(out.body, "");
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    // A backtracking engine needs about 2^100000 steps here.
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn invalid_regexp_fails_compilation_with_uid_title_and_pattern() {
    for pattern in ["help", "/(a/", "/x/q", "/unterminated", "", "/a(?=b)/"] {
        let def = behavior_def(
            10,
            "event.webhook.received",
            json!({}),
            json!([{"type": "switch", "title": "Command:", "nodes": [
                {"type": "outcome", "title": "Bad pattern", "params": {"groups": [
                    {"any": 0, "conditions": [param("body", "!regexp", pattern)]}
                ]}}
            ]}]),
        );
        let issues = CompiledBehavior::compile(&def, bot(json!({}))).expect_err(pattern);
        assert_eq!(issues.len(), 1, "{issues:?}");
        let issue = &issues[0];
        assert_eq!(issue.uid.as_deref(), Some("behavior_10"));
        assert_eq!(
            issue.field.as_deref(),
            Some("nodes[0].nodes[0].params.groups[0].conditions[0].value")
        );
        assert_eq!(issue.node.as_deref(), Some("Bad pattern"));
        assert_eq!(issue.feature, "regexp");
        assert!(
            issue.message.contains(&format!("`{pattern}`")),
            "{}",
            issue.message
        );
    }
}

#[test]
fn header_conditions_fold_the_name_and_miss_as_empty() {
    let cases: &[(&str, &str, &str, bool)] = &[
        ("X-Custom-Thing", "is", "OH YES", true),
        ("x_custom_thing", "contains", "yes", true),
        ("X-CUSTOM-THING", "like", "oh*", true),
        ("X-Custom-Thing", "regexp", "/^oh yes$/", true),
        ("X-Custom-Thing", "!is", "oh yes", false),
        ("X-Missing", "is", "", true),
        ("X-Missing", "!is", "", false),
        ("X-Missing", "like", "*", true),
        ("Content-Type", "is", "", true),
        ("Content-Type", "contains", "form", false),
    ];
    for &(name, oper, value, expected) in cases {
        let b = webhook(json!([outcome(
            "o",
            0,
            json!([{"condition": "http_header", "name": name, "oper": oper, "value": value}]),
            json!([say("hit", "Y")])
        )]));
        let mut req = form(&[]);
        req.headers.push(("X-Custom-Thing".into(), "oh yes".into()));
        assert_eq!(
            real(&b, &req).body == "Y",
            expected,
            "{name} {oper} {value:?}"
        );
    }
}

#[test]
fn typed_request_conditions() {
    let req = WebhookRequest {
        method: "post".into(),
        path: "some/path".into(),
        headers: vec![("Content-Type".into(), "text/plain".into())],
        body: b"first line\nsecond line".to_vec(),
        client_ip: "203.0.113.9, 10.0.0.1".into(),
        ..Default::default()
    };
    let cases: &[(&str, &str, &str, bool)] = &[
        ("http_verb", "is", "POST", true),
        ("http_verb", "is", "post", true),
        ("http_verb", "!is", "GET", true),
        ("http_body", "contains", "SECOND", true),
        ("http_body", "like", "first*", false),
        ("http_body", "like", "first*\n*line", true),
        ("http_body", "regexp", "/^second/m", true),
        ("http_body", "regexp", "/^second/", false),
        ("http_client_ip", "is", "203.0.113.9", true),
        ("http_client_ip", "like", "203.0.113.*", true),
        ("http_client_ip", "contains", "10.0.0.1", false),
        ("http_path", "is", "some/path", true),
        ("http_path", "like", "some/*", true),
        ("http_path", "!like", "*.html", true),
    ];
    for &(condition, oper, value, expected) in cases {
        let b = webhook(json!([outcome(
            "o",
            0,
            json!([{"condition": condition, "oper": oper, "value": value}]),
            json!([say("hit", "Y")])
        )]));
        let out = real(&b, &req);
        assert_eq!(out.body == "Y", expected, "{condition} {oper} {value:?}");
    }
}

#[test]
fn custom_script_is_rendered_and_php_trimmed() {
    let cases: &[(&str, &str, &str, bool)] = &[
        ("  {{ http_params.n * 2 }}\n", "is", "4", true),
        ("{{ http_params.name|upper }}", "like", "A*N", true),
        ("\u{a0}{{ http_params.name }}", "is", "ann", false),
        ("{{ http_params.missing }}", "is", "", true),
        ("{{ http_params.tags }}", "is", "", false),
        ("{% if %}broken", "is", "", true),
    ];
    for &(tpl, oper, value, expected) in cases {
        let b = webhook(json!([outcome(
            "o",
            0,
            json!([{"condition": "_custom_script", "tpl": tpl, "oper": oper, "value": value}]),
            json!([say("hit", "Y")])
        )]));
        let out = real(&b, &form(&[("n", "2"), ("name", "ann"), ("tags[]", "a")]));
        assert_eq!(out.body == "Y", expected, "{tpl:?} {oper} {value:?}");
    }
}

#[test]
fn var_conditions_read_the_dictionary() {
    // `var_list` holds an array (semantics Decision 9), `var_n` a number, `var_flag` true,
    // `var_none` null; `var_unset` was never set.
    let setup = json!({"type": "action", "title": "setup", "params": {"actions": [
        {"action": "_set_custom_var", "var": "var_list", "value": "[1, 2]", "format": "json"},
        {"action": "_set_custom_var", "var": "var_n", "value": "42.0", "format": "json"},
        {"action": "_set_custom_var", "var": "var_flag", "value": "true", "format": "json"},
        {"action": "_set_custom_var", "var": "var_none", "value": "null", "format": "json"},
        {"action": "_set_custom_var", "var": "var_text", "value": "Hello World", "format": ""}
    ]}});
    let cases: &[(&str, &str, &str, bool)] = &[
        ("var_text", "is", "hello world", true),
        ("var_text", "like", "hello*", true),
        ("var_text", "!contains", "WORLD", false),
        ("var_n", "is", "42", true),
        ("var_flag", "is", "1", true),
        ("var_none", "is", "", true),
        ("var_unset", "is", "", true),
        ("var_unset", "!is", "", false),
        ("var_list", "is", "1", false),
        ("var_list", "contains", "", false),
        ("var_list", "like", "*", false),
        ("var_list", "regexp", "/.*/", false),
        ("var_list", "!is", "1", true),
        ("var_list", "!contains", "", true),
        ("var_list", "!like", "*", true),
        ("var_list", "!regexp", "/.*/", true),
    ];
    for &(var, oper, value, expected) in cases {
        let b = webhook(json!([
            setup.clone(),
            outcome(
                "o",
                0,
                json!([{"condition": var, "oper": oper, "value": value}]),
                json!([say("hit", "Y")])
            )
        ]));
        let out = run_webhook(&b, &form(&[]), &TestHost::default(), &RunOptions::real());
        assert_eq!(out.body == "Y", expected, "{var} {oper} {value:?}");
    }
}
