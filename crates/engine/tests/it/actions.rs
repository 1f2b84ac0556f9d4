//! Actions and conditions: response actions and the default Content-Type, HTTP requests with
//! connected-account rules and Cerb's response placeholder, custom placeholders, variables,
//! typed conditions.

use pretty_assertions::assert_eq;
use serde_json::json;
use switchboard_engine::{
    CompiledBehavior, ConnectedAccount, HttpOutcome, HttpResponse, RunOptions, WebhookRequest,
    run_webhook,
};

use crate::support::*;

fn account(id: i64) -> ConnectedAccount {
    ConnectedAccount {
        id,
        name: "Twilio".into(),
        kind: "twilio".into(),
        allowed_hosts: vec!["api.twilio.com".into(), "lookups.twilio.com".into()],
    }
}

#[test]
fn response_status_headers_and_default_content_type() {
    let b = webhook(
        json!([{"type": "action", "title": "a", "status": "live", "params": {"actions": [
            {"action": "set_http_status", "value": "201 Created"},
            {"action": "set_http_header", "name": "X-Bot", "value": "{{ va_name }}"},
            {"action": "set_http_body", "value": "hello"}
        ]}}]),
    );
    let out = real(&b, &form(&[]));
    assert_eq!(out.status, 201);
    assert_eq!(
        out.headers.get("x-bot").map(String::as_str),
        Some("Test Bot")
    );
    assert_eq!(
        out.headers.get("content-type").map(String::as_str),
        Some("text/html; charset=utf-8")
    );

    for body in [
        "<?xml version=\"1.0\"?><Response/>",
        "<Response></Response>",
    ] {
        let b = webhook(
            json!([{"type": "action", "title": "a", "status": "live", "params": {"actions": [
                {"action": "set_http_body", "value": body}
            ]}}]),
        );
        let out = real(&b, &form(&[]));
        assert_eq!(
            out.headers["content-type"], "text/xml; charset=utf-8",
            "{body}"
        );
    }
    // A set Content-Type wins; an empty behavior answers 200 with an empty body.
    let b = webhook(
        json!([{"type": "action", "title": "a", "status": "live", "params": {"actions": [
            {"action": "set_http_header", "name": "Content-Type", "value": "application/json"},
            {"action": "set_http_body", "value": "<Response/>"}
        ]}}]),
    );
    assert_eq!(
        real(&b, &form(&[])).headers["content-type"],
        "application/json"
    );
    let empty = webhook(json!([]));
    let out = real(&empty, &form(&[]));
    assert_eq!((out.status, out.body.as_str()), (200, ""));
    // Leading blank line is not XML (Twilio would reject it with 12100).
    let b = webhook(
        json!([{"type": "action", "title": "a", "status": "live", "params": {"actions": [
            {"action": "set_http_body", "value": "\n<Response/>"}
        ]}}]),
    );
    assert_eq!(
        real(&b, &form(&[])).headers["content-type"],
        "text/html; charset=utf-8"
    );
}

#[test]
fn response_keys_are_plain_dictionary_keys() {
    let b = webhook(
        json!([{"type": "action", "title": "a", "params": {"actions": [
            {"value": "an entry without `action` is skipped"},
            {"action": "set_http_header", "name": "X-Twice", "value": "first"},
            {"action": "set_http_header", "name": "X-Twice", "value": "second"},
            {"action": "set_http_header", "name": "X-{{ http_params.n }}", "value": "{{ http_params.n * 2 }}"},
            {"action": "set_http_body", "value": "from the action"},
            {"action": "_set_custom_var", "var": "_http_response_body", "value": "from a placeholder", "format": ""},
            {"action": "_set_custom_var", "var": "_http_status", "value": "404", "format": ""}
        ]}}]),
    );
    let out = real(&b, &form(&[("n", "21")]));
    assert_eq!(out.status, 404);
    assert_eq!(out.body, "from a placeholder");
    assert_eq!(
        out.headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("x-twice", "second"),
            ("x-21", "42"),
            ("content-type", "text/html; charset=utf-8")
        ]
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
}

