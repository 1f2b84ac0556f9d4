//! The seed package through the simulator: exact webhook bodies (docs/semantics.md §9), the default
//! Content-Type (its Decision 7), and the exact HTTP requests of the two macro behaviors.

use pretty_assertions::assert_eq;
use serde_json::json;
use switchboard::args::KeyValue;
use switchboard::simulate::{SimulateRequest, Simulation, render_text, simulate};

use crate::{golden, repo_root, seed_package};

fn kv(s: &str) -> KeyValue {
    s.parse().unwrap()
}

fn webhook(body: &str) -> Simulation {
    simulate(&SimulateRequest {
        package_json: seed_package(),
        behavior_uid: "behavior_43".into(),
        params: vec![kv(&format!("Body={body}")), kv("From=+15551234567")],
        ..Default::default()
    })
    .expect("simulates")
}

#[test]
fn webhook_replies_match_the_guide_byte_for_byte() {
    let cases = [
        ("help", "help.xml"),
        ("HELP", "help.xml"),
        ("Help", "help.xml"),
        ("logo", "logo.xml"),
        ("link", "link.xml"),
        ("hi", "hi.xml"),
        ("help ", "help-trailing-space.xml"),
        ("Hi & <bye> 'q' \"d\"", "hostile.xml"),
    ];
    for (body, file) in cases {
        let out = webhook(body).output;
        assert_eq!(out.body, golden(file), "Body {body:?}");
        assert_eq!(out.status, 200, "Body {body:?}");
        assert_eq!(
            out.headers.get("content-type").map(String::as_str),
            Some("text/xml; charset=utf-8"),
            "Body {body:?}"
        );
        assert!(out.errors.is_empty(), "Body {body:?}: {:?}", out.errors);
        assert!(out.http_requests.is_empty());
    }
}

#[test]
fn please_help_falls_to_the_default_outcome() {
    let out = webhook("please help").output;
    assert!(out.body.contains("You said: please help"), "{}", out.body);
}

#[test]
fn send_sms_builds_the_exact_twilio_request() {
    let sim = simulate(&SimulateRequest {
        package_json: seed_package(),
        behavior_uid: "behavior_41".into(),
        prompts: vec![
            kv("twilio_account_id=7"),
            kv("account_sid=AC0123456789abcdef0123456789abcdef"),
            kv("default_from=+15557654321"),
        ],
        vars: vec![kv("var_to=+15551234567"), kv("var_body=Hello world")],
        ..Default::default()
    })
    .unwrap();
    let out = &sim.output;
    assert_eq!(out.http_requests.len(), 1);
    let r = &out.http_requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.url,
        "https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages"
    );
    assert_eq!(
        r.body,
        "To=%2B15551234567&From=%2B15557654321&Body=Hello%20world"
    );
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("application/x-www-form-urlencoded")
    );
    assert!(!r.sent, "the simulator sends nothing without --run-http");
    assert!(r.authenticated_with.as_deref().unwrap().contains("#7"));
    assert!(
        sim.notes.is_empty(),
        "every prompt was answered: {:?}",
        sim.notes
    );
    // A macro answers no HTTP request: the text report has no response section.
    let text = render_text(&sim);
    assert!(
        text.contains("\n== HTTP requests ==\nPOST https://api.twilio.com/"),
        "{text}"
    );
    assert!(!text.contains("== Response =="), "{text}");
}

#[test]
fn look_up_a_number_builds_the_exact_lookup_request() {
    let sim = simulate(&SimulateRequest {
        package_json: seed_package(),
        behavior_uid: "behavior_42".into(),
        vars: vec![kv("var_phone_number=+15551234567")],
        ..Default::default()
    })
    .unwrap();
    let out = &sim.output;
    assert_eq!(out.http_requests.len(), 1);
    let r = &out.http_requests[0];
    assert_eq!(r.method, "GET");
    assert_eq!(
        r.url,
        "https://lookups.twilio.com/v1/PhoneNumbers/%2B15551234567?Type=carrier&Type=caller-name"
    );
    assert_eq!(r.body, "");
    // Not sent, so `response` is the JSON decoding of an empty json_pretty: null.
    assert_eq!(out.vars["response"], json!(null));
    assert_eq!(
        sim.notes.len(),
        3,
        "three prompts got sample values: {:?}",
        sim.notes
    );
}