#[test]
fn invalid_status_is_recorded_and_ignored() {
    let b = webhook(
        json!([{"type": "action", "title": "a", "status": "live", "params": {"actions": [
            {"action": "set_http_status", "value": "OK"}
        ]}}]),
    );
    let out = real(&b, &form(&[]));
    assert_eq!(out.status, 200);
    assert_eq!(out.errors.len(), 1);
}

#[test]
fn typed_conditions_and_headers() {
    let b = webhook(json!([
        outcome(
            "verb",
            0,
            json!([{"condition": "http_verb", "oper": "is", "value": "post"}]),
            json!([say("v", "V")])
        ),
        outcome(
            "hdr",
            0,
            json!([{"condition": "http_header", "name": "X-Custom-Thing", "oper": "contains", "value": "yes"}]),
            json!([say("h", "H")])
        ),
        outcome(
            "ip",
            0,
            json!([{"condition": "http_client_ip", "oper": "like", "value": "127.*"}]),
            json!([say("i", "I")])
        ),
        outcome(
            "body",
            0,
            json!([{"condition": "http_body", "oper": "regexp", "value": "/hello=1/"}]),
            json!([say("b", "B")])
        ),
        outcome(
            "path",
            0,
            json!([{"condition": "http_path", "oper": "is", "value": ""}]),
            json!([say("p", "P")])
        ),
        outcome(
            "script",
            0,
            json!([{"condition": "_custom_script", "tpl": "  {{ http_params.hello * 2 }} ", "oper": "is", "value": "2"}]),
            json!([say("s", "S")])
        ),
        outcome(
            "bogus",
            0,
            json!([{"condition": "ticket_status", "oper": "is", "value": ""}]),
            json!([say("x", "X")])
        )
    ]));
    let mut req = form(&[("hello", "1")]);
    req.headers.push(("X-Custom-Thing".into(), "oh yes".into()));
    let out = real(&b, &req);
    assert_eq!(out.body, "VHIBPS");
    assert!(
        out.errors
            .iter()
            .any(|e| e.message.contains("invalid condition"))
    );
}

#[test]
fn array_params_never_match_string_operators() {
    let b = webhook(json!([
        outcome(
            "is",
            0,
            json!([param("a", "is", "1")]),
            json!([say("1", "is;")])
        ),
        outcome(
            "!is",
            0,
            json!([param("a", "!is", "1")]),
            json!([say("2", "!is;")])
        ),
        outcome(
            "contains",
            0,
            json!([param("a", "contains", "")]),
            json!([say("3", "contains;")])
        )
    ]));
    let out = real(&b, &form(&[("a[]", "1"), ("a[]", "2")]));
    assert_eq!(out.body, "!is;");
}

#[test]
fn var_conditions_and_var_actions_coerce_by_type() {
    let def = behavior_def(
        5,
        "event.macro.bot",
        json!({
            "var_n": {"key": "var_n", "label": "N", "type": "N", "is_private": false, "params": {}},
            "var_pick": {"key": "var_pick", "label": "P", "type": "D", "is_private": false, "params": {"options": "red\ngreen"}}
        }),
        json!([
            {"type": "action", "title": "set", "status": "live", "params": {"actions": [
                {"action": "var_n", "value": "{{ var_n + 1 }}.7"}
            ]}},
            {"type": "outcome", "title": "is 42", "status": "live",
             "params": {"groups": [{"any": 0, "conditions": [{"condition": "var_n", "oper": "is", "value": "42"}]}]},
             "nodes": [{"type": "action", "title": "mark", "status": "live", "params": {"actions": [
                {"action": "_set_custom_var", "var": "hit", "value": "{{var_pick}}", "format": ""}
             ]}}]}
        ]),
    );
    let b = CompiledBehavior::compile(&def, bot(json!({}))).unwrap();
    let host = TestHost::default();
    let out = macro_run(
        &b,
        &host,
        &[("var_n", "41.9"), ("var_pick", "green")],
        RunOptions::real(),
    );
    assert_eq!(out.vars["var_n"], json!(42));
    assert_eq!(out.vars["hit"], json!("green"));
    let out = macro_run(
        &b,
        &host,
        &[("var_n", "1"), ("var_pick", "blue")],
        RunOptions::real(),
    );
    assert!(
        out.errors[0]
            .message
            .contains("The picklist variable 'var_pick' has no option 'blue'"),
        "{:?}",
        out.errors
    );
    assert!(!out.vars.contains_key("var_pick"));
}

#[test]
fn set_custom_var_json_and_simulator_only() {
    let b = webhook(
        json!([{"type": "action", "title": "a", "status": "live", "params": {"actions": [
            {"action": "_set_custom_var", "var": "obj", "value": "{\"a\": [1, 2]}", "format": "json"},
            {"action": "_set_custom_var", "var": "bad", "value": "not json", "format": "json"},
            {"action": "_set_custom_var", "var": "zero", "value": "0", "format": ""},
            {"action": "_set_custom_var", "var": "simonly", "value": "x", "format": "", "is_simulator_only": "1"},
            {"action": "set_http_body", "value": "{{ obj.a[1] }}"}
        ]}}]),
    );
    let out = real(&b, &form(&[]));
    assert_eq!(out.body, "2");
    assert_eq!(out.vars["obj"], json!({"a": [1, 2]}));
    assert_eq!(out.vars["bad"], json!(null));
    assert!(
        !out.vars.contains_key("zero"),
        "PHP-empty raw value skips the action"
    );
    assert!(!out.vars.contains_key("simonly"));
    let out = sim(&b, &form(&[]));
    assert_eq!(out.vars["simonly"], json!("x"));
    // The simulator shows JSON values pretty-printed with a 4-space indent.
    let shown: Vec<&str> = out
        .trace
        .iter()
        .filter_map(|e| match e {
            switchboard_engine::TraceEvent::Action { output, .. } => Some(output.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        shown[0],
        ">>> Setting placeholder {{obj}}:\n{\n    \"a\": [\n        1,\n        2\n    ]\n}"
    );
    assert_eq!(shown[1], ">>> Setting placeholder {{bad}}:\nnull");
    assert_eq!(shown[2], ">>> Setting placeholder {{simonly}}:\nx");
}

fn http_behavior(
    url: &str,
    verb: &str,
    body: &str,
    headers: &str,
    raw: &str,
    account: &str,
) -> CompiledBehavior {
    webhook(
        json!([{"type": "action", "title": "call", "status": "live", "params": {"actions": [
            {"action": "core.va.action.http_request", "http_verb": verb, "http_url": url, "http_headers": headers,
             "http_body": body, "auth": if account.is_empty() { "" } else { "connected_account" },
             "auth_connected_account_id": account, "options": {"raw_response_body": raw},
             "run_in_simulator": "1", "response_placeholder": "resp"}
        ]}}]),
    )
}

#[test]
fn http_request_shape_and_response_placeholder() {
    let b = http_behavior(
        "https://api.twilio.com/x.json?q={{ http_params.q|url_encode }}",
        "post",
        "a=1",
        "X-One: 1\r\nUser-Agent: bot",
        "0",
        "7",
    );
    let mut host = TestHost::default();
    host.accounts.insert(7, account(7));
    host.answer = Some(HttpOutcome::Response(HttpResponse {
        status: 201,
        headers: vec![
            (
                "Content-Type".into(),
                "application/json; charset=utf-8".into(),
            ),
            ("X-A".into(), "1".into()),
            ("x-a".into(), "2".into()),
        ],
        body: br#"{"sid": "SM1", "n": [1]}"#.to_vec(),
        url: "https://api.twilio.com/x.json".into(),
    }));
    let out = run_webhook(&b, &form(&[("q", "a b+")]), &host, &RunOptions::real());
    let sent = host.sent.lock().unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].method, "POST");
    assert_eq!(sent[0].url, "https://api.twilio.com/x.json?q=a%20b%2B");
    assert_eq!(sent[0].account, Some(7));
    assert_eq!(
        sent[0].headers,
        vec![
            ("X-One".to_string(), "1".to_string()),
            ("User-Agent".to_string(), "bot".to_string()),
            (
                "Content-Type".to_string(),
                "application/x-www-form-urlencoded".to_string()
            )
        ]
    );
    assert_eq!(
        out.vars["resp"],
        json!({
            "content_type": "application/json",
            "headers": {"content-type": "application/json; charset=utf-8", "x-a": "1, 2"},
            "body": {"sid": "SM1", "n": [1]},
            "info": {"url": "https://api.twilio.com/x.json", "http_code": 201},
            "error": null
        })
    );
    assert_eq!(
        out.http_requests[0].authenticated_with.as_deref(),
        Some("Twilio")
    );
    assert!(out.http_requests[0].sent);
}