#[test]
fn credentials_never_appear_in_the_output() {
    let sim = simulate(&SimulateRequest {
        package_json: seed_package(),
        behavior_uid: "behavior_41".into(),
        vars: vec![kv("var_to=+15551234567"), kv("var_body=x")],
        ..Default::default()
    })
    .unwrap();
    let text = render_text(&sim);
    assert!(
        !text.to_ascii_lowercase().contains("authorization"),
        "{text}"
    );
    assert!(
        text.contains("Authenticating with Sample connected account #1"),
        "{text}"
    );
}

/// The readable trace for `help`, compared with a reviewed golden file
/// (`UPDATE_GOLDEN=1 cargo test -p switchboard` rewrites it).
#[test]
fn help_trace_matches_the_golden_file() {
    let text = render_text(&webhook("help"));
    let path = repo_root().join("services/switchboard/tests/golden/simulate-help.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let expected = std::fs::read_to_string(&path).expect("golden trace exists");
    assert_eq!(text, expected);
}

/// docs/semantics.md, Decision 8 through the whole import pipeline (parse, plan, compile): a
/// pattern that cannot be compiled is refused with its section, behavior uid, field, node title and
/// pattern, for a behavior inside a bot and for one in the top-level `behaviors` section alike.
#[test]
fn invalid_regexps_are_located_in_their_section() {
    let mut doc: serde_json::Value = serde_json::from_str(&seed_package()).unwrap();
    let bad =
        json!({"condition": "http_param", "name": "body", "oper": "regexp", "value": "/help(/i"});
    let behaviors = doc["bots"][0]["behaviors"].as_array_mut().unwrap();
    let webhook = behaviors
        .iter_mut()
        .find(|b| b["uid"] == "behavior_43")
        .unwrap();
    webhook["nodes"][0]["nodes"][0]["params"]["groups"][0]["conditions"][0] = bad.clone();
    // The same behavior again, moved to the top-level section (attached to the seed's bot).
    let mut top = webhook.clone();
    top["uid"] = json!("behavior_top");
    top["bot_id"] = json!("{{{uid.bot_twilio}}}");
    doc["behaviors"] = json!([top]);
    let err = simulate(&SimulateRequest {
        package_json: doc.to_string(),
        behavior_uid: "behavior_43".into(),
        ..Default::default()
    })
    .err()
    .expect("refused");
    let text = format!("{err:#}");
    assert!(
        text.starts_with("invalid package: 2 issues\n  regexp (2):\n"),
        "{text}"
    );
    let field = "nodes[0].nodes[0].params.groups[0].conditions[0].value";
    for section in ["bots (behavior_43)", "behaviors (behavior_top)"] {
        assert!(
            text.contains(&format!(
                "{section} {field} [node 'HELP']: invalid regexp `/help(/i`"
            )),
            "{text}"
        );
    }
}

/// `--method GET` (or HEAD) sends `--param`s in the query string, where a webhook sees them
/// (a GET has no form body; docs/semantics.md §7).
#[test]
fn get_and_head_put_params_in_the_query_string() {
    for method in ["GET", "get", "HEAD"] {
        let sim = simulate(&SimulateRequest {
            package_json: seed_package(),
            behavior_uid: "behavior_43".into(),
            params: vec![kv("Body=help"), kv("From=+15551234567")],
            method: Some(method.into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(sim.output.body, golden("help.xml"), "{method}");
        let req = switchboard::simulate::webhook_request(&SimulateRequest {
            params: vec![kv("Body=help me"), kv("From=+15551234567")],
            method: Some(method.into()),
            ..Default::default()
        });
        assert_eq!(req.query, "Body=help+me&From=%2B15551234567", "{method}");
        assert!(req.body.is_empty(), "{method}");
        assert!(
            !req.headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type")),
            "{method}"
        );
    }
    // POST (the default) keeps the form body.
    let req = switchboard::simulate::webhook_request(&SimulateRequest {
        params: vec![kv("Body=help")],
        ..Default::default()
    });
    assert_eq!(
        (req.query.as_str(), req.body.as_slice()),
        ("", &b"Body=help"[..])
    );
}