#[test]
fn http_raw_body_binary_and_transport_errors() {
    let mut host = TestHost {
        answer: Some(HttpOutcome::Response(HttpResponse {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: b"{\"a\":1}".to_vec(),
            url: "https://example.test/".into(),
        })),
        ..Default::default()
    };
    let raw = http_behavior("https://example.test/", "get", "", "", "1", "");
    let out = run_webhook(&raw, &form(&[]), &host, &RunOptions::real());
    assert_eq!(out.vars["resp"]["body"], json!("{\"a\":1}"));
    assert_eq!(
        host.sent.lock().unwrap()[0].account,
        None,
        "no auth configured: unauthenticated"
    );

    host.answer = Some(HttpOutcome::Response(HttpResponse {
        status: 200,
        headers: vec![("Content-Type".into(), "image/png".into())],
        body: vec![0x89, b'P', b'N', b'G'],
        url: "https://example.test/".into(),
    }));
    let decoded = http_behavior("https://example.test/", "get", "", "", "0", "");
    assert_eq!(
        run_webhook(&decoded, &form(&[]), &host, &RunOptions::real()).vars["resp"]["body"],
        json!("iVBORw==")
    );

    host.answer = Some(HttpOutcome::Error("connection refused".into()));
    let post = http_behavior("https://example.test/", "put", "payload", "", "0", "");
    let out = run_webhook(&post, &form(&[]), &host, &RunOptions::real());
    assert_eq!(
        out.vars["resp"],
        json!({"content_type": null, "headers": {}, "body": "payload", "info": {}, "error": "connection refused"})
    );
    assert_eq!(out.errors.len(), 1);
}

#[test]
fn credentials_only_for_allowed_hosts() {
    let mut host = TestHost::default();
    host.accounts.insert(7, account(7));
    for (url, acct) in [
        ("https://evil.example/steal", "7"),
        ("https://api.twilio.com/x", "99"),
    ] {
        let b = http_behavior(url, "get", "", "", "1", acct);
        let out = run_webhook(&b, &form(&[]), &host, &RunOptions::real());
        assert_eq!(out.vars["resp"], json!(false), "{url} {acct}");
        assert_eq!(out.errors.len(), 1);
    }
    assert!(host.sent.lock().unwrap().is_empty(), "nothing was sent");
}

#[test]
fn the_refusal_says_what_kind_of_account_it_is_and_which_hosts_it_allows() {
    let mut host = TestHost::default();
    host.accounts.insert(7, account(7));
    host.accounts.insert(
        8,
        ConnectedAccount {
            id: 8,
            name: "slack".into(),
            kind: "bearer".into(),
            allowed_hosts: vec!["slack.com".into()],
        },
    );
    let refused = |url: &str, acct: &str| {
        let b = http_behavior(url, "post", "", "", "1", acct);
        let out = run_webhook(&b, &form(&[]), &host, &RunOptions::real());
        assert_eq!(out.vars["resp"], json!(false));
        out.errors[0].message.clone()
    };
    assert_eq!(
        refused("https://slack.com/api/chat.postMessage", "7"),
        "connected account 7 ('Twilio') is not allowed for https://slack.com/api/chat.postMessage: it is a Twilio account, allowed only for api.twilio.com, lookups.twilio.com; connected accounts are Twilio accounts unless added with a kind of their own: for slack.com, add one with `switchboard accounts add --kind bearer|basic|api-key --allowed-host slack.com` and answer the package's prompt with its id"
    );
    assert_eq!(
        refused("https://api.stripe.com/v1/customers", "8"),
        "connected account 8 ('slack') is not allowed for https://api.stripe.com/v1/customers: it is a bearer-token account, allowed only for slack.com"
    );
    assert!(host.sent.lock().unwrap().is_empty(), "nothing was sent");
}

#[test]
fn credentials_refused_by_the_host_make_the_placeholder_false() {
    let mut host = TestHost {
        answer: Some(HttpOutcome::CredentialsRefused(
            "connected account 7 may not be used with host api.twilio.com".into(),
        )),
        ..Default::default()
    };
    host.accounts.insert(7, account(7));
    let b = http_behavior("https://api.twilio.com/x", "get", "", "", "1", "7");
    let out = run_webhook(&b, &form(&[]), &host, &RunOptions::real());
    assert_eq!(
        host.sent.lock().unwrap().len(),
        1,
        "the engine's check passed"
    );
    assert_eq!(out.vars["resp"], json!(false));
    assert_eq!(out.errors.len(), 1);
    assert!(
        out.errors[0].message.contains("refused"),
        "{:?}",
        out.errors
    );
}

#[test]
fn empty_url_or_placeholder_aborts_silently() {
    let host = TestHost::default();
    let b = http_behavior("{{ nothing }}", "get", "", "", "1", "");
    let out = run_webhook(&b, &form(&[]), &host, &RunOptions::real());
    assert!(host.sent.lock().unwrap().is_empty());
    assert!(!out.vars.contains_key("resp"));
    assert!(out.errors.is_empty());
}

#[test]
fn simulator_sends_only_with_run_http_and_run_in_simulator() {
    let host = TestHost {
        answer: Some(HttpOutcome::Error("down".into())),
        ..Default::default()
    };
    let b = http_behavior("https://example.test/", "get", "", "", "1", "");
    let out = run_webhook(&b, &form(&[]), &host, &RunOptions::simulator(false));
    assert!(!out.http_requests[0].sent);
    assert!(host.sent.lock().unwrap().is_empty());
    let out = run_webhook(&b, &form(&[]), &host, &RunOptions::simulator(true));
    assert!(out.http_requests[0].sent);
    assert_eq!(host.sent.lock().unwrap().len(), 1);

    let not_in_sim = webhook(
        json!([{"type": "action", "title": "call", "status": "live", "params": {"actions": [
            {"action": "core.va.action.http_request", "http_verb": "get", "http_url": "https://example.test/",
             "run_in_simulator": "0", "response_placeholder": "resp"}
        ]}}]),
    );
    let out = run_webhook(&not_in_sim, &form(&[]), &host, &RunOptions::simulator(true));
    assert!(!out.http_requests[0].sent);
    assert_eq!(host.sent.lock().unwrap().len(), 1);
}

#[test]
fn crlf_in_stored_templates_becomes_lf() {
    let b = webhook(
        json!([{"type": "action", "title": "a", "status": "live", "params": {"actions": [
            {"action": "set_http_body", "value": "line1\r\nline2\rline3"}
        ]}}]),
    );
    assert_eq!(
        real(
            &b,
            &WebhookRequest {
                method: "GET".into(),
                ..Default::default()
            }
        )
        .body,
        "line1\nline2\nline3"
    );
}
